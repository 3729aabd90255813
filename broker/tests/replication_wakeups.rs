//! Issue 10: a write in cluster mode must never wait for a follower's long-poll timer. Three
//! real `rivulet-broker` processes (and a real `rivulet-coordinator`) run with
//! replica.fetch.wait.max.ms = 30 s while every client request here gives up after 10 s, so a
//! write whose append does not wake the followers' parked fetches fails the test by a timeout,
//! not by a latency threshold:
//! - the group coordinator's own appends to `__consumer_offsets` (the group record that
//!   SyncGroup waits for, and OffsetCommit's offsets), which do not go through Produce;
//! - acks=all Produce requests pipelined on one connection: each must be appended on arrival,
//!   while the ones before it wait for the followers (checked by order: with a follower frozen,
//!   every pipelined batch reaches the leader's log before any answer), and a burst of them on
//!   several connections at once must be answered in order without a lost wake-up.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, JoinGroupRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rivulet_admin_client::{AdminClient, Connection};
use support::{free_port, Coordinator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BROKER: &str = env!("CARGO_BIN_EXE_rivulet-broker");
/// The followers' long poll: far longer than any client timeout below.
const FETCH_WAIT_MS: &str = "30000";
/// Every request's client-side timeout (and the limit of every wait for a state).
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cluster may take to settle (topic creation, the group coordinator loading).
const SETTLE: Duration = Duration::from_secs(30);
/// Produce v8: topics by name, non-flexible headers (request v1, response v0).
const PRODUCE_V: i16 = 8;

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
            .args(["--replica-fetch-wait-max-ms", FETCH_WAIT_MS])
            // A frozen follower stays in the ISR (and registered) for the whole test.
            .args(["--replica-lag-time-max-ms", "60000"])
            .args(["--coordinator-session-timeout-ms", "30000"])
            .args(["--replica-fetch-backoff-ms", "100"])
            .args(["--default-replication-factor", "3"])
            .args(["--offsets-topic-replication-factor", "3"])
            .args(["--offsets-topic-num-partitions", "1"])
            .args(["--group-initial-rebalance-delay-ms", "0"])
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

    /// SIGSTOP, and wait until every thread is really stopped (kill() returns before that).
    fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.child.id());
        let deadline = Instant::now() + TIMEOUT;
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

    /// Whether a segment file of `topic`-0 in this broker's log holds `needle`.
    fn log_holds(&self, topic: &str, needle: &str) -> bool {
        std::fs::read_dir(self.dir.join("data").join(format!("{topic}-0")))
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
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready(b: &Broker) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(&b.admin) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /readyz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        b.admin
    );
    let mut out = String::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_string(&mut out).is_ok()
        && out.lines().next().is_some_and(|l| l.contains(" 200"))
}

