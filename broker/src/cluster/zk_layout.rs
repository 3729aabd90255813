//! Where cluster metadata lives in the coordinator's tree, and the JSON of each node.
//!
//! Modelled on Kafka's ZooKeeper-mode layout, so that anyone who has looked inside a Kafka
//! ZooKeeper recognises it (paths are relative to the optional chroot of `--coordinator`):
//!
//! | path | kind | content |
//! |---|---|---|
//! | `/cluster/id` | persistent | [`ClusterIdZnode`] |
//! | `/brokers/ids/<id>` | ephemeral | [`BrokerZnode`]: a live, registered broker |
//! | `/brokers/topics/<topic>` | persistent | [`TopicZnode`]: topic id + replica assignment |
//! | `/brokers/topics/<topic>/partitions/<p>/state` | persistent | [`PartitionStateZnode`]; its znode version is the partition epoch |
//! | `/controller` | ephemeral | [`ControllerZnode`]: who is controller |
//! | `/controller_epoch` | persistent | decimal controller epoch; its znode version fences stale controllers |
//! | `/config/topics/<topic>` | persistent | [`ConfigZnode`] (topic overrides) |
//! | `/config/brokers/<default\|id>` | persistent | [`ConfigZnode`] (dynamic broker configs) |
//! | `/admin/delete_topics/<topic>` | persistent | empty: a deletion the controller carries out |
//! | `/admin/controlled_shutdown/<id>` | ephemeral | empty: broker `id` asks to hand over leadership |
//! | `/admin/reassign_partitions` | persistent | [`ReassignmentZnode`]: requested reassignments the controller has not begun |
//! | `/latest_producer_id_block` | persistent | [`ProducerIdBlockZnode`], updated with compare-and-set |
//!
//! Writers: brokers register themselves, create topic znodes (CreateTopics/CreatePartitions),
//! write configs, request deletions and controlled shutdowns, reserve producer-id blocks, and —
//! as partition leaders — write ISR changes to the state znode with compare-and-set. Everything
//! else (partition state creation, leader election, deletion) is the controller's, and every
//! controller write is a `multi` that also checks the `/controller_epoch` znode version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const CLUSTER_ID: &str = "/cluster/id";
pub const BROKER_IDS: &str = "/brokers/ids";
pub const TOPICS: &str = "/brokers/topics";
pub const CONTROLLER: &str = "/controller";
pub const CONTROLLER_EPOCH: &str = "/controller_epoch";
pub const CONFIG_TOPICS: &str = "/config/topics";
pub const CONFIG_BROKERS: &str = "/config/brokers";
pub const DELETE_TOPICS: &str = "/admin/delete_topics";
pub const CONTROLLED_SHUTDOWN: &str = "/admin/controlled_shutdown";
pub const PRODUCER_ID_BLOCK: &str = "/latest_producer_id_block";
pub const REASSIGN_PARTITIONS: &str = "/admin/reassign_partitions";

/// Persistent parents created (idempotently) by every broker at start-up.
pub const PERSISTENT_PARENTS: &[&str] = &[
    "/cluster",
    "/brokers",
    BROKER_IDS,
    TOPICS,
    "/config",
    CONFIG_TOPICS,
    CONFIG_BROKERS,
    "/admin",
    DELETE_TOPICS,
    CONTROLLED_SHUTDOWN,
];

/// The `<default>` entity of `/config/brokers`.
pub const DEFAULT_BROKER_ENTITY: &str = "<default>";

pub fn broker_path(id: i32) -> String {
    format!("{BROKER_IDS}/{id}")
}

pub fn topic_path(topic: &str) -> String {
    format!("{TOPICS}/{topic}")
}

pub fn partitions_path(topic: &str) -> String {
    format!("{TOPICS}/{topic}/partitions")
}

pub fn partition_path(topic: &str, partition: i32) -> String {
    format!("{TOPICS}/{topic}/partitions/{partition}")
}

pub fn partition_state_path(topic: &str, partition: i32) -> String {
    format!("{TOPICS}/{topic}/partitions/{partition}/state")
}

pub fn topic_config_path(topic: &str) -> String {
    format!("{CONFIG_TOPICS}/{topic}")
}

/// `None` = the cluster-wide `<default>` entity.
pub fn broker_config_path(broker: Option<i32>) -> String {
    match broker {
        Some(id) => format!("{CONFIG_BROKERS}/{id}"),
        None => format!("{CONFIG_BROKERS}/{DEFAULT_BROKER_ENTITY}"),
    }
}

pub fn delete_topic_path(topic: &str) -> String {
    format!("{DELETE_TOPICS}/{topic}")
}

