//! A small async Kafka admin client on the `kafka-protocol` crate: topics (describe, create,
//! grow partitions, delete), topic and broker configs (describe, incremental alter), cluster
//! metadata with partition placement, partition reassignments (KIP-455) and log-dir usage. Written for the operator and for broker-to-broker use, so it has no
//! Kubernetes or operator knowledge.
//!
//! One [`Connection`] is one TCP socket with sequential request/response exchanges; the
//! [`AdminClient`] keeps one connection per broker and sends controller-only requests
//! (create/delete topics, create partitions) to the controller named by Metadata.

mod connection;
mod partitions;
pub mod security;
mod user_admin;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

pub use connection::Connection;
pub use partitions::{PartitionInfo, PartitionsView, MIN_INSYNC_REPLICAS};
pub use security::{ClientSecurity, SaslCredentials, SaslMechanism};
pub use user_admin::{
    acl, salted_password, AclBinding, AclFilter, ScramCredentialInfo, ScramMechanism,
    SCRAM_MIN_ITERATIONS,
};

/// Kafka's config resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's config resource type of a broker ("" is the cluster-wide default entity).
const RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// DescribeConfigs config source meaning "set on the topic".
pub const SOURCE_TOPIC_CONFIG: i8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("no bootstrap address could be reached: {0}")]
    NoBroker(String),
    #[error("I/O with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("request to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("encoding or decoding {api}: {message}")]
    Codec { api: &'static str, message: String },
    #[error("broker does not support {api} in a version this client speaks")]
    Unsupported { api: &'static str },
    #[error("{api} on {resource}: {error:?}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        api: &'static str,
        resource: String,
        error: ResponseError,
        message: Option<String>,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("authentication failed: {0}")]
    Auth(String),
}

impl Error {
    /// The Kafka error code's kind, when this is a broker-reported error.
    pub fn kafka_error(&self) -> Option<&ResponseError> {
        match self {
            Error::Kafka { error, .. } => Some(error),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// DescribeConfigs entries by name.
fn config_entries(
    configs: Vec<
        kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult,
    >,
) -> BTreeMap<String, ConfigEntry> {
    configs
        .into_iter()
        .map(|c| {
            (
                c.name.to_string(),
                ConfigEntry {
                    value: c.value.map(|v| v.to_string()),
                    source: c.config_source,
                    read_only: c.read_only,
                },
            )
        })
        .collect()
}

fn check(api: &'static str, resource: &str, code: i16, message: Option<&StrBytes>) -> Result<()> {
    match code.err() {
        None => Ok(()),
        Some(error) => Err(Error::Kafka {
            api,
            resource: resource.to_string(),
            error,
            message: message.map(|m| m.to_string()),
        }),
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// SET and DELETE operations of IncrementalAlterConfigs.
fn alterable(set: &BTreeMap<String, String>, delete: &[String]) -> Vec<AlterableConfig> {
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(sb(k))
                .with_config_operation(OP_SET)
                .with_value(Some(sb(v)))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(sb(k))
            .with_config_operation(OP_DELETE)
            .with_value(None)
    }));
    configs
}

/// A broker as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A topic as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// UUID, empty when the broker's Metadata version carries none.
    pub id: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub internal: bool,
}

/// One config entry of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub value: Option<String>,
    /// Kafka's config source (1 = set on the topic, 5 = static broker config, 5/6 = defaults).
    pub source: i8,
    pub read_only: bool,
}

/// A broker log directory's capacity and use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogDirInfo {
    pub path: String,
    pub total_bytes: i64,
    pub usable_bytes: i64,
    /// Sum of the partition sizes in the directory.
    pub used_by_partitions: i64,
}

/// Cluster view from Metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
}

/// One partition's placement, as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionPlacement {
    pub index: i32,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A topic and its partitions' placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPlacement {
    pub name: String,
    pub internal: bool,
    /// Ordered by index.
    pub partitions: Vec<PartitionPlacement>,
}

/// Brokers (with racks), the controller and every topic's placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterState {
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicPlacement>,
}

/// A reassignment in progress (ListPartitionReassignments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    /// Current replica set: the target's replicas, then those being removed.
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// A requested move: a partition's target replicas, or `None` to cancel its move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReassignmentRequest {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// An admin client over a bootstrap list.
pub struct AdminClient {
    bootstrap: Vec<String>,
    timeout: Duration,
    /// Connection to any broker (the first bootstrap address that answered).
    any: Connection,
    /// Connections by broker id (controller and log-dir requests).
    by_id: HashMap<i32, Connection>,
    security: ClientSecurity,
}

