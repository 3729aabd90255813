//! Tests of the partition log through its public API, on real files in temp directories.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::batch::test_encoder::{encode, encode_compressed, simple, Rec};
use crate::batch::{validate_batches, BatchHeader, BatchIter};
use crate::{LogConfig, LogError, PartitionLog, TimestampType};

fn cfg() -> LogConfig {
    LogConfig {
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn small_segments(bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes: bytes,
        ..cfg()
    }
}

/// Headers of the batches in a read result.
fn headers(data: &[u8]) -> Vec<BatchHeader> {
    let hs = validate_batches(data).unwrap_or_default();
    assert_eq!(
        hs.len(),
        BatchIter::new(data).count(),
        "read returned invalid batches"
    );
    hs
}

fn append_simple(log: &mut PartitionLog, n: usize, value_len: usize, ts: i64) -> (i64, i64) {
    let mut b = simple(n, value_len, ts);
    let r = log.append(&mut b, 3, ts).unwrap();
    (r.base_offset, r.last_offset)
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    v.sort();
    v
}

/// Every offset in [start, end) is found by a one-batch read, in the batch that holds it.
fn check_every_offset(log: &PartitionLog) {
    for o in log.log_start_offset()..log.log_end_offset() {
        let r = log.read(o, 1, i64::MAX, true).unwrap();
        let hs = headers(&r.data);
        assert_eq!(hs.len(), 1, "offset {o}");
        assert!(
            hs[0].base_offset <= o && o <= hs[0].last_offset(),
            "offset {o}: {:?}",
            hs[0]
        );
    }
}

#[test]
fn assigns_offsets_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let original = simple(3, 10, 1_000);
    let mut b = original.clone();
    let r = log.append(&mut b, 7, 5_000).unwrap();
    assert_eq!(
        (
            r.base_offset,
            r.last_offset,
            r.log_append_time,
            r.log_start_offset
        ),
        (0, 2, -1, 0)
    );
    // Two batches in one payload.
    let mut payload = simple(1, 4, 2_000);
    payload.extend(simple(5, 4, 2_001));
    let r = log.append(&mut payload, 7, 5_001).unwrap();
    assert_eq!((r.base_offset, r.last_offset), (3, 8));
    assert_eq!(log.log_end_offset(), 9);

    let read = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    let hs = headers(&read.data);
    assert_eq!(
        hs.iter()
            .map(|h| (h.base_offset, h.last_offset()))
            .collect::<Vec<_>>(),
        [(0, 2), (3, 3), (4, 8)]
    );
    assert!(hs.iter().all(|h| h.partition_leader_epoch == 7));
    // Everything after the rewritten fields is byte-identical to what was sent.
    assert_eq!(&read.data[16..original.len()], &original[16..]);
    assert_eq!((read.log_start_offset, read.log_end_offset), (0, 9));
    // Reading from the middle of a batch returns that whole batch.
    let hs = headers(&log.read(6, 1 << 20, i64::MAX, false).unwrap().data);
    assert_eq!(hs[0].base_offset, 4);
    // At the end: empty; past it: out of range.
    assert!(log
        .read(9, 1 << 20, i64::MAX, true)
        .unwrap()
        .data
        .is_empty());
    assert!(matches!(
        log.read(10, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange {
            offset: 10,
            start: 0,
            end: 9
        })
    ));
}

#[test]
fn log_append_time_rewrites_timestamp_and_crc() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    let mut b = simple(2, 10, 1_000);
    let r = log.append(&mut b, 0, 99_999).unwrap();
    assert_eq!(r.log_append_time, 99_999);
    let data = log.read(0, 1 << 20, i64::MAX, false).unwrap().data;
    let h = validate_batches(&data).unwrap()[0];
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 99_999);
    assert_eq!(log.offset_for_timestamp(50_000).unwrap(), Some((0, 99_999)));
    assert_eq!(log.max_timestamp(), (99_999, 0));
}

