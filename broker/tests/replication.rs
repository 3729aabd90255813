//! Replication across three real `rivulet-broker` processes and a real `rivulet-coordinator`:
//! acks=all reaches every log and the high watermark; a SIGSTOPped follower leaves the ISR and
//! writes go on, and it rejoins after SIGCONT; a leader's unreplicated tail is truncated away
//! when it returns as a follower of a newer leader epoch.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rivulet_admin_client::{AdminClient, Connection};
use support::{free_port, Coordinator};

const BROKER: &str = env!("CARGO_BIN_EXE_rivulet-broker");
const TOPIC: &str = "replicated";
const LAG_MS: u64 = 1500;
// Longer than the lag time, so that a stopped follower leaves the ISR by the leader's shrink
// rather than by the controller on its session's expiry.
const SESSION_MS: u64 = 4000;
const TIMEOUT: Duration = Duration::from_secs(5);

struct Broker {
    id: i32,
    child: Child,
    addr: String,
    admin: String,
    dir: PathBuf,
}

impl Broker {
    fn start(id: i32, coordinator: &str, root: &std::path::Path) -> Broker {
        let addr = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let dir = root.join(format!("broker-{id}"));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let log = std::fs::File::create(dir.join("broker.log")).expect("log file");
        let child = Command::new(BROKER)
            .args(["--broker-id", &id.to_string()])
            .args(["--listen-addr", &addr, "--advertised-addr", &addr])
            .args(["--admin-addr", &admin])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--rack", ["zone-a", "zone-b", "zone-c"][id as usize % 3]])
            .args(["--coordinator", coordinator])
            .args(["--coordinator-session-timeout-ms", &SESSION_MS.to_string()])
            .args(["--replica-lag-time-max-ms", &LAG_MS.to_string()])
            .args(["--replica-fetch-wait-max-ms", "200"])
            .args(["--replica-fetch-backoff-ms", "100"])
            .args(["--default-replication-factor", "3"])
            .args(["--offsets-topic-replication-factor", "3"])
            .args(["--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rivulet-broker");
        Broker {
            id,
            child,
            addr,
            admin,
            dir,
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGSTOP, and wait until every thread is really stopped: kill() returns before a
    /// multi-threaded process has stopped, and a thread still running could answer a fetch that
    /// the scenario assumes never happens.
    fn stop(&self) {
        self.signal(libc::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let all_stopped = std::fs::read_dir(&tasks)
                .map(|dir| {
                    dir.flatten().all(|t| {
                        std::fs::read_to_string(t.path().join("stat"))
                            .ok()
                            .and_then(|st| {
                                st.rsplit_once(')')
                                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
                            })
                            .unwrap_or(true)
                    })
                })
                .unwrap_or(true);
            if all_stopped {
                return;
            }
            assert!(Instant::now() < deadline, "broker did not stop on SIGSTOP");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn partition_dir(&self) -> PathBuf {
        self.dir.join("data").join(format!("{TOPIC}-0"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET on the admin port: (status line, body).
fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// A gauge of partition 0 of the test topic from a broker's /metrics.
fn gauge(b: &Broker, name: &str) -> Option<i64> {
    let (_, body) = http_get(&b.admin, "/metrics")?;
    let prefix = format!("{name}{{topic=\"{TOPIC}\",partition=\"0\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// An unlabelled counter from a broker's /metrics.
fn counter(b: &Broker, name: &str) -> Option<i64> {
    let (_, body) = http_get(&b.admin, "/metrics")?;
    let prefix = format!("{name} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

async fn eventually<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (leader, leader epoch, isr) of partition 0, as broker `via` reports it.
async fn partition_state(via: &Broker) -> Option<(i32, i32, Vec<i32>)> {
    let mut c = Connection::connect(&via.addr, TIMEOUT).await.ok()?;
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))]));
    let md = c.send(req).await.ok()?;
    let t = md.topics.into_iter().next()?;
    let p = t.partitions.into_iter().find(|p| p.partition_index == 0)?;
    let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
    isr.sort_unstable();
    (p.leader_id.0 >= 0).then_some((p.leader_id.0, p.leader_epoch, isr))
}

fn batch(values: &[String]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// One Produce to `b` for partition 0: (error code, base offset).
async fn produce(b: &Broker, values: &[String], acks: i16, topic_id: uuid::Uuid) -> (i16, i64) {
    let mut c = Connection::connect(&b.addr, TIMEOUT)
        .await
        .expect("connect");
    let version = c.version::<ProduceRequest>().expect("Produce");
    let mut td =
        TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(batch(values)))]);
    td = if version >= 13 {
        td.with_topic_id(topic_id)
    } else {
        td.with_name(TopicName(StrBytes::from_static_str(TOPIC)))
    };
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(4_000)
        .with_topic_data(vec![td]);
    let resp = c.send(req).await.expect("produce");
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A consumer's Fetch (v11+, with client.rack) of partition 0 from `offset`: the partition's
/// answer and the values of the records it carried.
async fn consumer_fetch(
    b: &Broker,
    rack: &str,
    topic_id: uuid::Uuid,
    offset: i64,
) -> (PartitionData, Vec<String>) {
    let mut c = Connection::connect(&b.addr, TIMEOUT)
        .await
        .expect("connect");
    let version = c.version::<FetchRequest>().expect("Fetch");
    assert!(version >= 11);
    let mut topic = FetchTopic::default().with_partitions(vec![FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)]);
    topic = if version >= 13 {
        topic.with_topic_id(topic_id)
    } else {
        topic.with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
    };
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_rack_id(StrBytes::from_string(rack.to_string()))
        .with_topics(vec![topic]);
    let resp = c.send(req).await.expect("fetch");
    let pd = resp.responses[0].partitions[0].clone();
    let mut values = Vec::new();
    if let Some(mut data) = pd.records.clone() {
        for set in RecordBatchDecoder::decode_all(&mut data).expect("decode") {
            for r in set.records {
                if let Some(v) = r.value {
                    values.push(String::from_utf8_lossy(&v).into_owned());
                }
            }
        }
    }
    (pd, values)
}

fn values(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// Whether any segment file of the broker's partition holds `needle`.
fn on_disk(b: &Broker, needle: &str) -> bool {
    std::fs::read_dir(b.partition_dir())
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .any(|e| {
                    std::fs::read(e.path())
                        .map(|d| d.windows(needle.len()).any(|w| w == needle.as_bytes()))
                        .unwrap_or(false)
                })
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_replicate_shrink_expand_and_truncate() {
    let coord = Coordinator::start();
    let root = tempfile::tempdir().expect("tempdir");
    let brokers: Vec<Broker> = (0..3)
        .map(|id| Broker::start(id, &coord.addr, root.path()))
        .collect();
    for b in &brokers {
        let ready = async || {
            http_get(&b.admin, "/readyz").and_then(|(s, _)| s.contains(" 200").then_some(()))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ready().await.is_none() {
            assert!(
                Instant::now() < deadline,
                "broker {} not ready:\n{}",
                b.id,
                b.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let by_id = |id: i32| &brokers[id as usize];

    let mut admin = AdminClient::connect(&brokers[0].addr, TIMEOUT)
        .await
        .expect("admin client");
    let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
    let topic_id: uuid::Uuid = admin
        .create_topic(TOPIC, 1, 3, &configs)
        .await
        .expect("create topic")
        .parse()
        .expect("topic id");
    let (leader, epoch0, isr) = eventually("a leader with a full ISR", TIMEOUT, async || {
        partition_state(&brokers[0])
            .await
            .filter(|(_, _, isr)| isr.len() == 3)
    })
    .await;
    assert_eq!(isr, vec![0, 1, 2]);

    // acks=all reaches all three logs, and the leader's HW. The leader may apply the new
    // topic a moment after the metadata shows it: retry the first write as a client would.
    eventually("the leader accepting writes", TIMEOUT, async || {
        let r = produce(by_id(leader), &values("all0", 4), -1, topic_id).await;
        assert!(matches!(r.0, 0 | 3 | 6), "first produce: {r:?}");
        (r.0 == 0).then(|| assert_eq!(r.1, 0))
    })
    .await;
    for i in 1..5 {
        let r = produce(by_id(leader), &values(&format!("all{i}"), 4), -1, topic_id).await;
        assert_eq!(r, (0, i * 4), "acks=all produce {i}");
    }
    for b in &brokers {
        eventually(
            &format!("broker {} holds 20 records", b.id),
            TIMEOUT,
            async || (gauge(b, "rivulet_log_end_offset") == Some(20)).then_some(()),
        )
        .await;
    }
    eventually("the leader's HW at 20", TIMEOUT, async || {
        (gauge(by_id(leader), "rivulet_high_watermark") == Some(20)).then_some(())
    })
    .await;

    // KIP-392: a consumer in a follower's rack is sent to that follower, which serves it up
    // to its high watermark.
    let follower = (leader + 1) % 3;
    let rack = ["zone-a", "zone-b", "zone-c"][follower as usize];
    let (pd, _) = consumer_fetch(by_id(leader), rack, topic_id, 0).await;
    assert_eq!(pd.error_code, 0);
    assert_eq!(pd.preferred_read_replica.0, follower);
    assert!(pd.records.as_ref().is_none_or(|r| r.is_empty()));
    let (pd, read) = eventually("a read from the follower", TIMEOUT, async || {
        let (pd, v) = consumer_fetch(by_id(follower), rack, topic_id, 0).await;
        (pd.error_code == 0 && pd.high_watermark == 20).then_some((pd, v))
    })
    .await;
    assert_eq!(pd.preferred_read_replica.0, -1);
    assert_eq!(read.first().map(String::as_str), Some("all0-0"));
    // No client.rack, or the leader's own rack: the leader serves.
    let (pd, _) = consumer_fetch(by_id(leader), "", topic_id, 0).await;
    assert_eq!((pd.error_code, pd.preferred_read_replica.0), (0, -1));

    // A stopped follower leaves the ISR; acks=all goes on with two in-sync replicas.
    let stopped = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    by_id(stopped).signal(libc::SIGSTOP);
    let t0 = Instant::now();
    let r = produce(by_id(leader), &values("while-stopped", 3), -1, topic_id).await;
    assert_eq!(r, (0, 20), "acks=all with a stopped follower");
    eventually("the stopped follower out of the ISR", TIMEOUT, async || {
        partition_state(by_id(leader))
            .await
            .filter(|(_, _, isr)| *isr == sorted(&[leader, other]))
    })
    .await;
    assert!(t0.elapsed() >= Duration::from_millis(LAG_MS - 200));
    assert_eq!(counter(by_id(leader), "rivulet_isr_shrinks_total"), Some(1));
    by_id(stopped).signal(libc::SIGCONT);
    eventually(
        "the resumed follower back in the ISR",
        TIMEOUT,
        async || {
            partition_state(by_id(leader))
                .await
                .filter(|(_, _, isr)| isr.len() == 3)
        },
    )
    .await;
    eventually("the resumed follower caught up", TIMEOUT, async || {
        (gauge(by_id(stopped), "rivulet_log_end_offset") == Some(23)).then_some(())
    })
    .await;

    // Divergence: the followers pause (their long-polls run out first), the leader takes an
    // acks=1 tail alone and stops before anyone fetched it; a follower is elected in its place.
    by_id(stopped).stop();
    by_id(other).stop();
    // Longer than their fetch long-poll (200 ms) with room for a loaded machine, shorter than
    // the lag time, so the ISR stays whole.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let tail = values("unreplicated-tail", 3);
    assert_eq!(produce(by_id(leader), &tail, 1, topic_id).await, (0, 23));
    assert!(on_disk(by_id(leader), "unreplicated-tail-2"));
    by_id(leader).stop();
    by_id(stopped).signal(libc::SIGCONT);
    by_id(other).signal(libc::SIGCONT);
    let (new_leader, epoch1, _) = eventually(
        "a new leader after the old one stopped",
        Duration::from_millis(SESSION_MS) + Duration::from_secs(15),
        async || {
            partition_state(by_id(other))
                .await
                .filter(|(l, _, _)| *l != leader)
        },
    )
    .await;
    assert!(epoch1 > epoch0);
    let r = produce(
        by_id(new_leader),
        &values("after-failover", 2),
        -1,
        topic_id,
    )
    .await;
    assert_eq!(
        r,
        (0, 23),
        "the new leader continues from the committed end"
    );

    // The old leader returns as a follower, truncates its tail and catches up.
    by_id(leader).signal(libc::SIGCONT);
    eventually(
        "the old leader back in the ISR",
        Duration::from_secs(20),
        async || {
            partition_state(by_id(new_leader))
                .await
                .filter(|(_, _, isr)| isr.contains(&leader))
        },
    )
    .await;
    eventually("the old leader caught up", TIMEOUT, async || {
        (gauge(by_id(leader), "rivulet_log_end_offset") == Some(25)).then_some(())
    })
    .await;
    assert!(
        !on_disk(by_id(leader), "unreplicated-tail"),
        "old leader still holds its tail:\n{}",
        by_id(leader).log_tail()
    );
    assert!(on_disk(by_id(leader), "after-failover-1"));
}

fn sorted(ids: &[i32]) -> Vec<i32> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}
