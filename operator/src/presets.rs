//! Broker size presets (`brokerType`) and the broker config keys the operator understands.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::crd::BrokerType;

/// CPU request and memory (request = limit) of a preset. No CPU limit: throttling a broker
/// hurts latency more than it protects neighbours, and requests already reserve the cores.
pub fn preset(bt: BrokerType) -> (&'static str, &'static str) {
    match bt {
        BrokerType::T3Small => ("500m", "2Gi"),
        BrokerType::M5Large => ("2", "8Gi"),
        BrokerType::M5Xlarge => ("4", "16Gi"),
        BrokerType::M5_2xlarge => ("8", "32Gi"),
        BrokerType::M5_4xlarge => ("16", "64Gi"),
    }
}

/// Resource requirements of a preset.
pub fn preset_resources(bt: BrokerType) -> ResourceRequirements {
    let (cpu, mem) = preset(bt);
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.to_string())),
            ("memory".to_string(), Quantity(mem.to_string())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(mem.to_string()),
        )])),
        ..Default::default()
    }
}

/// How a config value must look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `true` or `false`.
    Bool,
    /// Integer >= 1.
    Positive,
    /// Integer >= 0.
    NonNegative,
    /// Integer >= 0, or -1 for "unlimited".
    NonNegativeOrUnlimited,
    /// Integer >= the bound.
    AtLeast(i64),
    /// Integer within the bounds (inclusive).
    Range(i64, i64),
    /// One of the listed words.
    OneOf(&'static [&'static str]),
}

