//! The group coordinator's I/O layer: one lock over all groups, deferred JoinGroup/SyncGroup
//! answers delivered through oneshot channels, a ticker for session and rebalance timeouts, and
//! durable state in `__consumer_offsets` (written before a commit or assignment is acknowledged,
//! replayed on start).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{oneshot, watch, Mutex};

use super::records::{GroupValue, Key, MemberValue, OffsetValue};
use super::state::{
    CommittedOffset, Effect, Group, GroupConfig, GroupState, JoinParams, JoinResult, Outcome,
    SyncResult,
};
use super::{partition_for, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::metadata::NewTopic;

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Group>,
    joins: HashMap<(String, String), oneshot::Sender<JoinResult>>,
    syncs: HashMap<(String, String), oneshot::Sender<SyncResult>>,
}

pub struct GroupCoordinator {
    pub cfg: GroupConfig,
    pub offsets_partitions: i32,
    /// offset.metadata.max.bytes: longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// Largest total assignment a leader may send (it must fit one `__consumer_offsets` record).
    pub max_assignment_bytes: usize,
    inner: Mutex<Inner>,
}

/// One partition's commit outcome.
pub type CommitResult = Vec<((String, i32), ResponseError)>;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{0}")]
    Failed(String),
}

impl GroupCoordinator {
    pub fn new(
        cfg: GroupConfig,
        offsets_partitions: i32,
        offset_metadata_max_bytes: usize,
        max_assignment_bytes: usize,
    ) -> Self {
        Self {
            cfg,
            offsets_partitions,
            offset_metadata_max_bytes,
            max_assignment_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Creates `__consumer_offsets` on first use, as Kafka does.
    pub async fn ensure_offsets_topic(&self, b: &Broker) -> Result<(), ResponseError> {
        if b.metadata.view().topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let assignment = (0..self.offsets_partitions)
            .map(|_| vec![b.me.id])
            .collect();
        // As Kafka: compacted (the latest commit per group/partition key survives, no time or
        // size retention), 100 MiB segments.
        let configs: BTreeMap<String, String> = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "104857600"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match b
            .metadata
            .create_topic(NewTopic {
                name: OFFSETS_TOPIC.to_string(),
                assignment,
                configs,
            })
            .await
        {
            Ok(_) | Err(crate::metadata::MetadataError::TopicExists(_)) => {}
            Err(e) => {
                tracing::error!(error = %e, "creating __consumer_offsets failed");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
        b.sync_partitions().map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "opening __consumer_offsets failed");
            ResponseError::CoordinatorNotAvailable
        })?;
        tracing::info!(
            partitions = self.offsets_partitions,
            "created __consumer_offsets"
        );
        Ok(())
    }

    fn append(
        &self,
        b: &Broker,
        group: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), PersistError> {
        let partition = partition_for(group, self.offsets_partitions);
        let part = b.replicas.get(OFFSETS_TOPIC, partition).ok_or_else(|| {
            PersistError::Failed(format!("{OFFSETS_TOPIC}-{partition} is not hosted here"))
        })?;
        let now = crate::now_ms();
        let recs: Vec<Record> = records
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now,
                key: Some(key),
                value,
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| PersistError::Failed(format!("encoding offsets batch: {e}")))?;
        let headers = rivulet_storage::validate_batches(&buf)
            .map_err(|e| PersistError::Failed(format!("offsets batch invalid: {e}")))?;
        part.append(&mut buf, &headers, 0, now)
            .map_err(|e| PersistError::Failed(e.to_string()))?;
        Ok(())
    }

