//! Kafka's topic-level configs: names, types, validation, and how a topic's effective value is
//! resolved (topic override → dynamic broker default → static broker setting), as DescribeConfigs
//! reports it with sources and synonyms.

use std::collections::BTreeMap;

use rivulet_storage::{CleanupPolicy, CompressionType, LogConfig, TimestampType};

use crate::config::BrokerConfig;

/// Kafka's DescribeConfigs config types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Kafka's config sources (DescribeConfigsResponse.ConfigSource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

pub struct TopicConfigDef {
    /// Topic-level name, e.g. `retention.ms`.
    pub name: &'static str,
    /// The broker-level synonym, e.g. `log.retention.ms`.
    /// Empty when the topic config has no broker-level synonym (the throttled replicas).
    pub broker_name: &'static str,
    pub kind: ConfigType,
    pub doc: &'static str,
    validate: fn(&str) -> Result<(), String>,
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v: &str| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum {min}")),
        Err(_) => Err(format!("'{v}' is not a whole number")),
    }
}

fn v_retention(v: &str) -> Result<(), String> {
    long_at_least(-1)(v)
}
fn v_positive_long(v: &str) -> Result<(), String> {
    long_at_least(1)(v)
}
fn v_non_negative_long(v: &str) -> Result<(), String> {
    long_at_least(0)(v)
}
fn v_segment_bytes(v: &str) -> Result<(), String> {
    long_at_least(1024)(v)?;
    match v.trim().parse::<i64>() {
        Ok(n) if n <= i32::MAX as i64 => Ok(()),
        _ => Err(format!("{v} is above the maximum {}", i32::MAX)),
    }
}
fn v_int_positive(v: &str) -> Result<(), String> {
    match v.trim().parse::<i32>() {
        Ok(n) if n >= 1 => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum 1")),
        Err(_) => Err(format!("'{v}' is not a 32-bit whole number")),
    }
}
fn v_int_non_negative(v: &str) -> Result<(), String> {
    match v.trim().parse::<i32>() {
        Ok(n) if n >= 0 => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum 0")),
        Err(_) => Err(format!("'{v}' is not a 32-bit whole number")),
    }
}
fn v_bool(v: &str) -> Result<(), String> {
    match v.trim() {
        "true" | "false" => Ok(()),
        _ => Err(format!("'{v}' is not true or false")),
    }
}
fn v_timestamp_type(v: &str) -> Result<(), String> {
    match v.trim() {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err(format!("'{v}' is not CreateTime or LogAppendTime")),
    }
}
fn v_cleanup_policy(v: &str) -> Result<(), String> {
    parse_cleanup_policy(v).map(|_| ()).ok_or_else(|| {
        format!("'{v}' is not a valid cleanup.policy (delete, compact, or compact,delete)")
    })
}
/// `delete`, `compact`, or both in either order (a list, as Kafka has it).
fn parse_cleanup_policy(v: &str) -> Option<CleanupPolicy> {
    let (mut delete, mut compact) = (false, false);
    for item in v.split(',').map(str::trim) {
        match item {
            "delete" => delete = true,
            "compact" => compact = true,
            _ => return None,
        }
    }
    match (delete, compact) {
        (true, false) => Some(CleanupPolicy::Delete),
        (false, true) => Some(CleanupPolicy::Compact),
        (true, true) => Some(CleanupPolicy::CompactDelete),
        (false, false) => None,
    }
}
fn v_ratio(v: &str) -> Result<(), String> {
    match v.trim().parse::<f64>() {
        Ok(n) if (0.0..=1.0).contains(&n) => Ok(()),
        Ok(n) => Err(format!("{n} is not between 0 and 1")),
        Err(_) => Err(format!("'{v}' is not a number")),
    }
}
fn v_throttled_replicas(v: &str) -> Result<(), String> {
    crate::replication::throttle::parse_replicas(v).map(|_| ())
}
fn v_compression(v: &str) -> Result<(), String> {
    CompressionType::parse(v).map(|_| ()).ok_or_else(|| {
        format!("'{v}' is not a valid compression.type (uncompressed, zstd, lz4, snappy, gzip, producer)")
    })
}

pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef { name: "cleanup.policy", broker_name: "log.cleanup.policy", kind: ConfigType::List, doc: "What happens to old segments: delete (time/size retention), compact (keep the latest record per key), or both.", validate: v_cleanup_policy },
    TopicConfigDef { name: "compression.type", broker_name: "compression.type", kind: ConfigType::String, doc: "Codec batches are stored with: producer keeps the producer's; a codec name (or uncompressed) makes the leader recompress batches in another codec.", validate: v_compression },
    TopicConfigDef { name: "delete.retention.ms", broker_name: "log.cleaner.delete.retention.ms", kind: ConfigType::Long, doc: "How long the log cleaner keeps tombstones after it first saw them on a compacted topic.", validate: v_non_negative_long },
    TopicConfigDef { name: "flush.messages", broker_name: "log.flush.interval.messages", kind: ConfigType::Long, doc: "fsync after this many messages; 1 makes every acknowledged write durable.", validate: v_positive_long },
    TopicConfigDef { name: "flush.ms", broker_name: "log.flush.interval.ms", kind: ConfigType::Long, doc: "fsync data older than this many milliseconds.", validate: v_non_negative_long },
    TopicConfigDef { name: "follower.replication.throttled.replicas", broker_name: "", kind: ConfigType::List, doc: "Replicas (partition:broker, or * for all) whose follower-side fetches count against the follower broker's follower.replication.throttled.rate while out of sync.", validate: v_throttled_replicas },
    TopicConfigDef { name: "index.interval.bytes", broker_name: "log.index.interval.bytes", kind: ConfigType::Int, doc: "Bytes between offset index entries.", validate: v_int_non_negative },
    TopicConfigDef { name: "leader.replication.throttled.replicas", broker_name: "", kind: ConfigType::List, doc: "Replicas (partition:broker, or * for all) whose leader-side replication to out-of-sync followers counts against the leader broker's leader.replication.throttled.rate.", validate: v_throttled_replicas },
    TopicConfigDef { name: "max.message.bytes", broker_name: "message.max.bytes", kind: ConfigType::Int, doc: "Largest record batch accepted.", validate: v_int_non_negative },
    TopicConfigDef { name: "message.timestamp.type", broker_name: "log.message.timestamp.type", kind: ConfigType::String, doc: "CreateTime keeps the producer's timestamp; LogAppendTime stamps the broker's clock.", validate: v_timestamp_type },
    TopicConfigDef { name: "min.cleanable.dirty.ratio", broker_name: "log.cleaner.min.cleanable.ratio", kind: ConfigType::Double, doc: "Share of a compacted log's cleanable bytes that must be uncleaned before the cleaner runs.", validate: v_ratio },
    TopicConfigDef { name: "min.compaction.lag.ms", broker_name: "log.cleaner.min.compaction.lag.ms", kind: ConfigType::Long, doc: "Records younger than this are never compacted.", validate: v_non_negative_long },
    TopicConfigDef { name: "min.insync.replicas", broker_name: "min.insync.replicas", kind: ConfigType::Int, doc: "Replicas that must acknowledge an acks=all write.", validate: v_int_positive },
    TopicConfigDef { name: "retention.bytes", broker_name: "log.retention.bytes", kind: ConfigType::Long, doc: "Size per partition above which old segments are deleted; -1 is unlimited.", validate: v_retention },
    TopicConfigDef { name: "retention.ms", broker_name: "log.retention.ms", kind: ConfigType::Long, doc: "Age after which old segments are deleted; -1 is unlimited.", validate: v_retention },
    TopicConfigDef { name: "segment.bytes", broker_name: "log.segment.bytes", kind: ConfigType::Int, doc: "Segment file size at which the log rolls.", validate: v_segment_bytes },
    TopicConfigDef { name: "segment.ms", broker_name: "log.roll.ms", kind: ConfigType::Long, doc: "Age at which the active segment rolls.", validate: v_positive_long },
    TopicConfigDef { name: "unclean.leader.election.enable", broker_name: "unclean.leader.election.enable", kind: ConfigType::Boolean, doc: "Allow an out-of-sync replica to become leader (may lose data).", validate: v_bool },
];

pub fn def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

pub fn def_by_broker_name(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .find(|d| !d.broker_name.is_empty() && d.broker_name == name)
}

