//! Authorization of the APIs whose handlers do not check it themselves, as Kafka's `KafkaApis`
//! does: the parts of a request the caller may not touch are taken out before the handler runs
//! (so nothing is written for them) and answered with Kafka's error; a request refused as a
//! whole never reaches its handler. Produce, Fetch and Metadata check inside their handlers.
//! Without an authorizer every check passes and requests go through unchanged.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::*;

use super::{groups, s, AUTHORIZED_OPS_OMITTED};
use crate::authorization::{authorized_operations, ResourceType as OpsResource};
use crate::broker::Broker;
use crate::security::authorizer::{Operation, ResourceType as Acl};
use crate::security::Caller;

const TOPIC_DENIED: ResponseError = ResponseError::TopicAuthorizationFailed;
const GROUP_DENIED: ResponseError = ResponseError::GroupAuthorizationFailed;
const CLUSTER_DENIED: ResponseError = ResponseError::ClusterAuthorizationFailed;

/// Kafka's config resource types (DescribeConfigs / AlterConfigs).
const CONFIG_TOPIC: i8 = 2;

/// Moves the items `ok` refuses out of `items`, returning them.
fn take_denied<T>(items: &mut Vec<T>, ok: impl Fn(&T) -> bool) -> Vec<T> {
    let (kept, denied) = std::mem::take(items).into_iter().partition(|t| ok(t));
    *items = kept;
    denied
}

struct Check<'a> {
    b: &'a Broker,
    c: Caller<'a>,
}

impl Check<'_> {
    fn on(&self) -> bool {
        self.b.security.authorizer_enabled()
    }
    fn topic(&self, op: Operation, name: &str) -> bool {
        self.b.security.allows(self.c, op, Acl::Topic, name)
    }
    fn group(&self, op: Operation, name: &str) -> bool {
        self.b.security.allows(self.c, op, Acl::Group, name)
    }
    fn cluster(&self, op: Operation) -> bool {
        self.b.security.allows_cluster(self.c, op)
    }
}

pub fn list_offsets(
    b: &Broker,
    v: i16,
    mut r: ListOffsetsRequest,
    c: Caller<'_>,
) -> ListOffsetsResponse {
    let ck = Check { b, c };
    let denied = take_denied(&mut r.topics, |t| ck.topic(Operation::Describe, &t.name));
    let mut resp = super::list_offsets::handle(b, v, r);
    resp.topics.extend(denied.into_iter().map(|t| {
        ListOffsetsTopicResponse::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(TOPIC_DENIED.code())
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(-1)
                    })
                    .collect(),
            )
    }));
    resp
}

pub fn offset_for_leader_epoch(
    b: &Broker,
    v: i16,
    mut r: OffsetForLeaderEpochRequest,
    c: Caller<'_>,
) -> OffsetForLeaderEpochResponse {
    let ck = Check { b, c };
    // Kafka: ClusterAction covers every topic (followers); otherwise Describe on each.
    let denied = if ck.on() && !ck.cluster(Operation::ClusterAction) {
        take_denied(&mut r.topics, |t| ck.topic(Operation::Describe, &t.topic))
    } else {
        Vec::new()
    };
    let mut resp = super::offset_for_leader_epoch::handle(b, v, r);
    resp.topics.extend(denied.into_iter().map(|t| {
        OffsetForLeaderTopicResult::default()
            .with_topic(t.topic)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(TOPIC_DENIED.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1)
                    })
                    .collect(),
            )
    }));
    resp
}

pub async fn create_topics(
    b: &Broker,
    v: i16,
    mut r: CreateTopicsRequest,
    c: Caller<'_>,
) -> CreateTopicsResponse {
    let ck = Check { b, c };
    let denied = if ck.on() && !ck.cluster(Operation::Create) {
        take_denied(&mut r.topics, |t| ck.topic(Operation::Create, &t.name))
    } else {
        Vec::new()
    };
    let mut resp = super::topics::create_topics(b, v, r).await;
    resp.topics.extend(denied.into_iter().map(|t| {
        CreatableTopicResult::default()
            .with_name(t.name)
            .with_error_code(TOPIC_DENIED.code())
            .with_error_message(Some(s("Authorization failed.")))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_topic_config_error_code(TOPIC_DENIED.code())
    }));
    resp
}

