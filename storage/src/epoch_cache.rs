//! Leader-epoch cache: which leader epoch started at which offset (Kafka's
//! `LeaderEpochFileCache`, KIP-101/KIP-279).
//!
//! Entries are ordered with both the epoch and the start offset strictly increasing. The cache
//! is durable in `leader-epoch-checkpoint` in the partition directory (Kafka's text format:
//! version `0`, the entry count, then one `epoch start_offset` line per entry), replaced
//! atomically on every change. A missing or malformed file is rebuilt from the batch headers.

use std::fs;
use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::error::LogError;

pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

/// One leader epoch and the first offset written in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The in-memory cache and the path of its checkpoint.
#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    dir: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Reads the checkpoint. `None` when it is missing or malformed (the caller rebuilds the
    /// cache from the log).
    pub(crate) fn load(dir: &Path) -> Result<Option<LeaderEpochCache>, LogError> {
        let path = dir.join(LEADER_EPOCH_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("read leader-epoch checkpoint", &path, e)),
        };
        let parsed = std::str::from_utf8(&text).ok().and_then(parse);
        if parsed.is_none() {
            tracing::warn!(path = %path.display(), "malformed leader-epoch checkpoint; rebuilding it from the log");
        }
        Ok(parsed.map(|entries| LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries,
        }))
    }

    pub(crate) fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// Puts back entries saved with [`Self::entries`] (in memory only).
    pub(crate) fn restore(&mut self, entries: Vec<EpochEntry>) {
        self.entries = entries;
    }

    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Writes the checkpoint (tmp + fsync + rename + directory fsync).
    pub(crate) fn flush(&self) -> Result<(), LogError> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        checkpoint::write_atomic(&self.dir, LEADER_EPOCH_FILE, text.as_bytes())
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `assign`), in memory only;
    /// returns whether anything changed. Negative epochs (unstamped batches) are ignored.
    /// A new entry first removes the trailing entries it contradicts (an epoch >= it or a start
    /// offset >= its own), so both columns stay strictly increasing.
    pub(crate) fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let needed = self
            .latest()
            .is_none_or(|l| l.epoch != epoch || start_offset < l.start_offset);
        if !needed {
            return false;
        }
        let before = self.entries.len();
        while self
            .entries
            .last()
            .is_some_and(|e| e.epoch >= epoch || e.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        if before - self.entries.len() > 1 {
            tracing::warn!(dir = %self.dir.display(), epoch, start_offset, removed = before - self.entries.len(), "leader epoch assignment removed several later entries");
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// [`Self::assign_in_memory`], then the checkpoint when something changed.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool, LogError> {
        let changed = self.assign_in_memory(epoch, start_offset);
        if changed {
            self.flush()?;
        }
        Ok(changed)
    }

    /// Drops entries starting at or after `end_offset` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), LogError> {
        if self.truncate_from_end_in_memory(end_offset) {
            self.flush()?;
        }
        Ok(())
    }

    /// [`Self::truncate_from_end`] without the checkpoint; returns whether anything went.
    pub(crate) fn truncate_from_end_in_memory(&mut self, end_offset: i64) -> bool {
        let n = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = n < self.entries.len();
        self.entries.truncate(n);
        changed
    }

    /// The log start moved to `start_offset`: entries wholly below it go, and the entry
    /// covering it now starts there.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> Result<(), LogError> {
        let n = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if n == 0 {
            return Ok(());
        }
        let covering = self.entries[n - 1];
        if n == 1 && covering.start_offset == start_offset {
            return Ok(());
        }
        self.entries.drain(..n - 1);
        self.entries[0].start_offset = start_offset;
        self.flush()
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) -> Result<(), LogError> {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.flush()?;
        }
        Ok(())
    }

    /// Kafka's `endOffsetFor`: `(epoch, end offset)` for a follower or consumer asking about
    /// `requested`. The latest epoch ends at the log end; an older one at the start of the
    /// next larger cached epoch, answered with the largest cached epoch <= `requested`. An
    /// epoch below every cached one answers `(requested, first start offset)` (its data was
    /// removed from the front). `None` (UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET on the wire)
    /// for a negative epoch, an empty cache, or an epoch above the latest.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested < 0 {
            return None;
        }
        let latest = self.latest()?;
        if latest.epoch == requested {
            return Some((requested, log_end_offset));
        }
        // First entry with epoch > requested.
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let next = self.entries.get(higher)?;
        match higher.checked_sub(1) {
            None => Some((requested, next.start_offset)),
            Some(floor) => Some((self.entries[floor].epoch, next.start_offset)),
        }
    }
}