#[test]
fn oversized_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 500,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    append_simple(&mut log, 1, 10, 1);
    let size = log.size_bytes();
    let mut payload = simple(1, 10, 2);
    payload.extend(simple(1, 600, 2));
    match log.append(&mut payload, 0, 2) {
        Err(LogError::MessageTooLarge { size, max: 500 }) => assert!(size > 600),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(log.size_bytes(), size);
    // A payload that is not whole batches is refused too.
    let mut partial = simple(2, 10, 3);
    partial.truncate(partial.len() - 1);
    assert!(matches!(
        log.append(&mut partial, 0, 3),
        Err(LogError::Batch(_))
    ));
    assert_eq!(log.log_end_offset(), 1);
    // And a batch larger than a segment.
    let mut log2 = PartitionLog::open(&dir.path().join("p2"), small_segments(200)).unwrap();
    assert!(matches!(
        log2.append(&mut simple(1, 300, 1), 0, 1),
        Err(LogError::RecordBatchTooLarge { .. })
    ));
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(1_000)).unwrap();
    let mut sizes = vec![];
    for i in 0..40 {
        let mut b = simple(1 + i % 3, 50 + (i * 7) % 90, i as i64);
        sizes.push(b.len());
        log.append(&mut b, 0, i as i64).unwrap();
    }
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    let files = segment_files(dir.path());
    assert_eq!(files.len(), log.segment_count());
    assert_eq!(files[0], "00000000000000000000.log");
    for (f, base) in files.iter().zip(log.segment_base_offsets()) {
        assert_eq!(*f, format!("{base:020}.log"));
    }
    for f in &files {
        assert!(std::fs::metadata(dir.path().join(f)).unwrap().len() <= 1_000);
    }
    // One big read crosses every segment and returns all batches in order.
    let all = log.read(0, 1 << 20, i64::MAX, false).unwrap();
    let hs = headers(&all.data);
    assert_eq!(hs.len(), 40);
    assert_eq!(all.data.len(), sizes.iter().sum::<usize>());
    let mut next = 0;
    for h in &hs {
        assert_eq!(h.base_offset, next);
        next = h.last_offset() + 1;
    }
    assert_eq!(next, log.log_end_offset());
    check_every_offset(&log);
}

#[test]
fn read_limits_min_one_and_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(700)).unwrap();
    let mut lens = vec![];
    for i in 0..10 {
        let mut b = simple(2, 100, i);
        lens.push(b.len());
        log.append(&mut b, 0, i).unwrap();
    }
    let one = lens[0];
    // max_bytes smaller than one batch: nothing, unless min_one.
    assert!(log
        .read(0, one - 1, i64::MAX, false)
        .unwrap()
        .data
        .is_empty());
    assert_eq!(
        log.read(0, one - 1, i64::MAX, true).unwrap().data.len(),
        one
    );
    assert_eq!(log.read(0, 0, i64::MAX, true).unwrap().data.len(), one);
    // Exactly fits 3 batches, or 3 and a bit: always whole batches.
    assert_eq!(
        log.read(0, 3 * one, i64::MAX, false).unwrap().data.len(),
        3 * one
    );
    assert_eq!(
        log.read(0, 3 * one + 50, i64::MAX, true)
            .unwrap()
            .data
            .len(),
        3 * one
    );
    // upper_bound is exclusive and cuts at batch granularity; it spans segments too.
    let hs = headers(&log.read(0, 1 << 20, 8, false).unwrap().data);
    assert_eq!(hs.last().unwrap().last_offset(), 7);
    let hs = headers(&log.read(2, 1 << 20, 15, true).unwrap().data);
    assert_eq!(
        (hs[0].base_offset, hs.last().unwrap().last_offset()),
        (2, 13)
    );
    // A bound inside the first batch, or at the start offset, gives nothing.
    assert!(log.read(4, 1 << 20, 5, true).unwrap().data.is_empty());
    assert!(log.read(4, 1 << 20, 4, true).unwrap().data.is_empty());
    // Budget smaller than the rest of a segment but more than one batch.
    let hs = headers(&log.read(5, 2 * one + 1, i64::MAX, false).unwrap().data);
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[0].base_offset, 4);
}

#[test]
fn rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    let mut b = simple(1, 10, 0);
    log.append(&mut b, 0, 10_000).unwrap();
    log.append(&mut simple(1, 10, 0), 0, 10_500).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&mut simple(1, 10, 0), 0, 11_000).unwrap();
    assert_eq!(log.segment_base_offsets(), [0, 2]);
    // Without appends, the background roll does it; an empty segment never rolls.
    log.roll_if_aged(11_500).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.roll_if_aged(12_000).unwrap();
    assert_eq!(log.segment_base_offsets(), [0, 2, 3]);
    log.roll_if_aged(99_000).unwrap();
    assert_eq!(log.segment_count(), 3);
    check_every_offset(&log);
}

