//! CreateTopics, DeleteTopics, CreatePartitions, and topic creation shared with auto-creation.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};
use uuid::Uuid;

use super::{s, topic_name};
use crate::broker::Broker;
use crate::metadata::{placement, ClusterView, MetadataError, NewTopic};
use crate::topic_config;

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be '{name}'"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long, the maximum is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "topic name '{name}' contains '{c}'; legal characters are ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// A topic request turned into a placement, or a Kafka error with a message.
pub struct Planned {
    pub topic: NewTopic,
    pub replication_factor: i16,
}

pub type PlanError = (ResponseError, String);

/// Validates and places a topic (pure, given the view).
pub fn plan_topic(
    b: &Broker,
    view: &ClusterView,
    name: &str,
    num_partitions: i32,
    replication_factor: i16,
    assignments: Vec<(i32, Vec<i32>)>,
    configs: Vec<(String, Option<String>)>,
) -> Result<Planned, PlanError> {
    validate_topic_name(name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
    if view.topic(name).is_some() {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("Topic '{name}' already exists."),
        ));
    }
    let mut config_map = BTreeMap::new();
    for (k, v) in configs {
        let Some(v) = v else {
            return Err((
                ResponseError::InvalidConfig,
                format!("null value for config {k}"),
            ));
        };
        topic_config::validate(&k, &v).map_err(|m| (ResponseError::InvalidConfig, m))?;
        config_map.insert(k, v);
    }
    let assignment = if !assignments.is_empty() {
        if num_partitions != -1 || replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest,
                "both a replica assignment and numPartitions/replicationFactor were given".into(),
            ));
        }
        let mut sorted = assignments;
        sorted.sort_by_key(|(p, _)| *p);
        let rf = sorted[0].1.len();
        for (i, (p, replicas)) in sorted.iter().enumerate() {
            if *p != i as i32 {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    "partitions in the assignment must be numbered 0..n without gaps".into(),
                ));
            }
            check_replicas(view, replicas, rf)?;
        }
        sorted.into_iter().map(|(_, r)| r).collect()
    } else {
        let n = if num_partitions == -1 {
            b.config.num_partitions
        } else {
            num_partitions
        };
        if n < 1 {
            return Err((
                ResponseError::InvalidPartitions,
                format!("number of partitions must be at least 1, got {n}"),
            ));
        }
        let rf = if replication_factor == -1 {
            b.config.default_replication_factor
        } else {
            replication_factor
        };
        placement::assign(
            &view.brokers,
            0,
            n,
            rf,
            start_index(name, view.brokers.len()),
        )
        .map_err(|e| (ResponseError::InvalidReplicationFactor, e.to_string()))?
    };
    let replication_factor = assignment.first().map(|r| r.len() as i16).unwrap_or(0);
    Ok(Planned {
        topic: NewTopic {
            name: name.to_string(),
            assignment,
            configs: config_map,
        },
        replication_factor,
    })
}

fn start_index(name: &str, brokers: usize) -> usize {
    // Deterministic per name, so leaders of different topics start on different brokers.
    let h = name
        .bytes()
        .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(c as u32));
    h as usize % brokers.max(1)
}

fn check_replicas(view: &ClusterView, replicas: &[i32], rf: usize) -> Result<(), PlanError> {
    if replicas.is_empty() || replicas.len() != rf {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("every partition needs the same number ({rf}) of replicas"),
        ));
    }
    let distinct: HashSet<_> = replicas.iter().collect();
    if distinct.len() != replicas.len() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("duplicate broker in replica list {replicas:?}"),
        ));
    }
    if let Some(bad) = replicas.iter().find(|r| view.broker(**r).is_none()) {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("broker {bad} in the replica assignment does not exist"),
        ));
    }
    Ok(())
}

pub fn meta_error(e: MetadataError) -> PlanError {
    let code = match &e {
        MetadataError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        MetadataError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        MetadataError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        MetadataError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        MetadataError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        MetadataError::Storage(_) => ResponseError::KafkaStorageError,
        // A stale controller/leader view: the client retries against fresh metadata.
        MetadataError::Fenced(_) => ResponseError::NotController,
        MetadataError::Unavailable(_) => ResponseError::CoordinatorNotAvailable,
        MetadataError::Timeout(_) => ResponseError::RequestTimedOut,
        MetadataError::NotSupported(_) => ResponseError::InvalidRequest,
    };
    (code, e.to_string())
}

/// Creates a topic and opens its partitions here.
pub async fn create(b: &Broker, planned: Planned) -> Result<Uuid, PlanError> {
    let meta = b
        .metadata
        .create_topic(planned.topic)
        .await
        .map_err(meta_error)?;
    if let Err(e) = b.sync_partitions() {
        tracing::error!(topic = %meta.name, error = %format!("{e:#}"), "opening new partitions failed");
        return Err((ResponseError::KafkaStorageError, format!("{e:#}")));
    }
    tracing::info!(topic = %meta.name, partitions = meta.partitions.len(), "created topic");
    Ok(meta.id)
}

