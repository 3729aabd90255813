//! Tests of log compaction through the public API, on real files in temp directories.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use proptest::prelude::*;

use crate::batch::test_encoder::{encode, encode_compressed, Rec};
use crate::batch::{self, validate_stored_batch, BatchIter};
use crate::{keyless_records, CleanupPolicy, LogConfig, PartitionLog};

const T0: i64 = 1_700_000_000_000;

fn ccfg(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 128,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

type Kv = (Vec<u8>, Option<Vec<u8>>);

/// One batch of keyed records (codec 0 = uncompressed; `xerial` frames snappy Java-style).
fn keyed_batch(recs: &[Kv], ts: i64, codec: u8, xerial: bool) -> Vec<u8> {
    let rs: Vec<Rec<'_>> = recs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Rec {
            ts: ts + i as i64,
            key: Some(k),
            value: v.as_deref(),
            headers: vec![(b"h".as_slice(), Some(b"1".as_slice())), (b"h", None)],
        })
        .collect();
    if codec == 0 {
        encode(&rs, 0, -1)
    } else {
        encode_compressed(&rs, codec, xerial)
    }
}

/// Appends the records as one batch; returns their offsets.
fn append(log: &mut PartitionLog, recs: &[Kv], ts: i64, codec: u8) -> Vec<i64> {
    let mut b = keyed_batch(recs, ts, codec, false);
    let r = log.append(&mut b, 0, ts).unwrap();
    (r.base_offset..=r.last_offset).collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    offset: i64,
    ts: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    codec: u8,
}

/// Every record from the log start to the end, via `read`, checking each batch is valid.
fn all_records(log: &PartitionLog) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    let end = log.log_end_offset();
    while at < end {
        let r = log.read(at, 1 << 20, i64::MAX, true).unwrap();
        if r.data.is_empty() {
            break;
        }
        for (pos, h) in BatchIter::new(&r.data) {
            let bytes = &r.data[pos..pos + h.total_len()];
            validate_stored_batch(bytes).unwrap();
            let (h, body) = batch::records_section(bytes).unwrap();
            let mut prev = -1;
            batch::decode_records(&body, h.records_count, &mut |rec| {
                let offset = h.base_offset + rec.offset_delta;
                assert!(offset > prev && offset <= h.last_offset());
                prev = offset;
                if offset >= at {
                    out.push(Seen {
                        offset,
                        ts: h.base_timestamp + rec.timestamp_delta,
                        key: rec.key.map(<[u8]>::to_vec),
                        value: rec.value.map(<[u8]>::to_vec),
                        codec: h.compression(),
                    });
                }
                true
            })
            .unwrap();
            at = h.next_offset();
        }
    }
    out
}

/// Latest value per key (a tombstone counts as absent).
fn latest(recs: &[Seen]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    for r in recs {
        let Some(k) = &r.key else { continue };
        match &r.value {
            Some(v) => m.insert(k.clone(), v.clone()),
            None => m.remove(k),
        };
    }
    m
}

