//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455).
//!
//! Any broker takes them: Alter checks each partition against its view, records the valid ones
//! for the controller (cluster mode: `/admin/reassign_partitions`) and answers once the
//! controller has begun them (as Kafka's controller does); the moves finish in the background.
//! List answers from the view (the topic znodes' adding/removing replicas).
//! Standalone mode has one broker and nothing to move: Alter answers INVALID_REQUEST, List an
//! empty list.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{s, topic_name};
use crate::broker::Broker;
use crate::cluster::controller::reassign;
use crate::metadata::ClusterView;

/// How long Alter waits for the controller to begin the moves when the request gives no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A partition's verdict: `None` = accepted.
type Verdict = Option<(ResponseError, String)>;

/// Checks one requested move against the view.
fn check(
    view: &ClusterView,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
    allow_rf_change: bool,
) -> Verdict {
    let Some(p) = view
        .topic(topic)
        .and_then(|t| t.partitions.iter().find(|p| p.index == partition))
    else {
        return Some((
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        ));
    };
    let moving = view.reassignments.get(&(topic.to_string(), partition));
    let Some(target) = target else {
        return moving.is_none().then(|| {
            (
                ResponseError::NoReassignmentInProgress,
                format!("{topic}-{partition} is not being reassigned"),
            )
        });
    };
    // The controller's own check, so that what is accepted here is not dropped there.
    let registered: BTreeSet<i32> = view.brokers.iter().map(|b| b.id).collect();
    if let Err(e) = reassign::validate(target, &registered) {
        return Some((ResponseError::InvalidReplicaAssignment, e.to_string()));
    }
    if !allow_rf_change {
        // The replication factor before any move in progress.
        let original = match moving {
            Some(m) => p.replicas.len() - m.adding.len(),
            None => p.replicas.len(),
        };
        if original != target.len() {
            return Some((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "the target has {} replicas where {topic}-{partition} has {original}, and \
                     the request does not allow a replication factor change",
                    target.len()
                ),
            ));
        }
    }
    None
}

pub async fn alter(
    b: &Broker,
    version: i16,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let resp = AlterPartitionReassignmentsResponse::default();
    // The field exists from v1; v0 requests always allow it.
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let resp = if version >= 1 {
        resp.with_allow_replication_factor_change(allow_rf_change)
    } else {
        resp
    };
    if !b.metadata.supports_reassignment() {
        return resp
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(s(
                "partition reassignment needs cluster mode (this broker runs standalone)",
            )));
    }
    let view = b.metadata.view();
    // (topic, partition, verdict) in request order; accepted ones are written together.
    let mut verdicts: Vec<(String, i32, Verdict)> = Vec::new();
    let mut accepted: Vec<(String, i32, Option<Vec<i32>>)> = Vec::new();
    for t in &req.topics {
        let topic = t.name.0.to_string();
        for p in &t.partitions {
            let target: Option<Vec<i32>> = p
                .replicas
                .as_ref()
                .map(|r| r.iter().map(|id| id.0).collect());
            let verdict = check(
                &view,
                &topic,
                p.partition_index,
                target.as_deref(),
                allow_rf_change,
            );
            if verdict.is_none() {
                accepted.push((topic.clone(), p.partition_index, target));
            }
            verdicts.push((topic.clone(), p.partition_index, verdict));
        }
    }
    if !accepted.is_empty() {
        let timeout = if req.timeout_ms > 0 {
            Duration::from_millis(req.timeout_ms as u64)
        } else {
            DEFAULT_TIMEOUT
        };
        if let Err(e) = b.metadata.reassign_partitions(accepted, timeout).await {
            let (code, msg) = super::topics::meta_error(e);
            for v in verdicts.iter_mut().filter(|v| v.2.is_none()) {
                v.2 = Some((code, msg.clone()));
            }
        }
    }
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for (topic, partition, verdict) in verdicts {
        let (code, msg) = match verdict {
            Some((e, m)) => (e.code(), Some(s(m))),
            None => (0, None),
        };
        let part = ReassignablePartitionResponse::default()
            .with_partition_index(partition)
            .with_error_code(code)
            .with_error_message(msg);
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(
                ReassignableTopicResponse::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![part]),
            ),
        }
    }
    resp.with_responses(topics)
}

