//! The partitions this broker hosts: each one a `PartitionLog` plus its idempotent-producer state,
//! its replication role (leader or follower, from the metadata view) with the leader's view of
//! its followers and the high watermark, and the `ReplicaManager` that opens, reconfigures,
//! assigns roles to and deletes them as metadata changes.

pub mod producer_state;
#[cfg(test)]
mod replication_tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use rivulet_storage::{
    AppendResult, BatchHeader, BatchIter, CompactionStats, CompressionType, LogConfig, LogError,
    PartitionLog, ReadResult,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::metadata::{ClusterView, PartitionMeta};
use crate::replication::isr::{self, FollowerState};
use crate::topic_config;
use producer_state::{BatchRecord, ProducerStateTable, SequenceCheck};

const PARTITION_METADATA: &str = "partition.metadata";
/// The partition's high watermark as of the last checkpoint (Kafka keeps one file per log dir,
/// `replication-offset-checkpoint`; one per partition keeps the write atomic and local).
const HW_CHECKPOINT: &str = "high-watermark-checkpoint";

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(
        "out of order sequence number for producer {producer_id}: expected {expected}, got {got}"
    )]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {got} is older than the current epoch {current}")]
    FencedEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error(
        "producer {0} has no state on this partition and its batch does not start at sequence 0"
    )]
    UnknownProducer(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("this broker is not the leader of the partition")]
    NotLeader,
}

/// Why an acks=all wait ended without the write being committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("leadership moved while waiting for the in-sync replicas")]
    NotLeader,
    #[error("timed out waiting for the in-sync replicas")]
    Timeout,
    #[error("the in-sync replica set fell below min.insync.replicas")]
    NotEnoughReplicas,
}

/// This broker's part in a partition, from the metadata view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader {
        epoch: i32,
    },
    /// `leader` is -1 while the partition is offline.
    Follower {
        leader: i32,
        epoch: i32,
    },
}

/// Leader/follower bookkeeping of one partition (guarded by `Partition::repl`).
struct Replication {
    me: i32,
    role: Role,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    partition_epoch: i32,
    min_isr: usize,
    /// Leader only: every other replica's fetch state.
    followers: HashMap<i32, FollowerState>,
    /// Leader only: log end offset when this leadership began.
    epoch_start_offset: i64,
    /// Follower only: the log must be reconciled with the leader's (OffsetForLeaderEpoch)
    /// before fetching, because the leader or its epoch changed.
    needs_truncation: bool,
    /// Leader only: the ISR change sent to the metadata store whose outcome is not known yet,
    /// with the partition epoch it was based on. Until a newer stored state arrives, the high
    /// watermark counts its added members too (Kafka's "maximal ISR", KIP-497): a member that
    /// may already be in the stored ISR, and so electable, must hold everything committed.
    pending_isr: Option<(i32, IsrChange)>,
}

impl Replication {
    /// The ISR the high watermark is computed over: the stored one plus pending additions.
    fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some((_, ch)) = &self.pending_isr {
            for r in &ch.new_isr {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        isr
    }

    /// A stored state newer than the one a pending change was based on settles it (it was
    /// written, or something else was); so does a change of leadership.
    fn settle_pending_isr(&mut self) {
        let settled = match (&self.pending_isr, self.role) {
            (Some((pe, ch)), Role::Leader { epoch }) => {
                self.partition_epoch != *pe
                    || ch.leader_epoch != epoch
                    || ch.new_isr.iter().any(|r| !self.replicas.contains(r))
            }
            (Some(_), Role::Follower { .. }) => true,
            (None, _) => false,
        };
        if settled {
            self.pending_isr = None;
        }
    }
}

/// A leader's ISR change to write through the metadata store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
    pub shrink: bool,
}

/// What an append did.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time: i64,
    pub log_start_offset: i64,
    pub duplicate: bool,
    /// The leader epoch the batch is in the log under: an acks=all wait must see the high
    /// watermark pass it in this epoch (`wait_committed`), not in a later leadership whose log
    /// may hold other data at the same offsets.
    pub leader_epoch: i32,
}

struct PartitionState {
    log: PartitionLog,
    producers: ProducerStateTable,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: Uuid,
    pub dir: PathBuf,
    // Appends and maintenance write; fetches and lookups only read, so they run in parallel.
    state: RwLock<PartitionState>,
    // Published after every change so that metadata/metrics reads need no lock.
    log_end: AtomicI64,
    log_start: AtomicI64,
    size: AtomicU64,
    hw: AtomicI64,
    /// The value in the HW checkpoint file (-1: not written by this process).
    hw_checkpointed: AtomicI64,
    repl: Mutex<Replication>,
    /// Woken on every high-watermark, ISR or role change (acks=all waiters).
    changed: Notify,
    /// The replica manager's wake-up for long-polling fetches (shared by all partitions).
    data_arrived: Arc<Notify>,
}

// A panic while holding the lock cannot leave the log half-written in memory: the log's own
// invariants are re-established on every call, so keep serving after a poisoned lock.
fn write(m: &RwLock<PartitionState>) -> RwLockWriteGuard<'_, PartitionState> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