pub fn controlled_shutdown_path(id: i32) -> String {
    format!("{CONTROLLED_SHUTDOWN}/{id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdZnode {
    pub version: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerZnode {
    pub version: i32,
    pub host: String,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Kafka's listener URLs, e.g. `PLAINTEXT://host:9092`.
    pub endpoints: Vec<String>,
    /// Registration time, ms since the epoch, as a string (as Kafka writes it).
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicZnode {
    pub version: i32,
    /// Kafka writes `topic_id` as base64 of the UUID; we write the UUID's hyphenated form.
    pub topic_id: String,
    /// Partition id (decimal string) → replicas, the first being the preferred leader.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// Internal topics (`__consumer_offsets`) are hidden from some listings.
    #[serde(default)]
    pub internal: bool,
    /// Partitions being reassigned (KIP-455): partition → replicas being added (TRS − ORS).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub adding_replicas: BTreeMap<String, Vec<i32>>,
    /// Partition → replicas being removed (ORS − TRS).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removing_replicas: BTreeMap<String, Vec<i32>>,
}

/// `/admin/reassign_partitions`: Kafka's reassignment JSON. Written by any broker (merged with
/// compare-and-set), consumed by the controller when it begins each move.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReassignmentZnode {
    pub version: i32,
    pub partitions: Vec<ReassignmentEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentEntry {
    pub topic: String,
    pub partition: i32,
    /// Target replicas; `null` cancels the reassignment in progress (our extension of Kafka's
    /// format, which the AlterPartitionReassignments API needs).
    pub replicas: Option<Vec<i32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStateZnode {
    pub version: i32,
    pub controller_epoch: i32,
    /// -1 when no replica can lead (all in-sync replicas are gone and unclean election is off).
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerZnode {
    pub version: i32,
    pub brokerid: i32,
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfigZnode {
    pub version: i32,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlockZnode {
    pub version: i32,
    pub broker: i32,
    /// Decimal strings, as Kafka writes them (they exceed JavaScript's safe integers).
    pub block_start: String,
    pub block_end: String,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed znode {path}: {source}")]
pub struct ZnodeDecodeError {
    pub path: String,
    #[source]
    pub source: serde_json::Error,
}

/// Decodes a znode's JSON, naming the path in the error (data from the coordinator is input).
pub fn decode<T: serde::de::DeserializeOwned>(
    path: &str,
    data: &[u8],
) -> Result<T, ZnodeDecodeError> {
    serde_json::from_slice(data).map_err(|source| ZnodeDecodeError {
        path: path.to_string(),
        source,
    })
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail (string keys, no non-finite floats).
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_kafkas_layout() {
        assert_eq!(broker_path(3), "/brokers/ids/3");
        assert_eq!(
            partition_state_path("orders", 7),
            "/brokers/topics/orders/partitions/7/state"
        );
        assert_eq!(broker_config_path(None), "/config/brokers/<default>");
        assert_eq!(broker_config_path(Some(2)), "/config/brokers/2");
    }

    #[test]
    fn topic_znode_reads_kafkas_reassignment_fields() {
        let json = br#"{"version":3,"topic_id":"x","partitions":{"0":[1,2,0]},
            "adding_replicas":{"0":[2]},"removing_replicas":{"0":[0]}}"#;
        let t: TopicZnode = decode("/t", json).unwrap();
        assert_eq!(t.adding_replicas["0"], vec![2]);
        assert_eq!(t.removing_replicas["0"], vec![0]);
        // Idle topics are written without them, as before.
        let idle = TopicZnode {
            adding_replicas: BTreeMap::new(),
            removing_replicas: BTreeMap::new(),
            ..t
        };
        assert!(!String::from_utf8(encode(&idle)).unwrap().contains("adding"));
        let r: ReassignmentZnode = decode(
            "/r",
            br#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2]},
                {"topic":"t","partition":1,"replicas":null}]}"#,
        )
        .unwrap();
        assert_eq!(r.partitions[0].replicas, Some(vec![1, 2]));
        assert_eq!(r.partitions[1].replicas, None);
    }

    #[test]
    fn state_roundtrips_and_bad_json_names_the_path() {
        let s = PartitionStateZnode {
            version: 1,
            controller_epoch: 4,
            leader: 2,
            leader_epoch: 9,
            isr: vec![2, 0],
        };
        let bytes = encode(&s);
        let back: PartitionStateZnode = decode("/x", &bytes).unwrap();
        assert_eq!(back, s);
        let err = decode::<PartitionStateZnode>("/brokers/topics/t/partitions/0/state", b"{")
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("/brokers/topics/t/partitions/0/state"));
    }
}
