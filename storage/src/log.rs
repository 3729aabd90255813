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
use crate::epoch_cache::{EpochEntry, LeaderEpochCache};
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
    /// Leader epoch -> start offset (see `epoch_cache.rs`).
    epochs: LeaderEpochCache,
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
            epochs: LeaderEpochCache::empty(dir),
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
                // Index files are a cache: without room for them the segment keeps its index
                // in memory, and the next open rebuilds the missing files.
                tolerate_full_disk(dir, "write recovered segment's index files", seg.seal(dir))?;
            } else if i == last && !seg.index_in_memory() {
                seg.unseal()?;
            }
        }
        log.delete_below_log_start()?;
        log.load_epochs()?;
        // Everything before the active segment is now validated and durable.
        log.recovery_point = log.active().base_offset;
        // An older recovery point on disk only makes the next open check more.
        tolerate_full_disk(
            dir,
            "write the recovery point",
            checkpoint::write_offset(dir, RECOVERY_POINT_FILE, log.recovery_point),
        )?;
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
        self.write_batches(batches, &headers, &[(leader_epoch, base_offset)], now_ms)?;
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

    /// Records the epochs' start offsets (checkpointed before the data goes to disk, so a crash
    /// leaves at worst an entry past the log end, dropped on open), then writes the batches at
    /// the end of the active segment. A failed write restores the cache.
    fn write_batches(
        &mut self,
        data: &[u8],
        headers: &[(usize, BatchHeader)],
        epochs: &[(i32, i64)],
        now_ms: i64,
    ) -> Result<(), LogError> {
        // The common case, more data in the latest epoch, leaves the cache alone.
        let latest = self.epochs.latest();
        let untouched = epochs.iter().all(|&(epoch, start)| {
            epoch < 0 || latest.is_some_and(|l| l.epoch == epoch && l.start_offset < start)
        });
        let saved = if untouched {
            Vec::new()
        } else {
            self.epochs.entries().to_vec()
        };
        if let (false, Some(&(_, first))) = (untouched, epochs.first()) {
            // Entries at or after the first new batch describe no data (an epoch this replica
            // assigned as leader and never wrote in); the batches say what comes there.
            self.epochs.truncate_from_end_in_memory(first);
            for &(epoch, start) in epochs {
                self.epochs.assign_in_memory(epoch, start);
            }
        }
        let changed = !untouched && self.epochs.entries() != saved.as_slice();
        let interval = self.config.index_interval_bytes;
        let written = if changed { self.epochs.flush() } else { Ok(()) }
            .and_then(|()| self.active_mut().append(data, headers, interval, now_ms));
        if let Err(e) = written {
            if changed {
                self.epochs.restore(saved);
                if let Err(e2) = self.epochs.flush() {
                    tracing::warn!(dir = %self.dir.display(), error = %e2, "cannot restore the leader-epoch checkpoint; the next open trims it");
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end offset. No-op when the
    /// active segment is empty.
    fn roll(&mut self) -> Result<(), LogError> {
        if self.active().size == 0 {
            return Ok(());
        }
        let leo = self.log_end_offset();
        self.roll_at(leo)
    }

    /// Starts a new active segment at `base` (>= the log end offset): seals a non-empty active
    /// segment, or replaces an empty one.
    fn roll_at(&mut self, base: i64) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        let dir = self.dir.clone();
        if self.active().size == 0 {
            if self.active().base_offset == base {
                return Ok(());
            }
            if let Some(empty) = self.segments.pop() {
                empty.delete_files(&dir)?;
            }
        } else {
            self.active_mut().seal(&dir)?;
        }
        let seg = Segment::create(&dir, base, preallocation(&self.config))?;
        fsync_dir(&dir)?;
        self.segments.push(seg);
        if self.segments.len() == 1 && self.log_start_offset < base {
            // The only segment now starts at `base`: nothing lies below it.
            self.set_log_start_offset(base)?;
        }
        // Sealing fsynced everything before `leo`.
        self.recovery_point = leo;
        checkpoint::write_offset(&dir, RECOVERY_POINT_FILE, leo)?;
        tracing::debug!(dir = %dir.display(), base_offset = base, "rolled segment");
        Ok(())
    }

    /// Follower append: whole v2 batches copied from the leader, keeping the leader's base
    /// offsets, partition leader epochs and timestamps byte for byte. Each batch must pass
    /// framing and CRC32C checks (compacted batches, with fewer records than offsets, are
    /// accepted); the first base offset must be >= the log end offset and offsets strictly
    /// increasing. Gaps (a base offset past the previous batch's end) are accepted only where
    /// the leader's log can have them: a compacted topic, or a payload holding a compacted
    /// batch. The leader-epoch cache learns each batch's epoch. Segments roll as for
    /// [`Self::append`]; a new segment starts at the base offset of the first batch it holds.
    pub fn append_replicated(&mut self, batches: &[u8]) -> Result<AppendResult, LogError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.append_replicated_at(batches, now_ms)
    }

    /// [`Self::append_replicated`] with the clock given (segment.ms rolling, flush.ms).
    pub fn append_replicated_at(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendResult, LogError> {
        if batches.is_empty() {
            return Err(BatchError::Empty.into());
        }
        let leo = self.log_end_offset();
        let mut headers: Vec<(usize, BatchHeader)> = Vec::with_capacity(1);
        let mut pos = 0;
        let mut any_compacted = false;
        while pos < batches.len() {
            let h = batch::validate_stored_batch(&batches[pos..])?;
            if h.last_offset() == i64::MAX {
                return Err(LogError::Corrupt(format!(
                    "replicated batch at {} ends at the largest offset",
                    h.base_offset
                )));
            }
            any_compacted |= i64::from(h.records_count) <= i64::from(h.last_offset_delta)
                || h.has_delete_horizon();
            headers.push((pos, h));
            pos += h.total_len();
        }
        let gaps_allowed = any_compacted || self.config.cleanup_policy.compacts();
        let mut expected = leo;
        let mut records: u64 = 0;
        for (_, h) in &headers {
            if h.base_offset < expected || (h.base_offset > expected && !gaps_allowed) {
                return Err(LogError::UnexpectedOffset {
                    expected,
                    found: h.base_offset,
                });
            }
            expected = h.next_offset();
            records += h.records_count as u64;
        }
        let first_base = headers[0].1.base_offset;
        let last_offset = expected - 1;
        let seg_bytes = self.config.effective_segment_bytes();
        let active = self.active();
        let too_big = active.size + batches.len() as u64 > seg_bytes;
        let too_old = active
            .rolling_base_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms);
        let offsets_overflow = last_offset - active.base_offset > i64::from(i32::MAX);
        if offsets_overflow || (active.size > 0 && (too_big || too_old)) {
            self.roll_at(first_base)?;
        }
        let epochs: Vec<(i32, i64)> = headers
            .iter()
            .map(|(_, h)| (h.partition_leader_epoch, h.base_offset))
            .collect();
        self.write_batches(batches, &headers, &epochs, now_ms)?;
        self.unflushed_messages = self.unflushed_messages.saturating_add(records);
        self.first_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(AppendResult {
            base_offset: first_base,
            last_offset,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
        })
    }

    /// The largest leader epoch in the leader-epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest().map(|e| e.epoch)
    }

    /// The leader-epoch cache, oldest epoch first.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.epochs.entries().to_vec()
    }

    /// OffsetForLeaderEpoch, Kafka's semantics: for the latest cached epoch, `(epoch, log end
    /// offset)`; for an older one, the largest cached epoch <= `epoch` and the start offset of
    /// the next larger cached epoch; for an epoch below every cached one, `(epoch, start of
    /// the first cached epoch)`. `None` (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET) for a
    /// negative epoch, an empty cache, or an epoch above the latest.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// A replica becoming leader with `epoch` records that the epoch starts at the log end
    /// offset (Kafka does this before the first append, so followers can ask about the epoch
    /// at once). No-op when `epoch` is already the latest.
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        self.epochs.assign(epoch, leo).map(|_| ())
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
            let raised = offset > self.log_start_offset;
            self.log_start_offset = offset;
            checkpoint::write_offset(&self.dir, LOG_START_OFFSET_FILE, offset)?;
            if raised {
                self.epochs.truncate_from_start(offset)?;
            }
        }
        Ok(())
    }

    /// Loads the leader-epoch checkpoint (rebuilding it from the batch headers when missing or
    /// malformed) and trims it to the log: entries past the log end (their data was lost in a
    /// crash or cut by recovery) go, and the first one starts no earlier than the log start.
    fn load_epochs(&mut self) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        let mut loaded = LeaderEpochCache::load(&self.dir)?;
        // Entries past the log end: their data was lost in a crash or cut by recovery. An entry
        // at exactly the log end is an epoch that has no data yet: kept.
        let trimmed = loaded
            .as_mut()
            .is_some_and(|c| c.truncate_from_end_in_memory(leo.saturating_add(1)));
        // The checkpoint is written before the data, so the entry covering the last batch
        // always has that batch's epoch; if not, the file is stale (restored, copied by hand)
        // and the batches are the truth.
        // A corrupt trusted segment is not this check's to report (reads will); skip it then.
        let last = self.last_batch_header().unwrap_or_else(|e| {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the last batch to check the leader-epoch checkpoint");
            None
        });
        if let (Some(cache), Some(last)) = (&loaded, last) {
            let at = last.base_offset.max(self.log_start_offset);
            let n = cache.entries().partition_point(|e| e.start_offset <= at);
            let covering = n.checked_sub(1).map(|i| cache.entries()[i].epoch);
            if last.partition_leader_epoch >= 0 && covering != Some(last.partition_leader_epoch) {
                tracing::warn!(dir = %self.dir.display(), last_epoch = last.partition_leader_epoch, "leader-epoch checkpoint disagrees with the log; rebuilding it");
                loaded = None;
            }
        }
        match loaded {
            Some(cache) => {
                self.epochs = cache;
                if trimmed {
                    tolerate_full_disk(
                        &self.dir,
                        "write the trimmed leader-epoch checkpoint",
                        self.epochs.flush(),
                    )?;
                }
            }
            None => {
                let mut cache = LeaderEpochCache::empty(&self.dir);
                let scanned = self.scan_headers(self.log_start_offset, &mut |h| {
                    cache.assign_in_memory(h.partition_leader_epoch, h.base_offset);
                });
                if let Err(e) = scanned {
                    // Keep what was read; the log stays usable and reads report the damage.
                    tracing::warn!(dir = %self.dir.display(), error = %e, "leader-epoch cache rebuilt from part of the log");
                }
                // The checkpoint is rebuilt from the log whenever it is missing or stale,
                // so a full disk must not keep the log from opening over it.
                tolerate_full_disk(
                    &self.dir,
                    "write the rebuilt leader-epoch checkpoint",
                    cache.flush(),
                )?;
                tracing::info!(dir = %self.dir.display(), entries = cache.entries().len(), "rebuilt the leader-epoch cache from the log");
                self.epochs = cache;
            }
        }
        let trimmed = self.epochs.truncate_from_start(self.log_start_offset);
        tolerate_full_disk(&self.dir, "write the leader-epoch checkpoint", trimmed)
    }

    /// Header of the last batch at or after the log start, if any.
    fn last_batch_header(&self) -> Result<Option<BatchHeader>, LogError> {
        for seg in self.segments.iter().rev() {
            if seg.size == 0 || seg.next_offset <= self.log_start_offset {
                continue;
            }
            let mut last = None;
            if let Some((pos, _)) = seg.locate(seg.next_offset - 1)? {
                let mut sc = seg.scanner(pos);
                while let Next::Batch(_, h) = sc.next_header()? {
                    last = Some(h);
                    sc.advance(h.total_len());
                }
            }
            if last.is_some() {
                return Ok(last);
            }
        }
        Ok(None)
    }

    /// Follower whose log end is below the leader's log start (Kafka's
    /// `truncateFullyAndStartAt`): removes every segment and the epoch cache and starts an
    /// empty log at `offset`, which becomes both the log start and the log end.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: self.log_end_offset(),
            });
        }
        let dir = self.dir.clone();
        while let Some(seg) = self.segments.pop() {
            seg.delete_files(&dir)?;
        }
        fsync_dir(&dir)?;
        self.segments
            .push(Segment::create(&dir, offset, preallocation(&self.config))?);
        fsync_dir(&dir)?;
        self.epochs.clear()?;
        self.log_start_offset = offset;
        checkpoint::write_offset(&dir, LOG_START_OFFSET_FILE, offset)?;
        self.recovery_point = offset;
        checkpoint::write_offset(&dir, RECOVERY_POINT_FILE, offset)?;
        self.cleaner.truncated(&dir, offset)?;
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
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
    /// The leader-epoch cache loses every entry starting at or after the new log end, even when
    /// nothing else changes (`offset` >= the log end): an epoch this replica assigned as leader
    /// without writing data in it must not survive into its life as a follower.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        if offset >= leo {
            return self.epochs.truncate_from_end(leo);
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
        let leo = self.log_end_offset();
        self.epochs.truncate_from_end(leo)?;
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

/// For writes on open that only record what can be derived again from the segments
/// (checkpoints, index files): on a full disk the log opens without them, with a warning,
/// so that a broker restarted on a full volume serves its data and resumes writing once
/// space returns. Any other error still fails the open.
fn tolerate_full_disk(dir: &Path, what: &str, r: Result<(), LogError>) -> Result<(), LogError> {
    match r {
        Err(e) if e.is_out_of_space() => {
            tracing::warn!(dir = %dir.display(), error = %e, "disk full: could not {what}; continuing without it");
            Ok(())
        }
        r => r,
    }
}
