//! The partitions this broker hosts: each one a `PartitionLog` plus its idempotent-producer state,
//! and the `ReplicaManager` that opens, reconfigures and deletes them as metadata changes.

pub mod producer_state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rivulet_storage::{
    AppendResult, BatchHeader, CompactionStats, LogConfig, LogError, PartitionLog, ReadResult,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::metadata::ClusterView;
use crate::topic_config;
use producer_state::{BatchRecord, ProducerStateTable, SequenceCheck};

const PARTITION_METADATA: &str = "partition.metadata";

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
}

/// What an append did.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time: i64,
    pub log_start_offset: i64,
    pub duplicate: bool,
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
}

// A panic while holding the lock cannot leave the log half-written in memory: the log's own
// invariants are re-established on every call, so keep serving after a poisoned lock.
fn write(m: &RwLock<PartitionState>) -> RwLockWriteGuard<'_, PartitionState> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

fn read(m: &RwLock<PartitionState>) -> RwLockReadGuard<'_, PartitionState> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

impl Partition {
    fn open(
        dir: PathBuf,
        topic: &str,
        index: i32,
        topic_id: Uuid,
        config: LogConfig,
    ) -> Result<Self, LogError> {
        let log = PartitionLog::open(&dir, config)?;
        let mut producers = ProducerStateTable::default();
        log.scan_headers(log.log_start_offset(), &mut |h: &BatchHeader| {
            if h.producer_id >= 0 {
                producers.record(
                    h.producer_id,
                    h.producer_epoch,
                    BatchRecord {
                        first_seq: h.base_sequence,
                        last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
                        first_offset: h.base_offset,
                        last_offset: h.last_offset(),
                    },
                );
            }
        })?;
        let p = Self {
            topic: topic.to_string(),
            index,
            topic_id,
            dir,
            log_end: AtomicI64::new(log.log_end_offset()),
            log_start: AtomicI64::new(log.log_start_offset()),
            size: AtomicU64::new(log.size_bytes()),
            state: RwLock::new(PartitionState { log, producers }),
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

    /// Standalone: everything appended is committed, so the high watermark is the log end.
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    pub fn size_bytes(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// Appends validated batches, enforcing idempotent-producer sequences.
    pub fn append(
        &self,
        batches: &mut [u8],
        headers: &[BatchHeader],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Appended, AppendError> {
        let mut st = write(&self.state);
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
        Ok(Appended {
            base_offset: r.base_offset,
            last_offset: r.last_offset,
            log_append_time: r.log_append_time,
            log_start_offset: r.log_start_offset,
            duplicate: false,
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

    pub fn maybe_flush(&self, now_ms: i64) -> Result<(), LogError> {
        write(&self.state).log.maybe_flush(now_ms)
    }

    pub fn flush(&self) -> Result<(), LogError> {
        write(&self.state).log.flush()
    }

    fn update_config(&self, config: LogConfig) {
        write(&self.state).log.update_config(config);
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
    /// Woken after every append so that long-polling fetches return as soon as data arrives.
    pub data_arrived: Notify,
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
            data_arrived: Notify::new(),
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
        let mut wanted: HashMap<PartitionKey, (Uuid, LogConfig)> = HashMap::new();
        for t in view.topics.values() {
            let resolved = topic_config::resolve_topic(
                cfg,
                &view.default_broker_configs,
                &dynamic_broker,
                &t.configs,
            );
            let log_cfg = topic_config::log_config(&resolved);
            for p in &t.partitions {
                if p.replicas.contains(&self.broker_id) {
                    wanted.insert((t.name.clone(), p.index), (t.id, log_cfg.clone()));
                }
            }
        }

        let mut removed = Vec::new();
        {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.retain(|k, p| {
                let keep = wanted
                    .get(k)
                    .map(|(id, _)| *id == p.topic_id)
                    .unwrap_or(false);
                if !keep {
                    removed.push(p.clone());
                }
                keep
            });
        }
        for p in removed {
            tracing::info!(topic = %p.topic, partition = p.index, "deleting partition log");
            // Other holders of the Arc (an in-flight request) finish against the open files;
            // the directory goes now.
            if let Err(e) = std::fs::remove_dir_all(&p.dir) {
                tracing::warn!(dir = %p.dir.display(), error = %e, "could not delete partition directory");
            }
        }

        for ((topic, index), (topic_id, log_cfg)) in wanted {
            if let Some(p) = self.get(&topic, index) {
                p.update_config(log_cfg);
                continue;
            }
            let dir = self.partition_dir(&topic, index);
            self.claim_dir(&dir, topic_id)?;
            let p = Partition::open(dir, &topic, index, topic_id, log_cfg).map_err(|source| {
                ReplicaError::Log {
                    topic: topic.clone(),
                    partition: index,
                    source,
                }
            })?;
            tracing::debug!(topic = %topic, partition = index, leo = p.log_end_offset(), "opened partition");
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.insert((topic, index), Arc::new(p));
        }
        Ok(())
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
                if found == Some(topic_id) {
                    return Ok(());
                }
                tracing::warn!(dir = %dir.display(), found = ?found, expected = %topic_id,
                    "removing partition directory of an earlier topic with the same name");
                std::fs::remove_dir_all(dir).map_err(|e| io("remove stale", e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read", e)),
        }
        std::fs::create_dir_all(dir).map_err(|e| io("create dir for", e))?;
        std::fs::write(&marker, format!("version: 0\ntopic_id: {topic_id}\n"))
            .map_err(|e| io("write", e))?;
        Ok(())
    }

    /// Flushes and closes every log (graceful shutdown), so the next start skips recovery scans.
    pub fn shutdown(&self) {
        let drained: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, p)| p).collect()
        };
        for p in drained {
            let (topic, index) = (p.topic.clone(), p.index);
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