pub async fn create_topics(
    b: &Broker,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let dups: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        if dups.contains(&name) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(format!(
                        "topic '{name}' appears more than once in the request"
                    )))),
            );
            continue;
        }
        let view = b.metadata.view();
        let planned = plan_topic(
            b,
            &view,
            &name,
            t.num_partitions,
            t.replication_factor,
            t.assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|id| id.0).collect(),
                    )
                })
                .collect(),
            t.configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        );
        let planned = match planned {
            Ok(p) => p,
            Err((code, msg)) => {
                results.push(
                    result
                        .with_error_code(code.code())
                        .with_error_message(Some(s(msg))),
                );
                continue;
            }
        };
        let partitions = planned.topic.assignment.len() as i32;
        let rf = planned.replication_factor;
        let overrides = planned.topic.configs.clone();
        let topic_id = if req.validate_only {
            Uuid::nil()
        } else {
            match create(b, planned).await {
                Ok(id) => id,
                Err((code, msg)) => {
                    results.push(
                        result
                            .with_error_code(code.code())
                            .with_error_message(Some(s(msg))),
                    );
                    continue;
                }
            }
        };
        if version >= 5 {
            let view = b.metadata.view();
            let resolved = topic_config::resolve_topic(
                &b.config,
                &view.default_broker_configs,
                view.broker_configs
                    .get(&b.me.id)
                    .unwrap_or(&BTreeMap::new()),
                &overrides,
            );
            result = result
                .with_num_partitions(partitions)
                .with_replication_factor(rf)
                .with_configs(Some(
                    resolved
                        .into_iter()
                        .map(|r| {
                            CreatableTopicConfigs::default()
                                .with_name(s(r.name))
                                .with_value(Some(s(r.value)))
                                .with_config_source(r.source as i8)
                        })
                        .collect(),
                ));
        }
        results.push(result.with_topic_id(topic_id));
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    b: &Broker,
    version: i16,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // v6 names topics by name or id; older versions by name only.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let view = b.metadata.view();
        let found = match (&name, id.is_nil()) {
            (Some(n), _) => view.topic(n).cloned(),
            (None, false) => view.topic_by_id(&id).cloned(),
            (None, true) => None,
        };
        let mut r = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(id);
        match found {
            None => {
                let code = if name.is_none() {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                r = r
                    .with_error_code(code.code())
                    .with_error_message(Some(s("This server does not host this topic.")));
            }
            Some(t) if t.internal => {
                r = r
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(s(format!(
                        "'{}' is an internal topic and cannot be deleted",
                        t.name
                    ))));
            }
            Some(t) => {
                r = r.with_name(Some(topic_name(&t.name))).with_topic_id(t.id);
                let res = b.metadata.delete_topic(&t.name).await;
                match res {
                    Ok(()) => {
                        if let Err(e) = b.sync_partitions() {
                            tracing::error!(topic = %t.name, error = %format!("{e:#}"), "cleanup after delete failed");
                        }
                        tracing::info!(topic = %t.name, "deleted topic");
                    }
                    Err(e) => {
                        let (code, msg) = meta_error(e);
                        r = r
                            .with_error_code(code.code())
                            .with_error_message(Some(s(msg)));
                    }
                }
            }
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    b: &Broker,
    _version: i16,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let view = b.metadata.view();
        let outcome: Result<(), PlanError> = async {
            let topic = view.topic(&name).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )
            })?;
            // As Kafka: a moving partition's replica list is not the topic's replication factor.
            if view.reassignments.keys().any(|(topic, _)| *topic == name) {
                return Err((
                    ResponseError::ReassignmentInProgress,
                    format!("a partition reassignment of topic '{name}' is in progress"),
                ));
            }
            let current = topic.partitions.len() as i32;
            if t.count < current {
                return Err((
                    ResponseError::InvalidPartitions,
                    format!("Topic currently has {current} partitions, which is higher than the requested {}.", t.count),
                ));
            }
            if t.count == current {
                return Err((
                    ResponseError::InvalidPartitions,
                    format!("Topic already has {current} partitions."),
                ));
            }
            let rf = topic.replication_factor().max(1) as usize;
            let added = t.count - current;
            let assignment: Vec<Vec<i32>> = match &t.assignments {
                Some(a) => {
                    if a.len() as i32 != added {
                        return Err((
                            ResponseError::InvalidReplicaAssignment,
                            format!("{} replica assignments given for {added} new partitions", a.len()),
                        ));
                    }
                    let lists: Vec<Vec<i32>> =
                        a.iter().map(|x| x.broker_ids.iter().map(|id| id.0).collect()).collect();
                    for l in &lists {
                        check_replicas(&view, l, rf)?;
                    }
                    lists
                }
                None => placement::assign(
                    &view.brokers,
                    current,
                    added,
                    rf as i16,
                    start_index(&name, view.brokers.len()),
                )
                .map_err(|e| (ResponseError::InvalidReplicationFactor, e.to_string()))?,
            };
            if req.validate_only {
                return Ok(());
            }
            b.metadata
                .add_partitions(&name, assignment)
                .await
                .map_err(meta_error)?;
            b.sync_partitions()
                .map_err(|e| (ResponseError::KafkaStorageError, format!("{e:#}")))?;
            tracing::info!(topic = %name, partitions = t.count, "added partitions");
            Ok(())
        }
        .await;
        results.push(match outcome {
            Ok(()) => r,
            Err((code, msg)) => r
                .with_error_code(code.code())
                .with_error_message(Some(s(msg))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::validate_topic_name;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").unwrap_err().contains("'/'"));
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
