//! OffsetForLeaderEpoch (API 23) against a running broker process: requests encoded the way a
//! client does (kafka-protocol's client side), every supported version, before and after a
//! crash restart. Then, in-process, random requests against a log with several leader epochs
//! and a follower partition, checked against a model of Kafka's rules.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const BIN: &str = env!("CARGO_BIN_EXE_rivulet-broker");
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

use rivulet_testkit::free_port;

/// A broker process, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Broker {
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(["--listen-addr", &format!("127.0.0.1:{port}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let broker = Broker { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = TcpStream::connect(("127.0.0.1", admin))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                Some(out.starts_with("HTTP/1.1 200"))
            });
        if ready == Some(true) {
            return broker;
        }
        assert!(Instant::now() < deadline, "broker did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request/response exchange at `version` on a fresh connection.
fn exchange<R: Request + Encodable>(port: u16, req: &R, version: i16) -> R::Response
where
    R::Response: Decodable,
{
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("ofle-test")))
        .encode(&mut body, R::header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    let mut buf = Bytes::from(buf);
    let h = ResponseHeader::decode(&mut buf, R::Response::header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 7);
    let resp = R::Response::decode(&mut buf, version).unwrap();
    assert!(!buf.has_remaining(), "trailing bytes in the response");
    resp
}

fn create_topic(port: u16, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = exchange(port, &req, 5);
    assert_eq!(resp.topics[0].error_code, 0, "{resp:?}");
}

/// One uncompressed v2 batch of `records` records.
fn batch(records: usize) -> Vec<u8> {
    let recs: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: IndexMap::new(),
            delete_horizon: false,
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    batch.to_vec()
}

fn produce(port: u16, topic: &str, records: usize) -> i64 {
    let batch = Bytes::from(batch(records));
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let resp: ProduceResponse = exchange(port, &req, 9);
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{resp:?}");
    p.base_offset
}

/// (error, leader epoch, end offset) per (topic, partition, current epoch, epoch) asked.
fn ask(
    port: u16,
    version: i16,
    replica_id: i32,
    queries: &[(&str, i32, i32, i32)],
) -> Vec<(i16, i32, i64)> {
    let topics = queries
        .iter()
        .map(|&(topic, partition, current, epoch)| {
            OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch)])
        })
        .collect();
    let mut req = OffsetForLeaderEpochRequest::default().with_topics(topics);
    if version >= 3 {
        req = req.with_replica_id(BrokerId(replica_id));
    }
    let resp: OffsetForLeaderEpochResponse = exchange(port, &req, version);
    assert_eq!(resp.topics.len(), queries.len());
    resp.topics
        .iter()
        .zip(queries)
        .map(|(t, q)| {
            assert_eq!(t.topic.0.as_str(), q.0);
            let p = &t.partitions[0];
            assert_eq!(p.partition, q.1);
            (p.error_code, p.leader_epoch, p.end_offset)
        })
        .collect()
}