pub async fn delete_topics(
    b: &Broker,
    v: i16,
    mut r: DeleteTopicsRequest,
    c: Caller<'_>,
) -> DeleteTopicsResponse {
    let ck = Check { b, c };
    let view = b.metadata.view();
    let denied_names = take_denied(&mut r.topic_names, |n| ck.topic(Operation::Delete, n));
    let denied_states = take_denied(&mut r.topics, |t| {
        let name = match &t.name {
            Some(n) => Some(n.0.to_string()),
            None => view.topic_by_id(&t.topic_id).map(|m| m.name.clone()),
        };
        // An unknown id is the handler's UNKNOWN_TOPIC_ID.
        name.is_none_or(|n| ck.topic(Operation::Delete, &n))
    });
    let mut resp = super::topics::delete_topics(b, v, r).await;
    let denied = |name: Option<TopicName>, id| {
        DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id)
            .with_error_code(TOPIC_DENIED.code())
            .with_error_message(Some(s("Authorization failed.")))
    };
    resp.responses.extend(
        denied_names
            .into_iter()
            .map(|n| denied(Some(n), uuid::Uuid::nil())),
    );
    resp.responses.extend(
        denied_states
            .into_iter()
            .map(|t| denied(t.name, t.topic_id)),
    );
    resp
}

pub async fn create_partitions(
    b: &Broker,
    v: i16,
    mut r: CreatePartitionsRequest,
    c: Caller<'_>,
) -> CreatePartitionsResponse {
    let ck = Check { b, c };
    let denied = take_denied(&mut r.topics, |t| ck.topic(Operation::Alter, &t.name));
    let mut resp = super::topics::create_partitions(b, v, r).await;
    resp.results.extend(denied.into_iter().map(|t| {
        CreatePartitionsTopicResult::default()
            .with_name(t.name)
            .with_error_code(TOPIC_DENIED.code())
            .with_error_message(Some(s("Authorization failed.")))
    }));
    resp
}

pub fn delete_records(
    b: &Broker,
    v: i16,
    mut r: DeleteRecordsRequest,
    c: Caller<'_>,
) -> DeleteRecordsResponse {
    let ck = Check { b, c };
    let denied = take_denied(&mut r.topics, |t| ck.topic(Operation::Delete, &t.name));
    let mut resp = super::delete_records::handle(b, v, r);
    resp.topics.extend(denied.into_iter().map(|t| {
        DeleteRecordsTopicResult::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(TOPIC_DENIED.code())
                    })
                    .collect(),
            )
    }));
    resp
}

/// DescribeConfigs needs DescribeConfigs, the alters AlterConfigs: on the topic for a topic,
/// on the cluster for a broker or broker logger.
fn config_allowed(ck: &Check<'_>, op: Operation, resource_type: i8, name: &str) -> bool {
    if resource_type == CONFIG_TOPIC {
        ck.topic(op, name)
    } else {
        ck.cluster(op)
    }
}

fn config_denied_code(resource_type: i8) -> i16 {
    if resource_type == CONFIG_TOPIC {
        TOPIC_DENIED.code()
    } else {
        CLUSTER_DENIED.code()
    }
}

pub fn describe_configs(
    b: &Broker,
    v: i16,
    mut r: DescribeConfigsRequest,
    c: Caller<'_>,
) -> DescribeConfigsResponse {
    let ck = Check { b, c };
    let denied = take_denied(&mut r.resources, |x| {
        config_allowed(
            &ck,
            Operation::DescribeConfigs,
            x.resource_type,
            &x.resource_name,
        )
    });
    let mut resp = super::configs::describe(b, v, r);
    resp.results.extend(denied.into_iter().map(|x| {
        DescribeConfigsResult::default()
            .with_error_code(config_denied_code(x.resource_type))
            .with_error_message(Some(s("Authorization failed.")))
            .with_resource_type(x.resource_type)
            .with_resource_name(x.resource_name)
    }));
    resp
}

pub async fn alter_configs(
    b: &Broker,
    v: i16,
    mut r: AlterConfigsRequest,
    c: Caller<'_>,
) -> AlterConfigsResponse {
    let ck = Check { b, c };
    let denied = take_denied(&mut r.resources, |x| {
        config_allowed(
            &ck,
            Operation::AlterConfigs,
            x.resource_type,
            &x.resource_name,
        )
    });
    let mut resp = super::configs::alter(b, v, r).await;
    resp.responses.extend(denied.into_iter().map(|x| {
        alter_configs_response::AlterConfigsResourceResponse::default()
            .with_error_code(config_denied_code(x.resource_type))
            .with_error_message(Some(s("Authorization failed.")))
            .with_resource_type(x.resource_type)
            .with_resource_name(x.resource_name)
    }));
    resp
}

