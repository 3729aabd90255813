//! Produce: validate each partition's batches (framing, magic, CRC32C, size) without decoding
//! records, then append; offsets are assigned by rewriting each batch's baseOffset. Records are
//! decoded only for a compacted topic (every record needs a key) and for a topic whose
//! `compression.type` differs from the batch's codec (the batch is rebuilt with the topic's).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use rivulet_storage::recompress::{needs_recompression, recompress_batches};
use rivulet_storage::{keyless_records, validate_batches, BatchHeader, BatchIter, LogError};
use std::sync::Arc;
use std::time::Duration;

use super::{s, topic_name};
use crate::broker::Broker;
use crate::partition::{AppendError, CommitError, Partition};
use crate::security::authorizer::{Operation, ResourceType as AclResource};
use crate::security::Caller;

/// Byte offset of the magic byte in a v2 batch header.
const MAGIC_OFFSET: usize = 16;

fn failed(index: i32, err: ResponseError, msg: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(err.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(msg.map(s))
}

/// A Produce whose batches are appended, with its acks=all partitions still to be committed.
pub struct Staged {
    responses: Vec<TopicProduceResponse>,
    /// acks=all: (topic index, partition index in it, partition, leader epoch, last offset).
    waits: Vec<(usize, usize, Arc<Partition>, i32, i64)>,
    /// One deadline for all waits (the request's timeout_ms from its arrival).
    deadline: tokio::time::Instant,
}

pub async fn handle(
    b: &Broker,
    version: i16,
    req: ProduceRequest,
    caller: Caller<'_>,
) -> ProduceResponse {
    stage(b, version, req, caller).finish(b).await
}

/// Validates and appends every partition's batches now; what is left is the acks=all wait
/// (`Staged::finish`). Separate so that a connection can append its next pipelined Produce
/// while this one waits for the in-sync replicas: appends stay in arrival order, and every
/// waiting write is committed by the same follower fetches instead of one round each.
pub fn stage(b: &Broker, version: i16, req: ProduceRequest, caller: Caller<'_>) -> Staged {
    let now = crate::now_ms();
    // Kafka: Write on the transactional id first, then Write on each topic.
    let txn_denied = req.transactional_id.as_ref().is_some_and(|id| {
        !b.security.allows(
            caller,
            Operation::Write,
            AclResource::TransactionalId,
            &id.0,
        )
    });
    let view = b.metadata.view();
    let acks_ok = matches!(req.acks, -1..=1);
    let fenced = b.metadata.is_fenced();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut waits: Vec<(usize, usize, Arc<Partition>, i32, i64)> = Vec::new();
    for t in req.topic_data {
        // v13 names topics by id.
        let topic = if version >= 13 {
            view.topic_by_id(&t.topic_id).cloned()
        } else {
            view.topic(&t.name.0).cloned()
        };
        let unknown = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let topic_denied = b.security.authorizer_enabled()
            && !b.security.allows(
                caller,
                Operation::Write,
                AclResource::Topic,
                topic
                    .as_ref()
                    .map_or(t.name.0.as_str(), |m| m.name.as_str()),
            );
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let idx = p.index;
            if !acks_ok {
                parts.push(failed(idx, ResponseError::InvalidRequiredAcks, None));
                continue;
            }
            if txn_denied {
                parts.push(failed(
                    idx,
                    ResponseError::TransactionalIdAuthorizationFailed,
                    None,
                ));
                continue;
            }
            if topic_denied {
                parts.push(failed(idx, ResponseError::TopicAuthorizationFailed, None));
                continue;
            }
            if req.transactional_id.is_some() {
                parts.push(failed(
                    idx,
                    ResponseError::InvalidRequest,
                    Some("transactions are not supported by this broker".into()),
                ));
                continue;
            }
            let Some(topic) = topic.as_ref() else {
                parts.push(failed(idx, unknown, None));
                continue;
            };
            let Some(part) = b.replicas.get(&topic.name, idx) else {
                parts.push(failed(idx, ResponseError::UnknownTopicOrPartition, None));
                continue;
            };
            if fenced || !part.is_leader() {
                parts.push(failed(idx, ResponseError::NotLeaderOrFollower, None));
                continue;
            }
            let Some(records) = p.records.filter(|r| !r.is_empty()) else {
                parts.push(failed(
                    idx,
                    ResponseError::CorruptMessage,
                    Some("empty record set".into()),
                ));
                continue;
            };
            if records.len() > MAGIC_OFFSET && records[MAGIC_OFFSET] < 2 {
                parts.push(failed(
                    idx,
                    ResponseError::UnsupportedForMessageFormat,
                    Some(format!(
                        "message format v{} is not supported; use v2 (Kafka 0.11+ clients)",
                        records[MAGIC_OFFSET]
                    )),
                ));
                continue;
            }
            let headers = match validate_batches(&records) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(topic = %topic.name, partition = idx, error = %e, "rejected corrupt batch");
                    b.metrics.corrupt_batch();
                    parts.push(failed(
                        idx,
                        ResponseError::CorruptMessage,
                        Some(e.to_string()),
                    ));
                    continue;
                }
            };
            if let Some(h) = headers.iter().find(|h| h.is_control()) {
                parts.push(failed(
                    idx,
                    ResponseError::InvalidRecord,
                    Some(format!(
                        "control batch at producer {} is not accepted from clients",
                        h.producer_id
                    )),
                ));
                continue;
            }
            if headers.iter().any(|h| h.is_transactional()) {
                parts.push(failed(
                    idx,
                    ResponseError::InvalidRecord,
                    Some("transactional batches are not supported by this broker".into()),
                ));
                continue;
            }
            if part.is_compacted() {
                if let Some(mut resp) = check_keys(&records, &topic.name, idx) {
                    // RecordErrors exist from v8; older versions refuse a non-empty list.
                    if version < 8 {
                        resp.record_errors.clear();
                    }
                    parts.push(resp);
                    continue;
                }
            }
            if req.acks == -1 {
                // The leader's own ISR is fresher than the metadata view.
                let (isr, min_isr) = part.isr_size_and_min();
                if isr < min_isr {
                    parts.push(failed(
                        idx,
                        ResponseError::NotEnoughReplicas,
                        Some(format!(
                            "{isr} in-sync replicas, min.insync.replicas is {min_isr}"
                        )),
                    ));
                    continue;
                }
            }
            let len = records.len();
            let target = part.compression_type().target_codec();
            let (mut buf, headers) = if needs_recompression(&headers, target) {
                match recompress(&records, target.unwrap_or(0)) {
                    Ok(rebuilt) => rebuilt,
                    Err(e) => {
                        tracing::warn!(topic = %topic.name, partition = idx, error = %e, "cannot recompress batch");
                        parts.push(failed(
                            idx,
                            ResponseError::CorruptMessage,
                            Some(format!("cannot recompress records: {e}")),
                        ));
                        continue;
                    }
                }
            } else {
                (records.to_vec(), headers)
            };
            match part.append(&mut buf, &headers, 0, now) {
                Ok(a) => {
                    if !a.duplicate {
                        b.metrics.bytes_in(&topic.name, len as u64);
                        b.metrics
                            .messages_in(&topic.name, (a.last_offset - a.base_offset + 1) as u64);
                    }
                    if req.acks == -1 {
                        waits.push((
                            responses.len(),
                            parts.len(),
                            part.clone(),
                            a.leader_epoch,
                            a.last_offset,
                        ));
                    }
                    parts.push(
                        PartitionProduceResponse::default()
                            .with_index(idx)
                            .with_base_offset(a.base_offset)
                            .with_log_append_time_ms(a.log_append_time)
                            .with_log_start_offset(a.log_start_offset),
                    );
                }
                Err(e) => {
                    let (code, msg) = append_error(&e);
                    tracing::warn!(topic = %topic.name, partition = idx, error = %e, "append failed");
                    parts.push(failed(idx, code, Some(msg)));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_name(&t.name.0))
                .with_topic_id(t.topic_id)
                .with_partition_responses(parts),
        );
    }
    // (Each append has woken the parked fetches itself: `Partition::append`.)
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    Staged {
        responses,
        waits,
        deadline: tokio::time::Instant::now() + timeout,
    }
}

