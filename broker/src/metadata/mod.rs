//! Cluster and topic metadata behind one interface.
//!
//! Request handlers read an immutable [`ClusterView`] snapshot and ask the [`MetadataStore`] for
//! changes. Standalone mode keeps the metadata in the broker's data directory
//! ([`standalone::LocalMetadataStore`]); cluster mode implements the same trait on the
//! coordinator (ZooKeeper protocol, [`crate::cluster::zk_store::ZkMetadataStore`]), so the
//! handlers do not depend on the mode.

pub mod model;
pub mod placement;
pub mod standalone;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

pub use model::{BrokerMeta, ClusterView, PartitionMeta, Reassigning, TopicMeta};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("metadata storage failed: {0}")]
    Storage(String),
    /// The caller is no longer entitled to the change: its leader epoch, partition epoch or
    /// controller epoch is stale (a newer leader or controller exists).
    #[error("fenced: {0}")]
    Fenced(String),
    /// The coordinator cannot be reached (or this broker's session is gone): nothing was changed.
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
    /// The change was accepted but did not take effect before the deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// This mode of the broker cannot do it (e.g. reassignment in standalone mode).
    #[error("{0}")]
    NotSupported(String),
}

/// A topic to create, already validated and placed.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// Replicas of each partition, index = partition id; the first replica is the preferred leader.
    pub assignment: Vec<Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

#[async_trait]
pub trait MetadataStore: Send + Sync {
    /// The current metadata, as one consistent snapshot.
    fn view(&self) -> Arc<ClusterView>;
    /// Fires with the new version after every change.
    fn subscribe(&self) -> watch::Receiver<u64>;
    async fn create_topic(&self, topic: NewTopic) -> Result<Arc<TopicMeta>, MetadataError>;
    async fn delete_topic(&self, name: &str) -> Result<(), MetadataError>;
    /// Appends partitions with the given replica lists.
    async fn add_partitions(
        &self,
        name: &str,
        new_assignment: Vec<Vec<i32>>,
    ) -> Result<Arc<TopicMeta>, MetadataError>;
    /// Replaces the topic's config overrides.
    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError>;
    /// Replaces dynamic broker configs (`None` = cluster-wide default, `Some(id)` = one broker).
    async fn set_broker_configs(
        &self,
        broker: Option<i32>,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError>;
    /// Reserves `count` producer ids and returns the first.
    async fn allocate_producer_ids(&self, count: i64) -> Result<i64, MetadataError>;

    /// Leader only: replaces the in-sync replica set of a partition this broker leads (Kafka's
    /// AlterPartition; in ZooKeeper mode the leader's conditional write of the state znode).
    /// Compare-and-set on `partition_epoch`; `Fenced` when leadership or the state moved on.
    /// Returns the partition's new state.
    async fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    ) -> Result<PartitionMeta, MetadataError>;

    /// Controlled shutdown: asks the controller to move leadership of every partition this
    /// broker leads to another in-sync replica and to drop it from ISRs, and returns once the
    /// view shows it leads nothing that has another in-sync replica (or `Timeout`).
    async fn controlled_shutdown(&self, timeout: std::time::Duration) -> Result<(), MetadataError>;

    /// Whether `reassign_partitions` can work here (cluster mode).
    fn supports_reassignment(&self) -> bool {
        false
    }

    /// Asks the controller to move partitions to new replicas (`Some`) or to cancel their move
    /// in progress (`None`), Kafka's AlterPartitionReassignments. Returns once the controller
    /// has begun every move (or `Timeout` after `timeout`); the rest happens in the background
    /// (the view's `reassignments` show the moves in progress). Only cluster mode can move
    /// replicas.
    async fn reassign_partitions(
        &self,
        requests: Vec<(String, i32, Option<Vec<i32>>)>,
        timeout: std::time::Duration,
    ) -> Result<(), MetadataError> {
        let _ = (requests, timeout);
        Err(MetadataError::NotSupported(
            "partition reassignment needs cluster mode (--coordinator)".into(),
        ))
    }

    /// True while this broker must not act as a leader: in cluster mode, when its coordinator
    /// session is lost or expired (a newer leader may exist). Standalone: never.
    fn is_fenced(&self) -> bool {
        false
    }
}