pub async fn incremental_alter_configs(
    b: &Broker,
    v: i16,
    mut r: IncrementalAlterConfigsRequest,
    c: Caller<'_>,
) -> IncrementalAlterConfigsResponse {
    let ck = Check { b, c };
    let denied = take_denied(&mut r.resources, |x| {
        config_allowed(
            &ck,
            Operation::AlterConfigs,
            x.resource_type,
            &x.resource_name,
        )
    });
    let mut resp = super::configs::incremental_alter(b, v, r).await;
    resp.responses.extend(denied.into_iter().map(|x| {
        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_error_code(config_denied_code(x.resource_type))
            .with_error_message(Some(s("Authorization failed.")))
            .with_resource_type(x.resource_type)
            .with_resource_name(x.resource_name)
    }));
    resp
}

pub fn describe_log_dirs(
    b: &Broker,
    v: i16,
    r: DescribeLogDirsRequest,
    c: Caller<'_>,
) -> DescribeLogDirsResponse {
    let ck = Check { b, c };
    if !ck.cluster(Operation::Describe) {
        // Kafka answers an unauthorized caller with no log dirs (and the error from v3).
        return DescribeLogDirsResponse::default().with_error_code(if v >= 3 {
            CLUSTER_DENIED.code()
        } else {
            0
        });
    }
    super::log_dirs::describe(b, v, r)
}

pub async fn alter_reassignments(
    b: &Broker,
    v: i16,
    r: AlterPartitionReassignmentsRequest,
    c: Caller<'_>,
) -> AlterPartitionReassignmentsResponse {
    if !(Check { b, c }).cluster(Operation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(CLUSTER_DENIED.code())
            .with_error_message(Some(s("Cluster authorization failed.")));
    }
    super::reassignments::alter(b, v, r).await
}

pub fn list_reassignments(
    b: &Broker,
    v: i16,
    r: ListPartitionReassignmentsRequest,
    c: Caller<'_>,
) -> ListPartitionReassignmentsResponse {
    if !(Check { b, c }).cluster(Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(CLUSTER_DENIED.code())
            .with_error_message(Some(s("Cluster authorization failed.")));
    }
    super::reassignments::list(b, v, r)
}

