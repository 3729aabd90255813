//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic and broker resources.
//!
//! Topic resources hold topic-level overrides. Broker resources hold dynamic broker configs:
//! resource name "" is the cluster-wide default entity, a broker id is that broker alone; only
//! the `log.*` defaults of topic configs (and their synonyms) are dynamic, as in Kafka.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::s;
use crate::broker::Broker;
use crate::topic_config::{self, ConfigSource, ConfigType, Resolved, TOPIC_CONFIGS};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

type ResErr = (ResponseError, String);

/// One config as DescribeConfigs reports it.
struct ConfigEntry {
    name: String,
    value: String,
    source: ConfigSource,
    kind: ConfigType,
    read_only: bool,
    doc: &'static str,
    synonyms: Vec<(String, String, ConfigSource)>,
}

impl ConfigEntry {
    fn from_resolved(r: Resolved) -> Self {
        let d = topic_config::def(r.name);
        ConfigEntry {
            name: r.name.to_string(),
            value: r.value,
            source: r.source,
            kind: d.map(|d| d.kind).unwrap_or(ConfigType::String),
            read_only: false,
            doc: d.map(|d| d.doc).unwrap_or(""),
            synonyms: r.synonyms,
        }
    }

    fn static_broker(name: &str, value: String, kind: ConfigType, doc: &'static str) -> Self {
        ConfigEntry {
            name: name.to_string(),
            value,
            source: ConfigSource::StaticBroker,
            kind,
            read_only: true,
            doc,
            synonyms: vec![],
        }
    }

    fn encode(self, version: i16, synonyms: bool, docs: bool) -> DescribeConfigsResourceResult {
        let mut e = DescribeConfigsResourceResult::default()
            .with_name(s(self.name))
            .with_value(Some(s(self.value)))
            .with_read_only(self.read_only)
            .with_config_source(self.source as i8)
            .with_is_sensitive(false);
        if synonyms {
            e = e.with_synonyms(
                self.synonyms
                    .into_iter()
                    .map(|(n, v, src)| {
                        DescribeConfigsSynonym::default()
                            .with_name(s(n))
                            .with_value(Some(s(v)))
                            .with_source(src as i8)
                    })
                    .collect(),
            );
        }
        if version >= 3 {
            e = e.with_config_type(self.kind as i8);
            if docs {
                e = e.with_documentation(Some(s(self.doc)));
            }
        }
        e
    }
}

/// Broker-level configs: static settings (read-only) and the dynamic `log.*` defaults.
fn broker_configs(b: &Broker, id: Option<i32>) -> Vec<ConfigEntry> {
    let view = b.metadata.view();
    let c = &b.config;
    let (host, port) = (b.me.host.clone(), b.me.port);
    let mut out = vec![
        ConfigEntry::static_broker(
            "broker.id",
            c.broker_id.to_string(),
            ConfigType::Int,
            "This broker's id.",
        ),
        ConfigEntry::static_broker(
            "broker.rack",
            c.rack.clone().unwrap_or_default(),
            ConfigType::String,
            "Rack (zone) of this broker.",
        ),
        ConfigEntry::static_broker(
            "listeners",
            format!("PLAINTEXT://{}", c.listen_addr),
            ConfigType::String,
            "Kafka listener.",
        ),
        ConfigEntry::static_broker(
            "advertised.listeners",
            format!("PLAINTEXT://{host}:{port}"),
            ConfigType::String,
            "Address given to clients.",
        ),
        ConfigEntry::static_broker(
            "log.dirs",
            c.data_dir.display().to_string(),
            ConfigType::String,
            "Data directory.",
        ),
        ConfigEntry::static_broker(
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            ConfigType::Boolean,
            "Create unknown topics on Metadata requests.",
        ),
        ConfigEntry::static_broker(
            "num.partitions",
            c.num_partitions.to_string(),
            ConfigType::Int,
            "Default partitions of new topics.",
        ),
        ConfigEntry::static_broker(
            "default.replication.factor",
            c.default_replication_factor.to_string(),
            ConfigType::Int,
            "Default replication factor of new topics.",
        ),
        ConfigEntry::static_broker(
            "socket.request.max.bytes",
            c.socket_request_max_bytes.to_string(),
            ConfigType::Int,
            "Largest request frame.",
        ),
        ConfigEntry::static_broker(
            "log.retention.check.interval.ms",
            c.log_retention_check_interval_ms.to_string(),
            ConfigType::Long,
            "Retention cleaner period.",
        ),
    ];
    let per_broker = id
        .and_then(|i| view.broker_configs.get(&i))
        .cloned()
        .unwrap_or_default();
    for (name, doc) in topic_config::BROKER_ONLY_CONFIGS {
        let mut syn = Vec::new();
        if let Some(v) = per_broker.get(*name) {
            syn.push((name.to_string(), v.clone(), ConfigSource::DynamicBroker));
        }
        if let Some(v) = view.default_broker_configs.get(*name) {
            syn.push((
                name.to_string(),
                v.clone(),
                ConfigSource::DynamicDefaultBroker,
            ));
        }
        // Kafka's default is Long.MAX_VALUE: unlimited.
        syn.push((
            name.to_string(),
            i64::MAX.to_string(),
            ConfigSource::Default,
        ));
        out.push(ConfigEntry {
            name: name.to_string(),
            value: syn[0].1.clone(),
            source: syn[0].2,
            kind: ConfigType::Long,
            read_only: false,
            doc,
            synonyms: syn,
        });
    }
    for d in TOPIC_CONFIGS.iter().filter(|d| !d.broker_name.is_empty()) {
        let mut syn = Vec::new();
        if let Some(v) = per_broker.get(d.broker_name) {
            syn.push((
                d.broker_name.to_string(),
                v.clone(),
                ConfigSource::DynamicBroker,
            ));
        }
        if let Some(v) = view.default_broker_configs.get(d.broker_name) {
            syn.push((
                d.broker_name.to_string(),
                v.clone(),
                ConfigSource::DynamicDefaultBroker,
            ));
        }
        let st = topic_config::static_broker_value(c, d.name);
        let st_src = if topic_config::static_is_default(d.name, &st) {
            ConfigSource::Default
        } else {
            ConfigSource::StaticBroker
        };
        syn.push((d.broker_name.to_string(), st, st_src));
        out.push(ConfigEntry {
            name: d.broker_name.to_string(),
            value: syn[0].1.clone(),
            source: syn[0].2,
            kind: d.kind,
            read_only: false,
            doc: d.doc,
            synonyms: syn,
        });
    }
    out
}

