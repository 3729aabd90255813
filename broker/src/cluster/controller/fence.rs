//! Becoming the controller, and the conditional writes that fence a deposed one.
//!
//! Like Kafka in ZooKeeper mode: the controller is whoever holds the ephemeral `/controller`
//! znode, and winning also bumps `/controller_epoch` in the same transaction. The epoch znode's
//! version at that moment is the controller's fence: every later write is a `multi` whose first
//! op checks that version, so once a newer controller has bumped the epoch, a stale one (whose
//! session the coordinator has already expired, say) can change nothing.

use zookeeper_client as zk;

use super::decisions::LeaderAndIsr;
use crate::cluster::zk_layout::{self as layout, ControllerZnode, PartitionStateZnode};

/// What a controller won: the epoch number (written into partition states) and the version of
/// the `/controller_epoch` znode (checked by every write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerEpoch {
    pub value: i32,
    pub zk_version: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// `/controller_epoch` is not at our version any more: a newer controller exists.
    #[error("deposed: /controller_epoch has moved on, a newer controller exists")]
    Deposed,
    /// One of the other ops failed (a version moved, a node appeared or vanished): re-read and
    /// decide again. `op` counts the caller's ops from 0 (the epoch check not included).
    #[error("conflict in op {op}: {source}")]
    Conflict { op: usize, source: zk::Error },
    /// The request itself failed (connection loss, expired session...). It may or may not have
    /// been applied: re-read before deciding again.
    #[error("coordinator error: {0}")]
    Coordinator(zk::Error),
}

impl From<zk::Error> for WriteError {
    fn from(e: zk::Error) -> Self {
        WriteError::Coordinator(e)
    }
}

pub(crate) fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(crate::cluster::zk_acl::default_acls())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(crate::cluster::zk_acl::default_acls())
}

fn now_ms() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

