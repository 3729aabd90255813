//! Plain metadata values shared by the handlers and the stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub id: i32,
    /// The inter-broker listener's endpoint (what replication connects to).
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Every advertised listener; empty means the single PLAINTEXT one at host:port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<crate::security::listeners::ListenerEndpoint>,
}

impl BrokerMeta {
    /// host:port of the named listener on this broker, if it has one.
    pub fn endpoint_for(&self, listener: &str) -> Option<(&str, i32)> {
        if self.endpoints.is_empty() {
            return (listener == "PLAINTEXT").then_some((self.host.as_str(), self.port));
        }
        self.endpoints
            .iter()
            .find(|e| e.name == listener)
            .map(|e| (e.host.as_str(), e.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub index: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Version of the partition's state (the coordinator's znode version in cluster mode): every
    /// leader/ISR change bumps it, and ISR writes are compare-and-set on it.
    #[serde(default)]
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level overrides only; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
}

impl TopicMeta {
    pub fn replication_factor(&self) -> i16 {
        self.partitions
            .first()
            .map(|p| p.replicas.len() as i16)
            .unwrap_or(0)
    }
}

/// One consistent snapshot of everything the handlers need to know about the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub version: u64,
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<BrokerMeta>,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Dynamic cluster-wide broker configs (Kafka's `<default>` broker entity).
    pub default_broker_configs: BTreeMap<String, String>,
    /// Dynamic per-broker configs.
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// Brokers in controlled shutdown: leaders must not add them back to an ISR (KIP-841), or
    /// acks=all writes would wait on a replica that is about to stop fetching.
    pub shutting_down: std::collections::BTreeSet<i32>,
    /// Partitions being reassigned (cluster mode): (topic, partition) → what is moving.
    pub reassignments: BTreeMap<(String, i32), Reassigning>,
}

/// A partition reassignment in progress: its `replicas` (in `PartitionMeta`) are the target
/// replicas followed by the original ones not in the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reassigning {
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl ClusterView {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMeta>> {
        self.topics.values().find(|t| &t.id == id)
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerMeta> {
        self.brokers.iter().find(|b| b.id == id)
    }
}