#[test]
fn index_lookups_at_every_offset_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 64,
        ..small_segments(4_000)
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..200usize {
        append_simple(&mut log, 1 + i % 4, (i * 13) % 120, i as i64);
    }
    assert!(log.segment_count() > 3);
    check_every_offset(&log);
    let leo = log.log_end_offset();
    log.close().unwrap();
    assert!(dir.path().join("00000000000000000000.index").exists());
    // Clean reopen: index files used as they are.
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.log_end_offset(), leo);
    check_every_offset(&log);
    drop(log);
    // Unclean reopen with broken and missing index files: rebuilt.
    let files = segment_files(dir.path());
    std::fs::remove_file(dir.path().join(files[0].replace(".log", ".index"))).unwrap();
    std::fs::write(
        dir.path().join(files[1].replace(".log", ".index")),
        b"garbage",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(files[2].replace(".log", ".index")),
        [0xffu8; 16],
    )
    .unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), leo);
    check_every_offset(&log);
}

#[test]
fn timestamp_lookup_is_exact_for_uncompressed_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(900)).unwrap();
    // Record timestamps, deliberately not monotonic within and across batches.
    let mut all: Vec<(i64, i64)> = vec![]; // (offset, ts)
    let mut rng = 12345u64;
    for _ in 0..60 {
        let n = 1 + (rng % 4) as usize;
        let recs: Vec<Rec<'_>> = (0..n)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                Rec {
                    ts: 1_000 + (rng >> 33) as i64 % 5_000,
                    key: None,
                    value: Some(b"value"),
                    headers: vec![],
                }
            })
            .collect();
        let mut b = encode(&recs, 0, -1);
        let r = log.append(&mut b, 0, 0).unwrap();
        for (i, rec) in recs.iter().enumerate() {
            all.push((r.base_offset + i as i64, rec.ts));
        }
    }
    assert!(log.segment_count() > 3);
    let expect = |ts: i64, start: i64| all.iter().copied().find(|&(o, t)| o >= start && t >= ts);
    for ts in (900..6_200).step_by(37) {
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            expect(ts, 0),
            "ts {ts}"
        );
    }
    let max = all.iter().map(|x| x.1).max().unwrap();
    let max_at = all.iter().find(|x| x.1 == max).unwrap().0;
    assert_eq!(log.max_timestamp(), (max, max_at));
    assert_eq!(log.offset_for_timestamp(max + 1).unwrap(), None);
    // Records below the log start offset are not answers.
    log.delete_records_before(50).unwrap();
    for ts in (900..6_200).step_by(101) {
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            expect(ts, 50),
            "ts {ts}"
        );
    }
}

#[test]
fn timestamp_lookup_in_compressed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg()).unwrap();
    let recs = |ts: &[i64]| -> Vec<Rec<'static>> {
        ts.iter()
            .map(|&ts| Rec {
                ts,
                key: None,
                value: Some(b"v"),
                headers: vec![],
            })
            .collect()
    };
    // One batch per codec, each holding 3 records: exact answers inside every batch.
    for (i, codec) in [1u8, 2, 3, 4].into_iter().enumerate() {
        let t = 100 * i as i64;
        let mut b = encode_compressed(&recs(&[t + 10, t + 20, t + 30]), codec, codec == 2);
        log.append(&mut b, 0, 0).unwrap();
    }
    for (i, _) in [1u8, 2, 3, 4].into_iter().enumerate() {
        let (t, o) = (100 * i as i64, 3 * i as i64);
        assert_eq!(
            log.offset_for_timestamp(t + 15).unwrap(),
            Some((o + 1, t + 20))
        );
        assert_eq!(
            log.offset_for_timestamp(t + 30).unwrap(),
            Some((o + 2, t + 30))
        );
        assert_eq!(log.offset_for_timestamp(t + 5).unwrap(), Some((o, t + 10)));
    }
    assert_eq!(log.offset_for_timestamp(331).unwrap(), None);
    assert_eq!(log.max_timestamp(), (330, 11));
    // A batch whose compressed records cannot be decoded answers at batch level.
    let mut bad = encode(&recs(&[1_000, 2_000, 3_000]), 4, -1); // labelled zstd, not compressed
    log.append(&mut bad, 0, 0).unwrap();
    assert_eq!(log.offset_for_timestamp(1_500).unwrap(), Some((12, 3_000)));
    assert_eq!(log.max_timestamp(), (3_000, 12));
}