fn read(m: &RwLock<PartitionState>) -> RwLockReadGuard<'_, PartitionState> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn lock(m: &Mutex<Replication>) -> MutexGuard<'_, Replication> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_hw_checkpoint(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(HW_CHECKPOINT))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

impl Partition {
    fn open(
        dir: PathBuf,
        topic: &str,
        index: i32,
        topic_id: Uuid,
        config: LogConfig,
        me: i32,
        data_arrived: Arc<Notify>,
    ) -> Result<Self, LogError> {
        let log = PartitionLog::open(&dir, config)?;
        let producers = producer_state_of(&log)?;
        // On start HW = min(checkpoint, LEO): never above what this replica holds.
        let hw = read_hw_checkpoint(&dir)
            .unwrap_or(log.log_start_offset())
            .clamp(log.log_start_offset(), log.log_end_offset());
        let p = Self {
            topic: topic.to_string(),
            index,
            topic_id,
            dir,
            log_end: AtomicI64::new(log.log_end_offset()),
            log_start: AtomicI64::new(log.log_start_offset()),
            size: AtomicU64::new(log.size_bytes()),
            hw: AtomicI64::new(hw),
            hw_checkpointed: AtomicI64::new(-1),
            state: RwLock::new(PartitionState { log, producers }),
            repl: Mutex::new(Replication {
                me,
                role: Role::Follower {
                    leader: -1,
                    epoch: -1,
                },
                replicas: vec![],
                isr: vec![],
                partition_epoch: -1,
                min_isr: 1,
                followers: HashMap::new(),
                epoch_start_offset: 0,
                needs_truncation: false,
                pending_isr: None,
            }),
            changed: Notify::new(),
            data_arrived,
        };
        Ok(p)
    }

