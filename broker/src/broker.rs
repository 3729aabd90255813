//! The broker's shared state and request dispatch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::sync::Mutex;

use crate::config::BrokerConfig;
use crate::group::state::GroupConfig;
use crate::group::GroupCoordinator;
use crate::handlers;
use crate::metadata::{BrokerMeta, MetadataStore};
use crate::metrics::Metrics;
use crate::partition::ReplicaManager;
use crate::protocol::codec::Request;

/// Producer ids are reserved from the metadata store in blocks, as Kafka does.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Broker {
    pub config: BrokerConfig,
    pub me: BrokerMeta,
    pub metadata: Arc<dyn MetadataStore>,
    pub replicas: ReplicaManager,
    pub metrics: Metrics,
    pub groups: GroupCoordinator,
    pub security: crate::security::BrokerSecurity,
    /// Replication throttle quotas (leader and follower side).
    pub quotas: crate::replication::throttle::Quotas,
    ready: AtomicBool,
    producer_ids: Mutex<(i64, i64)>,
}

impl Broker {
    /// A standalone broker on `config.data_dir` (its metadata in that directory) with its logs
    /// opened, not serving: what tests and tools embed. `main` adds the data-directory lock,
    /// the listeners and cluster mode.
    pub fn open_standalone(config: BrokerConfig, me: BrokerMeta) -> anyhow::Result<Arc<Broker>> {
        let store =
            crate::metadata::standalone::LocalMetadataStore::open(&config.data_dir, me.clone())?;
        let replicas = ReplicaManager::new(&config.data_dir, me.id);
        let b = Arc::new(Broker::new(
            config,
            me,
            Arc::new(store),
            replicas,
            Metrics::new(),
        ));
        b.sync_partitions()?;
        Ok(b)
    }

