//! The `zookeeper-client` crate (the client the brokers use) against the real
//! rivulet-coordinator binary: CRUD, versions, one-shot and persistent watches,
//! multi, and session re-establishment (also across a coordinator restart).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zookeeper_client as zk;

struct Server {
    child: Child,
    addr: String,
    data: tempfile::TempDir,
}

fn ruok(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut out = String::new();
    s.write_all(b"ruok").is_ok() && s.read_to_string(&mut out).is_ok() && out == "imok"
}

/// The tests restart servers on a fixed port; run them one at a time so that no other test's
/// free-port pick can take that port in between.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

use rivulet_testkit::free_port;

impl Server {
    fn start_in(data: tempfile::TempDir, port: u16) -> Server {
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_rivulet-coordinator"))
            .args(["--client-addr", &addr])
            .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--tick-time-ms", "100", "--max-session-timeout-ms", "10000"])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn coordinator");
        let mut server = Server { child, addr, data };
        // Ready means: our child is alive and answers ZooKeeper's `ruok` on that address. A bare
        // TCP connect is not enough — after a restart on a reused port it can reach some other
        // process that took the port meanwhile.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("coordinator exited during start: {status}");
            }
            if ruok(&server.addr) {
                return server;
            }
            assert!(Instant::now() < deadline, "coordinator did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start() -> Server {
        Server::start_in(tempfile::tempdir().expect("tempdir"), free_port())
    }

    /// Graceful stop (SIGTERM), keeping the data dir for a restart.
    fn stop(mut self) -> (tempfile::TempDir, u16) {
        let port = self
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().expect("tempdir"));
        (data, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client(addr: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .connect(addr)
        .await
        .expect("connect")
}

/// Hands a detached client's session over for re-establishment, and waits until the client's
/// background session task has ended.
///
/// zookeeper-client 0.11 serves a session in a spawned task that outlives the dropped `Client`:
/// in `Session::serve_session` an unbiased `select!` may see the connection close before it sees
/// the dropped request channel, and then `Session::serve` reconnects with the session once more.
/// That late reconnect moves the session away from whoever re-established it meanwhile (the
/// server, like ZooKeeper, closes the older connection of a session that moves), whose next
/// request then fails with ConnectionLoss. Wait here, while the old connection is still open,
/// until the task reports a terminal state, so that it can no longer reconnect.
async fn into_session_closed(client: zk::Client) -> zk::SessionInfo {
    let mut state = client.state_watcher();
    let session = client.into_session();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !state.changed().await.is_terminated() {}
    })
    .await
    .expect("the dropped client's session task ends within 10s");
    session
}

async fn event<F: std::future::Future<Output = zk::WatchedEvent>>(f: F) -> zk::WatchedEvent {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("watch event within 10s")
}

