//! Durability: an append-only transaction log (fsynced before replies, one fsync per
//! batch) plus periodic snapshots of the whole tree, and recovery from both.
//!
//! Log record: u32 length, u32 CRC32C of the payload, payload (a jute-encoded `Txn`).
//! Snapshot file: "RVSN", u32 CRC32C, u64 length, payload; written to a temp file,
//! fsynced and renamed, so a snapshot is either whole or absent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{info, warn};

use crate::jute::{Reader, Writer};
use crate::tree::{DataTree, Txn};

const SNAP_MAGIC: &[u8; 4] = b"RVSN";
const KEEP_SNAPSHOTS: usize = 3;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("log {path} is corrupt at offset {offset} and is not the last log; refusing to start")]
    CorruptMiddle { path: PathBuf, offset: u64 },
    #[error("no readable snapshot in {0} although log files start after zxid 0")]
    NoSnapshot(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Default, Clone)]
pub struct RecoveryInfo {
    pub snapshot_zxid: i64,
    pub replayed: u64,
    pub truncated_bytes: u64,
}

/// The request processor's side of the log: encodes txns into a buffer and
/// writes snapshots. The bytes are made durable by a `LogWriter`, possibly on
/// another thread, so that the next batch is processed while this one is fsynced.
pub struct Wal {
    dir: PathBuf,
    current_log: PathBuf,
    pending: Vec<u8>,
    pub txns_since_snapshot: u64,
}

/// Owns the open log file: appends batches and fsyncs them.
pub struct LogWriter {
    file: File,
    path: PathBuf,
    fsync: bool,
}

impl LogWriter {
    /// Appends one batch and (if enabled) fdatasyncs it.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes).map_err(io_err(&self.path))?;
        if self.fsync {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    /// Continues in a new log file (after a snapshot).
    pub fn roll(&mut self, path: PathBuf) -> Result<(), WalError> {
        if path == self.path {
            return Ok(());
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(io_err(dir))?;
        }
        self.path = path;
        Ok(())
    }
}

fn numbered(dir: &Path, prefix: &str) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(hex) = name.strip_prefix(prefix) {
            if let Ok(n) = i64::from_str_radix(hex, 16) {
                v.push((n, e.path()));
            }
        }
    }
    v.sort();
    Ok(v)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Parses log records; returns the txns and the offset of the first bad byte, if any.
fn parse_log(buf: &[u8]) -> (Vec<Txn>, Option<usize>) {
    let mut txns = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        if buf.len() - pos < 8 {
            return (txns, Some(pos));
        }
        let len = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let crc = u32::from_be_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        let start = pos + 8;
        if len == 0 || buf.len() - start < len {
            return (txns, Some(pos));
        }
        let payload = &buf[start..start + len];
        if crc32c::crc32c(payload) != crc {
            return (txns, Some(pos));
        }
        match Txn::read(&mut Reader::new(payload)) {
            Ok(t) => txns.push(t),
            Err(_) => return (txns, Some(pos)),
        }
        pos = start + len;
    }
    (txns, None)
}

fn read_snapshot(path: &Path) -> Option<DataTree> {
    let buf = fs::read(path).ok()?;
    if buf.len() < 16 || &buf[0..4] != SNAP_MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut l = [0u8; 8];
    l.copy_from_slice(&buf[8..16]);
    let len = u64::from_be_bytes(l) as usize;
    let payload = buf.get(16..16usize.checked_add(len)?)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    DataTree::read_snapshot(&mut Reader::new(payload)).ok()
}