pub async fn init_producer_id(
    b: &Broker,
    v: i16,
    r: InitProducerIdRequest,
    c: Caller<'_>,
) -> InitProducerIdResponse {
    let ck = Check { b, c };
    if ck.on() {
        let refused = match &r.transactional_id {
            Some(id)
                if !b
                    .security
                    .allows(c, Operation::Write, Acl::TransactionalId, &id.0) =>
            {
                Some(ResponseError::TransactionalIdAuthorizationFailed)
            }
            Some(_) => None,
            // KIP-679: IdempotentWrite on the cluster, or Write on some topic.
            None if !ck.cluster(Operation::IdempotentWrite)
                && !b.security.allows_any(c, Operation::Write, Acl::Topic) =>
            {
                Some(CLUSTER_DENIED)
            }
            None => None,
        };
        if let Some(e) = refused {
            return InitProducerIdResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
    }
    super::init_producer_id::handle(b, v, r).await
}

pub async fn find_coordinator(
    b: &Broker,
    v: i16,
    r: FindCoordinatorRequest,
    listener: &str,
    c: Caller<'_>,
) -> FindCoordinatorResponse {
    let key_type = r.key_type;
    let allowed = |key: &str| match key_type {
        1 => b
            .security
            .allows(c, Operation::Describe, Acl::TransactionalId, key),
        _ => b.security.allows(c, Operation::Describe, Acl::Group, key),
    };
    let code = if key_type == 1 {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else {
        GROUP_DENIED.code()
    };
    if v < 4 && !allowed(&r.key) {
        return FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message(Some(s("Authorization failed.")))
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    let mut resp = super::find_coordinator::handle(b, v, r, listener).await;
    for co in &mut resp.coordinators {
        if !allowed(&co.key) {
            co.error_code = code;
            co.error_message = Some(s("Authorization failed."));
            co.node_id = BrokerId(-1);
            co.host = s("");
            co.port = -1;
        }
    }
    resp
}

pub async fn join_group(
    b: &Broker,
    v: i16,
    r: JoinGroupRequest,
    client_id: &str,
    client_host: &str,
    c: Caller<'_>,
) -> JoinGroupResponse {
    if !(Check { b, c }).group(Operation::Read, &r.group_id) {
        return JoinGroupResponse::default()
            .with_error_code(GROUP_DENIED.code())
            .with_generation_id(-1)
            .with_member_id(r.member_id)
            .with_protocol_name(if v >= 7 { None } else { Some(s("")) });
    }
    groups::join(b, v, r, client_id, client_host).await
}

pub async fn sync_group(
    b: &Broker,
    v: i16,
    r: SyncGroupRequest,
    c: Caller<'_>,
) -> SyncGroupResponse {
    if !(Check { b, c }).group(Operation::Read, &r.group_id) {
        return SyncGroupResponse::default().with_error_code(GROUP_DENIED.code());
    }
    groups::sync(b, v, r).await
}

pub async fn heartbeat(
    b: &Broker,
    v: i16,
    r: HeartbeatRequest,
    c: Caller<'_>,
) -> HeartbeatResponse {
    if !(Check { b, c }).group(Operation::Read, &r.group_id) {
        return HeartbeatResponse::default().with_error_code(GROUP_DENIED.code());
    }
    groups::heartbeat(b, v, r).await
}

pub async fn leave_group(
    b: &Broker,
    v: i16,
    r: LeaveGroupRequest,
    c: Caller<'_>,
) -> LeaveGroupResponse {
    if !(Check { b, c }).group(Operation::Read, &r.group_id) {
        return LeaveGroupResponse::default().with_error_code(GROUP_DENIED.code());
    }
    groups::leave(b, v, r).await
}

pub async fn offset_commit(
    b: &Broker,
    v: i16,
    mut r: OffsetCommitRequest,
    c: Caller<'_>,
) -> OffsetCommitResponse {
    let ck = Check { b, c };
    let answer = |topics: Vec<offset_commit_request::OffsetCommitRequestTopic>, e: i16| {
        topics.into_iter().map(move |t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(e)
                        })
                        .collect(),
                )
        })
    };
    if !ck.group(Operation::Read, &r.group_id) {
        return OffsetCommitResponse::default()
            .with_topics(answer(r.topics, GROUP_DENIED.code()).collect());
    }
    let denied = take_denied(&mut r.topics, |t| ck.topic(Operation::Read, &t.name));
    let mut resp = groups::offset_commit(b, v, r).await;
    resp.topics.extend(answer(denied, TOPIC_DENIED.code()));
    resp
}

/// OffsetFetch needs Describe on the group; offsets of topics the caller may not Describe are
/// left out of an "all topics" answer and refused when asked for by name.
pub async fn offset_fetch(
    b: &Broker,
    v: i16,
    r: OffsetFetchRequest,
    c: Caller<'_>,
) -> OffsetFetchResponse {
    let ck = Check { b, c };
    if !ck.on() {
        return groups::offset_fetch(b, v, r).await;
    }
    if v < 8 {
        if !ck.group(Operation::Describe, &r.group_id) {
            return OffsetFetchResponse::default().with_error_code(GROUP_DENIED.code());
        }
        let named = r.topics.is_some();
        let mut resp = groups::offset_fetch(b, v, r).await;
        resp.topics.retain_mut(|t| {
            if ck.topic(Operation::Describe, &t.name) {
                return true;
            }
            for p in &mut t.partitions {
                p.error_code = TOPIC_DENIED.code();
                p.committed_offset = -1;
                p.metadata = None;
            }
            named
        });
        return resp;
    }
    let named: std::collections::HashMap<String, bool> = r
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.topics.is_some()))
        .collect();
    let mut resp = groups::offset_fetch(b, v, r).await;
    for g in &mut resp.groups {
        if !ck.group(Operation::Describe, &g.group_id) {
            g.error_code = GROUP_DENIED.code();
            g.topics.clear();
            continue;
        }
        let named = named.get(g.group_id.as_str()).copied().unwrap_or(false);
        g.topics.retain_mut(|t| {
            if ck.topic(Operation::Describe, &t.name) {
                return true;
            }
            for p in &mut t.partitions {
                p.error_code = TOPIC_DENIED.code();
                p.committed_offset = -1;
                p.metadata = None;
            }
            named
        });
    }
    resp
}

