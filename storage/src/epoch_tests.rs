//! Tests of the leader-epoch cache through `PartitionLog`, and of the follower append path.

use std::path::Path;

use crate::batch::test_encoder::simple;
use crate::batch::{compute_crc, set_base_offset, set_partition_leader_epoch, BatchIter};
use crate::epoch_cache::LEADER_EPOCH_FILE;
use crate::{CleanupPolicy, EpochEntry, LogConfig, LogError, PartitionLog};

fn cfg() -> LogConfig {
    LogConfig {
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn pairs(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.epoch_entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

fn leader_append(log: &mut PartitionLog, n: usize, epoch: i32) -> (i64, i64) {
    let mut b = simple(n, 10, 1_000);
    let r = log.append(&mut b, epoch, 1_000).unwrap();
    (r.base_offset, r.last_offset)
}

/// A batch as a leader stored it: `n` records at `base` stamped with `epoch`.
fn leader_batch(base: i64, n: usize, epoch: i32) -> Vec<u8> {
    let mut b = simple(n, 10, 2_000 + base);
    set_base_offset(&mut b, base);
    set_partition_leader_epoch(&mut b, epoch);
    b
}

/// A batch the cleaner shrank: one record left, spanning offsets `[base, base + span)`.
fn compacted_batch(base: i64, span: i32, epoch: i32) -> Vec<u8> {
    let mut b = leader_batch(base, 1, epoch);
    b[23..27].copy_from_slice(&(span - 1).to_be_bytes());
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Every batch in the log, read back from the log start.
fn all_batches(log: &PartitionLog) -> Vec<u8> {
    let r = log
        .read(log.log_start_offset(), usize::MAX >> 1, i64::MAX, true)
        .unwrap();
    r.data.to_vec()
}

fn write_checkpoint(dir: &Path, text: &[u8]) {
    std::fs::write(dir.join(LEADER_EPOCH_FILE), text).unwrap();
}

#[test]
fn leader_appends_record_each_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg()).unwrap();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
    leader_append(&mut log, 3, 0); // 0..2
    leader_append(&mut log, 2, 0); // 3..4
    leader_append(&mut log, 4, 2); // 5..8
    leader_append(&mut log, 1, 2); // 9
    leader_append(&mut log, 2, 5); // 10..11
    assert_eq!(pairs(&log), vec![(0, 0), (2, 5), (5, 10)]);
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 12)));
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 5)));
    assert_eq!(log.end_offset_for_epoch(1), Some((0, 5)));
    assert_eq!(log.end_offset_for_epoch(3), Some((2, 10)));
    assert_eq!(log.end_offset_for_epoch(6), None);
    // Reopened after a clean close and after a crash (no close): the same cache.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), cfg()).unwrap();
    assert_eq!(pairs(&log), vec![(0, 0), (2, 5), (5, 10)]);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg()).unwrap();
    assert_eq!(pairs(&log), vec![(0, 0), (2, 5), (5, 10)]);
}

#[test]
fn missing_torn_or_garbage_checkpoint_is_rebuilt_from_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 200,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for (n, epoch) in [(3, 1), (2, 1), (4, 3), (1, 4), (2, 4), (3, 9)] {
        leader_append(&mut log, n, epoch);
    }
    assert!(log.segment_count() > 2);
    let want = pairs(&log);
    assert_eq!(want, vec![(1, 0), (3, 5), (4, 9), (9, 12)]);
    let good = std::fs::read(dir.path().join(LEADER_EPOCH_FILE)).unwrap();
    assert_eq!(good, b"0\n4\n1 0\n3 5\n4 9\n9 12\n");
    drop(log);
    let torn = &good[..good.len() - 6];
    for bad in [
        None,
        Some(torn.to_vec()),
        Some(vec![0xff, 0x00, 0x17]),
        Some(b"0\n4\n1 0\n3 5\n4 9\n9 1\n".to_vec()),
        // Well formed but stale: the last epoch is missing.
        Some(b"0\n2\n1 0\n3 5\n".to_vec()),
        Some(Vec::new()),
    ] {
        match &bad {
            None => std::fs::remove_file(dir.path().join(LEADER_EPOCH_FILE)).unwrap(),
            Some(b) => write_checkpoint(dir.path(), b),
        }
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        assert_eq!(pairs(&log), want, "{bad:?}");
        drop(log);
        // The rebuilt cache was written back.
        assert_eq!(
            std::fs::read(dir.path().join(LEADER_EPOCH_FILE)).unwrap(),
            good
        );
    }
}

