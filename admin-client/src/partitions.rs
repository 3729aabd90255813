//! Partition replica state (Metadata: replicas, ISR, leader of every partition) and the
//! effective `min.insync.replicas` of topics (DescribeConfigs), for callers that judge whether
//! a broker can stop without taking partitions below their durability floor.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::DescribeConfigsRequest;

use crate::{check, sb, AdminClient, Error, Result, RESOURCE_TOPIC};

/// One partition as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: i32,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// Every partition of the cluster, with the controller and the registered brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionsView {
    pub controller_id: i32,
    /// Ids of the brokers Metadata lists (registered and alive).
    pub brokers: Vec<i32>,
    pub partitions: Vec<PartitionInfo>,
}

/// The config key the durability floor lives under.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

impl AdminClient {
    /// Replicas, ISR and leader of every partition of every topic (internal ones included).
    pub async fn describe_partitions(&mut self) -> Result<PartitionsView> {
        let state = self.cluster_state().await?;
        // cluster_state() orders topics by name and partitions by index.
        let partitions = state
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name;
                t.partitions.into_iter().map(move |p| PartitionInfo {
                    topic: topic.clone(),
                    partition: p.index,
                    leader: p.leader,
                    replicas: p.replicas,
                    isr: p.isr,
                })
            })
            .collect();
        let mut brokers: Vec<i32> = state.brokers.iter().map(|b| b.id).collect();
        brokers.sort_unstable();
        Ok(PartitionsView {
            controller_id: state.controller_id,
            brokers,
            partitions,
        })
    }

    /// The effective `min.insync.replicas` of each of `topics` (set on the topic, else the
    /// broker's default), in one DescribeConfigs request.
    pub async fn min_insync_replicas(&mut self, topics: &[&str]) -> Result<BTreeMap<String, i32>> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        let req = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(sb(t))
                        .with_configuration_keys(Some(vec![sb(MIN_INSYNC_REPLICAS)]))
                })
                .collect(),
        );
        let resp = self.any.send(req).await?;
        let mut out = BTreeMap::new();
        for r in resp.results {
            let topic = r.resource_name.to_string();
            check(
                "DescribeConfigs",
                &topic,
                r.error_code,
                r.error_message.as_ref(),
            )?;
            let entry = r
                .configs
                .iter()
                .find(|c| c.name.as_str() == MIN_INSYNC_REPLICAS)
                .ok_or_else(|| {
                    Error::Protocol(format!(
                        "DescribeConfigs on {topic}: no {MIN_INSYNC_REPLICAS}"
                    ))
                })?;
            let value = entry
                .value
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default();
            let n = value.trim().parse::<i32>().map_err(|_| {
                Error::Protocol(format!(
                    "DescribeConfigs on {topic}: {MIN_INSYNC_REPLICAS} is {value:?}, not a number"
                ))
            })?;
            out.insert(topic, n);
        }
        for t in topics {
            if !out.contains_key(*t) {
                return Err(Error::Protocol(format!(
                    "DescribeConfigs: no answer for topic {t}"
                )));
            }
        }
        Ok(out)
    }
}
