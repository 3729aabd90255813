//! One partition's log: a directory of segments, appended at the end, read by offset.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchError, BatchHeader, BatchIter};
use crate::checkpoint::{
    self, fsync_dir, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
};
use crate::compaction::{self, CleanerState};
use crate::config::{LogConfig, TimestampType};
use crate::error::{LogError, ResultExt};
use crate::segment::{self, Next, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};

/// Outcome of [`PartitionLog::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's append time for LogAppendTime topics, -1 for CreateTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// Outcome of [`PartitionLog::read`]: whole batches, as stored.
#[derive(Clone, Debug)]
pub struct ReadResult {
    pub data: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// What one retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionStats {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

/// One partition's log in its own directory.
///
/// Not internally synchronised: the caller wraps it in a lock. `read` takes `&self` and uses
/// positional reads only, so a reader/writer lock works too.
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Sorted by base offset; never empty; the last one is the active segment.
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start_offset: i64,
    /// Log cleaner bookkeeping (see `compaction.rs`).
    pub(crate) cleaner: CleanerState,
    /// Everything below this offset is known durable and validated (segments before it are
    /// trusted on an unclean restart).
    recovery_point: i64,
    unflushed_messages: u64,
    first_unflushed_ms: Option<i64>,
}

fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

impl PartitionLog {
    /// Opens or creates the log in `dir`.
    ///
    /// After a clean close (marker file present) segments are trusted as they are and only
    /// their index files are sanity-checked. Otherwise every segment at or after the recovery
    /// point is validated batch by batch (framing, CRC32C, offsets) and cut at the first bad
    /// byte; segments after a cut one are removed. Indexes that are missing or malformed are
    /// rebuilt from the log. The log start offset comes from its checkpoint.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, LogError> {
        if !dir.is_dir() {
            fs::create_dir_all(dir).ctx("create log directory", dir)?;
            // Make the new directory's own entry durable, not only the files inside it.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        // Finish (or drop) a compaction swap a crash interrupted, before segments are listed.
        compaction::recover_swaps(dir)?;
        let clean = dir.join(CLEAN_SHUTDOWN_FILE).exists();
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        for entry in fs::read_dir(dir).ctx("list log directory", dir)? {
            let entry = entry.ctx("list log directory", dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                segment::remove_if_exists(&entry.path())?;
                continue;
            }
            match parse_segment_name(name) {
                Some((base, LOG_EXT)) => bases.push(base),
                Some((base, INDEX_EXT | TIME_INDEX_EXT)) => index_files.push((base, entry.path())),
                _ => {}
            }
        }
        bases.sort_unstable();
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                segment::remove_if_exists(&path)?;
            }
        }
        let recovery_point = if clean {
            i64::MAX
        } else {
            checkpoint::read_offset(dir, RECOVERY_POINT_FILE)?.unwrap_or(0)
        };
        let interval = config.index_interval_bytes;
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut recovered_bytes = 0u64;
        let mut dropped = false;
        for (i, &base) in bases.iter().enumerate() {
            if dropped {
                tracing::warn!(dir = %dir.display(), base, "removing segment after a truncated one");
                remove_segment_files(dir, base)?;
                continue;
            }
            let trusted = clean || bases.get(i + 1).is_some_and(|&next| next <= recovery_point);
            let opened = if trusted {
                Segment::open_trusted(dir, base, interval)?
            } else {
                Segment::recover(dir, base, interval)?
            };
            if let Some(prev) = segments.last() {
                if prev.next_offset > base {
                    return Err(LogError::Corrupt(format!(
                        "{}: segment {base} overlaps the previous one ending at {}",
                        dir.display(),
                        prev.next_offset
                    )));
                }
            }
            recovered_bytes += opened.truncated_bytes;
            if opened.truncated_bytes > 0 && i + 1 < bases.len() {
                dropped = true;
            }
            segments.push(opened.segment);
        }
        let checkpointed_start = checkpoint::read_offset(dir, LOG_START_OFFSET_FILE)?;
        if segments.is_empty() {
            let base = checkpointed_start.unwrap_or(0);
            segments.push(Segment::create(dir, base, preallocation(&config))?);
            fsync_dir(dir)?;
        }
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: 0,
            cleaner: CleanerState::load(dir)?,
            recovery_point: 0,
            unflushed_messages: 0,
            first_unflushed_ms: None,
        };
        let leo = log.log_end_offset();
        log.log_start_offset = checkpointed_start
            .unwrap_or(0)
            .max(log.segments[0].base_offset)
            .min(leo);
        // Sealed segments get durable index files; the active one keeps its index in memory.
        let last = log.segments.len() - 1;
        for (i, seg) in log.segments.iter_mut().enumerate() {
            if i < last && seg.index_in_memory() {
                seg.seal(dir)?;
            } else if i == last && !seg.index_in_memory() {
                seg.unseal()?;
            }
        }
        log.delete_below_log_start()?;
        // Everything before the active segment is now validated and durable.
        log.recovery_point = log.active().base_offset;
        checkpoint::write_offset(dir, RECOVERY_POINT_FILE, log.recovery_point)?;
        if clean {
            checkpoint::take_marker(dir, CLEAN_SHUTDOWN_FILE)?;
        }
        tracing::info!(
            dir = %dir.display(),
            clean,
            segments = log.segments.len(),
            log_start_offset = log.log_start_offset,
            log_end_offset = log.log_end_offset(),
            recovered_bytes,
            "opened partition log"
        );
        Ok(log)
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty (see the field's invariant).
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let n = self.segments.len();
        &mut self.segments[n - 1]
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Bytes of valid log data over all segments (index files not counted).
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Messages appended since the last fsync.
    pub fn unflushed_messages(&self) -> u64 {
        self.unflushed_messages
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// New settings apply from the next append, roll or retention pass.
    pub fn update_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Index of the segment that holds `offset` (the first one for offsets before it).
    fn segment_index(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// Appends a payload of whole v2 batches (already checked by `validate_batches`).
    /// Offsets, the leader epoch and (for LogAppendTime) the timestamp are written into
    /// `batches` in place before the bytes go to disk.
    pub fn append(
        &mut self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendResult, LogError> {
        // The broker validated the payload already; debug builds check again.
        #[cfg(debug_assertions)]
        batch::validate_batches(batches)?;
        if batches.is_empty() {
            return Err(BatchError::Empty.into());
        }
        let mut headers: Vec<(usize, BatchHeader)> = Vec::with_capacity(1);
        let mut it = BatchIter::new(batches);
        headers.extend(it.by_ref());
        let framed = it.position();
        if framed != batches.len() {
            let e =
                batch::validate_batch(&batches[framed..])
                    .err()
                    .unwrap_or(BatchError::Truncated {
                        needed: batches.len(),
                        available: framed,
                    });
            return Err(e.into());
        }
        let seg_bytes = self.config.effective_segment_bytes();
        let mut records: i64 = 0;
        for (_, h) in &headers {
            let size = h.total_len();
            if size > self.config.max_message_bytes as usize {
                return Err(LogError::MessageTooLarge {
                    size,
                    max: self.config.max_message_bytes,
                });
            }
            if size as u64 > seg_bytes {
                return Err(LogError::RecordBatchTooLarge {
                    size,
                    segment_bytes: seg_bytes,
                });
            }
            if h.records_count < 1 || h.last_offset_delta != h.records_count - 1 {
                return Err(BatchError::BadRecordCount {
                    records_count: h.records_count,
                    last_offset_delta: h.last_offset_delta,
                }
                .into());
            }
            records += i64::from(h.records_count);
        }
        let base_offset = self.log_end_offset();
        let last_offset = base_offset + records - 1;
        let active = self.active();
        let too_big = active.size + batches.len() as u64 > seg_bytes;
        let too_old = active
            .rolling_base_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms);
        let offsets_overflow = last_offset - active.base_offset > i64::from(i32::MAX);
        if active.size > 0 && (too_big || too_old || offsets_overflow) {
            self.roll()?;
        }
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let mut next = base_offset;
        for (pos, h) in headers.iter_mut() {
            let b = &mut batches[*pos..*pos + h.total_len()];
            batch::set_base_offset(b, next);
            batch::set_partition_leader_epoch(b, leader_epoch);
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            if log_append_time {
                batch::set_log_append_time(b, now_ms);
                h.max_timestamp = now_ms;
                h.attributes |= 0x08;
            }
            next += i64::from(h.records_count);
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut()
            .append(batches, &headers, interval, now_ms)?;
        self.unflushed_messages = self.unflushed_messages.saturating_add(records as u64);
        self.first_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(AppendResult {
            base_offset,
            last_offset,
            log_append_time: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
        })
    }

    /// Seals the active segment and starts a new one at the log end offset. No-op when the
    /// active segment is empty.
    fn roll(&mut self) -> Result<(), LogError> {
        if self.active().size == 0 {
            return Ok(());
        }
        let leo = self.log_end_offset();
        let dir = self.dir.clone();
        self.active_mut().seal(&dir)?;
        let seg = Segment::create(&dir, leo, preallocation(&self.config))?;
        fsync_dir(&dir)?;
        self.segments.push(seg);
        // Sealing fsynced everything before `leo`.
        self.recovery_point = leo;
        checkpoint::write_offset(&dir, RECOVERY_POINT_FILE, leo)?;
        tracing::debug!(dir = %dir.display(), base_offset = leo, "rolled segment");
        Ok(())
    }

    /// Whole batches from the one holding `offset`, at most `max_bytes` (but one whole batch
    /// when `min_one` and nothing else fits), only batches ending below `upper_bound`.
    /// Continues into the next segments while there is room.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<ReadResult, LogError> {
        let (start, end) = (self.log_start_offset, self.log_end_offset());
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        let mut out = BytesMut::new();
        let mut budget = max_bytes;
        let mut target = offset;
        let mut idx = self.segment_index(offset);
        while idx < self.segments.len() && target < end && target < upper_bound {
            let seg = &self.segments[idx];
            let Some((pos, first)) = seg.locate(target)? else {
                idx += 1;
                continue;
            };
            if first.last_offset() >= upper_bound {
                break;
            }
            let avail = (seg.size - pos) as usize;
            let mut want = avail.min(budget);
            if out.is_empty() && min_one && first.total_len() > want {
                want = first.total_len();
            }
            if want < first.total_len() {
                break;
            }
            let before = out.len();
            seg.read_into(pos, want, &mut out)?;
            let mut used = 0;
            for (p, h) in BatchIter::new(&out[before..]) {
                if h.last_offset() >= upper_bound {
                    break;
                }
                used = p + h.total_len();
                target = h.next_offset();
            }
            out.truncate(before + used);
            budget = budget.saturating_sub(used);
            if used < avail || budget == 0 {
                break;
            }
            idx += 1;
        }
        Ok(ReadResult {
            data: out.freeze(),
            log_start_offset: start,
            log_end_offset: end,
        })
    }

    /// ListOffsets by timestamp: the earliest offset (>= log start) whose timestamp is >= `ts`,
    /// with that timestamp. Exact per record for CreateTime batches: only the candidate batch's
    /// records are decoded (inflated first when compressed). For LogAppendTime batches every
    /// record has the batch's time. A batch whose records cannot be decoded answers at batch
    /// level: (its base offset, its max timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let start = self.log_start_offset;
        for seg in &self.segments {
            if seg.next_offset <= start || seg.max_ts < ts {
                continue;
            }
            let from = seg.time_lookup_start(ts)?.max(start);
            let Some((pos, _)) = seg.locate(from)? else {
                continue;
            };
            let mut sc = seg.scanner(pos);
            while let Next::Batch(_, h) = sc.next_header()? {
                if h.max_timestamp >= ts && h.last_offset() >= start {
                    if h.is_log_append_time() {
                        return Ok(Some((h.base_offset.max(start), h.max_timestamp)));
                    }
                    let bytes = sc.peek(h.total_len())?.unwrap_or(&[]);
                    let mut found = None;
                    let decoded = batch::record_timestamps(bytes, &mut |o, t| {
                        if o >= start && t >= ts {
                            found = Some((o, t));
                            return false;
                        }
                        true
                    });
                    match (found, decoded) {
                        (Some(f), _) => return Ok(Some(f)),
                        (None, Err(e)) => {
                            tracing::warn!(segment = %seg.log_path.display(), offset = h.base_offset, error = %e, "undecodable records; answering at batch level");
                            return Ok(Some((h.base_offset.max(start), h.max_timestamp)));
                        }
                        // The header's max timestamp overstated its records: keep looking.
                        (None, Ok(())) => {}
                    }
                }
                sc.advance(h.total_len());
            }
        }
        Ok(None)
    }

    /// (largest timestamp, its offset) over the log, or (-1, -1) when there is none. The
    /// offset is exact for CreateTime batches (the batch's records are decoded), else the batch's
    /// base offset.
    pub fn max_timestamp(&self) -> (i64, i64) {
        let mut best: Option<&Segment> = None;
        for seg in &self.segments {
            if seg.max_ts >= 0 && best.is_none_or(|b| seg.max_ts > b.max_ts) {
                best = Some(seg);
            }
        }
        let Some(seg) = best else {
            return (-1, -1);
        };
        let (ts, batch_offset) = (seg.max_ts, seg.offset_of_max_ts);
        let exact = (|| -> Result<Option<i64>, LogError> {
            let Some((pos, h)) = seg.locate(batch_offset)? else {
                return Ok(None);
            };
            if h.is_log_append_time() {
                return Ok(None);
            }
            let mut sc = seg.scanner(pos);
            let bytes = sc.peek(h.total_len())?.unwrap_or(&[]);
            let mut found = None;
            batch::record_timestamps(bytes, &mut |o, t| {
                if t == ts {
                    found = Some(o);
                }
                found.is_none()
            })?;
            Ok(found)
        })();
        match exact {
            Ok(Some(o)) => (ts, o),
            Ok(None) => (ts, batch_offset),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "max timestamp lookup fell back to batch level");
                (ts, batch_offset)
            }
        }
    }

    /// DeleteRecords: raises the log start offset to `offset` (persisted) and removes the
    /// segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        let end = self.log_end_offset();
        if offset < 0 || offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.set_log_start_offset(offset)?;
        self.delete_below_log_start()?;
        Ok(self.log_start_offset)
    }

    fn set_log_start_offset(&mut self, offset: i64) -> Result<(), LogError> {
        if offset != self.log_start_offset {
            self.log_start_offset = offset;
            checkpoint::write_offset(&self.dir, LOG_START_OFFSET_FILE, offset)?;
        }
        Ok(())
    }

    fn delete_below_log_start(&mut self) -> Result<RetentionStats, LogError> {
        let start = self.log_start_offset;
        let last = self.segments.len() - 1;
        // A sealed segment covers offsets up to the next one's base (compaction may have
        // removed its last batches); the active one up to the log end.
        let n = (0..=last)
            .take_while(|&i| {
                if i < last {
                    self.segments[i + 1].base_offset <= start
                } else {
                    let s = &self.segments[i];
                    s.next_offset <= start && s.size > 0
                }
            })
            .count();
        self.delete_oldest(n)
    }

    /// Removes the `n` oldest segments (rolling first if that includes the active one) and
    /// moves the log start offset up to the first remaining segment.
    fn delete_oldest(&mut self, n: usize) -> Result<RetentionStats, LogError> {
        let mut stats = RetentionStats {
            log_start_offset: self.log_start_offset,
            ..Default::default()
        };
        if n == 0 {
            return Ok(stats);
        }
        if n >= self.segments.len() {
            self.roll()?;
        }
        let n = n.min(self.segments.len() - 1);
        if n == 0 {
            return Ok(stats);
        }
        let new_start = self.segments[n].base_offset.max(self.log_start_offset);
        // Persist the new start first: a crash mid-deletion then leaves only dead segments.
        self.set_log_start_offset(new_start)?;
        for seg in self.segments.drain(..n) {
            stats.segments_deleted += 1;
            stats.bytes_deleted += seg.size;
            tracing::info!(segment = %seg.log_path.display(), bytes = seg.size, "deleting segment");
            seg.delete_files(&self.dir)?;
        }
        fsync_dir(&self.dir)?;
        stats.log_start_offset = self.log_start_offset;
        Ok(stats)
    }

    /// Retention by time (a segment goes when its largest timestamp is older than
    /// `retention.ms`), then by size (oldest sealed segments go while the rest still exceeds
    /// `retention.bytes`), then segments wholly below the log start offset. Only a prefix of
    /// the log is ever removed; the active segment only when all of it has expired by time.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionStats, LogError> {
        let mut total = RetentionStats::default();
        let add = |s: RetentionStats, total: &mut RetentionStats| {
            total.segments_deleted += s.segments_deleted;
            total.bytes_deleted += s.bytes_deleted;
        };
        // cleanup.policy=compact alone keeps everything the cleaner leaves.
        let deletes = self.config.cleanup_policy.deletes();
        if deletes && self.config.retention_ms >= 0 {
            let limit = self.config.retention_ms;
            let last = self.segments.len() - 1;
            // Empty sealed segments (left by compaction) neither stop nor count on their own.
            let mut n = 0;
            for (i, s) in self.segments.iter().enumerate() {
                if s.size == 0 && i < last {
                    continue;
                }
                if s.size > 0 && now_ms.saturating_sub(s.retention_timestamp()) > limit {
                    n = i + 1;
                } else {
                    break;
                }
            }
            let s = self.delete_oldest(n)?;
            add(s, &mut total);
        }
        if deletes && self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            let sealed = self.segments.len() - 1;
            let n = self.segments[..sealed]
                .iter()
                .take_while(|s| {
                    if excess - s.size as i64 >= 0 {
                        excess -= s.size as i64;
                        true
                    } else {
                        false
                    }
                })
                .count();
            let s = self.delete_oldest(n)?;
            add(s, &mut total);
        }
        let s = self.delete_below_log_start()?;
        add(s, &mut total);
        total.log_start_offset = self.log_start_offset;
        Ok(total)
    }

    /// fsyncs the active segment (sealed ones were fsynced when rolled).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.active().flush()?;
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// flush.ms: flushes when the oldest unflushed append is at least `flush_ms` old.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<(), LogError> {
        match self.first_unflushed_ms {
            Some(t) if now_ms.saturating_sub(t) >= self.config.flush_ms => self.flush(),
            _ => Ok(()),
        }
    }

    /// segment.ms: rolls a non-empty active segment once it is old enough, even without appends.
    pub fn roll_if_aged(&mut self, now_ms: i64) -> Result<(), LogError> {
        let aged = self
            .active()
            .rolling_base_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms);
        if aged {
            self.roll()?;
        }
        Ok(())
    }

    /// Drops everything at and after `offset`. The cut is at a batch boundary: when `offset`
    /// falls inside a batch, that whole batch goes and the log end offset becomes its base.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let dir = self.dir.clone();
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: self.log_end_offset(),
            });
        }
        if offset <= self.segments[0].base_offset {
            // Nothing survives: start afresh at `offset`.
            while let Some(seg) = self.segments.pop() {
                seg.delete_files(&dir)?;
            }
            fsync_dir(&dir)?;
            self.segments
                .push(Segment::create(&dir, offset, preallocation(&self.config))?);
            fsync_dir(&dir)?;
            self.set_log_start_offset(offset)?;
        } else {
            let idx = self.segment_index(offset);
            // Newest first, so a crash midway leaves a contiguous prefix of the old log.
            while self.segments.len() > idx + 1 {
                if let Some(seg) = self.segments.pop() {
                    seg.delete_files(&dir)?;
                }
            }
            fsync_dir(&dir)?;
            let seg = self.active_mut();
            if let Some((pos, h)) = seg.locate(offset)? {
                seg.truncate_at(&dir, pos, h.base_offset)?;
            } else {
                // `offset` lies past this segment's data: nothing left to cut here, but the
                // segment becomes the active one again.
                let (size, next) = (seg.size, seg.next_offset);
                seg.truncate_at(&dir, size, next)?;
            }
            let leo = self.log_end_offset();
            if self.log_start_offset > leo {
                self.set_log_start_offset(leo)?;
            }
        }
        self.recovery_point = self.recovery_point.min(self.active().base_offset);
        checkpoint::write_offset(&dir, RECOVERY_POINT_FILE, self.recovery_point)?;
        self.cleaner.truncated(&dir, offset)?;
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// Calls `f` with the header of every batch from the one holding `from_offset` to the end.
    pub fn scan_headers(
        &self,
        from_offset: i64,
        f: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        let idx = self.segment_index(from_offset);
        let mut target = from_offset;
        for seg in &self.segments[idx..] {
            let Some((pos, _)) = seg.locate(target)? else {
                continue;
            };
            let mut sc = seg.scanner(pos);
            while let Next::Batch(_, h) = sc.next_header()? {
                f(&h);
                sc.advance(h.total_len());
            }
            target = seg.next_offset;
        }
        Ok(())
    }

    /// Flushes, writes the active segment's index files, checkpoints and leaves the
    /// clean-shutdown marker so the next open skips validation.
    pub fn close(mut self) -> Result<(), LogError> {
        self.flush()?;
        let dir = self.dir.clone();
        self.active_mut().persist(&dir)?;
        checkpoint::write_offset(&dir, RECOVERY_POINT_FILE, self.log_end_offset())?;
        checkpoint::write_offset(&dir, LOG_START_OFFSET_FILE, self.log_start_offset)?;
        checkpoint::write_marker(&dir, CLEAN_SHUTDOWN_FILE)?;
        Ok(())
    }

    /// Removes the partition's directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).ctx("remove log directory", &dir)?;
        if let Some(parent) = dir.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }
}

fn preallocation(config: &LogConfig) -> Option<u64> {
    config.preallocate.then(|| config.effective_segment_bytes())
}

pub(crate) fn remove_segment_files(dir: &Path, base: i64) -> Result<(), LogError> {
    for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
        segment::remove_if_exists(&dir.join(segment::file_name(base, ext)))?;
    }
    Ok(())
}
