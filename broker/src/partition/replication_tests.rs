//! The leader/follower bookkeeping of one partition: high watermark, acks=all waits, ISR
//! decisions, the follower append path and the HW checkpoint.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rivulet_storage::{validate_batches, LogConfig};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{AppendError, CommitError, Partition, Role};
use crate::metadata::PartitionMeta;

const ME: i32 = 1;

/// `n` records from producer `pid` (-1: none) starting at sequence `seq`.
fn batch(n: usize, pid: i64, seq: i32) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if pid >= 0 { seq + i as i32 } else { -1 },
            timestamp: 1_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from_static(b"value")),
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
    .expect("encode");
    buf.to_vec()
}

fn open(dir: &std::path::Path) -> Partition {
    Partition::open(
        dir.join("t-0"),
        "t",
        0,
        Uuid::nil(),
        LogConfig::default(),
        ME,
        Arc::new(Notify::new()),
    )
    .expect("open")
}

fn meta(leader: i32, epoch: i32, isr: &[i32], pe: i32) -> PartitionMeta {
    PartitionMeta {
        index: 0,
        leader,
        leader_epoch: epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        partition_epoch: pe,
    }
}

fn append(p: &Partition, n: usize) -> Result<super::Appended, AppendError> {
    let mut b = batch(n, -1, 0);
    let h = validate_batches(&b).expect("valid");
    p.append(&mut b, &h, 0, 1_000)
}

#[test]
fn alone_in_the_isr_everything_is_committed() {
    let d = tempfile::tempdir().unwrap();
    let p = open(d.path());
    p.apply_meta(
        &PartitionMeta {
            replicas: vec![ME],
            ..meta(ME, 0, &[ME], 0)
        },
        1,
        0,
    );
    assert!(p.is_leader());
    append(&p, 3).unwrap();
    assert_eq!(p.high_watermark(), 3);
}

#[tokio::test]
async fn hw_is_the_min_over_the_isr_and_acks_all_waits_for_it() {
    let d = tempfile::tempdir().unwrap();
    let p = Arc::new(open(d.path()));
    p.apply_meta(&meta(ME, 1, &[1, 2, 3], 0), 2, 0);
    let a = append(&p, 5).unwrap();
    assert_eq!(p.high_watermark(), 0);
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move {
            p.wait_committed(a.leader_epoch, a.last_offset, Duration::from_secs(5))
                .await
        })
    };
    assert!(!p.record_follower_fetch(2, 5, 10).unwrap());
    // Follower 3 not heard from: the HW waits for it.
    assert_eq!(p.high_watermark(), 0);
    p.record_follower_fetch(3, 2, 10).unwrap();
    assert_eq!(p.high_watermark(), 2);
    p.record_follower_fetch(3, 5, 20).unwrap();
    assert_eq!(p.high_watermark(), 5);
    assert_eq!(waiter.await.unwrap(), Ok(()));
    // Never back.
    p.record_follower_fetch(3, 4, 30).unwrap();
    assert_eq!(p.high_watermark(), 5);
}

