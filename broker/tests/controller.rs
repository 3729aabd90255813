//! The controller against a real `rivulet-coordinator` process: election and failover, epoch
//! fencing of a deposed controller, partition states for new topics and partitions, leader
//! election on broker loss and return (clean and unclean), controlled shutdown, preferred-leader
//! election, topic deletion, partition reassignment, and convergence after a failover
//! mid-change. Brokers are fake: a
//! session per broker id holding its registration znode, as a real broker's would.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use rivulet_broker::cluster::controller::decisions::LeaderAndIsr;
use rivulet_broker::cluster::controller::fence::{self, WriteError};
use rivulet_broker::cluster::controller::{self, ControllerConfig};
use rivulet_broker::cluster::zk_layout::{
    self as layout, BrokerZnode, ConfigZnode, ControllerZnode, PartitionStateZnode,
    ReassignmentEntry, ReassignmentZnode, TopicZnode,
};
use rivulet_broker::metrics::ControllerMetrics;
use support::Coordinator;
use tokio::sync::watch;
use zookeeper_client as zk;

const SESSION: Duration = Duration::from_millis(2000);
const WAIT: Duration = Duration::from_secs(15);

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

async fn connect(addr: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(SESSION)
        .connect(addr)
        .await
        .expect("connect to the coordinator")
}

/// A session with the persistent parents in place (as every broker creates them).
async fn admin(addr: &str) -> zk::Client {
    let c = connect(addr).await;
    for p in layout::PERSISTENT_PARENTS {
        match c.create(p, b"", &persistent()).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => panic!("creating {p}: {e}"),
        }
    }
    c
}

async fn register_on(c: &zk::Client, id: i32) {
    let znode = BrokerZnode {
        version: 5,
        host: "127.0.0.1".into(),
        port: 9092 + id,
        rack: Some(format!("zone-{id}")),
        endpoints: vec![format!("PLAINTEXT://127.0.0.1:{}", 9092 + id)],
        timestamp: "0".into(),
    };
    c.create(
        &layout::broker_path(id),
        &layout::encode(&znode),
        &ephemeral(),
    )
    .await
    .expect("register broker");
}

/// A fake broker: its own session holding `/brokers/ids/<id>`.
async fn register(addr: &str, id: i32) -> zk::Client {
    let c = connect(addr).await;
    register_on(&c, id).await;
    c
}

fn config(id: i32) -> ControllerConfig {
    ControllerConfig {
        broker_id: id,
        unclean_default: false,
        auto_rebalance: true,
        // Long: the tests of the periodic check set it short themselves.
        rebalance_interval: Duration::from_secs(3600),
        imbalance_percentage: 10,
        // At once: the test of the hold sets it itself.
        leader_return_delay: Duration::ZERO,
        resync_interval: Duration::from_secs(30),
        retry_backoff: Duration::from_millis(50),
        metrics: Default::default(),
    }
}

/// `config(id)` reporting to metrics the test can read.
fn config_with_metrics(id: i32) -> (ControllerConfig, ControllerMetrics) {
    let metrics = ControllerMetrics::default();
    let cfg = ControllerConfig {
        metrics: metrics.clone(),
        ..config(id)
    };
    (cfg, metrics)
}