#[test]
fn retention_by_time_moves_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 10_000,
        ..small_segments(600)
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    // Timestamps 0..=29 s; each batch ~170 bytes, 3 per segment.
    for i in 0..30 {
        append_simple(&mut log, 1, 100, i * 1_000);
    }
    let segs = log.segment_count();
    let stats = log.enforce_retention(25_000).unwrap();
    // Segments whose newest record is older than 15 s go.
    assert!(stats.segments_deleted > 0);
    assert_eq!(log.segment_count(), segs - stats.segments_deleted);
    assert_eq!(stats.log_start_offset, log.log_start_offset());
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    let r = log
        .read(log.log_start_offset(), 1 << 20, i64::MAX, true)
        .unwrap();
    let first = headers(&r.data)[0];
    assert!(first.max_timestamp >= 15_000 - 2_000, "{first:?}");
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Much later, everything has expired: the log is empty but keeps its end offset.
    let stats = log.enforce_retention(1_000_000).unwrap();
    assert!(stats.segments_deleted > 0);
    assert_eq!(log.log_start_offset(), 30);
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(
        log.append(&mut simple(1, 1, 0), 0, 0).unwrap().base_offset,
        30
    );
    // Persisted.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_segments(600)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 31));
}

#[test]
fn retention_by_bytes_keeps_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 1_500,
        retention_ms: -1,
        ..small_segments(600)
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    for i in 0..30 {
        append_simple(&mut log, 1, 100, i);
    }
    let before = log.size_bytes();
    let stats = log.enforce_retention(0).unwrap();
    assert!(stats.segments_deleted > 0);
    assert_eq!(log.size_bytes(), before - stats.bytes_deleted);
    assert!(
        log.size_bytes() >= 1_500 && log.size_bytes() < 1_500 + 600,
        "{}",
        log.size_bytes()
    );
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    // Nothing more to do; a zero limit still keeps the active segment.
    assert_eq!(log.enforce_retention(0).unwrap().segments_deleted, 0);
    log.update_config(LogConfig {
        retention_bytes: 0,
        ..log.config().clone()
    });
    log.enforce_retention(0).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(log.size_bytes() > 0);
    check_every_offset(&log);
}

#[test]
fn delete_records_moves_start_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(600)).unwrap();
    for i in 0..20 {
        append_simple(&mut log, 2, 100, i);
    }
    let segs = log.segment_count();
    assert_eq!(log.delete_records_before(15).unwrap(), 15);
    assert!(log.segment_count() < segs);
    assert!(log.segment_base_offsets()[0] <= 15);
    assert!(matches!(
        log.read(14, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Reading at the start returns the batch holding it (which starts at 14).
    let hs = headers(&log.read(15, 1 << 20, i64::MAX, true).unwrap().data);
    assert_eq!(hs[0].base_offset, 14);
    // Lower is a no-op; beyond the end is an error.
    assert_eq!(log.delete_records_before(3).unwrap(), 15);
    assert!(matches!(
        log.delete_records_before(41),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    drop(log); // unclean
    let mut log = PartitionLog::open(dir.path(), small_segments(600)).unwrap();
    assert_eq!(log.log_start_offset(), 15);
    // Up to the end: every segment goes, appends continue.
    assert_eq!(log.delete_records_before(40).unwrap(), 40);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.segment_base_offsets(), [40]);
    assert_eq!(append_simple(&mut log, 1, 1, 0), (40, 40));
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_segments(600)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 41));
}

#[test]
fn truncate_to_cuts_at_batch_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(600);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..20 {
        append_simple(&mut log, 2, 100, i * 10);
    }
    // Inside the active segment, at a boundary.
    log.truncate_to(38).unwrap();
    assert_eq!(log.log_end_offset(), 38);
    // Mid-batch, in an earlier segment: the whole batch goes.
    log.truncate_to(13).unwrap();
    assert_eq!(log.log_end_offset(), 12);
    check_every_offset(&log);
    assert_eq!(log.max_timestamp().0, 51);
    assert_eq!(log.offset_for_timestamp(60).unwrap(), None);
    assert_eq!(append_simple(&mut log, 3, 100, 1_000), (12, 14));
    check_every_offset(&log);
    // Beyond the end: no-op.
    log.truncate_to(100).unwrap();
    assert_eq!(log.log_end_offset(), 15);
    drop(log); // unclean
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 15);
    check_every_offset(&log);
    // To zero: empty log starting again at 0.
    log.truncate_to(0).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (0, 0, 0)
    );
    assert_eq!(append_simple(&mut log, 1, 1, 0), (0, 0));
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