#[test]
fn entries_past_the_log_end_are_dropped_on_open() {
    // The checkpoint is written before the data; a crash in between leaves an entry past the
    // end of the log.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg()).unwrap();
    leader_append(&mut log, 5, 2);
    drop(log);
    write_checkpoint(dir.path(), b"0\n3\n2 0\n3 5\n4 9\n");
    let log = PartitionLog::open(dir.path(), cfg()).unwrap();
    // An epoch starting exactly at the log end (assigned, no data yet) is kept.
    assert_eq!(pairs(&log), vec![(2, 0), (3, 5)]);
}

#[test]
fn truncation_and_log_start_trim_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for (n, epoch) in [(3, 1), (3, 2), (3, 3), (3, 4), (3, 5)] {
        leader_append(&mut log, n, epoch);
    }
    assert_eq!(pairs(&log), vec![(1, 0), (2, 3), (3, 6), (4, 9), (5, 12)]);
    // Into the middle of the epoch-4 batch: the whole batch goes, so epoch 4 goes too.
    log.truncate_to(10).unwrap();
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(pairs(&log), vec![(1, 0), (2, 3), (3, 6)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 9)));
    // DeleteRecords inside epoch 2: the entry covering the new start moves up.
    log.delete_records_before(4).unwrap();
    assert_eq!(pairs(&log), vec![(2, 4), (3, 6)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(pairs(&log), vec![(2, 4), (3, 6)]);
    // Retention removing whole segments moves the front the same way.
    log.update_config(LogConfig {
        retention_bytes: 0,
        ..config.clone()
    });
    let stats = log.enforce_retention(1_000).unwrap();
    assert!(stats.segments_deleted > 0);
    let start = log.log_start_offset();
    let entries = log.epoch_entries();
    assert_eq!(entries[0].start_offset, start);
    assert_eq!(entries.last().map(|e| e.epoch), Some(3));
    // Everything deleted: the last epoch survives, starting at the log end.
    let leo = log.log_end_offset();
    log.delete_records_before(leo).unwrap();
    assert_eq!(pairs(&log), vec![(3, leo)]);
    drop(log);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(pairs(&log), vec![(3, leo)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, leo)));
}

#[test]
fn assigned_epoch_without_data_is_cut_by_a_follower_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg()).unwrap();
    leader_append(&mut log, 4, 1);
    // Became leader with epoch 3, wrote nothing.
    log.assign_leader_epoch(3).unwrap();
    assert_eq!(pairs(&log), vec![(1, 0), (3, 4)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 4)));
    log.assign_leader_epoch(3).unwrap();
    assert_eq!(pairs(&log), vec![(1, 0), (3, 4)], "idempotent");
    // Now a follower again: truncating at (or past) the log end drops the empty epoch.
    log.truncate_to(4).unwrap();
    assert_eq!(pairs(&log), vec![(1, 0)]);
    // The new leader's epoch-1 data continues.
    log.append_replicated(&leader_batch(4, 2, 1)).unwrap();
    log.append_replicated(&leader_batch(6, 2, 4)).unwrap();
    assert_eq!(pairs(&log), vec![(1, 0), (4, 6)]);
    // Without that truncation the follower append itself replaces the empty epoch, and the
    // real start of the continued epoch stays.
    log.assign_leader_epoch(5).unwrap();
    assert_eq!(pairs(&log), vec![(1, 0), (4, 6), (5, 8)]);
    log.append_replicated(&leader_batch(8, 2, 4)).unwrap();
    assert_eq!(pairs(&log), vec![(1, 0), (4, 6)]);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg()).unwrap();
    assert_eq!(pairs(&log), vec![(1, 0), (4, 6)]);
}