fn broker_entity(b: &Broker, name: &str) -> Result<Option<i32>, ResErr> {
    if name.is_empty() {
        return Ok(None);
    }
    match name.parse::<i32>() {
        Ok(id) if id == b.me.id => Ok(Some(id)),
        _ => Err((
            ResponseError::InvalidRequest,
            format!("unexpected broker id '{name}', this broker is {}", b.me.id),
        )),
    }
}

pub fn describe(b: &Broker, version: i16, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let name = res.resource_name.to_string();
            let out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let keys: Option<Vec<String>> = res
                .configuration_keys
                .map(|k| k.iter().map(|x| x.to_string()).collect());
            let wanted = |n: &str| {
                keys.as_ref()
                    .map(|k| k.iter().any(|x| x == n))
                    .unwrap_or(true)
            };
            match res.resource_type {
                RESOURCE_TOPIC => {
                    let view = b.metadata.view();
                    let Some(topic) = view.topic(&name) else {
                        return out
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(s(format!("topic '{name}' does not exist"))));
                    };
                    let resolved = topic_config::resolve_topic(
                        &b.config,
                        &view.default_broker_configs,
                        view.broker_configs
                            .get(&b.me.id)
                            .unwrap_or(&BTreeMap::new()),
                        &topic.configs,
                    );
                    let configs = resolved
                        .into_iter()
                        .filter(|r| wanted(r.name))
                        .map(|r| {
                            ConfigEntry::from_resolved(r).encode(
                                version,
                                req.include_synonyms,
                                req.include_documentation,
                            )
                        })
                        .collect();
                    out.with_configs(configs)
                }
                RESOURCE_BROKER => match broker_entity(b, &name) {
                    Err((code, msg)) => out
                        .with_error_code(code.code())
                        .with_error_message(Some(s(msg))),
                    Ok(id) => {
                        let configs = broker_configs(b, id)
                            .into_iter()
                            .filter(|c| wanted(&c.name))
                            .map(|c| {
                                c.encode(version, req.include_synonyms, req.include_documentation)
                            })
                            .collect();
                        out.with_configs(configs)
                    }
                },
                other => out
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(format!(
                        "resource type {other} is not supported (2 = topic, 4 = broker)"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Validates a complete new set of configs for a resource.
fn validate_set(resource_type: i8, configs: &BTreeMap<String, String>) -> Result<(), ResErr> {
    for (k, v) in configs {
        let r = if resource_type == RESOURCE_TOPIC {
            topic_config::validate(k, v)
        } else {
            topic_config::validate_broker(k, v)
        };
        r.map_err(|m| (ResponseError::InvalidConfig, m))?;
    }
    Ok(())
}

/// Current overrides of a resource.
fn current(
    b: &Broker,
    resource_type: i8,
    name: &str,
) -> Result<(BTreeMap<String, String>, Option<i32>), ResErr> {
    let view = b.metadata.view();
    match resource_type {
        RESOURCE_TOPIC => view
            .topic(name)
            .map(|t| (t.configs.clone(), None))
            .ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )
            }),
        RESOURCE_BROKER => {
            let id = broker_entity(b, name)?;
            let map = match id {
                None => view.default_broker_configs.clone(),
                Some(i) => view.broker_configs.get(&i).cloned().unwrap_or_default(),
            };
            Ok((map, id))
        }
        other => Err((
            ResponseError::InvalidRequest,
            format!("resource type {other} cannot be altered (2 = topic, 4 = broker)"),
        )),
    }
}

