//! OffsetForLeaderEpoch (API 23): the end offset of a leader epoch in this broker's log
//! (KIP-101/KIP-279). Followers ask it before fetching after a leader change to find where
//! their log diverges; consumers ask it to validate their position after a leader change
//! (KIP-320).
//!
//! Kafka's rules (`KafkaApis`, `ReplicaManager.lastOffsetForLeaderEpoch`,
//! `Partition.lastOffsetForLeaderEpoch`): an unknown topic or partition is
//! UNKNOWN_TOPIC_OR_PARTITION; a partition the cluster has but this broker does not host is
//! NOT_LEADER_OR_FOLLOWER; the request's `current_leader_epoch` is checked first (older:
//! FENCED_LEADER_EPOCH, newer: UNKNOWN_LEADER_EPOCH); then only the leader answers, unless the
//! request comes from the debugging replica id -2 (which is also what versions before 3 carry,
//! having no replica id field). The answer is `(epoch, end offset)` from the leader-epoch cache,
//! or UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET (-1, -1) with no error when the log knows nothing
//! about the epoch.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::check_leader_epoch;
use crate::broker::Broker;

/// The replica id of a request that may be answered by a non-leader (Kafka's
/// `OffsetsForLeaderEpochRequest.DEBUGGING_REPLICA_ID`).
const DEBUGGING_REPLICA_ID: i32 = -2;
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

pub fn handle(
    b: &Broker,
    _version: i16,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let view = b.metadata.view();
    let only_leader = req.replica_id.0 != DEBUGGING_REPLICA_ID;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = view.topic(&t.topic.0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(UNDEFINED_EPOCH)
                        .with_end_offset(UNDEFINED_EPOCH_OFFSET);
                    let known = topic
                        .is_some_and(|t| t.partitions.iter().any(|pm| pm.index == p.partition));
                    let Some(part) = b.replicas.get(&t.topic.0, p.partition) else {
                        let err = if known {
                            ResponseError::NotLeaderOrFollower
                        } else {
                            ResponseError::UnknownTopicOrPartition
                        };
                        return r.with_error_code(err.code());
                    };
                    if let Some(err) =
                        check_leader_epoch(p.current_leader_epoch, part.leader_epoch())
                    {
                        return r.with_error_code(err.code());
                    }
                    if only_leader && !part.is_leader() {
                        return r.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    match part.end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end)) => r.with_leader_epoch(epoch).with_end_offset(end),
                        None => r,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
