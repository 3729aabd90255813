//! One module per Kafka API. Handlers take the decoded request and the request version and return
//! the response; they never fail as a whole: errors become Kafka error codes in the response.

pub mod api_versions;
pub mod authz;
pub mod cluster;
pub mod configs;
pub mod delete_records;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod reassignments;
pub mod topics;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// `authorized_operations` value meaning "not requested".
pub const AUTHORIZED_OPS_OMITTED: i32 = i32::MIN;

pub fn code(e: ResponseError) -> i16 {
    e.code()
}

pub fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

/// Leader-epoch check shared by Fetch and ListOffsets: -1 means the client does not know one.
pub fn check_leader_epoch(requested: i32, current: i32) -> Option<ResponseError> {
    if requested < 0 || requested == current {
        None
    } else if requested < current {
        Some(ResponseError::FencedLeaderEpoch)
    } else {
        Some(ResponseError::UnknownLeaderEpoch)
    }
}