fn files_with(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn kv(k: &str, v: Option<String>) -> Kv {
    (k.as_bytes().to_vec(), v.map(String::into_bytes))
}

/// Writes `rounds` updates of `keys` keys, `per_batch` records per batch.
fn write_updates(
    log: &mut PartitionLog,
    keys: usize,
    rounds: usize,
    per_batch: usize,
    codec: u8,
) -> HashMap<i64, Kv> {
    let mut written = HashMap::new();
    let mut pending = Vec::new();
    let mut ts = T0;
    for round in 0..rounds {
        for k in 0..keys {
            pending.push(kv(&format!("key-{k}"), Some(format!("value-{k}-{round}"))));
            if pending.len() == per_batch {
                for (o, r) in append(log, &pending, ts, codec)
                    .into_iter()
                    .zip(pending.drain(..))
                {
                    written.insert(o, r);
                }
                ts += 10;
            }
        }
    }
    if !pending.is_empty() {
        for (o, r) in append(log, &pending, ts, codec)
            .into_iter()
            .zip(pending.drain(..))
        {
            written.insert(o, r);
        }
    }
    written
}

/// Records below the active segment: no key twice.
fn assert_sealed_unique(log: &PartitionLog, recs: &[Seen]) {
    let active = *log.segment_base_offsets().last().unwrap();
    let mut seen = std::collections::HashSet::new();
    for r in recs.iter().filter(|r| r.offset < active) {
        assert!(
            seen.insert(r.key.clone()),
            "key {:?} twice in the cleaned part",
            r.key
        );
    }
}

fn assert_offsets_preserved(recs: &[Seen], written: &HashMap<i64, Kv>) {
    for r in recs {
        let (k, v) = &written[&r.offset];
        assert_eq!(
            (r.key.as_ref(), &r.value),
            (Some(k), v),
            "offset {}",
            r.offset
        );
    }
}

#[test]
fn many_updates_per_key_keep_only_latest_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), ccfg(4096)).unwrap();
    let written = write_updates(&mut log, 20, 50, 7, 0);
    let before = all_records(&log);
    let (start, end, size) = (
        log.log_start_offset(),
        log.log_end_offset(),
        log.size_bytes(),
    );
    assert!(log.segment_count() > 5);
    let stats = log.compact(T0 + 60_000, i64::MAX).unwrap();
    assert!(
        stats.segments_cleaned > 0 && stats.records_removed > 0,
        "{stats:?}"
    );
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
    assert!(
        log.size_bytes() < size / 3,
        "{} vs {size}",
        log.size_bytes()
    );
    let after = all_records(&log);
    assert_eq!(latest(&after), latest(&before));
    assert_eq!(latest(&after).len(), 20);
    assert_sealed_unique(&log, &after);
    assert_offsets_preserved(&after, &written);
    // Record timestamps survive the rewrite.
    let ts: HashMap<i64, i64> = before.iter().map(|r| (r.offset, r.ts)).collect();
    assert!(after.iter().all(|r| ts[&r.offset] == r.ts));
    // Nothing new: a second pass does nothing.
    assert_eq!(
        log.compact(T0 + 70_000, i64::MAX).unwrap().segments_cleaned,
        0
    );
    // Reads at every offset, including those removed, land on a batch at or after them.
    for o in start..end {
        let r = log.read(o, 1, i64::MAX, true).unwrap();
        let h = BatchIter::new(&r.data).next().unwrap().1;
        assert!(h.last_offset() >= o);
    }
    // Same answer after a clean close and after a crash (no close).
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), ccfg(4096)).unwrap();
    assert_eq!(all_records(&log), after);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
    drop(log);
    let log = PartitionLog::open(dir.path(), ccfg(4096)).unwrap();
    assert_eq!(all_records(&log), after);
}

#[test]
fn more_writes_then_another_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), ccfg(2048)).unwrap();
    let mut written = write_updates(&mut log, 10, 20, 3, 0);
    log.compact(T0 + 1, i64::MAX).unwrap();
    written.extend(write_updates(&mut log, 15, 20, 4, 0));
    let before = all_records(&log);
    let stats = log.compact(T0 + 2, i64::MAX).unwrap();
    assert!(stats.segments_cleaned > 0);
    let after = all_records(&log);
    assert_eq!(latest(&after), latest(&before));
    assert_sealed_unique(&log, &after);
    assert_offsets_preserved(&after, &written);
}

#[test]
fn delete_policy_and_dirty_ratio_and_upper_bound_hold_back_the_cleaner() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ccfg(2048);
    cfg.cleanup_policy = CleanupPolicy::Delete;
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    write_updates(&mut log, 5, 40, 5, 0);
    assert!(log.compaction_task(T0, i64::MAX).unwrap().is_none());
    cfg.cleanup_policy = CleanupPolicy::Compact;
    log.update_config(cfg.clone());
    // Nothing below offset 1 is a whole segment.
    assert!(log.compaction_task(T0, 1).unwrap().is_none());
    // min.compaction.lag.ms: every segment is too young.
    cfg.min_compaction_lag_ms = 3_600_000;
    log.update_config(cfg.clone());
    assert!(log.compaction_task(T0 + 1000, i64::MAX).unwrap().is_none());
    cfg.min_compaction_lag_ms = 0;
    log.update_config(cfg.clone());
    assert!(log.compact(T0, i64::MAX).unwrap().segments_cleaned > 0);
    // A little new data is below the dirty ratio.
    write_updates(&mut log, 5, 1, 5, 0);
    write_updates(&mut log, 5, 8, 5, 0);
    cfg.min_cleanable_dirty_ratio = 0.99;
    log.update_config(cfg);
    assert!(log.compaction_task(T0, i64::MAX).unwrap().is_none());
}

#[test]
fn compact_only_disables_time_and_size_retention_compact_delete_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ccfg(1024);
    cfg.retention_ms = 1;
    cfg.retention_bytes = 1;
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    write_updates(&mut log, 5, 20, 5, 0);
    let n = log.segment_count();
    log.enforce_retention(T0 + 10_000_000).unwrap();
    assert_eq!(log.segment_count(), n);
    cfg.cleanup_policy = CleanupPolicy::CompactDelete;
    log.update_config(cfg);
    log.compact(T0, i64::MAX).unwrap();
    log.enforce_retention(T0 + 10_000_000).unwrap();
    assert!(log.segment_count() < n);
    assert_eq!(
        log.log_start_offset(),
        *log.segment_base_offsets().first().unwrap()
    );
}