/// Kafka config key → the broker's environment variable (the flag of the same name,
/// `RIVULET_LOG_RETENTION_MS` = `--log-retention-ms`) and the values it takes: exactly the
/// broker's own bounds. The one list of cluster-level config `spec.config` accepts;
/// `tests/config_surface.rs` keeps it, the broker's flags and docs/operator.md in step.
pub const BROKER_CONFIG_KEYS: &[(&str, &str, ValueKind)] = &[
    (
        "auto.create.topics.enable",
        "RIVULET_AUTO_CREATE_TOPICS",
        ValueKind::Bool,
    ),
    (
        "auto.leader.rebalance.enable",
        "RIVULET_AUTO_LEADER_REBALANCE_ENABLE",
        ValueKind::Bool,
    ),
    (
        "connection.failed.authentication.delay.ms",
        "RIVULET_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS",
        ValueKind::Range(0, 60_000),
    ),
    (
        "connections.max.reauth.ms",
        "RIVULET_CONNECTIONS_MAX_REAUTH_MS",
        ValueKind::NonNegative,
    ),
    (
        "controlled.shutdown.enable",
        "RIVULET_CONTROLLED_SHUTDOWN_ENABLE",
        ValueKind::Bool,
    ),
    (
        "default.replication.factor",
        "RIVULET_DEFAULT_REPLICATION_FACTOR",
        ValueKind::Range(1, I16_MAX),
    ),
    (
        "group.initial.rebalance.delay.ms",
        "RIVULET_GROUP_INITIAL_REBALANCE_DELAY_MS",
        ValueKind::NonNegative,
    ),
    (
        "group.max.session.timeout.ms",
        "RIVULET_GROUP_MAX_SESSION_TIMEOUT_MS",
        ValueKind::Positive,
    ),
    (
        "group.max.size",
        "RIVULET_GROUP_MAX_SIZE",
        ValueKind::NonNegative,
    ),
    (
        "group.min.session.timeout.ms",
        "RIVULET_GROUP_MIN_SESSION_TIMEOUT_MS",
        ValueKind::Positive,
    ),
    (
        "leader.imbalance.check.interval.seconds",
        "RIVULET_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS",
        ValueKind::Positive,
    ),
    (
        "leader.imbalance.per.broker.percentage",
        "RIVULET_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE",
        ValueKind::Range(0, 100),
    ),
    (
        "log.cleaner.backoff.ms",
        "RIVULET_LOG_CLEANER_BACKOFF_MS",
        ValueKind::AtLeast(10),
    ),
    (
        "log.flush.interval.messages",
        "RIVULET_LOG_FLUSH_INTERVAL_MESSAGES",
        ValueKind::Positive,
    ),
    (
        "log.flush.interval.ms",
        "RIVULET_LOG_FLUSH_INTERVAL_MS",
        ValueKind::Positive,
    ),
    (
        "log.flush.scheduler.interval.ms",
        "RIVULET_LOG_FLUSH_SCHEDULER_INTERVAL_MS",
        ValueKind::Positive,
    ),
    (
        "log.index.interval.bytes",
        "RIVULET_LOG_INDEX_INTERVAL_BYTES",
        ValueKind::Range(1, U32_MAX),
    ),
    (
        "log.message.timestamp.type",
        "RIVULET_LOG_MESSAGE_TIMESTAMP_TYPE",
        ValueKind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    (
        "log.retention.bytes",
        "RIVULET_LOG_RETENTION_BYTES",
        ValueKind::NonNegativeOrUnlimited,
    ),
    (
        "log.retention.check.interval.ms",
        "RIVULET_LOG_RETENTION_CHECK_INTERVAL_MS",
        ValueKind::AtLeast(10),
    ),
    (
        "log.retention.ms",
        "RIVULET_LOG_RETENTION_MS",
        ValueKind::NonNegativeOrUnlimited,
    ),
    ("log.roll.ms", "RIVULET_LOG_SEGMENT_MS", ValueKind::Positive),
    (
        "log.segment.bytes",
        "RIVULET_LOG_SEGMENT_BYTES",
        ValueKind::Range(1024, I32_MAX),
    ),
    (
        "message.max.bytes",
        "RIVULET_MESSAGE_MAX_BYTES",
        ValueKind::Range(64, I32_MAX),
    ),
    (
        "min.insync.replicas",
        "RIVULET_MIN_INSYNC_REPLICAS",
        ValueKind::Range(1, I32_MAX),
    ),
    (
        "num.partitions",
        "RIVULET_NUM_PARTITIONS",
        ValueKind::Range(1, 100_000),
    ),
    (
        "offset.metadata.max.bytes",
        "RIVULET_OFFSET_METADATA_MAX_BYTES",
        ValueKind::NonNegative,
    ),
    (
        "offsets.topic.num.partitions",
        "RIVULET_OFFSETS_TOPIC_NUM_PARTITIONS",
        ValueKind::Range(1, 1000),
    ),
    (
        "offsets.topic.replication.factor",
        "RIVULET_OFFSETS_TOPIC_REPLICATION_FACTOR",
        ValueKind::Range(1, I16_MAX),
    ),
    (
        "replica.fetch.backoff.ms",
        "RIVULET_REPLICA_FETCH_BACKOFF_MS",
        ValueKind::Positive,
    ),
    (
        "replica.fetch.max.bytes",
        "RIVULET_REPLICA_FETCH_MAX_BYTES",
        ValueKind::Range(1024, I32_MAX),
    ),
    (
        "replica.fetch.response.max.bytes",
        "RIVULET_REPLICA_FETCH_RESPONSE_MAX_BYTES",
        ValueKind::Range(1024, I32_MAX),
    ),
    (
        "replica.fetch.wait.max.ms",
        "RIVULET_REPLICA_FETCH_WAIT_MAX_MS",
        ValueKind::Range(0, I32_MAX),
    ),
    (
        "replica.high.watermark.checkpoint.interval.ms",
        "RIVULET_REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS",
        ValueKind::AtLeast(10),
    ),
    (
        "replica.lag.time.max.ms",
        "RIVULET_REPLICA_LAG_TIME_MAX_MS",
        ValueKind::AtLeast(100),
    ),
    (
        "socket.request.max.bytes",
        "RIVULET_SOCKET_REQUEST_MAX_BYTES",
        ValueKind::Range(1024, I32_MAX),
    ),
    (
        "unclean.leader.election.enable",
        "RIVULET_UNCLEAN_LEADER_ELECTION_ENABLE",
        ValueKind::Bool,
    ),
    (
        "zookeeper.session.timeout.ms",
        "RIVULET_COORDINATOR_SESSION_TIMEOUT_MS",
        ValueKind::Range(1000, 600_000),
    ),
];

const I16_MAX: i64 = i16::MAX as i64;
const I32_MAX: i64 = i32::MAX as i64;
const U32_MAX: i64 = u32::MAX as i64;

/// Broker settings `spec.config` does not reach, and why: the operator sets them itself (or
/// they belong to another part of the spec). Every broker flag is either here or mapped in
/// [`BROKER_CONFIG_KEYS`]; `tests/config_surface.rs` checks that.
pub const BROKER_SETTINGS_NOT_IN_CONFIG: &[(&str, &str)] = &[
    ("RIVULET_BROKER_ID", "the pod's ordinal (broker.id)"),
    ("RIVULET_LISTEN_ADDR", "set by the operator (listeners)"),
    (
        "RIVULET_ADVERTISED_ADDR",
        "set by the operator (advertised.listeners)",
    ),
    (
        "RIVULET_LISTENERS",
        "listeners are the operator's (security)",
    ),
    (
        "RIVULET_ADVERTISED_LISTENERS",
        "listeners are the operator's (security)",
    ),
    (
        "RIVULET_LISTENER_SECURITY_PROTOCOL_MAP",
        "listeners are the operator's (security)",
    ),
    (
        "RIVULET_INTER_BROKER_LISTENER_NAME",
        "listeners are the operator's (security)",
    ),
    (
        "RIVULET_SSL_CERT_FILE",
        "TLS material is mounted by the operator",
    ),
    (
        "RIVULET_SSL_KEY_FILE",
        "TLS material is mounted by the operator",
    ),
    (
        "RIVULET_SSL_CA_FILE",
        "TLS material is mounted by the operator",
    ),
    (
        "RIVULET_SSL_CLIENT_AUTH",
        "listener security is the operator's",
    ),
    (
        "RIVULET_LISTENER_SSL_CLIENT_AUTH",
        "listener security is the operator's",
    ),
    (
        "RIVULET_SSL_RELOAD_INTERVAL_MS",
        "TLS material is mounted by the operator",
    ),
    (
        "RIVULET_SASL_ENABLED_MECHANISMS",
        "listener security is the operator's",
    ),
    (
        "RIVULET_ADMIN_ADDR",
        "set by the operator (probes and metrics port)",
    ),
    (
        "RIVULET_DATA_DIR",
        "set by the operator (log.dirs, the PVC mount)",
    ),
    ("RIVULET_RACK", "the zone (broker.rack)"),
    (
        "RIVULET_COORDINATOR",
        "the cluster's coordinator (zookeeper.connect)",
    ),
    ("RIVULET_LOG_LEVEL", "spec.logLevel"),
    ("RIVULET_LOG_FORMAT", "json in pods"),
    (
        "RIVULET_SHUTDOWN_TIMEOUT_SECS",
        "inside the pod's termination grace period",
    ),
    (
        "RIVULET_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
        "inside the pod's termination grace period",
    ),
    (
        "RIVULET_LEADER_RETURN_DELAY_MS",
        "Rivulet's own (no Kafka key); its default outlasts a restarted pod's DNS lag",
    ),
    (
        "RIVULET_AUTHORIZER",
        "spec.authorization (authorizer.class.name)",
    ),
    ("RIVULET_SUPER_USERS", "spec.authorization.superUsers"),
    (
        "RIVULET_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        "false whenever spec.authorization is set",
    ),
    (
        "RIVULET_INTER_BROKER_SASL_MECHANISM",
        "brokers talk over the internal replication listener (security)",
    ),
    (
        "RIVULET_INTER_BROKER_SASL_USERNAME",
        "brokers talk over the internal replication listener (security)",
    ),
    (
        "RIVULET_INTER_BROKER_SASL_PASSWORD",
        "brokers talk over the internal replication listener (security)",
    ),
    (
        "RIVULET_INTER_BROKER_SASL_PASSWORD_FILE",
        "brokers talk over the internal replication listener (security)",
    ),
    (
        "RIVULET_BOOTSTRAP_SCRAM_USERS_FILE",
        "users are KafkaUser resources",
    ),
    (
        "RIVULET_COORDINATOR_DIGEST_USERNAME",
        "coordinator credentials are not rendered yet: znodes stay open inside the namespace",
    ),
    (
        "RIVULET_COORDINATOR_DIGEST_PASSWORD",
        "coordinator credentials are not rendered yet: znodes stay open inside the namespace",
    ),
    (
        "RIVULET_COORDINATOR_DIGEST_PASSWORD_FILE",
        "coordinator credentials are not rendered yet: znodes stay open inside the namespace",
    ),
    (
        "RIVULET_ZOOKEEPER_SET_ACL",
        "coordinator credentials are not rendered yet: znodes stay open inside the namespace",
    ),
    (
        "RIVULET_REPLICATION_QUOTA_WINDOW_NUM",
        "Kafka's default window; spec.scaling.throttleBytesPerSecond sets the rate",
    ),
    (
        "RIVULET_REPLICATION_QUOTA_WINDOW_SIZE_SECONDS",
        "Kafka's default window; spec.scaling.throttleBytesPerSecond sets the rate",
    ),
];

/// Topic-level config keys a KafkaTopic's `spec.config` accepts: the broker's topic configs
/// (its `topic_config::TOPIC_CONFIGS`, checked by `tests/config_surface.rs`). Values are the
/// broker's to check: it refuses bad ones with a message that lands in the topic's condition.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// Topic configs of the broker a KafkaTopic can't set: the scaling drain and rebalance set and
/// remove them on the topics whose replicas move (`operator/src/scale/`).
pub const TOPIC_CONFIGS_SET_BY_SCALING: &[&str] = &[
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];

/// Keys the operator sets itself; users can't override them.
pub const OPERATOR_OWNED_KEYS: &[&str] = &[
    "broker.id",
    "node.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "zookeeper.connect",
    "broker.rack",
];

/// Looks a key up in [`BROKER_CONFIG_KEYS`].
pub fn broker_key(key: &str) -> Option<(&'static str, ValueKind)> {
    BROKER_CONFIG_KEYS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, env, kind)| (*env, *kind))
}

