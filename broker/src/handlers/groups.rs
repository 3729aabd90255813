//! The group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. Decisions live in `group::state`;
//! these functions translate between the wire and the coordinator.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

use super::{s, topic_name, AUTHORIZED_OPS_OMITTED};
use crate::authorization::{supported_operations, to_bitfield, ResourceType};
use crate::broker::Broker;
use crate::group::state::{CommittedOffset, GroupState, JoinParams};

fn opt_str(v: &Option<kafka_protocol::protocol::StrBytes>) -> Option<String> {
    v.as_ref().map(|x| x.to_string())
}

pub async fn join(
    b: &Broker,
    version: i16,
    req: JoinGroupRequest,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    let group = req.group_id.0.to_string();
    let rebalance_timeout = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let p = JoinParams {
        member_id: req.member_id.to_string(),
        group_instance_id: opt_str(&req.group_instance_id),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: req.session_timeout_ms as i64,
        rebalance_timeout_ms: rebalance_timeout as i64,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let r = b.groups.join(b, &group, p).await;
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_leader(s(r.leader))
        .with_member_id(s(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, inst, md)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(if version >= 5 { inst.map(s) } else { None })
                        .with_metadata(md)
                })
                .collect(),
        );
    resp = resp.with_protocol_name(Some(s(r.protocol_name.clone().unwrap_or_default())));
    if version >= 7 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(s))
            .with_protocol_name(r.protocol_name.map(s));
    }
    resp
}

pub async fn sync(b: &Broker, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let group = req.group_id.0.to_string();
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let r = b
        .groups
        .sync(
            b,
            &group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
            req.protocol_type.as_deref(),
            req.protocol_name.as_deref(),
            assignments,
        )
        .await;
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_assignment(r.assignment);
    if version >= 5 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(s))
            .with_protocol_name(r.protocol_name.map(s));
    }
    resp
}

pub async fn heartbeat(b: &Broker, _version: i16, req: HeartbeatRequest) -> HeartbeatResponse {
    let e = b
        .groups
        .heartbeat(
            b,
            &req.group_id.0,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        )
        .await;
    HeartbeatResponse::default().with_error_code(e.code())
}

pub async fn leave(b: &Broker, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = req.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt_str(&m.group_instance_id)))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    match b.groups.leave(b, &group, members.clone()).await {
        Err(e) if version < 3 => LeaveGroupResponse::default().with_error_code(e.code()),
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(results) if version < 3 => {
            LeaveGroupResponse::default().with_error_code(results[0].code())
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((id, inst), e)| {
                    MemberResponse::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(inst.map(s))
                        .with_error_code(e.code())
                })
                .collect(),
        ),
    }
}

pub async fn offset_commit(
    b: &Broker,
    version: i16,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let now = crate::now_ms();
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            offsets.push((
                (t.name.0.to_string(), p.partition_index),
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    commit_timestamp: now,
                },
            ));
        }
    }
    let generation = if version >= 1 {
        req.generation_id_or_member_epoch
    } else {
        -1
    };
    let result = b
        .groups
        .commit(
            b,
            &group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            generation,
            offsets,
        )
        .await;
    let code_for = |topic: &str, p: i32| -> i16 {
        match &result {
            Err(e) => e.code(),
            Ok(rs) => rs
                .iter()
                .find(|((t, q), _)| t == topic && *q == p)
                .map(|(_, e)| e.code())
                .unwrap_or(0),
        }
    };
    OffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code_for(&t.name.0, p.partition_index))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// (offset, leader epoch, metadata) as OffsetFetch reports a partition; -1 when nothing is committed.
fn offset_entry(off: Option<CommittedOffset>) -> (i64, i32, String) {
    off.map(|c| (c.offset, c.leader_epoch, c.metadata))
        .unwrap_or((-1, -1, String::new()))
}