    fn group_record(g: &Group) -> (Bytes, Option<Bytes>) {
        let key = Key::Group {
            group: g.id.clone(),
        }
        .encode();
        if g.state == GroupState::Dead {
            return (key, None);
        }
        let protocol = g.protocol.clone().unwrap_or_default();
        let value = GroupValue {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation,
            protocol: g.protocol.clone(),
            leader: g.leader.clone(),
            current_state_timestamp: g.state_timestamp_ms,
            members: g
                .members
                .iter()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout_ms as i32,
                    session_timeout: m.session_timeout_ms as i32,
                    subscription: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        (key, Some(value.encode()))
    }

    /// Persists what the effects require, then delivers deferred answers. Returns false when
    /// the group could not be persisted: as in Kafka, the SyncGroup answers that depended on it
    /// become UNKNOWN_SERVER_ERROR and the group rebalances.
    fn apply_effects(
        &self,
        b: &Broker,
        inner: &mut Inner,
        group: &str,
        effects: Vec<Effect>,
    ) -> bool {
        let mut persisted = false;
        let mut failed = false;
        for e in effects {
            match e {
                Effect::Persist if !persisted => {
                    persisted = true;
                    if let Some(g) = inner.groups.get(group) {
                        let rec = Self::group_record(g);
                        if let Err(err) = self.append(b, group, vec![rec]) {
                            tracing::error!(%group, error = %err, "persisting group metadata failed");
                            failed = true;
                        }
                    }
                }
                Effect::Sync(member, _) if failed => {
                    if let Some(tx) = inner.syncs.remove(&(group.to_string(), member)) {
                        let _ = tx.send(SyncResult::error(ResponseError::UnknownServerError));
                    }
                }
                Effect::Persist => {}
                Effect::Join(member, r) => {
                    if let Some(tx) = inner.joins.remove(&(group.to_string(), member)) {
                        let _ = tx.send(r);
                    }
                }
                Effect::Sync(member, r) => {
                    if let Some(tx) = inner.syncs.remove(&(group.to_string(), member)) {
                        let _ = tx.send(r);
                    }
                }
            }
        }
        if failed {
            let mut more = Vec::new();
            if let Some(g) = inner.groups.get_mut(group) {
                g.force_rebalance(crate::now_ms(), &mut more);
            }
            for e in more {
                if let Effect::Join(member, r) = e {
                    if let Some(tx) = inner.joins.remove(&(group.to_string(), member)) {
                        let _ = tx.send(r);
                    }
                }
            }
        }
        !failed
    }

    pub async fn join(&self, b: &Broker, group: &str, p: JoinParams) -> JoinResult {
        if group.is_empty() {
            return JoinResult::error(ResponseError::InvalidGroupId, &p.member_id);
        }
        if let Err(e) = self.ensure_offsets_topic(b).await {
            return JoinResult::error(e, &p.member_id);
        }
        let wait =
            Duration::from_millis(p.rebalance_timeout_ms.max(p.session_timeout_ms).max(0) as u64)
                + Duration::from_secs(5);
        let member_hint = p.member_id.clone();
        let rx = {
            let mut inner = self.inner.lock().await;
            let now = crate::now_ms();
            let g = inner
                .groups
                .entry(group.to_string())
                .or_insert_with(|| Group::new(group, now));
            let mut effects = Vec::new();
            let outcome = g.join(p, &self.cfg, now, &mut effects);
            let rx = match outcome {
                Outcome::Now(r) => {
                    self.apply_effects(b, &mut inner, group, effects);
                    return r;
                }
                Outcome::Deferred(member) => {
                    let (tx, rx) = oneshot::channel();
                    inner.joins.insert((group.to_string(), member), tx);
                    rx
                }
            };
            self.apply_effects(b, &mut inner, group, effects);
            rx
        };
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r,
            _ => JoinResult::error(ResponseError::RebalanceInProgress, &member_hint),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        b: &Broker,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        if group.is_empty() {
            return SyncResult::error(ResponseError::InvalidGroupId);
        }
        let total: usize = assignments.iter().map(|(_, a)| a.len()).sum();
        if total > self.max_assignment_bytes {
            // Kafka answers a group too large to store with UNKNOWN_SERVER_ERROR as well.
            tracing::warn!(%group, bytes = total, max = self.max_assignment_bytes, "assignment too large to store");
            return SyncResult::error(ResponseError::UnknownServerError);
        }
        let rx = {
            let mut inner = self.inner.lock().await;
            let now = crate::now_ms();
            let Some(g) = inner.groups.get_mut(group) else {
                return SyncResult::error(ResponseError::UnknownMemberId);
            };
            let mut effects = Vec::new();
            let outcome = g.sync(
                member_id,
                instance,
                generation,
                protocol_type,
                protocol_name,
                assignments,
                now,
                &mut effects,
            );
            let rx = match outcome {
                Outcome::Now(r) => {
                    if !self.apply_effects(b, &mut inner, group, effects) && r.error == 0 {
                        return SyncResult::error(ResponseError::UnknownServerError);
                    }
                    return r;
                }
                Outcome::Deferred(member) => {
                    let (tx, rx) = oneshot::channel();
                    inner.syncs.insert((group.to_string(), member), tx);
                    rx
                }
            };
            self.apply_effects(b, &mut inner, group, effects);
            rx
        };
        match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(Ok(r)) => r,
            _ => SyncResult::error(ResponseError::RebalanceInProgress),
        }
    }