#[test]
fn answers_from_the_leader_epoch_cache_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    create_topic(broker.port, "epochs", 2);
    assert_eq!(ApiKey::OffsetForLeaderEpoch as i16, 23);
    for (i, n) in [3, 2, 5].into_iter().enumerate() {
        let base = produce(broker.port, "epochs", n);
        assert_eq!(base, [0, 3, 5][i]);
    }
    // The standalone broker leads every partition at epoch 0.
    let queries = [
        ("epochs", 0, -1, 0), // the latest epoch ends at the log end
        ("epochs", 0, 0, 0),  // with the current epoch given
        ("epochs", 0, -1, 1), // above the latest: undefined
        ("epochs", 0, 3, 0),  // a newer current epoch than the broker knows
        ("epochs", 1, -1, 0), // no data: the epoch was recorded when it became leader
        ("epochs", 2, -1, 0), // no such partition
        ("nope", 0, -1, 0),   // no such topic
    ];
    let want = vec![
        (0, 0, 10),
        (0, 0, 10),
        (0, -1, -1),
        (UNKNOWN_LEADER_EPOCH, -1, -1),
        (0, 0, 0),
        (UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
        (UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
    ];
    for version in 2..=4 {
        // A consumer (-1) and a follower (a broker id) ask the leader the same way.
        for replica in [-1, 1] {
            assert_eq!(
                ask(broker.port, version, replica, &queries),
                want,
                "v{version} replica {replica}"
            );
        }
    }
    // The cache survives a crash (SIGKILL) and the answer follows the log end.
    drop(broker);
    let broker = start(dir.path());
    assert_eq!(
        ask(broker.port, 4, -1, &[("epochs", 0, 0, 0)]),
        vec![(0, 0, 10)]
    );
    produce(broker.port, "epochs", 4);
    assert_eq!(
        ask(broker.port, 3, 2, &[("epochs", 0, -1, 0)]),
        vec![(0, 0, 14)]
    );
    assert!(dir.path().join("epochs-0/leader-epoch-checkpoint").exists());
}

mod in_process {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use clap::Parser;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{BrokerId, OffsetForLeaderEpochRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    use rivulet_broker::broker::Broker;
    use rivulet_broker::config::BrokerConfig;
    use rivulet_broker::handlers::offset_for_leader_epoch::handle;
    use rivulet_broker::metadata::model::PartitionMeta;
    use rivulet_broker::metadata::{BrokerMeta, NewTopic};
    use rivulet_broker::partition::Partition;

    const FENCED_LEADER_EPOCH: i16 = 74;
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;

    fn set_role(p: &Partition, leader: i32, epoch: i32) {
        let pm = PartitionMeta {
            index: p.index,
            leader,
            leader_epoch: epoch,
            replicas: vec![0, 7],
            isr: vec![0],
            partition_epoch: epoch,
        };
        p.apply_meta(&pm, 1, 0);
    }

    fn append(p: &Partition, records: usize) {
        let mut b = super::batch(records);
        let headers = rivulet_storage::validate_batches(&b).unwrap();
        p.append(&mut b, &headers, 0, 1).unwrap();
    }

    /// Partition 0 leads with epochs 0 (offsets 0..3), 2 (3..5), 5 (5..9); partition 1 follows
    /// broker 7 at epoch 1 after leading epoch 0 with no data.
    fn broker(dir: &std::path::Path) -> Arc<Broker> {
        let cfg =
            BrokerConfig::try_parse_from(["rivulet-broker", "--data-dir", dir.to_str().unwrap()])
                .unwrap();
        let me = BrokerMeta {
            id: 0,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            endpoints: vec![],
        };
        let b = Broker::open_standalone(cfg, me).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(b.metadata.create_topic(NewTopic {
            name: "t".into(),
            assignment: vec![vec![0], vec![0]],
            configs: BTreeMap::new(),
        }))
        .unwrap();
        b.sync_partitions().unwrap();
        let p0 = b.replicas.get("t", 0).unwrap();
        append(&p0, 3);
        set_role(&p0, 0, 2);
        append(&p0, 2);
        set_role(&p0, 0, 5);
        append(&p0, 4);
        set_role(&b.replicas.get("t", 1).unwrap(), 7, 1);
        b
    }

    /// Kafka's answer for partition 0.
    fn model0(current: i32, epoch: i32) -> (i16, i32, i64) {
        match current {
            0..=4 => return (FENCED_LEADER_EPOCH, -1, -1),
            c if c > 5 => return (super::UNKNOWN_LEADER_EPOCH, -1, -1),
            _ => {}
        }
        match epoch {
            5 => (0, 5, 9),
            2..=4 => (0, 2, 5),
            0 | 1 => (0, 0, 3),
            _ => (0, -1, -1),
        }
    }

    /// Partition 1 follows at epoch 1; only the debugging replica id may ask a non-leader.
    fn model1(current: i32, epoch: i32, replica: i32) -> (i16, i32, i64) {
        match current {
            0 => return (FENCED_LEADER_EPOCH, -1, -1),
            c if c > 1 => return (super::UNKNOWN_LEADER_EPOCH, -1, -1),
            _ => {}
        }
        if replica != -2 {
            return (NOT_LEADER_OR_FOLLOWER, -1, -1);
        }
        // Its cache holds epoch 0 at 0 (assigned when it led, no data).
        if epoch == 0 {
            (0, 0, 0)
        } else {
            (0, -1, -1)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_requests_follow_kafkas_rules(
            version in 2i16..=4,
            replica in prop_oneof![Just(-2), Just(-1), Just(1)],
            queries in proptest::collection::vec((0i32..3, -2i32..8, -2i32..8), 1..8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let b = broker(dir.path());
            let topics = queries
                .iter()
                .map(|&(partition, current, epoch)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(vec![OffsetForLeaderPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch)])
                })
                .collect();
            // Before v3 there is no replica id: the request counts as the debugging one.
            let replica = if version >= 3 { replica } else { -2 };
            let req = OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(replica))
                .with_topics(topics);
            let resp = handle(&b, version, req);
            prop_assert_eq!(resp.topics.len(), queries.len());
            for (t, &(partition, current, epoch)) in resp.topics.iter().zip(&queries) {
                let p = &t.partitions[0];
                let got = (p.error_code, p.leader_epoch, p.end_offset);
                let want = match partition {
                    0 => model0(current, epoch),
                    1 => model1(current, epoch, replica),
                    _ => (super::UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
                };
                prop_assert_eq!(got, want, "partition {} current {} epoch {}", partition, current, epoch);
            }
        }
    }
}
