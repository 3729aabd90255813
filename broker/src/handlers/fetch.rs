//! Fetch: reads whole batches up to the high watermark (consumers) or the log end (followers,
//! whose fetch offset also reports their progress to the leader), honouring max bytes per
//! partition and per response, and long-polls (max_wait_ms / min_bytes) until an append or a
//! high-watermark advance wakes it or time runs out.

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use rivulet_storage::LogError;

use super::{check_leader_epoch, topic_name};
use crate::broker::Broker;
use crate::metadata::ClusterView;
use crate::partition::{Partition, Role};
use crate::replication::throttle;
use crate::security::authorizer::{Operation, ResourceType as AclResource};
use crate::security::Caller;

/// Kafka's READ_COMMITTED isolation level.
const READ_COMMITTED: i8 = 1;

struct Pass {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    /// A partition answered with an error or a preferred read replica: Kafka returns at once
    /// rather than waiting.
    errors: bool,
}

/// KIP-392 (Kafka's RackAwareReplicaSelector): an in-sync follower in the consumer's rack that
/// holds `offset`, when the leader is in another rack.
fn preferred_read_replica(
    b: &Broker,
    view: &ClusterView,
    part: &Partition,
    client_rack: &str,
    offset: i64,
) -> Option<i32> {
    if b.me.rack.as_deref() == Some(client_rack) {
        return None;
    }
    part.in_sync_followers_holding(offset)
        .into_iter()
        .find(|id| view.broker(*id).and_then(|m| m.rack.as_deref()) == Some(client_rack))
}

/// The fetching replica's id, or -1 for a consumer (v15+ carry it in `replica_state`).
fn replica_id(version: i16, req: &FetchRequest) -> i32 {
    if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    }
}

