//! Sparse offset and time indexes of one segment.
//!
//! The active segment keeps its entries in memory (it is appended to); a sealed segment's
//! entries live only in its index file and are binary-searched with pread, so memory does not
//! grow with the amount of data kept on disk.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{LogError, ResultExt};

/// One fixed-size index entry.
pub(crate) trait Entry: Copy {
    const SIZE: usize;
    fn decode(b: &[u8]) -> Self;
    fn encode(&self, out: &mut Vec<u8>);
}

/// `.index`: relative offset (u32) of a batch's base offset → its file position (u32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

/// `.timeindex`: largest timestamp so far (i64) → relative base offset (u32) of the batch
/// where that timestamp was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            rel_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.rel_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            rel_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.rel_offset.to_be_bytes());
    }
}

pub(crate) enum SparseIndex<E: Entry> {
    Mem(Vec<E>),
    Disk {
        file: File,
        path: PathBuf,
        len: usize,
    },
}

impl<E: Entry> SparseIndex<E> {
    pub fn empty() -> Self {
        SparseIndex::Mem(Vec::new())
    }

    pub fn len(&self) -> usize {
        match self {
            SparseIndex::Mem(v) => v.len(),
            SparseIndex::Disk { len, .. } => *len,
        }
    }

    pub fn get(&self, i: usize) -> Result<E, LogError> {
        match self {
            SparseIndex::Mem(v) => Ok(v[i]),
            SparseIndex::Disk { file, path, .. } => {
                let mut b = [0u8; 16];
                file.read_exact_at(&mut b[..E::SIZE], (i * E::SIZE) as u64)
                    .ctx("read index", path)?;
                Ok(E::decode(&b[..E::SIZE]))
            }
        }
    }

    pub fn last(&self) -> Result<Option<E>, LogError> {
        match self.len() {
            0 => Ok(None),
            n => self.get(n - 1).map(Some),
        }
    }

    /// Last entry for which `below(entry)` holds, given `below` is true for a prefix.
    pub fn floor(&self, below: impl Fn(&E) -> bool) -> Result<Option<E>, LogError> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(&self.get(mid)?) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            Ok(None)
        } else {
            self.get(lo - 1).map(Some)
        }
    }

    /// Appends to an in-memory index (the active segment's).
    pub fn push(&mut self, e: E) {
        if let SparseIndex::Mem(v) = self {
            v.push(e);
        }
    }

    /// Keeps only the entries for which `keep` holds (a prefix); loads a disk index first.
    pub fn retain_prefix(&mut self, keep: impl Fn(&E) -> bool) -> Result<(), LogError> {
        let mut v = self.to_vec()?;
        let n = v.iter().take_while(|e| keep(e)).count();
        v.truncate(n);
        *self = SparseIndex::Mem(v);
        Ok(())
    }

    pub fn to_vec(&self) -> Result<Vec<E>, LogError> {
        match self {
            SparseIndex::Mem(v) => Ok(v.clone()),
            SparseIndex::Disk { file, path, len } => {
                let mut b = vec![0u8; len * E::SIZE];
                file.read_exact_at(&mut b, 0).ctx("read index", path)?;
                Ok(b.chunks_exact(E::SIZE).map(E::decode).collect())
            }
        }
    }

    /// Writes the in-memory entries to `path` (replacing it) and fsyncs it.
    pub fn write_file(&self, path: &Path) -> Result<(), LogError> {
        let entries = self.to_vec()?;
        let mut buf = Vec::with_capacity(entries.len() * E::SIZE);
        for e in &entries {
            e.encode(&mut buf);
        }
        let mut f = File::create(path).ctx("create index", path)?;
        f.write_all(&buf).ctx("write index", path)?;
        f.sync_all().ctx("fsync index", path)?;
        Ok(())
    }

    /// Opens an index file for pread lookups. `None` when it is missing or its size is not a
    /// whole number of entries (the caller then rebuilds it from the log).
    pub fn open_disk(path: &Path) -> Result<Option<Self>, LogError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("open index", path, e)),
        };
        let bytes = file.metadata().ctx("stat index", path)?.len();
        if bytes % E::SIZE as u64 != 0 {
            return Ok(None);
        }
        Ok(Some(SparseIndex::Disk {
            file,
            path: path.to_path_buf(),
            len: (bytes / E::SIZE as u64) as usize,
        }))
    }

    /// Switches to in-memory entries (for a segment that becomes active again).
    pub fn into_mem(self) -> Result<Self, LogError> {
        Ok(SparseIndex::Mem(self.to_vec()?))
    }
}