/// A coordinator and three brokers, all ready.
async fn cluster() -> (Coordinator, tempfile::TempDir, Vec<Broker>) {
    let coord = Coordinator::start();
    let root = tempfile::tempdir().expect("tempdir");
    let brokers: Vec<Broker> = (0..3)
        .map(|id| Broker::start(id, &coord.addr, root.path()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for b in &brokers {
        while !ready(b) {
            assert!(
                Instant::now() < deadline,
                "broker {} not ready:\n{}",
                b.id,
                b.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (coord, root, brokers)
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

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Creates a one-partition RF=3 topic and waits for its leader with a full ISR; the leader.
async fn create_topic(brokers: &[Broker], topic: &str) -> i32 {
    let mut admin = AdminClient::connect(&brokers[0].addr, TIMEOUT)
        .await
        .expect("admin client");
    admin
        .create_topic(topic, 1, 3, &BTreeMap::new())
        .await
        .expect("create topic");
    eventually(
        &format!("{topic}: a leader with a full ISR"),
        SETTLE,
        async || {
            let mut c = Connection::connect(&brokers[0].addr, TIMEOUT).await.ok()?;
            let req = MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(sb(topic)))),
            ]));
            let md = c.send(req).await.ok()?;
            let p = md.topics.first()?.partitions.first()?.clone();
            (p.leader_id.0 >= 0 && p.isr_nodes.len() == 3).then_some(p.leader_id.0)
        },
    )
    .await
}

fn error(code: i16) -> Option<ResponseError> {
    ResponseError::try_from_code(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_coordinator_writes_commit_without_waiting_for_the_fetch_timer() {
    let (_coord, _root, brokers) = cluster().await;
    let topic = "committed";
    create_topic(&brokers, topic).await;
    let group = "wakeups";

    // The group's coordinator (asking creates __consumer_offsets, RF=3).
    let coordinator = eventually("a group coordinator", SETTLE, async || {
        let mut c = Connection::connect(&brokers[0].addr, TIMEOUT).await.ok()?;
        let v = c.version::<FindCoordinatorRequest>().ok()?;
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![sb(group)])
        } else {
            FindCoordinatorRequest::default().with_key(sb(group))
        };
        let r = c.send(req).await.ok()?;
        let (code, node) = match r.coordinators.first() {
            Some(k) => (k.error_code, k.node_id.0),
            None => (r.error_code, r.node_id.0),
        };
        (code == 0 && node >= 0).then_some(node)
    })
    .await;
    let b = &brokers[coordinator as usize];
    let mut c = Connection::connect(&b.addr, TIMEOUT)
        .await
        .expect("connect to the group coordinator");

    // JoinGroup (v4+ hands out the member id first), retried while the coordinator loads.
    let mut member = String::new();
    let joined = eventually("JoinGroup", SETTLE, async || {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(sb(&member))
            .with_protocol_type(sb("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(sb("range"))
                .with_metadata(Bytes::from_static(b"subscription"))]);
        let r = c.send(req).await.expect(
            "JoinGroup unanswered within the client timeout (did the group write wait for the \
             followers' 30 s fetch wait?)",
        );
        match error(r.error_code) {
            None => Some(r),
            Some(ResponseError::MemberIdRequired) => {
                member = r.member_id.to_string();
                None
            }
            Some(
                ResponseError::CoordinatorLoadInProgress
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::NotCoordinator,
            ) => None,
            Some(e) => panic!("JoinGroup: {e:?}"),
        }
    })
    .await;
    let member = joined.member_id.to_string();
    assert_eq!(joined.leader.as_str(), member, "the only member leads");

    // SyncGroup answers once the group record is committed on all three replicas.
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(sb(&member))
        .with_protocol_type(Some(sb("consumer")))
        .with_protocol_name(Some(sb("range")))
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(sb(&member))
            .with_assignment(Bytes::from_static(b"assignment"))]);
    let r = c.send(sync).await.expect(
        "SyncGroup unanswered within the client timeout: the group record waited for the \
         followers' fetch wait",
    );
    assert_eq!(error(r.error_code), None, "SyncGroup");
    assert_eq!(r.assignment.as_ref(), b"assignment");

    // Synchronous commits, one after another, as a consumer committing after every message.
    for offset in 1..=10i64 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_generation_id_or_member_epoch(joined.generation_id)
            .with_member_id(sb(&member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(sb(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(sb("")))])]);
        let r = c.send(req).await.unwrap_or_else(|e| {
            panic!(
                "OffsetCommit {offset} unanswered within the client timeout ({e}): the offsets \
                 waited for the followers' fetch wait"
            )
        });
        let code = r.topics[0].partitions[0].error_code;
        assert_eq!(error(code), None, "OffsetCommit {offset}");
    }

    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(sb(group)))
        .with_member_epoch(-1)
        .with_topics(Some(vec![OffsetFetchRequestTopics::default()
            .with_name(TopicName(sb(topic)))
            .with_partition_indexes(vec![0])]))]);
    let r = c.send(req).await.expect("OffsetFetch");
    let p = &r.groups[0].topics[0].partitions[0];
    assert_eq!((p.error_code, p.committed_offset), (0, 10));
}

fn record_batch(value: &str) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_000,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// One framed acks=all Produce v8 of `value` to partition 0 of `topic`.
fn produce_frame(correlation_id: i32, topic: &str, value: &str) -> BytesMut {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(25_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(sb(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record_batch(value)))])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_V)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(sb("wakeups")));
    let mut body = BytesMut::new();
    header.encode(&mut body, 1).expect("header");
    req.encode(&mut body, PRODUCE_V).expect("produce");
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame
}

