//! ListOffsets: earliest, latest, max-timestamp and by-timestamp lookups.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::check_leader_epoch;
use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(b: &Broker, version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let view = b.metadata.view();
    // A replica (id >= 0) asks for the log end; consumers see committed data only.
    let replica = req.replica_id.0 >= 0;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = view.topic(&t.name.0).cloned();
            let partitions = t
                .partitions
                .iter()
                .map(|lp| {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(lp.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let Some(topic) = topic.as_ref() else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let Some(part) = b.replicas.get(&topic.name, lp.partition_index) else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if !part.is_leader() {
                        return r.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let epoch = part.leader_epoch();
                    if let Some(err) = check_leader_epoch(lp.current_leader_epoch, epoch) {
                        return r.with_error_code(err.code());
                    }
                    if !replica && part.leader_hw_pending() {
                        return r.with_error_code(ResponseError::OffsetNotAvailable.code());
                    }
                    // The field exists from v4; earlier versions refuse a non-default value.
                    let r = if version >= 4 { r.with_leader_epoch(epoch) } else { r };
                    match lp.timestamp {
                        // No transactions, so the last stable offset is the high watermark.
                        LATEST if replica => r.with_offset(part.log_end_offset()),
                        LATEST => r.with_offset(part.high_watermark()),
                        EARLIEST | EARLIEST_LOCAL => r.with_offset(part.log_start_offset()),
                        LATEST_TIERED => r.with_offset(-1),
                        MAX_TIMESTAMP => {
                            let (ts, off) = part.max_timestamp();
                            r.with_timestamp(ts).with_offset(off)
                        }
                        ts if ts >= 0 => match part.offset_for_timestamp(ts) {
                            Ok(Some((off, found_ts))) => r.with_offset(off).with_timestamp(found_ts),
                            Ok(None) => r,
                            Err(e) => {
                                tracing::error!(topic = %topic.name, partition = lp.partition_index, error = %e, "timestamp lookup failed");
                                r.with_error_code(ResponseError::KafkaStorageError.code())
                            }
                        },
                        _ => r.with_error_code(ResponseError::InvalidRequest.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