/// Appends 10 batches over 2+ segments, drops the log without closing (a crash), lets `tear`
/// damage the active segment, and reopens.
fn recover_after(tear: impl FnOnce(&Path, u64)) -> (PartitionLog, i64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(1_000);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let mut last_len = 0;
    for i in 0..10 {
        let mut b = simple(3, 90, i);
        last_len = b.len() as u64;
        log.append(&mut b, 0, i).unwrap();
    }
    assert!(log.segment_count() >= 2);
    let leo = log.log_end_offset();
    let active = dir.path().join(segment_files(dir.path()).pop().unwrap());
    drop(log);
    tear(&active, last_len);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    (log, leo, dir)
}

fn append_garbage(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn recovery_truncates_random_garbage() {
    let (mut log, leo, _d) = recover_after(|p, _| {
        let junk: Vec<u8> = (0..777u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        append_garbage(p, &junk)
    });
    assert_eq!(log.log_end_offset(), leo);
    check_every_offset(&log);
    assert_eq!(append_simple(&mut log, 1, 5, 0).0, leo);
}

#[test]
fn recovery_truncates_half_a_batch() {
    let (mut log, leo, _d) = recover_after(|p, _| {
        let half = simple(3, 200, 0);
        append_garbage(p, &half[..half.len() / 2]);
    });
    assert_eq!(log.log_end_offset(), leo);
    check_every_offset(&log);
    assert_eq!(append_simple(&mut log, 2, 5, 0).0, leo);
    assert_eq!(log.log_end_offset(), leo + 2);
}

#[test]
fn recovery_drops_a_corrupt_last_batch() {
    let (mut log, leo, dir) = recover_after(|p, last_len| {
        let f = OpenOptions::new().read(true).write(true).open(p).unwrap();
        let len = f.metadata().unwrap().len();
        use std::os::unix::fs::FileExt;
        let at = len - last_len / 2;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    });
    // The last batch (3 records) is gone, everything before it is intact.
    assert_eq!(log.log_end_offset(), leo - 3);
    check_every_offset(&log);
    assert_eq!(append_simple(&mut log, 1, 5, 0).0, leo - 3);
    // And the result survives a clean close and reopen.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_segments(1_000)).unwrap();
    assert_eq!(log.log_end_offset(), leo - 2);
    check_every_offset(&log);
}

#[test]
fn recovery_of_a_corrupt_earlier_segment_drops_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(1_000);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..12 {
        append_simple(&mut log, 3, 90, i);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3);
    drop(log);
    // Pretend nothing was ever checkpointed, then corrupt the tail of the first segment.
    std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let first = dir.path().join(format!("{:020}.log", bases[0]));
    let len = std::fs::metadata(&first).unwrap().len();
    {
        use std::os::unix::fs::FileExt;
        let f = OpenOptions::new().write(true).open(&first).unwrap();
        f.write_all_at(&[0xAB], len - 3).unwrap();
    }
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(log.log_end_offset() < bases[1]);
    check_every_offset(&log);
}

#[test]
fn clean_close_skips_validation_but_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(2_000);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..30 {
        append_simple(&mut log, 2, 60, i);
    }
    let (leo, size, max) = (log.log_end_offset(), log.size_bytes(), log.max_timestamp());
    log.close().unwrap();
    assert!(dir.path().join("clean-shutdown").exists());
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    assert!(!dir.path().join("clean-shutdown").exists());
    assert_eq!(
        (log.log_end_offset(), log.size_bytes(), log.max_timestamp()),
        (leo, size, max)
    );
    assert_eq!(append_simple(&mut log, 1, 1, 99).0, leo);
    check_every_offset(&log);
    let mut n = 0;
    log.scan_headers(7, &mut |h| {
        assert!(h.last_offset() >= 7);
        n += 1;
    })
    .unwrap();
    assert_eq!(n, 31 - 3);
}

