//! Per-partition log settings, named and defaulted like Kafka's topic configs.

/// `message.timestamp.type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// `compression.type`: the codec batches are stored with. `Producer` keeps each batch as the
/// producer compressed it (the opaque fast path); any other value makes the leader recompress
/// batches whose codec differs (Kafka's LogValidator), `Uncompressed` meaning decompress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    /// Kafka's names, as `compression.type` takes them.
    pub fn parse(v: &str) -> Option<CompressionType> {
        Some(match v.trim() {
            "producer" => CompressionType::Producer,
            "uncompressed" => CompressionType::Uncompressed,
            "gzip" => CompressionType::Gzip,
            "snappy" => CompressionType::Snappy,
            "lz4" => CompressionType::Lz4,
            "zstd" => CompressionType::Zstd,
            _ => return None,
        })
    }

    /// The batch attribute codec (0 none .. 4 zstd) batches must be stored with, or `None`
    /// when the producer's codec is kept.
    pub fn target_codec(self) -> Option<u8> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(0),
            CompressionType::Gzip => Some(1),
            CompressionType::Snappy => Some(2),
            CompressionType::Lz4 => Some(3),
            CompressionType::Zstd => Some(4),
        }
    }
}

/// `cleanup.policy`: what happens to old segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Time and size retention delete whole segments (Kafka's default).
    Delete,
    /// The log cleaner keeps the latest record per key; no retention by time or size.
    Compact,
    /// Both: compaction, and retention by time and size.
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// Settings of one partition log. `Default` gives Kafka's defaults.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this (default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this (default 7 days).
    pub segment_ms: i64,
    /// `retention.ms`, -1 = unlimited (default 7 days).
    pub retention_ms: i64,
    /// `retention.bytes`, -1 = unlimited (default).
    pub retention_bytes: i64,
    /// `flush.messages`: fsync after this many messages (u64::MAX = never; 1 = every append).
    pub flush_messages: u64,
    /// `flush.ms`: fsync once the oldest unflushed data is this old (i64::MAX = never).
    pub flush_ms: i64,
    /// `index.interval.bytes`: bytes between sparse index entries (default 4096).
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: largest batch accepted by append (default 1048588).
    pub max_message_bytes: u32,
    /// `message.timestamp.type` (default CreateTime).
    pub message_timestamp_type: TimestampType,
    /// `preallocate`: size new segment files to `segment.bytes` up front.
    pub preallocate: bool,
    /// `cleanup.policy` (default delete).
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long tombstones survive after the cleaner first saw them
    /// (default 1 day).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted (default 0).
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean only when the uncleaned share of the log's cleanable
    /// bytes is at least this (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// `compression.type` (default producer).
    pub compression_type: CompressionType,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            flush_messages: u64::MAX,
            flush_ms: i64::MAX,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            preallocate: false,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
            compression_type: CompressionType::Producer,
        }
    }
}

impl LogConfig {
    /// Effective segment size: file positions in the index are u32, and Kafka caps
    /// `segment.bytes` at i32::MAX as well.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }
}
