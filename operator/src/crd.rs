//! The custom resources: `KafkaCluster` and `KafkaTopic` (`rivulet.dev/v1alpha1`).
//!
//! Doc comments on every field become the schema's descriptions, so `kubectl explain`
//! and `docs/crd-reference.md` (generated from the same schema) document the API.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::crd_security::*;

/// API group of every Rivulet resource.
pub const GROUP: &str = "rivulet.dev";
/// API version of every Rivulet resource.
pub const VERSION: &str = "v1alpha1";

/// A Kafka-compatible cluster spread over availability zones, with its coordinator.
// printcolumn(...) repeats `type_ = ...` by design; clippy reads that as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rivulet.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    plural = "kafkaclusters",
    singular = "kafkacluster",
    shortname = "kc",
    shortname = "kafka",
    namespaced,
    status = "KafkaClusterStatus",
    doc = "A Kafka-compatible Rivulet cluster: brokers spread over zones plus a coordinator.",
    printcolumn(
        name = "Zones",
        type_ = "string",
        json_path = ".spec.zones",
        description = "Availability zones"
    ),
    printcolumn(
        name = "Per-zone",
        type_ = "integer",
        json_path = ".spec.brokersPerZone",
        description = "Brokers per zone"
    ),
    printcolumn(
        name = "Type",
        type_ = "string",
        json_path = ".spec.brokerType",
        description = "Broker size preset"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition"
    ),
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrapAddress",
        description = "Bootstrap address for clients"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Availability zones (values of the node label `topology.kubernetes.io/zone`), one broker
    /// StatefulSet per zone. Zones can only be appended: existing entries can't be removed or
    /// reordered, because a zone's position fixes the broker ids of its brokers.
    // Bounded lengths keep the CEL rule's estimated cost within the API server's limits.
    #[schemars(length(min = 1, max = 9), inner(length(min = 1, max = 63)))]
    #[schemars(extend(
        "x-kubernetes-list-type" = "set",
        "x-kubernetes-validations" = [{
            "rule": "self.size() >= oldSelf.size() && oldSelf.all(z, self.indexOf(z) == oldSelf.indexOf(z))",
            "message": "zones are append-only: existing zones can't be removed or reordered"
        }]
    ))]
    pub zones: Vec<String>,

    /// Number of brokers in each zone (the StatefulSet replicas of each zone).
    #[schemars(range(min = 1, max = 999))]
    pub brokers_per_zone: i32,

    /// Broker size preset, mapped to CPU and memory requests and limits (like Amazon MSK's broker
    /// types). `resources` overrides the preset when set.
    #[serde(default)]
    pub broker_type: BrokerType,

    /// Explicit CPU/memory requests and limits for every broker; overrides `brokerType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Per-broker storage.
    pub storage: BrokerStorage,

    /// The ZooKeeper-compatible coordinator that holds the cluster's metadata.
    #[serde(default)]
    pub coordinator: CoordinatorSpec,

    /// Broker configuration overrides with Kafka key names (for example `log.retention.ms`).
    /// Unknown keys and keys the operator owns (`broker.id`, `listeners`, `advertised.listeners`,
    /// `log.dirs`, `zookeeper.connect`, `broker.rack`) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,

    /// Broker log level (`error`, `warn`, `info`, `debug`, `trace`).
    #[serde(default = "default_log_level")]
    #[schemars(regex(pattern = r"^(error|warn|info|debug|trace)$"))]
    pub log_level: String,

    /// Container image overrides.
    #[serde(default)]
    pub image: ImageSpec,

    /// Client listeners of every broker. Absent: one PLAINTEXT listener on 9092 (no TLS, no
    /// authentication). Present: these listeners plus an internal `replication` listener on 9091
    /// for inter-broker traffic and the operator: PLAINTEXT, or SCRAM-SHA-512 (over TLS when a
    /// listener has `tls: true`) once any listener authenticates or `authorization` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "self.all(l, self.exists_one(m, m.name == l.name))",
            "message": "listener names must be unique"
        },
        {
            "rule": "self.all(l, self.exists_one(m, m.port == l.port))",
            "message": "listener ports must be unique"
        }
    ]))]
    pub listeners: Option<Vec<Listener>>,

    /// Authorization of client requests (Kafka's ACL authorizer); everything is allowed to
    /// everyone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// How replicas move when `brokersPerZone` changes: lowering it always drains the brokers
    /// being removed first; raising it rebalances onto the new brokers when
    /// `rebalanceOnScaleOut` is set. Both moves run under Kafka's replication throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingSpec>,
}