    pub async fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> ResponseError {
        if group.is_empty() {
            return ResponseError::InvalidGroupId;
        }
        let mut inner = self.inner.lock().await;
        match inner.groups.get_mut(group) {
            None => ResponseError::UnknownMemberId,
            Some(g) => g.heartbeat(member_id, instance, generation, crate::now_ms()),
        }
    }

    /// Removes members; per-member results in request order.
    pub async fn leave(
        &self,
        b: &Broker,
        group: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<ResponseError>, ResponseError> {
        if group.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let mut inner = self.inner.lock().await;
        let now = crate::now_ms();
        let Some(g) = inner.groups.get_mut(group) else {
            // Kafka: the request succeeds and each member is reported unknown.
            return Ok(vec![ResponseError::UnknownMemberId; members.len()]);
        };
        let mut effects = Vec::new();
        let results = members
            .iter()
            .map(
                |(id, inst)| match g.leave(id, inst.as_deref(), now, &mut effects) {
                    Ok(()) => {
                        tracing::info!(%group, member = %id, "member left");
                        super::NO_ERROR
                    }
                    Err(e) => e,
                },
            )
            .collect();
        self.apply_effects(b, &mut inner, group, effects);
        Ok(results)
    }

    /// Validates and durably stores offsets; answers per partition.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        b: &Broker,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<CommitResult, ResponseError> {
        // Kafka accepts an empty group id for OffsetCommit/OffsetFetch (only the membership
        // APIs refuse it), so this does too.
        self.ensure_offsets_topic(b).await?;
        let mut inner = self.inner.lock().await;
        let now = crate::now_ms();
        let g = inner
            .groups
            .entry(group.to_string())
            .or_insert_with(|| Group::new(group, now));
        g.check_commit(member_id, instance, generation, now)?;
        let view = b.metadata.view();
        let mut results = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        let mut records = Vec::new();
        for ((topic, partition), off) in offsets {
            let known = view
                .topic(&topic)
                .is_some_and(|t| t.partitions.iter().any(|p| p.index == partition));
            let err = if !known {
                ResponseError::UnknownTopicOrPartition
            } else if off.metadata.len() > self.offset_metadata_max_bytes {
                ResponseError::OffsetMetadataTooLarge
            } else {
                records.push((
                    Key::Offset {
                        group: group.to_string(),
                        topic: topic.clone(),
                        partition,
                    }
                    .encode(),
                    Some(
                        OffsetValue {
                            offset: off.offset,
                            leader_epoch: off.leader_epoch,
                            metadata: off.metadata.clone(),
                            commit_timestamp: off.commit_timestamp,
                        }
                        .encode(),
                    ),
                ));
                accepted.push(((topic.clone(), partition), off));
                super::NO_ERROR
            };
            results.push(((topic, partition), err));
        }
        if !records.is_empty() {
            if let Err(e) = self.append(b, group, records) {
                tracing::error!(%group, error = %e, "persisting offsets failed");
                return Ok(results
                    .into_iter()
                    .map(|(k, e)| {
                        (
                            k,
                            if e.code() == 0 {
                                ResponseError::CoordinatorNotAvailable
                            } else {
                                e
                            },
                        )
                    })
                    .collect());
            }
        }
        if let Some(g) = inner.groups.get_mut(group) {
            for (k, off) in accepted {
                g.offsets.insert(k, off);
            }
        }
        Ok(results)
    }

