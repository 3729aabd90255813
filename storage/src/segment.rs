//! One segment: `<base>.log` plus its `.index` and `.timeindex`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::BytesMut;

use crate::batch::{self, BatchHeader, BATCH_HEADER_LEN, MIN_BATCH_LENGTH};
use crate::error::{LogError, ResultExt};
use crate::index::{OffsetEntry, SparseIndex, TimeEntry};

pub(crate) const LOG_EXT: &str = "log";
pub(crate) const INDEX_EXT: &str = "index";
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";

/// Kafka's file naming: the base offset, zero-padded to 20 digits.
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Read size of sequential scans (recovery, header walks).
const SCAN_CHUNK: usize = 256 * 1024;
/// Read size when looking for one batch near an index entry: entries are
/// `index.interval.bytes` (4 KiB by default) apart, so small reads suffice.
const LOCATE_CHUNK: usize = 16 * 1024;

/// Buffered forward reader over a segment file, for header scans and recovery.
pub(crate) struct Scanner<'a> {
    file: &'a File,
    path: &'a Path,
    end: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
}

pub(crate) enum Next {
    Batch(u64, BatchHeader),
    End,
    /// The bytes at the current position are not a plausible batch header (or the batch
    /// runs past the end).
    Invalid(String),
}

impl<'a> Scanner<'a> {
    pub fn new(file: &'a File, path: &'a Path, start: u64, end: u64) -> Self {
        Scanner {
            file,
            path,
            end,
            pos: start,
            buf: Vec::new(),
            buf_start: 0,
            chunk: SCAN_CHUNK,
        }
    }

    fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk;
        self
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The bytes `[pos, pos + n)`, or `None` when they extend past the end.
    pub fn peek(&mut self, n: usize) -> Result<Option<&[u8]>, LogError> {
        let want_end = self.pos + n as u64;
        if want_end > self.end {
            return Ok(None);
        }
        let buffered =
            self.pos >= self.buf_start && want_end <= self.buf_start + self.buf.len() as u64;
        if !buffered {
            let len = (n.max(self.chunk) as u64).min(self.end - self.pos) as usize;
            self.buf.resize(len, 0);
            self.file
                .read_exact_at(&mut self.buf, self.pos)
                .ctx("read segment", self.path)?;
            self.buf_start = self.pos;
        }
        let off = (self.pos - self.buf_start) as usize;
        Ok(Some(&self.buf[off..off + n]))
    }

    pub fn next_header(&mut self) -> Result<Next, LogError> {
        if self.pos >= self.end {
            return Ok(Next::End);
        }
        let pos = self.pos;
        let end = self.end;
        let Some(b) = self.peek(BATCH_HEADER_LEN)? else {
            return Ok(Next::Invalid(format!(
                "partial batch header at position {pos}"
            )));
        };
        let h = match BatchHeader::parse(b) {
            Ok(h) => h,
            Err(e) => return Ok(Next::Invalid(format!("at position {pos}: {e}"))),
        };
        if h.batch_length < MIN_BATCH_LENGTH {
            return Ok(Next::Invalid(format!(
                "at position {pos}: invalid batch length {}",
                h.batch_length
            )));
        }
        if pos + h.total_len() as u64 > end {
            return Ok(Next::Invalid(format!(
                "batch at position {pos} of {} bytes runs past the end ({end})",
                h.total_len()
            )));
        }
        Ok(Next::Batch(pos, h))
    }

    pub fn advance(&mut self, n: usize) {
        self.pos += n as u64;
    }
}

pub(crate) struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    file: File,
    /// Valid bytes; the file may be longer only while preallocated.
    pub size: u64,
    /// Offset after the last batch (== base_offset when empty).
    pub next_offset: i64,
    /// Largest batch max timestamp, -1 when none.
    pub max_ts: i64,
    /// Base offset of the batch holding `max_ts`.
    pub offset_of_max_ts: i64,
    /// Start of the segment's age for segment.ms.
    pub rolling_base_ms: Option<i64>,
    offset_index: SparseIndex<OffsetEntry>,
    time_index: SparseIndex<TimeEntry>,
    last_time_entry_ts: i64,
    bytes_since_index: u64,
}