/// Checks a value against its kind; the error says what was expected.
pub fn check_value(kind: ValueKind, value: &str) -> Result<(), String> {
    let ok = match kind {
        ValueKind::Bool => value == "true" || value == "false",
        ValueKind::Positive => value.parse::<i64>().map(|v| v >= 1).unwrap_or(false),
        ValueKind::NonNegative => value.parse::<i64>().map(|v| v >= 0).unwrap_or(false),
        ValueKind::NonNegativeOrUnlimited => value.parse::<i64>().map(|v| v >= -1).unwrap_or(false),
        ValueKind::AtLeast(min) => value.parse::<i64>().map(|v| v >= min).unwrap_or(false),
        ValueKind::Range(min, max) => value
            .parse::<i64>()
            .map(|v| (min..=max).contains(&v))
            .unwrap_or(false),
        ValueKind::OneOf(words) => words.contains(&value),
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        ValueKind::Bool => "expected true or false".into(),
        ValueKind::Positive => "expected an integer >= 1".into(),
        ValueKind::NonNegative => "expected an integer >= 0".into(),
        ValueKind::NonNegativeOrUnlimited => "expected an integer >= 0, or -1 for unlimited".into(),
        ValueKind::AtLeast(min) => format!("expected an integer >= {min}"),
        ValueKind::Range(min, max) => format!("expected an integer from {min} to {max}"),
        ValueKind::OneOf(words) => format!("expected one of {}", words.join(", ")),
    })
}