    /// Committed offsets of a group (all, or the listed partitions).
    pub async fn fetch_offsets(&self, group: &str) -> BTreeMap<(String, i32), CommittedOffset> {
        let inner = self.inner.lock().await;
        inner
            .groups
            .get(group)
            .map(|g| g.offsets.clone())
            .unwrap_or_default()
    }

    /// (group, topic, partition, committed offset) of every committed offset, for the lag metric.
    pub async fn all_committed(&self) -> Vec<(String, String, i32, i64)> {
        let inner = self.inner.lock().await;
        inner
            .groups
            .values()
            .flat_map(|g| {
                g.offsets
                    .iter()
                    .map(move |((t, p), o)| (g.id.clone(), t.clone(), *p, o.offset))
            })
            .collect()
    }

    /// (group id, protocol type, state) of every group.
    pub async fn list(&self) -> Vec<(String, String, &'static str)> {
        let inner = self.inner.lock().await;
        let mut out: Vec<_> = inner
            .groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        out.sort();
        out
    }

    pub async fn describe(&self, group: &str) -> Option<Group> {
        self.inner.lock().await.groups.get(group).cloned()
    }

    /// DeleteGroups for one group.
    pub async fn delete_group(&self, b: &Broker, group: &str) -> ResponseError {
        let mut inner = self.inner.lock().await;
        let Some(g) = inner.groups.get_mut(group) else {
            return ResponseError::GroupIdNotFound;
        };
        if !g.is_empty() {
            return ResponseError::NonEmptyGroup;
        }
        let mut records: Vec<(Bytes, Option<Bytes>)> = g
            .offsets
            .keys()
            .map(|(t, p)| {
                (
                    Key::Offset {
                        group: group.to_string(),
                        topic: t.clone(),
                        partition: *p,
                    }
                    .encode(),
                    None,
                )
            })
            .collect();
        records.push((
            Key::Group {
                group: group.to_string(),
            }
            .encode(),
            None,
        ));
        if let Err(e) = self.append(b, group, records) {
            tracing::error!(%group, error = %e, "writing group tombstones failed");
            return ResponseError::CoordinatorNotAvailable;
        }
        inner.groups.remove(group);
        tracing::info!(%group, "deleted group");
        super::NO_ERROR
    }