/// What opening a segment found.
pub(crate) struct Opened {
    pub segment: Segment,
    /// Bytes cut off a torn or corrupt tail.
    pub truncated_bytes: u64,
}

impl Segment {
    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base, LOG_EXT)),
            dir.join(file_name(base, INDEX_EXT)),
            dir.join(file_name(base, TIME_INDEX_EXT)),
        )
    }

    fn blank(base_offset: i64, log_path: PathBuf, file: File) -> Segment {
        Segment {
            base_offset,
            log_path,
            file,
            size: 0,
            next_offset: base_offset,
            max_ts: -1,
            offset_of_max_ts: -1,
            rolling_base_ms: None,
            offset_index: SparseIndex::empty(),
            time_index: SparseIndex::empty(),
            last_time_entry_ts: -1,
            bytes_since_index: 0,
        }
    }

    /// Creates an empty segment file (replacing any leftover with that name). The caller
    /// fsyncs the directory.
    pub fn create(dir: &Path, base: i64, preallocate: Option<u64>) -> Result<Segment, LogError> {
        let (log, index, time) = Self::paths(dir, base);
        for stale in [&index, &time] {
            remove_if_exists(stale)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log)
            .ctx("create segment", &log)?;
        if let Some(len) = preallocate {
            file.set_len(len).ctx("preallocate segment", &log)?;
        }
        Ok(Self::blank(base, log, file))
    }

    fn open_file(log: &Path) -> Result<(File, u64), LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(log)
            .ctx("open segment", log)?;
        let len = file.metadata().ctx("stat segment", log)?.len();
        Ok((file, len))
    }

    /// Opens a segment whose bytes are known durable and whole (clean shutdown, or below the
    /// recovery point). Index files are used if sane, rebuilt otherwise; anything that does
    /// not add up falls back to a full [`Segment::recover`].
    pub fn open_trusted(dir: &Path, base: i64, interval: u32) -> Result<Opened, LogError> {
        let (log, index_path, time_path) = Self::paths(dir, base);
        let (file, len) = Self::open_file(&log)?;
        let mut seg = Self::blank(base, log, file);
        seg.size = len;
        let index = SparseIndex::<OffsetEntry>::open_disk(&index_path)?;
        let time = SparseIndex::<TimeEntry>::open_disk(&time_path)?;
        let (Some(index), Some(time)) = (index, time) else {
            tracing::info!(segment = %seg.log_path.display(), "index missing or malformed; rebuilding");
            return Self::recover(dir, base, interval);
        };
        let last = index.last()?;
        if let Some(e) = last {
            if u64::from(e.position) >= len {
                tracing::info!(segment = %seg.log_path.display(), "index points past the log; rebuilding");
                return Self::recover(dir, base, interval);
            }
        }
        // Walk from the last indexed batch to the end for the next offset.
        let start = last.map_or(0, |e| u64::from(e.position));
        let mut sc = Scanner::new(&seg.file, &seg.log_path, start, len).with_chunk(LOCATE_CHUNK);
        let mut next = base;
        let mut since = 0u64;
        loop {
            match sc.next_header()? {
                Next::End => break,
                Next::Invalid(reason) => {
                    tracing::warn!(segment = %seg.log_path.display(), %reason, "unexpected bytes in a trusted segment; validating it fully");
                    return Self::recover(dir, base, interval);
                }
                Next::Batch(pos, h) => {
                    // The tail is where a tear would be: check its CRCs too (cheap, it is
                    // about one index interval long).
                    let bytes = sc.peek(h.total_len())?.unwrap_or(&[]);
                    if let Err(e) = batch::validate_stored_batch(bytes) {
                        tracing::warn!(segment = %seg.log_path.display(), position = pos, error = %e, "bad batch in a trusted segment's tail; validating it fully");
                        return Self::recover(dir, base, interval);
                    }
                    next = h.next_offset();
                    since += h.total_len() as u64;
                    sc.advance(h.total_len());
                }
            }
        }
        seg.next_offset = next;
        seg.bytes_since_index = since;
        if let Some(t) = time.last()? {
            seg.max_ts = t.timestamp;
            seg.offset_of_max_ts = base + i64::from(t.rel_offset);
            seg.last_time_entry_ts = t.timestamp;
        }
        if len > 0 {
            // Only the first header is needed: read just that.
            let mut sc =
                Scanner::new(&seg.file, &seg.log_path, 0, len).with_chunk(BATCH_HEADER_LEN);
            if let Next::Batch(_, h) = sc.next_header()? {
                seg.rolling_base_ms = (h.max_timestamp >= 0).then_some(h.max_timestamp);
            }
        }
        seg.offset_index = index;
        seg.time_index = time;
        Ok(Opened {
            segment: seg,
            truncated_bytes: 0,
        })
    }

    /// Validates every batch (framing, CRC32C, counts, increasing offsets), truncates the
    /// file at the first bad byte, and rebuilds both indexes in memory.
    pub fn recover(dir: &Path, base: i64, interval: u32) -> Result<Opened, LogError> {
        let (log, _, _) = Self::paths(dir, base);
        Self::recover_file(log, base, interval)
    }

    /// [`Segment::recover`] of a file at any path (the log cleaner's output before it is
    /// renamed into place; see [`Segment::renamed`]).
    pub fn recover_file(log: PathBuf, base: i64, interval: u32) -> Result<Opened, LogError> {
        let (file, len) = Self::open_file(&log)?;
        let scan_file = file.try_clone().ctx("open segment", &log)?;
        let scan_path = log.clone();
        let mut seg = Self::blank(base, log, file);
        let mut torn: Option<(u64, String)> = None;
        let mut sc = Scanner::new(&scan_file, &scan_path, 0, len);
        let mut expected = base;
        loop {
            match sc.next_header()? {
                Next::End => break,
                Next::Invalid(reason) => {
                    torn = Some((sc.pos(), reason));
                    break;
                }
                Next::Batch(pos, h) => {
                    let bytes = sc.peek(h.total_len())?.unwrap_or(&[]);
                    if let Err(e) = batch::validate_stored_batch(bytes) {
                        torn = Some((pos, format!("at position {pos}: {e}")));
                        break;
                    }
                    if h.base_offset < expected || h.last_offset() - base > i64::from(u32::MAX) {
                        torn = Some((
                            pos,
                            format!(
                                "at position {pos}: offset {} out of order (expected >= {expected})",
                                h.base_offset
                            ),
                        ));
                        break;
                    }
                    if pos == 0 {
                        seg.rolling_base_ms = (h.max_timestamp >= 0).then_some(h.max_timestamp);
                    }
                    expected = h.next_offset();
                    seg.track(pos, &h, interval);
                    sc.advance(h.total_len());
                }
            }
        }
        let mut truncated_bytes = 0;
        if let Some((pos, reason)) = torn {
            truncated_bytes = len - pos;
            tracing::warn!(segment = %seg.log_path.display(), %reason, truncated_bytes, "truncating torn or corrupt tail");
            seg.file
                .set_len(pos)
                .ctx("truncate segment", &seg.log_path)?;
            seg.file.sync_all().ctx("fsync segment", &seg.log_path)?;
        }
        Ok(Opened {
            segment: seg,
            truncated_bytes,
        })
    }

    /// Records a batch written at `pos` in the sparse indexes and the segment's bounds.
    fn track(&mut self, pos: u64, h: &BatchHeader, interval: u32) {
        let entry_due = self.bytes_since_index >= u64::from(interval);
        if h.max_timestamp > self.max_ts {
            self.max_ts = h.max_timestamp;
            self.offset_of_max_ts = h.base_offset;
        }
        if entry_due {
            self.offset_index.push(OffsetEntry {
                rel_offset: (h.base_offset - self.base_offset) as u32,
                position: pos as u32,
            });
            self.push_time_entry();
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_len() as u64;
        self.size = pos + h.total_len() as u64;
        self.next_offset = h.next_offset();
    }

    fn push_time_entry(&mut self) {
        if self.max_ts > self.last_time_entry_ts {
            self.time_index.push(TimeEntry {
                timestamp: self.max_ts,
                rel_offset: (self.offset_of_max_ts - self.base_offset) as u32,
            });
            self.last_time_entry_ts = self.max_ts;
        }
    }

    /// Appends whole batches (already given their offsets) at the end of the segment.
    pub fn append(
        &mut self,
        data: &[u8],
        headers: &[(usize, BatchHeader)],
        interval: u32,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let at = self.size;
        if let Err(e) = self.file.write_all_at(data, at) {
            // Leave nothing half-written behind; the next append writes at `at` anyway.
            let _ = self.file.set_len(at);
            return Err(LogError::io("write segment", &self.log_path, e));
        }
        if self.rolling_base_ms.is_none() {
            self.rolling_base_ms = Some(now_ms);
        }
        for (pos, h) in headers {
            self.track(at + *pos as u64, h, interval);
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<(), LogError> {
        self.file.sync_data().ctx("fsync segment", &self.log_path)
    }

    /// Makes the segment durable and read-only: trims preallocation, fsyncs, writes both index
    /// files (the time index ends with the segment's max timestamp), and from then on serves
    /// index lookups from the files instead of memory.
    pub fn seal(&mut self, dir: &Path) -> Result<(), LogError> {
        self.persist(dir)?;
        let (_, index_path, time_path) = Self::paths(dir, self.base_offset);
        if let (Some(i), Some(t)) = (
            SparseIndex::open_disk(&index_path)?,
            SparseIndex::open_disk(&time_path)?,
        ) {
            self.offset_index = i;
            self.time_index = t;
        }
        Ok(())
    }

    /// Trims, fsyncs and writes the index files, keeping the in-memory indexes.
    pub fn persist(&mut self, dir: &Path) -> Result<(), LogError> {
        let len = self
            .file
            .metadata()
            .ctx("stat segment", &self.log_path)?
            .len();
        if len != self.size {
            self.file
                .set_len(self.size)
                .ctx("trim segment", &self.log_path)?;
        }
        self.file.sync_all().ctx("fsync segment", &self.log_path)?;
        self.push_time_entry();
        let (_, index_path, time_path) = Self::paths(dir, self.base_offset);
        self.offset_index.write_file(&index_path)?;
        self.time_index.write_file(&time_path)?;
        Ok(())
    }

    /// Whether lookups are served from memory (true for the active segment).
    pub fn index_in_memory(&self) -> bool {
        matches!(self.offset_index, SparseIndex::Mem(_))
    }

    /// Makes a sealed segment appendable again (active after open or truncation).
    pub fn unseal(&mut self) -> Result<(), LogError> {
        let i = std::mem::replace(&mut self.offset_index, SparseIndex::empty());
        self.offset_index = i.into_mem()?;
        let t = std::mem::replace(&mut self.time_index, SparseIndex::empty());
        self.time_index = t.into_mem()?;
        Ok(())
    }

    /// Position and header of the first batch whose last offset is >= `offset`, if any.
    pub fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let start = if offset > self.base_offset {
            let rel = (offset - self.base_offset).min(i64::from(u32::MAX)) as u32;
            self.offset_index
                .floor(|e| e.rel_offset <= rel)?
                .map_or(0, |e| u64::from(e.position))
        } else {
            0
        };
        let mut sc =
            Scanner::new(&self.file, &self.log_path, start, self.size).with_chunk(LOCATE_CHUNK);
        loop {
            match sc.next_header()? {
                Next::End => return Ok(None),
                Next::Invalid(reason) => {
                    return Err(LogError::Corrupt(format!(
                        "{}: {reason}",
                        self.log_path.display()
                    )))
                }
                Next::Batch(pos, h) => {
                    if h.last_offset() >= offset {
                        return Ok(Some((pos, h)));
                    }
                    sc.advance(h.total_len());
                }
            }
        }
    }

    /// Where to start scanning for the first record with timestamp >= `ts`: the batch holding
    /// the last indexed maximum below `ts` (everything up to it is older than `ts`).
    pub fn time_lookup_start(&self, ts: i64) -> Result<i64, LogError> {
        Ok(self
            .time_index
            .floor(|e| e.timestamp < ts)?
            .map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.rel_offset)
            }))
    }

    /// The file was renamed to `<base>.log` in `dir` (the open handle stays valid).
    pub fn renamed(&mut self, dir: &Path) {
        self.log_path = Self::paths(dir, self.base_offset).0;
    }

    /// Whether the file at the segment's path is still the one this segment has open (not
    /// deleted or replaced behind its back, e.g. by a topic deleted and created again).
    pub fn is_current_file(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(&self.log_path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// A second handle on the segment file, for the log cleaner's lock-free reads of a sealed
    /// segment (it stays readable even if the file is unlinked meanwhile).
    pub fn clone_file(&self) -> Result<File, LogError> {
        self.file.try_clone().ctx("open segment", &self.log_path)
    }

    pub fn scanner(&self, start: u64) -> Scanner<'_> {
        Scanner::new(&self.file, &self.log_path, start, self.size)
    }

    /// Appends `len` bytes from `pos` to `out`.
    pub fn read_into(&self, pos: u64, len: usize, out: &mut BytesMut) -> Result<(), LogError> {
        let old = out.len();
        out.resize(old + len, 0);
        self.file
            .read_exact_at(&mut out[old..], pos)
            .ctx("read segment", &self.log_path)
    }

    /// Cuts the segment at `pos` (a batch boundary) so that `next_offset` becomes
    /// `new_next`, then rebuilds its bounds from what remains.
    pub fn truncate_at(&mut self, dir: &Path, pos: u64, new_next: i64) -> Result<(), LogError> {
        self.unseal()?;
        let (_, index_path, time_path) = Self::paths(dir, self.base_offset);
        // Stale on disk from now on; rewritten when the segment is sealed or closed.
        remove_if_exists(&index_path)?;
        remove_if_exists(&time_path)?;
        self.file
            .set_len(pos)
            .ctx("truncate segment", &self.log_path)?;
        self.file.sync_all().ctx("fsync segment", &self.log_path)?;
        let cut_rel = new_next - self.base_offset;
        self.offset_index
            .retain_prefix(|e| u64::from(e.position) < pos)?;
        self.time_index
            .retain_prefix(|e| i64::from(e.rel_offset) < cut_rel)?;
        self.size = pos;
        self.next_offset = new_next;
        let last_time = self.time_index.last()?;
        self.max_ts = last_time.map_or(-1, |e| e.timestamp);
        self.offset_of_max_ts =
            last_time.map_or(-1, |e| self.base_offset + i64::from(e.rel_offset));
        self.last_time_entry_ts = self.max_ts;
        // The indexed maximum may be stale for batches after it: rescan those headers.
        let from = match last_time {
            Some(e) => self
                .locate(self.base_offset + i64::from(e.rel_offset))?
                .map_or(pos, |(p, _)| p),
            None => 0,
        };
        let mut sc = Scanner::new(&self.file, &self.log_path, from, pos);
        let mut max = (self.max_ts, self.offset_of_max_ts);
        while let Next::Batch(_, h) = sc.next_header()? {
            if h.max_timestamp > max.0 {
                max = (h.max_timestamp, h.base_offset);
            }
            sc.advance(h.total_len());
        }
        (self.max_ts, self.offset_of_max_ts) = max;
        let last_pos = self
            .offset_index
            .last()?
            .map_or(0, |e| u64::from(e.position));
        self.bytes_since_index = pos - last_pos;
        if pos == 0 {
            self.rolling_base_ms = None;
        }
        Ok(())
    }

    /// Timestamp retention compares: the max timestamp, or the file's mtime when the segment
    /// has no timestamps (as Kafka does).
    pub fn retention_timestamp(&self) -> i64 {
        if self.max_ts >= 0 {
            return self.max_ts;
        }
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_millis() as i64)
    }

    /// Removes the segment's files. The caller fsyncs the directory.
    pub fn delete_files(self, dir: &Path) -> Result<(), LogError> {
        let (log, index, time) = Self::paths(dir, self.base_offset);
        drop(self.file);
        remove_if_exists(&log)?;
        remove_if_exists(&index)?;
        remove_if_exists(&time)?;
        Ok(())
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("remove", path, e)),
    }
}