#[tokio::test]
async fn acks_all_times_out_and_sees_leadership_move() {
    let d = tempfile::tempdir().unwrap();
    let p = Arc::new(open(d.path()));
    p.apply_meta(&meta(ME, 1, &[1, 2], 0), 1, 0);
    let a = append(&p, 1).unwrap();
    assert_eq!(
        p.wait_committed(a.leader_epoch, a.last_offset, Duration::from_millis(30))
            .await,
        Err(CommitError::Timeout)
    );
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move {
            p.wait_committed(a.leader_epoch, a.last_offset, Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    p.apply_meta(&meta(2, 2, &[2], 1), 1, 0);
    assert_eq!(waiter.await.unwrap(), Err(CommitError::NotLeader));
    assert_eq!(
        p.role(),
        Role::Follower {
            leader: 2,
            epoch: 2
        }
    );
    assert!(matches!(append(&p, 1), Err(AppendError::NotLeader)));
    assert!(p.needs_truncation());
    // An older view never takes leadership back.
    p.apply_meta(&meta(ME, 1, &[1, 2], 0), 1, 0);
    assert!(!p.is_leader());
}

#[tokio::test]
async fn a_replica_in_controlled_shutdown_is_not_added_back_to_the_isr() {
    let d = tempfile::tempdir().unwrap();
    let p = Arc::new(open(d.path()));
    p.apply_meta(&meta(ME, 1, &[1, 2], 4), 2, 0);
    append(&p, 2).unwrap();
    p.record_follower_fetch(2, 2, 100).unwrap();
    // Replica 3 (dropped from the ISR by its controlled shutdown) still fetches and is caught up.
    p.record_follower_fetch(3, 2, 100).unwrap();
    let shutting: std::collections::BTreeSet<i32> = [3].into_iter().collect();
    assert_eq!(p.isr_change_due_excluding(100, 1_000, &shutting), None);
    // Once its shutdown request is gone (it restarted), it may rejoin.
    let ch = p
        .isr_change_due_excluding(100, 1_000, &Default::default())
        .expect("expand due");
    assert_eq!(ch.new_isr, vec![1, 2, 3]);
}

#[tokio::test]
async fn shrink_expand_and_min_insync() {
    let d = tempfile::tempdir().unwrap();
    let p = Arc::new(open(d.path()));
    p.apply_meta(&meta(ME, 1, &[1, 2, 3], 4), 2, 0);
    append(&p, 2).unwrap();
    p.record_follower_fetch(2, 2, 4_500).unwrap();
    // 3 never fetched: after the lag time it is out.
    let ch = p.isr_change_due(5_000, 1_000).expect("shrink due");
    assert!(ch.shrink);
    assert_eq!(ch.new_isr, vec![1, 2]);
    assert_eq!((ch.leader_epoch, ch.partition_epoch), (1, 4));
    p.apply_isr(&meta(ME, 1, &[1, 2], 5));
    assert_eq!(p.isr(), vec![1, 2]);
    assert_eq!(p.high_watermark(), 2);
    assert!(p.is_under_replicated());
    // 3 catches up to the HW: an expansion is due.
    assert!(p.record_follower_fetch(3, 2, 5_100).unwrap());
    let ch = p.isr_change_due(5_100, 1_000).expect("expand due");
    assert!(!ch.shrink);
    assert_eq!(ch.new_isr, vec![1, 2, 3]);
    // ISR below min.insync.replicas=2 while waiting: committed, but refused.
    p.apply_isr(&meta(ME, 1, &[1], 6));
    let a = append(&p, 1).unwrap();
    assert_eq!(
        p.wait_committed(a.leader_epoch, a.last_offset, Duration::from_secs(1))
            .await,
        Err(CommitError::NotEnoughReplicas)
    );
}

#[test]
fn follower_append_keeps_offsets_and_moves_producer_state() {
    let d = tempfile::tempdir().unwrap();
    // The leader writes an idempotent batch in epoch 3.
    let leader_dir = d.path().join("leader");
    let leader = open(&leader_dir);
    leader.apply_meta(&meta(ME, 3, &[ME], 0), 1, 0);
    let mut b = batch(4, 42, 0);
    let h = validate_batches(&b).unwrap();
    leader.append(&mut b, &h, 0, 1_000).unwrap();
    let data = leader.read(0, 1 << 20, i64::MAX, true).unwrap().data;

    let f = open(&d.path().join("follower"));
    f.apply_meta(&meta(2, 3, &[1, 2], 0), 1, 0);
    // A trailing partial batch is left for the next fetch.
    let mut with_partial = data.to_vec();
    with_partial.extend_from_slice(&data[..20]);
    assert_eq!(f.append_replicated(&with_partial).unwrap(), 4);
    assert_eq!(f.latest_epoch(), Some(3));
    f.set_follower_hw(10);
    assert_eq!(f.high_watermark(), 4);
    // Leadership moves here: the producer's retry is recognised as a duplicate.
    f.apply_meta(&meta(ME, 4, &[1, 2], 1), 1, 0);
    let mut retry = batch(4, 42, 0);
    let h = validate_batches(&retry).unwrap();
    let a = f.append(&mut retry, &h, 0, 2_000).unwrap();
    assert!(a.duplicate);
    assert_eq!((a.base_offset, a.last_offset), (0, 3));
    // The new epoch starts at the log end.
    assert_eq!(f.end_offset_for_epoch(3), Some((3, 4)));
}

#[test]
fn truncation_rebuilds_producer_state_and_caps_hw() {
    let d = tempfile::tempdir().unwrap();
    let p = open(d.path());
    p.apply_meta(&meta(ME, 1, &[ME], 0), 1, 0);
    for s in 0..3 {
        let mut b = batch(2, 7, s * 2);
        let h = validate_batches(&b).unwrap();
        p.append(&mut b, &h, 0, 1_000).unwrap();
    }
    assert_eq!(p.high_watermark(), 6);
    p.apply_meta(&meta(2, 2, &[2], 1), 1, 0);
    p.truncate_to(2).unwrap();
    assert_eq!((p.log_end_offset(), p.high_watermark()), (2, 2));
    // Back as leader: sequence 2 is next again for producer 7.
    p.apply_meta(&meta(ME, 3, &[ME], 2), 1, 0);
    let mut b = batch(2, 7, 2);
    let h = validate_batches(&b).unwrap();
    let a = p.append(&mut b, &h, 0, 1_000).unwrap();
    assert!(!a.duplicate);
    assert_eq!(a.base_offset, 2);
}

#[test]
fn hw_checkpoint_survives_a_restart_capped_at_the_log_end() {
    let d = tempfile::tempdir().unwrap();
    {
        let p = open(d.path());
        p.apply_meta(&meta(ME, 1, &[1, 2], 0), 1, 0);
        append(&p, 5).unwrap();
        p.record_follower_fetch(2, 3, 10).unwrap();
        assert_eq!(p.high_watermark(), 3);
        p.checkpoint_hw().unwrap();
    }
    let p = open(d.path());
    assert_eq!(p.high_watermark(), 3);
    std::fs::write(d.path().join("t-0").join(super::HW_CHECKPOINT), "99\n").unwrap();
    assert_eq!(open(d.path()).high_watermark(), 5);
}

#[test]
fn a_follower_fetching_past_the_log_end_counts_for_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = open(d.path());
    p.apply_meta(&meta(ME, 1, &[1, 2], 0), 1, 0);
    append(&p, 4).unwrap();
    // A divergent follower (longer log of an older epoch) neither moves the HW nor joins.
    assert!(!p.record_follower_fetch(3, 9, 10).unwrap());
    assert_eq!(p.isr_change_due(10, 1_000), None);
    p.record_follower_fetch(2, 9, 10).unwrap();
    assert_eq!(p.high_watermark(), 0);
    p.record_follower_fetch(2, 4, 20).unwrap();
    assert_eq!(p.high_watermark(), 4);
    // Not a replica at all: refused.
    assert!(matches!(
        p.record_follower_fetch(7, 0, 30),
        Err(AppendError::NotLeader)
    ));
}

/// Every member of the stored ISR holds everything below the HW (the leader's own LEO counts
/// for it): otherwise electing that member loses committed, acknowledged writes.
fn assert_hw_within_isr(p: &Partition, leos: &[(i32, i64)]) {
    let hw = p.high_watermark();
    for id in p.isr() {
        let leo = if id == ME {
            p.log_end_offset()
        } else {
            leos.iter()
                .find(|(r, _)| *r == id)
                .map(|(_, l)| *l)
                .unwrap_or(-1)
        };
        assert!(
            hw <= leo,
            "HW {hw} above ISR member {id}'s log end {leo} (ISR {:?})",
            p.isr()
        );
    }
}

#[test]
fn hw_does_not_pass_a_follower_whose_isr_expansion_is_in_flight() {
    let d = tempfile::tempdir().unwrap();
    let p = open(d.path());
    p.apply_meta(&meta(ME, 1, &[1, 2], 0), 2, 0);
    append(&p, 10).unwrap();
    p.record_follower_fetch(2, 10, 100).unwrap();
    assert_eq!(p.high_watermark(), 10);
    // 3 reached the HW: the leader decides to add it and sends the compare-and-set...
    assert!(p.record_follower_fetch(3, 10, 100).unwrap());
    let ch = p.isr_change_due(100, 1_000).expect("expand due");
    assert_eq!(ch.new_isr, vec![1, 2, 3]);
    // ...and while it is in flight, more is written and 2 (but not 3) fetches it.
    append(&p, 5).unwrap();
    p.record_follower_fetch(2, 15, 150).unwrap();
    // The write lands: 3 is in the ISR with log end 10.
    p.apply_isr(&meta(ME, 1, &[1, 2, 3], 1));
    assert_hw_within_isr(&p, &[(2, 15), (3, 10)]);
    p.record_follower_fetch(3, 15, 200).unwrap();
    assert_eq!(p.high_watermark(), 15);
}

#[test]
fn an_isr_expansion_with_an_unknown_outcome_holds_the_hw_until_the_state_is_known() {
    let d = tempfile::tempdir().unwrap();
    let p = open(d.path());
    p.apply_meta(&meta(ME, 1, &[1, 2], 3), 2, 0);
    append(&p, 10).unwrap();
    p.record_follower_fetch(2, 10, 100).unwrap();
    assert!(p.record_follower_fetch(3, 10, 100).unwrap());
    let ch = p.isr_change_due(100, 1_000).expect("expand due");
    // The compare-and-set's answer is lost (connection loss): it may have been written.
    append(&p, 5).unwrap();
    p.record_follower_fetch(2, 15, 150).unwrap();
    assert_eq!(p.high_watermark(), 10, "3 may be in the stored ISR already");
    // Next round retries the same change (3 stopped fetching: no fresh decision would add it).
    assert_eq!(p.isr_change_due(5_000, 1_000), Some(ch));
    // The stored state turns up through the view: it was written.
    p.apply_meta(&meta(ME, 1, &[1, 2, 3], 4), 2, 200);
    assert_hw_within_isr(&p, &[(2, 15), (3, 10)]);
    // Or a later state without 3 (shrunk by the controller): the HW moves on.
    p.apply_meta(&meta(ME, 1, &[1, 2], 5), 2, 300);
    p.record_follower_fetch(2, 15, 300).unwrap();
    assert_eq!(p.high_watermark(), 15);
}

#[tokio::test]
async fn an_ack_waits_in_the_epoch_of_its_append() {
    // A multi-partition produce waits for one partition after another: meanwhile another
    // partition's leadership can move away (its unreplicated tail truncated) and come back in
    // a later epoch, where the HW passes the same offsets holding other data.
    let d = tempfile::tempdir().unwrap();
    let p = Arc::new(open(d.path()));
    p.apply_meta(&meta(ME, 1, &[1, 2], 0), 2, 0);
    let a = append(&p, 4).unwrap();
    p.apply_meta(&meta(2, 2, &[2], 1), 2, 0);
    p.truncate_to(0).unwrap();
    p.apply_meta(&meta(ME, 3, &[1, 2], 2), 2, 0);
    append(&p, 4).unwrap();
    p.record_follower_fetch(2, 4, 10).unwrap();
    assert_eq!(p.high_watermark(), 4);
    assert_eq!(
        p.wait_committed(a.leader_epoch, a.last_offset, Duration::from_millis(100))
            .await,
        Err(CommitError::NotLeader),
        "the acknowledged batch is no longer in the log"
    );
}

#[test]
fn a_leader_never_truncates() {
    let d = tempfile::tempdir().unwrap();
    let p = open(d.path());
    p.apply_meta(&meta(ME, 1, &[1, 2], 0), 2, 0);
    append(&p, 5).unwrap();
    // A fetch response handled just as leadership arrived must not cut the new leader's log.
    p.truncate_to(2).unwrap();
    assert_eq!(p.log_end_offset(), 5);
    p.truncate_fully_and_start_at(9).unwrap();
    assert_eq!((p.log_start_offset(), p.log_end_offset()), (0, 5));
}

#[test]
fn a_fetch_response_of_an_older_leader_epoch_is_not_appended() {
    let d = tempfile::tempdir().unwrap();
    let leader = open(&d.path().join("leader"));
    leader.apply_meta(&meta(ME, 3, &[ME], 0), 1, 0);
    append(&leader, 4).unwrap();
    let data = leader.read(0, 1 << 20, i64::MAX, true).unwrap().data;

    let f = open(&d.path().join("follower"));
    f.apply_meta(&meta(2, 3, &[1, 2], 0), 1, 0);
    // Not reconciled with epoch 3's leader yet.
    assert!(matches!(
        f.append_replicated_from(2, 3, &data),
        Err(AppendError::NotLeader)
    ));
    f.truncation_done(3);
    // The leader changed while the response from broker 2 (epoch 3) was being handled.
    f.apply_meta(&meta(3, 4, &[1, 3], 1), 1, 0);
    f.truncation_done(4);
    assert!(matches!(
        f.append_replicated_from(2, 3, &data),
        Err(AppendError::NotLeader)
    ));
    assert_eq!(f.log_end_offset(), 0);
    assert_eq!(f.append_replicated_from(3, 4, &data).unwrap(), 4);
}

#[tokio::test]
async fn a_pending_isr_expansion_does_not_count_for_min_insync() {
    let d = tempfile::tempdir().unwrap();
    let p = open(d.path());
    p.apply_meta(&meta(ME, 1, &[ME], 0), 2, 0);
    assert!(p.record_follower_fetch(2, 0, 100).unwrap());
    let ch = p.isr_change_due(100, 1_000).expect("expand due");
    assert_eq!(ch.new_isr, vec![1, 2]);
    // Not written yet: the stored ISR is still [1], below min.insync.replicas=2, even once 2
    // holds the batch.
    assert_eq!(p.isr(), vec![ME]);
    let a = append(&p, 1).unwrap();
    p.record_follower_fetch(2, 1, 150).unwrap();
    assert_eq!(p.high_watermark(), 1);
    assert_eq!(
        p.wait_committed(a.leader_epoch, a.last_offset, Duration::from_millis(100))
            .await,
        Err(CommitError::NotEnoughReplicas)
    );
    // The write lands: now it counts.
    p.apply_isr(&meta(ME, 1, &[1, 2], 1));
    assert_eq!(
        p.wait_committed(a.leader_epoch, a.last_offset, Duration::from_millis(100))
            .await,
        Ok(())
    );
}

/// KIP-101 end to end on two replicas: the old leader's unreplicated idempotent tail is cut on
/// the leader change, and with it the producer's sequence state, so the producer's retry (which
/// the new leader appended at other offsets) is answered with the new leader's offsets.
#[test]
fn an_old_leaders_unreplicated_tail_and_its_producer_state_go_on_truncation() {
    use crate::replication::truncation::{truncation_offset, LeaderAnswer};
    let d = tempfile::tempdir().unwrap();
    let open_as = |name: &str, me: i32| {
        Partition::open(
            d.path().join(name),
            "t",
            0,
            Uuid::nil(),
            LogConfig::default(),
            me,
            Arc::new(Notify::new()),
        )
        .expect("open")
    };
    let idem = |p: &Partition, seq: i32| {
        let mut b = batch(2, 42, seq);
        let h = validate_batches(&b).unwrap();
        p.append(&mut b, &h, 0, 1_000).unwrap()
    };
    let (a, b) = (open_as("a", 1), open_as("b", 2));
    a.apply_meta(&meta(1, 1, &[1, 2], 0), 2, 0);
    b.apply_meta(&meta(1, 1, &[1, 2], 0), 2, 0);
    b.truncation_done(1);
    append(&a, 4).unwrap();
    let data = a.read(0, 1 << 20, i64::MAX, true).unwrap().data;
    b.append_replicated_from(1, 1, &data).unwrap();
    // A's tail, never replicated: producer 42's first batch at 4..5.
    assert_eq!(idem(&a, 0).base_offset, 4);

    // B takes over in epoch 2, writes 3 records, then the producer's retry lands at 7..8.
    b.apply_meta(&meta(2, 2, &[2], 1), 2, 0);
    append(&b, 3).unwrap();
    let retried = idem(&b, 0);
    assert!(!retried.duplicate);
    assert_eq!(retried.base_offset, 7);

    // A follows B: OffsetForLeaderEpoch for A's latest epoch (1) says it ends at 4 on B.
    a.apply_meta(&meta(2, 2, &[2], 1), 2, 0);
    assert!(a.needs_truncation());
    let latest = a.latest_epoch().unwrap();
    let (epoch, end_offset) = b.end_offset_for_epoch(latest).unwrap();
    let t = truncation_offset(
        latest,
        LeaderAnswer::EpochEnd { epoch, end_offset },
        a.log_end_offset(),
        a.high_watermark(),
        |e| a.end_offset_for_epoch(e),
    );
    assert_eq!((t.offset, t.done), (4, true));
    a.truncate_to(t.offset).unwrap();
    a.truncation_done(2);
    let rest = b.read(4, 1 << 20, i64::MAX, true).unwrap().data;
    assert_eq!(a.append_replicated_from(2, 2, &rest).unwrap(), 9);

    // A leads again: the producer's retry of the same batch is the one at 7..8.
    a.apply_meta(&meta(1, 3, &[1, 2], 2), 2, 0);
    let again = idem(&a, 0);
    assert!(again.duplicate);
    assert_eq!((again.base_offset, again.last_offset), (7, 8));
    // And its next batch continues the sequence.
    assert_eq!(idem(&a, 2).base_offset, 9);
}

/// A view with topic `t` whose partitions have the given replicas.
fn view_with(replicas: &[&[i32]]) -> Arc<crate::metadata::ClusterView> {
    let topic = crate::metadata::TopicMeta {
        name: "t".into(),
        id: Uuid::from_u128(7),
        partitions: replicas
            .iter()
            .enumerate()
            .map(|(i, r)| PartitionMeta {
                index: i as i32,
                leader: r[0],
                leader_epoch: 0,
                replicas: r.to_vec(),
                isr: r.to_vec(),
                partition_epoch: 0,
            })
            .collect(),
        configs: Default::default(),
        internal: false,
    };
    let mut v = crate::metadata::ClusterView::default();
    v.topics.insert("t".into(), Arc::new(topic));
    Arc::new(v)
}

#[test]
fn a_replica_reassigned_away_deletes_its_log_and_strays_go_at_start() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::BrokerConfig::try_parse_from([
        "rivulet-broker",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ])
    .unwrap();
    let rm = super::ReplicaManager::new(dir.path(), ME);
    rm.reconcile(|| view_with(&[&[ME, 2], &[2, ME]]), &cfg)
        .unwrap();
    assert!(dir.path().join("t-0").is_dir() && dir.path().join("t-1").is_dir());
    // Reassigned away from partition 0 (StopReplica with delete): the log goes.
    rm.reconcile(|| view_with(&[&[2, 3], &[2, ME]]), &cfg)
        .unwrap();
    assert!(rm.get("t", 0).is_none());
    assert!(!dir.path().join("t-0").exists());
    assert!(dir.path().join("t-1").is_dir());
    drop(rm);

    // Reassigned away from partition 1 while down: a new start deletes the stray log.
    let rm = super::ReplicaManager::new(dir.path(), ME);
    rm.reconcile(|| view_with(&[&[2, 3], &[2, 3], &[ME, 2]]), &cfg)
        .unwrap();
    assert!(!dir.path().join("t-1").exists());
    assert!(dir.path().join("t-2").is_dir());
}