    /// OffsetDelete: refuses partitions of topics the group is subscribed to while it has members.
    pub async fn delete_offsets(
        &self,
        b: &Broker,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<((String, i32), ResponseError)>, ResponseError> {
        let mut inner = self.inner.lock().await;
        let Some(g) = inner.groups.get_mut(group) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed = subscribed_topics(g);
        let mut results = Vec::new();
        let mut records = Vec::new();
        let mut deleted = Vec::new();
        for (t, p) in partitions {
            if !g.is_empty() && subscribed.contains(&t) {
                results.push(((t, p), ResponseError::GroupSubscribedToTopic));
                continue;
            }
            if g.offsets.contains_key(&(t.clone(), p)) {
                records.push((
                    Key::Offset {
                        group: group.to_string(),
                        topic: t.clone(),
                        partition: p,
                    }
                    .encode(),
                    None,
                ));
                deleted.push((t.clone(), p));
            }
            results.push(((t, p), super::NO_ERROR));
        }
        if !records.is_empty() {
            if let Err(e) = self.append(b, group, records) {
                tracing::error!(%group, error = %e, "writing offset tombstones failed");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
        for k in deleted {
            g.offsets.remove(&k);
        }
        Ok(results)
    }

    /// Replays `__consumer_offsets` into memory (broker start).
    pub async fn load(&self, b: &Broker) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().await;
        let now = crate::now_ms();
        let mut loaded = 0usize;
        for p in b
            .replicas
            .all()
            .into_iter()
            .filter(|p| p.topic == OFFSETS_TOPIC)
        {
            let mut offset = p.log_start_offset();
            let end = p.log_end_offset();
            while offset < end {
                let r = p.read(offset, 1 << 20, end, true)?;
                if r.data.is_empty() {
                    break;
                }
                let start = offset;
                // Compaction can empty the tail of a batch, so the next read starts after the
                // last batch's offset span, not after its last surviving record.
                if let Some((_, last)) = rivulet_storage::BatchIter::new(&r.data).last() {
                    offset = offset.max(last.next_offset());
                }
                let mut buf = r.data.clone();
                let sets = RecordBatchDecoder::decode_all(&mut buf)
                    .map_err(|e| anyhow::anyhow!("decoding {OFFSETS_TOPIC}-{}: {e}", p.index))?;
                for set in sets {
                    for rec in set.records.into_iter().filter(|r| r.offset >= start) {
                        offset = offset.max(rec.offset + 1);
                        loaded += 1;
                        apply_record(&mut inner.groups, rec.key, rec.value, now);
                    }
                }
            }
        }
        tracing::info!(
            records = loaded,
            groups = inner.groups.len(),
            "loaded consumer groups"
        );
        Ok(())
    }

    /// Runs session and rebalance timeouts until shutdown.
    pub fn spawn_ticker(b: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => break,
                }
                let gc = &b.groups;
                let mut inner = gc.inner.lock().await;
                let now = crate::now_ms();
                let ids: Vec<String> = inner.groups.keys().cloned().collect();
                for id in ids {
                    let mut effects = Vec::new();
                    if let Some(g) = inner.groups.get_mut(&id) {
                        g.tick(now, &mut effects);
                    }
                    if !effects.is_empty() {
                        gc.apply_effects(&b, &mut inner, &id, effects);
                    }
                }
            }
        });
    }
}

fn apply_record(
    groups: &mut HashMap<String, Group>,
    key: Option<Bytes>,
    value: Option<Bytes>,
    now: i64,
) {
    let Some(key) = key else { return };
    let key = match Key::decode(key) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "skipping unreadable __consumer_offsets key");
            return;
        }
    };
    match key {
        Key::Offset {
            group,
            topic,
            partition,
        } => match value {
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            Some(v) => match OffsetValue::decode(v) {
                Ok(v) => {
                    groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now))
                        .offsets
                        .insert(
                            (topic, partition),
                            CommittedOffset {
                                offset: v.offset,
                                leader_epoch: v.leader_epoch,
                                metadata: v.metadata,
                                commit_timestamp: v.commit_timestamp,
                            },
                        );
                }
                Err(e) => tracing::warn!(%group, error = %e, "skipping unreadable offset value"),
            },
        },
        Key::Group { group } => match value {
            None => {
                groups.remove(&group);
            }
            Some(v) => match GroupValue::decode(v) {
                Ok(v) => {
                    let g = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now));
                    g.restore(v, now);
                }
                Err(e) => tracing::warn!(%group, error = %e, "skipping unreadable group value"),
            },
        },
    }
}

/// Topics the group's consumer-protocol members subscribe to.
fn subscribed_topics(g: &Group) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let protocol = g.protocol.clone().unwrap_or_default();
    let mut out = Vec::new();
    if g.protocol_type.as_deref() != Some("consumer") {
        return out;
    }
    for m in &g.members {
        let Some((_, md)) = m.protocols.iter().find(|(n, _)| *n == protocol) else {
            continue;
        };
        let mut buf = md.clone();
        if buf.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([buf[0], buf[1]]);
        let _ = bytes::Buf::get_i16(&mut buf);
        if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
            out.extend(sub.topics.iter().map(|t| t.to_string()));
        }
    }
    out
}