/// Reads one Produce v8 response: (correlation id, error code, base offset).
async fn read_produce_response(s: &mut TcpStream) -> (i32, i16, i64) {
    let read = async {
        let size = s.read_i32().await?;
        let mut buf = vec![0u8; size as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(Bytes::from(buf))
    };
    let mut buf = tokio::time::timeout(TIMEOUT, read)
        .await
        .expect(
            "Produce unanswered within the client timeout: did it wait for the followers' \
             fetch wait?",
        )
        .expect("read a Produce response");
    let header = ResponseHeader::decode(&mut buf, 0).expect("response header");
    let resp = ProduceResponse::decode(&mut buf, PRODUCE_V).expect("Produce response");
    assert!(!buf.has_remaining());
    let p = &resp.responses[0].partition_responses[0];
    (header.correlation_id, p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_acks_all_produces_are_appended_while_earlier_ones_wait() {
    let (_coord, _root, brokers) = cluster().await;
    let topic = "pipelined";
    let leader = &brokers[create_topic(&brokers, topic).await as usize];
    let follower = brokers
        .iter()
        .find(|b| b.id != leader.id)
        .expect("a follower");

    // The leader applies the new topic a moment after the metadata shows it: the first write
    // is retried as a client would.
    eventually("the leader accepting writes", SETTLE, async || {
        let mut s = TcpStream::connect(&leader.addr).await.ok()?;
        s.write_all(&produce_frame(0, topic, "warm-up"))
            .await
            .ok()?;
        let (_, code, _) = read_produce_response(&mut s).await;
        (code == 0).then_some(())
    })
    .await;

    // A frozen follower stays in the ISR: nothing written now can be committed until it thaws.
    follower.freeze();
    let mut s = TcpStream::connect(&leader.addr).await.expect("connect");
    let n = 5;
    let mut frames = BytesMut::new();
    for i in 1..=n {
        frames.extend_from_slice(&produce_frame(i, topic, &format!("pipe-{i}")));
    }
    s.write_all(&frames).await.expect("send pipelined produces");
    // Every batch reaches the leader's log while the first still waits for the followers (one
    // request at a time, the second would be read only after the first is answered).
    eventually(
        "every pipelined batch in the leader's log before any answer",
        TIMEOUT,
        async || {
            (1..=n)
                .all(|i| leader.log_holds(topic, &format!("pipe-{i}")))
                .then_some(())
        },
    )
    .await;
    let mut probe = [0u8; 1];
    assert!(
        matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a write was answered before the frozen follower could fetch it"
    );
    follower.signal(libc::SIGCONT);
    for i in 1..=n {
        let (corr, code, base) = read_produce_response(&mut s).await;
        assert_eq!(
            (corr, code, base),
            (i, 0, i as i64),
            "pipelined produce {i}"
        );
    }

    // A burst: several connections each pipelining many acks=all writes at once, overlapping
    // the followers' fetches; every one answered, in order, with no wait for the fetch timer.
    let conns = 4;
    let per_conn = 100;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let addr = leader.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.expect("connect");
            let mut frames = BytesMut::new();
            for i in 0..per_conn {
                frames.extend_from_slice(&produce_frame(i, "pipelined", &format!("b{c}-{i}")));
            }
            s.write_all(&frames).await.expect("send burst");
            let mut offsets = Vec::new();
            for i in 0..per_conn {
                let (corr, code, base) = read_produce_response(&mut s).await;
                assert_eq!((corr, code), (i, 0), "burst connection {c}, produce {i}");
                offsets.push(base);
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let offsets = t.await.expect("burst task");
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "one connection's writes are appended in its order"
        );
        all.extend(offsets);
    }
    all.sort_unstable();
    let first = n as i64 + 1;
    let want: Vec<i64> = (first..first + (conns * per_conn) as i64).collect();
    assert_eq!(all, want, "every burst write has its own offset");
}