impl Wal {
    /// Opens the data dir, restores the newest valid snapshot, replays the logs after
    /// it and truncates a torn tail of the last log.
    pub fn open(
        dir: &Path,
        fsync: bool,
    ) -> Result<(Wal, LogWriter, DataTree, RecoveryInfo), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut info = RecoveryInfo::default();
        let snaps = numbered(dir, "snapshot.").map_err(io_err(dir))?;
        let mut tree = None;
        for (zxid, path) in snaps.iter().rev() {
            match read_snapshot(path) {
                Some(t) => {
                    info!(snapshot = %path.display(), zxid, "loaded snapshot");
                    info.snapshot_zxid = *zxid;
                    tree = Some(t);
                    break;
                }
                None => warn!(snapshot = %path.display(), "ignoring unreadable snapshot"),
            }
        }
        let mut tree = tree.unwrap_or_default();
        let logs = numbered(dir, "log.").map_err(io_err(dir))?;
        // Logs must reach back to the snapshot: the first needed log starts at or
        // before snapshot_zxid + 1.
        if let Some((first, _)) = logs.first() {
            if info.snapshot_zxid == 0 && *first > 1 {
                return Err(WalError::NoSnapshot(dir.to_path_buf()));
            }
        }
        let n_logs = logs.len();
        for (i, (_, path)) in logs.iter().enumerate() {
            // Skip logs entirely covered by the snapshot.
            if let Some((next_start, _)) = logs.get(i + 1) {
                if *next_start <= info.snapshot_zxid + 1 {
                    continue;
                }
            }
            let buf = fs::read(path).map_err(io_err(path))?;
            let (txns, bad) = parse_log(&buf);
            for t in &txns {
                if t.zxid > tree.last_zxid {
                    tree.apply(t);
                    info.replayed += 1;
                }
            }
            if let Some(offset) = bad {
                if i + 1 != n_logs {
                    return Err(WalError::CorruptMiddle {
                        path: path.clone(),
                        offset: offset as u64,
                    });
                }
                let cut = buf.len() - offset;
                warn!(log = %path.display(), offset, bytes = cut, "truncating torn log tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(offset as u64).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                info.truncated_bytes = cut as u64;
            }
        }
        let file_path = match logs.last() {
            Some((_, p)) => p.clone(),
            None => dir.join(format!("log.{:016x}", tree.last_zxid + 1)),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file_path)
            .map_err(io_err(&file_path))?;
        sync_dir(dir).map_err(io_err(dir))?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            current_log: file_path.clone(),
            pending: Vec::with_capacity(64 * 1024),
            txns_since_snapshot: info.replayed,
        };
        let writer = LogWriter {
            file,
            path: file_path,
            fsync,
        };
        Ok((wal, writer, tree, info))
    }

    /// Buffers one txn; nothing is durable until `sync`.
    pub fn append(&mut self, txn: &Txn) {
        let mut w = Writer::new();
        txn.write(&mut w);
        let payload = &w.buf[..];
        self.pending
            .extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.pending
            .extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
        self.pending.extend_from_slice(payload);
        self.txns_since_snapshot += 1;
    }

    /// Takes the encoded txns buffered since the last call (one group commit).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.pending, Vec::with_capacity(64 * 1024))
    }

    /// Writes a snapshot of `tree` and purges old files. Returns the log file that
    /// txns after the snapshot go to; the caller rolls its `LogWriter` there after
    /// the txns before the snapshot were written. A snapshot may hold txns whose
    /// log write is still in flight: on recovery it is simply newer than the log.
    pub fn snapshot(&mut self, tree: &DataTree) -> Result<PathBuf, WalError> {
        let zxid = tree.last_zxid;
        let mut w = Writer::new();
        tree.write_snapshot(&mut w);
        let payload = &w.buf[..];
        let final_path = self.dir.join(format!("snapshot.{zxid:016x}"));
        let tmp = self.dir.join(format!(".snapshot.{zxid:016x}.tmp"));
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut head = Vec::with_capacity(16);
            head.extend_from_slice(SNAP_MAGIC);
            head.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
            head.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            f.write_all(&head).map_err(io_err(&tmp))?;
            f.write_all(payload).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        self.current_log = self.dir.join(format!("log.{:016x}", zxid + 1));
        self.txns_since_snapshot = 0;
        info!(zxid, bytes = payload.len(), "snapshot written");
        self.purge().map_err(io_err(&self.dir))?;
        Ok(self.current_log.clone())
    }

    fn purge(&self) -> io::Result<()> {
        let snaps = numbered(&self.dir, "snapshot.")?;
        if snaps.len() <= KEEP_SNAPSHOTS {
            return Ok(());
        }
        let oldest_kept = snaps[snaps.len() - KEEP_SNAPSHOTS].0;
        for (_, p) in &snaps[..snaps.len() - KEEP_SNAPSHOTS] {
            fs::remove_file(p)?;
        }
        let logs = numbered(&self.dir, "log.")?;
        for w in logs.windows(2) {
            if w[1].0 <= oldest_kept + 1 && w[0].1 != self.current_log {
                fs::remove_file(&w[0].1)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, WriteOp};

    fn create(zxid: i64, path: &str) -> Txn {
        Txn {
            zxid,
            time_ms: zxid,
            session_id: 0,
            auth: vec![],
            op: WriteOp::Create {
                opcode: 1,
                path: path.into(),
                data: Some(vec![]),
                acl: Acl::world_all(),
                flags: 0,
                ttl: -1,
            },
        }
    }

    #[test]
    fn recovers_and_truncates_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, mut log, mut tree, _) = Wal::open(dir.path(), true).unwrap();
            for i in 1..=5 {
                let t = create(i, &format!("/n{i}"));
                tree.apply(&t);
                wal.append(&t);
            }
            log.write(&wal.take_pending()).unwrap();
            let next = wal.snapshot(&tree).unwrap();
            log.roll(next).unwrap();
            for i in 6..=8 {
                let t = create(i, &format!("/n{i}"));
                tree.apply(&t);
                wal.append(&t);
            }
            log.write(&wal.take_pending()).unwrap();
        }
        // Tear the last record.
        let logs = numbered(dir.path(), "log.").unwrap();
        let last = &logs.last().unwrap().1;
        let len = fs::metadata(last).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(last)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (_, _, tree, info) = Wal::open(dir.path(), true).unwrap();
        assert_eq!(info.snapshot_zxid, 5);
        assert_eq!(info.replayed, 2);
        assert!(info.truncated_bytes > 0);
        assert!(tree.node("/n7").is_some());
        assert!(tree.node("/n8").is_none());
        assert_eq!(tree.last_zxid, 7);
    }

    #[test]
    fn garbage_tail_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, mut log, mut tree, _) = Wal::open(dir.path(), false).unwrap();
            let t = create(1, "/a");
            tree.apply(&t);
            wal.append(&t);
            log.write(&wal.take_pending()).unwrap();
        }
        let logs = numbered(dir.path(), "log.").unwrap();
        let mut f = OpenOptions::new().append(true).open(&logs[0].1).unwrap();
        f.write_all(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9])
            .unwrap();
        drop(f);
        let (_, _, tree, info) = Wal::open(dir.path(), false).unwrap();
        assert!(tree.node("/a").is_some());
        assert_eq!(info.truncated_bytes, 13);
    }

    fn with_data(zxid: i64, op: WriteOp) -> Txn {
        Txn {
            zxid,
            time_ms: zxid,
            session_id: 0,
            auth: vec![],
            op,
        }
    }

    #[test]
    fn null_data_survives_log_replay_and_snapshot_reload() {
        let dir = tempfile::tempdir().unwrap();
        let null_create = |zxid, path: &str| {
            with_data(
                zxid,
                WriteOp::Create {
                    opcode: 1,
                    path: path.into(),
                    data: None,
                    acl: Acl::world_all(),
                    flags: 0,
                    ttl: -1,
                },
            )
        };
        let set = |zxid, path: &str, data: Option<&[u8]>| {
            with_data(
                zxid,
                WriteOp::SetData {
                    path: path.into(),
                    data: data.map(<[u8]>::to_vec),
                    version: -1,
                },
            )
        };
        {
            let (mut wal, mut log, mut tree, _) = Wal::open(dir.path(), true).unwrap();
            // Before the snapshot: /s null, /e empty, /b bytes set to null.
            for t in [
                null_create(1, "/s"),
                create(2, "/e"),
                create(3, "/b"),
                set(4, "/b", None),
            ] {
                tree.apply(&t);
                wal.append(&t);
            }
            log.write(&wal.take_pending()).unwrap();
            let next = wal.snapshot(&tree).unwrap();
            log.roll(next).unwrap();
            // After it (replayed from the log): /l null, /e set to null, /s to bytes.
            for t in [
                null_create(5, "/l"),
                set(6, "/e", None),
                set(7, "/s", Some(b"v")),
            ] {
                tree.apply(&t);
                wal.append(&t);
            }
            log.write(&wal.take_pending()).unwrap();
        }
        let (_, _, tree, info) = Wal::open(dir.path(), true).unwrap();
        assert_eq!((info.snapshot_zxid, info.replayed), (4, 3));
        assert!(tree.node("/l").unwrap().data.is_none());
        assert!(tree.node("/e").unwrap().data.is_none());
        assert!(tree.node("/b").unwrap().data.is_none());
        assert_eq!(tree.node("/b").unwrap().full_stat().data_length, 0);
        assert_eq!(tree.node("/s").unwrap().data.as_deref(), Some(&b"v"[..]));
        // And from the snapshot alone.
        let snaps = numbered(dir.path(), "snapshot.").unwrap();
        let snap = read_snapshot(&snaps[0].1).unwrap();
        assert!(snap.node("/s").unwrap().data.is_none());
        assert!(snap.node("/b").unwrap().data.is_none());
        assert_eq!(snap.node("/e").unwrap().data.as_deref(), Some(&b""[..]));
    }

    /// A log written before null data was kept (data always as a length >= 0
    /// buffer, encoded here field by field as that writer did) reads unchanged:
    /// the encoding only gained the -1 length, which old files never contain.
    #[test]
    fn logs_from_before_null_data_still_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut payload = Writer::new();
        payload.i64(1).i64(1).i64(0).i32(0); // zxid, time, session, no auth ids
        payload.i32(1).string("/old").buffer(b""); // CREATE, path, empty data
        crate::proto::write_acls(&mut payload, &Acl::world_all());
        payload.i32(0); // flags
        let mut rec = Vec::new();
        rec.extend_from_slice(&(payload.buf.len() as u32).to_be_bytes());
        rec.extend_from_slice(&crc32c::crc32c(&payload.buf).to_be_bytes());
        rec.extend_from_slice(&payload.buf);
        fs::write(dir.path().join(format!("log.{:016x}", 1)), &rec).unwrap();
        let (_, _, tree, info) = Wal::open(dir.path(), true).unwrap();
        assert_eq!(info.replayed, 1);
        assert_eq!(tree.node("/old").unwrap().data.as_deref(), Some(&b""[..]));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn log_of(n: i64) -> (Vec<Txn>, Vec<u8>) {
            let txns: Vec<Txn> = (1..=n).map(|i| create(i, &format!("/p{i}"))).collect();
            let mut bytes = Vec::new();
            for t in &txns {
                let mut w = Writer::new();
                t.write(&mut w);
                bytes.extend_from_slice(&(w.buf.len() as u32).to_be_bytes());
                bytes.extend_from_slice(&crc32c::crc32c(&w.buf).to_be_bytes());
                bytes.extend_from_slice(&w.buf);
            }
            (txns, bytes)
        }

        proptest! {
            #[test]
            fn parse_log_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_log(&bytes);
            }

            /// Whatever byte is damaged or wherever the log is cut, recovery yields
            /// a prefix of what was written, never a damaged txn.
            #[test]
            fn damaged_log_yields_a_prefix(n in 1i64..8, at in any::<prop::sample::Index>(),
                                           flip in 1u8..=255, cut in any::<bool>()) {
                let (txns, mut bytes) = log_of(n);
                let i = at.index(bytes.len());
                if cut {
                    bytes.truncate(i);
                } else {
                    bytes[i] ^= flip;
                }
                let (got, bad) = parse_log(&bytes);
                prop_assert_eq!(&got[..], &txns[..got.len()]);
                if !cut {
                    prop_assert!(bad.is_some());
                }
            }
        }
    }
}