impl Staged {
    /// Nothing to wait for (no acks=all partition appended): `finish` answers at once.
    pub fn is_done(&self) -> bool {
        self.waits.is_empty()
    }

    /// Waits until every acks=all partition is committed (or fails) and answers.
    pub async fn finish(self, b: &Broker) -> ProduceResponse {
        let Staged {
            mut responses,
            waits,
            deadline,
        } = self;
        // All waits share one deadline, so waiting for them one after another takes as long
        // as the slowest, as concurrent waits would.
        for (ti, pi, part, epoch, last_offset) in waits {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = tokio::select! {
                // Committed-at-once (standalone, or ISR alone) answers without arming the poll.
                biased;
                r = part.wait_committed(epoch, last_offset, left) => r,
                // Cut off from the coordinator: a newer leader may exist, so this one stops
                // waiting for followers that may never come and lets the client look elsewhere.
                _ = fenced_soon(b) => Err(CommitError::NotLeader),
            };
            if let Err(e) = result {
                let code = match e {
                    CommitError::NotLeader => ResponseError::NotLeaderOrFollower,
                    CommitError::Timeout => ResponseError::RequestTimedOut,
                    CommitError::NotEnoughReplicas => ResponseError::NotEnoughReplicasAfterAppend,
                };
                let slot = &mut responses[ti].partition_responses[pi];
                *slot = failed(slot.index, code, Some(e.to_string()));
            }
        }
        ProduceResponse::default().with_responses(responses)
    }
}