    fn publish(&self, log: &PartitionLog) {
        self.log_end.store(log.log_end_offset(), Ordering::Release);
        self.log_start
            .store(log.log_start_offset(), Ordering::Release);
        self.size.store(log.size_bytes(), Ordering::Relaxed);
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// Offsets below it are on every in-sync replica (committed); consumers read up to here.
    /// A leader alone in its ISR (standalone) keeps it at the log end.
    pub fn high_watermark(&self) -> i64 {
        self.hw.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    pub fn size_bytes(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// Appends validated batches, enforcing idempotent-producer sequences.
    /// Appends validated batches, stamping this partition's leader epoch (the `_leader_epoch`
    /// argument is kept for callers; the partition's own epoch is authoritative). Refused with
    /// `NotLeader` unless this broker leads the partition.
    pub fn append(
        &self,
        batches: &mut [u8],
        headers: &[BatchHeader],
        _leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Appended, AppendError> {
        let mut st = write(&self.state);
        let leader_epoch = match lock(&self.repl).role {
            Role::Leader { epoch } => epoch,
            Role::Follower { .. } => return Err(AppendError::NotLeader),
        };
        let idempotent = headers.iter().find(|h| h.producer_id >= 0);
        if let Some(h) = idempotent {
            if headers.len() != 1 {
                return Err(AppendError::Invalid(
                    "an idempotent producer must send one batch per partition per request".into(),
                ));
            }
            let last_seq = h.base_sequence.wrapping_add(h.last_offset_delta);
            match st
                .producers
                .check(h.producer_id, h.producer_epoch, h.base_sequence, last_seq)
            {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate(b) => {
                    return Ok(Appended {
                        base_offset: b.first_offset,
                        last_offset: b.last_offset,
                        log_append_time: -1,
                        log_start_offset: st.log.log_start_offset(),
                        duplicate: true,
                        leader_epoch,
                    })
                }
                SequenceCheck::OutOfOrder { expected, got } => {
                    return Err(AppendError::OutOfOrder {
                        producer_id: h.producer_id,
                        expected,
                        got,
                    })
                }
                SequenceCheck::FencedEpoch { current, got } => {
                    return Err(AppendError::FencedEpoch {
                        producer_id: h.producer_id,
                        current,
                        got,
                    })
                }
                SequenceCheck::UnknownProducer => {
                    return Err(AppendError::UnknownProducer(h.producer_id))
                }
            }
        }
        let r: AppendResult = st.log.append(batches, leader_epoch, now_ms)?;
        if let Some(h) = idempotent {
            st.producers.record(
                h.producer_id,
                h.producer_epoch,
                BatchRecord {
                    first_seq: h.base_sequence,
                    last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
                    first_offset: r.base_offset,
                    last_offset: r.last_offset,
                },
            );
        }
        self.publish(&st.log);
        drop(st);
        // Every leader append wakes the parked fetches, whoever appended (a Produce, or the
        // group coordinator writing __consumer_offsets): followers must fetch it now, or an
        // acks=all wait on it lasts until their replica.fetch.wait.max.ms runs out.
        if !self.update_hw() {
            self.data_arrived.notify_waiters();
        }
        Ok(Appended {
            base_offset: r.base_offset,
            last_offset: r.last_offset,
            log_append_time: r.log_append_time,
            log_start_offset: r.log_start_offset,
            duplicate: false,
            leader_epoch,
        })
    }

    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<ReadResult, LogError> {
        read(&self.state)
            .log
            .read(offset, max_bytes, upper_bound, min_one)
    }

    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        read(&self.state).log.offset_for_timestamp(ts)
    }

    pub fn max_timestamp(&self) -> (i64, i64) {
        read(&self.state).log.max_timestamp()
    }

    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let mut st = write(&self.state);
        let r = st.log.delete_records_before(offset)?;
        self.publish(&st.log);
        Ok(r)
    }

    pub fn enforce_retention(&self, now_ms: i64) -> Result<(), LogError> {
        let mut st = write(&self.state);
        st.log.roll_if_aged(now_ms)?;
        st.log.enforce_retention(now_ms)?;
        self.publish(&st.log);
        Ok(())
    }

    /// One log-cleaner pass when the topic compacts and enough is dirty (`None` otherwise).
    /// Planning and the swap hold the lock briefly; rewriting segments runs without it, so
    /// produce and fetch go on meanwhile. Never cleans at or above the high watermark.
    pub fn compact(&self, now_ms: i64) -> Result<Option<CompactionStats>, LogError> {
        let task = read(&self.state)
            .log
            .compaction_task(now_ms, self.high_watermark())?;
        let Some(task) = task else { return Ok(None) };
        let cleaned = task.run()?;
        let mut st = write(&self.state);
        let stats = st.log.install_compaction(cleaned)?;
        self.publish(&st.log);
        Ok(Some(stats))
    }

    /// Whether the topic's cleanup.policy includes compact (keyless records are refused).
    pub fn is_compacted(&self) -> bool {
        read(&self.state).log.config().cleanup_policy.compacts()
    }

    /// The topic's compression.type: produced batches in another codec are recompressed.
    pub fn compression_type(&self) -> CompressionType {
        read(&self.state).log.config().compression_type
    }

    pub fn maybe_flush(&self, now_ms: i64) -> Result<(), LogError> {
        write(&self.state).log.maybe_flush(now_ms)
    }

    pub fn flush(&self) -> Result<(), LogError> {
        write(&self.state).log.flush()
    }

    fn update_config(&self, config: LogConfig) {
        write(&self.state).log.update_config(config);
    }

    // ---- replication ----

    pub fn role(&self) -> Role {
        lock(&self.repl).role
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role(), Role::Leader { .. })
    }

    /// A new leader whose high watermark has not yet reached the start of its epoch (it was a
    /// follower with an older HW): its HW is not yet meaningful to consumers (KIP-207), so
    /// ListOffsets answers OFFSET_NOT_AVAILABLE until followers' fetches advance it.
    pub fn leader_hw_pending(&self) -> bool {
        let r = lock(&self.repl);
        matches!(r.role, Role::Leader { .. }) && self.high_watermark() < r.epoch_start_offset
    }

    /// The leader epoch this broker knows for the partition (as leader or follower).
    pub fn leader_epoch(&self) -> i32 {
        match self.role() {
            Role::Leader { epoch } | Role::Follower { epoch, .. } => epoch,
        }
    }

    /// The in-sync replica set as this broker knows it (the leader's is the freshest).
    pub fn isr(&self) -> Vec<i32> {
        lock(&self.repl).isr.clone()
    }

    pub fn replicas(&self) -> Vec<i32> {
        lock(&self.repl).replicas.clone()
    }

    /// (ISR size, min.insync.replicas) under one lock, without copying the ISR: the acks=all
    /// check on every produce.
    pub fn isr_size_and_min(&self) -> (usize, usize) {
        let r = lock(&self.repl);
        (r.isr.len(), r.min_isr)
    }

    /// Applies the partition's state from a metadata view: the role, ISR and replicas. A new
    /// leader epoch resets the followers' fetch state; a follower of a new epoch must truncate
    /// against its leader before fetching.
    pub fn apply_meta(&self, pm: &PartitionMeta, min_isr: usize, now_ms: i64) {
        // The log lock first (every path takes it before the role's), so becoming leader never
        // interleaves with a follower's append or truncation still in progress: the epoch starts
        // exactly at the log end, and nothing cuts the new leader's log.
        let mut st = write(&self.state);
        let became_leader = self.apply_meta_locked(pm, min_isr, now_ms);
        if became_leader {
            // Record where the epoch starts before any append, so followers asking
            // OffsetForLeaderEpoch about it get an answer at once (as Kafka does).
            if let Err(e) = st.log.assign_leader_epoch(pm.leader_epoch) {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "recording the leader epoch failed");
            }
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// No longer hosted here (reassigned away, or its topic deleted; Kafka's StopReplica): it
    /// stops leading, so that produce requests waiting for acks=all answer
    /// NOT_LEADER_OR_FOLLOWER now (the client retries on the new leader) instead of timing out.
    pub fn stop(&self) {
        {
            let mut r = lock(&self.repl);
            let epoch = match r.role {
                Role::Leader { epoch } | Role::Follower { epoch, .. } => epoch,
            };
            r.role = Role::Follower { leader: -1, epoch };
            r.followers.clear();
        }
        self.changed.notify_waiters();
        self.data_arrived.notify_waiters();
    }

    /// Returns true when this broker just became the leader.
    fn apply_meta_locked(&self, pm: &PartitionMeta, min_isr: usize, now_ms: i64) -> bool {
        let mut r = lock(&self.repl);
        let mut became_leader = false;
        r.min_isr = min_isr.max(1);
        r.replicas = pm.replicas.clone();
        let me = r.me;
        let known_epoch = match r.role {
            Role::Leader { epoch } | Role::Follower { epoch, .. } => epoch,
        };
        if pm.leader_epoch < known_epoch {
            // An older view than what this partition acted on already: ignore it.
            return false;
        }
        if pm.leader == me {
            if r.role
                != (Role::Leader {
                    epoch: pm.leader_epoch,
                })
            {
                if pm.replicas.len() > 1 {
                    tracing::info!(topic = %self.topic, partition = self.index, epoch = pm.leader_epoch, isr = ?pm.isr, "became leader");
                } else {
                    // Single-replica partitions (every one of a standalone broker): no news.
                    tracing::debug!(topic = %self.topic, partition = self.index, epoch = pm.leader_epoch, "leading alone");
                }
                r.role = Role::Leader {
                    epoch: pm.leader_epoch,
                };
                r.followers = pm
                    .replicas
                    .iter()
                    .filter(|x| **x != me)
                    .map(|x| (*x, FollowerState::new(now_ms)))
                    .collect();
                r.epoch_start_offset = self.log_end_offset();
                r.needs_truncation = false;
                r.isr = pm.isr.clone();
                r.partition_epoch = pm.partition_epoch;
                became_leader = true;
            } else if pm.partition_epoch >= r.partition_epoch {
                r.isr = pm.isr.clone();
                r.partition_epoch = pm.partition_epoch;
            }
            for x in pm.replicas.iter().filter(|x| **x != me) {
                r.followers
                    .entry(*x)
                    .or_insert_with(|| FollowerState::new(now_ms));
            }
            r.followers.retain(|x, _| pm.replicas.contains(x));
            r.settle_pending_isr();
            self.update_hw_locked(&mut r);
        } else {
            let role = Role::Follower {
                leader: pm.leader,
                epoch: pm.leader_epoch,
            };
            if r.role != role {
                tracing::info!(topic = %self.topic, partition = self.index, leader = pm.leader, epoch = pm.leader_epoch, "became follower");
                r.role = role;
                r.followers.clear();
                r.needs_truncation = true;
            }
            r.isr = pm.isr.clone();
            r.partition_epoch = pm.partition_epoch;
            r.settle_pending_isr();
        }
        became_leader
    }

    /// Recomputes the high watermark (leader only) and wakes waiters when it moved; true then.
    fn update_hw(&self) -> bool {
        let mut r = lock(&self.repl);
        self.update_hw_locked(&mut r)
    }

    fn update_hw_locked(&self, r: &mut Replication) -> bool {
        if !matches!(r.role, Role::Leader { .. }) {
            return false;
        }
        let cur = self.high_watermark();
        let isr = r.maximal_isr();
        let hw = isr::high_watermark(r.me, self.log_end_offset(), &isr, &r.followers, cur);
        if hw == cur {
            return false;
        }
        self.hw.store(hw, Ordering::Release);
        self.changed.notify_waiters();
        self.data_arrived.notify_waiters();
        true
    }

    /// Leader: a follower fetched from `fetch_offset` (its log end). Moves the high watermark;
    /// returns true when the ISR should now expand. `Err` when not the leader.
    pub fn record_follower_fetch(
        &self,
        replica: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<bool, AppendError> {
        let mut r = lock(&self.repl);
        if !matches!(r.role, Role::Leader { .. }) || !r.replicas.contains(&replica) {
            return Err(AppendError::NotLeader);
        }
        let leo = self.log_end_offset();
        if fetch_offset > leo || fetch_offset < self.log_start_offset() {
            // Out of range (the read answers OFFSET_OUT_OF_RANGE): a follower with a divergent
            // tail must not count towards the high watermark or the ISR.
            return Ok(false);
        }
        r.followers
            .entry(replica)
            .or_insert_with(|| FollowerState::new(now_ms))
            .on_fetch(fetch_offset, leo, now_ms);
        self.update_hw_locked(&mut r);
        let hw = self.high_watermark();
        // This replica just fetched, so only its own position decides.
        let expand = !r.isr.contains(&replica)
            && r.followers
                .get(&replica)
                .is_some_and(|f| f.leo >= hw && f.leo >= r.epoch_start_offset);
        Ok(expand)
    }

    /// Leader: the ISR change due now (shrink first, then expand), if any. The caller sends it
    /// to the metadata store; until a newer stored state arrives it stays pending and is sent
    /// again as it is (its outcome may be unknown, e.g. the answer was lost), like Kafka's
    /// AlterPartition retries.
    pub fn isr_change_due(&self, now_ms: i64, lag_max_ms: i64) -> Option<IsrChange> {
        self.isr_change_due_excluding(now_ms, lag_max_ms, &std::collections::BTreeSet::new())
    }

    /// As `isr_change_due`, never adding a broker of `shutting_down` (in controlled shutdown:
    /// it is about to stop fetching, and acks=all writes would wait on it — KIP-841).
    pub fn isr_change_due_excluding(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        shutting_down: &std::collections::BTreeSet<i32>,
    ) -> Option<IsrChange> {
        let mut r = lock(&self.repl);
        let Role::Leader { epoch } = r.role else {
            return None;
        };
        r.settle_pending_isr();
        if let Some((_, ch)) = &r.pending_isr {
            return Some(ch.clone());
        }
        let (new_isr, shrink) =
            match isr::shrink_isr(r.me, &r.isr, &r.followers, now_ms, lag_max_ms) {
                Some(n) => (n, true),
                None => (
                    isr::expand_isr(
                        &r.isr,
                        &r.replicas
                            .iter()
                            .copied()
                            .filter(|x| !shutting_down.contains(x))
                            .collect::<Vec<i32>>(),
                        &r.followers,
                        self.high_watermark(),
                        r.epoch_start_offset,
                        now_ms,
                        lag_max_ms,
                    )?,
                    false,
                ),
            };
        let change = IsrChange {
            leader_epoch: epoch,
            partition_epoch: r.partition_epoch,
            new_isr,
            shrink,
        };
        r.pending_isr = Some((r.partition_epoch, change.clone()));
        Some(change)
    }

    /// Leader: the ISR write succeeded; adopt the stored state.
    pub fn apply_isr(&self, pm: &PartitionMeta) {
        let mut r = lock(&self.repl);
        if r.role
            != (Role::Leader {
                epoch: pm.leader_epoch,
            })
            || pm.partition_epoch < r.partition_epoch
        {
            return;
        }
        r.isr = pm.isr.clone();
        r.partition_epoch = pm.partition_epoch;
        r.settle_pending_isr();
        self.update_hw_locked(&mut r);
        drop(r);
        self.changed.notify_waiters();
    }

    /// Leader: in-sync followers whose log holds `offset` (KIP-392 read replicas), by id.
    pub fn in_sync_followers_holding(&self, offset: i64) -> Vec<i32> {
        let r = lock(&self.repl);
        let mut ids: Vec<i32> = r
            .isr
            .iter()
            .copied()
            .filter(|id| *id != r.me)
            .filter(|id| r.followers.get(id).is_some_and(|f| f.leo >= offset))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Leader: follower lags for metrics, (replica, leader LEO - follower LEO).
    pub fn follower_lags(&self) -> Vec<(i32, i64)> {
        let r = lock(&self.repl);
        let leo = self.log_end_offset();
        r.followers
            .iter()
            .map(|(id, f)| (*id, (leo - f.leo.max(0)).max(0)))
            .collect()
    }

    /// Leader: ISR smaller than the replica set.
    pub fn is_under_replicated(&self) -> bool {
        let r = lock(&self.repl);
        matches!(r.role, Role::Leader { .. }) && r.isr.len() < r.replicas.len()
    }

    /// acks=all: waits until the high watermark passes `last_offset`, appended as leader of
    /// `leader_epoch` (`Appended::leader_epoch`). Kafka's DelayedProduce: once committed, an ISR
    /// below min.insync.replicas still fails the request. Leadership in any other epoch is
    /// `NotLeader`: if it moved away and back, the batch may have been truncated meanwhile and
    /// the offset reused.
    pub async fn wait_committed(
        &self,
        leader_epoch: i32,
        last_offset: i64,
        timeout: Duration,
    ) -> Result<(), CommitError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let epoch0 = leader_epoch;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let r = lock(&self.repl);
                if r.role != (Role::Leader { epoch: epoch0 }) {
                    return Err(CommitError::NotLeader);
                }
                if self.high_watermark() > last_offset {
                    return if r.isr.len() < r.min_isr {
                        Err(CommitError::NotEnoughReplicas)
                    } else {
                        Ok(())
                    };
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(CommitError::Timeout);
            }
        }
    }

    /// Follower: whether the log must be reconciled with the leader before fetching, and the
    /// role it is for.
    pub fn needs_truncation(&self) -> bool {
        lock(&self.repl).needs_truncation
    }

    /// Follower: truncation for `epoch` done (ignored if the role moved on meanwhile).
    pub fn truncation_done(&self, epoch: i32) {
        let mut r = lock(&self.repl);
        if matches!(r.role, Role::Follower { epoch: e, .. } if e == epoch) {
            r.needs_truncation = false;
        }
    }

    /// Follower: the leader's high watermark arrived; ours is min(that, our log end).
    pub fn set_follower_hw(&self, leader_hw: i64) {
        // Under the log lock, which becoming leader takes too: a response handled just as
        // leadership arrived must not overwrite the new leader's own high watermark.
        let _st = read(&self.state);
        if self.is_leader() {
            return;
        }
        let hw = leader_hw.min(self.log_end_offset()).max(0);
        if self.hw.swap(hw, Ordering::AcqRel) != hw {
            self.changed.notify_waiters();
        }
    }

    /// Drops everything at and after `offset` (a follower's divergent tail) and rebuilds the
    /// idempotent-producer state from what remains. A leader's log is never cut (a follower's fetch response or truncation round that
    /// finishes just after leadership arrived here): it is a no-op there.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let mut st = write(&self.state);
        // Checked under the state lock, which every role change to leader also takes.
        if self.is_leader() {
            tracing::debug!(topic = %self.topic, partition = self.index, offset, "not truncating: this broker leads the partition now");
            return Ok(());
        }
        if offset >= st.log.log_end_offset() {
            // Nothing to cut, but the log still drops leader-epoch entries at its end (an epoch
            // this replica assigned as leader and never wrote in); without that, a truncation
            // round that cuts nothing would ask the leader about the same epoch again and again.
            return st.log.truncate_to(offset);
        }
        tracing::info!(topic = %self.topic, partition = self.index, from = st.log.log_end_offset(), to = offset, "truncating log");
        st.log.truncate_to(offset)?;
        st.producers = producer_state_of(&st.log)?;
        self.publish(&st.log);
        let leo = st.log.log_end_offset();
        if self.hw.load(Ordering::Acquire) > leo {
            self.hw.store(leo, Ordering::Release);
        }
        Ok(())
    }

    /// Follower: the leader's log starts above our end (OFFSET_OUT_OF_RANGE): drop everything
    /// and continue empty at the leader's log start.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        let mut st = write(&self.state);
        if self.is_leader() {
            return Ok(());
        }
        tracing::info!(topic = %self.topic, partition = self.index, start = offset, "follower restarts its log at the leader's log start");
        st.log.truncate_fully_and_start_at(offset)?;
        st.producers = ProducerStateTable::default();
        self.publish(&st.log);
        self.hw.store(st.log.log_end_offset(), Ordering::Release);
        Ok(())
    }