/// Replica movement policy of scale-in and scale-out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// After `brokersPerZone` grows and the new brokers have registered, move replicas onto them
    /// until every broker holds the same number of replicas (within one), keeping each partition's
    /// replicas in distinct zones. Off by default: new brokers then only take new partitions.
    #[serde(default)]
    pub rebalance_on_scale_out: bool,

    /// Replication throttle, in bytes per second, set on every broker (Kafka's
    /// `leader.replication.throttled.rate` and `follower.replication.throttled.rate`) while a
    /// drain or rebalance copies replicas, and removed when it ends. In-sync replication is
    /// never throttled. At least 1024.
    #[serde(default = "default_throttle")]
    #[schemars(range(min = 1024))]
    pub throttle_bytes_per_second: i64,
}

impl Default for ScalingSpec {
    fn default() -> Self {
        Self {
            rebalance_on_scale_out: false,
            throttle_bytes_per_second: default_throttle(),
        }
    }
}

/// 50 MiB/s: a move of a 100 GiB broker takes about 35 minutes and leaves clients most of a
/// 10 Gbit/s link.
fn default_throttle() -> i64 {
    50 << 20
}

fn default_log_level() -> String {
    "info".to_string()
}

/// Broker size presets. CPU and memory follow Amazon MSK's broker types of the same name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BrokerType {
    // 2 vCPU burstable, 2 GiB: development only.
    #[serde(rename = "kafka.t3.small")]
    T3Small,
    // 2 vCPU, 8 GiB.
    #[default]
    #[serde(rename = "kafka.m5.large")]
    M5Large,
    // 4 vCPU, 16 GiB.
    #[serde(rename = "kafka.m5.xlarge")]
    M5Xlarge,
    // 8 vCPU, 32 GiB.
    #[serde(rename = "kafka.m5.2xlarge")]
    M5_2xlarge,
    // 16 vCPU, 64 GiB.
    #[serde(rename = "kafka.m5.4xlarge")]
    M5_4xlarge,
}

/// Quantity pattern accepted for storage sizes (binary or decimal suffixes).
pub const SIZE_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// Per-broker storage: one PersistentVolumeClaim per broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0",
        "message": "storage.size can't decrease"
    },
    {
        "rule": "!has(self.autoscaling) || quantity(self.autoscaling.maxSize).compareTo(quantity(self.size)) >= 0",
        "message": "storage.autoscaling.maxSize must be at least storage.size"
    }
]))]
pub struct BrokerStorage {
    /// Volume size per broker (a Kubernetes quantity, e.g. `100Gi`; at least `8Mi`). It can grow,
    /// never shrink. Raising it grows every broker's PersistentVolumeClaim in place (no pod
    /// restart). Autoscaling may have grown a volume past it: the effective size of a broker is
    /// the larger of the two, reported in `status.brokers[].requested`.
    #[schemars(
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"),
        length(max = 32)
    )]
    pub size: String,

    /// StorageClass of the broker volumes; the cluster default when absent. Growth (manual or
    /// automatic) needs a class with `allowVolumeExpansion: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// Automatic storage growth: Amazon MSK's rules made explicit, plus emergency growth, a
    /// predictive trigger and steps that land under the target. See docs/storage-autoscaling.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<StorageAutoscaling>,
}

/// Storage autoscaling policy, judged per broker: when a broker's log-dir utilization passes
/// `targetUtilizationPercent` (or is predicted to reach `criticalUtilizationPercent` within
/// `predictionHorizon`), its volume grows by the larger of `minIncrement` and
/// `incrementPercent`, and further if needed so utilization lands at or below the target minus
/// `marginPercent`; never above `maxSize`, never shrinking, at most once per `cooldown` unless
/// utilization is at or above `criticalUtilizationPercent`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.criticalUtilizationPercent > self.targetUtilizationPercent",
        "message": "criticalUtilizationPercent must be above targetUtilizationPercent"
    },
    {
        "rule": "self.marginPercent < self.targetUtilizationPercent",
        "message": "marginPercent must be below targetUtilizationPercent"
    },
    {
        "rule": "quantity(self.maxSize).compareTo(quantity('16Ti')) <= 0",
        "message": "maxSize can't exceed 16Ti (Amazon MSK's per-broker limit)"
    },
    {
        "rule": "quantity(self.minIncrement).isGreaterThan(quantity('0'))",
        "message": "minIncrement must be positive"
    }
]))]
pub struct StorageAutoscaling {
    /// Turns autoscaling on.
    #[serde(default)]
    pub enabled: bool,

