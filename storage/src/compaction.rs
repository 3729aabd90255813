//! Log compaction (`cleanup.policy=compact`), after Kafka's LogCleaner.
//!
//! A pass has three steps so that the partition lock is held only briefly:
//!
//! 1. [`PartitionLog::compaction_task`] (`&self`, cheap): picks the cleanable sealed segments
//!    (never the active one, none at or above `upper_bound`, none younger than
//!    `min.compaction.lag.ms`), checks the dirty ratio, and takes extra handles on their files.
//! 2. [`CleanTask::run`] (no lock): builds key → latest offset over the dirty part, then rewrites
//!    the cleanable segments in groups of at most `segment.bytes` into `<base>.<end>.cleaned`
//!    files (fsynced), keeping per key only its latest record. Batches keep their base offset
//!    and last offset delta, so offsets never move; a batch that loses records is re-encoded
//!    with the same codec and a fresh CRC.
//! 3. [`PartitionLog::install_compaction`] (`&mut self`, short): checks the segments are still
//!    the ones that were cleaned, then swaps crash-safely: rename `.cleaned` → `.swap`, delete
//!    the old segments' files, rename `.swap` → `.log`. [`recover_swaps`] finishes a swap that a
//!    crash interrupted (a `.swap` is complete by construction) and drops `.cleaned` leftovers.
//!
//! Tombstones follow KIP-534: the first pass that keeps a batch with tombstones stamps its
//! delete horizon (now + `delete.retention.ms`) into `baseTimestamp` (attribute bit 6), with
//! the records' timestamp deltas re-encoded so their timestamps do not change; a later pass
//! after the horizon drops them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::{self, BatchError, BatchHeader, RecordRef, ATTR_DELETE_HORIZON};
use crate::checkpoint::{self, fsync_dir};
use crate::compression;
use crate::error::{LogError, ResultExt};
use crate::log::{remove_segment_files, PartitionLog};
use crate::segment::{self, Next, Scanner, Segment, LOG_EXT};

/// Checkpoint: offsets below this were cleaned by the last complete pass.
pub(crate) const CLEANER_OFFSET_FILE: &str = "cleaner-offset-checkpoint";
/// Checkpoint: the earliest delete horizon of tombstones still in the log.
pub(crate) const CLEANER_HORIZON_FILE: &str = "cleaner-delete-horizon";
const CLEANED_EXT: &str = "cleaned";
const SWAP_EXT: &str = "swap";
/// Memory bound of the key → offset map (Kafka's `log.cleaner.dedupe.buffer.size` is 128 MiB
/// for all cleaner threads). When the dirty part holds more keys, a pass cleans up to the last
/// whole segment mapped and the next pass continues.
const MAX_MAP_BYTES: usize = 64 << 20;
const MAP_ENTRY_OVERHEAD: usize = 48;

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Old segments replaced by cleaned ones.
    pub segments_cleaned: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Records dropped because a later record has the same key (or they had no key).
    pub records_removed: u64,
    /// Tombstones dropped after their delete horizon.
    pub tombstones_removed: u64,
    /// Offsets below this are clean after the pass.
    pub first_dirty_offset: i64,
}

/// The cleaner's bookkeeping inside a [`PartitionLog`].
pub(crate) struct CleanerState {
    first_dirty: i64,
    delete_horizon: Option<i64>,
    /// Bumped whenever the log is truncated: a pass planned before must not be installed.
    generation: u64,
}

impl CleanerState {
    pub(crate) fn load(dir: &Path) -> Result<CleanerState, LogError> {
        Ok(CleanerState {
            first_dirty: checkpoint::read_offset(dir, CLEANER_OFFSET_FILE)?.unwrap_or(0),
            delete_horizon: checkpoint::read_offset(dir, CLEANER_HORIZON_FILE)?,
            generation: 0,
        })
    }

    pub(crate) fn truncated(&mut self, dir: &Path, offset: i64) -> Result<(), LogError> {
        self.generation += 1;
        if self.first_dirty > offset {
            self.first_dirty = offset;
            checkpoint::write_offset(dir, CLEANER_OFFSET_FILE, offset)?;
        }
        Ok(())
    }
}

struct SegmentSnapshot {
    base: i64,
    /// Base offset of the following segment: this one covers `[base, end)`.
    end: i64,
    size: u64,
    file: File,
    path: PathBuf,
}