fn read_once(b: &Broker, version: i16, req: &FetchRequest) -> Pass {
    let view = b.metadata.view();
    let replica = replica_id(version, req);
    let now_ms = crate::now_ms();
    let fenced = b.metadata.is_fenced();
    let mut redirected = false;
    let mut remaining = if version >= 3 {
        req.max_bytes.max(0) as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let read_committed = req.isolation_level == READ_COMMITTED;
    let leader_limit = if replica >= 0 {
        throttle::rate_limit(
            view.broker_configs.get(&b.me.id),
            &view.default_broker_configs,
            throttle::LEADER_RATE,
        )
    } else {
        None
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let topic = if version >= 13 {
            view.topic_by_id(&t.topic_id).cloned()
        } else {
            view.topic(&t.topic.0).cloned()
        };
        let mut parts = Vec::with_capacity(t.partitions.len());
        for fp in &t.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(if read_committed { Some(vec![]) } else { None });
            let Some(topic) = topic.as_ref() else {
                let err = if version >= 13 {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                parts.push(pd.with_error_code(err.code()));
                continue;
            };
            let Some(part) = b.replicas.get(&topic.name, fp.partition) else {
                parts.push(pd.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let leader = part.is_leader();
            // KIP-392: from v11 a consumer may read from a follower, up to its high watermark.
            let follower_read = !leader
                && replica < 0
                && version >= 11
                && matches!(part.role(), Role::Follower { leader, .. } if leader >= 0);
            // A fenced leader (cut off from the coordinator) may have been replaced already.
            if fenced || !(leader || follower_read) {
                parts.push(pd.with_error_code(ResponseError::NotLeaderOrFollower.code()));
                continue;
            }
            if let Some(err) = check_leader_epoch(fp.current_leader_epoch, part.leader_epoch()) {
                parts.push(pd.with_error_code(err.code()));
                continue;
            }
            if leader && replica < 0 && version >= 11 && !req.rack_id.is_empty() {
                if let Some(id) =
                    preferred_read_replica(b, &view, &part, &req.rack_id, fp.fetch_offset)
                {
                    let hw = part.high_watermark();
                    redirected = true;
                    parts.push(
                        pd.with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(part.log_start_offset())
                            .with_preferred_read_replica(BrokerId(id)),
                    );
                    continue;
                }
            }
            // A follower reads up to the log end and its fetch offset is its log end: record it
            // (it may move the high watermark and earn the follower its ISR place).
            let upper = if replica >= 0 {
                match part.record_follower_fetch(replica, fp.fetch_offset, now_ms) {
                    Ok(expand) => {
                        if expand {
                            b.replicas.isr_work.notify_one();
                        }
                    }
                    Err(_) => {
                        parts.push(pd.with_error_code(ResponseError::NotLeaderOrFollower.code()));
                        continue;
                    }
                }
                part.log_end_offset()
            } else {
                part.high_watermark()
            };
            let hw = part.high_watermark();
            pd = pd
                .with_high_watermark(hw)
                .with_last_stable_offset(hw)
                .with_log_start_offset(part.log_start_offset());
            // Replication throttle, leader side: an out-of-sync follower of a replica throttled
            // here gets nothing while the leader quota is exceeded.
            let throttled = replica >= 0
                && leader
                && throttle::is_throttled(
                    &topic.configs,
                    throttle::LEADER_REPLICAS,
                    fp.partition,
                    b.me.id,
                )
                && !part.isr().contains(&replica);
            if throttled && b.quotas.leader.exceeded(throttle::now_ms(), leader_limit) {
                parts.push(pd);
                continue;
            }
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            // KIP-74: the first non-empty partition returns at least one whole batch.
            let min_one = total == 0;
            if limit == 0 && !min_one {
                parts.push(pd);
                continue;
            }
            match part.read(fp.fetch_offset, limit, upper, min_one) {
                Ok(r) => {
                    let n = r.data.len();
                    total += n;
                    remaining = remaining.saturating_sub(n);
                    if replica < 0 {
                        b.metrics.bytes_out(&topic.name, n as u64);
                    }
                    if throttled {
                        b.quotas.leader.record(throttle::now_ms(), n as u64);
                    }
                    parts.push(pd.with_records(Some(r.data)));
                }
                Err(LogError::OffsetOutOfRange { .. }) => {
                    parts.push(pd.with_error_code(ResponseError::OffsetOutOfRange.code()));
                }
                Err(e) => {
                    tracing::error!(topic = %topic.name, partition = fp.partition, error = %e, "read failed");
                    parts.push(pd.with_error_code(ResponseError::KafkaStorageError.code()));
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic_name(&t.topic.0))
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    let errors = redirected
        || topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .any(|p| p.error_code != 0);
    Pass {
        topics,
        bytes: total,
        errors,
    }
}

/// Takes out of `req` the topics `caller` may not fetch and answers them with
/// TOPIC_AUTHORIZATION_FAILED: a follower needs ClusterAction on the cluster (all its topics
/// fail without it, as in Kafka), a consumer Read on each topic.
fn unauthorized(
    b: &Broker,
    version: i16,
    req: &mut FetchRequest,
    caller: Caller<'_>,
) -> Vec<FetchableTopicResponse> {
    if !b.security.authorizer_enabled() {
        return Vec::new();
    }
    let follower = replica_id(version, req) >= 0;
    let cluster_ok = follower && b.security.allows_cluster(caller, Operation::ClusterAction);
    let view = b.metadata.view();
    let (mut kept, mut denied) = (Vec::new(), Vec::new());
    for t in std::mem::take(&mut req.topics) {
        let ok = if follower {
            cluster_ok
        } else {
            let name = if version >= 13 {
                view.topic_by_id(&t.topic_id).map(|m| m.name.as_str())
            } else {
                Some(t.topic.0.as_str())
            };
            // An unknown topic id is answered UNKNOWN_TOPIC_ID by the handler.
            name.is_none_or(|n| {
                b.security
                    .allows(caller, Operation::Read, AclResource::Topic, n)
            })
        };
        if ok {
            kept.push(t);
        } else {
            denied.push(
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_high_watermark(-1)
                                    .with_last_stable_offset(-1)
                                    .with_log_start_offset(-1)
                                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            })
                            .collect(),
                    ),
            );
        }
    }
    req.topics = kept;
    denied
}

pub async fn handle(
    b: &Broker,
    version: i16,
    mut req: FetchRequest,
    caller: Caller<'_>,
) -> FetchResponse {
    let denied = unauthorized(b, version, &mut req, caller);
    if !denied.is_empty() {
        let mut pass = read_once(b, version, &req);
        pass.topics.extend(denied);
        return FetchResponse::default()
            .with_session_id(0)
            .with_responses(pass.topics);
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        // Register for the wake-up before reading so a produce between the read and the wait
        // is not missed.
        let notified = b.replicas.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let pass = read_once(b, version, &req);
        let now = Instant::now();
        if pass.bytes >= min_bytes.max(1) || min_bytes == 0 || pass.errors || now >= deadline {
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(pass.topics);
        }
        if tokio::time::timeout(deadline - now, notified)
            .await
            .is_err()
        {
            // Timed out: one final read so the answer reflects the latest state.
            let pass = read_once(b, version, &req);
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(pass.topics);
        }
    }
}
