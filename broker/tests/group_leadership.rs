//! Consumer groups move with the leadership of their `__consumer_offsets` partition: a broker
//! that stops leading it answers NOT_COORDINATOR and forgets the groups; one that becomes its
//! leader loads them from the log, including records another leader wrote meanwhile; a commit
//! waits until it is committed (and only then is visible to OffsetFetch) and fails
//! NOT_COORDINATOR if leadership moves while it waits.
//!
//! One broker in-process; leadership changes are applied to the partition the way the metadata
//! sync applies them in cluster mode (`Partition::apply_meta`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use clap::Parser;
use kafka_protocol::error::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use rivulet_broker::broker::Broker;
use rivulet_broker::config::BrokerConfig;
use rivulet_broker::group::records::{Key, OffsetValue};
use rivulet_broker::group::state::{CommittedOffset, JoinParams};
use rivulet_broker::group::{GroupCoordinator, OFFSETS_TOPIC};
use rivulet_broker::metadata::model::PartitionMeta;
use rivulet_broker::metadata::{BrokerMeta, NewTopic};
use rivulet_broker::partition::Partition;

const ME: i32 = 0;
const OTHER: i32 = 7;

async fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let cfg = BrokerConfig::try_parse_from([
        "rivulet-broker",
        "--data-dir",
        dir.to_str().unwrap(),
        "--offsets-topic-num-partitions",
        "1",
        "--group-initial-rebalance-delay-ms",
        "1000",
    ])
    .unwrap();
    let me = BrokerMeta {
        id: ME,
        host: "127.0.0.1".into(),
        port: 9092,
        rack: None,
        endpoints: vec![],
    };
    let b = Broker::open_standalone(cfg, me).unwrap();
    b.metadata
        .create_topic(NewTopic {
            name: "t".into(),
            assignment: vec![vec![ME]],
            configs: BTreeMap::new(),
        })
        .await
        .unwrap();
    b.sync_partitions().unwrap();
    b
}

fn offset(o: i64) -> CommittedOffset {
    CommittedOffset {
        offset: o,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 1,
    }
}

async fn commit(b: &Broker, o: i64) -> Result<ResponseError, ResponseError> {
    let r = b
        .groups
        .commit(b, "g", "", None, -1, vec![(("t".into(), 0), offset(o))])
        .await?;
    Ok(r[0].1)
}

async fn committed(b: &Broker) -> Result<Option<i64>, ResponseError> {
    let all = b.groups.fetch_offsets(b, "g").await?;
    Ok(all.get(&("t".to_string(), 0)).map(|c| c.offset))
}

fn set_role(p: &Partition, leader: i32, epoch: i32, isr: &[i32]) {
    let pm = PartitionMeta {
        index: 0,
        leader,
        leader_epoch: epoch,
        replicas: vec![ME, OTHER],
        isr: isr.to_vec(),
        partition_epoch: epoch,
    };
    p.apply_meta(&pm, 1, 0);
}

/// An offset commit of group `g` as another leader stored it: `offset` for t-0 at the log end.
fn foreign_commit(p: &Partition, o: i64, epoch: i32) {
    let key = Key::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
    }
    .encode();
    let value = OffsetValue {
        offset: o,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 2,
    }
    .encode();
    let base = p.log_end_offset();
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: epoch,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: base,
        sequence: -1,
        timestamp: 2,
        key: Some(key),
        value: Some(value),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [rec].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    p.append_replicated(&buf).unwrap();
    assert_eq!(p.log_end_offset(), base + 1);
}

