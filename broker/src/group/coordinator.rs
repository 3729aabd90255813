//! The group coordinator's I/O layer: one lock over all groups, deferred JoinGroup/SyncGroup
//! answers delivered through oneshot channels, a ticker for session and rebalance timeouts, and
//! durable state in `__consumer_offsets` (written before a commit or assignment is acknowledged).
//!
//! Groups move with leadership, as in Kafka: this broker coordinates the groups of the
//! `__consumer_offsets` partitions it leads. The ticker compares the partitions it leads with the
//! ones it has loaded: a newly led partition is loaded (its groups answer
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile) and a partition no longer led is dropped from memory,
//! its waiting members answered NOT_COORDINATOR; groups of partitions not led here get
//! NOT_COORDINATOR. Records are appended on the leader and the answer waits until they are
//! committed (the high watermark passes them), so an acknowledged commit or assignment survives
//! the loss of the coordinator. In standalone mode the broker leads every partition and commits
//! are committed on append, so nothing waits.

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
use crate::metadata::{placement, NewTopic};
use crate::partition::{AppendError, CommitError, Partition};

/// Kafka's `offsets.commit.timeout.ms` default: how long a commit or group write waits for the
/// in-sync replicas.
const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_millis(5_000);

/// This coordinator's hold on one `__consumer_offsets` partition it leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owned {
    /// Being replayed into memory; its groups answer COORDINATOR_LOAD_IN_PROGRESS.
    Loading { epoch: i32 },
    /// In memory; `end` is the log end after the last record this coordinator read or wrote.
    Loaded { epoch: i32, end: i64 },
}

impl Owned {
    fn epoch(self) -> i32 {
        match self {
            Owned::Loading { epoch } | Owned::Loaded { epoch, .. } => epoch,
        }
    }
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Group>,
    joins: HashMap<(String, String), oneshot::Sender<JoinResult>>,
    syncs: HashMap<(String, String), oneshot::Sender<SyncResult>>,
    /// `__consumer_offsets` partitions coordinated here.
    owned: HashMap<i32, Owned>,
    /// Log offset of the newest offset record (commit or tombstone) applied to memory, per
    /// (group, topic, partition): commits become visible when committed, and two waiting at
    /// once may finish in either order, so an older one must not overwrite a newer one.
    offset_positions: HashMap<(String, String, i32), i64>,
}

/// A record appended to `__consumer_offsets`, not yet known to be committed.
struct Pending {
    part: Arc<Partition>,
    /// The leader epoch it was appended in (see `Partition::wait_committed`).
    leader_epoch: i32,
    last_offset: i64,
}

impl Pending {
    /// Waits until the record is committed; the error is the one Kafka's coordinator gives.
    async fn committed(&self) -> Result<(), ResponseError> {
        match self
            .part
            .wait_committed(self.leader_epoch, self.last_offset, OFFSETS_COMMIT_TIMEOUT)
            .await
        {
            Ok(()) => Ok(()),
            Err(CommitError::NotLeader) => Err(ResponseError::NotCoordinator),
            Err(CommitError::NotEnoughReplicas) => Err(ResponseError::CoordinatorNotAvailable),
            Err(CommitError::Timeout) => Err(ResponseError::RequestTimedOut),
        }
    }
}

/// A group write whose SyncGroup answers are held until it is committed.
struct Settle {
    group: String,
    generation: i32,
    pending: Pending,
    syncs: Vec<(oneshot::Sender<SyncResult>, SyncResult)>,
}

/// What [`GroupCoordinator::apply_effects`] did about persisting the group.
enum Stored {
    /// Nothing to wait for (no write, or already committed).
    Done,
    /// The write failed (with this error); dependent answers got it and the group rebalances.
    Failed(ResponseError),
    /// Written; finish with [`GroupCoordinator::settle`] after releasing the lock.
    Waiting(Settle),
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
    #[error("this broker does not lead {OFFSETS_TOPIC}-{0}")]
    NotLeader(i32),
    #[error("{0}")]
    Failed(String),
}