#[test]
fn replicated_batches_keep_the_leaders_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 350,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut sent = Vec::new();
    let mut next = 0;
    for (n, epoch) in [(3, 0), (2, 0), (4, 2), (1, 7), (3, 7), (2, 8)] {
        let b = leader_batch(next, n, epoch);
        // Two batches in one payload sometimes.
        let r = log.append_replicated(&b).unwrap();
        assert_eq!((r.base_offset, r.last_offset), (next, next + n as i64 - 1));
        assert_eq!(r.log_append_time, -1);
        sent.extend_from_slice(&b);
        next += n as i64;
    }
    let two = [leader_batch(next, 2, 8), leader_batch(next + 2, 3, 9)].concat();
    log.append_replicated(&two).unwrap();
    sent.extend_from_slice(&two);
    next += 5;
    assert_eq!(log.log_end_offset(), next);
    assert!(log.segment_count() > 2, "rolled");
    // Every new segment starts at the base offset of its first batch.
    let bases: Vec<i64> = BatchIter::new(&sent).map(|(_, h)| h.base_offset).collect();
    for b in log.segment_base_offsets() {
        assert!(bases.contains(&b), "segment base {b} is not a batch base");
    }
    assert_eq!(all_batches(&log), sent, "byte for byte");
    assert_eq!(pairs(&log), vec![(0, 0), (2, 5), (7, 9), (8, 13), (9, 17)]);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(all_batches(&log), sent);
    assert_eq!(pairs(&log), vec![(0, 0), (2, 5), (7, 9), (8, 13), (9, 17)]);
}

#[test]
fn replicated_batches_must_follow_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg()).unwrap();
    log.append_replicated(&leader_batch(0, 3, 1)).unwrap();
    let unexpected =
        |r: Result<_, LogError>| matches!(r, Err(LogError::UnexpectedOffset { expected: 3, .. }));
    assert!(unexpected(log.append_replicated(&leader_batch(2, 3, 1))));
    assert!(
        unexpected(log.append_replicated(&leader_batch(4, 3, 1))),
        "gap"
    );
    // Offsets must increase inside a payload too.
    let overlapping = [leader_batch(3, 2, 1), leader_batch(4, 2, 1)].concat();
    assert!(matches!(
        log.append_replicated(&overlapping),
        Err(LogError::UnexpectedOffset {
            expected: 5,
            found: 4
        })
    ));
    let mut corrupt = leader_batch(3, 2, 1);
    corrupt[70] ^= 1;
    assert!(matches!(
        log.append_replicated(&corrupt),
        Err(LogError::Batch(_))
    ));
    let mut torn = leader_batch(3, 2, 1);
    torn.pop();
    assert!(matches!(
        log.append_replicated(&torn),
        Err(LogError::Batch(_))
    ));
    assert!(matches!(
        log.append_replicated(&[]),
        Err(LogError::Batch(_))
    ));
    // Nothing of the refused payloads was written.
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(pairs(&log), vec![(1, 0)]);
    // A payload showing compaction may skip offsets: batches the cleaner removed.
    let compacted = [compacted_batch(5, 3, 2), leader_batch(10, 1, 2)].concat();
    let r = log.append_replicated(&compacted).unwrap();
    assert_eq!((r.base_offset, r.last_offset), (5, 10));
    assert_eq!(log.log_end_offset(), 11);
    assert_eq!(pairs(&log), vec![(1, 0), (2, 5)]);
    for o in [3, 5, 6, 7, 8, 10] {
        let data = log.read(o, 1 << 20, i64::MAX, true).unwrap().data;
        let (_, h) = BatchIter::new(&data).next().unwrap();
        assert!(h.last_offset() >= o);
    }
}