#[tokio::test]
async fn a_stopped_replica_releases_acks_all_waits_at_once() {
    let d = tempfile::tempdir().unwrap();
    let p = Arc::new(open(d.path()));
    p.apply_meta(&meta(ME, 1, &[1, 2], 0), 1, 0);
    let a = append(&p, 1).unwrap();
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move {
            p.wait_committed(a.leader_epoch, a.last_offset, Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t0 = std::time::Instant::now();
    p.stop();
    assert_eq!(waiter.await.unwrap(), Err(CommitError::NotLeader));
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(!p.is_leader());
}

/// Issue 10: the group coordinator appends to __consumer_offsets through `Partition::append`,
/// not through the Produce handler; an append that does not move the high watermark (followers
/// still to fetch it) must still wake the parked fetches, or the followers see it only when
/// their replica.fetch.wait.max.ms runs out.
#[tokio::test]
async fn every_leader_append_wakes_parked_fetches() {
    let d = tempfile::tempdir().unwrap();
    let wake = Arc::new(Notify::new());
    let p = Partition::open(
        d.path().join("t-0"),
        "t",
        0,
        Uuid::nil(),
        LogConfig::default(),
        ME,
        wake.clone(),
    )
    .expect("open");
    p.apply_meta(&meta(ME, 1, &[1, 2, 3], 0), 2, 0);
    for n in 1..=3 {
        let parked = wake.notified();
        tokio::pin!(parked);
        parked.as_mut().enable();
        append(&p, n).unwrap();
        assert_eq!(
            p.high_watermark(),
            0,
            "followers have not fetched: HW stays"
        );
        // The notification is already there (no follower fetch, no timer can deliver it).
        tokio::time::timeout(Duration::from_secs(10), parked)
            .await
            .expect("the append did not wake the parked fetches");
    }
    // A follower fetch that moves the HW wakes them too (consumers wait for the HW).
    let parked = wake.notified();
    tokio::pin!(parked);
    parked.as_mut().enable();
    p.record_follower_fetch(2, 6, 10).unwrap();
    p.record_follower_fetch(3, 6, 10).unwrap();
    assert_eq!(p.high_watermark(), 6);
    tokio::time::timeout(Duration::from_secs(10), parked)
        .await
        .expect("the high-watermark advance did not wake the parked fetches");
}