impl PersistError {
    /// The error a client gets for a write that could not be made.
    fn response(&self) -> ResponseError {
        match self {
            PersistError::NotLeader(_) => ResponseError::NotCoordinator,
            PersistError::Failed(_) => ResponseError::CoordinatorNotAvailable,
        }
    }
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
        let view = b.metadata.view();
        if view.topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        // offsets.topic.replication.factor, capped by the live brokers (a standalone broker: 1).
        let rf = b
            .config
            .offsets_topic_replication_factor
            .min(view.brokers.len() as i16)
            .max(1);
        let assignment = placement::assign(&view.brokers, 0, self.offsets_partitions, rf, 0)
            .map_err(|e| {
                tracing::error!(error = %e, "placing __consumer_offsets failed");
                ResponseError::CoordinatorNotAvailable
            })?;
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
            replication_factor = rf,
            "created __consumer_offsets"
        );
        // Take the partitions led here at once rather than at the next tick.
        self.reconcile(b).await;
        Ok(())
    }

    /// Whether this coordinator serves `group` now: NOT_COORDINATOR when its partition is not
    /// led here, COORDINATOR_LOAD_IN_PROGRESS while it is being loaded.
    fn check_owner(&self, b: &Broker, inner: &Inner, group: &str) -> Result<(), ResponseError> {
        let partition = partition_for(group, self.offsets_partitions);
        match inner.owned.get(&partition) {
            Some(Owned::Loading { .. }) => Err(ResponseError::CoordinatorLoadInProgress),
            Some(Owned::Loaded { .. }) => match b.replicas.get(OFFSETS_TOPIC, partition) {
                // Leadership may have moved since the last reconcile.
                Some(p) if p.is_leader() => Ok(()),
                _ => Err(ResponseError::NotCoordinator),
            },
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Loads the `__consumer_offsets` partitions this broker now leads and drops the ones it no
    /// longer leads (run by the ticker, after creating the topic, and at start). A new leader
    /// epoch on a partition still led here keeps the groups when the log is as this coordinator
    /// left it (see [`untouched_since`]); otherwise they are reloaded.
    pub async fn reconcile(&self, b: &Broker) {
        let led: HashMap<i32, (Arc<Partition>, i32)> = (0..self.offsets_partitions)
            .filter_map(|i| b.replicas.get(OFFSETS_TOPIC, i))
            .filter(|p| p.is_leader())
            .map(|p| {
                let epoch = p.leader_epoch();
                (p.index, (p, epoch))
            })
            .collect();
        let mut to_load = Vec::new();
        {
            let mut inner = self.inner.lock().await;
            let owned: Vec<(i32, Owned)> = inner.owned.iter().map(|(p, o)| (*p, *o)).collect();
            for (p, o) in owned {
                match (led.get(&p), o) {
                    (None, _) => Self::unload(&mut inner, p, self.offsets_partitions),
                    (Some((_, epoch)), o) if o.epoch() == *epoch => {}
                    (Some((part, epoch)), Owned::Loaded { epoch: old, end })
                        if untouched_since(part, old, end) =>
                    {
                        inner.owned.insert(p, Owned::Loaded { epoch: *epoch, end });
                    }
                    (Some(_), _) => Self::unload(&mut inner, p, self.offsets_partitions),
                }
            }
            for (p, (part, epoch)) in &led {
                if !inner.owned.contains_key(p) {
                    inner.owned.insert(*p, Owned::Loading { epoch: *epoch });
                    to_load.push((part.clone(), *epoch));
                }
            }
        }
        for (part, epoch) in to_load {
            self.load_partition(&part, epoch).await;
        }
    }

    /// Replays one partition (read without the lock: its groups are refused while loading).
    async fn load_partition(&self, part: &Arc<Partition>, epoch: i32) {
        let p = part.index;
        let read = read_records(part);
        let mut inner = self.inner.lock().await;
        if inner.owned.get(&p) != Some(&Owned::Loading { epoch }) {
            return; // unloaded or superseded meanwhile
        }
        let (records, end) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(partition = p, error = %format!("{e:#}"), "loading consumer groups failed; retrying");
                inner.owned.remove(&p);
                return;
            }
        };
        if !part.is_leader() || part.leader_epoch() != epoch || part.log_end_offset() != end {
            // Leadership moved or the log changed under the read: the next reconcile retries.
            inner.owned.remove(&p);
            return;
        }
        let now = crate::now_ms();
        let count = records.len();
        for (key, value) in records {
            apply_record(&mut inner.groups, key, value, now);
        }
        inner.owned.insert(p, Owned::Loaded { epoch, end });
        let groups = inner
            .groups
            .keys()
            .filter(|g| partition_for(g, self.offsets_partitions) == p)
            .count();
        tracing::info!(
            partition = p,
            leader_epoch = epoch,
            records = count,
            groups,
            "coordinating the consumer groups of {OFFSETS_TOPIC}-{p}"
        );
    }

    /// Forgets a partition's groups; members waiting on them are told NOT_COORDINATOR so they
    /// look the coordinator up again.
    fn unload(inner: &mut Inner, p: i32, partitions: i32) {
        inner.owned.remove(&p);
        let mine = |g: &str| partition_for(g, partitions) == p;
        let before = inner.groups.len();
        inner.groups.retain(|g, _| !mine(g));
        inner.offset_positions.retain(|(g, _, _), _| !mine(g));
        let joins: Vec<_> = inner.joins.keys().filter(|k| mine(&k.0)).cloned().collect();
        for k in joins {
            if let Some(tx) = inner.joins.remove(&k) {
                let _ = tx.send(JoinResult::error(ResponseError::NotCoordinator, &k.1));
            }
        }
        let syncs: Vec<_> = inner.syncs.keys().filter(|k| mine(&k.0)).cloned().collect();
        for k in syncs {
            if let Some(tx) = inner.syncs.remove(&k) {
                let _ = tx.send(SyncResult::error(ResponseError::NotCoordinator));
            }
        }
        tracing::info!(
            partition = p,
            groups = before - inner.groups.len(),
            "no longer coordinating the consumer groups of {OFFSETS_TOPIC}-{p}"
        );
    }

    /// Appends a group's records to its `__consumer_offsets` partition (on the leader only).
    fn append(
        &self,
        b: &Broker,
        inner: &mut Inner,
        group: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<Pending, PersistError> {
        let partition = partition_for(group, self.offsets_partitions);
        let part = b
            .replicas
            .get(OFFSETS_TOPIC, partition)
            .ok_or(PersistError::NotLeader(partition))?;
        let Some(Owned::Loaded { epoch, .. }) = inner.owned.get(&partition).copied() else {
            return Err(PersistError::NotLeader(partition));
        };
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
        let appended = part
            .append(&mut buf, &headers, epoch, now)
            .map_err(|e| match e {
                AppendError::NotLeader => PersistError::NotLeader(partition),
                e => PersistError::Failed(e.to_string()),
            })?;
        inner.owned.insert(
            partition,
            Owned::Loaded {
                epoch,
                end: part.log_end_offset(),
            },
        );
        Ok(Pending {
            part,
            leader_epoch: appended.leader_epoch,
            last_offset: appended.last_offset,
        })
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

    /// Persists what the effects require, then delivers deferred answers. When the group could
    /// not be written, as in Kafka, the SyncGroup answers that depended on it become errors and
    /// the group rebalances. When it was written but is not committed yet, those answers wait in
    /// the returned [`Stored::Waiting`] for [`Self::settle`].
    fn apply_effects(
        &self,
        b: &Broker,
        inner: &mut Inner,
        group: &str,
        effects: Vec<Effect>,
    ) -> Stored {
        let mut persisted = false;
        let mut failed = None;
        let mut waiting: Option<Settle> = None;
        for e in effects {
            match e {
                Effect::Persist if !persisted => {
                    persisted = true;
                    if let Some(g) = inner.groups.get(group) {
                        let rec = Self::group_record(g);
                        let generation = g.generation;
                        match self.append(b, inner, group, vec![rec]) {
                            Err(err) => {
                                tracing::error!(%group, error = %err, "persisting group metadata failed");
                                failed = Some(match err {
                                    PersistError::NotLeader(_) => ResponseError::NotCoordinator,
                                    PersistError::Failed(_) => ResponseError::UnknownServerError,
                                });
                            }
                            Ok(pending) if pending.part.high_watermark() <= pending.last_offset => {
                                waiting = Some(Settle {
                                    group: group.to_string(),
                                    generation,
                                    pending,
                                    syncs: Vec::new(),
                                });
                            }
                            Ok(_) => {}
                        }
                    }
                }
                Effect::Sync(member, _) if failed.is_some() => {
                    if let (Some(tx), Some(err)) =
                        (inner.syncs.remove(&(group.to_string(), member)), failed)
                    {
                        let _ = tx.send(SyncResult::error(err));
                    }
                }
                Effect::Sync(member, r) if waiting.is_some() => {
                    if let (Some(tx), Some(w)) = (
                        inner.syncs.remove(&(group.to_string(), member)),
                        waiting.as_mut(),
                    ) {
                        w.syncs.push((tx, r));
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
        if let Some(err) = failed {
            Self::rebalance_after_failed_write(inner, group, None);
            return Stored::Failed(err);
        }
        match waiting {
            Some(w) => Stored::Waiting(w),
            None => Stored::Done,
        }
    }

    /// A group write failed: the group rebalances (when still in `generation`, if given).
    fn rebalance_after_failed_write(inner: &mut Inner, group: &str, generation: Option<i32>) {
        let mut more = Vec::new();
        if let Some(g) = inner.groups.get_mut(group) {
            if generation.is_none_or(|gen| gen == g.generation) {
                g.force_rebalance(crate::now_ms(), &mut more);
            }
        }
        for e in more {
            if let Effect::Join(member, r) = e {
                if let Some(tx) = inner.joins.remove(&(group.to_string(), member)) {
                    let _ = tx.send(r);
                }
            }
        }
    }

    /// Finishes a group write outside the lock: once it is committed the held SyncGroup answers
    /// go out; if it cannot be, they get the error and the group rebalances.
    async fn settle(&self, stored: Stored) -> Result<(), ResponseError> {
        let w = match stored {
            Stored::Done => return Ok(()),
            Stored::Failed(e) => return Err(e),
            Stored::Waiting(w) => w,
        };
        match w.pending.committed().await {
            Ok(()) => {
                for (tx, r) in w.syncs {
                    let _ = tx.send(r);
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(group = %w.group, error = ?e, "group metadata write not committed");
                for (tx, _) in w.syncs {
                    let _ = tx.send(SyncResult::error(e));
                }
                let mut inner = self.inner.lock().await;
                Self::rebalance_after_failed_write(&mut inner, &w.group, Some(w.generation));
                Err(e)
            }
        }
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
        let (rx, stored) = {
            let mut inner = self.inner.lock().await;
            if let Err(e) = self.check_owner(b, &inner, group) {
                return JoinResult::error(e, &p.member_id);
            }
            let now = crate::now_ms();
            let g = inner
                .groups
                .entry(group.to_string())
                .or_insert_with(|| Group::new(group, now));
            let mut effects = Vec::new();
            let outcome = g.join(p, &self.cfg, now, &mut effects);
            match outcome {
                Outcome::Now(r) => {
                    let stored = self.apply_effects(b, &mut inner, group, effects);
                    drop(inner);
                    let _ = self.settle(stored).await;
                    return r;
                }
                Outcome::Deferred(member) => {
                    let (tx, rx) = oneshot::channel();
                    inner.joins.insert((group.to_string(), member), tx);
                    (rx, self.apply_effects(b, &mut inner, group, effects))
                }
            }
        };
        let _ = self.settle(stored).await;
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
        let (rx, stored) = {
            let mut inner = self.inner.lock().await;
            if let Err(e) = self.check_owner(b, &inner, group) {
                return SyncResult::error(e);
            }
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
            match outcome {
                Outcome::Now(r) => {
                    let stored = self.apply_effects(b, &mut inner, group, effects);
                    drop(inner);
                    // The leader's own answer waits for the write like everyone else's.
                    return match self.settle(stored).await {
                        Err(e) if r.error == 0 => SyncResult::error(e),
                        _ => r,
                    };
                }
                Outcome::Deferred(member) => {
                    let (tx, rx) = oneshot::channel();
                    inner.syncs.insert((group.to_string(), member), tx);
                    (rx, self.apply_effects(b, &mut inner, group, effects))
                }
            }
        };
        let _ = self.settle(stored).await;
        match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(Ok(r)) => r,
            _ => SyncResult::error(ResponseError::RebalanceInProgress),
        }
    }

    pub async fn heartbeat(
        &self,
        b: &Broker,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> ResponseError {
        if group.is_empty() {
            return ResponseError::InvalidGroupId;
        }
        let mut inner = self.inner.lock().await;
        if let Err(e) = self.check_owner(b, &inner, group) {
            return e;
        }
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
        self.check_owner(b, &inner, group)?;
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
        let stored = self.apply_effects(b, &mut inner, group, effects);
        drop(inner);
        let _ = self.settle(stored).await;
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
        self.check_owner(b, &inner, group)?;
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
        let fail_accepted = |results: CommitResult, err: ResponseError| -> CommitResult {
            results
                .into_iter()
                .map(|(k, e)| (k, if e.code() == 0 { err } else { e }))
                .collect()
        };
        if records.is_empty() {
            return Ok(results);
        }
        let pending = match self.append(b, &mut inner, group, records) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%group, error = %e, "persisting offsets failed");
                return Ok(fail_accepted(results, e.response()));
            }
        };
        drop(inner);
        // As Kafka's pending offset commits: OffsetFetch sees the offsets once they are
        // committed (the high watermark passed them), so it never returns an offset that a
        // leader change could still take back. A failed wait leaves memory as it was; the log
        // decides when the partition is next loaded.
        match pending.committed().await {
            Ok(()) => {
                let mut inner = self.inner.lock().await;
                self.apply_committed_offsets(&mut inner, group, &pending, accepted);
                Ok(results)
            }
            Err(e) => {
                tracing::warn!(%group, error = ?e, "offset commit not committed");
                Ok(fail_accepted(results, e))
            }
        }
    }

    /// Makes committed offsets visible, unless the partition was reloaded since the append
    /// (the log then already decided) or a newer record for the same key was applied.
    fn apply_committed_offsets(
        &self,
        inner: &mut Inner,
        group: &str,
        pending: &Pending,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) {
        let partition = partition_for(group, self.offsets_partitions);
        if !matches!(inner.owned.get(&partition), Some(Owned::Loaded { epoch, .. }) if *epoch == pending.leader_epoch)
        {
            return;
        }
        let Inner {
            groups,
            offset_positions,
            ..
        } = inner;
        let Some(g) = groups.get_mut(group) else {
            return;
        };
        for ((topic, p), off) in offsets {
            let pos = offset_positions
                .entry((group.to_string(), topic.clone(), p))
                .or_insert(i64::MIN);
            if *pos < pending.last_offset {
                *pos = pending.last_offset;
                g.offsets.insert((topic, p), off);
            }
        }
    }

    /// Records that tombstones for these keys were written at `last_offset`, so a commit
    /// appended before them and still waiting does not bring the offsets back.
    fn note_tombstones(inner: &mut Inner, group: &str, keys: &[(String, i32)], last_offset: i64) {
        for (topic, p) in keys {
            inner
                .offset_positions
                .insert((group.to_string(), topic.clone(), *p), last_offset);
        }
    }

    /// Committed offsets of a group (all, or the listed partitions).
    pub async fn fetch_offsets(
        &self,
        b: &Broker,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), CommittedOffset>, ResponseError> {
        let inner = self.inner.lock().await;
        self.check_owner(b, &inner, group)?;
        Ok(inner
            .groups
            .get(group)
            .map(|g| g.offsets.clone())
            .unwrap_or_default())
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

    /// (group id, protocol type, state) of every group coordinated here; Kafka answers
    /// COORDINATOR_LOAD_IN_PROGRESS (with the groups it has) while a partition is loading.
    pub async fn list(&self) -> (Vec<(String, String, &'static str)>, Option<ResponseError>) {
        let inner = self.inner.lock().await;
        let loading = inner
            .owned
            .values()
            .any(|o| matches!(o, Owned::Loading { .. }))
            .then_some(ResponseError::CoordinatorLoadInProgress);
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
        (out, loading)
    }

    pub async fn describe(&self, b: &Broker, group: &str) -> Result<Option<Group>, ResponseError> {
        let inner = self.inner.lock().await;
        self.check_owner(b, &inner, group)?;
        Ok(inner.groups.get(group).cloned())
    }

    /// DeleteGroups for one group.
    pub async fn delete_group(&self, b: &Broker, group: &str) -> ResponseError {
        let mut inner = self.inner.lock().await;
        if let Err(e) = self.check_owner(b, &inner, group) {
            return e;
        }
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
        let keys: Vec<(String, i32)> = g.offsets.keys().cloned().collect();
        let pending = match self.append(b, &mut inner, group, records) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%group, error = %e, "writing group tombstones failed");
                return e.response();
            }
        };
        Self::note_tombstones(&mut inner, group, &keys, pending.last_offset);
        inner.groups.remove(group);
        drop(inner);
        if let Err(e) = pending.committed().await {
            tracing::warn!(%group, error = ?e, "group tombstones not committed");
            return e;
        }
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
        self.check_owner(b, &inner, group)?;
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
        if records.is_empty() {
            return Ok(results);
        }
        let pending = match self.append(b, &mut inner, group, records) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%group, error = %e, "writing offset tombstones failed");
                return Err(e.response());
            }
        };
        Self::note_tombstones(&mut inner, group, &deleted, pending.last_offset);
        if let Some(g) = inner.groups.get_mut(group) {
            for k in deleted {
                g.offsets.remove(&k);
            }
        }
        drop(inner);
        if let Err(e) = pending.committed().await {
            tracing::warn!(%group, error = ?e, "offset tombstones not committed");
            return Err(e);
        }
        Ok(results)
    }

    /// Loads the groups of the `__consumer_offsets` partitions this broker leads (broker
    /// start; later changes of leadership are picked up by the ticker).
    pub async fn load(&self, b: &Broker) -> anyhow::Result<()> {
        self.reconcile(b).await;
        let inner = self.inner.lock().await;
        tracing::info!(
            partitions = inner.owned.len(),
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
                gc.reconcile(&b).await;
                let mut inner = gc.inner.lock().await;
                let now = crate::now_ms();
                let ids: Vec<String> = inner.groups.keys().cloned().collect();
                for id in ids {
                    let mut effects = Vec::new();
                    if let Some(g) = inner.groups.get_mut(&id) {
                        g.tick(now, &mut effects);
                    }
                    if !effects.is_empty() {
                        let stored = gc.apply_effects(&b, &mut inner, &id, effects);
                        if let Stored::Waiting(_) = stored {
                            // Waiting must not hold up the other groups' timeouts.
                            let b = b.clone();
                            tokio::spawn(async move {
                                let _ = b.groups.settle(stored).await;
                            });
                        }
                    }
                }
            }
        });
    }
}

