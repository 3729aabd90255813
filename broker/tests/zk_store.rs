//! The coordinator-backed metadata store against a real `rivulet-coordinator` process (and the
//! core checks against Apache ZooKeeper 3.8 when Debian's libzookeeper-java is installed):
//! registration, cluster id, views kept current by the watch, topic writes, ISR compare-and-set
//! fencing, producer-id blocks, reassignment requests, session loss (fencing and
//! re-registration), and the broker binary's cluster-mode start-up and errors.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet_broker::cluster::store::addr;
use rivulet_broker::cluster::zk_layout::{self as layout, PartitionStateZnode};
use rivulet_broker::cluster::zk_store::{ZkMetadataStore, ZkSettings};
use rivulet_broker::metadata::{BrokerMeta, ClusterView, MetadataError, MetadataStore, NewTopic};
use rivulet_broker::security::listeners::ListenerEndpoint;
use zookeeper_client as zk;

mod support;

use support::{free_port, ApacheZooKeeper, Coordinator as Server};

const BROKER: &str = env!("CARGO_BIN_EXE_rivulet-broker");
const SESSION: Duration = Duration::from_millis(2000);

fn me(id: i32) -> BrokerMeta {
    BrokerMeta {
        id,
        host: "127.0.0.1".into(),
        port: 19000 + id,
        rack: Some(format!("zone-{id}")),
        // What a broker with only --listen-addr registers (and reads back): its one PLAINTEXT
        // listener, as Kafka's `endpoints` field lists it.
        endpoints: vec![ListenerEndpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 19000 + id,
        }],
    }
}

fn settings(coordinator: &str) -> ZkSettings {
    ZkSettings {
        addr: addr::parse(coordinator).expect("coordinator address"),
        session_timeout: SESSION,
        controller_wait: Duration::from_secs(5),
        digest: None,
    }
}

async fn store(coordinator: &str, id: i32) -> ZkMetadataStore {
    ZkMetadataStore::connect(settings(coordinator), me(id))
        .await
        .unwrap_or_else(|e| panic!("broker {id} connects: {e}"))
}

/// A plain client on the same chroot, to look at and write the tree as another party would.
async fn raw(coordinator: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(coordinator)
        .await
        .expect("raw client")
}

/// Waits until the store's view satisfies `pred` (the store publishes on every change).
async fn view_until(
    s: &ZkMetadataStore,
    limit: Duration,
    what: &str,
    pred: impl Fn(&ClusterView) -> bool,
) -> Arc<ClusterView> {
    let mut rx = s.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let v = s.view();
        if pred(&v) {
            return v;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("{what}: not seen within {limit:?}; view: {v:#?}");
        }
    }
}

fn broker_ids(v: &ClusterView) -> Vec<i32> {
    v.brokers.iter().map(|b| b.id).collect()
}

/// Stands in for the controller's part of topic creation: the partition states (leader = first
/// replica, ISR = all replicas), for the partitions `from..` of `topic`'s assignment.
async fn write_states(raw: &zk::Client, topic: &str, from: usize, assignment: &[Vec<i32>]) {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for (p, replicas) in assignment.iter().enumerate().skip(from) {
        let p = p as i32;
        raw.mkdir(&layout::partition_path(topic, p), &open)
            .await
            .expect("partition dir");
        let state = PartitionStateZnode {
            version: 1,
            controller_epoch: 1,
            leader: replicas[0],
            leader_epoch: 0,
            isr: replicas.clone(),
        };
        raw.create(
            &layout::partition_state_path(topic, p),
            &layout::encode(&state),
            &open,
        )
        .await
        .expect("state");
    }
}

async fn wait_node(raw: &zk::Client, path: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = raw.check_stat(path).await.expect("stat");
        if stat.is_some() == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} present={present}: timed out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registration, shared cluster id, ISR compare-and-set and producer-id blocks: the checks that