    /// Follower: appends batches fetched from the leader as they are (offsets, epochs,
    /// timestamps), and moves the idempotent-producer state with them so this replica can take
    /// over as leader. A trailing partial batch (the leader cut at its size limit) is left for
    /// the next fetch. Returns the new log end.
    pub fn append_replicated(&self, data: &[u8]) -> Result<i64, AppendError> {
        self.append_replicated_checked(data, |role, _| !matches!(role, Role::Leader { .. }))
    }

    /// [`Self::append_replicated`] of a fetch response from `leader` in `epoch`: refused
    /// (`NotLeader`) unless this replica still follows exactly that leader epoch and has
    /// reconciled its log with it. Checked under the log lock, which role changes take too, so
    /// a response that raced a leader change can never land after the new epoch's truncation
    /// (the old leader's divergent data would then sit below what this replica reports to the
    /// new leader as its log end).
    pub fn append_replicated_from(
        &self,
        leader: i32,
        epoch: i32,
        data: &[u8],
    ) -> Result<i64, AppendError> {
        self.append_replicated_checked(data, |role, needs_truncation| {
            role == Role::Follower { leader, epoch } && !needs_truncation
        })
    }

    fn append_replicated_checked(
        &self,
        data: &[u8],
        allowed: impl Fn(Role, bool) -> bool,
    ) -> Result<i64, AppendError> {
        let mut it = BatchIter::new(data);
        let headers: Vec<BatchHeader> = it.by_ref().map(|(_, h)| h).collect();
        let framed = it.position();
        let mut st = write(&self.state);
        {
            let r = lock(&self.repl);
            if !allowed(r.role, r.needs_truncation) {
                return Err(AppendError::NotLeader);
            }
        }
        if framed == 0 {
            return Ok(st.log.log_end_offset());
        }
        st.log.append_replicated(&data[..framed])?;
        for h in headers.iter().filter(|h| h.producer_id >= 0) {
            st.producers
                .record(h.producer_id, h.producer_epoch, batch_record(h));
        }
        self.publish(&st.log);
        Ok(st.log.log_end_offset())
    }