pub fn list(
    b: &Broker,
    _version: i16,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let view = b.metadata.view();
    let wanted = |topic: &str, partition: i32| match &req.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let ids = |v: &[i32]| v.iter().map(|r| BrokerId(*r)).collect::<Vec<_>>();
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for ((topic, partition), moving) in &view.reassignments {
        if !wanted(topic, *partition) {
            continue;
        }
        let Some(p) = view
            .topic(topic)
            .and_then(|t| t.partitions.iter().find(|p| p.index == *partition))
        else {
            continue;
        };
        let entry = OngoingPartitionReassignment::default()
            .with_partition_index(*partition)
            .with_replicas(ids(&p.replicas))
            .with_adding_replicas(ids(&moving.adding))
            .with_removing_replicas(ids(&moving.removing));
        // `reassignments` is ordered by topic, so a topic's partitions are adjacent.
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic.as_str() => t.partitions.push(entry),
            _ => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::metadata::{BrokerMeta, PartitionMeta, Reassigning, TopicMeta};

    fn view() -> ClusterView {
        let broker = |id| BrokerMeta {
            id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            endpoints: vec![],
        };
        let part = |index, replicas: Vec<i32>| PartitionMeta {
            index,
            leader: replicas[0],
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
            partition_epoch: 0,
        };
        let mut v = ClusterView {
            brokers: vec![broker(0), broker(1), broker(2)],
            ..Default::default()
        };
        v.topics.insert(
            "t".into(),
            Arc::new(TopicMeta {
                name: "t".into(),
                id: uuid::Uuid::new_v4(),
                partitions: vec![part(0, vec![0, 1]), part(1, vec![2, 1, 0])],
                configs: BTreeMap::new(),
                internal: false,
            }),
        );
        v.reassignments.insert(
            ("t".into(), 1),
            Reassigning {
                adding: vec![2],
                removing: vec![0],
            },
        );
        v
    }

    #[test]
    fn requests_are_checked_like_kafka() {
        let v = view();
        let code = |t: &str, p: i32, target: Option<&[i32]>, rf: bool| {
            check(&v, t, p, target, rf).map(|(e, _)| e)
        };
        assert_eq!(code("t", 0, Some(&[1, 2]), true), None);
        assert_eq!(
            code("x", 0, Some(&[1, 2]), true),
            Some(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            code("t", 5, None, true),
            Some(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            code("t", 0, Some(&[1, 1]), true),
            Some(ResponseError::InvalidReplicaAssignment)
        );
        assert_eq!(
            code("t", 0, Some(&[1, 9]), true),
            Some(ResponseError::InvalidReplicaAssignment)
        );
        assert_eq!(
            code("t", 0, Some(&[]), true),
            Some(ResponseError::InvalidReplicaAssignment)
        );
        // Cancel: only with a move in progress.
        assert_eq!(
            code("t", 0, None, true),
            Some(ResponseError::NoReassignmentInProgress)
        );
        assert_eq!(code("t", 1, None, true), None);
        // RF change refused when not allowed; the move in progress counts its original RF (2).
        assert_eq!(
            code("t", 0, Some(&[0, 1, 2]), false),
            Some(ResponseError::InvalidReplicationFactor)
        );
        assert_eq!(code("t", 1, Some(&[0, 2]), false), None);
    }

    #[tokio::test]
    async fn standalone_mode_refuses_alter_and_lists_nothing() {
        use clap::Parser;
        use kafka_protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::BrokerConfig::try_parse_from([
            "rivulet-broker",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .unwrap();
        let me = BrokerMeta {
            id: 0,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            endpoints: vec![],
        };
        let b = Broker::open_standalone(cfg, me).unwrap();
        let req = AlterPartitionReassignmentsRequest::default().with_topics(vec![
            ReassignableTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(0)]))]),
        ]);
        let resp = alter(&b, 0, req).await;
        assert_eq!(resp.error_code, ResponseError::InvalidRequest.code());
        assert!(resp
            .error_message
            .is_some_and(|m| m.contains("cluster mode")));
        let listed = list(&b, 0, ListPartitionReassignmentsRequest::default());
        assert_eq!(listed.error_code, 0);
        assert!(listed.topics.is_empty());
    }
}