    /// `Enforce` grows volumes; `RecommendOnly` computes the same decisions and reports them in
    /// `status.brokers[].recommendedSize` and Events without patching anything.
    #[serde(default)]
    pub mode: AutoscalingMode,

    /// Log-dir utilization, in percent, above which a broker's volume grows (Amazon MSK allows
    /// 10-80).
    #[serde(default = "default_target_utilization")]
    #[schemars(range(min = 10, max = 80))]
    pub target_utilization_percent: i32,

    /// Utilization, in percent, at or above which a broker grows at once, cooldown or not.
    #[serde(default = "default_critical_utilization")]
    #[schemars(range(min = 20, max = 99))]
    pub critical_utilization_percent: i32,

    /// Upper bound of a broker's volume size (a Kubernetes quantity, at most `16Ti`).
    #[schemars(
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"),
        length(max = 32)
    )]
    pub max_size: String,

    /// Smallest growth step (a Kubernetes quantity).
    #[serde(default = "default_min_increment")]
    #[schemars(
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"),
        length(max = 32)
    )]
    pub min_increment: String,

    /// Growth step in percent of the current size (the larger of this and `minIncrement` applies).
    #[serde(default = "default_increment_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub increment_percent: i32,

    /// Headroom, in percent points: a step is large enough that utilization after growth is at
    /// or below `targetUtilizationPercent - marginPercent`.
    #[serde(default = "default_margin")]
    #[schemars(range(min = 0, max = 50))]
    pub margin_percent: i32,

    /// Minimum time between two growths of the same broker's volume (a duration such as `6h`
    /// or `30m`). Does not apply at or above `criticalUtilizationPercent`.
    #[serde(default = "default_cooldown")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 32))]
    pub cooldown: String,

    /// How often each broker's utilization is measured (a duration; Amazon MSK checks about
    /// every minute).
    #[serde(default = "default_check_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 32))]
    pub check_interval: String,

    /// Predictive trigger: grow before the target is crossed when, at the measured fill rate,
    /// the volume would reach `criticalUtilizationPercent` within this time. Absent: three times
    /// the longest resize the operator has observed (15m until one is observed). `0s` turns the
    /// predictive trigger off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h))+$"), length(max = 32))]
    pub prediction_horizon: Option<String>,
}

impl Default for StorageAutoscaling {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: AutoscalingMode::Enforce,
            target_utilization_percent: default_target_utilization(),
            critical_utilization_percent: default_critical_utilization(),
            max_size: "16Ti".into(),
            min_increment: default_min_increment(),
            increment_percent: default_increment_percent(),
            margin_percent: default_margin(),
            cooldown: default_cooldown(),
            check_interval: default_check_interval(),
            prediction_horizon: None,
        }
    }
}

/// Whether the autoscaler acts or only recommends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum AutoscalingMode {
    /// Grow the volumes.
    #[default]
    Enforce,
    /// Report decisions in status and Events; patch nothing.
    RecommendOnly,
}

fn default_target_utilization() -> i32 {
    60
}
fn default_critical_utilization() -> i32 {
    90
}
fn default_min_increment() -> String {
    "10Gi".to_string()
}
fn default_increment_percent() -> i32 {
    10
}
fn default_margin() -> i32 {
    5
}
fn default_cooldown() -> String {
    "6h".to_string()
}
fn default_check_interval() -> String {
    "60s".to_string()
}