/// Waits until `f` holds (for a metric: it is set when a pass ends, after its writes).
async fn until(what: &str, f: impl Fn() -> bool) {
    eventually(what, || async { f().then_some(()) }).await
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_controller(client: &zk::Client, cfg: ControllerConfig) -> Running {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(controller::run(client.clone(), cfg, rx));
    Running { stop, task }
}

impl Running {
    /// Graceful stop: `run` gives `/controller` up and returns.
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("controller stops")
            .expect("controller task");
    }

    /// The task just disappears (with its clone of the session's client).
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Polls `f` until it gives `Some`, for at most `WAIT`.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn controller_of(c: &zk::Client) -> Option<i32> {
    let (data, _) = c.get_data(layout::CONTROLLER).await.ok()?;
    layout::decode::<ControllerZnode>(layout::CONTROLLER, &data)
        .ok()
        .map(|z| z.brokerid)
}

async fn controller_epoch(c: &zk::Client) -> Option<i32> {
    let (data, _) = c.get_data(layout::CONTROLLER_EPOCH).await.ok()?;
    String::from_utf8(data).ok()?.trim().parse().ok()
}

async fn state(c: &zk::Client, topic: &str, p: i32) -> Option<(PartitionStateZnode, i32)> {
    let path = layout::partition_state_path(topic, p);
    let (data, stat) = c.get_data(&path).await.ok()?;
    Some((
        layout::decode(&path, &data).expect("state JSON"),
        stat.version,
    ))
}

/// (leader, leader epoch, ISR) of a partition, once it has a state.
async fn lei(c: &zk::Client, topic: &str, p: i32) -> Option<(i32, i32, Vec<i32>)> {
    state(c, topic, p)
        .await
        .map(|(s, _)| (s.leader, s.leader_epoch, s.isr))
}

/// Waits until the partition's (leader, epoch, ISR) is `want`.
async fn expect_lei(c: &zk::Client, topic: &str, p: i32, want: (i32, i32, &[i32])) {
    let want = (want.0, want.1, want.2.to_vec());
    let what = format!("{topic}-{p} becomes {want:?}");
    let mut last = None;
    let deadline = Instant::now() + WAIT;
    loop {
        let got = lei(c, topic, p).await;
        if got.as_ref() == Some(&want) {
            return;
        }
        if got != last {
            last = got;
        }
        assert!(Instant::now() < deadline, "{what}: last seen {last:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn topic_znode(assignment: &[(i32, &[i32])]) -> Vec<u8> {
    layout::encode(&TopicZnode {
        version: 3,
        topic_id: "3f1c0c46-0d65-4d3c-9d4a-6f2f7c1a2b10".into(),
        partitions: assignment
            .iter()
            .map(|(p, r)| (p.to_string(), r.to_vec()))
            .collect(),
        internal: false,
        adding_replicas: Default::default(),
        removing_replicas: Default::default(),
    })
}

/// What a broker's CreateTopics writes: the config, then the topic znode.
async fn create_topic(c: &zk::Client, name: &str, assignment: &[(i32, &[i32])]) {
    create_topic_with(c, name, assignment, &[]).await
}

async fn create_topic_with(
    c: &zk::Client,
    name: &str,
    assignment: &[(i32, &[i32])],
    configs: &[(&str, &str)],
) {
    let cfg = ConfigZnode {
        version: 1,
        config: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    };
    c.create(
        &layout::topic_config_path(name),
        &layout::encode(&cfg),
        &persistent(),
    )
    .await
    .expect("create topic config");
    c.create(
        &layout::topic_path(name),
        &topic_znode(assignment),
        &persistent(),
    )
    .await
    .expect("create topic znode");
}

/// A leader's ISR change: compare-and-set on the state znode.
async fn set_isr(c: &zk::Client, topic: &str, p: i32, isr: &[i32]) {
    let (mut s, version) = state(c, topic, p).await.expect("state exists");
    s.isr = isr.to_vec();
    c.set_data(
        &layout::partition_state_path(topic, p),
        &layout::encode(&s),
        Some(version),
    )
    .await
    .expect("ISR write");
}

async fn one_of_two_candidates_wins_and_the_other_takes_over_when_its_session_ends(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let s2 = register(addr, 2).await;
    let c1 = spawn_controller(&s1, config(1));
    let c2 = spawn_controller(&s2, config(2));

    let winner = eventually("a controller is elected", || controller_of(&admin)).await;
    assert!(winner == 1 || winner == 2);
    // Exactly one election happened, and it sticks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(controller_of(&admin).await, Some(winner));
    assert_eq!(controller_epoch(&admin).await, Some(1));
    let owner = admin
        .check_stat(layout::CONTROLLER)
        .await
        .unwrap()
        .expect("/controller exists")
        .ephemeral_owner;
    let (winner_session, loser_session) = if winner == 1 { (&s1, &s2) } else { (&s2, &s1) };
    assert_eq!(owner, winner_session.session_id().0);
    assert_ne!(owner, loser_session.session_id().0);

    // The winner's session ends (task and client gone): the other one takes over, epoch 2.
    let (winner_task, loser_task, winner_session, loser) = if winner == 1 {
        (c1, c2, s1, 2)
    } else {
        (c2, c1, s2, 1)
    };
    winner_task.kill().await;
    drop(winner_session);
    eventually("the other candidate takes over", || async {
        (controller_of(&admin).await == Some(loser)).then_some(())
    })
    .await;
    assert_eq!(controller_epoch(&admin).await, Some(2));

    // A graceful stop gives /controller up at once.
    loser_task.stop().await;
    assert_eq!(controller_of(&admin).await, None);
}

async fn a_deposed_controllers_writes_fail_on_the_epoch_check(addr: &str) {
    let admin = admin(addr).await;
    let a = connect(addr).await;
    let b = connect(addr).await;

    let ea = fence::try_become_controller(&a, 1)
        .await
        .unwrap()
        .expect("a wins");
    assert_eq!(ea.value, 1);
    assert_eq!(fence::try_become_controller(&b, 2).await.unwrap(), None);

    admin
        .mkdir(&layout::partition_path("t", 0), &persistent())
        .await
        .unwrap();
    let s0 = PartitionStateZnode {
        version: 1,
        controller_epoch: 1,
        leader: 1,
        leader_epoch: 0,
        isr: vec![1, 2],
    };
    admin
        .create(
            &layout::partition_state_path("t", 0),
            &layout::encode(&s0),
            &persistent(),
        )
        .await
        .unwrap();
    let s1 = LeaderAndIsr {
        leader: 2,
        leader_epoch: 1,
        isr: vec![2],
    };
    let v = fence::set_partition_state(&a, &ea, "t", 0, &s1, 0)
        .await
        .expect("the controller's write");
    assert_eq!(v, 1);

    // The coordinator drops a's /controller (as when it expires a's session) while a still
    // believes it is the controller; b wins the next election.
    admin.delete(layout::CONTROLLER, None).await.unwrap();
    let eb = fence::try_become_controller(&b, 2)
        .await
        .unwrap()
        .expect("b wins");
    assert_eq!(eb.value, 2);

    let stale = LeaderAndIsr {
        leader: 1,
        leader_epoch: 2,
        isr: vec![1],
    };
    let err = fence::set_partition_state(&a, &ea, "t", 0, &stale, 1)
        .await
        .expect_err("a deposed controller's write");
    assert!(matches!(err, WriteError::Deposed), "{err:?}");
    let (now, version) = state(&admin, "t", 0).await.unwrap();
    assert_eq!((now.leader, now.leader_epoch, version), (2, 1, 1));
    assert!(!fence::still_controller(&a, &ea).await.unwrap());
    assert!(fence::still_controller(&b, &eb).await.unwrap());

    // The new controller's write goes through; one with a stale state version conflicts.
    let v = fence::set_partition_state(&b, &eb, "t", 0, &stale, 1)
        .await
        .expect("the new controller's write");
    assert_eq!(v, 2);
    let err = fence::set_partition_state(&b, &eb, "t", 0, &s1, 1)
        .await
        .expect_err("stale state version");
    assert!(matches!(err, WriteError::Conflict { op: 0, .. }), "{err:?}");
}

async fn a_running_controller_deposed_by_an_epoch_bump_campaigns_again(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let c1 = spawn_controller(&s1, config(1));
    eventually("elected", || async {
        (controller_epoch(&admin).await == Some(1)).then_some(())
    })
    .await;
    // Someone else's epoch: the controller notices its fence is gone, gives /controller up and
    // wins a fresh election above that epoch.
    admin
        .set_data(layout::CONTROLLER_EPOCH, b"10", None)
        .await
        .unwrap();
    eventually("re-elected with a newer epoch", || async {
        (controller_epoch(&admin).await == Some(11) && controller_of(&admin).await == Some(1))
            .then_some(())
    })
    .await;
    // And it acts under the new epoch.
    create_topic(&admin, "after", &[(0, &[1])]).await;
    let (s, _) = eventually("state under the new epoch", || state(&admin, "after", 0)).await;
    assert_eq!(s.controller_epoch, 11);
    c1.stop().await;
}

async fn new_topics_and_partitions_get_states_with_leaders(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let _s2 = register(addr, 2).await;
    let _s3 = register(addr, 3).await;
    let c = spawn_controller(&s1, config(1));

    create_topic(
        &admin,
        "orders",
        &[(0, &[1, 2, 3]), (1, &[2, 3, 1]), (2, &[3, 1, 2])],
    )
    .await;
    for (p, replicas) in [(0, [1, 2, 3]), (1, [2, 3, 1]), (2, [3, 1, 2])] {
        let (s, version) =
            eventually("partition state created", || state(&admin, "orders", p)).await;
        assert_eq!(s.leader, replicas[0], "preferred replica leads");
        assert_eq!(s.isr, replicas.to_vec());
        assert_eq!((s.leader_epoch, s.controller_epoch, version), (0, 1, 0));
    }

    // Partition growth (CreatePartitions rewrites the topic znode).
    admin
        .set_data(
            &layout::topic_path("orders"),
            &topic_znode(&[
                (0, &[1, 2, 3]),
                (1, &[2, 3, 1]),
                (2, &[3, 1, 2]),
                (3, &[1, 3, 2]),
            ]),
            None,
        )
        .await
        .unwrap();
    expect_lei(&admin, "orders", 3, (1, 0, &[1, 3, 2])).await;

    // Only dead replicas: no state until one registers; partly dead: the live ones.
    create_topic(&admin, "later", &[(0, &[7]), (1, &[7, 2])]).await;
    expect_lei(&admin, "later", 1, (2, 0, &[2])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state(&admin, "later", 0).await, None);
    let _s7 = register(addr, 7).await;
    expect_lei(&admin, "later", 0, (7, 0, &[7])).await;
    c.stop().await;
}

async fn broker_loss_moves_leaders_within_the_isr_and_return_restores_them(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let s2 = register(addr, 2).await;
    let _s3 = register(addr, 3).await;
    let c = spawn_controller(&s1, config(1));

    create_topic(
        &admin,
        "t",
        &[(0, &[1, 2, 3]), (1, &[2, 1, 3]), (2, &[3, 2, 1]), (3, &[2])],
    )
    .await;
    for p in 0..4 {
        eventually("state", || state(&admin, "t", p)).await;
    }
    // Broker 1 lags on partition 1: its leader (2) shrank the ISR.
    set_isr(&admin, "t", 1, &[2, 3]).await;
    expect_lei(&admin, "t", 1, (2, 0, &[2, 3])).await;

    // Broker 2's registration goes.
    admin.delete(&layout::broker_path(2), None).await.unwrap();
    // Led by 2 → the first replica in assignment order that is live and in sync (1 is not).
    expect_lei(&admin, "t", 1, (3, 1, &[3])).await;
    // Followers: 2 leaves the ISR, leader and epoch stay.
    expect_lei(&admin, "t", 0, (1, 0, &[1, 3])).await;
    expect_lei(&admin, "t", 2, (3, 0, &[3, 1])).await;
    // Nobody else in sync, unclean off: offline, 2 kept as the last ISR member.
    expect_lei(&admin, "t", 3, (-1, 1, &[2])).await;

    // Broker 2 returns: the offline partition gets it back as leader.
    register_on(&s2, 2).await;
    expect_lei(&admin, "t", 3, (2, 2, &[2])).await;
    // Partition 1 prefers 2, which is not in sync yet: no move until its leader adds it back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lei(&admin, "t", 1).await, Some((3, 1, vec![3])));
    set_isr(&admin, "t", 1, &[3, 2]).await;
    expect_lei(&admin, "t", 1, (2, 2, &[3, 2])).await;
    // The others kept their preferred leaders throughout.
    assert_eq!(lei(&admin, "t", 0).await, Some((1, 0, vec![1, 3])));
    c.stop().await;
}

/// A returned broker in sync gets the leadership it prefers back only after its hold
/// (leader_return_delay), not as soon as it registers.
async fn a_returned_broker_gets_its_leadership_back_after_the_hold(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let s2 = register(addr, 2).await;
    let mut cfg = config(1);
    cfg.leader_return_delay = Duration::from_secs(3);
    let c = spawn_controller(&s1, cfg);
    create_topic(&admin, "h", &[(0, &[2, 1])]).await;
    expect_lei(&admin, "h", 0, (2, 0, &[2, 1])).await;

    admin.delete(&layout::broker_path(2), None).await.unwrap();
    expect_lei(&admin, "h", 0, (1, 1, &[1])).await;
    register_on(&s2, 2).await;
    set_isr(&admin, "h", 0, &[1, 2]).await;
    let back = Instant::now();
    // In sync and preferred, but held: still led by 1 a second later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lei(&admin, "h", 0).await, Some((1, 1, vec![1, 2])));
    // Then it goes back, with no other event to wake the controller.
    expect_lei(&admin, "h", 0, (2, 2, &[1, 2])).await;
    assert!(
        back.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        back.elapsed()
    );
    c.stop().await;
}

async fn a_restarted_broker_loses_leadership_and_isr_membership(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let _s2 = register(addr, 2).await;
    let c = spawn_controller(&s1, config(1));
    create_topic(&admin, "t", &[(0, &[2, 1]), (1, &[2])]).await;
    expect_lei(&admin, "t", 0, (2, 0, &[2, 1])).await;
    expect_lei(&admin, "t", 1, (2, 0, &[2])).await;

    // Broker 2 restarts between two looks: its registration is replaced in one transaction.
    let mut m = admin.new_multi_writer();
    m.add_delete(&layout::broker_path(2), None).unwrap();
    let znode = layout::encode(&BrokerZnode {
        version: 5,
        host: "127.0.0.1".into(),
        port: 9094,
        rack: None,
        endpoints: vec!["PLAINTEXT://127.0.0.1:9094".into()],
        timestamp: "1".into(),
    });
    m.add_create(&layout::broker_path(2), &znode, &ephemeral())
        .unwrap();
    m.commit().await.expect("re-registration");

    // Its restarted log may miss what it had acknowledged as a follower: another in-sync
    // replica leads and it must catch up to rejoin; where it was the only one, it leads again
    // under a new epoch.
    expect_lei(&admin, "t", 0, (1, 1, &[1])).await;
    expect_lei(&admin, "t", 1, (2, 2, &[2])).await;
    c.stop().await;
}

async fn unclean_election_only_where_the_topic_allows_it(addr: &str) {
    let admin = admin(addr).await;
    let _s1 = register(addr, 1).await;
    let s2 = register(addr, 2).await;
    let (cfg, metrics) = config_with_metrics(2);
    let c = spawn_controller(&s2, cfg);

    create_topic_with(
        &admin,
        "dirty",
        &[(0, &[1, 2])],
        &[(controller::UNCLEAN_LEADER_ELECTION_ENABLE, "true")],
    )
    .await;
    create_topic(&admin, "clean", &[(0, &[1, 2])]).await;
    for t in ["dirty", "clean"] {
        eventually("state", || state(&admin, t, 0)).await;
        set_isr(&admin, t, 0, &[1]).await;
    }
    admin.delete(&layout::broker_path(1), None).await.unwrap();
    expect_lei(&admin, "dirty", 0, (2, 1, &[2])).await;
    expect_lei(&admin, "clean", 0, (-1, 1, &[1])).await;
    until(
        "one offline partition and one unclean election counted",
        || metrics.offline_partitions() == 1 && metrics.elections("unclean") == 1,
    )
    .await;
    assert_eq!(metrics.elections("clean"), 0);
    c.stop().await;
}

async fn controlled_shutdown_moves_leadership_and_isr_membership_away(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let _s2 = register(addr, 2).await;
    let s3 = register(addr, 3).await;
    let (cfg, metrics) = config_with_metrics(3);
    let c = spawn_controller(&s3, cfg);
    create_topic(
        &admin,
        "t",
        &[(0, &[1, 2, 3]), (1, &[2, 1, 3]), (2, &[3, 1, 2]), (3, &[1])],
    )
    .await;
    for p in 0..4 {
        eventually("state", || state(&admin, "t", p)).await;
    }
    s1.create(&layout::controlled_shutdown_path(1), b"", &ephemeral())
        .await
        .unwrap();
    expect_lei(&admin, "t", 0, (2, 1, &[2, 3])).await;
    expect_lei(&admin, "t", 1, (2, 0, &[2, 3])).await;
    expect_lei(&admin, "t", 2, (3, 0, &[3, 2])).await;
    // Its only replica: it keeps leading.
    assert_eq!(lei(&admin, "t", 3).await, Some((1, 0, vec![1])));
    // One leader moved (partition 0); the others only lost a follower.
    until("one controlled-shutdown election counted", || {
        metrics.elections("controlled_shutdown") == 1
    })
    .await;
    c.stop().await;
}

async fn periodic_preferred_leader_election(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let _s2 = register(addr, 2).await;
    let (mut cfg, metrics) = config_with_metrics(1);
    cfg.rebalance_interval = Duration::from_millis(300);
    let c = spawn_controller(&s1, cfg);
    create_topic(&admin, "t", &[(0, &[1, 2])]).await;
    eventually("state", || state(&admin, "t", 0)).await;
    // Leadership moved to 2 by someone (e.g. an earlier failover) with 1 still in sync.
    let (mut s, v) = state(&admin, "t", 0).await.unwrap();
    s.leader = 2;
    s.leader_epoch = 1;
    admin
        .set_data(
            &layout::partition_state_path("t", 0),
            &layout::encode(&s),
            Some(v),
        )
        .await
        .unwrap();
    expect_lei(&admin, "t", 0, (1, 2, &[1, 2])).await;
    until("one preferred election counted", || {
        metrics.elections("preferred") == 1
    })
    .await;

    // The periodic check acts only over leader.imbalance.per.broker.percentage (10 %): broker 1
    // prefers 21 partitions; 2 led elsewhere (9.5 %) stay so, a third (14 %) moves all three.
    let many: Vec<(i32, &[i32])> = (0..20).map(|p| (p, &[1, 2][..])).collect();
    create_topic(&admin, "many", &many).await;
    for p in 0..20 {
        eventually("state", || state(&admin, "many", p)).await;
    }
    let move_to_2 = |p: i32| {
        let admin = admin.clone();
        async move {
            let (mut s, v) = state(&admin, "many", p).await.unwrap();
            s.leader = 2;
            s.leader_epoch += 1;
            admin
                .set_data(
                    &layout::partition_state_path("many", p),
                    &layout::encode(&s),
                    Some(v),
                )
                .await
                .unwrap();
        }
    };
    move_to_2(0).await;
    move_to_2(1).await;
    // Five check intervals.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for p in 0..2 {
        let (s, _) = state(&admin, "many", p).await.unwrap();
        assert_eq!(s.leader, 2, "many-{p} moved below the imbalance threshold");
    }
    assert_eq!(metrics.elections("preferred"), 1);
    move_to_2(2).await;
    for p in 0..3 {
        expect_lei(&admin, "many", p, (1, 2, &[1, 2])).await;
    }
    until("three more preferred elections", || {
        metrics.elections("preferred") == 4
    })
    .await;
    assert!(metrics.is_active());
    c.stop().await;
    assert!(!metrics.is_active());
}

async fn delete_request_removes_the_topic(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let c = spawn_controller(&s1, config(1));
    create_topic_with(
        &admin,
        "gone",
        &[(0, &[1]), (1, &[1])],
        &[("retention.ms", "1000")],
    )
    .await;
    create_topic(&admin, "kept", &[(0, &[1])]).await;
    for p in 0..2 {
        eventually("state", || state(&admin, "gone", p)).await;
    }
    eventually("state", || state(&admin, "kept", 0)).await;
    admin
        .create(&layout::delete_topic_path("gone"), b"", &persistent())
        .await
        .unwrap();
    eventually("topic deleted", || async {
        let topic = admin.check_stat(&layout::topic_path("gone")).await.unwrap();
        let cfg = admin
            .check_stat(&layout::topic_config_path("gone"))
            .await
            .unwrap();
        let req = admin
            .check_stat(&layout::delete_topic_path("gone"))
            .await
            .unwrap();
        (topic.is_none() && cfg.is_none() && req.is_none()).then_some(())
    })
    .await;
    assert!(state(&admin, "kept", 0).await.is_some());
    c.stop().await;
}

async fn a_big_topic_is_created_and_deleted_in_several_transactions(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let c = spawn_controller(&s1, config(1));
    let replicas: &[i32] = &[1];
    let assignment: Vec<(i32, &[i32])> = (0..600).map(|p| (p, replicas)).collect();
    create_topic(&admin, "big", &assignment).await;
    eventually("every partition has a state", || async {
        let (parts, _) = admin
            .get_children(&layout::partitions_path("big"))
            .await
            .ok()?;
        (parts.len() == 600).then_some(())
    })
    .await;
    for p in [0, 249, 250, 599] {
        expect_lei(&admin, "big", p, (1, 0, &[1])).await;
    }
    admin
        .create(&layout::delete_topic_path("big"), b"", &persistent())
        .await
        .unwrap();
    eventually("topic deleted", || async {
        let topic = admin.check_stat(&layout::topic_path("big")).await.unwrap();
        let req = admin
            .check_stat(&layout::delete_topic_path("big"))
            .await
            .unwrap();
        (topic.is_none() && req.is_none()).then_some(())
    })
    .await;
    c.stop().await;
}

async fn a_new_controller_finishes_what_was_left_half_done(addr: &str) {
    let admin = admin(addr).await;
    let s1 = register(addr, 1).await;
    let _s2 = register(addr, 2).await;

    // Left by a controller that died mid-change: a topic without states, a topic with one of
    // two states whose leader (3) is gone, and a pending deletion.
    create_topic(&admin, "fresh", &[(0, &[2, 1])]).await;
    create_topic(&admin, "half", &[(0, &[3, 1, 2]), (1, &[1, 2])]).await;
    admin
        .mkdir(&layout::partition_path("half", 0), &persistent())
        .await
        .unwrap();
    let s = PartitionStateZnode {
        version: 1,
        controller_epoch: 1,
        leader: 3,
        leader_epoch: 4,
        isr: vec![3, 1],
    };
    admin
        .create(
            &layout::partition_state_path("half", 0),
            &layout::encode(&s),
            &persistent(),
        )
        .await
        .unwrap();
    create_topic(&admin, "doomed", &[(0, &[1])]).await;
    admin
        .create(&layout::delete_topic_path("doomed"), b"", &persistent())
        .await
        .unwrap();

    let c = spawn_controller(&s1, config(1));
    expect_lei(&admin, "fresh", 0, (2, 0, &[2, 1])).await;
    expect_lei(&admin, "half", 0, (1, 5, &[1])).await;
    expect_lei(&admin, "half", 1, (1, 0, &[1, 2])).await;
    eventually("pending deletion carried out", || async {
        let t = admin
            .check_stat(&layout::topic_path("doomed"))
            .await
            .unwrap();
        let r = admin
            .check_stat(&layout::delete_topic_path("doomed"))
            .await
            .unwrap();
        (t.is_none() && r.is_none()).then_some(())
    })
    .await;
    c.stop().await;
}

/// What a broker's AlterPartitionReassignments writes: the entries merged into
/// `/admin/reassign_partitions` (`None` = cancel).
async fn request_reassignment(c: &zk::Client, entries: &[(&str, i32, Option<&[i32]>)]) {
    let path = layout::REASSIGN_PARTITIONS;
    let mut z = match c.get_data(path).await {
        Ok((data, _)) => layout::decode::<ReassignmentZnode>(path, &data).unwrap(),
        Err(zk::Error::NoNode) => ReassignmentZnode {
            version: 1,
            partitions: Vec::new(),
        },
        Err(e) => panic!("reading {path}: {e}"),
    };
    for (topic, partition, replicas) in entries {
        z.partitions.push(ReassignmentEntry {
            topic: topic.to_string(),
            partition: *partition,
            replicas: replicas.map(|r| r.to_vec()),
        });
    }
    match c.set_data(path, &layout::encode(&z), None).await {
        Ok(_) => {}
        Err(zk::Error::NoNode) => {
            c.create(path, &layout::encode(&z), &persistent())
                .await
                .expect("create the reassignment request");
        }
        Err(e) => panic!("writing {path}: {e}"),
    }
}

/// (replicas, adding, removing) of a partition in the topic znode.
async fn assignment(c: &zk::Client, topic: &str, p: i32) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let path = layout::topic_path(topic);
    let (data, _) = c.get_data(&path).await.expect("topic znode");
    let t: TopicZnode = layout::decode(&path, &data).expect("topic JSON");
    let key = p.to_string();
    (
        t.partitions.get(&key).cloned().unwrap_or_default(),
        t.adding_replicas.get(&key).cloned().unwrap_or_default(),
        t.removing_replicas.get(&key).cloned().unwrap_or_default(),
    )
}

async fn expect_assignment(c: &zk::Client, topic: &str, p: i32, want: (&[i32], &[i32], &[i32])) {
    let want = (want.0.to_vec(), want.1.to_vec(), want.2.to_vec());
    let deadline = Instant::now() + WAIT;
    loop {
        let got = assignment(c, topic, p).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-{p} assignment becomes {want:?}: last seen {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn no_reassignment_request(c: &zk::Client) {
    eventually("the reassignment request is consumed", || async {
        c.check_stat(layout::REASSIGN_PARTITIONS)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

async fn reassignment_moves_replicas_in_two_phases_across_a_controller_failover(addr: &str) {
    let admin = admin(addr).await;
    let _s0 = register(addr, 0).await;
    let s1 = register(addr, 1).await;
    let s2 = register(addr, 2).await;
    let c1 = spawn_controller(&s1, config(1));
    eventually("broker 1 is controller", || async {
        (controller_of(&admin).await == Some(1)).then_some(())
    })
    .await;
    create_topic(&admin, "moved", &[(0, &[0, 1]), (1, &[0, 1])]).await;
    expect_lei(&admin, "moved", 0, (0, 0, &[0, 1])).await;
    expect_lei(&admin, "moved", 1, (0, 0, &[0, 1])).await;

    // Phase 1: TRS then ORS−TRS, adding/removing recorded; the invalid entries are dropped.
    request_reassignment(
        &admin,
        &[
            ("moved", 0, Some(&[1, 2])),
            ("moved", 1, Some(&[1, 1])),
            ("moved", 1, Some(&[1, 7])),
            ("nope", 0, Some(&[1])),
            ("moved", 9, Some(&[1])),
        ],
    )
    .await;
    expect_assignment(&admin, "moved", 0, (&[1, 2, 0], &[2], &[0])).await;
    no_reassignment_request(&admin).await;
    assert_eq!(
        assignment(&admin, "moved", 1).await,
        (vec![0, 1], vec![], vec![])
    );
    // Leader and ISR stay until the new replica is in sync.
    assert_eq!(lei(&admin, "moved", 0).await, Some((0, 0, vec![0, 1])));

    // The controller changes mid-reassignment: the state is all in the tree.
    let c2 = spawn_controller(&s2, config(2));
    c1.stop().await;
    eventually("broker 2 is controller", || async {
        (controller_of(&admin).await == Some(2)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    expect_assignment(&admin, "moved", 0, (&[1, 2, 0], &[2], &[0])).await;

    // The leader adds the caught-up replica to the ISR: phase 2 moves leadership into TRS
    // (epoch + 1), shrinks the ISR to TRS and finishes the assignment.
    set_isr(&admin, "moved", 0, &[0, 1, 2]).await;
    expect_lei(&admin, "moved", 0, (1, 1, &[1, 2])).await;
    expect_assignment(&admin, "moved", 0, (&[1, 2], &[], &[])).await;

    // Cancellation reverts to the original replicas; a cancel with nothing in progress is
    // dropped.
    request_reassignment(&admin, &[("moved", 1, Some(&[2, 1]))]).await;
    expect_assignment(&admin, "moved", 1, (&[2, 1, 0], &[2], &[0])).await;
    no_reassignment_request(&admin).await;
    request_reassignment(&admin, &[("moved", 1, None), ("moved", 0, None)]).await;
    expect_assignment(&admin, "moved", 1, (&[1, 0], &[], &[])).await;
    no_reassignment_request(&admin).await;
    assert_eq!(
        assignment(&admin, "moved", 0).await,
        (vec![1, 2], vec![], vec![])
    );
    assert_eq!(lei(&admin, "moved", 1).await, Some((0, 0, vec![0, 1])));

    // Growing the replication factor completes once the new replica is in sync; the leader,
    // in the target, stays.
    request_reassignment(&admin, &[("moved", 1, Some(&[0, 1, 2]))]).await;
    expect_assignment(&admin, "moved", 1, (&[0, 1, 2], &[2], &[])).await;
    set_isr(&admin, "moved", 1, &[0, 1, 2]).await;
    expect_assignment(&admin, "moved", 1, (&[0, 1, 2], &[], &[])).await;
    expect_lei(&admin, "moved", 1, (0, 0, &[0, 1, 2])).await;
    c2.stop().await;
}

/// Each scenario runs against its own `rivulet-coordinator`, and all of them, one after another
/// (each under its own chroot), against one Apache ZooKeeper 3.8 when it is installed.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod rivulet_coordinator {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let zk = super::Coordinator::start();
                    super::$name(&zk.addr).await;
                }
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn apache_zookeeper() {
            let Some(zk) = support::ApacheZooKeeper::start() else {
                eprintln!("SKIPPED: Apache ZooKeeper (Debian libzookeeper-java + java) is not installed");
                return;
            };
            let root = connect(&zk.addr).await;
            $(
                let chroot = concat!("/", stringify!($name));
                root.create(chroot, b"", &persistent()).await.expect("chroot");
                $name(&format!("{}{}", zk.addr, chroot)).await;
            )*
        }
    };
}

scenarios!(
    one_of_two_candidates_wins_and_the_other_takes_over_when_its_session_ends,
    a_deposed_controllers_writes_fail_on_the_epoch_check,
    a_running_controller_deposed_by_an_epoch_bump_campaigns_again,
    new_topics_and_partitions_get_states_with_leaders,
    broker_loss_moves_leaders_within_the_isr_and_return_restores_them,
    a_returned_broker_gets_its_leadership_back_after_the_hold,
    a_restarted_broker_loses_leadership_and_isr_membership,
    unclean_election_only_where_the_topic_allows_it,
    controlled_shutdown_moves_leadership_and_isr_membership_away,
    periodic_preferred_leader_election,
    delete_request_removes_the_topic,
    a_new_controller_finishes_what_was_left_half_done,
    a_big_topic_is_created_and_deleted_in_several_transactions,
    reassignment_moves_replicas_in_two_phases_across_a_controller_failover,
);

/// Waits until `c` is connected to the coordinator again.
async fn reconnected(c: &zk::Client) {
    let mut states = c.state_watcher();
    let deadline = Instant::now() + WAIT;
    while states.peek_state() != zk::SessionState::SyncConnected {
        assert!(Instant::now() < deadline, "no reconnection within {WAIT:?}");
        let _ = tokio::time::timeout(Duration::from_millis(100), states.changed()).await;
    }
}

/// The coordinator restarts (sessions survive, connections do not). zookeeper-client 0.11.2
/// does not re-arm persistent watches after a reconnection, so a controller that relied on the
/// ones it set on election would learn of changes only at its next full re-read (30 s here): it
/// must set them again. The controller runs on a session of its own (no other watch on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_keeps_reacting_after_a_coordinator_restart() {
    let mut zk = Coordinator::start();
    let addr = zk.addr.clone();
    keeps_reacting_after_a_restart(&addr, || zk.restart()).await;
}

/// The same with Apache ZooKeeper 3.8 (when installed), which has the same watch semantics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_keeps_reacting_after_an_apache_zookeeper_restart() {
    let Some(mut zk) = support::ApacheZooKeeper::start() else {
        eprintln!("SKIPPED: Apache ZooKeeper (Debian libzookeeper-java + java) is not installed");
        return;
    };
    let addr = zk.addr.clone();
    keeps_reacting_after_a_restart(&addr, || zk.restart()).await;
}

async fn keeps_reacting_after_a_restart(addr: &str, restart: impl FnOnce()) {
    let addr = addr.to_string();
    let admin = admin(&addr).await;
    let s1 = connect(&addr).await;
    let s2 = register(&addr, 2).await;
    let _s3 = register(&addr, 3).await;
    let (cfg, metrics) = config_with_metrics(1);
    let c = spawn_controller(&s1, cfg);
    create_topic(&admin, "t", &[(0, &[2, 3]), (1, &[3, 2])]).await;
    expect_lei(&admin, "t", 0, (2, 0, &[2, 3])).await;
    expect_lei(&admin, "t", 1, (3, 0, &[3, 2])).await;
    assert!(metrics.is_active());
    assert_eq!(metrics.epoch(), 1);

    restart();
    for c in [&admin, &s1, &s2] {
        reconnected(c).await;
    }
    // Past the re-read that follows the reconnection: only a watch can tell it what follows.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    drop(s2);
    let t0 = Instant::now();
    expect_lei(&admin, "t", 0, (3, 1, &[3])).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the controller took {took:?} to react to a broker loss after the restart"
    );
    expect_lei(&admin, "t", 1, (3, 0, &[3])).await;
    until("one clean election counted", || {
        metrics.elections("clean") == 1
    })
    .await;
    assert_eq!(metrics.offline_partitions(), 0);

    // And a topic created after the restart gets its states.
    create_topic(&admin, "u", &[(0, &[3])]).await;
    expect_lei(&admin, "u", 0, (3, 0, &[3])).await;
    c.stop().await;
    assert!(!metrics.is_active());
}