/// A planned compaction pass; [`CleanTask::run`] does the work without the log.
pub struct CleanTask {
    dir: PathBuf,
    generation: u64,
    now_ms: i64,
    delete_retention_ms: i64,
    segment_bytes: u64,
    index_interval_bytes: u32,
    first_dirty: i64,
    segments: Vec<SegmentSnapshot>,
}

/// Cleaned segment files waiting for [`PartitionLog::install_compaction`]. Dropping it
/// uninstalled removes its files.
pub struct Cleaned {
    generation: u64,
    groups: Vec<CleanedGroup>,
    clean_end: i64,
    next_delete_horizon: Option<i64>,
}

struct CleanedGroup {
    base: i64,
    end: i64,
    /// (base offset, size) of the segments it replaces.
    old: Vec<(i64, u64)>,
    path: PathBuf,
    /// The output, scanned and indexed (in memory) while no lock was held.
    segment: Segment,
    stats: CompactionStats,
}

impl Drop for Cleaned {
    fn drop(&mut self) {
        for g in self.groups.drain(..) {
            let _ = fs::remove_file(&g.path);
        }
    }
}

fn cleaned_name(base: i64, end: i64, ext: &str) -> String {
    format!("{base:020}.{end:020}.{ext}")
}

fn parse_cleaned_name(name: &str) -> Option<(i64, i64, &str)> {
    let mut parts = name.splitn(3, '.');
    let (b, e, ext) = (parts.next()?, parts.next()?, parts.next()?);
    let num = |s: &str| {
        (s.len() == 20 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    Some((num(b)?, num(e)?, ext))
}

/// Called by `PartitionLog::open` before it lists segments: removes unfinished `.cleaned`
/// files and completes every `.swap` (it replaces the segments with base offsets in
/// `[base, end)`; deleting them and renaming is idempotent, so a crash here is fine too).
pub(crate) fn recover_swaps(dir: &Path) -> Result<(), LogError> {
    let mut swaps = Vec::new();
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).ctx("list log directory", dir)? {
        let entry = entry.ctx("list log directory", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((base, end, ext)) = parse_cleaned_name(name) {
            match ext {
                CLEANED_EXT => {
                    tracing::info!(file = %entry.path().display(), "removing unfinished compaction output");
                    segment::remove_if_exists(&entry.path())?;
                }
                SWAP_EXT => swaps.push((base, end, entry.path())),
                _ => {}
            }
        } else if let Some((stem, LOG_EXT)) = name.split_once('.') {
            if let Ok(b) = stem.parse::<i64>() {
                bases.push(b);
            }
        }
    }
    if swaps.is_empty() {
        return Ok(());
    }
    swaps.sort();
    for (base, end, swap) in swaps {
        tracing::warn!(file = %swap.display(), "completing an interrupted compaction swap");
        for &b in bases.iter().filter(|&&b| b >= base && b < end) {
            remove_segment_files(dir, b)?;
        }
        // Index files of the target name may exist without its .log.
        remove_segment_files(dir, base)?;
        fsync_dir(dir)?;
        let target = dir.join(segment::file_name(base, LOG_EXT));
        fs::rename(&swap, &target).ctx("rename swap segment", &swap)?;
        fsync_dir(dir)?;
    }
    Ok(())
}

impl PartitionLog {
    /// Plans a compaction pass, or `None` when the policy does not compact or nothing is due:
    /// no dirty bytes (or a dirty ratio below `min.cleanable.dirty.ratio`) and no tombstone
    /// horizon passed. `upper_bound` (high watermark / last stable offset) limits what may be
    /// cleaned, as does the active segment and `min.compaction.lag.ms`.
    pub fn compaction_task(
        &self,
        now_ms: i64,
        upper_bound: i64,
    ) -> Result<Option<CleanTask>, LogError> {
        let cfg = &self.config;
        if !cfg.cleanup_policy.compacts() {
            return Ok(None);
        }
        let last = self.segments.len() - 1;
        let lag_limit = now_ms.saturating_sub(cfg.min_compaction_lag_ms.max(0));
        let mut cleanable = Vec::new();
        for i in 0..last {
            let seg = &self.segments[i];
            let end = self.segments[i + 1].base_offset;
            if end > upper_bound {
                break;
            }
            if cfg.min_compaction_lag_ms > 0 && seg.retention_timestamp() > lag_limit {
                break;
            }
            if end <= self.log_start_offset {
                continue;
            }
            cleanable.push((i, end));
        }
        let (Some(&(first, _)), Some(&(_, clean_limit))) = (cleanable.first(), cleanable.last())
        else {
            return Ok(None);
        };
        let first_dirty = self
            .cleaner
            .first_dirty
            .clamp(self.segments[first].base_offset, clean_limit);
        let (mut dirty, mut total) = (0u64, 0u64);
        for &(i, end) in &cleanable {
            total += self.segments[i].size;
            if end > first_dirty {
                dirty += self.segments[i].size;
            }
        }
        let horizon_due = self.cleaner.delete_horizon.is_some_and(|h| now_ms >= h);
        let ratio = if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        };
        if !horizon_due && (dirty == 0 || ratio < cfg.min_cleanable_dirty_ratio) {
            return Ok(None);
        }
        let mut segments = Vec::with_capacity(cleanable.len());
        for &(i, end) in &cleanable {
            let seg = &self.segments[i];
            segments.push(SegmentSnapshot {
                base: seg.base_offset,
                end,
                size: seg.size,
                file: seg.clone_file()?,
                path: seg.log_path.clone(),
            });
        }
        Ok(Some(CleanTask {
            dir: self.dir.clone(),
            generation: self.cleaner.generation,
            now_ms,
            delete_retention_ms: cfg.delete_retention_ms.max(0),
            segment_bytes: cfg.effective_segment_bytes(),
            index_interval_bytes: cfg.index_interval_bytes,
            first_dirty,
            segments,
        }))
    }

    /// One whole pass under `&mut self` (tests, tools). The broker uses
    /// [`PartitionLog::compaction_task`] + [`CleanTask::run`] + [`PartitionLog::install_compaction`]
    /// to keep the lock short.
    pub fn compact(&mut self, now_ms: i64, upper_bound: i64) -> Result<CompactionStats, LogError> {
        match self.compaction_task(now_ms, upper_bound)? {
            Some(task) => {
                let cleaned = task.run()?;
                self.install_compaction(cleaned)
            }
            None => Ok(CompactionStats {
                first_dirty_offset: self.cleaner.first_dirty,
                ..Default::default()
            }),
        }
    }

    /// Swaps cleaned segments in. Groups whose segments changed meanwhile (retention,
    /// DeleteRecords) are dropped; a truncation since planning drops the whole pass. Readers
    /// (which hold `&self`) see either all old or all new files of a group.
    pub fn install_compaction(
        &mut self,
        mut cleaned: Cleaned,
    ) -> Result<CompactionStats, LogError> {
        let groups = std::mem::take(&mut cleaned.groups);
        let mut stats = CompactionStats::default();
        if cleaned.generation != self.cleaner.generation {
            tracing::info!(dir = %self.dir.display(), "log truncated during compaction; discarding the pass");
            for g in groups {
                segment::remove_if_exists(&g.path)?;
            }
            return Ok(CompactionStats {
                first_dirty_offset: self.cleaner.first_dirty,
                ..Default::default()
            });
        }
        let dir = self.dir.clone();
        let mut complete = true;
        let mut iter = groups.into_iter();
        while let Some(g) = iter.next() {
            let at = self.segments.iter().position(|s| s.base_offset == g.base);
            let n = g.old.len();
            let unchanged = at.is_some_and(|p| {
                p + n < self.segments.len()
                    && self.segments[p + n].base_offset == g.end
                    && g.old.iter().enumerate().all(|(k, &(b, size))| {
                        let s = &self.segments[p + k];
                        s.base_offset == b && s.size == size && s.is_current_file()
                    })
            });
            let Some(p) = at.filter(|_| unchanged) else {
                tracing::info!(dir = %dir.display(), base = g.base, "segments changed during compaction; skipping them");
                segment::remove_if_exists(&g.path)?;
                complete = false;
                continue;
            };
            let gs = g.stats;
            if let Err(e) = self.swap_group(&dir, g, p) {
                // Remaining groups' files are removed; the old segments stay in memory and
                // readable (their files are open), and reopening completes the swap.
                for rest in iter {
                    let _ = fs::remove_file(&rest.path);
                }
                return Err(e);
            }
            stats.segments_cleaned += gs.segments_cleaned;
            stats.bytes_before += gs.bytes_before;
            stats.bytes_after += gs.bytes_after;
            stats.records_removed += gs.records_removed;
            stats.tombstones_removed += gs.tombstones_removed;
        }
        if complete {
            self.cleaner.first_dirty = cleaned.clean_end;
            checkpoint::write_offset(&dir, CLEANER_OFFSET_FILE, cleaned.clean_end)?;
            self.set_delete_horizon(cleaned.next_delete_horizon)?;
        } else {
            let h = match (self.cleaner.delete_horizon, cleaned.next_delete_horizon) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.set_delete_horizon(h)?;
        }
        stats.first_dirty_offset = self.cleaner.first_dirty;
        tracing::info!(
            dir = %dir.display(),
            segments = stats.segments_cleaned,
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            records_removed = stats.records_removed,
            tombstones_removed = stats.tombstones_removed,
            "compacted log"
        );
        Ok(stats)
    }

    fn set_delete_horizon(&mut self, h: Option<i64>) -> Result<(), LogError> {
        if self.cleaner.delete_horizon == h {
            return Ok(());
        }
        self.cleaner.delete_horizon = h;
        match h {
            Some(h) => checkpoint::write_offset(&self.dir, CLEANER_HORIZON_FILE, h),
            None => {
                segment::remove_if_exists(&self.dir.join(CLEANER_HORIZON_FILE))?;
                fsync_dir(&self.dir)
            }
        }
    }

    fn swap_group(&mut self, dir: &Path, g: CleanedGroup, p: usize) -> Result<(), LogError> {
        // From this rename on the new segment is committed: recovery completes the swap.
        let swap = dir.join(cleaned_name(g.base, g.end, SWAP_EXT));
        fs::rename(&g.path, &swap).ctx("rename cleaned segment", &g.path)?;
        fsync_dir(dir)?;
        // The old Segment values keep their files open, so reads go on until they are replaced.
        for &(b, _) in &g.old {
            remove_segment_files(dir, b)?;
        }
        fsync_dir(dir)?;
        let target = dir.join(segment::file_name(g.base, LOG_EXT));
        fs::rename(&swap, &target).ctx("rename swap segment", &swap)?;
        fsync_dir(dir)?;
        let n = g.old.len();
        let mut seg = g.segment;
        seg.renamed(dir);
        // Writes the index files (a crash before this rebuilds them on open).
        seg.seal(dir)?;
        self.segments.splice(p..p + n, [seg]);
        Ok(())
    }
}

/// Key → offset of its latest record in the dirty part.
struct OffsetMap {
    map: HashMap<Vec<u8>, i64>,
    bytes: usize,
}

impl OffsetMap {
    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }
}

