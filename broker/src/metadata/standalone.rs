//! Standalone metadata: one broker that is its own controller and keeps topics, dynamic configs
//! and the producer-id counter in `<data-dir>/__cluster_metadata/metadata.json`, replaced
//! atomically (write temp, fsync, rename, fsync directory) on every change.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

use super::{
    BrokerMeta, ClusterView, MetadataError, MetadataStore, NewTopic, PartitionMeta, TopicMeta,
};

const DIR: &str = "__cluster_metadata";
const FILE: &str = "metadata.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    cluster_id: String,
    topics: Vec<TopicMeta>,
    #[serde(default)]
    default_broker_configs: BTreeMap<String, String>,
    #[serde(default)]
    broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    next_producer_id: i64,
}

pub struct LocalMetadataStore {
    path: PathBuf,
    broker: BrokerMeta,
    state: Mutex<Persisted>,
    view: RwLock<Arc<ClusterView>>,
    changes: watch::Sender<u64>,
}

impl LocalMetadataStore {
    /// Opens (or initialises) the metadata of a standalone broker.
    pub fn open(data_dir: &Path, broker: BrokerMeta) -> Result<Self, MetadataError> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| MetadataError::Storage(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Persisted>(&bytes).map_err(|e| {
                MetadataError::Storage(format!("{} is not valid metadata: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh = Persisted {
                    cluster_id: new_cluster_id(),
                    ..Default::default()
                };
                write_atomically(&path, &fresh)?;
                fresh
            }
            Err(e) => {
                return Err(MetadataError::Storage(format!(
                    "read {}: {e}",
                    path.display()
                )))
            }
        };
        let view = build_view(&state, &broker, 0);
        let (changes, _) = watch::channel(0);
        Ok(Self {
            path,
            broker,
            state: Mutex::new(state),
            view: RwLock::new(Arc::new(view)),
            changes,
        })
    }

    /// Persists `next` and publishes it; on a storage error nothing changes.
    fn commit(&self, current: &mut Persisted, next: Persisted) -> Result<(), MetadataError> {
        write_atomically(&self.path, &next)?;
        *current = next;
        let version = self.changes.borrow().wrapping_add(1);
        let view = Arc::new(build_view(current, &self.broker, version));
        match self.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
        self.changes.send_replace(version);
        Ok(())
    }
}

pub(crate) fn new_cluster_id() -> String {
    // Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut bits: u128 = u128::from_be_bytes(bytes);
    let mut out = String::with_capacity(22);
    for _ in 0..22 {
        out.push(ALPHABET[(bits & 63) as usize] as char);
        bits >>= 6;
    }
    out
}

fn build_view(p: &Persisted, broker: &BrokerMeta, version: u64) -> ClusterView {
    ClusterView {
        version,
        cluster_id: p.cluster_id.clone(),
        controller_id: broker.id,
        brokers: vec![broker.clone()],
        topics: p
            .topics
            .iter()
            .map(|t| (t.name.clone(), Arc::new(t.clone())))
            .collect(),
        default_broker_configs: p.default_broker_configs.clone(),
        broker_configs: p.broker_configs.clone(),
        shutting_down: Default::default(),
        reassignments: Default::default(),
    }
}

fn write_atomically(path: &Path, value: &Persisted) -> Result<(), MetadataError> {
    let err = |op: &str, e: std::io::Error| {
        MetadataError::Storage(format!("{op} {}: {e}", path.display()))
    };
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| MetadataError::Storage(format!("encode metadata: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| err("create", e))?;
    f.write_all(&bytes).map_err(|e| err("write", e))?;
    f.sync_all().map_err(|e| err("fsync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| err("rename", e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err("fsync dir of", e))?;
    }
    Ok(())
}

fn partitions_from(assignment: &[Vec<i32>], first: i32) -> Vec<PartitionMeta> {
    assignment
        .iter()
        .enumerate()
        .map(|(i, replicas)| PartitionMeta {
            index: first + i as i32,
            leader: replicas.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            replicas: replicas.clone(),
            isr: replicas.clone(),
            partition_epoch: 0,
        })
        .collect()
}

#[async_trait]
impl MetadataStore for LocalMetadataStore {
    fn view(&self) -> Arc<ClusterView> {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    async fn create_topic(&self, topic: NewTopic) -> Result<Arc<TopicMeta>, MetadataError> {
        let mut state = self.state.lock().await;
        if state.topics.iter().any(|t| t.name == topic.name) {
            return Err(MetadataError::TopicExists(topic.name));
        }
        if topic.assignment.is_empty() {
            return Err(MetadataError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        let meta = TopicMeta {
            internal: topic.name.starts_with("__"),
            name: topic.name,
            id: Uuid::new_v4(),
            partitions: partitions_from(&topic.assignment, 0),
            configs: topic.configs,
        };
        let mut next = state.clone();
        next.topics.push(meta.clone());
        self.commit(&mut state, next)?;
        Ok(Arc::new(meta))
    }

    async fn delete_topic(&self, name: &str) -> Result<(), MetadataError> {
        let mut state = self.state.lock().await;
        if !state.topics.iter().any(|t| t.name == name) {
            return Err(MetadataError::UnknownTopic(name.to_string()));
        }
        let mut next = state.clone();
        next.topics.retain(|t| t.name != name);
        self.commit(&mut state, next)
    }

    async fn add_partitions(
        &self,
        name: &str,
        new_assignment: Vec<Vec<i32>>,
    ) -> Result<Arc<TopicMeta>, MetadataError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let topic = next
            .topics
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        let first = topic.partitions.len() as i32;
        topic
            .partitions
            .extend(partitions_from(&new_assignment, first));
        let meta = Arc::new(topic.clone());
        self.commit(&mut state, next)?;
        Ok(meta)
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let topic = next
            .topics
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        topic.configs = configs;
        self.commit(&mut state, next)
    }

    async fn set_broker_configs(
        &self,
        broker: Option<i32>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        match broker {
            None => next.default_broker_configs = configs,
            Some(id) => {
                next.broker_configs.insert(id, configs);
            }
        }
        self.commit(&mut state, next)
    }

    async fn allocate_producer_ids(&self, count: i64) -> Result<i64, MetadataError> {
        let mut state = self.state.lock().await;
        let first = state.next_producer_id;
        let mut next = state.clone();
        next.next_producer_id = first
            .checked_add(count)
            .ok_or_else(|| MetadataError::Storage("producer ids exhausted".into()))?;
        self.commit(&mut state, next)?;
        Ok(first)
    }

    /// A standalone broker is the only replica: its ISR is itself and never changes.
    async fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        _leader_epoch: i32,
        _partition_epoch: i32,
        _new_isr: Vec<i32>,
    ) -> Result<PartitionMeta, MetadataError> {
        self.view()
            .topic(topic)
            .and_then(|t| t.partitions.iter().find(|p| p.index == partition).cloned())
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))
    }

    /// Nothing to hand over: there is no other broker.
    async fn controlled_shutdown(
        &self,
        _timeout: std::time::Duration,
    ) -> Result<(), MetadataError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> BrokerMeta {
        BrokerMeta {
            id: 0,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            endpoints: vec![],
        }
    }

    #[tokio::test]
    async fn topics_and_producer_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMetadataStore::open(dir.path(), broker()).unwrap();
        let cluster_id = store.view().cluster_id.clone();
        assert_eq!(cluster_id.len(), 22);
        let t = store
            .create_topic(NewTopic {
                name: "orders".into(),
                assignment: vec![vec![0], vec![0]],
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            })
            .await
            .unwrap();
        assert!(matches!(
            store
                .create_topic(NewTopic {
                    name: "orders".into(),
                    assignment: vec![vec![0]],
                    configs: Default::default()
                })
                .await,
            Err(MetadataError::TopicExists(_))
        ));
        store.add_partitions("orders", vec![vec![0]]).await.unwrap();
        assert_eq!(store.allocate_producer_ids(1000).await.unwrap(), 0);
        assert_eq!(store.allocate_producer_ids(1000).await.unwrap(), 1000);
        drop(store);

        let store = LocalMetadataStore::open(dir.path(), broker()).unwrap();
        let view = store.view();
        assert_eq!(view.cluster_id, cluster_id);
        let orders = view.topic("orders").unwrap();
        assert_eq!(orders.id, t.id);
        assert_eq!(orders.partitions.len(), 3);
        assert_eq!(orders.configs["retention.ms"], "1000");
        assert_eq!(store.allocate_producer_ids(1).await.unwrap(), 2000);
        store.delete_topic("orders").await.unwrap();
        assert!(store.view().topic("orders").is_none());
    }

    #[test]
    fn corrupt_metadata_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        std::fs::write(dir.path().join(DIR).join(FILE), b"{not json").unwrap();
        let err = LocalMetadataStore::open(dir.path(), broker())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not valid metadata"), "{err}");
    }
}