/// The coordinator (ZooKeeper-compatible metadata service).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorSpec {
    /// Number of coordinator replicas. Only 1 is supported until the replicated ensemble exists.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 7))]
    pub replicas: i32,

    /// Volume size of each coordinator replica (a Kubernetes quantity).
    #[serde(default = "default_coordinator_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub storage_size: String,

    /// StorageClass of the coordinator volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// CPU/memory requests and limits of the coordinator; a small default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for CoordinatorSpec {
    fn default() -> Self {
        Self {
            replicas: 1,
            storage_size: default_coordinator_size(),
            storage_class_name: None,
            resources: None,
        }
    }
}

fn one() -> i32 {
    1
}
fn default_coordinator_size() -> String {
    "1Gi".to_string()
}

/// Image overrides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image with both server binaries; the operator's default (`rivulet-broker` at the
    /// operator's version) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,

    /// Pull policy for the image (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Always|IfNotPresent|Never)$"))]
    pub pull_policy: Option<String>,

    /// Secrets used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

/// Observed state of a KafkaCluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// `Ready`, `Progressing` and `Degraded`, with reasons and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `host:port` list for Kafka clients inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_address: Option<String>,

    /// Ready and desired brokers of each zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneStatus>,

    /// The zones last applied, in order: the append-only check compares against it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_zones: Vec<String>,

    /// The broker volume size last applied: the no-shrink check compares against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_storage_size: Option<String>,

    /// Client listeners and their bootstrap addresses (when `spec.listeners` is set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,

    /// Address the operator's admin connection uses (the internal replication listener when
    /// `spec.listeners` is set, else `bootstrapAddress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_address: Option<String>,

    /// Per-broker storage, filled by the storage autoscaler (when `spec.storage.autoscaling` is
    /// set) and by manual growth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<BrokerStatus>,

    /// The broker roller: whether a rolling restart is under way, its progress, the broker it
    /// is on and why it waits (docs/operator.md, "Rolling restarts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationStatus>,
    /// A scale-in drain or scale-out rebalance in progress, or why a drain is refused; absent
    /// when no replicas are moving for a scaling change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingStatus>,
}

/// The cluster's operational state, after MSK's cluster states.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OperationState {
    /// Every broker runs its current pod template and needs no restart.
    #[default]
    Active,
    /// A rolling restart is under way: one broker at a time, each gated on in-sync replicas.
    Updating,
    /// Brokers need a restart but the `rivulet.dev/pause-roll: "true"` annotation holds the
    /// roller (operator maintenance window).
    Maintenance,
}

/// What the roller is doing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// `Active`, `Updating` or `Maintenance`.
    pub state: OperationState,
    /// Brokers of this roll already restarted.
    #[serde(default)]
    pub done: i32,
    /// Brokers this roll restarts in all.
    #[serde(default)]
    pub total: i32,
    /// `done/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The broker being restarted, or the one the roll waits on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_broker: Option<i32>,
    /// Why the roll waits or what it does, CamelCase (e.g. `UnderReplicatedPartitions`,
    /// `BrokerNotReady`, `WouldBreakMinInsyncReplicas`, `Paused`, `Restarting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The same, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Progress of a drain (scale-in) or rebalance (scale-out).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// `Draining` (replicas leave the brokers being removed; the StatefulSets keep them until
    /// done), `Rebalancing` (replicas move onto new brokers), `Refused` (the drain is
    /// impossible; nothing shrinks) or `Waiting` (the brokers can't be asked yet).
    pub phase: String,
    /// `brokersPerZone` the StatefulSets ran with when this started.
    pub from_brokers_per_zone: i32,
    /// `brokersPerZone` asked for.
    pub to_brokers_per_zone: i32,
    /// Brokers being emptied (drain) or filled (rebalance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<i32>,
    /// Partitions whose replicas this operation has asked to move.
    #[serde(default)]
    pub partitions_total: i32,
    /// Of those, the ones whose move has finished.
    #[serde(default)]
    pub partitions_done: i32,
    /// Topics whose throttled-replica configs this operation set (removed at the end).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttled_topics: Vec<String>,
    /// When this operation started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// What is happening, or why it can't.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Brokers of one zone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatus {
    /// Zone name.
    pub zone: String,
    /// Brokers whose pods are ready.
    pub ready_brokers: i32,
    /// Brokers wanted in this zone.
    pub desired_brokers: i32,
}