#[test]
fn tombstones_survive_until_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), ccfg(1024)).unwrap();
    append(
        &mut log,
        &[kv("a", Some("a1".into())), kv("b", Some("b1".into()))],
        T0,
        0,
    );
    append(
        &mut log,
        &[kv("a", None), kv("c", Some("c1".into()))],
        T0 + 5,
        0,
    );
    append(&mut log, &[kv("b", None)], T0 + 6, 1);
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    // Roll so that all of it is in sealed segments.
    write_updates(&mut log, 3, 30, 5, 0);
    let filler_keys = ["key-0", "key-1", "key-2"];
    let now = T0 + 100_000;
    let s = log.compact(now, i64::MAX).unwrap();
    assert_eq!(s.tombstones_removed, 0);
    let recs = all_records(&log);
    let first: Vec<_> = recs.iter().filter(|r| r.offset < end).cloned().collect();
    let keys: Vec<_> = first
        .iter()
        .map(|r| (r.key.clone().unwrap(), r.value.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (b"a".to_vec(), None),
            (b"c".to_vec(), Some(b"c1".to_vec())),
            (b"b".to_vec(), None)
        ]
    );
    // The horizon stamp keeps each record's timestamp and the batch's codec.
    assert_eq!(
        first.iter().map(|r| r.ts).collect::<Vec<_>>(),
        vec![T0 + 5, T0 + 6, T0 + 6]
    );
    assert_eq!(first[2].codec, 1);
    // Before delete.retention.ms nothing changes, even across a reopen.
    assert_eq!(
        log.compact(now + 999, i64::MAX).unwrap().segments_cleaned,
        0
    );
    log.close().unwrap();
    let mut log = PartitionLog::open(dir.path(), ccfg(1024)).unwrap();
    assert_eq!(all_records(&log), recs);
    let s = log.compact(now + 1_000, i64::MAX).unwrap();
    assert_eq!(s.tombstones_removed, 2, "{s:?}");
    let recs = all_records(&log);
    let first: Vec<_> = recs.iter().filter(|r| r.offset < end).collect();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].value.as_deref(), Some(b"c1".as_slice()));
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset() > end),
        (start, true)
    );
    let l = latest(&recs);
    assert_eq!(l.len(), 1 + filler_keys.len());
    // No more tombstones to wait for: the cleaner stays idle.
    assert!(log
        .compaction_task(now + 10_000_000, i64::MAX)
        .unwrap()
        .is_none());
}

#[test]
fn compressed_batches_are_compacted_with_their_codec() {
    for (codec, xerial) in [(1u8, false), (2, false), (2, true), (3, false), (4, false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), ccfg(2048)).unwrap();
        let mut written = HashMap::new();
        for round in 0..30 {
            let recs: Vec<Kv> = (0..6)
                .map(|k| {
                    kv(
                        &format!("k{k}"),
                        Some(format!("v{k}-{round}-{}", "x".repeat(20))),
                    )
                })
                .collect();
            let mut b = keyed_batch(&recs, T0 + round, codec, xerial);
            let r = log.append(&mut b, 0, T0).unwrap();
            for (o, rec) in (r.base_offset..).zip(recs) {
                written.insert(o, rec);
            }
        }
        let before = all_records(&log);
        assert!(before.iter().all(|r| r.codec == codec));
        log.compact(T0 + 1000, i64::MAX).unwrap();
        let after = all_records(&log);
        assert_eq!(latest(&after), latest(&before), "codec {codec}");
        assert_sealed_unique(&log, &after);
        assert_offsets_preserved(&after, &written);
        assert!(after.iter().all(|r| r.codec == codec), "codec {codec}");
        assert!(after.len() < before.len());
    }
}

#[test]
fn batches_that_lose_records_keep_offsets_and_producer_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), ccfg(1024)).unwrap();
    let recs = [
        kv("x", Some("1".into())),
        kv("y", Some("1".into())),
        kv("x", Some("2".into())),
    ];
    let rs: Vec<Rec<'_>> = recs
        .iter()
        .map(|(k, v)| Rec {
            ts: T0,
            key: Some(k),
            value: v.as_deref(),
            headers: vec![],
        })
        .collect();
    let mut b = encode(&rs, 0, 42);
    log.append(&mut b, 0, T0).unwrap();
    write_updates(&mut log, 2, 40, 4, 0);
    log.compact(T0, i64::MAX).unwrap();
    let r = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    let (_, h) = BatchIter::new(&r.data).next().unwrap();
    validate_stored_batch(&r.data).unwrap();
    assert_eq!(
        (h.base_offset, h.last_offset_delta, h.records_count),
        (0, 2, 2)
    );
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (42, 0, 0)
    );
    let after = all_records(&log);
    assert_eq!(after[0].offset, 1);
    assert_eq!(after[1].offset, 2);
}

