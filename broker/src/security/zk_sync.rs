//! The loop that keeps an in-memory copy of coordinator data in step with the znodes (ACLs and
//! SCRAM credentials): Kafka's ZooKeeper-mode brokers reload on change notifications the same way.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use zookeeper_client as zk;

/// Runs for one coordinator session: makes sure each of `change_dirs` exists (created with
/// `create`), watches its children, reads everything with `read` and hands it to `apply`, and
/// again after each change notification. Errors are logged and retried every second; returns
/// when `stop` turns true.
pub async fn reload_on_change<T>(
    client: &zk::Client,
    what: &str,
    change_dirs: &[&str],
    create: &zk::CreateOptions<'_>,
    read: impl AsyncFn(&zk::Client) -> Result<T, zk::Error>,
    apply: impl Fn(T),
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match watch_dirs(client, change_dirs, create).await {
            Ok(mut changes) => match read(client).await {
                Ok(data) => {
                    apply(data);
                    tracing::debug!(what, "reloaded from the coordinator");
                    tokio::select! {
                        _ = changes.join_next() => continue,
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                Err(e) => tracing::warn!(error = %e, what, "cannot read; retrying"),
            },
            Err((dir, e)) => tracing::warn!(error = %e, what, dir, "cannot watch; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One task per directory that ends at its first child change (dropping the set aborts them).
async fn watch_dirs<'d>(
    client: &zk::Client,
    dirs: &[&'d str],
    create: &zk::CreateOptions<'_>,
) -> Result<JoinSet<()>, (&'d str, zk::Error)> {
    let mut changes = JoinSet::new();
    for &dir in dirs {
        match client.mkdir(dir, create).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err((dir, e)),
        }
        let (_, watcher) = client
            .list_and_watch_children(dir)
            .await
            .map_err(|e| (dir, e))?;
        changes.spawn(async move {
            watcher.changed().await;
        });
    }
    Ok(changes)
}