/// Parses the checkpoint text; `None` unless well formed with both columns strictly increasing
/// and non-negative.
fn parse(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let line = lines.next()?;
        let mut parts = line.split_whitespace();
        let epoch: i32 = parts.next()?.parse().ok()?;
        let start_offset: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || epoch < 0 || start_offset < 0 {
            return None;
        }
        if let Some(prev) = entries.last() {
            if prev.epoch >= epoch || prev.start_offset >= start_offset {
                return None;
            }
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return None;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let dir = std::env::temp_dir();
        LeaderEpochCache {
            dir,
            entries: entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        }
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_keeps_both_columns_increasing() {
        let mut c = cache(&[]);
        assert!(c.assign_in_memory(0, 0));
        assert!(!c.assign_in_memory(0, 5), "same epoch later: no change");
        assert!(c.assign_in_memory(2, 10));
        assert!(!c.assign_in_memory(-1, 20), "unstamped batches are ignored");
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10)]);
        // A new epoch at the same offset replaces an epoch that never got data.
        assert!(c.assign_in_memory(3, 10));
        assert_eq!(pairs(&c), vec![(0, 0), (3, 10)]);
        // A lower epoch later (the data says so) removes the contradicting entry.
        assert!(c.assign_in_memory(1, 12));
        assert_eq!(pairs(&c), vec![(0, 0), (1, 12)]);
        // The same epoch at an earlier offset moves its start down.
        assert!(c.assign_in_memory(1, 11));
        assert_eq!(pairs(&c), vec![(0, 0), (1, 11)]);
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(1, 10), (3, 20), (6, 40)]);
        assert_eq!(c.end_offset_for(6, 55), Some((6, 55)));
        assert_eq!(c.end_offset_for(3, 55), Some((3, 40)));
        assert_eq!(
            c.end_offset_for(4, 55),
            Some((3, 40)),
            "gap epoch: floor epoch"
        );
        assert_eq!(c.end_offset_for(5, 55), Some((3, 40)));
        assert_eq!(c.end_offset_for(1, 55), Some((1, 20)));
        assert_eq!(c.end_offset_for(2, 55), Some((1, 20)));
        assert_eq!(c.end_offset_for(0, 55), Some((0, 10)), "below the earliest");
        assert_eq!(c.end_offset_for(7, 55), None, "above the latest");
        assert_eq!(c.end_offset_for(-1, 55), None);
        assert_eq!(cache(&[]).end_offset_for(0, 0), None);
    }

    #[test]
    fn truncation_from_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::empty(dir.path());
        for (e, o) in [(1, 10), (3, 20), (6, 40)] {
            c.assign(e, o).unwrap();
        }
        c.truncate_from_end(41).unwrap();
        assert_eq!(pairs(&c), vec![(1, 10), (3, 20), (6, 40)]);
        c.truncate_from_end(40).unwrap();
        assert_eq!(pairs(&c), vec![(1, 10), (3, 20)]);
        c.truncate_from_start(5).unwrap();
        assert_eq!(pairs(&c), vec![(1, 10), (3, 20)]);
        c.truncate_from_start(15).unwrap();
        assert_eq!(pairs(&c), vec![(1, 15), (3, 20)]);
        c.truncate_from_start(20).unwrap();
        assert_eq!(pairs(&c), vec![(3, 20)]);
        c.truncate_from_start(30).unwrap();
        assert_eq!(pairs(&c), vec![(3, 30)]);
        let loaded = LeaderEpochCache::load(dir.path()).unwrap().unwrap();
        assert_eq!(pairs(&loaded), vec![(3, 30)]);
        c.clear().unwrap();
        let loaded = LeaderEpochCache::load(dir.path()).unwrap().unwrap();
        assert!(loaded.entries().is_empty());
    }

    #[test]
    fn malformed_checkpoints_are_refused() {
        assert_eq!(parse("0\n0\n"), Some(vec![]));
        assert_eq!(
            parse("0\n2\n0 0\n4 17\n"),
            Some(vec![
                EpochEntry {
                    epoch: 0,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 4,
                    start_offset: 17
                }
            ])
        );
        for bad in [
            "",
            "1\n0\n",
            "0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0 0\n",
            "0\n1\n-1 0\n",
            "0\n1\n0 -5\n",
            "0\n2\n3 0\n2 5\n",
            "0\n2\n1 5\n2 5\n",
            "0\n1\n0 0\n7 9\n",
            "0\nx\n",
            "0\n18446744073709551615\n",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