impl AdminClient {
    /// Connects to the first reachable address of `bootstrap` (comma-separated `host:port`).
    pub async fn connect(bootstrap: &str, timeout: Duration) -> Result<Self> {
        Self::connect_with(bootstrap, timeout, ClientSecurity::plaintext()).await
    }

    /// As [`Self::connect`], every connection authenticating as `security` says.
    pub async fn connect_with(
        bootstrap: &str,
        timeout: Duration,
        security: ClientSecurity,
    ) -> Result<Self> {
        let addrs: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let mut errors = Vec::new();
        for a in &addrs {
            match Connection::connect_with(a, timeout, &security).await {
                Ok(c) => {
                    return Ok(Self {
                        bootstrap: addrs.clone(),
                        timeout,
                        any: c,
                        by_id: HashMap::new(),
                        security,
                    })
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(Error::NoBroker(errors.join("; ")))
    }

    /// The bootstrap list this client was made with.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
    ) -> Result<kafka_protocol::messages::MetadataResponse> {
        // Never auto-create: describing a missing topic must not bring it into existence.
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|t| {
                t.iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }));
        self.any.send(req).await
    }

    /// Brokers and the controller.
    pub async fn describe_cluster(&mut self) -> Result<ClusterInfo> {
        let md = self.metadata(Some(&[])).await?;
        Ok(ClusterInfo {
            cluster_id: md.cluster_id.map(|c| c.to_string()),
            controller_id: md.controller_id.0,
            brokers: md
                .brokers
                .iter()
                .map(|b| BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                })
                .collect(),
        })
    }

    async fn conn_to(&mut self, id: i32) -> Result<&mut Connection> {
        if !self.by_id.contains_key(&id) {
            let cluster = self.describe_cluster().await?;
            let b =
                cluster.brokers.iter().find(|b| b.id == id).ok_or_else(|| {
                    Error::Protocol(format!("broker {id} is not in the metadata"))
                })?;
            let c = Connection::connect_with(
                &format!("{}:{}", b.host, b.port),
                self.timeout,
                &self.security,
            )
            .await?;
            self.by_id.insert(id, c);
        }
        self.by_id
            .get_mut(&id)
            .ok_or_else(|| Error::Protocol(format!("no connection to broker {id}")))
    }

    async fn controller(&mut self) -> Result<&mut Connection> {
        let id = self.describe_cluster().await?.controller_id;
        if id < 0 {
            // No controller known: the connected broker is the best target.
            return Ok(&mut self.any);
        }
        match self.conn_to(id).await {
            Ok(_) => self.conn_to(id).await,
            // An advertised address we can't reach (e.g. cluster DNS from outside): fall back.
            Err(Error::Connect { .. }) => Ok(&mut self.any),
            Err(e) => Err(e),
        }
    }

    /// Describes one topic; `Ok(None)` when it doesn't exist.
    pub async fn describe_topic(&mut self, name: &str) -> Result<Option<TopicInfo>> {
        let md = self.metadata(Some(&[name])).await?;
        let Some(t) = md.topics.into_iter().next() else {
            return Ok(None);
        };
        if t.error_code.err() == Some(ResponseError::UnknownTopicOrPartition) {
            return Ok(None);
        }
        check("Metadata", name, t.error_code, None)?;
        let id = t.topic_id.to_string();
        Ok(Some(TopicInfo {
            name: t
                .name
                .map(|n| n.0.to_string())
                .unwrap_or_else(|| name.to_string()),
            id: if id == "00000000-0000-0000-0000-000000000000" {
                String::new()
            } else {
                id
            },
            partitions: t.partitions.len() as i32,
            replication_factor: t
                .partitions
                .iter()
                .map(|p| p.replica_nodes.len() as i32)
                .max()
                .unwrap_or(0),
            internal: t.is_internal,
        }))
    }

    /// Names of every topic.
    pub async fn list_topics(&mut self) -> Result<Vec<String>> {
        let md = self.metadata(None).await?;
        Ok(md
            .topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect())
    }

    /// Creates a topic; returns its id (empty if the broker gave none).
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<String> {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(sb(k))
                            .with_value(Some(sb(v)))
                    })
                    .collect(),
            );
        let timeout_ms = self.timeout.as_millis() as i32;
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(timeout_ms);
        let resp = self.controller().await?.send(req).await?;
        let r = resp
            .topics
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("CreateTopics: empty response".into()))?;
        check("CreateTopics", name, r.error_code, r.error_message.as_ref())?;
        Ok(r.topic_id.to_string())
    }

    /// Grows a topic to `count` partitions (Kafka never shrinks).
    pub async fn create_partitions(&mut self, name: &str, count: i32) -> Result<()> {
        let timeout_ms = self.timeout.as_millis() as i32;
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(count)
                .with_assignments(None)])
            .with_timeout_ms(timeout_ms);
        let resp = self.controller().await?.send(req).await?;
        let r = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("CreatePartitions: empty response".into()))?;
        check(
            "CreatePartitions",
            name,
            r.error_code,
            r.error_message.as_ref(),
        )
    }

    /// Deletes a topic.
    pub async fn delete_topic(&mut self, name: &str) -> Result<()> {
        let timeout_ms = self.timeout.as_millis() as i32;
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(name)])
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name(name)))
            ])
            .with_timeout_ms(timeout_ms);
        let resp = self.controller().await?.send(req).await?;
        let r = resp
            .responses
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("DeleteTopics: empty response".into()))?;
        check("DeleteTopics", name, r.error_code, r.error_message.as_ref())
    }

    /// Every config entry of a topic.
    pub async fn describe_topic_config(
        &mut self,
        name: &str,
    ) -> Result<BTreeMap<String, ConfigEntry>> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(sb(name))
                .with_configuration_keys(None),
        ]);
        let resp = self.any.send(req).await?;
        let r = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("DescribeConfigs: empty response".into()))?;
        check(
            "DescribeConfigs",
            name,
            r.error_code,
            r.error_message.as_ref(),
        )?;
        Ok(config_entries(r.configs))
    }

    /// Sets `set` and removes (back to default) `delete` on a topic, atomically per topic.
    pub async fn alter_topic_config(
        &mut self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<()> {
        let configs = alterable(set, delete);
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(sb(name))
                .with_configs(configs),
        ]);
        let resp = self.any.send(req).await?;
        let r = resp
            .responses
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("IncrementalAlterConfigs: empty response".into()))?;
        check(
            "IncrementalAlterConfigs",
            name,
            r.error_code,
            r.error_message.as_ref(),
        )
    }

    /// Brokers with racks, the controller, and every topic's partitions with leader, replicas
    /// and ISR.
    pub async fn cluster_state(&mut self) -> Result<ClusterState> {
        let md = self.metadata(None).await?;
        let mut topics = Vec::new();
        for t in md.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            check("Metadata", &name, t.error_code, None)?;
            let mut partitions: Vec<PartitionPlacement> = t
                .partitions
                .into_iter()
                .map(|p| PartitionPlacement {
                    index: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.index);
            topics.push(TopicPlacement {
                name,
                internal: t.is_internal,
                partitions,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let mut brokers: Vec<BrokerInfo> = md
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterState {
            controller_id: md.controller_id.0,
            brokers,
            topics,
        })
    }

    /// Starts (or, with `target: None`, cancels) partition moves. Returns each partition's own
    /// outcome: the request as a whole fails only on transport or top-level errors.
    pub async fn alter_partition_reassignments(
        &mut self,
        moves: &[ReassignmentRequest],
    ) -> Result<Vec<(String, i32, Result<()>)>> {
        use kafka_protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId};
        let mut topics: Vec<ReassignableTopic> = Vec::new();
        for m in moves {
            let part = ReassignablePartition::default()
                .with_partition_index(m.partition)
                .with_replicas(
                    m.target
                        .as_ref()
                        .map(|t| t.iter().map(|id| BrokerId(*id)).collect()),
                );
            match topics.iter_mut().find(|t| t.name.0.as_str() == m.topic) {
                Some(t) => t.partitions.push(part),
                None => topics.push(
                    ReassignableTopic::default()
                        .with_name(topic_name(&m.topic))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let timeout_ms = self.timeout.as_millis() as i32;
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_allow_replication_factor_change(false)
            .with_topics(topics);
        let resp = self.controller().await?.send(req).await?;
        check(
            "AlterPartitionReassignments",
            "cluster",
            resp.error_code,
            resp.error_message.as_ref(),
        )?;
        let mut out = Vec::new();
        for t in resp.responses {
            for p in t.partitions {
                let resource = format!("{}-{}", t.name.0.as_str(), p.partition_index);
                out.push((
                    t.name.0.to_string(),
                    p.partition_index,
                    check(
                        "AlterPartitionReassignments",
                        &resource,
                        p.error_code,
                        p.error_message.as_ref(),
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// Every reassignment in progress.
    pub async fn list_partition_reassignments(&mut self) -> Result<Vec<OngoingReassignment>> {
        use kafka_protocol::messages::ListPartitionReassignmentsRequest;
        let timeout_ms = self.timeout.as_millis() as i32;
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(None);
        let resp = self.controller().await?.send(req).await?;
        check(
            "ListPartitionReassignments",
            "cluster",
            resp.error_code,
            resp.error_message.as_ref(),
        )?;
        let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
        let mut out = Vec::new();
        for t in resp.topics {
            for p in t.partitions {
                out.push(OngoingReassignment {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    replicas: ids(&p.replicas),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                });
            }
        }
        Ok(out)
    }

    /// Sets `set` and removes `delete` in a broker's dynamic configs: `broker: None` is the
    /// cluster-wide default entity (any broker takes it), `Some(id)` that broker alone (sent to
    /// it, as Kafka requires).
    pub async fn alter_broker_config(
        &mut self,
        broker: Option<i32>,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<()> {
        let name = broker.map(|b| b.to_string()).unwrap_or_default();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(sb(&name))
                .with_configs(alterable(set, delete)),
        ]);
        let conn = match broker {
            None => &mut self.any,
            Some(id) => self.conn_to(id).await?,
        };
        let resp = conn.send(req).await?;
        let r = resp
            .responses
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("IncrementalAlterConfigs: empty response".into()))?;
        let resource = if name.is_empty() {
            "broker default".to_string()
        } else {
            format!("broker {name}")
        };
        check(
            "IncrementalAlterConfigs",
            &resource,
            r.error_code,
            r.error_message.as_ref(),
        )
    }

    /// A broker's configs (`None`: the cluster-wide defaults) as DescribeConfigs reports them.
    pub async fn describe_broker_config(
        &mut self,
        broker: Option<i32>,
    ) -> Result<BTreeMap<String, ConfigEntry>> {
        let name = broker.map(|b| b.to_string()).unwrap_or_default();
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(sb(&name))
                .with_configuration_keys(None),
        ]);
        let conn = match broker {
            None => &mut self.any,
            Some(id) => self.conn_to(id).await?,
        };
        let resp = conn.send(req).await?;
        let r = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("DescribeConfigs: empty response".into()))?;
        check(
            "DescribeConfigs",
            &format!("broker {name}"),
            r.error_code,
            r.error_message.as_ref(),
        )?;
        Ok(config_entries(r.configs))
    }

    /// Log directories of one broker (for storage autoscaling).
    pub async fn describe_log_dirs(&mut self, broker_id: i32) -> Result<Vec<LogDirInfo>> {
        let resource = format!("broker {broker_id}");
        let conn = self.conn_to(broker_id).await?;
        Self::log_dirs_on(conn, &resource).await
    }

    /// Log directories of the broker this client is connected to: each broker answers for its
    /// own disks, so the storage autoscaler connects to every broker's own address and needs no
    /// Metadata round trip (nor advertised addresses it may not reach).
    pub async fn describe_own_log_dirs(&mut self) -> Result<Vec<LogDirInfo>> {
        let resource = self.any.addr().to_string();
        Self::log_dirs_on(&mut self.any, &resource).await
    }

    async fn log_dirs_on(conn: &mut Connection, resource: &str) -> Result<Vec<LogDirInfo>> {
        // v4 carries the directory's total and usable bytes (KIP-827).
        let req = DescribeLogDirsRequest::default().with_topics(None);
        let resp = conn.send(req).await?;
        check("DescribeLogDirs", resource, resp.error_code, None)?;
        let mut out = Vec::new();
        for d in resp.results {
            check(
                "DescribeLogDirs",
                &d.log_dir.to_string(),
                d.error_code,
                None,
            )?;
            out.push(LogDirInfo {
                path: d.log_dir.to_string(),
                total_bytes: d.total_bytes,
                usable_bytes: d.usable_bytes,
                used_by_partitions: d
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.partition_size))
                    .sum(),
            });
        }
        Ok(out)
    }
}
