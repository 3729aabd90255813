//! Rivulet's segmented partition log: Kafka RecordBatch v2 handling and the on-disk log.
//!
//! See `docs/storage.md` for the on-disk format, recovery rules and flush semantics.

pub mod batch;
mod checkpoint;
pub mod compaction;
pub mod compression;
pub mod config;
mod epoch_cache;
mod error;
mod index;
pub mod log;
pub mod recompress;
mod segment;

#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod epoch_tests;
#[cfg(test)]
mod log_tests;

pub use batch::{
    keyless_records, set_base_offset, set_log_append_time, set_partition_leader_epoch,
    validate_batches, BatchError, BatchHeader, BatchIter, BATCH_HEADER_LEN,
};
pub use compaction::{CleanTask, Cleaned, CompactionStats};
pub use config::{CleanupPolicy, CompressionType, LogConfig, TimestampType};
pub use epoch_cache::EpochEntry;
pub use error::LogError;
pub use log::{AppendResult, PartitionLog, ReadResult, RetentionStats};