pub async fn describe_groups(
    b: &Broker,
    v: i16,
    mut r: DescribeGroupsRequest,
    c: Caller<'_>,
) -> DescribeGroupsResponse {
    let ck = Check { b, c };
    let denied = take_denied(&mut r.groups, |g| ck.group(Operation::Describe, g));
    let mut resp = groups::describe_groups(b, v, r).await;
    // KIP-430: what this caller may do with each group.
    for g in &mut resp.groups {
        if g.authorized_operations != AUTHORIZED_OPS_OMITTED {
            g.authorized_operations =
                authorized_operations(&b.security, c, OpsResource::Group, &g.group_id);
        }
    }
    resp.groups.extend(denied.into_iter().map(|g| {
        DescribedGroup::default()
            .with_group_id(g)
            .with_error_code(GROUP_DENIED.code())
            .with_authorized_operations(AUTHORIZED_OPS_OMITTED)
    }));
    resp
}

pub async fn list_groups(
    b: &Broker,
    v: i16,
    r: ListGroupsRequest,
    c: Caller<'_>,
) -> ListGroupsResponse {
    let ck = Check { b, c };
    let mut resp = groups::list_groups(b, v, r).await;
    if ck.on() && !ck.cluster(Operation::Describe) {
        resp.groups
            .retain(|g| ck.group(Operation::Describe, &g.group_id));
    }
    resp
}

pub async fn delete_groups(
    b: &Broker,
    v: i16,
    mut r: DeleteGroupsRequest,
    c: Caller<'_>,
) -> DeleteGroupsResponse {
    let ck = Check { b, c };
    let denied = take_denied(&mut r.groups_names, |g| ck.group(Operation::Delete, g));
    let mut resp = groups::delete_groups(b, v, r).await;
    resp.results.extend(denied.into_iter().map(|g| {
        DeletableGroupResult::default()
            .with_group_id(g)
            .with_error_code(GROUP_DENIED.code())
    }));
    resp
}

pub async fn offset_delete(
    b: &Broker,
    v: i16,
    mut r: OffsetDeleteRequest,
    c: Caller<'_>,
) -> OffsetDeleteResponse {
    let ck = Check { b, c };
    if !ck.group(Operation::Delete, &r.group_id) {
        return OffsetDeleteResponse::default().with_error_code(GROUP_DENIED.code());
    }
    let denied = take_denied(&mut r.topics, |t| ck.topic(Operation::Read, &t.name));
    let mut resp = groups::offset_delete(b, v, r).await;
    resp.topics.extend(denied.into_iter().map(|t| {
        OffsetDeleteResponseTopic::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(TOPIC_DENIED.code())
                    })
                    .collect(),
            )
    }));
    resp
}

pub fn describe_cluster(
    b: &Broker,
    v: i16,
    r: DescribeClusterRequest,
    listener: &str,
    c: Caller<'_>,
) -> DescribeClusterResponse {
    let mut resp = super::cluster::describe_cluster(b, v, r, listener);
    if resp.cluster_authorized_operations != AUTHORIZED_OPS_OMITTED {
        resp.cluster_authorized_operations = authorized_operations(
            &b.security,
            c,
            OpsResource::Cluster,
            super::cluster::CLUSTER_RESOURCE,
        );
    }
    resp
}

pub fn describe_scram(
    b: &Broker,
    r: DescribeUserScramCredentialsRequest,
    c: Caller<'_>,
) -> DescribeUserScramCredentialsResponse {
    if !(Check { b, c }).cluster(Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(CLUSTER_DENIED.code())
            .with_error_message(Some(s("Cluster authorization failed.")));
    }
    crate::security::scram_admin::describe(&b.security.credentials(), r)
}

pub async fn alter_scram(
    b: &Broker,
    r: AlterUserScramCredentialsRequest,
    c: Caller<'_>,
) -> AlterUserScramCredentialsResponse {
    if !(Check { b, c }).cluster(Operation::Alter) {
        let mut users: Vec<String> = r
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(r.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        users.sort();
        users.dedup();
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .into_iter()
                .map(|u| {
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default(
                    )
                    .with_user(s(u))
                    .with_error_code(CLUSTER_DENIED.code())
                    .with_error_message(Some(s("Cluster authorization failed.")))
                })
                .collect(),
        );
    }
    crate::security::scram_admin::alter(&b.security.credentials(), r).await
}