    pub fn new(
        config: BrokerConfig,
        me: BrokerMeta,
        metadata: Arc<dyn MetadataStore>,
        replicas: ReplicaManager,
        metrics: Metrics,
    ) -> Self {
        let groups = GroupCoordinator::new(
            GroupConfig {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                max_size: config.group_max_size,
            },
            config.offsets_topic_num_partitions,
            config.offset_metadata_max_bytes,
            config.message_max_bytes as usize,
        );
        let quotas = crate::replication::throttle::Quotas::new(
            config.replication_quota_window_num as usize,
            config.replication_quota_window_size_seconds * 1000,
        );
        Self {
            quotas,
            config,
            me,
            metadata,
            replicas,
            metrics,
            groups,
            security: Default::default(),
            ready: AtomicBool::new(false),
            producer_ids: Mutex::new((0, 0)),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Serving requests (set once started, cleared on shutdown). See [`Broker::readiness`]
    /// for what `/readyz` reports.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// `/readyz`: serving and, in cluster mode, registered and in the ISR of every partition
    /// it replicates ([`crate::readiness`]).
    pub fn readiness(&self) -> crate::readiness::Readiness {
        if !self.is_ready() {
            return crate::readiness::Readiness::NotServing;
        }
        if self.config.coordinator.is_none() {
            return crate::readiness::Readiness::Ready;
        }
        crate::readiness::cluster_readiness(&self.metadata.view(), self.me.id)
    }

    /// Re-applies metadata to the hosted partitions (after every metadata change).
    pub fn sync_partitions(&self) -> anyhow::Result<()> {
        self.replicas
            .reconcile(|| self.metadata.view(), &self.config)?;
        self.metrics
            .set_partitions(self.replicas.all().len() as i64);
        Ok(())
    }

    pub async fn next_producer_id(&self) -> Result<i64, crate::metadata::MetadataError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let first = self
                .metadata
                .allocate_producer_ids(PRODUCER_ID_BLOCK)
                .await?;
            *ids = (first, first + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Handles one request. `None` means no response is sent (Produce with acks=0).
    pub async fn handle(&self, req: Request) -> Option<ResponseKind> {
        let v = req.header.request_api_version;
        let api = req.api;
        let principal = req.principal.clone();
        let host = req.client_host.trim_start_matches('/').to_string();
        let caller = crate::security::Caller {
            principal: &principal,
            host: &host,
        };
        let resp = match req.body {
            RequestKind::ApiVersions(r) => {
                ResponseKind::ApiVersions(handlers::api_versions::handle(v, r))
            }
            RequestKind::Metadata(r) => ResponseKind::Metadata(
                handlers::metadata::handle(self, v, r, &req.listener, caller).await,
            ),
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let resp = handlers::produce::handle(self, v, r, caller).await;
                if acks == 0 {
                    return None;
                }
                ResponseKind::Produce(resp)
            }
            RequestKind::Fetch(r) => {
                ResponseKind::Fetch(handlers::fetch::handle(self, v, r, caller).await)
            }
            RequestKind::ListOffsets(r) => {
                ResponseKind::ListOffsets(handlers::authz::list_offsets(self, v, r, caller))
            }
            RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
                handlers::authz::offset_for_leader_epoch(self, v, r, caller),
            ),
            RequestKind::CreateTopics(r) => {
                ResponseKind::CreateTopics(handlers::authz::create_topics(self, v, r, caller).await)
            }
            RequestKind::DeleteTopics(r) => {
                ResponseKind::DeleteTopics(handlers::authz::delete_topics(self, v, r, caller).await)
            }
            RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
                handlers::authz::create_partitions(self, v, r, caller).await,
            ),
            RequestKind::DescribeConfigs(r) => {
                ResponseKind::DescribeConfigs(handlers::authz::describe_configs(self, v, r, caller))
            }
            RequestKind::AlterConfigs(r) => {
                ResponseKind::AlterConfigs(handlers::authz::alter_configs(self, v, r, caller).await)
            }
            RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
                handlers::authz::incremental_alter_configs(self, v, r, caller).await,
            ),
            RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(
                handlers::authz::describe_cluster(self, v, r, &req.listener, caller),
            ),
            RequestKind::AlterPartitionReassignments(r) => {
                ResponseKind::AlterPartitionReassignments(
                    handlers::authz::alter_reassignments(self, v, r, caller).await,
                )
            }
            RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
                handlers::authz::list_reassignments(self, v, r, caller),
            ),
            RequestKind::DescribeLogDirs(r) => ResponseKind::DescribeLogDirs(
                handlers::authz::describe_log_dirs(self, v, r, caller),
            ),
            RequestKind::DeleteRecords(r) => {
                ResponseKind::DeleteRecords(handlers::authz::delete_records(self, v, r, caller))
            }
            RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(
                handlers::authz::find_coordinator(self, v, r, &req.listener, caller).await,
            ),
            RequestKind::JoinGroup(r) => {
                let client_id = req.header.client_id.as_deref().unwrap_or("").to_string();
                ResponseKind::JoinGroup(
                    handlers::authz::join_group(self, v, r, &client_id, &req.client_host, caller)
                        .await,
                )
            }
            RequestKind::SyncGroup(r) => {
                ResponseKind::SyncGroup(handlers::authz::sync_group(self, v, r, caller).await)
            }
            RequestKind::Heartbeat(r) => {
                ResponseKind::Heartbeat(handlers::authz::heartbeat(self, v, r, caller).await)
            }
            RequestKind::LeaveGroup(r) => {
                ResponseKind::LeaveGroup(handlers::authz::leave_group(self, v, r, caller).await)
            }
            RequestKind::OffsetCommit(r) => {
                ResponseKind::OffsetCommit(handlers::authz::offset_commit(self, v, r, caller).await)
            }
            RequestKind::OffsetFetch(r) => {
                ResponseKind::OffsetFetch(handlers::authz::offset_fetch(self, v, r, caller).await)
            }
            RequestKind::ListGroups(r) => {
                ResponseKind::ListGroups(handlers::authz::list_groups(self, v, r, caller).await)
            }
            RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
                handlers::authz::describe_groups(self, v, r, caller).await,
            ),
            RequestKind::DeleteGroups(r) => {
                ResponseKind::DeleteGroups(handlers::authz::delete_groups(self, v, r, caller).await)
            }
            RequestKind::OffsetDelete(r) => {
                ResponseKind::OffsetDelete(handlers::authz::offset_delete(self, v, r, caller).await)
            }
            RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(
                handlers::authz::init_producer_id(self, v, r, caller).await,
            ),
            // The server answers the SASL exchange itself; reaching here means no listener
            // session, which Kafka answers as a non-SASL listener does.
            RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
                kafka_protocol::messages::SaslHandshakeResponse::default()
                    .with_error_code(kafka_protocol::error::ResponseError::IllegalSaslState.code()),
            ),
            RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
                kafka_protocol::messages::SaslAuthenticateResponse::default()
                    .with_error_code(kafka_protocol::error::ResponseError::IllegalSaslState.code()),
            ),
            RequestKind::DescribeUserScramCredentials(r) => {
                ResponseKind::DescribeUserScramCredentials(handlers::authz::describe_scram(
                    self, r, caller,
                ))
            }
            RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
                handlers::authz::alter_scram(self, r, caller).await,
            ),
            RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(
                crate::security::acl_admin::create(&self.security, caller, r).await,
            ),
            RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(
                crate::security::acl_admin::describe(&self.security, caller, r),
            ),
            RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(
                crate::security::acl_admin::delete(&self.security, caller, r).await,
            ),
            _ => {
                // The codec only decodes APIs from the version table, so this is a bug, not input.
                tracing::error!(?api, "request decoded for an API without a handler");
                return None;
            }
        };
        Some(resp)
    }
}

/// Label for metrics and logs, without allocating per request.
pub fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::api_name;
    use crate::protocol::versions::SUPPORTED;

    #[test]
    fn every_served_api_has_a_metric_label() {
        for (api, _, _) in SUPPORTED {
            assert_eq!(api_name(*api), format!("{api:?}"));
        }
    }
}