/// One attempt to become controller: creates `/controller` (ephemeral, owned by `client`'s
/// session) and bumps `/controller_epoch` (creating it as 1) in one transaction.
/// `Ok(None)` when another session holds `/controller`.
pub async fn try_become_controller(
    client: &zk::Client,
    broker_id: i32,
) -> Result<Option<ControllerEpoch>, zk::Error> {
    // Bounded: each retry follows a concurrent epoch bump or our own stale `/controller`.
    for _ in 0..10 {
        let current = match client.get_data(layout::CONTROLLER_EPOCH).await {
            Ok((data, stat)) => Some((parse_epoch(&data), stat.version)),
            Err(zk::Error::NoNode) => None,
            Err(e) => return Err(e),
        };
        let value = current.map(|(v, _)| v).unwrap_or(0).saturating_add(1);
        let me = layout::encode(&ControllerZnode {
            version: 1,
            brokerid: broker_id,
            timestamp: now_ms(),
        });
        let epoch_data = value.to_string();
        let mut multi = client.new_multi_writer();
        multi.add_create(layout::CONTROLLER, &me, &ephemeral())?;
        match current {
            Some((_, version)) => multi.add_set_data(
                layout::CONTROLLER_EPOCH,
                epoch_data.as_bytes(),
                Some(version),
            )?,
            None => multi.add_create(
                layout::CONTROLLER_EPOCH,
                epoch_data.as_bytes(),
                &persistent(),
            )?,
        }
        match multi.commit().await {
            Ok(results) => {
                let zk_version = match results.get(1) {
                    Some(zk::MultiWriteResult::SetData { stat }) => stat.version,
                    // A created node's version is 0 (its returned stat may be invalid).
                    _ => 0,
                };
                return Ok(Some(ControllerEpoch { value, zk_version }));
            }
            Err(zk::MultiWriteError::OperationFailed {
                index: 0,
                source: zk::Error::NodeExists,
            }) => {
                // Held by us means an earlier attempt succeeded but its reply was lost: we do
                // not know our fence, so give the node up and campaign again.
                match client.check_stat(layout::CONTROLLER).await? {
                    Some(stat) if stat.ephemeral_owner == client.session_id().0 => {
                        match client.delete(layout::CONTROLLER, Some(stat.version)).await {
                            Ok(()) | Err(zk::Error::NoNode) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    Some(_) => return Ok(None),
                    None => continue,
                }
            }
            // The epoch moved (or appeared) under us: read it again.
            Err(zk::MultiWriteError::OperationFailed { index: 1, .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(zk::Error::UnexpectedError(
        "controller election kept racing; giving up this round".into(),
    ))
}

/// Is `client`'s session still the holder of `/controller` under `epoch`?
pub async fn still_controller(
    client: &zk::Client,
    epoch: &ControllerEpoch,
) -> Result<bool, zk::Error> {
    let owner = client.check_stat(layout::CONTROLLER).await?;
    let fence = client.check_stat(layout::CONTROLLER_EPOCH).await?;
    Ok(
        matches!(owner, Some(s) if s.ephemeral_owner == client.session_id().0)
            && matches!(fence, Some(s) if s.version == epoch.zk_version),
    )
}

/// Gives `/controller` up if this session holds it (on shutdown, so that another broker takes
/// over at once instead of after our session times out).
pub async fn resign(client: &zk::Client) -> Result<(), zk::Error> {
    match client.check_stat(layout::CONTROLLER).await? {
        Some(stat) if stat.ephemeral_owner == client.session_id().0 => {
            match client.delete(layout::CONTROLLER, Some(stat.version)).await {
                Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => Ok(()),
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    }
}

/// A `multi` that starts with the controller-epoch check.
pub struct FencedWrite<'a> {
    multi: zk::MultiWriter<'a>,
}

impl<'a> FencedWrite<'a> {
    pub fn new(client: &'a zk::Client, epoch: &ControllerEpoch) -> Result<Self, zk::Error> {
        let mut multi = client.new_multi_writer();
        multi.add_check_version(layout::CONTROLLER_EPOCH, epoch.zk_version)?;
        Ok(FencedWrite { multi })
    }

    pub fn check(&mut self, path: &str, version: i32) -> Result<(), zk::Error> {
        self.multi.add_check_version(path, version)
    }

    pub fn create(&mut self, path: &str, data: &[u8]) -> Result<(), zk::Error> {
        self.multi.add_create(path, data, &persistent())
    }

    pub fn set(&mut self, path: &str, data: &[u8], version: i32) -> Result<(), zk::Error> {
        self.multi.add_set_data(path, data, Some(version))
    }

    pub fn delete(&mut self, path: &str, version: i32) -> Result<(), zk::Error> {
        self.multi.add_delete(path, Some(version))
    }

    /// Commits; the results exclude the epoch check's.
    pub async fn commit(mut self) -> Result<Vec<zk::MultiWriteResult>, WriteError> {
        match self.multi.commit().await {
            Ok(mut results) => {
                if !results.is_empty() {
                    results.remove(0);
                }
                Ok(results)
            }
            Err(zk::MultiWriteError::OperationFailed { index: 0, .. }) => Err(WriteError::Deposed),
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                Err(WriteError::Conflict {
                    op: index - 1,
                    source,
                })
            }
            Err(zk::MultiWriteError::RequestFailed { source }) => {
                Err(WriteError::Coordinator(source))
            }
        }
    }
}

/// The state znode's JSON for `state` under `epoch`.
pub fn state_znode(epoch: &ControllerEpoch, state: &LeaderAndIsr) -> Vec<u8> {
    layout::encode(&PartitionStateZnode {
        version: 1,
        controller_epoch: epoch.value,
        leader: state.leader,
        leader_epoch: state.leader_epoch,
        isr: state.isr.clone(),
    })
}

/// Replaces a partition's state if it is still at `expected_version` and we are still the
/// controller; returns the state znode's new version (the partition epoch).
pub async fn set_partition_state(
    client: &zk::Client,
    epoch: &ControllerEpoch,
    topic: &str,
    partition: i32,
    state: &LeaderAndIsr,
    expected_version: i32,
) -> Result<i32, WriteError> {
    let mut w = FencedWrite::new(client, epoch)?;
    w.set(
        &layout::partition_state_path(topic, partition),
        &state_znode(epoch, state),
        expected_version,
    )?;
    match w.commit().await?.first() {
        Some(zk::MultiWriteResult::SetData { stat }) => Ok(stat.version),
        _ => Ok(expected_version.saturating_add(1)),
    }
}

fn parse_epoch(data: &[u8]) -> i32 {
    // Malformed content (input from the coordinator) counts as 0: the bump still fences by
    // version, which is what matters.
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_parsing_tolerates_garbage() {
        assert_eq!(parse_epoch(b"7"), 7);
        assert_eq!(parse_epoch(b" 12\n"), 12);
        assert_eq!(parse_epoch(b""), 0);
        assert_eq!(parse_epoch(b"-3"), 0);
        assert_eq!(parse_epoch(b"\xff"), 0);
    }
}
