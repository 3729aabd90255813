//! DeleteRecords: moves a partition's log start offset forward.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;

/// Offset -1 means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub fn handle(b: &Broker, _version: i16, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(part) = b.replicas.get(&t.name.0, p.partition_index) else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    // Followers move their log start from the leader's fetch answers.
                    if !part.is_leader() {
                        return r.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let hw = part.high_watermark();
                    let target = if p.offset == HIGH_WATERMARK { hw } else { p.offset };
                    if target < 0 || target > hw {
                        return r.with_error_code(ResponseError::OffsetOutOfRange.code());
                    }
                    match part.delete_records_before(target) {
                        Ok(low) => {
                            tracing::info!(topic = %t.name.0.as_str(), partition = p.partition_index, low_watermark = low, "deleted records");
                            r.with_low_watermark(low)
                        }
                        Err(e) => {
                            tracing::error!(topic = %t.name.0.as_str(), partition = p.partition_index, error = %e, "delete records failed");
                            r.with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