/// Runs a pass up to the written `.cleaned` files and "crashes" there (files left behind).
fn crash_after_cleaning(log: &PartitionLog) -> Vec<String> {
    let task = log.compaction_task(T0, i64::MAX).unwrap().unwrap();
    let cleaned = task.run().unwrap();
    let files = files_with(log.dir(), ".cleaned");
    std::mem::forget(cleaned);
    files
}

#[test]
fn interrupted_swaps_are_rolled_back_or_completed_on_open() {
    for stage in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), ccfg(2048)).unwrap();
        let written = write_updates(&mut log, 8, 30, 4, 0);
        let before = all_records(&log);
        let segs = log.segment_base_offsets();
        let cleaned = crash_after_cleaning(&log);
        assert!(!cleaned.is_empty());
        drop(log);
        let p = |n: &str| dir.path().join(n);
        if stage >= 1 {
            // Committed: `.cleaned` renamed to `.swap` ...
            for c in &cleaned {
                std::fs::rename(p(c), p(&c.replace(".cleaned", ".swap"))).unwrap();
            }
        }
        if stage >= 2 {
            // ... and some old files already deleted ...
            std::fs::remove_file(p(&format!("{:020}.index", segs[1]))).unwrap();
            std::fs::remove_file(p(&format!("{:020}.log", segs[0]))).unwrap();
        }
        if stage >= 3 {
            // ... and the first swap already renamed into place.
            let c = cleaned[0].replace(".cleaned", ".swap");
            // `<base>.<end>.swap` replaces the segments with bases in [base, end).
            let end: i64 = c.split('.').nth(1).unwrap().parse().unwrap();
            for s in segs.iter().filter(|&&s| s < end) {
                for ext in ["log", "index", "timeindex"] {
                    let _ = std::fs::remove_file(p(&format!("{s:020}.{ext}")));
                }
            }
            std::fs::rename(p(&c), p(&format!("{:020}.log", segs[0]))).unwrap();
        }
        let log = PartitionLog::open(dir.path(), ccfg(2048)).unwrap();
        assert!(files_with(dir.path(), ".cleaned").is_empty());
        assert!(files_with(dir.path(), ".swap").is_empty());
        let after = all_records(&log);
        assert_eq!(latest(&after), latest(&before), "stage {stage}");
        assert_offsets_preserved(&after, &written);
        if stage == 0 {
            assert_eq!(after, before);
        } else {
            assert_sealed_unique(&log, &after);
            assert!(after.len() < before.len());
        }
    }
}

#[test]
fn a_truncation_or_retention_during_cleaning_discards_the_stale_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), ccfg(2048)).unwrap();
    write_updates(&mut log, 8, 30, 4, 0);
    let task = log.compaction_task(T0, i64::MAX).unwrap().unwrap();
    let cleaned = task.run().unwrap();
    log.truncate_to(log.log_end_offset() - 50).unwrap();
    let before = all_records(&log);
    let s = log.install_compaction(cleaned).unwrap();
    assert_eq!(s.segments_cleaned, 0);
    assert_eq!(all_records(&log), before);
    assert!(files_with(dir.path(), ".cleaned").is_empty());

    let task = log.compaction_task(T0, i64::MAX).unwrap().unwrap();
    let cleaned = task.run().unwrap();
    let second = log.segment_base_offsets()[1];
    log.delete_records_before(second).unwrap();
    let before = all_records(&log);
    log.install_compaction(cleaned).unwrap();
    assert_eq!(latest(&all_records(&log)), latest(&before));
    assert!(files_with(dir.path(), ".cleaned").is_empty());
    assert_eq!(log.log_start_offset(), second);
}

#[test]
fn a_segment_file_replaced_behind_the_log_is_not_swapped_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), ccfg(2048)).unwrap();
    write_updates(&mut log, 8, 30, 4, 0);
    let task = log.compaction_task(T0, i64::MAX).unwrap().unwrap();
    let cleaned = task.run().unwrap();
    // Same name and bytes, another file (as when a topic is deleted and created again).
    let first = dir
        .path()
        .join(format!("{:020}.log", log.segment_base_offsets()[0]));
    let bytes = std::fs::read(&first).unwrap();
    std::fs::remove_file(&first).unwrap();
    std::fs::write(&first, &bytes).unwrap();
    let s = log.install_compaction(cleaned).unwrap();
    assert!(s.segments_cleaned > 0);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        bytes,
        "the replaced file was left alone"
    );
    assert!(files_with(dir.path(), ".cleaned").is_empty());
}