/// Whether a partition's log is still what this coordinator left at `end` in leader epoch
/// `epoch`: nothing appended or cut since, and no other leader's data after it (its epoch-`epoch`
/// data still ends at `end` in the leader-epoch cache). A leadership round trip the ticker did
/// not see (another leader wrote, or this broker's tail was truncated) fails this check.
fn untouched_since(part: &Partition, epoch: i32, end: i64) -> bool {
    part.log_end_offset() == end && part.end_offset_for_epoch(epoch) == Some((epoch, end))
}

/// Every (key, value) of a `__consumer_offsets` partition, from its log start to its log end,
/// and that end.
type Records = Vec<(Option<Bytes>, Option<Bytes>)>;

fn read_records(p: &Partition) -> anyhow::Result<(Records, i64)> {
    let mut out = Vec::new();
    let mut offset = p.log_start_offset();
    let end = p.log_end_offset();
    while offset < end {
        let r = p.read(offset, 1 << 20, end, true)?;
        if r.data.is_empty() {
            break;
        }
        let start = offset;
        // Compaction can empty the tail of a batch, so the next read starts after the last
        // batch's offset span, not after its last surviving record.
        if let Some((_, last)) = rivulet_storage::BatchIter::new(&r.data).last() {
            offset = offset.max(last.next_offset());
        }
        let mut buf = r.data.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf)
            .map_err(|e| anyhow::anyhow!("decoding {OFFSETS_TOPIC}-{}: {e}", p.index))?;
        for set in sets {
            for rec in set.records.into_iter().filter(|r| r.offset >= start) {
                offset = offset.max(rec.offset + 1);
                out.push((rec.key, rec.value));
            }
        }
    }
    Ok((out, end))
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