    /// The latest epoch in the leader-epoch cache, and this replica's end offset for `epoch`.
    pub fn latest_epoch(&self) -> Option<i32> {
        read(&self.state).log.latest_epoch()
    }

    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        read(&self.state).log.end_offset_for_epoch(epoch)
    }

    /// Writes the high watermark checkpoint (atomically: temp file, fsync, rename).
    pub fn checkpoint_hw(&self) -> std::io::Result<()> {
        use std::io::Write;
        let hw = self.high_watermark();
        if self.hw_checkpointed.load(Ordering::Acquire) == hw {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{HW_CHECKPOINT}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{hw}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(HW_CHECKPOINT))?;
        self.hw_checkpointed.store(hw, Ordering::Release);
        Ok(())
    }
}

/// Rebuilds the idempotent-producer table from the batch headers of a log.
fn producer_state_of(log: &PartitionLog) -> Result<ProducerStateTable, LogError> {
    let mut producers = ProducerStateTable::default();
    log.scan_headers(log.log_start_offset(), &mut |h: &BatchHeader| {
        if h.producer_id >= 0 {
            producers.record(h.producer_id, h.producer_epoch, batch_record(h));
        }
    })?;
    Ok(producers)
}

fn batch_record(h: &BatchHeader) -> BatchRecord {
    BatchRecord {
        first_seq: h.base_sequence,
        last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
        first_offset: h.base_offset,
        last_offset: h.last_offset(),
    }
}