#[test]
fn reads_go_on_while_the_cleaner_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), ccfg(4096)).unwrap();
    let written = write_updates(&mut log, 30, 40, 5, 1);
    let expected = latest(&all_records(&log));
    let log = Arc::new(RwLock::new(log));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (log, stop, expected) = (log.clone(), stop.clone(), expected.clone());
        std::thread::spawn(move || {
            let mut scans = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || scans < 3 {
                let recs = all_records(&log.read().unwrap());
                assert_eq!(latest(&recs), expected);
                assert_offsets_preserved(&recs, &written);
                scans += 1;
            }
            scans
        })
    };
    for i in 0..5 {
        let task = log
            .read()
            .unwrap()
            .compaction_task(T0 + i, i64::MAX)
            .unwrap();
        if let Some(task) = task {
            // The heavy part runs with no lock held.
            let cleaned = task.run().unwrap();
            log.write().unwrap().install_compaction(cleaned).unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scans = reader.join().unwrap();
    assert!(scans >= 3);
    let log = log.read().unwrap();
    assert_sealed_unique(&log, &all_records(&log));
}

#[test]
fn keyless_records_are_found_in_plain_and_compressed_batches() {
    let recs = [kv("a", Some("1".into()))];
    assert_eq!(
        keyless_records(&keyed_batch(&recs, T0, 0, false)).unwrap(),
        Vec::<i32>::new()
    );
    for codec in [0u8, 1, 4] {
        let rs = [
            Rec {
                ts: T0,
                key: Some(b"k"),
                value: Some(b"v"),
                headers: vec![],
            },
            Rec {
                ts: T0,
                key: None,
                value: Some(b"v"),
                headers: vec![],
            },
            Rec {
                ts: T0,
                key: Some(b"k2"),
                value: None,
                headers: vec![],
            },
            Rec {
                ts: T0,
                key: None,
                value: None,
                headers: vec![],
            },
        ];
        let b = if codec == 0 {
            encode(&rs, 0, -1)
        } else {
            encode_compressed(&rs, codec, false)
        };
        assert_eq!(keyless_records(&b).unwrap(), [1, 3], "codec {codec}");
    }
    assert!(keyless_records(&[0u8; 10]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of keyed writes (values and tombstones, plain or gzip batches), then
    /// compaction: every key reads back with exactly its latest value at its original offset,
    /// the cleaned part holds each key once, and after delete.retention.ms no tombstone is left
    /// there. Also after a reopen.
    #[test]
    fn compaction_keeps_exactly_the_latest_value_per_key(
        batches in proptest::collection::vec(
            (proptest::collection::vec((0u8..12, proptest::option::weighted(0.8, 0u8..40)), 1..6), any::<bool>()),
            1..60),
        segment_bytes in 600u64..3000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), ccfg(segment_bytes)).unwrap();
        let mut written = HashMap::new();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (i, (recs, gzip)) in batches.iter().enumerate() {
            let recs: Vec<Kv> = recs
                .iter()
                .map(|(k, v)| (vec![b'k', *k], v.map(|n| format!("{i}-{n}").into_bytes())))
                .collect();
            for (k, v) in &recs {
                match v {
                    Some(v) => model.insert(k.clone(), v.clone()),
                    None => model.remove(k),
                };
            }
            let offsets = append(&mut log, &recs, T0 + i as i64, if *gzip { 1 } else { 0 });
            written.extend(offsets.into_iter().zip(recs));
        }
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        log.compact(T0 + 100, i64::MAX).unwrap();
        let recs = all_records(&log);
        prop_assert_eq!(&latest(&recs), &model);
        assert_sealed_unique(&log, &recs);
        assert_offsets_preserved(&recs, &written);
        log.compact(T0 + 100 + 1_000, i64::MAX).unwrap();
        let recs = all_records(&log);
        prop_assert_eq!(&latest(&recs), &model);
        let active = *log.segment_base_offsets().last().unwrap();
        prop_assert!(recs.iter().all(|r| r.offset >= active || r.value.is_some()));
        prop_assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
        drop(log);
        let log = PartitionLog::open(dir.path(), ccfg(segment_bytes)).unwrap();
        prop_assert_eq!(all_records(&log), recs);
    }
}