/// Visitor of one batch: its header and whole bytes.
type BatchVisitor<'f> = dyn FnMut(&BatchHeader, &[u8]) -> Result<(), LogError> + 'f;

/// Calls `f` with every whole batch of a snapshot segment.
fn for_each_batch(seg: &SegmentSnapshot, f: &mut BatchVisitor<'_>) -> Result<(), LogError> {
    let mut sc = Scanner::new(&seg.file, &seg.path, 0, seg.size);
    loop {
        match sc.next_header()? {
            Next::End => return Ok(()),
            Next::Invalid(reason) => {
                return Err(LogError::Corrupt(format!(
                    "{}: {reason}",
                    seg.path.display()
                )))
            }
            Next::Batch(_, h) => {
                let bytes = sc.peek(h.total_len())?.unwrap_or(&[]);
                f(&h, bytes)?;
                sc.advance(h.total_len());
            }
        }
    }
}

/// Per-batch counters of a rewrite.
#[derive(Default)]
struct Tally {
    records_removed: u64,
    tombstones_removed: u64,
    /// Earliest delete horizon of tombstones kept.
    horizon: Option<i64>,
}

impl CleanTask {
    /// Builds the offset map and writes the cleaned segment files. Needs no access to the log:
    /// it reads the sealed segments through its own file handles.
    pub fn run(self) -> Result<Cleaned, LogError> {
        let mut map = OffsetMap {
            map: HashMap::new(),
            bytes: 0,
        };
        let mut rewrite = 0usize;
        let mut clean_end = self.first_dirty;
        for (i, seg) in self.segments.iter().enumerate() {
            if seg.end <= self.first_dirty {
                rewrite = i + 1;
                continue;
            }
            if map.bytes > MAX_MAP_BYTES {
                break;
            }
            let first_dirty = self.first_dirty;
            for_each_batch(seg, &mut |h, bytes| {
                if h.is_control() || h.last_offset() < first_dirty {
                    return Ok(());
                }
                let (h, body) = match batch::records_section(bytes) {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(segment = %seg.path.display(), offset = h.base_offset, error = %e, "undecodable batch; the cleaner keeps it as is");
                        return Ok(());
                    }
                };
                let r = batch::decode_records(&body, h.records_count, &mut |r| {
                    let offset = h.base_offset + r.offset_delta;
                    if let Some(k) = r.key.filter(|_| offset >= first_dirty) {
                        match map.map.get_mut(k) {
                            Some(o) => *o = (*o).max(offset),
                            None => {
                                map.bytes += k.len() + MAP_ENTRY_OVERHEAD;
                                map.map.insert(k.to_vec(), offset);
                            }
                        }
                    }
                    true
                });
                if let Err(e) = r {
                    tracing::warn!(segment = %seg.path.display(), offset = h.base_offset, error = %e, "undecodable records; the cleaner keeps the batch as is");
                }
                Ok(())
            })?;
            clean_end = seg.end;
            rewrite = i + 1;
        }
        let mut cleaned = Cleaned {
            generation: self.generation,
            groups: Vec::new(),
            clean_end,
            next_delete_horizon: None,
        };
        let segs = &self.segments[..rewrite];
        let mut start = 0;
        while start < segs.len() {
            // Group neighbours while the input fits one segment and its offsets fit the
            // index's relative offsets.
            let mut end = start + 1;
            let mut size = segs[start].size;
            while end < segs.len()
                && size + segs[end].size <= self.segment_bytes
                && segs[end].end - segs[start].base <= i64::from(i32::MAX)
            {
                size += segs[end].size;
                end += 1;
            }
            let group = &segs[start..end];
            let mut tally = Tally::default();
            let (mut g, written) = self.write_group(group, &map, &mut tally)?;
            g.stats = CompactionStats {
                segments_cleaned: group.len(),
                bytes_before: size,
                bytes_after: written,
                records_removed: tally.records_removed,
                tombstones_removed: tally.tombstones_removed,
                first_dirty_offset: 0,
            };
            cleaned.groups.push(g);
            cleaned.next_delete_horizon = match (cleaned.next_delete_horizon, tally.horizon) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            start = end;
        }
        Ok(cleaned)
    }

    fn write_group(
        &self,
        group: &[SegmentSnapshot],
        map: &OffsetMap,
        tally: &mut Tally,
    ) -> Result<(CleanedGroup, u64), LogError> {
        let base = group[0].base;
        let end = group[group.len() - 1].end;
        let path = self.dir.join(cleaned_name(base, end, CLEANED_EXT));
        let out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .ctx("create cleaned segment", &path)?;
        let mut pos = 0u64;
        let mut buf: Vec<u8> = Vec::new();
        let result = (|| -> Result<Segment, LogError> {
            for seg in group {
                for_each_batch(seg, &mut |h, bytes| {
                    let kept = match clean_batch(
                        h,
                        bytes,
                        map,
                        self.now_ms,
                        self.delete_retention_ms,
                        tally,
                    ) {
                        Ok(k) => k,
                        Err(e) => {
                            tracing::warn!(segment = %seg.path.display(), offset = h.base_offset, error = %e, "undecodable batch; the cleaner keeps it as is");
                            Some(Cow::Borrowed(bytes))
                        }
                    };
                    if let Some(b) = kept {
                        buf.extend_from_slice(&b);
                    }
                    if buf.len() >= 1 << 20 {
                        out.write_all_at(&buf, pos)
                            .ctx("write cleaned segment", &path)?;
                        pos += buf.len() as u64;
                        buf.clear();
                    }
                    Ok(())
                })?;
            }
            out.write_all_at(&buf, pos)
                .ctx("write cleaned segment", &path)?;
            pos += buf.len() as u64;
            out.sync_all().ctx("fsync cleaned segment", &path)?;
            // Index it now, outside the partition lock; the swap then only renames.
            let opened = Segment::recover_file(path.clone(), base, self.index_interval_bytes)?;
            if opened.truncated_bytes > 0 {
                return Err(LogError::Corrupt(format!(
                    "{}: cleaned segment failed validation",
                    path.display()
                )));
            }
            Ok(opened.segment)
        })();
        match result {
            Ok(segment) => Ok((
                CleanedGroup {
                    base,
                    end,
                    old: group.iter().map(|s| (s.base, s.size)).collect(),
                    path,
                    segment,
                    stats: CompactionStats::default(),
                },
                pos,
            )),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

/// The batch as it should be after cleaning: `None` when no record survives, the original
/// bytes when all do and nothing else changes, else a re-encoded batch.
fn clean_batch<'a>(
    h: &BatchHeader,
    bytes: &'a [u8],
    map: &OffsetMap,
    now_ms: i64,
    delete_retention_ms: i64,
    tally: &mut Tally,
) -> Result<Option<Cow<'a, [u8]>>, BatchError> {
    if h.is_control() {
        return Ok(Some(Cow::Borrowed(bytes)));
    }
    let (h, body) = batch::records_section(bytes)?;
    let horizon_passed = h.has_delete_horizon() && now_ms >= h.base_timestamp;
    let mut kept: Vec<RecordRef<'_>> = Vec::new();
    let mut tombstones = false;
    batch::decode_records(&body, h.records_count, &mut |r| {
        let offset = h.base_offset + r.offset_delta;
        let latest = match r.key {
            // Kafka's cleaner drops keyless records of a compacted log.
            None => false,
            Some(k) => map.latest(k).is_none_or(|o| offset >= o),
        };
        if !latest {
            tally.records_removed += 1;
        } else if r.value.is_none() && horizon_passed {
            tally.tombstones_removed += 1;
        } else {
            tombstones |= r.value.is_none();
            kept.push(r);
        }
        true
    })?;
    if kept.is_empty() {
        return Ok(None);
    }
    let set_horizon = tombstones && !h.has_delete_horizon();
    if tombstones {
        let hz = if set_horizon {
            now_ms.saturating_add(delete_retention_ms)
        } else {
            h.base_timestamp
        };
        tally.horizon = Some(tally.horizon.map_or(hz, |t| t.min(hz)));
    }
    if kept.len() == h.records_count as usize && !set_horizon {
        return Ok(Some(Cow::Borrowed(bytes)));
    }
    let base_ts = if set_horizon {
        now_ms.saturating_add(delete_retention_ms)
    } else {
        h.base_timestamp
    };
    let mut records = Vec::with_capacity(body.len());
    let mut max_ts = i64::MIN;
    let mut rec = Vec::new();
    for r in &kept {
        let ts = h.base_timestamp.wrapping_add(r.timestamp_delta);
        max_ts = max_ts.max(ts);
        if base_ts == h.base_timestamp {
            records.extend_from_slice(r.encoded);
        } else {
            // Same record with its timestamp delta taken from the new base timestamp.
            rec.clear();
            rec.push(r.attributes);
            batch::write_varlong(&mut rec, ts.wrapping_sub(base_ts));
            rec.extend_from_slice(r.after_timestamp);
            batch::write_varlong(&mut records, rec.len() as i64);
            records.extend_from_slice(&rec);
        }
    }
    let raw = &bytes[batch::BATCH_HEADER_LEN..h.total_len()];
    let codec = h.compression();
    let section = compression::compress(
        codec,
        &records,
        codec == 2 && compression::is_xerial_snappy(raw),
    )?;
    let max_ts = if h.is_log_append_time() {
        h.max_timestamp
    } else {
        max_ts
    };
    let attributes = if set_horizon {
        h.attributes | ATTR_DELETE_HORIZON
    } else {
        h.attributes
    };
    let mut out = Vec::with_capacity(batch::BATCH_HEADER_LEN + section.len());
    out.extend_from_slice(&bytes[..batch::BATCH_HEADER_LEN]);
    let batch_length = (batch::BATCH_HEADER_LEN - batch::LOG_OVERHEAD + section.len()) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[27..35].copy_from_slice(&base_ts.to_be_bytes());
    out[35..43].copy_from_slice(&max_ts.to_be_bytes());
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    out.extend_from_slice(&section);
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(Cow::Owned(out)))
}