#[test]
fn flush_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 5,
        flush_ms: 1_000,
        ..cfg()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    append_simple(&mut log, 3, 1, 0);
    assert_eq!(log.unflushed_messages(), 3);
    append_simple(&mut log, 3, 1, 0);
    assert_eq!(log.unflushed_messages(), 0);
    log.append(&mut simple(1, 1, 0), 0, 10_000).unwrap();
    log.maybe_flush(10_999).unwrap();
    assert_eq!(log.unflushed_messages(), 1);
    log.maybe_flush(11_000).unwrap();
    assert_eq!(log.unflushed_messages(), 0);
}

#[test]
fn preallocated_segments_recover_and_trim() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        preallocate: true,
        ..small_segments(4_096)
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..30 {
        append_simple(&mut log, 1, 100, i);
    }
    let leo = log.log_end_offset();
    drop(log); // unclean: the active file still has its zero-filled tail
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.log_end_offset(), leo);
    check_every_offset(&log);
    append_simple(&mut log, 1, 100, 99);
    let size = log.size_bytes();
    log.close().unwrap();
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
        .sum();
    assert_eq!(on_disk, size);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), leo + 1);
}

#[test]
fn delete_removes_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    let mut log = PartitionLog::open(&dir, cfg()).unwrap();
    append_simple(&mut log, 1, 1, 0);
    log.delete().unwrap();
    assert!(!dir.exists());
}

#[test]
fn log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PartitionLog>();
}

mod model {
    //! Random append/read/reopen/truncate/delete sequences against a simple model.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append { records: usize, value_len: usize },
        Read { at: u16, max_bytes: u16 },
        Reopen { clean: bool },
        Truncate { back: u8 },
        DeleteBefore { fwd: u8 },
        Tear { junk: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1usize..5, 0usize..200).prop_map(|(records, value_len)| Op::Append { records, value_len }),
            3 => (any::<u16>(), any::<u16>()).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
            1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
            1 => any::<u8>().prop_map(|back| Op::Truncate { back }),
            1 => any::<u8>().prop_map(|fwd| Op::DeleteBefore { fwd }),
            1 => any::<u8>().prop_map(|junk| Op::Tear { junk }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn offsets_stay_consistent(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let config = LogConfig { segment_bytes: 1_200, index_interval_bytes: 100, ..LogConfig::default() };
            let mut log = Some(PartitionLog::open(dir.path(), config.clone()).unwrap());
            // Model: (base offset, last offset, value length) of each batch.
            let mut batches: Vec<(i64, i64, usize)> = vec![];
            let (mut start, mut end) = (0i64, 0i64);
            for op in ops {
                let l = log.as_mut().unwrap();
                prop_assert_eq!(l.log_end_offset(), end);
                prop_assert_eq!(l.log_start_offset(), start);
                match op {
                    Op::Append { records, value_len } => {
                        let r = l.append(&mut simple(records, value_len, 7), 0, 0).unwrap();
                        prop_assert_eq!(r.base_offset, end);
                        batches.push((r.base_offset, r.last_offset, value_len));
                        end = r.last_offset + 1;
                    }
                    Op::Read { at, max_bytes } => {
                        let at = start + i64::from(at) % (end - start + 1);
                        let r = l.read(at, usize::from(max_bytes), i64::MAX, true).unwrap();
                        let hs = headers(&r.data);
                        let expected: Vec<_> = batches.iter().filter(|b| b.1 >= at).collect();
                        prop_assert!(hs.len() <= expected.len());
                        prop_assert_eq!(hs.is_empty(), expected.is_empty());
                        prop_assert!(r.data.len() <= usize::from(max_bytes) || hs.len() == 1);
                        for (h, b) in hs.iter().zip(expected) {
                            prop_assert_eq!((h.base_offset, h.last_offset()), (b.0, b.1));
                        }
                    }
                    Op::Reopen { clean } => {
                        let l = log.take().unwrap();
                        if clean { l.close().unwrap() } else { drop(l) }
                        log = Some(PartitionLog::open(dir.path(), config.clone()).unwrap());
                    }
                    Op::Truncate { back } => {
                        let to = (end - i64::from(back) % 20).max(start);
                        l.truncate_to(to).unwrap();
                        // The cut is at the start of the batch holding `to`.
                        if let Some(cut) = batches.iter().find(|b| b.1 >= to).map(|b| b.0) {
                            batches.retain(|b| b.1 < cut);
                            end = cut;
                            start = start.min(cut);
                        }
                    }
                    Op::DeleteBefore { fwd } => {
                        let to = (start + i64::from(fwd) % 20).min(end);
                        let got = l.delete_records_before(to).unwrap();
                        start = start.max(to);
                        prop_assert_eq!(got, start);
                        batches.retain(|b| b.1 >= start);
                    }
                    Op::Tear { junk } => {
                        // Crash with junk after the last batch: nothing acknowledged is lost.
                        drop(log.take());
                        let last = dir.path().join(segment_files(dir.path()).pop().unwrap());
                        append_garbage(&last, &vec![junk; usize::from(junk) + 1]);
                        log = Some(PartitionLog::open(dir.path(), config.clone()).unwrap());
                    }
                }
            }
            let l = log.take().unwrap();
            prop_assert_eq!(l.log_end_offset(), end);
            prop_assert_eq!(l.log_start_offset(), start);
            check_every_offset(&l);
        }
    }
}

