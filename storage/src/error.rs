//! Errors of the log layer.

use std::path::{Path, PathBuf};

use crate::batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("record batch of {size} bytes exceeds segment.bytes {segment_bytes}")]
    RecordBatchTooLarge { size: usize, segment_bytes: u64 },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("replicated batch at offset {found} does not follow the log end {expected}")]
    UnexpectedOffset { expected: i64, found: i64 },
    #[error("corrupt log: {0}")]
    Corrupt(String),
}

impl LogError {
    /// The filesystem is out of space (or quota): a state that passes when space is freed or
    /// the volume grows, unlike damage. A write failing so leaves the log as it was (a partial
    /// segment write is cut back), so the next write may simply try again.
    pub fn is_out_of_space(&self) -> bool {
        use std::io::ErrorKind;
        matches!(self, LogError::Io { source, .. }
            if matches!(source.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded))
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        LogError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Attaches the operation and path to an io::Error.
pub(crate) trait ResultExt<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, LogError>;
}

impl<T> ResultExt<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, LogError> {
        self.map_err(|e| LogError::io(op, path, e))
    }
}