#[tokio::test]
async fn groups_follow_the_leadership_of_their_offsets_partition() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path()).await;
    // The ticker drives timeouts and reconciles leadership every 100 ms, as in the broker.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    GroupCoordinator::spawn_ticker(b.clone(), stop_rx);
    // Standalone: this broker leads __consumer_offsets and coordinates the group.
    assert_eq!(commit(&b, 5).await, Ok(ResponseError::Unknown(0)));
    assert_eq!(committed(&b).await, Ok(Some(5)));
    let p = b.replicas.get(OFFSETS_TOPIC, 0).unwrap();

    // Another broker becomes leader: the group is not coordinated here any more.
    set_role(&p, OTHER, 1, &[ME, OTHER]);
    b.groups.reconcile(&b).await;
    assert_eq!(committed(&b).await, Err(ResponseError::NotCoordinator));
    assert_eq!(commit(&b, 6).await, Err(ResponseError::NotCoordinator));
    let (groups, err) = b.groups.list().await;
    assert!(groups.is_empty() && err.is_none(), "{groups:?} {err:?}");
    assert_eq!(
        b.groups.heartbeat(&b, "g", "m", None, 1).await,
        ResponseError::NotCoordinator
    );
    // The other leader stores a commit; this broker replicates it as a follower.
    foreign_commit(&p, 9, 1);

    // Leadership comes back: the group is loaded from the log, with the other leader's commit.
    set_role(&p, ME, 2, &[ME]);
    b.groups.reconcile(&b).await;
    assert_eq!(committed(&b).await, Ok(Some(9)));
    assert_eq!(commit(&b, 10).await, Ok(ResponseError::Unknown(0)));

    // A new epoch with nobody else writing keeps the loaded groups as they are: a JoinGroup
    // waiting out the initial rebalance delay (state only in memory) completes normally.
    let joining = {
        let b = b.clone();
        tokio::spawn(async move {
            let p = JoinParams {
                member_id: String::new(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "h".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), bytes::Bytes::from_static(b"x"))],
                require_known_member_id: false,
            };
            b.groups.join(&b, "g", p).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !joining.is_finished(),
        "the join did not wait for the rebalance delay"
    );
    set_role(&p, ME, 3, &[ME]);
    b.groups.reconcile(&b).await;
    assert_eq!(committed(&b).await, Ok(Some(10)));
    let joined = tokio::time::timeout(Duration::from_secs(5), joining)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(joined.error, 0, "{joined:?}");
    assert_eq!(joined.generation, 1);

    // With a follower in the ISR the answer waits for it, and OffsetFetch keeps answering the
    // last committed offset until the follower has the new one (the high watermark passed it).
    set_role(&p, ME, 4, &[ME, OTHER]);
    b.groups.reconcile(&b).await;
    let hw = p.high_watermark();
    p.record_follower_fetch(OTHER, hw, 0).unwrap();
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { commit(&b, 11).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the commit did not wait for the ISR"
    );
    assert_eq!(
        committed(&b).await,
        Ok(Some(10)),
        "an uncommitted offset is visible"
    );
    // Two commits waiting at once: the later one wins whichever answer comes first.
    let waiting_too = {
        let b = b.clone();
        tokio::spawn(async move { commit(&b, 12).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(committed(&b).await, Ok(Some(10)));
    p.record_follower_fetch(OTHER, p.log_end_offset(), 0)
        .unwrap();
    for w in [waiting, waiting_too] {
        let r = tokio::time::timeout(Duration::from_secs(3), w)
            .await
            .expect("the commit kept waiting after the follower caught up")
            .unwrap();
        assert_eq!(r, Ok(ResponseError::Unknown(0)));
    }
    assert_eq!(committed(&b).await, Ok(Some(12)));

    // Leadership moving while a commit waits fails it with NOT_COORDINATOR (the client looks
    // the coordinator up again), and the offset never became visible here.
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { commit(&b, 13).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the commit did not wait for the ISR"
    );
    assert_eq!(committed(&b).await, Ok(Some(12)));
    set_role(&p, OTHER, 5, &[ME, OTHER]);
    let r = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("the commit kept waiting after leadership moved")
        .unwrap();
    assert_eq!(r, Ok(ResponseError::NotCoordinator));
    b.groups.reconcile(&b).await;
    assert_eq!(committed(&b).await, Err(ResponseError::NotCoordinator));
    let _ = stop_tx.send(true);
}