/// Validates one topic-level key/value.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let d = def(name).ok_or_else(|| format!("unknown topic config '{name}'"))?;
    (d.validate)(value).map_err(|e| format!("invalid value for {name}: {e}"))
}

/// Dynamic broker configs that are not topic-config synonyms: the replication throttle rates.
pub static BROKER_ONLY_CONFIGS: &[(&str, &str)] = &[
    (
        crate::replication::throttle::LEADER_RATE,
        "Bytes/s this broker serves, as leader, to out-of-sync followers of replicas listed in leader.replication.throttled.replicas (unlimited when unset).",
    ),
    (
        crate::replication::throttle::FOLLOWER_RATE,
        "Bytes/s this broker fetches, as an out-of-sync follower, for replicas listed in follower.replication.throttled.replicas (unlimited when unset).",
    ),
];

/// Validates one dynamic broker-level key (the broker synonyms of topic configs, and the
/// replication throttle rates).
pub fn validate_broker(name: &str, value: &str) -> Result<(), String> {
    if BROKER_ONLY_CONFIGS.iter().any(|(n, _)| *n == name) {
        return crate::replication::throttle::validate_rate(value)
            .map_err(|e| format!("invalid value for {name}: {e}"));
    }
    let d = def_by_broker_name(name).ok_or_else(|| {
        format!("broker config '{name}' cannot be changed dynamically (dynamic keys: the log.* defaults of topic configs and the replication throttle rates)")
    })?;
    (d.validate)(value).map_err(|e| format!("invalid value for {name}: {e}"))
}

/// The static value of a topic config's broker synonym, from flags/env.
pub fn static_broker_value(cfg: &BrokerConfig, name: &str) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "delete.retention.ms" => "86400000".into(),
        "flush.messages" => cfg.log_flush_interval_messages.to_string(),
        "flush.ms" => cfg.log_flush_interval_ms.to_string(),
        "index.interval.bytes" => cfg.log_index_interval_bytes.to_string(),
        "max.message.bytes" => cfg.message_max_bytes.to_string(),
        "message.timestamp.type" => cfg.log_message_timestamp_type.clone(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "min.compaction.lag.ms" => "0".into(),
        "min.insync.replicas" => cfg.min_insync_replicas.to_string(),
        "retention.bytes" => cfg.log_retention_bytes.to_string(),
        "retention.ms" => cfg.log_retention_ms.to_string(),
        "segment.bytes" => cfg.log_segment_bytes.to_string(),
        "segment.ms" => cfg.log_segment_ms.to_string(),
        "unclean.leader.election.enable" => cfg.unclean_leader_election_enable.to_string(),
        _ => String::new(),
    }
}

/// Is the static value the built-in default (no flag or env var changed it)?
pub fn static_is_default(name: &str, value: &str) -> bool {
    let defaults = [
        ("cleanup.policy", "delete"),
        ("compression.type", "producer"),
        ("delete.retention.ms", "86400000"),
        ("flush.messages", "9223372036854775807"),
        ("flush.ms", "9223372036854775807"),
        ("index.interval.bytes", "4096"),
        ("leader.replication.throttled.replicas", ""),
        ("follower.replication.throttled.replicas", ""),
        ("max.message.bytes", "1048588"),
        ("message.timestamp.type", "CreateTime"),
        ("min.cleanable.dirty.ratio", "0.5"),
        ("min.compaction.lag.ms", "0"),
        ("min.insync.replicas", "1"),
        ("retention.bytes", "-1"),
        ("retention.ms", "604800000"),
        ("segment.bytes", "1073741824"),
        ("segment.ms", "604800000"),
        ("unclean.leader.election.enable", "false"),
    ];
    defaults.iter().any(|(k, v)| *k == name && *v == value)
}