#[test]
fn compacted_topics_accept_gaps_between_plain_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    log.append_replicated(&leader_batch(0, 2, 0)).unwrap();
    log.append_replicated(&leader_batch(7, 2, 0)).unwrap();
    assert_eq!(log.log_end_offset(), 9);
    assert!(matches!(
        log.append_replicated(&leader_batch(8, 1, 0)),
        Err(LogError::UnexpectedOffset { .. })
    ));
}

#[test]
fn truncate_fully_starts_over_at_the_leaders_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg()).unwrap();
    leader_append(&mut log, 5, 1);
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    assert!(log.epoch_entries().is_empty());
    log.append_replicated(&leader_batch(100, 2, 6)).unwrap();
    assert_eq!(
        log.epoch_entries(),
        vec![EpochEntry {
            epoch: 6,
            start_offset: 100
        }]
    );
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 102));
    assert_eq!(pairs(&log), vec![(6, 100)]);
}

#[test]
fn a_huge_gap_starts_a_new_segment_at_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    log.append_replicated(&leader_batch(0, 2, 0)).unwrap();
    let far = 5_000_000_000;
    log.append_replicated(&leader_batch(far, 2, 0)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, far]);
    drop(log);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), far + 2);
    let data = log.read(far + 1, 1 << 20, i64::MAX, true).unwrap().data;
    assert_eq!(BatchIter::new(&data).next().unwrap().1.base_offset, far);
}