/// also run against Apache ZooKeeper.
async fn core_checks(coordinator: &str) {
    let a = store(coordinator, 1).await;
    let b = store(coordinator, 2).await;
    let raw = raw(coordinator).await;

    // Both registered, both see both, one cluster id.
    let va = view_until(&a, Duration::from_secs(1), "a sees 1 and 2", |v| {
        broker_ids(v) == vec![1, 2]
    })
    .await;
    let vb = view_until(&b, Duration::from_secs(1), "b sees 1 and 2", |v| {
        broker_ids(v) == vec![1, 2]
    })
    .await;
    assert_eq!(va.cluster_id.len(), 22, "{va:?}");
    assert_eq!(va.cluster_id, vb.cluster_id);
    assert_eq!(
        vb.broker(1),
        Some(&me(1)),
        "registration carries host/port/rack"
    );
    assert!(!a.is_fenced() && !b.is_fenced());
    let (data, stat) = raw.get_data(&layout::broker_path(1)).await.unwrap();
    assert_ne!(stat.ephemeral_owner, 0, "registration is ephemeral");
    let z: layout::BrokerZnode = layout::decode("/brokers/ids/1", &data).unwrap();
    assert_eq!(z.endpoints, vec!["PLAINTEXT://127.0.0.1:19001".to_string()]);

    // ISR compare-and-set: partition "t-0" led by broker 1 at leader epoch 4.
    let assignment = vec![vec![1, 2]];
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let topic = layout::TopicZnode {
        version: 3,
        topic_id: uuid::Uuid::new_v4().to_string(),
        partitions: [("0".to_string(), vec![1, 2])].into(),
        internal: false,
        adding_replicas: Default::default(),
        removing_replicas: Default::default(),
    };
    raw.create(&layout::topic_path("t"), &layout::encode(&topic), &open)
        .await
        .unwrap();
    write_states(&raw, "t", 0, &assignment).await;
    let state_path = layout::partition_state_path("t", 0);
    let (data, _) = raw.get_data(&state_path).await.unwrap();
    let mut st: PartitionStateZnode = layout::decode(&state_path, &data).unwrap();
    st.leader_epoch = 4;
    raw.set_data(&state_path, &layout::encode(&st), None)
        .await
        .unwrap();
    let p = view_until(&a, Duration::from_secs(1), "state seen", |v| {
        v.topic("t")
            .is_some_and(|t| t.partitions[0].leader_epoch == 4)
    })
    .await
    .topic("t")
    .unwrap()
    .partitions[0]
        .clone();
    assert_eq!(
        (p.leader, p.isr.clone(), p.partition_epoch),
        (1, vec![1, 2], 1)
    );

    let shrunk = a
        .alter_isr("t", 0, 4, p.partition_epoch, vec![1])
        .await
        .unwrap();
    assert_eq!((shrunk.isr.clone(), shrunk.partition_epoch), (vec![1], 2));
    assert_eq!(a.view().topic("t").unwrap().partitions[0].isr, vec![1]);
    view_until(&b, Duration::from_secs(1), "b sees the shrink", |v| {
        v.topic("t").is_some_and(|t| t.partitions[0].isr == vec![1])
    })
    .await;
    // Stale partition epoch, stale leader epoch, and a non-leader are all fenced.
    for (who, leader_epoch, partition_epoch) in [(&a, 4, 1), (&a, 3, 2), (&b, 4, 2)] {
        match who
            .alter_isr("t", 0, leader_epoch, partition_epoch, vec![1, 2])
            .await
        {
            Err(MetadataError::Fenced(_)) => {}
            other => panic!("epochs ({leader_epoch}, {partition_epoch}): {other:?}"),
        }
    }
    // A concurrent change by the controller (new leader epoch) between read and write fences too.
    st.leader_epoch = 5;
    st.isr = vec![1];
    raw.set_data(&state_path, &layout::encode(&st), Some(2))
        .await
        .unwrap();
    assert!(matches!(
        a.alter_isr("t", 0, 4, 2, vec![1, 2]).await,
        Err(MetadataError::Fenced(_))
    ));
    let (data, _) = raw.get_data(&state_path).await.unwrap();
    let now: PartitionStateZnode = layout::decode(&state_path, &data).unwrap();
    assert_eq!(
        (now.leader_epoch, now.isr),
        (5, vec![1]),
        "fenced writes change nothing"
    );

    // Producer-id blocks from two brokers at once never overlap and leave no gaps.
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut tasks = Vec::new();
    for s in [&a, &b, &a, &b] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..15 {
                got.push(s.allocate_producer_ids(10).await.expect("allocate"));
            }
            got
        }));
    }
    let mut starts = Vec::new();
    for t in tasks {
        starts.extend(t.await.unwrap());
    }
    starts.sort_unstable();
    assert_eq!(starts, (0..60).map(|i| i * 10).collect::<Vec<i64>>());

    // The session ends: the registration goes at once, and the other broker sees it.
    a.close().await;
    wait_node(&raw, &layout::broker_path(1), false).await;
    view_until(&b, Duration::from_secs(1), "b sees 1 leave", |v| {
        broker_ids(v) == vec![2]
    })
    .await;
    assert!(a.is_fenced(), "a closed store is fenced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_against_rivulet_coordinator() {
    let server = Server::start();
    core_checks(&server.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_against_apache_zookeeper() {
    let Some(server) = ApacheZooKeeper::start() else {
        eprintln!("SKIPPED: Apache ZooKeeper (Debian libzookeeper-java + java) is not installed");
        return;
    };
    core_checks(&format!("{}/rivulet", server.addr)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_configs_and_deletion_through_the_tree() {
    let server = Server::start();
    // A chroot two levels deep that does not exist yet: the store creates it.
    let coordinator = format!("{}/rivulet/test", server.addr);
    let a = Arc::new(store(&coordinator, 1).await);
    let b = store(&coordinator, 2).await;
    let raw = raw(&coordinator).await;

    let assignment = vec![vec![1, 2], vec![2, 1]];
    let create = {
        let a = a.clone();
        let assignment = assignment.clone();
        tokio::spawn(async move {
            a.create_topic(NewTopic {
                name: "orders".into(),
                assignment,
                configs: [("retention.ms".to_string(), "60000".to_string())].into(),
            })
            .await
        })
    };
    wait_node(&raw, &layout::topic_path("orders"), true).await;
    let (data, _) = raw
        .get_data(&layout::topic_config_path("orders"))
        .await
        .unwrap();
    let cfg: layout::ConfigZnode = layout::decode("cfg", &data).unwrap();
    assert_eq!(cfg.config["retention.ms"], "60000");
    assert!(a.view().topic("orders").is_none(), "no partition state yet");
    // The controller's part, done by hand here: create_topic returns once states exist.
    let t0 = Instant::now();
    write_states(&raw, "orders", 0, &assignment).await;
    let meta = create.await.unwrap().expect("create_topic");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(meta.partitions.len(), 2);
    assert_eq!(meta.partitions[1].leader, 2);
    assert_eq!(meta.configs["retention.ms"], "60000");
    let vb = view_until(&b, Duration::from_secs(1), "b sees orders", |v| {
        v.topic("orders").is_some_and(|t| t.partitions.len() == 2)
    })
    .await;
    assert_eq!(vb.topic("orders").unwrap().id, meta.id);

    // Duplicate names are refused by the coordinator, whatever this broker's view says.
    let dup = b
        .create_topic(NewTopic {
            name: "orders".into(),
            assignment: vec![vec![2]],
            configs: BTreeMap::new(),
        })
        .await;
    assert!(matches!(dup, Err(MetadataError::TopicExists(_))), "{dup:?}");

    // Without a controller nothing creates states: a bounded wait, then Timeout.
    let t0 = Instant::now();
    let lonely = a
        .create_topic(NewTopic {
            name: "lonely".into(),
            assignment: vec![vec![1]],
            configs: BTreeMap::new(),
        })
        .await;
    assert!(
        matches!(lonely, Err(MetadataError::Timeout(_))),
        "{lonely:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(7));

    // Configs: topic and broker (default and per broker) reach the other broker's view.
    a.set_topic_configs(
        "orders",
        [("cleanup.policy".into(), "compact".into())].into(),
    )
    .await
    .unwrap();
    a.set_broker_configs(None, [("log.retention.ms".into(), "1000".into())].into())
        .await
        .unwrap();
    a.set_broker_configs(Some(2), [("log.retention.ms".into(), "2000".into())].into())
        .await
        .unwrap();
    assert_eq!(
        a.view().topic("orders").unwrap().configs["cleanup.policy"],
        "compact"
    );
    view_until(&b, Duration::from_secs(1), "b sees configs", |v| {
        v.topic("orders").is_some_and(|t| {
            t.configs.get("cleanup.policy").map(String::as_str) == Some("compact")
                && !t.configs.contains_key("retention.ms")
        }) && v
            .default_broker_configs
            .get("log.retention.ms")
            .map(String::as_str)
            == Some("1000")
            && v.broker_configs
                .get(&2)
                .and_then(|c| c.get("log.retention.ms"))
                .map(String::as_str)
                == Some("2000")
    })
    .await;
    assert!(matches!(
        a.set_topic_configs("nope", BTreeMap::new()).await,
        Err(MetadataError::UnknownTopic(_))
    ));

    // Growth: compare-and-set on the topic znode, new partitions numbered after the old.
    let grow = {
        let a = a.clone();
        tokio::spawn(async move { a.add_partitions("orders", vec![vec![1, 2]]).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (data, _) = raw.get_data(&layout::topic_path("orders")).await.unwrap();
        let z: layout::TopicZnode = layout::decode("t", &data).unwrap();
        if z.partitions.len() == 3 {
            assert_eq!(z.partitions["2"], vec![1, 2]);
            break;
        }
        assert!(Instant::now() < deadline, "partition 2 not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_states(&raw, "orders", 2, &[vec![1, 2], vec![2, 1], vec![1, 2]]).await;
    let grown = grow.await.unwrap().expect("add_partitions");
    assert_eq!(grown.partitions.len(), 3);
    view_until(&b, Duration::from_secs(1), "b sees 3 partitions", |v| {
        v.topic("orders").is_some_and(|t| t.partitions.len() == 3)
    })
    .await;

    // Deletion: the request znode, then (the controller's part, by hand) the topic goes.
    let delete = {
        let a = a.clone();
        tokio::spawn(async move { a.delete_topic("orders").await })
    };
    wait_node(&raw, &layout::delete_topic_path("orders"), true).await;
    let recreate = b
        .create_topic(NewTopic {
            name: "orders".into(),
            assignment: vec![vec![2]],
            configs: BTreeMap::new(),
        })
        .await;
    assert!(
        matches!(recreate, Err(MetadataError::TopicExists(_))),
        "pending deletion: {recreate:?}"
    );
    for p in 0..3 {
        raw.delete(&layout::partition_state_path("orders", p), None)
            .await
            .unwrap();
        raw.delete(&layout::partition_path("orders", p), None)
            .await
            .unwrap();
    }
    raw.delete(&layout::partitions_path("orders"), None)
        .await
        .unwrap();
    raw.delete(&layout::topic_path("orders"), None)
        .await
        .unwrap();
    delete.await.unwrap().expect("delete_topic");
    view_until(&b, Duration::from_secs(1), "b sees orders gone", |v| {
        v.topic("orders").is_none()
    })
    .await;
    assert!(matches!(
        a.delete_topic("orders").await,
        Err(MetadataError::UnknownTopic(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_broker_id_is_refused() {
    let server = Server::start();
    let _a = store(&server.addr, 7).await;
    let t0 = Instant::now();
    let err = ZkMetadataStore::connect(settings(&server.addr), me(7))
        .await
        .err()
        .expect("second broker 7 is refused")
        .to_string();
    assert!(err.contains("broker id 7 is already registered"), "{err}");
    // It waited about a session timeout for a crashed predecessor's session to expire.
    assert!(t0.elapsed() >= SESSION, "{:?}", t0.elapsed());
    assert!(t0.elapsed() < SESSION * 3 + Duration::from_secs(2));
}

/// The coordinator freezes (SIGSTOP) past the session timeout: the broker fences itself before
/// the session can expire, then on its own opens a new session, registers again and unfences;
/// the controller's per-session task is restarted with the new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_loss_fences_then_rejoins() {
    let server = Server::start();
    let s = store(&server.addr, 3).await;
    let first = s
        .sessions()
        .borrow()
        .clone()
        .expect("a session")
        .session_id();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let per_session = s.spawn_per_session(stop_rx, move |client, mut stop| {
        let seen = seen_tx.clone();
        async move {
            let _ = seen.send(client.session_id());
            let _ = stop.wait_for(|s| *s).await;
        }
    });
    assert_eq!(seen_rx.recv().await, Some(first));
    assert!(!s.is_fenced());

    server.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    while !s.is_fenced() {
        // Fenced ~4/5 of the session timeout after the last contact (which was before the
        // freeze): before the coordinator can expire the session and elect someone else.
        assert!(
            frozen.elapsed() < SESSION,
            "not fenced within the session timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fenced_after = frozen.elapsed();
    tokio::time::sleep(SESSION * 2 - fenced_after).await;
    assert!(s.is_fenced());
    server.signal(libc::SIGCONT);

    let resumed = Instant::now();
    while s.is_fenced() {
        assert!(
            resumed.elapsed() < Duration::from_secs(15),
            "not registered again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = s
        .sessions()
        .borrow()
        .clone()
        .expect("a session")
        .session_id();
    assert_ne!(first, second);
    let raw = raw(&server.addr).await;
    let stat = raw
        .check_stat(&layout::broker_path(3))
        .await
        .unwrap()
        .expect("registered again");
    assert_eq!(stat.ephemeral_owner, second.0);
    view_until(&s, Duration::from_secs(2), "itself in the view", |v| {
        broker_ids(v) == vec![3]
    })
    .await;
    // The per-session task ran again, with the new session.
    let mut last = None;
    while let Ok(Some(id)) = tokio::time::timeout(Duration::from_secs(2), seen_rx.recv()).await {
        last = Some(id);
        if id == second {
            break;
        }
    }
    assert_eq!(last, Some(second));
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(5), per_session)
        .await
        .expect("per-session runner stops")
        .unwrap();
    eprintln!("fenced {fenced_after:?} after the coordinator froze");
}

/// The broker itself stalls (the whole process paused: a stop signal, a frozen VM) past its
/// session timeout, so the coordinator expires the session while the broker hears nothing. The
/// first thing it sees after the pause must be that it is fenced: it may no longer lead. It then
/// learns that the session is gone, registers again and unfences.
#[test]
fn a_broker_paused_past_its_session_is_fenced_at_once() {
    let server = Server::start();
    // One thread runs everything, the client's connection included: blocking it pauses all.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = store(&server.addr, 6).await;
        let first = s.sessions().borrow().clone().expect("session").session_id();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!s.is_fenced());

        std::thread::sleep(SESSION * 2);
        assert!(
            s.is_fenced(),
            "a broker back from a pause past its session still leads"
        );

        let resumed = Instant::now();
        while s.is_fenced() {
            assert!(
                resumed.elapsed() < Duration::from_secs(15),
                "not registered again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let second = s.sessions().borrow().clone().expect("session").session_id();
        assert_ne!(first, second, "the session expired during the pause");
        s.close().await;
    });
}

/// A per-session task (the controller) that dies while its session lives on is started again
/// on that session: it must not leave the session holding `/controller` with nobody acting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_session_task_that_panics_is_started_again() {
    let server = Server::start();
    let s = store(&server.addr, 4).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let per_session = s.spawn_per_session(stop_rx, move |client, mut stop| {
        let seen = seen_tx.clone();
        let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let _ = seen.send((run, client.session_id()));
            if run == 0 {
                panic!("deliberate panic of the first run (test)");
            }
            let _ = stop.wait_for(|s| *s).await;
        }
    });
    let (first, session) = seen_rx.recv().await.expect("first run");
    assert_eq!(first, 0);
    let (second, again) = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv())
        .await
        .expect("started again within 5 s")
        .expect("second run");
    assert_eq!((second, again), (1, session));
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(5), per_session)
        .await
        .expect("per-session runner stops")
        .unwrap();
    s.close().await;
}

fn run_broker(args: &[&str]) -> (Option<i32>, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let out = Command::new(BROKER)
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--listen-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        t0.elapsed(),
    )
}

#[test]
fn bad_or_unreachable_coordinator_is_a_clear_error() {
    for bad in ["localhost", "h:2181,,h:2182", "h:2181/x/"] {
        let (code, err, _) = run_broker(&["--coordinator", bad]);
        // Like every bad setting: status 2, the flag named, the reason given.
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(err.contains("--coordinator"), "{bad}: {err}");
        assert!(
            err.contains("host:port[,host:port...][/chroot]"),
            "{bad}: {err}"
        );
    }
    // Nothing listens there.
    let nobody = format!("127.0.0.1:{}", free_port());
    let (code, err, took) = run_broker(&[
        "--coordinator",
        &nobody,
        "--coordinator-session-timeout-ms",
        "1000",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot reach the coordinator"), "{err}");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn broker_binary_joins_the_cluster_and_leaves_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let coordinator = format!("{}/cluster-a", server.addr);
    let mut child = Command::new(BROKER)
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--broker-id", "4", "--rack", "zone-b"])
        .args(["--listen-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .args(["--coordinator", &coordinator])
        .args(["--coordinator-session-timeout-ms", "4000"])
        .args(["--default-replication-factor", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    while !log.contains("rivulet-broker ready (cluster)") {
        assert!(Instant::now() < deadline, "not ready: {log}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push_str(&line);
            log.push('\n');
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("broker exited with {status}: {log}");
        }
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
    write!(s, "GET /readyz HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let raw = raw(&coordinator).await;
        let (data, _) = raw.get_data(&layout::broker_path(4)).await.unwrap();
        let z: layout::BrokerZnode = layout::decode("b", &data).unwrap();
        assert_eq!(z.rack.as_deref(), Some("zone-b"));
        // SIGTERM: the broker closes its session, so the registration goes at once.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        wait_node(&raw, &layout::broker_path(4), false).await;
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "broker did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// `GET /readyz` on the admin port: the status code, `None` when nothing answers.
fn readyz(admin: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    write!(s, "GET /readyz HTTP/1.0\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split_whitespace().nth(1)?.parse().ok()
}

/// Kafka's start-up order: the broker reads the metadata, recovers its logs and binds its
/// listener before it registers (the controller may make it leader the moment it does), and
/// is ready only once registered. Shown with its id still held by another session: meanwhile
/// the listener is bound, `/readyz` says 503 and the registration is the other session's; once
/// that session goes, the broker registers and becomes ready.
#[test]
fn broker_registers_only_once_it_can_serve() {
    use std::io::{BufRead, BufReader};
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (kafka, admin) = (free_port(), free_port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (blocker, raw) = rt.block_on(async {
        let blocker = raw(&server.addr).await;
        blocker
            .mkdir(
                layout::BROKER_IDS,
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .unwrap();
        blocker
            .create(
                &layout::broker_path(5),
                b"{}",
                &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .unwrap();
        (blocker, raw(&server.addr).await)
    });
    let blocker_session = blocker.session_id().0;
    let mut child = Command::new(BROKER)
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--broker-id", "5"])
        .args(["--listen-addr", &format!("127.0.0.1:{kafka}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .args(["--coordinator", &server.addr])
        .args(["--coordinator-session-timeout-ms", "4000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let drain = |log: &mut String| {
        while let Ok(line) = rx.try_recv() {
            log.push_str(&line);
            log.push('\n');
        }
    };

    // The listener is bound while the broker waits for its id.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", kafka)).is_err() {
        drain(&mut log);
        assert!(Instant::now() < deadline, "listener not bound: {log}");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("broker exited with {status}: {log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(readyz(admin), Some(503), "ready before registering");
    rt.block_on(async {
        let stat = raw.check_stat(&layout::broker_path(5)).await.unwrap();
        assert_eq!(stat.map(|s| s.ephemeral_owner), Some(blocker_session));
    });
    drain(&mut log);
    assert!(log.contains("logs recovered"), "{log}");
    assert!(!log.contains("registered with the coordinator"), "{log}");

    // The other session goes: the broker registers and becomes ready.
    drop(blocker);
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(admin) != Some(200) {
        drain(&mut log);
        assert!(Instant::now() < deadline, "not ready: {log}");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("broker exited with {status}: {log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(async {
        let stat = raw.check_stat(&layout::broker_path(5)).await.unwrap();
        let owner = stat.expect("registered").ephemeral_owner;
        assert_ne!(owner, blocker_session);
    });
    drain(&mut log);
    let recovered = log.find("logs recovered").expect("recovery logged");
    let registered = log
        .find("registered with the coordinator")
        .expect("registration logged");
    assert!(recovered < registered, "{log}");

    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "broker did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With the real controller running on each broker's session: topic creation returns once
/// leaders are elected and every broker sees the topic within a second; controlled shutdown
/// moves leadership away; deletion completes everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_lifecycle_with_the_controller() {
    use clap::Parser;
    use rivulet_broker::cluster::controller::{self, ControllerConfig};
    use rivulet_broker::config::BrokerConfig;

    let server = Server::start();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stores = Vec::new();
    for id in 1..=3 {
        let s = Arc::new(store(&server.addr, id).await);
        let cfg = ControllerConfig::from_broker(&BrokerConfig::parse_from([
            "rivulet-broker",
            "--broker-id",
            &id.to_string(),
            "--auto-leader-rebalance-enable",
            "false",
        ]));
        s.spawn_per_session(stop_rx.clone(), move |client, stop| {
            controller::run(client, cfg.clone(), stop)
        });
        stores.push(s);
    }
    for s in &stores {
        view_until(
            s,
            Duration::from_secs(5),
            "a controller and 3 brokers",
            |v| v.controller_id != -1 && v.brokers.len() == 3,
        )
        .await;
    }
    let assignment = vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]];
    let t0 = Instant::now();
    let meta = stores[0]
        .create_topic(NewTopic {
            name: "events".into(),
            assignment: assignment.clone(),
            configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
        })
        .await
        .expect("create_topic");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "create took {took:?}");
    eprintln!("create_topic (3 partitions, RF 3) returned after {took:?}");
    for (p, replicas) in assignment.iter().enumerate() {
        assert_eq!(meta.partitions[p].leader, replicas[0], "{meta:?}");
        assert_eq!(meta.partitions[p].isr.len(), 3, "{meta:?}");
    }
    for s in &stores[1..] {
        let v = view_until(s, Duration::from_secs(1), "events everywhere", |v| {
            v.topic("events").is_some_and(|t| t.partitions.len() == 3)
        })
        .await;
        assert_eq!(v.topic("events").unwrap().id, meta.id);
    }

    // Controlled shutdown of broker 1: it leads partition 0, which has other in-sync replicas.
    stores[0]
        .controlled_shutdown(Duration::from_secs(10))
        .await
        .expect("controlled shutdown");
    // Another broker's view follows within milliseconds (it is not the one that waited).
    let v = view_until(
        &stores[1],
        Duration::from_secs(1),
        "leadership of p0 off broker 1",
        |v| {
            v.topic("events")
                .is_some_and(|t| t.partitions[0].leader != 1)
        },
    )
    .await;
    let p0 = &v.topic("events").unwrap().partitions[0];
    assert_ne!(p0.leader, 1, "{p0:?}");

    stores[1]
        .delete_topic("events")
        .await
        .expect("delete_topic");
    for s in &stores {
        view_until(s, Duration::from_secs(1), "events gone everywhere", |v| {
            v.topic("events").is_none()
        })
        .await;
    }
    let _ = stop_tx.send(true);
    for s in &stores {
        s.close().await;
    }
}

/// AlterPartitionReassignments' store path: a request from any broker is merged into
/// `/admin/reassign_partitions` and answered once the controller has begun it; the views show
/// the move; a cancel from another broker reverts it; a reorder-only request completes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignment_requests_from_any_broker() {
    use clap::Parser;
    use rivulet_broker::cluster::controller::{self, ControllerConfig};
    use rivulet_broker::config::BrokerConfig;
    use rivulet_broker::metadata::Reassigning;

    let server = Server::start();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stores = Vec::new();
    for id in 1..=3 {
        let s = Arc::new(store(&server.addr, id).await);
        let cfg = ControllerConfig::from_broker(&BrokerConfig::parse_from([
            "rivulet-broker",
            "--broker-id",
            &id.to_string(),
            "--auto-leader-rebalance-enable",
            "false",
        ]));
        s.spawn_per_session(stop_rx.clone(), move |client, stop| {
            controller::run(client, cfg.clone(), stop)
        });
        stores.push(s);
    }
    for s in &stores {
        view_until(
            s,
            Duration::from_secs(5),
            "a controller and 3 brokers",
            |v| v.controller_id != -1 && v.brokers.len() == 3,
        )
        .await;
    }
    stores[0]
        .create_topic(NewTopic {
            name: "moving".into(),
            assignment: vec![vec![1, 2]],
            configs: BTreeMap::new(),
        })
        .await
        .expect("create_topic");
    let wait = Duration::from_secs(10);
    let key = ("moving".to_string(), 0);

    // Begun when the call returns: TRS then ORS−TRS, adding 3, removing 1. No broker process
    // replicates here, so it stays in progress.
    stores[1]
        .reassign_partitions(vec![("moving".into(), 0, Some(vec![3, 2]))], wait)
        .await
        .expect("reassign");
    let v = stores[1].view();
    assert_eq!(
        v.topic("moving").unwrap().partitions[0].replicas,
        vec![3, 2, 1]
    );
    assert_eq!(
        v.reassignments.get(&key),
        Some(&Reassigning {
            adding: vec![3],
            removing: vec![1],
        })
    );
    view_until(
        &stores[0],
        Duration::from_secs(1),
        "the move everywhere",
        |v| v.reassignments.contains_key(&key),
    )
    .await;

    // Cancelled through another broker: back to the original replicas (as a set: like Kafka, the
    // original order is not kept), nothing in progress.
    stores[2]
        .reassign_partitions(vec![("moving".into(), 0, None)], wait)
        .await
        .expect("cancel");
    let v = stores[2].view();
    assert!(v.reassignments.is_empty(), "{:?}", v.reassignments);
    let p0 = &v.topic("moving").unwrap().partitions[0];
    let mut replicas = p0.replicas.clone();
    replicas.sort();
    assert_eq!(replicas, vec![1, 2]);
    assert_eq!(p0.leader, 1);

    // Reordering only: nothing to add or remove, done at once; the leader (in the target) stays.
    stores[0]
        .reassign_partitions(vec![("moving".into(), 0, Some(vec![1, 2]))], wait)
        .await
        .expect("reorder");
    let v = view_until(&stores[0], Duration::from_secs(1), "reordered", |v| {
        v.topic("moving").unwrap().partitions[0].replicas == vec![1, 2]
    })
    .await;
    assert!(v.reassignments.is_empty());
    assert_eq!(v.topic("moving").unwrap().partitions[0].leader, 1);
    let raw = raw(&server.addr).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while raw
        .check_stat(layout::REASSIGN_PARTITIONS)
        .await
        .unwrap()
        .is_some()
    {
        assert!(Instant::now() < deadline, "every request is consumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let _ = stop_tx.send(true);
    for s in &stores {
        s.close().await;
    }
}

/// The coordinator restarts (same data, same port): sessions survive, and the watch goes on
/// delivering changes made after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_restart_keeps_the_view_current() {
    let server = Server::start();
    let a = store(&server.addr, 1).await;
    let first = a.sessions().borrow().clone().expect("session").session_id();
    let mut server = server;
    server.restart();
    let b = store(&server.addr, 2).await;
    view_until(
        &a,
        Duration::from_secs(10),
        "a sees b, registered after the restart",
        |v| broker_ids(v) == vec![1, 2],
    )
    .await;
    assert!(!a.is_fenced());
    let now = a.sessions().borrow().clone().expect("session").session_id();
    assert_eq!(first, now, "the session survived the restart");
    b.close().await;
    view_until(&a, Duration::from_secs(2), "a sees b leave", |v| {
        broker_ids(v) == vec![1]
    })
    .await;
}

/// Every session expires at once (the coordinator froze past the session timeout): each broker
/// registers again on a new session, a controller is elected again under a higher epoch on one
/// of them, and it acts — a topic gets its leaders, and a broker's loss moves leadership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_elected_again_after_every_session_expired() {
    use clap::Parser;
    use rivulet_broker::cluster::controller::{self, ControllerConfig};
    use rivulet_broker::config::BrokerConfig;

    let server = Server::start();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stores = Vec::new();
    let mut metrics = Vec::new();
    for id in 1..=2 {
        let s = Arc::new(store(&server.addr, id).await);
        let mut cfg = ControllerConfig::from_broker(&BrokerConfig::parse_from([
            "rivulet-broker",
            "--broker-id",
            &id.to_string(),
        ]));
        metrics.push(cfg.metrics.clone());
        cfg.retry_backoff = Duration::from_millis(100);
        s.spawn_per_session(stop_rx.clone(), move |client, stop| {
            controller::run(client, cfg.clone(), stop)
        });
        stores.push(s);
    }
    let v = view_until(&stores[0], Duration::from_secs(5), "a controller", |v| {
        v.controller_id != -1 && v.brokers.len() == 2
    })
    .await;
    let first_controller = v.controller_id;
    let look = raw(&server.addr).await;
    let epoch = |data: Vec<u8>| -> i32 { String::from_utf8(data).unwrap().trim().parse().unwrap() };
    let (e1, _) = look.get_data(layout::CONTROLLER_EPOCH).await.unwrap();
    let e1 = epoch(e1);
    drop(look);

    server.signal(libc::SIGSTOP);
    tokio::time::sleep(SESSION * 2).await;
    server.signal(libc::SIGCONT);

    // Both registered again (new sessions), and a controller under a newer epoch.
    for s in &stores {
        let resumed = Instant::now();
        while s.is_fenced() {
            assert!(
                resumed.elapsed() < Duration::from_secs(15),
                "not registered again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let raw = raw(&server.addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let e2 = loop {
        if let Ok((data, _)) = raw.get_data(layout::CONTROLLER_EPOCH).await {
            let e = epoch(data);
            if e > e1 && raw.check_stat(layout::CONTROLLER).await.unwrap().is_some() {
                break e;
            }
        }
        assert!(Instant::now() < deadline, "no controller elected again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v = view_until(
        &stores[0],
        Duration::from_secs(5),
        "the new controller",
        |v| v.controller_id != -1 && v.brokers.len() == 2,
    )
    .await;
    let controller = v.controller_id;
    // The metric follows the election by a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let active: Vec<bool> = metrics.iter().map(|m| m.is_active()).collect();
        let elected = metrics[(controller - 1) as usize].epoch() == e2 as i64;
        if active.iter().filter(|a| **a).count() == 1 && elected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "controller metrics: active {active:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // It acts: topic creation returns with leaders...
    let meta = stores[0]
        .create_topic(NewTopic {
            name: "after".into(),
            assignment: vec![vec![1, 2], vec![2, 1]],
            configs: BTreeMap::new(),
        })
        .await
        .expect("create_topic after the expiry");
    assert_eq!(meta.partitions[0].leader, 1);
    assert_eq!(meta.partitions[1].leader, 2);
    // ...and the other broker's loss moves its leadership.
    let other = if controller == 1 { 2 } else { 1 };
    let survivor = stores[(controller - 1) as usize].clone();
    stores[(other - 1) as usize].close().await;
    view_until(&survivor, Duration::from_secs(5), "leadership moved", |v| {
        v.topic("after")
            .is_some_and(|t| t.partitions.iter().all(|p| p.leader == controller))
    })
    .await;
    eprintln!("controller {first_controller} (epoch {e1}) → {controller} (epoch {e2})");
    let _ = stop_tx.send(true);
    survivor.close().await;
}