/// One broker's storage: its volume, use, and what the autoscaler last did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Broker id.
    pub id: i32,
    /// Zone of the broker.
    pub zone: String,
    /// The broker's PersistentVolumeClaim.
    #[serde(default)]
    pub pvc: String,
    /// Size requested on the claim (the effective size: the larger of `spec.storage.size` and
    /// what autoscaling grew it to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<String>,
    /// Capacity the volume reports (`status.capacity.storage` of the claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// Bytes used on the broker's log dir (filesystem total minus usable, from DescribeLogDirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_used_bytes: Option<i64>,
    /// Bytes of capacity of the broker's log-dir filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_total_bytes: Option<i64>,
    /// Used bytes over total bytes, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_percent: Option<f64>,
    /// When the autoscaler last grew this broker's volume (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// `Ok`, `Growing` (a resize was asked and the capacity hasn't followed yet),
    /// `FileSystemResizePending` (the volume needs the broker restarted), `Refused`,
    /// `Recommended` (RecommendOnly found a growth to do) or `Unknown` (no measurement).
    #[serde(default)]
    pub phase: String,
    /// RecommendOnly: the size the autoscaler would grow to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_size: Option<String>,
    /// The last decision, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A Kafka topic, managed through the Kafka admin protocol on the cluster it names.
// printcolumn(...) repeats `type_ = ...` by design; clippy reads that as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rivulet.dev",
    version = "v1alpha1",
    kind = "KafkaTopic",
    plural = "kafkatopics",
    singular = "kafkatopic",
    shortname = "kt",
    namespaced,
    status = "KafkaTopicStatus",
    doc = "A topic on a Rivulet KafkaCluster in the same namespace.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name",
        description = "KafkaCluster"
    ),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".spec.partitions",
        description = "Partitions"
    ),
    printcolumn(
        name = "RF",
        type_ = "integer",
        json_path = ".spec.replicationFactor",
        description = "Replication factor"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.topicName) == has(oldSelf.topicName)",
        "message": "topicName can't be added or removed after creation (it names the Kafka topic)"
    },
    {
        "rule": "self.clusterRef.name == oldSelf.clusterRef.name",
        "message": "clusterRef is immutable"
    }
]))]
pub struct KafkaTopicSpec {
    /// The KafkaCluster (same namespace) that holds the topic. Can't change.
    pub cluster_ref: ClusterRef,

    /// Kafka topic name; `metadata.name` when absent. Can't change, be added or be removed
    /// once the resource exists. One KafkaTopic manages a Kafka topic: the one created first
    /// (`metadata.creationTimestamp`, then name); a later one naming the same topic on the same
    /// cluster is refused (`Ready=False`, reason `TopicClaimed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "topicName is immutable"
    }]))]
    pub topic_name: Option<String>,

    /// Number of partitions. Can grow; shrinking is refused.
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,

    /// Replicas of each partition. Can't change once the topic exists.
    #[serde(default = "one_i16")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i16,

    /// Topic configuration with Kafka key names (for example `retention.ms`; the accepted keys
    /// are listed in docs/operator.md). Keys set here are enforced: changes made outside the
    /// resource are reverted on the next resync. On a topic this resource created, topic-level
    /// keys it doesn't name are removed; on an adopted topic (one that existed before) they are
    /// kept, and only keys this resource set and no longer names are removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,

    /// What happens to the Kafka topic when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn one_i16() -> i16 {
    1
}

/// Reference to a KafkaCluster in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Name of the KafkaCluster.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// What happens to the Kafka topic when its KafkaTopic is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    // Delete the Kafka topic and its data.
    #[default]
    Delete,
    // Keep the Kafka topic; only the resource goes.
    Retain,
}

/// Observed state of a KafkaTopic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// `Ready` and `Degraded`, with reasons and messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The topic's id in the cluster (UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// The topic name in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Partitions the topic has in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replication factor of the topic in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// True when the topic existed before this resource (adopted): its topic-level config that
    /// the spec doesn't name is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
    /// The config keys this resource has set: a key removed from the spec is removed from the
    /// topic only when it is listed here (or when the topic isn't adopted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_config: Vec<String>,
}

impl KafkaTopic {
    /// The Kafka topic name: `spec.topicName`, else `metadata.name`.
    pub fn topic_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