mod prop {
    use super::*;
    use crate::batch::BatchHeader;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Leader append of `records` records, with the epoch bumped first when `bump`.
        Leader {
            records: usize,
            bump: bool,
        },
        /// Becoming leader with a new epoch, no data yet.
        BecomeLeader,
        /// Follower append: `batches` leader batches, the epoch bumped before each when `bump`;
        /// with `old`, all in the epoch of the log's last batch and without truncating first
        /// (a new leader continuing an older epoch's data past an epoch this replica assigned).
        Replicated {
            batches: usize,
            bump: bool,
            old: bool,
        },
        /// Follower truncation at a point of the log (per mille of the way from start to end).
        Truncate {
            at: u16,
        },
        DeleteRecords {
            at: u16,
        },
        Reopen {
            clean: bool,
        },
        CorruptCheckpoint {
            bytes: Vec<u8>,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..5, any::<bool>()).prop_map(|(records, bump)| Op::Leader { records, bump }),
            1 => Just(Op::BecomeLeader),
            4 => (1usize..4, any::<bool>(), any::<bool>()).prop_map(|(batches, bump, old)| Op::Replicated { batches, bump, old }),
            2 => (0u16..=1000).prop_map(|at| Op::Truncate { at }),
            1 => (0u16..=1000).prop_map(|at| Op::DeleteRecords { at }),
            1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
            1 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(|bytes| Op::CorruptCheckpoint { bytes }),
        ]
    }

    /// The cache Kafka's rules derive from the batches themselves, trimmed to the log start.
    fn from_batches(hs: &[BatchHeader], log_start: i64) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = Vec::new();
        for h in hs {
            if out.last().is_none_or(|l| h.partition_leader_epoch > l.0) {
                out.push((h.partition_leader_epoch, h.base_offset.max(log_start)));
            }
        }
        out
    }

    fn check(log: &PartitionLog) -> Result<(), TestCaseError> {
        let data = all_batches(log);
        let hs: Vec<BatchHeader> = BatchIter::new(&data).map(|(_, h)| h).collect();
        let leo = log.log_end_offset();
        let want = from_batches(&hs, log.log_start_offset());
        let got = pairs(log);
        let with_data: Vec<(i32, i64)> = got.iter().copied().filter(|e| e.1 < leo).collect();
        let trailing: Vec<(i32, i64)> = got.iter().copied().filter(|e| e.1 >= leo).collect();
        prop_assert_eq!(&with_data, &want, "cache {:?}", got);
        // At most one epoch without data, at the log end, newer than every batch's.
        prop_assert!(trailing.len() <= 1, "cache {:?}", got);
        if let Some(t) = trailing.first() {
            prop_assert_eq!(t.1, leo);
            prop_assert!(want.last().is_none_or(|w| w.0 < t.0));
        }
        // Every epoch in the data ends where the next larger epoch starts (or at the log end).
        for (i, &(epoch, start)) in want.iter().enumerate() {
            let end = got.iter().find(|e| e.0 > epoch).map_or(leo, |e| e.1);
            prop_assert_eq!(log.end_offset_for_epoch(epoch), Some((epoch, end)));
            prop_assert!(end > start);
            // An epoch between two cached ones answers with the lower one.
            if want.get(i + 1).is_some_and(|n| n.0 > epoch + 1) {
                prop_assert_eq!(log.end_offset_for_epoch(epoch + 1), Some((epoch, end)));
            }
        }
        if let Some(latest) = got.last() {
            prop_assert_eq!(log.end_offset_for_epoch(latest.0 + 1), None);
            prop_assert_eq!(log.latest_epoch(), Some(latest.0));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn cache_matches_the_batches_epochs(ops in proptest::collection::vec(op(), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig { segment_bytes: 500, index_interval_bytes: 100, ..LogConfig::default() };
            let mut log = Some(PartitionLog::open(dir.path(), config.clone()).unwrap());
            let mut epoch = 0i32;
            for op in ops {
                let l = log.as_mut().unwrap();
                match op {
                    Op::Leader { records, bump } => {
                        epoch += i32::from(bump);
                        leader_append(l, records, epoch);
                    }
                    Op::BecomeLeader => {
                        epoch += 1;
                        l.assign_leader_epoch(epoch).unwrap();
                    }
                    Op::Replicated { batches, bump, old } => {
                        let leo = l.log_end_offset();
                        let last_epoch = BatchIter::new(&all_batches(l)).last().map_or(0, |(_, h)| h.partition_leader_epoch);
                        if !old {
                            // A follower truncates (at least the epochs it has no data for) first.
                            l.truncate_to(leo).unwrap();
                        }
                        let mut payload = Vec::new();
                        let mut next = leo;
                        for i in 0..batches {
                            let e = if old {
                                last_epoch
                            } else {
                                epoch += i32::from(bump);
                                epoch
                            };
                            let n = 1 + (i + batches) % 3;
                            payload.extend(leader_batch(next, n, e));
                            next += n as i64;
                        }
                        let r = l.append_replicated(&payload).unwrap();
                        prop_assert_eq!((r.base_offset, r.last_offset), (leo, next - 1));
                    }
                    Op::Truncate { at } => {
                        let (s, e) = (l.log_start_offset(), l.log_end_offset());
                        l.truncate_to(s + (e - s) * i64::from(at) / 1000).unwrap();
                    }
                    Op::DeleteRecords { at } => {
                        let (s, e) = (l.log_start_offset(), l.log_end_offset());
                        l.delete_records_before(s + (e - s) * i64::from(at) / 1000).unwrap();
                    }
                    Op::Reopen { clean } => {
                        let old = log.take().unwrap();
                        if clean { old.close().unwrap() } else { drop(old) }
                        log = Some(PartitionLog::open(dir.path(), config.clone()).unwrap());
                    }
                    Op::CorruptCheckpoint { bytes } => {
                        drop(log.take());
                        write_checkpoint(dir.path(), &bytes);
                        log = Some(PartitionLog::open(dir.path(), config.clone()).unwrap());
                    }
                }
                check(log.as_ref().unwrap())?;
            }
            // Rebuilding from the batches alone gives the same entries (minus an empty epoch).
            let l = log.take().unwrap();
            let before: Vec<_> = pairs(&l).into_iter().filter(|e| e.1 < l.log_end_offset()).collect();
            drop(l);
            std::fs::remove_file(dir.path().join(LEADER_EPOCH_FILE)).unwrap();
            let l = PartitionLog::open(dir.path(), config).unwrap();
            prop_assert_eq!(pairs(&l), before);
        }
    }
}