/// Key of a hosted partition.
pub type PartitionKey = (String, i32);

/// Opens, reconfigures and deletes the logs of the partitions this broker hosts.
pub struct ReplicaManager {
    data_dir: PathBuf,
    broker_id: i32,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    /// Serialises `reconcile`: two concurrent metadata changes must not open one log twice.
    reconcile_lock: Mutex<()>,
    /// Woken after every append and high-watermark advance so that long-polling fetches
    /// return as soon as data is there for them.
    pub data_arrived: Arc<Notify>,
    /// Woken when a follower fetch suggests an ISR expansion (the ISR task acts on it).
    pub isr_work: Notify,
    /// Whether the data directory has been checked for stray partition logs (see
    /// `remove_stray_logs`).
    strays_checked: std::sync::atomic::AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("partition {topic}-{partition}: {source}")]
    Log {
        topic: String,
        partition: i32,
        #[source]
        source: LogError,
    },
    #[error("{0}")]
    Io(String),
}

impl ReplicaManager {
    pub fn new(data_dir: &Path, broker_id: i32) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            broker_id,
            partitions: RwLock::new(HashMap::new()),
            reconcile_lock: Mutex::new(()),
            data_arrived: Arc::new(Notify::new()),
            isr_work: Notify::new(),
            strays_checked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(topic.to_string(), partition)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Brings the hosted partitions in line with `view`: opens logs of new partitions, applies
    /// config changes, and deletes the logs of partitions whose topic is gone.
    ///
    /// The view is read after taking the reconcile lock, so a slower caller can never apply an
    /// older view over a newer one (which would delete a just-created topic's logs).
    pub fn reconcile(
        &self,
        current_view: impl Fn() -> Arc<ClusterView>,
        cfg: &BrokerConfig,
    ) -> Result<(), ReplicaError> {
        let _serial = self
            .reconcile_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let view = current_view();
        let view = view.as_ref();
        let dynamic_broker = view
            .broker_configs
            .get(&self.broker_id)
            .cloned()
            .unwrap_or_default();
        let mut wanted: HashMap<PartitionKey, (Uuid, LogConfig, PartitionMeta, usize)> =
            HashMap::new();
        for t in view.topics.values() {
            let resolved = topic_config::resolve_topic(
                cfg,
                &view.default_broker_configs,
                &dynamic_broker,
                &t.configs,
            );
            let log_cfg = topic_config::log_config(&resolved);
            let min_isr = resolved
                .iter()
                .find(|r| r.name == "min.insync.replicas")
                .and_then(|r| r.value.trim().parse::<usize>().ok())
                .unwrap_or(1);
            for p in &t.partitions {
                if p.replicas.contains(&self.broker_id) {
                    wanted.insert(
                        (t.name.clone(), p.index),
                        (t.id, log_cfg.clone(), p.clone(), min_isr),
                    );
                }
            }
        }

        let mut removed = Vec::new();
        {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.retain(|k, p| {
                let keep = wanted
                    .get(k)
                    .map(|(id, ..)| *id == p.topic_id)
                    .unwrap_or(false);
                if !keep {
                    removed.push(p.clone());
                }
                keep
            });
        }
        // Topic deleted or this broker reassigned away (Kafka's StopReplica with delete): the
        // fetcher drops it with the next metadata change, and the log goes.
        for p in removed {
            p.stop();
            tracing::info!(topic = %p.topic, partition = p.index, "deleting partition log");
            // Other holders of the Arc (an in-flight request) finish against the open files;
            // the directory goes now.
            if let Err(e) = std::fs::remove_dir_all(&p.dir) {
                tracing::warn!(dir = %p.dir.display(), error = %e, "could not delete partition directory");
            }
        }

        let now = crate::now_ms();
        for ((topic, index), (topic_id, log_cfg, meta, min_isr)) in wanted {
            if let Some(p) = self.get(&topic, index) {
                p.update_config(log_cfg);
                p.apply_meta(&meta, min_isr, now);
                continue;
            }
            let dir = self.partition_dir(&topic, index);
            self.claim_dir(&dir, topic_id)?;
            let p = Partition::open(
                dir,
                &topic,
                index,
                topic_id,
                log_cfg,
                self.broker_id,
                self.data_arrived.clone(),
            )
            .map_err(|source| ReplicaError::Log {
                topic: topic.clone(),
                partition: index,
                source,
            })?;
            p.apply_meta(&meta, min_isr, now);
            tracing::debug!(topic = %topic, partition = index, leo = p.log_end_offset(), hw = p.high_watermark(), "opened partition");
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.insert((topic, index), Arc::new(p));
        }
        if !view.topics.is_empty()
            && !self
                .strays_checked
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            self.remove_stray_logs(view);
        }
        Ok(())
    }

    /// Once, with the first non-empty view: deletes logs left on disk for partitions this
    /// broker is no longer a replica of (it was reassigned away while it was down; Kafka's
    /// stray logs). Only partitions the view shows with other replicas count: a topic or
    /// partition the view does not show yet is left alone.
    fn remove_stray_logs(&self, view: &ClusterView) {
        let entries = match std::fs::read_dir(&self.data_dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %self.data_dir.display(), error = %e, "cannot list the data directory for stray logs");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((topic, index)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(index) = index.parse::<i32>() else {
                continue;
            };
            let path = entry.path();
            if !path.join(PARTITION_METADATA).is_file() || self.get(topic, index).is_some() {
                continue;
            }
            let stray = view.topic(topic).is_some_and(|t| {
                t.partitions
                    .iter()
                    .any(|p| p.index == index && !p.replicas.contains(&self.broker_id))
            });
            if stray {
                tracing::info!(
                    topic,
                    partition = index,
                    "deleting the log of a partition no longer assigned here"
                );
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), error = %e, "could not delete stray partition directory");
                }
            }
        }
    }

    /// Makes sure `dir` belongs to the topic with `topic_id`: a directory left by a deleted topic
    /// of the same name (its id differs) is removed before the new topic uses the name.
    fn claim_dir(&self, dir: &Path, topic_id: Uuid) -> Result<(), ReplicaError> {
        let marker = dir.join(PARTITION_METADATA);
        let io = |what: &str, e: std::io::Error| {
            ReplicaError::Io(format!("{what} {}: {e}", marker.display()))
        };
        match std::fs::read_to_string(&marker) {
            Ok(s) => {
                let found = s
                    .lines()
                    .find_map(|l| l.strip_prefix("topic_id: "))
                    .and_then(|v| Uuid::parse_str(v.trim()).ok());
                match found {
                    Some(id) if id == topic_id => return Ok(()),
                    Some(_) => {
                        tracing::warn!(dir = %dir.display(), found = ?found, expected = %topic_id,
                            "removing partition directory of an earlier topic with the same name");
                        std::fs::remove_dir_all(dir).map_err(|e| io("remove stale", e))?;
                    }
                    // No id: a marker whose write was cut short (older brokers wrote it in
                    // place; a full disk left it empty). The marker is written before any
                    // data, so nothing of another topic can be in there: claim it again.
                    None => {
                        tracing::warn!(dir = %dir.display(), expected = %topic_id,
                            "partition.metadata holds no topic id; rewriting it")
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read", e)),
        }
        std::fs::create_dir_all(dir).map_err(|e| io("create dir for", e))?;
        match write_marker(&marker, topic_id) {
            Ok(()) => Ok(()),
            // Without room for the marker the directory is still ours (the topic id came
            // from the metadata); the next open writes it. Failing here would keep a broker
            // restarted on a full volume from starting at all.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "disk full: partition.metadata not written; the next open writes it");
                Ok(())
            }
            Err(e) => Err(io("write", e)),
        }
    }

    /// Flushes and closes every log (graceful shutdown), so the next start skips recovery scans.
    pub fn shutdown(&self) {
        let drained: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, p)| p).collect()
        };
        for p in drained {
            let (topic, index) = (p.topic.clone(), p.index);
            if let Err(e) = p.checkpoint_hw() {
                tracing::warn!(%topic, partition = index, error = %e, "high watermark checkpoint failed");
            }
            let result = match Arc::try_unwrap(p) {
                Ok(p) => p
                    .state
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .log
                    .close(),
                // Still referenced by a request that outlived the grace period: flush only.
                Err(p) => p.flush(),
            };
            if let Err(e) = result {
                tracing::error!(%topic, partition = index, error = %e, "closing log on shutdown failed");
            }
        }
    }
}

