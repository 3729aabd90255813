//! Metadata: brokers, controller, topics and partitions; auto-creates topics when enabled.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{s, topic_name, topics, AUTHORIZED_OPS_OMITTED};
use crate::authorization::{authorized_operations, ResourceType};
use crate::broker::Broker;
use crate::metadata::TopicMeta;
use crate::security::authorizer::{Operation, ResourceType as Acl};
use crate::security::Caller;

/// What the topic entries need besides the topic: the registered brokers (replicas on any other
/// broker are reported offline, v5+) and, while this broker is fenced (cut off from the
/// coordinator), its own id: its leadership may already have moved, so it must not send clients
/// back to itself — they would loop on NOT_LEADER_OR_FOLLOWER without ever asking another broker.
struct Ctx {
    live: Vec<i32>,
    fenced_self: Option<i32>,
}

fn ctx(b: &Broker, view: &crate::metadata::ClusterView) -> Ctx {
    Ctx {
        live: view.brokers.iter().map(|b| b.id).collect(),
        fenced_self: b.metadata.is_fenced().then_some(b.me.id),
    }
}

fn topic_entry(t: &TopicMeta, c: &Ctx) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_is_internal(t.internal)
        .with_topic_authorized_operations(AUTHORIZED_OPS_OMITTED)
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    let leader = if Some(p.leader) == c.fenced_self {
                        -1
                    } else {
                        p.leader
                    };
                    MetadataResponsePartition::default()
                        .with_partition_index(p.index)
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                        .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
                        .with_offline_replicas(
                            p.replicas
                                .iter()
                                .filter(|r| !c.live.contains(r))
                                .map(|r| BrokerId(*r))
                                .collect(),
                        )
                        .with_error_code(if leader < 0 {
                            ResponseError::LeaderNotAvailable.code()
                        } else {
                            0
                        })
                })
                .collect(),
        )
}

fn error_entry(name: Option<&str>, id: Uuid, err: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(topic_name))
        .with_topic_id(id)
        .with_error_code(err.code())
        .with_topic_authorized_operations(AUTHORIZED_OPS_OMITTED)
}

pub async fn handle(
    b: &Broker,
    version: i16,
    req: MetadataRequest,
    listener: &str,
    caller: Caller<'_>,
) -> MetadataResponse {
    let sec = &b.security;
    let may_describe = |name: &str| sec.allows(caller, Operation::Describe, Acl::Topic, name);
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted: Option<Vec<(Option<String>, Uuid)>> = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(
            list.into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
    };
    let allow_auto_create =
        b.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);

    let mut topics_out = Vec::new();
    match wanted {
        None => {
            let view = b.metadata.view();
            let c = ctx(b, &view);
            // Kafka leaves out the topics the caller may not Describe.
            topics_out.extend(
                view.topics
                    .values()
                    .filter(|t| may_describe(&t.name))
                    .map(|t| topic_entry(t, &c)),
            );
        }
        Some(list) => {
            for (name, id) in list {
                let view = b.metadata.view();
                match name {
                    Some(name) => {
                        if !may_describe(&name) {
                            topics_out.push(error_entry(
                                Some(&name),
                                Uuid::nil(),
                                ResponseError::TopicAuthorizationFailed,
                            ));
                            continue;
                        }
                        if let Some(t) = view.topic(&name) {
                            topics_out.push(topic_entry(t, &ctx(b, &view)));
                            continue;
                        }
                        if topics::validate_topic_name(&name).is_err() {
                            topics_out.push(error_entry(
                                Some(&name),
                                Uuid::nil(),
                                ResponseError::InvalidTopicException,
                            ));
                            continue;
                        }
                        if !allow_auto_create {
                            topics_out.push(error_entry(
                                Some(&name),
                                Uuid::nil(),
                                ResponseError::UnknownTopicOrPartition,
                            ));
                            continue;
                        }
                        // Auto-creation needs Create on the cluster or on the topic.
                        if !sec.allows_cluster(caller, Operation::Create)
                            && !sec.allows(caller, Operation::Create, Acl::Topic, &name)
                        {
                            topics_out.push(error_entry(
                                Some(&name),
                                Uuid::nil(),
                                ResponseError::TopicAuthorizationFailed,
                            ));
                            continue;
                        }
                        let planned = topics::plan_topic(b, &view, &name, -1, -1, vec![], vec![]);
                        let created = match planned {
                            Ok(p) => topics::create(b, p).await,
                            Err(e) => Err(e),
                        };
                        match created {
                            Ok(_) => {
                                let view = b.metadata.view();
                                match view.topic(&name) {
                                    Some(t) => topics_out.push(topic_entry(t, &ctx(b, &view))),
                                    None => topics_out.push(error_entry(
                                        Some(&name),
                                        Uuid::nil(),
                                        ResponseError::LeaderNotAvailable,
                                    )),
                                }
                            }
                            // Raced with another creator: answer with what exists now.
                            Err((ResponseError::TopicAlreadyExists, _)) => {
                                match b.metadata.view().topic(&name) {
                                    Some(t) => topics_out.push(topic_entry(t, &ctx(b, &view))),
                                    None => topics_out.push(error_entry(
                                        Some(&name),
                                        Uuid::nil(),
                                        ResponseError::LeaderNotAvailable,
                                    )),
                                }
                            }
                            Err((code, msg)) => {
                                tracing::warn!(topic = %name, error = %msg, "auto-creating topic failed");
                                topics_out.push(error_entry(Some(&name), Uuid::nil(), code));
                            }
                        }
                    }
                    None => match view.topic_by_id(&id) {
                        Some(t) if !may_describe(&t.name) => topics_out.push(error_entry(
                            None,
                            id,
                            ResponseError::TopicAuthorizationFailed,
                        )),
                        Some(t) => topics_out.push(topic_entry(t, &ctx(b, &view))),
                        None => {
                            topics_out.push(error_entry(None, id, ResponseError::UnknownTopicId))
                        }
                    },
                }
            }
        }
    }

    // KIP-430: asked for (v8+), every topic entry carries what the caller may do with it.
    if version >= 8 && req.include_topic_authorized_operations {
        for t in topics_out.iter_mut().filter(|t| t.error_code == 0) {
            let name = t.name.as_ref().map(|n| n.0.as_str()).unwrap_or_default();
            t.topic_authorized_operations =
                authorized_operations(sec, caller, ResourceType::Topic, name);
        }
    }
    // The cluster's moved to DescribeCluster in v11.
    let cluster_ops = if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        authorized_operations(
            sec,
            caller,
            ResourceType::Cluster,
            super::cluster::CLUSTER_RESOURCE,
        )
    } else {
        AUTHORIZED_OPS_OMITTED
    };
    let view = b.metadata.view();
    MetadataResponse::default()
        .with_brokers(
            view.brokers
                .iter()
                .filter_map(|br| {
                    // Kafka's rule: each broker's endpoint of the listener the request came in
                    // on; a broker without that listener is left out.
                    let (host, port) = br.endpoint_for(listener)?;
                    Some(
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(br.id))
                            .with_host(s(host.to_string()))
                            .with_port(port)
                            .with_rack(br.rack.clone().map(s)),
                    )
                })
                .collect(),
        )
        .with_cluster_id(Some(s(view.cluster_id.clone())))
        .with_controller_id(BrokerId(view.controller_id))
        .with_topics(topics_out)
        .with_cluster_authorized_operations(cluster_ops)
}