/// Committed offsets per topic: (topic, [(partition, offset if committed)]).
type TopicOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// Offsets for one group: `None` topics means every committed partition. The error is the
/// group's (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS): no offsets then, but the listed
/// partitions are still reported (with -1) so old versions can carry the error per partition.
async fn group_offsets(
    b: &Broker,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> (TopicOffsets, Option<ResponseError>) {
    let (all, err) = match b.groups.fetch_offsets(b, group).await {
        Ok(all) => (all, None),
        Err(e) => (Default::default(), Some(e)),
    };
    let offsets = match topics {
        Some(list) => list
            .into_iter()
            .map(|(t, parts)| {
                let entries = parts
                    .into_iter()
                    .map(|p| (p, all.get(&(t.clone(), p)).cloned()))
                    .collect();
                (t, entries)
            })
            .collect(),
        None => {
            let mut out: TopicOffsets = Vec::new();
            for ((t, p), off) in all {
                match out.last_mut() {
                    Some((name, parts)) if *name == t => parts.push((p, Some(off))),
                    _ => out.push((t, vec![(p, Some(off))])),
                }
            }
            out
        }
    };
    (offsets, err)
}

pub async fn offset_fetch(
    b: &Broker,
    version: i16,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::new();
        for g in req.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let (data, err) = group_offsets(b, &g.group_id.0, topics).await;
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(err.map_or(0, |e| e.code()))
                    .with_topics(
                        data.into_iter()
                            .map(|(t, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&t))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, off)| {
                                                let (o, e, m) = offset_entry(off);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(s(m)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let (data, err) = group_offsets(b, &req.group_id.0, topics).await;
    let code = err.map_or(0, |e| e.code());
    // The top-level error exists from v2; before that only per partition.
    let (top, per_partition) = if version >= 2 { (code, 0) } else { (0, code) };
    OffsetFetchResponse::default()
        .with_error_code(top)
        .with_topics(
            data.into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&t))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, off)| {
                                    let (o, e, m) = offset_entry(off);
                                    let mut r = OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_metadata(Some(s(m)))
                                        .with_error_code(per_partition);
                                    if version >= 5 {
                                        r = r.with_committed_leader_epoch(e);
                                    }
                                    r
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

pub async fn list_groups(b: &Broker, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|x| x.to_string()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|x| x.to_lowercase()).collect();
    let (groups, err) = b.groups.list().await;
    let groups = groups
        .into_iter()
        .filter(|(_, _, st)| states.is_empty() || states.iter().any(|x| x.eq_ignore_ascii_case(st)))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|(id, pt, st)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(s(id)))
                .with_protocol_type(s(pt));
            if version >= 4 {
                g = g.with_group_state(s(st));
            }
            if version >= 5 {
                g = g.with_group_type(s("classic"));
            }
            g
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(err.map_or(0, |e| e.code()))
        .with_groups(groups)
}

pub async fn describe_groups(
    b: &Broker,
    version: i16,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut out = Vec::new();
    for id in req.groups {
        let mut d = DescribedGroup::default().with_group_id(id.clone());
        if version >= 3 {
            d = d.with_authorized_operations(AUTHORIZED_OPS_OMITTED);
        }
        match b.groups.describe(b, &id.0).await {
            Err(e) => {
                d = d
                    .with_group_state(s(GroupState::Dead.name()))
                    .with_error_code(e.code());
            }
            Ok(None) => {
                d = d.with_group_state(s(GroupState::Dead.name()));
                if version >= 6 {
                    d = d
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(s(format!(
                            "group '{}' not found",
                            id.0.as_str()
                        ))));
                }
            }
            Ok(Some(g)) => {
                let protocol = g.protocol.clone().unwrap_or_default();
                let show_members = matches!(
                    g.state,
                    GroupState::Stable
                        | GroupState::CompletingRebalance
                        | GroupState::PreparingRebalance
                );
                d = d
                    .with_group_state(s(g.state.name()))
                    .with_protocol_type(s(g.protocol_type.clone().unwrap_or_default()))
                    .with_protocol_data(s(protocol.clone()))
                    .with_members(
                        g.members
                            .iter()
                            .filter(|_| show_members)
                            .map(|m| {
                                let md = m
                                    .protocols
                                    .iter()
                                    .find(|(n, _)| *n == protocol)
                                    .map(|(_, x)| x.clone())
                                    .unwrap_or_default();
                                DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id.clone()))
                                    .with_group_instance_id(if version >= 4 {
                                        m.group_instance_id.clone().map(s)
                                    } else {
                                        None
                                    })
                                    .with_client_id(s(m.client_id.clone()))
                                    .with_client_host(s(m.client_host.clone()))
                                    .with_member_metadata(md)
                                    .with_member_assignment(if g.state == GroupState::Stable {
                                        m.assignment.clone()
                                    } else {
                                        Bytes::new()
                                    })
                            })
                            .collect(),
                    );
            }
        }
        // KIP-430: asked for (v3+), a group described without error (a Dead one included, as
        // Kafka does) carries what the caller may do with it.
        if version >= 3 && req.include_authorized_operations && d.error_code == 0 {
            // The caller's operations are filled in by `authz::describe_groups`.
            d.authorized_operations = to_bitfield(supported_operations(ResourceType::Group));
        }
        out.push(d);
    }
    DescribeGroupsResponse::default().with_groups(out)
}

pub async fn delete_groups(
    b: &Broker,
    _version: i16,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in req.groups_names {
        let e = b.groups.delete_group(b, &id.0).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(e.code()),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(
    b: &Broker,
    _version: i16,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let parts: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    match b.groups.delete_offsets(b, &req.group_id.0, parts).await {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(results) => OffsetDeleteResponse::default().with_topics(
            req.topics
                .iter()
                .map(|t| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let code = results
                                        .iter()
                                        .find(|((n, q), _)| {
                                            *n == t.name.0.as_str() && *q == p.partition_index
                                        })
                                        .map(|(_, e)| e.code())
                                        .unwrap_or(0);
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}