mod disk_fuzz {
    //! Whatever is found on disk, opening and reading never panics.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_files_never_panic(
            good_batches in 0usize..4,
            garbage in proptest::collection::vec(any::<u8>(), 0..300),
            index in proptest::collection::vec(any::<u8>(), 0..40),
            timeindex in proptest::collection::vec(any::<u8>(), 0..40),
            checkpoint in proptest::collection::vec(any::<u8>(), 0..12),
            clean in any::<bool>(),
            second_segment in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut log_bytes = vec![];
            for i in 0..good_batches {
                let mut b = simple(2, 10, i as i64);
                crate::batch::set_base_offset(&mut b, 2 * i as i64);
                log_bytes.extend(b);
            }
            log_bytes.extend(&garbage);
            let p = |n: &str| dir.path().join(n);
            std::fs::write(p("00000000000000000000.log"), &log_bytes).unwrap();
            std::fs::write(p("00000000000000000000.index"), &index).unwrap();
            std::fs::write(p("00000000000000000000.timeindex"), &timeindex).unwrap();
            if second_segment {
                std::fs::write(p("00000000000000000100.log"), &garbage).unwrap();
            }
            std::fs::write(p("log-start-offset"), &checkpoint).unwrap();
            std::fs::write(p("recovery-point"), &checkpoint).unwrap();
            if clean {
                std::fs::write(p("clean-shutdown"), b"").unwrap();
            }
            if let Ok(mut log) = PartitionLog::open(dir.path(), cfg()) {
                let (start, end) = (log.log_start_offset(), log.log_end_offset());
                prop_assert!(start <= end);
                for o in start..=end.min(start + 50) {
                    let _ = log.read(o, 1 << 16, i64::MAX, true);
                }
                let _ = log.offset_for_timestamp(0);
                let _ = log.max_timestamp();
                let _ = log.scan_headers(start, &mut |_| {});
                // Whatever was recovered, appends continue at the end.
                if !clean {
                    let r = log.append(&mut simple(1, 1, 0), 0, 0);
                    prop_assert_eq!(r.map(|r| r.base_offset).ok(), Some(end));
                }
            }
        }
    }
}

#[test]
fn tampering_after_a_clean_close_is_caught_in_the_tail() {
    use std::os::unix::fs::FileExt;
    for tamper in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let config = small_segments(1_000);
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let mut last_len = 0;
        for i in 0..10 {
            let mut b = simple(3, 90, i);
            last_len = b.len() as u64;
            log.append(&mut b, 0, i).unwrap();
        }
        let leo = log.log_end_offset();
        log.close().unwrap();
        let active = dir.path().join(segment_files(dir.path()).pop().unwrap());
        let expected = match tamper {
            0 => {
                append_garbage(&active, &[0x5a; 333]);
                leo
            }
            1 => {
                let half = simple(3, 200, 0);
                append_garbage(&active, &half[..half.len() / 2]);
                leo
            }
            _ => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&active)
                    .unwrap();
                let at = f.metadata().unwrap().len() - last_len / 2;
                let mut b = [0u8; 1];
                f.read_exact_at(&mut b, at).unwrap();
                f.write_all_at(&[b[0] ^ 0x01], at).unwrap();
                leo - 3
            }
        };
        let mut log = PartitionLog::open(dir.path(), config).unwrap();
        assert_eq!(log.log_end_offset(), expected, "tamper {tamper}");
        check_every_offset(&log);
        assert_eq!(append_simple(&mut log, 1, 1, 0).0, expected);
    }
}