#[tokio::test]
async fn crud_versions_watches_and_multi() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let a = client(&server.addr).await;
    let b = client(&server.addr).await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

    let (stat, _) = a.create("/brokers", b"", &open).await.unwrap();
    assert_eq!(stat.version, 0);
    assert_eq!(
        a.create("/brokers", b"", &open).await.unwrap_err(),
        zk::Error::NodeExists
    );
    assert_eq!(
        a.create("/no/parent", b"", &open).await.unwrap_err(),
        zk::Error::NoNode
    );

    let seq = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
    let (_, s0) = a.create("/brokers/seq-", b"", &seq).await.unwrap();
    let (_, s1) = a.create("/brokers/seq-", b"", &seq).await.unwrap();
    assert_eq!((s0.into_i64(), s1.into_i64()), (0, 1));

    // Versions and compare-and-set.
    let st = a.set_data("/brokers", b"v1", Some(0)).await.unwrap();
    assert_eq!(st.version, 1);
    assert_eq!(
        a.set_data("/brokers", b"v2", Some(0)).await.unwrap_err(),
        zk::Error::BadVersion
    );
    let (data, st) = b.get_data("/brokers").await.unwrap();
    assert_eq!((data.as_slice(), st.version), (&b"v1"[..], 1));

    // One-shot data watch: fires once, before the new data is visible to b.
    let (_, _, w) = b.get_and_watch_data("/brokers").await.unwrap();
    a.set_data("/brokers", b"v2", None).await.unwrap();
    let ev = event(w.changed()).await;
    assert_eq!(ev.event_type, zk::EventType::NodeDataChanged);
    assert_eq!(ev.path, "/brokers");

    // Child watch.
    let (_, _, w) = b.get_and_watch_children("/brokers").await.unwrap();
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    a.create("/brokers/1", b"{\"rack\":\"a\"}", &eph)
        .await
        .unwrap();
    let ev = event(w.changed()).await;
    assert_eq!(ev.event_type, zk::EventType::NodeChildrenChanged);

    // Persistent recursive watch sees creates, changes and deletes below it.
    let mut pw = b
        .watch("/brokers", zk::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    a.set_data("/brokers/1", b"x", None).await.unwrap();
    a.delete("/brokers/seq-0000000000", None).await.unwrap();
    let e1 = event(pw.changed()).await;
    let e2 = event(pw.changed()).await;
    assert_eq!(
        (e1.event_type, e1.path.as_str()),
        (zk::EventType::NodeDataChanged, "/brokers/1")
    );
    assert_eq!(
        (e2.event_type, e2.path.as_str()),
        (zk::EventType::NodeDeleted, "/brokers/seq-0000000000")
    );

    // Multi: all or nothing, with the failing index.
    let mut m = a.new_multi_writer();
    m.add_create("/topics", b"", &open).unwrap();
    m.add_check_version("/brokers", 2).unwrap();
    m.add_set_data("/brokers", b"v3", Some(2)).unwrap();
    assert_eq!(m.commit().await.unwrap().len(), 3);
    let mut m = a.new_multi_writer();
    m.add_create("/topics/t1", b"", &open).unwrap();
    m.add_delete("/brokers", Some(0)).unwrap();
    match m.commit().await {
        Err(zk::MultiWriteError::OperationFailed { index, source }) => {
            assert_eq!((index, source), (1, zk::Error::BadVersion));
        }
        other => panic!("expected failure at index 1, got {other:?}"),
    }
    assert_eq!(a.check_stat("/topics/t1").await.unwrap(), None);

    // Ephemerals vanish when their session closes.
    assert_eq!(b.list_ephemerals("/").await.unwrap(), Vec::<String>::new());
    assert_eq!(
        a.list_ephemerals("/").await.unwrap(),
        vec!["/brokers/1".to_string()]
    );
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.check_stat("/brokers/1").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "ephemeral outlived its closed session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn session_reestablishment() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let a = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .with_detached()
        .connect(&server.addr)
        .await
        .unwrap();
    let sid = a.session_id();
    a.create("/controller", b"1", &eph).await.unwrap();
    let session = into_session_closed(a).await;

    // Same process, new connection, same session: the ephemeral is still ours.
    let a2 = zk::Client::connector()
        .with_session(session)
        .with_detached()
        .connect(&server.addr)
        .await
        .unwrap();
    assert_eq!(a2.session_id(), sid);
    let st = a2
        .check_stat("/controller")
        .await
        .unwrap()
        .expect("ephemeral kept");
    assert_eq!(st.ephemeral_owner, sid.0);
    drop(a2);
    drop(server);
}

// The session is handed to a new client (as a restarted broker would); the kazoo suite
// (tests/py/test_durability.py) covers the same client reconnecting by itself.
#[tokio::test]
async fn session_survives_restart() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let a = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .with_detached()
        .connect(&server.addr)
        .await
        .unwrap();
    let sid = a.session_id();
    a.create("/controller", b"1", &eph).await.unwrap();
    let session = into_session_closed(a).await;

    // Restart the coordinator: the session and its ephemeral come back from disk.
    let (data, port) = server.stop();
    let server = Server::start_in(data, port);
    let a3 = zk::Client::connector()
        .with_session(session)
        .connect(&server.addr)
        .await
        .unwrap();
    assert_eq!(a3.session_id(), sid);
    let (data, _) = a3.get_data("/controller").await.unwrap();
    assert_eq!(data, b"1");

    drop(a3);
}