/// A resolved config value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    /// (synonym name, value, source), most specific first, as DescribeConfigs v1+ lists them.
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// Resolves every topic config for a topic.
pub fn resolve_topic(
    cfg: &BrokerConfig,
    dynamic_default: &BTreeMap<String, String>,
    dynamic_broker: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Vec<Resolved> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(d.name) {
                synonyms.push((d.name.to_string(), v.clone(), ConfigSource::DynamicTopic));
            }
            if d.broker_name.is_empty() {
                // No broker-level synonym: the topic override or Kafka's default.
                let (value, source) = synonyms
                    .first()
                    .map(|(_, v, s)| (v.clone(), *s))
                    .unwrap_or((String::new(), ConfigSource::Default));
                return Resolved {
                    name: d.name,
                    value,
                    source,
                    synonyms,
                };
            }
            if let Some(v) = dynamic_broker.get(d.broker_name) {
                synonyms.push((
                    d.broker_name.to_string(),
                    v.clone(),
                    ConfigSource::DynamicBroker,
                ));
            }
            if let Some(v) = dynamic_default.get(d.broker_name) {
                synonyms.push((
                    d.broker_name.to_string(),
                    v.clone(),
                    ConfigSource::DynamicDefaultBroker,
                ));
            }
            let st = static_broker_value(cfg, d.name);
            let st_source = if static_is_default(d.name, &st) {
                ConfigSource::Default
            } else {
                ConfigSource::StaticBroker
            };
            synonyms.push((d.broker_name.to_string(), st, st_source));
            let (value, source) = synonyms
                .first()
                .map(|(_, v, s)| (v.clone(), *s))
                .unwrap_or_default_pair();
            Resolved {
                name: d.name,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

trait DefaultPair {
    fn unwrap_or_default_pair(self) -> (String, ConfigSource);
}
impl DefaultPair for Option<(String, ConfigSource)> {
    fn unwrap_or_default_pair(self) -> (String, ConfigSource) {
        self.unwrap_or((String::new(), ConfigSource::Default))
    }
}

/// The log settings for a topic from its resolved configs.
pub fn log_config(resolved: &[Resolved]) -> LogConfig {
    let get = |n: &str| {
        resolved
            .iter()
            .find(|r| r.name == n)
            .map(|r| r.value.trim().to_string())
            .unwrap_or_default()
    };
    let long = |n: &str, dflt: i64| get(n).parse::<i64>().unwrap_or(dflt);
    let d = LogConfig::default();
    LogConfig {
        segment_bytes: long("segment.bytes", d.segment_bytes as i64).max(1024) as u64,
        segment_ms: long("segment.ms", d.segment_ms),
        retention_ms: long("retention.ms", d.retention_ms),
        retention_bytes: long("retention.bytes", d.retention_bytes),
        flush_messages: long("flush.messages", i64::MAX).max(1) as u64,
        flush_ms: long("flush.ms", d.flush_ms),
        index_interval_bytes: long("index.interval.bytes", 4096).clamp(0, u32::MAX as i64) as u32,
        max_message_bytes: long("max.message.bytes", d.max_message_bytes as i64)
            .clamp(0, i32::MAX as i64) as u32,
        message_timestamp_type: if get("message.timestamp.type") == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        cleanup_policy: parse_cleanup_policy(&get("cleanup.policy")).unwrap_or(d.cleanup_policy),
        delete_retention_ms: long("delete.retention.ms", d.delete_retention_ms).max(0),
        min_compaction_lag_ms: long("min.compaction.lag.ms", d.min_compaction_lag_ms).max(0),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(d.min_cleanable_dirty_ratio),
        compression_type: CompressionType::parse(&get("compression.type"))
            .unwrap_or(d.compression_type),
        ..d
    }
}

/// Effective topic configs as a map (for handlers that need single values).
pub fn effective_map(resolved: &[Resolved]) -> BTreeMap<&'static str, String> {
    resolved.iter().map(|r| (r.name, r.value.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> BrokerConfig {
        let mut v = vec!["rivulet-broker"];
        v.extend_from_slice(args);
        BrokerConfig::try_parse_from(v).unwrap()
    }

    #[test]
    fn resolution_order_is_topic_then_dynamic_then_static() {
        let c = cfg(&["--log-retention-ms", "5000"]);
        let none = BTreeMap::new();
        let r = resolve_topic(&c, &none, &none, &none);
        let ret = r.iter().find(|x| x.name == "retention.ms").unwrap();
        assert_eq!(
            (ret.value.as_str(), ret.source),
            ("5000", ConfigSource::StaticBroker)
        );
        let seg = r.iter().find(|x| x.name == "segment.bytes").unwrap();
        assert_eq!(seg.source, ConfigSource::Default);

        let dynamic: BTreeMap<_, _> = [("log.retention.ms".to_string(), "7000".to_string())].into();
        let topic: BTreeMap<_, _> = [("retention.ms".to_string(), "9000".to_string())].into();
        let r = resolve_topic(&c, &dynamic, &none, &topic);
        let ret = r.iter().find(|x| x.name == "retention.ms").unwrap();
        assert_eq!(
            (ret.value.as_str(), ret.source),
            ("9000", ConfigSource::DynamicTopic)
        );
        assert_eq!(ret.synonyms.len(), 3);
        assert_eq!(log_config(&r).retention_ms, 9000);
    }

    #[test]
    fn compaction_configs_map_into_the_log_config() {
        let c = cfg(&[]);
        let none = BTreeMap::new();
        let d = log_config(&resolve_topic(&c, &none, &none, &none));
        assert_eq!(d.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(
            (
                d.delete_retention_ms,
                d.min_compaction_lag_ms,
                d.min_cleanable_dirty_ratio
            ),
            (86_400_000, 0, 0.5)
        );
        let dynamic: BTreeMap<_, _> = [(
            "log.cleaner.min.cleanable.ratio".to_string(),
            "0.2".to_string(),
        )]
        .into();
        let topic: BTreeMap<_, _> = [
            ("cleanup.policy".to_string(), "delete,compact".to_string()),
            ("delete.retention.ms".to_string(), "100".to_string()),
            ("min.compaction.lag.ms".to_string(), "7".to_string()),
        ]
        .into();
        let r = resolve_topic(&c, &dynamic, &none, &topic);
        let l = log_config(&r);
        assert_eq!(l.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(
            (
                l.delete_retention_ms,
                l.min_compaction_lag_ms,
                l.min_cleanable_dirty_ratio
            ),
            (100, 7, 0.2)
        );
        let ratio = r
            .iter()
            .find(|x| x.name == "min.cleanable.dirty.ratio")
            .unwrap();
        assert_eq!(ratio.source, ConfigSource::DynamicDefaultBroker);
        let compact: BTreeMap<_, _> =
            [("cleanup.policy".to_string(), "compact".to_string())].into();
        assert_eq!(
            log_config(&resolve_topic(&c, &none, &none, &compact)).cleanup_policy,
            CleanupPolicy::Compact
        );
    }

    #[test]
    fn validation_messages_name_the_problem() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2")
            .unwrap_err()
            .contains("minimum"));
        assert!(validate("retention.ms", "soon")
            .unwrap_err()
            .contains("not a whole number"));
        assert!(validate("no.such.key", "1")
            .unwrap_err()
            .contains("unknown topic config"));
        assert!(validate("cleanup.policy", "compact").is_ok());
        assert!(validate("cleanup.policy", "delete, compact").is_ok());
        assert!(validate("cleanup.policy", "compact,bogus")
            .unwrap_err()
            .contains("not a valid cleanup.policy"));
        assert!(validate("cleanup.policy", "").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "0.1").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5")
            .unwrap_err()
            .contains("between 0 and 1"));
        assert!(validate("delete.retention.ms", "-1").is_err());
        assert!(validate_broker("log.cleaner.delete.retention.ms", "1000").is_ok());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        for codec in ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] {
            assert!(validate("compression.type", codec).is_ok(), "{codec}");
            assert!(
                validate_broker("compression.type", codec).is_ok(),
                "{codec}"
            );
        }
        assert!(validate("compression.type", "brotli")
            .unwrap_err()
            .contains("not a valid compression.type"));
        let c = cfg(&[]);
        let none = BTreeMap::new();
        let zstd: BTreeMap<_, _> = [("compression.type".to_string(), "zstd".to_string())].into();
        assert_eq!(
            log_config(&resolve_topic(&c, &none, &none, &zstd)).compression_type,
            CompressionType::Zstd
        );
        assert_eq!(
            log_config(&resolve_topic(&c, &none, &none, &none)).compression_type,
            CompressionType::Producer
        );
        assert!(validate_broker("log.retention.ms", "1000").is_ok());
        assert!(validate_broker("broker.id", "3").is_err());
    }
}