/// Writes `partition.metadata` whole or not at all: a temp file, fsynced, renamed over.
fn write_marker(marker: &Path, topic_id: Uuid) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = marker.with_extension("metadata.tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("version: 0\ntopic_id: {topic_id}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, marker)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod marker_tests {
    use super::*;

    #[test]
    fn a_marker_without_topic_id_is_rewritten_and_another_topics_dir_removed() {
        let data = tempfile::tempdir().unwrap();
        let replicas = ReplicaManager::new(data.path(), 0);
        let dir = data.path().join("t-0");
        std::fs::create_dir_all(&dir).unwrap();
        // What an in-place write cut short by a full disk left behind.
        std::fs::write(dir.join(PARTITION_METADATA), "").unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), "").unwrap();
        let ours = Uuid::from_u128(1);
        replicas.claim_dir(&dir, ours).unwrap();
        assert!(dir.join("00000000000000000000.log").exists());
        let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).unwrap();
        assert!(text.contains(&ours.to_string()), "{text}");
        assert!(!dir.join("partition.metadata.tmp").exists());
        // Claimed again by the same topic: kept. By another topic of that name: replaced.
        replicas.claim_dir(&dir, ours).unwrap();
        assert!(dir.join("00000000000000000000.log").exists());
        replicas.claim_dir(&dir, Uuid::from_u128(2)).unwrap();
        assert!(!dir.join("00000000000000000000.log").exists());
        let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).unwrap();
        assert!(text.contains(&Uuid::from_u128(2).to_string()), "{text}");
    }
}