/// Resolves once the metadata store reports this broker fenced (polled: the store has no
/// notification for it, and 50 ms is small next to the session timeout that triggers it).
async fn fenced_soon(b: &Broker) {
    while !b.metadata.is_fenced() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rebuilds the batches whose codec is not the topic's `codec`, and their headers.
fn recompress(
    records: &[u8],
    codec: u8,
) -> Result<(Vec<u8>, Vec<BatchHeader>), rivulet_storage::BatchError> {
    let buf = recompress_batches(records, codec)?;
    let headers = BatchIter::new(&buf).map(|(_, h)| h).collect();
    Ok((buf, headers))
}

/// cleanup.policy=compact: every record needs a key. As Kafka's LogValidator does, the first
/// batch holding keyless records is refused with INVALID_RECORD listing each of them by its
/// index in that batch (KIP-467 `record_errors`, which librdkafka uses to fail exactly those
/// messages with INVALID_RECORD and the rest of the batch with _INVALID_DIFFERENT_RECORD).
/// Decodes (inflating compressed batches) only for compacted topics. `Some` is the refusal.
fn check_keys(records: &[u8], topic: &str, idx: i32) -> Option<PartitionProduceResponse> {
    for (pos, h) in BatchIter::new(records) {
        match keyless_records(&records[pos..pos + h.total_len()]) {
            Ok(keyless) if keyless.is_empty() => {}
            Ok(keyless) => {
                let msg = format!(
                    "Compacted topic cannot accept message without key in topic partition {topic}-{idx}"
                );
                return Some(record_errors_response(idx, &keyless, &msg));
            }
            Err(e) => {
                return Some(failed(
                    idx,
                    ResponseError::CorruptMessage,
                    Some(format!("cannot decode records: {e}")),
                ));
            }
        }
    }
    None
}

/// INVALID_RECORD with one `record_errors` entry per index (ascending, as librdkafka expects)
/// and Kafka's summary message (`processRecordErrors`: the count and at most three errors).
fn record_errors_response(idx: i32, indexes: &[i32], msg: &str) -> PartitionProduceResponse {
    let shown: Vec<String> = indexes
        .iter()
        .take(3)
        .map(|i| format!("RecordError(batchIndex={i}, message='{msg}')"))
        .collect();
    let summary = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        indexes.len(),
        shown.join(", ")
    );
    let errors = indexes
        .iter()
        .map(|&i| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(i)
                .with_batch_index_error_message(Some(s(msg.to_string())))
        })
        .collect();
    failed(idx, ResponseError::InvalidRecord, Some(summary)).with_record_errors(errors)
}

fn append_error(e: &AppendError) -> (ResponseError, String) {
    let code = match e {
        AppendError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::FencedEpoch { .. } => ResponseError::InvalidProducerEpoch,
        AppendError::UnknownProducer(_) => ResponseError::UnknownProducerId,
        AppendError::Invalid(_) => ResponseError::InvalidRecord,
        AppendError::NotLeader => ResponseError::NotLeaderOrFollower,
        AppendError::Log(LogError::MessageTooLarge { .. }) => ResponseError::MessageTooLarge,
        AppendError::Log(LogError::RecordBatchTooLarge { .. }) => ResponseError::RecordListTooLarge,
        AppendError::Log(LogError::Batch(_)) => ResponseError::CorruptMessage,
        AppendError::Log(_) => ResponseError::KafkaStorageError,
    };
    (code, e.to_string())
}
