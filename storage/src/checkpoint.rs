//! Small durable files of a partition directory: offset checkpoints and the clean-shutdown marker.
//!
//! A checkpoint holds two text lines, a format version (`0`) and the offset. It is replaced
//! atomically: written to `<name>.tmp`, fsynced, renamed over, and the directory fsynced.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{LogError, ResultExt};

pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", dir)
}

pub(crate) fn write_offset(dir: &Path, name: &str, offset: i64) -> Result<(), LogError> {
    write_atomic(dir, name, format!("0\n{offset}\n").as_bytes())
}

/// Replaces `dir/name` with `contents`: write `<name>.tmp`, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).ctx("create checkpoint", &tmp)?;
    f.write_all(contents).ctx("write checkpoint", &tmp)?;
    f.sync_all().ctx("fsync checkpoint", &tmp)?;
    fs::rename(&tmp, &path).ctx("rename checkpoint", &path)?;
    fsync_dir(dir)
}

/// `Ok(None)` when the file is missing or unreadable as a checkpoint (the caller then
/// falls back to the safe choice and logs it).
pub(crate) fn read_offset(dir: &Path, name: &str) -> Result<Option<i64>, LogError> {
    let path = dir.join(name);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::warn!(path = %path.display(), "checkpoint is not text; ignoring it");
            return Ok(None);
        }
        Err(e) => return Err(LogError::io("read checkpoint", &path, e)),
    };
    let mut lines = text.lines();
    let parsed = match (lines.next(), lines.next()) {
        (Some("0"), Some(v)) => v.trim().parse::<i64>().ok().filter(|v| *v >= 0),
        _ => None,
    };
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "malformed checkpoint; ignoring it");
    }
    Ok(parsed)
}

pub(crate) fn write_marker(dir: &Path, name: &str) -> Result<(), LogError> {
    let path = dir.join(name);
    File::create(&path)
        .and_then(|f| f.sync_all())
        .ctx("create marker", &path)?;
    fsync_dir(dir)
}

/// Removes a marker if present; returns whether it was there. Durable before returning, so
/// a later crash cannot be mistaken for a clean shutdown.
pub(crate) fn take_marker(dir: &Path, name: &str) -> Result<bool, LogError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => {
            fsync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LogError::io("remove marker", &path, e)),
    }
}
