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
    /// One of the listed words.
    OneOf(&'static [&'static str]),
}

/// Kafka config key → the broker's environment variable and the value it takes.
pub const BROKER_CONFIG_KEYS: &[(&str, &str, ValueKind)] = &[
    (
        "auto.create.topics.enable",
        "RIVULET_AUTO_CREATE_TOPICS",
        ValueKind::Bool,
    ),
    (
        "num.partitions",
        "RIVULET_NUM_PARTITIONS",
        ValueKind::Positive,
    ),
    (
        "default.replication.factor",
        "RIVULET_DEFAULT_REPLICATION_FACTOR",
        ValueKind::Positive,
    ),
    (
        "log.segment.bytes",
        "RIVULET_LOG_SEGMENT_BYTES",
        ValueKind::Positive,
    ),
    (
        "log.retention.ms",
        "RIVULET_LOG_RETENTION_MS",
        ValueKind::NonNegativeOrUnlimited,
    ),
    (
        "log.retention.bytes",
        "RIVULET_LOG_RETENTION_BYTES",
        ValueKind::NonNegativeOrUnlimited,
    ),
    (
        "log.flush.interval.messages",
        "RIVULET_LOG_FLUSH_INTERVAL_MESSAGES",
        ValueKind::Positive,
    ),
    (
        "log.flush.interval.ms",
        "RIVULET_LOG_FLUSH_INTERVAL_MS",
        ValueKind::NonNegative,
    ),
    (
        "message.max.bytes",
        "RIVULET_MESSAGE_MAX_BYTES",
        ValueKind::Positive,
    ),
    (
        "socket.request.max.bytes",
        "RIVULET_SOCKET_REQUEST_MAX_BYTES",
        ValueKind::Positive,
    ),
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
        ValueKind::OneOf(words) => format!("expected one of {}", words.join(", ")),
    })
}
