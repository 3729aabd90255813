//! Consumer groups: the classic rebalance protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup),
//! committed offsets, and their persistence in the internal `__consumer_offsets` topic.
//!
//! `state` is the pure group state machine (no I/O, time passed in), `records` the on-disk
//! format of `__consumer_offsets` (Kafka's own key/value schemas, so Kafka tooling can read it),
//! and `coordinator` the thin I/O layer: one lock over all groups, a ticker for timeouts, and
//! appends to the offsets topic.

pub mod coordinator;
pub mod records;
pub mod state;

pub use coordinator::GroupCoordinator;

/// Error code 0 as a `ResponseError` value, for per-item results.
pub const NO_ERROR: kafka_protocol::error::ResponseError =
    kafka_protocol::error::ResponseError::Unknown(0);

/// Name of the internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode`, so a group maps to the same `__consumer_offsets` partition as in
/// Apache Kafka.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition that owns a group.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    // Kafka's Utils.abs: i32::MIN maps to 0 rather than overflowing.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_kafka() {
        // String.hashCode of "my-group" (31*h + c over UTF-16 units) is -1906497762; |h| % 50 == 12.
        assert_eq!(java_string_hash("my-group"), -1906497762);
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("é"), 233);
    }
}