async fn store(
    b: &Broker,
    resource_type: i8,
    name: &str,
    broker: Option<i32>,
    configs: BTreeMap<String, String>,
) -> Result<(), ResErr> {
    let r = if resource_type == RESOURCE_TOPIC {
        b.metadata.set_topic_configs(name, configs).await
    } else {
        b.metadata.set_broker_configs(broker, configs).await
    };
    r.map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))?;
    b.sync_partitions()
        .map_err(|e| (ResponseError::KafkaStorageError, format!("{e:#}")))?;
    tracing::info!(resource_type, resource = %name, "configs changed");
    Ok(())
}

pub async fn alter(b: &Broker, _version: i16, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome: Result<(), ResErr> = async {
            let (_, broker) = current(b, res.resource_type, &name)?;
            let mut next = BTreeMap::new();
            for c in &res.configs {
                let Some(v) = &c.value else { continue };
                if next.insert(c.name.to_string(), v.to_string()).is_some() {
                    return Err((
                        ResponseError::InvalidRequest,
                        format!("config {} appears twice", c.name.as_str()),
                    ));
                }
            }
            validate_set(res.resource_type, &next)?;
            if req.validate_only {
                return Ok(());
            }
            store(b, res.resource_type, &name, broker, next).await
        }
        .await;
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err((code, msg)) = outcome {
            r = r
                .with_error_code(code.code())
                .with_error_message(Some(s(msg)));
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn is_list(resource_type: i8, name: &str) -> bool {
    let d = if resource_type == RESOURCE_TOPIC {
        topic_config::def(name)
    } else {
        topic_config::def_by_broker_name(name)
    };
    d.map(|d| d.kind == ConfigType::List).unwrap_or(false)
}

/// Applies incremental operations to a copy of the current overrides (pure).
pub fn apply_ops(
    resource_type: i8,
    mut map: BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, ResErr> {
    let mut seen = std::collections::HashSet::new();
    for (name, op, value) in ops {
        if !seen.insert(name.clone()) {
            return Err((
                ResponseError::InvalidRequest,
                format!("config {name} appears twice"),
            ));
        }
        match *op {
            OP_SET => {
                let v = value.clone().ok_or_else(|| {
                    (
                        ResponseError::InvalidRequest,
                        format!("SET of {name} needs a value"),
                    )
                })?;
                map.insert(name.clone(), v);
            }
            OP_DELETE => {
                map.remove(name);
            }
            OP_APPEND | OP_SUBTRACT => {
                if !is_list(resource_type, name) {
                    return Err((
                        ResponseError::InvalidConfig,
                        format!("{name} is not a list, so APPEND/SUBTRACT do not apply"),
                    ));
                }
                let v = value.clone().unwrap_or_default();
                let mut items: Vec<String> = map
                    .get(name)
                    .map(|cur| {
                        cur.split(',')
                            .map(|x| x.trim().to_string())
                            .filter(|x| !x.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                for item in v
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                {
                    if *op == OP_APPEND {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else {
                        items.retain(|x| *x != item);
                    }
                }
                if items.is_empty() {
                    map.remove(name);
                } else {
                    map.insert(name.clone(), items.join(","));
                }
            }
            other => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(map)
}

pub async fn incremental_alter(
    b: &Broker,
    _version: i16,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let outcome: Result<(), ResErr> = async {
            let (cur, broker) = current(b, res.resource_type, &name)?;
            let ops: Vec<(String, i8, Option<String>)> = res
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.to_string()),
                    )
                })
                .collect();
            let next = apply_ops(res.resource_type, cur, &ops)?;
            validate_set(res.resource_type, &next)?;
            if req.validate_only {
                return Ok(());
            }
            store(b, res.resource_type, &name, broker, next).await
        }
        .await;
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err((code, msg)) = outcome {
            r = r
                .with_error_code(code.code())
                .with_error_message(Some(s(msg)));
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_ops() {
        let cur: BTreeMap<String, String> = [("retention.ms".into(), "10".into())].into();
        let next = apply_ops(
            RESOURCE_TOPIC,
            cur.clone(),
            &[
                ("retention.ms".into(), OP_DELETE, None),
                ("segment.bytes".into(), OP_SET, Some("2048".into())),
            ],
        )
        .unwrap();
        assert_eq!(next.get("segment.bytes").map(String::as_str), Some("2048"));
        assert!(!next.contains_key("retention.ms"));
        let err = apply_ops(
            RESOURCE_TOPIC,
            cur.clone(),
            &[("retention.ms".into(), OP_APPEND, Some("1".into()))],
        )
        .unwrap_err();
        assert_eq!(err.0, ResponseError::InvalidConfig);
        let appended = apply_ops(
            RESOURCE_TOPIC,
            cur.clone(),
            &[("cleanup.policy".into(), OP_APPEND, Some("delete".into()))],
        )
        .unwrap();
        assert_eq!(appended["cleanup.policy"], "delete");
        let dup = apply_ops(
            RESOURCE_TOPIC,
            cur,
            &[
                ("a".into(), OP_SET, Some("1".into())),
                ("a".into(), OP_SET, Some("2".into())),
            ],
        )
        .unwrap_err();
        assert_eq!(dup.0, ResponseError::InvalidRequest);
    }
}
