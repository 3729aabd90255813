//! Broker settings: every setting is a command-line flag and an environment variable of the same
//! name (upper snake case, `RIVULET_` prefix), e.g. `--log-retention-ms` / `RIVULET_LOG_RETENTION_MS`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Rivulet's Kafka-protocol broker.
#[derive(Parser, Debug, Clone)]
#[command(name = "rivulet-broker", version, about, allow_negative_numbers = true)]
pub struct BrokerConfig {
    /// This broker's id (Kafka's broker.id). Stable for the life of the broker's data.
    #[arg(long, env = "RIVULET_BROKER_ID", default_value_t = 0)]
    pub broker_id: i32,

    /// Address the Kafka listener binds to.
    #[arg(long, env = "RIVULET_LISTEN_ADDR", default_value = "127.0.0.1:9092")]
    pub listen_addr: SocketAddr,

    /// host:port that clients are told to connect to (defaults to the listen address).
    #[arg(long, env = "RIVULET_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,

    /// Named listeners, Kafka's `listeners`: `NAME://host:port,...`, e.g.
    /// `PLAINTEXT://127.0.0.1:9092,CLIENT://0.0.0.0:9093`. Unset: one PLAINTEXT listener on
    /// --listen-addr, advertised as --advertised-addr.
    #[arg(long, env = "RIVULET_LISTENERS")]
    pub listeners: Option<String>,

    /// What clients are told per listener (advertised.listeners), `NAME://host:port,...`;
    /// defaults to --listeners. Metadata answers with the endpoints of the listener asked.
    #[arg(long, env = "RIVULET_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,

    /// Security protocol of each listener name (listener.security.protocol.map),
    /// `NAME:PROTOCOL,...` with PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. Default: each of those
    /// four names maps to itself.
    #[arg(long, env = "RIVULET_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,

    /// Listener other brokers replicate through (inter.broker.listener.name). Default: the only
    /// listener, else PLAINTEXT.
    #[arg(long, env = "RIVULET_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,

    /// PEM certificate chain of SSL / SASL_SSL listeners (ssl.keystore.location); re-read when it changes.
    #[arg(long, env = "RIVULET_SSL_CERT_FILE")]
    pub ssl_cert_file: Option<PathBuf>,

    /// PEM private key of that certificate (ssl.keystore.location); re-read when it changes.
    #[arg(long, env = "RIVULET_SSL_KEY_FILE")]
    pub ssl_key_file: Option<PathBuf>,

    /// PEM CA bundle that client certificates must chain to (ssl.truststore.location).
    #[arg(long, env = "RIVULET_SSL_CA_FILE")]
    pub ssl_ca_file: Option<PathBuf>,

    /// Client certificates on SSL listeners (ssl.client.auth): none, requested or required. The
    /// principal of a verified client is its subject, `User:CN=...,O=...`.
    #[arg(long, env = "RIVULET_SSL_CLIENT_AUTH", default_value = "none", value_parser = ["none", "requested", "required"])]
    pub ssl_client_auth: String,

    /// Client certificates per listener, overriding --ssl-client-auth (Kafka's
    /// `listener.name.<listener>.ssl.client.auth`): `LISTENER:mode,...`, e.g.
    /// `MTLS:required,CLIENTS:none`. SASL_SSL listeners default to none.
    #[arg(long, env = "RIVULET_LISTENER_SSL_CLIENT_AUTH", default_value = "")]
    pub listener_ssl_client_auth: String,

    /// How often the TLS files are checked for changes.
    #[arg(long, env = "RIVULET_SSL_RELOAD_INTERVAL_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..))]
    pub ssl_reload_interval_ms: u64,

    /// SASL mechanisms of SASL listeners (sasl.enabled.mechanisms): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    /// PLAIN checks passwords against the users' SCRAM credentials.
    #[arg(
        long,
        env = "RIVULET_SASL_ENABLED_MECHANISMS",
        default_value = "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"
    )]
    pub sasl_enabled_mechanisms: String,

    /// Delay before a failed authentication's response, slowing password guessing
    /// (connection.failed.authentication.delay.ms).
    #[arg(long, env = "RIVULET_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub connection_failed_authentication_delay_ms: u64,

    /// Longest an authenticated SASL session lasts before the client must re-authenticate
    /// (connections.max.reauth.ms, KIP-368); 0 means forever.
    #[arg(long, env = "RIVULET_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    pub connections_max_reauth_ms: i64,

    /// The authorizer (Kafka's authorizer.class.name): `none` allows everything; `simple` (or
    /// `acl`, `kafka.security.authorizer.AclAuthorizer`) enforces the ACLs.
    #[arg(long, env = "RIVULET_AUTHORIZER", default_value = "none", value_parser = ["none", "simple", "acl", "kafka.security.authorizer.AclAuthorizer", "kafka.security.auth.SimpleAclAuthorizer", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"])]
    pub authorizer: String,

    /// Principals that pass every authorization (super.users), `;`-separated:
    /// `User:admin;User:broker`.
    #[arg(long, env = "RIVULET_SUPER_USERS", default_value = "")]
    pub super_users: String,

    /// With the authorizer on, allow an operation on a resource that has no ACL at all
    /// (allow.everyone.if.no.acl.found).
    #[arg(long, env = "RIVULET_ALLOW_EVERYONE_IF_NO_ACL_FOUND", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_everyone_if_no_acl_found: bool,

    /// SASL mechanism this broker uses to authenticate to other brokers' SASL inter-broker
    /// listener (sasl.mechanism.inter.broker.protocol).
    #[arg(long, env = "RIVULET_INTER_BROKER_SASL_MECHANISM", default_value = "SCRAM-SHA-512", value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub inter_broker_sasl_mechanism: String,

    /// The user this broker authenticates as to other brokers (replication); make it a super
    /// user (`--super-users User:<name>`).
    #[arg(long, env = "RIVULET_INTER_BROKER_SASL_USERNAME")]
    pub inter_broker_sasl_username: Option<String>,

    /// Its password (prefer --inter-broker-sasl-password-file).
    #[arg(
        long,
        env = "RIVULET_INTER_BROKER_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub inter_broker_sasl_password: Option<String>,

    /// A file holding its password (trailing newline ignored).
    #[arg(long, env = "RIVULET_INTER_BROKER_SASL_PASSWORD_FILE")]
    pub inter_broker_sasl_password_file: Option<PathBuf>,

    /// SCRAM users to create at start when they have no credential yet (Kafka's
    /// `kafka-storage format --add-scram`): one `name=password` per line. Each gets
    /// SCRAM-SHA-256 and SCRAM-SHA-512 credentials (4096 iterations); existing ones are kept.
    #[arg(long, env = "RIVULET_BOOTSTRAP_SCRAM_USERS_FILE")]
    pub bootstrap_scram_users_file: Option<PathBuf>,

    /// Address of the admin HTTP server (/healthz, /readyz, /metrics).
    #[arg(long, env = "RIVULET_ADMIN_ADDR", default_value = "127.0.0.1:8092")]
    pub admin_addr: SocketAddr,

    /// Directory holding the partition logs and (in standalone mode) the metadata.
    #[arg(long, env = "RIVULET_DATA_DIR", default_value = "./data/broker-0")]
    pub data_dir: PathBuf,

    /// Rack (availability zone) of this broker, reported in Metadata.
    #[arg(long, env = "RIVULET_RACK")]
    pub rack: Option<String>,

    /// Comma-separated coordinator addresses (cluster mode). Absent means standalone mode.
    #[arg(long, env = "RIVULET_COORDINATOR", value_parser = crate::cluster::store::addr::validate)]
    pub coordinator: Option<String>,

    /// Create topics on first Metadata request for them (Kafka's auto.create.topics.enable).
    #[arg(long, env = "RIVULET_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Partitions of an auto-created topic, and of CreateTopics without a count (num.partitions).
    #[arg(long, env = "RIVULET_NUM_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub num_partitions: i32,

    /// Replication factor of topics created without one (default.replication.factor).
    #[arg(long, env = "RIVULET_DEFAULT_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..))]
    pub default_replication_factor: i16,

    /// Largest request frame accepted; larger frames close the connection (socket.request.max.bytes).
    #[arg(long, env = "RIVULET_SOCKET_REQUEST_MAX_BYTES", default_value_t = 104_857_600, value_parser = clap::value_parser!(u32).range(1024..=(i32::MAX as i64)))]
    pub socket_request_max_bytes: u32,

    /// Largest record batch accepted by default (message.max.bytes; topics override with max.message.bytes).
    #[arg(long, env = "RIVULET_MESSAGE_MAX_BYTES", default_value_t = 1_048_588, value_parser = clap::value_parser!(u32).range(64..=(i32::MAX as i64)))]
    pub message_max_bytes: u32,

    /// Default segment size in bytes (log.segment.bytes).
    #[arg(long, env = "RIVULET_LOG_SEGMENT_BYTES", default_value_t = 1_073_741_824, value_parser = clap::value_parser!(u64).range(1024..=(i32::MAX as u64)))]
    pub log_segment_bytes: u64,

    /// Default age after which the active segment is rolled (log.roll.ms / segment.ms).
    #[arg(long, env = "RIVULET_LOG_SEGMENT_MS", default_value_t = 604_800_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub log_segment_ms: i64,

    /// Default time retention in ms, -1 for unlimited (log.retention.ms).
    #[arg(long, env = "RIVULET_LOG_RETENTION_MS", default_value_t = 604_800_000, value_parser = clap::value_parser!(i64).range(-1..))]
    pub log_retention_ms: i64,

    /// Default size retention per partition in bytes, -1 for unlimited (log.retention.bytes).
    #[arg(long, env = "RIVULET_LOG_RETENTION_BYTES", default_value_t = -1, value_parser = clap::value_parser!(i64).range(-1..))]
    pub log_retention_bytes: i64,

    /// How often the retention cleaner runs (log.retention.check.interval.ms).
    #[arg(long, env = "RIVULET_LOG_RETENTION_CHECK_INTERVAL_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub log_retention_check_interval_ms: u64,

    /// How often the log cleaner looks for compacted topics' partitions to clean
    /// (log.cleaner.backoff.ms).
    #[arg(long, env = "RIVULET_LOG_CLEANER_BACKOFF_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub log_cleaner_backoff_ms: u64,

    /// fsync after this many messages (log.flush.interval.messages). Kafka's default leaves flushing
    /// to the OS; 1 fsyncs every append before it is acknowledged.
    #[arg(long, env = "RIVULET_LOG_FLUSH_INTERVAL_MESSAGES", default_value_t = i64::MAX, value_parser = clap::value_parser!(i64).range(1..))]
    pub log_flush_interval_messages: i64,

    /// fsync data older than this many ms (log.flush.interval.ms).
    #[arg(long, env = "RIVULET_LOG_FLUSH_INTERVAL_MS", default_value_t = i64::MAX, value_parser = clap::value_parser!(i64).range(1..))]
    pub log_flush_interval_ms: i64,

    /// How often the background flusher checks log.flush.interval.ms (log.flush.scheduler.interval.ms).
    #[arg(long, env = "RIVULET_LOG_FLUSH_SCHEDULER_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_flush_scheduler_interval_ms: u64,

    /// Bytes between entries of the sparse offset index (log.index.interval.bytes).
    #[arg(long, env = "RIVULET_LOG_INDEX_INTERVAL_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub log_index_interval_bytes: u32,

    /// Timestamp stored in batches: CreateTime or LogAppendTime (log.message.timestamp.type).
    #[arg(long, env = "RIVULET_LOG_MESSAGE_TIMESTAMP_TYPE", default_value = "CreateTime", value_parser = ["CreateTime", "LogAppendTime"])]
    pub log_message_timestamp_type: String,

    /// Delay before the first rebalance of a new group, so members starting together join one
    /// generation (group.initial.rebalance.delay.ms).
    #[arg(long, env = "RIVULET_GROUP_INITIAL_REBALANCE_DELAY_MS", default_value_t = 3000, value_parser = clap::value_parser!(i64).range(0..))]
    pub group_initial_rebalance_delay_ms: i64,

    /// Smallest session timeout a consumer may ask for (group.min.session.timeout.ms).
    #[arg(long, env = "RIVULET_GROUP_MIN_SESSION_TIMEOUT_MS", default_value_t = 6000, value_parser = clap::value_parser!(i64).range(1..))]
    pub group_min_session_timeout_ms: i64,

    /// Largest session timeout a consumer may ask for (group.max.session.timeout.ms).
    #[arg(long, env = "RIVULET_GROUP_MAX_SESSION_TIMEOUT_MS", default_value_t = 1_800_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub group_max_session_timeout_ms: i64,

    /// Most members a group may have (group.max.size).
    #[arg(long, env = "RIVULET_GROUP_MAX_SIZE", default_value_t = i32::MAX as usize)]
    pub group_max_size: usize,

    /// Partitions of the internal __consumer_offsets topic, fixed at its creation
    /// (offsets.topic.num.partitions).
    #[arg(long, env = "RIVULET_OFFSETS_TOPIC_NUM_PARTITIONS", default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub offsets_topic_num_partitions: i32,

    /// Longest metadata string an offset commit may carry (offset.metadata.max.bytes).
    #[arg(
        long,
        env = "RIVULET_OFFSET_METADATA_MAX_BYTES",
        default_value_t = 4096
    )]
    pub offset_metadata_max_bytes: usize,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `rivulet_broker=debug`.
    #[arg(long, env = "RIVULET_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format: text or json.
    #[arg(long, env = "RIVULET_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Seconds to wait for in-flight requests on SIGTERM before closing.
    #[arg(long, env = "RIVULET_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    // ---- cluster mode (only with --coordinator) ----
    /// Coordinator session timeout (zookeeper.session.timeout.ms): a broker silent this long is
    /// considered dead, its partitions get new leaders, and it stops acting as a leader itself.
    #[arg(long, env = "RIVULET_COORDINATOR_SESSION_TIMEOUT_MS", default_value_t = 18_000, value_parser = clap::value_parser!(u64).range(1000..=600_000))]
    pub coordinator_session_timeout_ms: u64,

    /// Create znodes with ACLs (Kafka's zookeeper.set.acl): cluster metadata world-readable
    /// but writable only by the brokers' digest user, credentials and ACLs readable by it
    /// only. Needs --coordinator-digest-username.
    #[arg(long, env = "RIVULET_ZOOKEEPER_SET_ACL", default_value_t = false, action = clap::ArgAction::Set)]
    pub zookeeper_set_acl: bool,

    /// Digest user the broker authenticates to the coordinator as (all brokers share it).
    #[arg(long, env = "RIVULET_COORDINATOR_DIGEST_USERNAME")]
    pub coordinator_digest_username: Option<String>,

    /// Its password (prefer --coordinator-digest-password-file).
    #[arg(
        long,
        env = "RIVULET_COORDINATOR_DIGEST_PASSWORD",
        hide_env_values = true
    )]
    pub coordinator_digest_password: Option<String>,

    /// A file holding its password (trailing newline ignored).
    #[arg(long, env = "RIVULET_COORDINATOR_DIGEST_PASSWORD_FILE")]
    pub coordinator_digest_password_file: Option<PathBuf>,

    /// A follower that has not caught up with the leader's log end for this long leaves the ISR
    /// (replica.lag.time.max.ms).
    #[arg(long, env = "RIVULET_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub replica_lag_time_max_ms: u64,

    /// Bytes a follower asks for per partition per fetch (replica.fetch.max.bytes).
    #[arg(long, env = "RIVULET_REPLICA_FETCH_MAX_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(i32).range(1024..))]
    pub replica_fetch_max_bytes: i32,

    /// Bytes a follower's fetch response may carry in all (replica.fetch.response.max.bytes).
    #[arg(long, env = "RIVULET_REPLICA_FETCH_RESPONSE_MAX_BYTES", default_value_t = 10_485_760, value_parser = clap::value_parser!(i32).range(1024..))]
    pub replica_fetch_response_max_bytes: i32,

    /// Longest a follower's fetch waits at the leader for new data (replica.fetch.wait.max.ms).
    #[arg(long, env = "RIVULET_REPLICA_FETCH_WAIT_MAX_MS", default_value_t = 500, value_parser = clap::value_parser!(i32).range(0..))]
    pub replica_fetch_wait_max_ms: i32,

    /// Pause after a failed follower fetch before retrying (replica.fetch.backoff.ms).
    #[arg(long, env = "RIVULET_REPLICA_FETCH_BACKOFF_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub replica_fetch_backoff_ms: u64,

    /// How often each partition's high watermark is written to disk
    /// (replica.high.watermark.checkpoint.interval.ms).
    #[arg(long, env = "RIVULET_REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..))]
    pub replica_high_watermark_checkpoint_interval_ms: u64,

    /// Samples the replication throttle's rate is measured over (replication.quota.window.num).
    #[arg(long, env = "RIVULET_REPLICATION_QUOTA_WINDOW_NUM", default_value_t = 11, value_parser = clap::value_parser!(u64).range(2..=100))]
    pub replication_quota_window_num: u64,

    /// Length of one replication throttle sample in seconds
    /// (replication.quota.window.size.seconds).
    #[arg(long, env = "RIVULET_REPLICATION_QUOTA_WINDOW_SIZE_SECONDS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub replication_quota_window_size_seconds: u64,

    /// Cluster default for min.insync.replicas (a topic config overrides it).
    #[arg(long, env = "RIVULET_MIN_INSYNC_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub min_insync_replicas: i32,

    /// Cluster default for unclean.leader.election.enable: let an out-of-sync replica lead when
    /// no in-sync replica is left (may lose acknowledged writes; a topic config overrides it).
    #[arg(long, env = "RIVULET_UNCLEAN_LEADER_ELECTION_ENABLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub unclean_leader_election_enable: bool,

    /// Move leadership back to each partition's preferred replica when it is in sync
    /// (auto.leader.rebalance.enable).
    #[arg(long, env = "RIVULET_AUTO_LEADER_REBALANCE_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_leader_rebalance_enable: bool,

    /// How often the controller checks leader balance (leader.imbalance.check.interval.seconds).
    #[arg(long, env = "RIVULET_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub leader_imbalance_check_interval_seconds: u64,

    /// Share (percent) of the partitions a broker prefers but does not lead above which the
    /// periodic check moves their leadership back (leader.imbalance.per.broker.percentage).
    #[arg(long, env = "RIVULET_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub leader_imbalance_per_broker_percentage: u32,

    /// How long a broker that returns (restarted or reconnected) waits before it is given back
    /// the leadership it prefers. Clients and followers must be able to resolve and reach it
    /// first: a restarted pod's DNS name can lag its registration by seconds, and acks=all
    /// writes wait for followers that cannot connect. 0 gives leadership back at once.
    #[arg(long, env = "RIVULET_LEADER_RETURN_DELAY_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub leader_return_delay_ms: u64,

    /// On SIGTERM, hand leadership to other in-sync replicas before exiting
    /// (controlled.shutdown.enable).
    #[arg(long, env = "RIVULET_CONTROLLED_SHUTDOWN_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub controlled_shutdown_enable: bool,

    /// Longest the controlled shutdown waits for leadership to move before exiting anyway.
    #[arg(long, env = "RIVULET_CONTROLLED_SHUTDOWN_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub controlled_shutdown_timeout_ms: u64,

    /// Replication factor of __consumer_offsets, capped by the live brokers when it is created
    /// (offsets.topic.replication.factor).
    #[arg(long, env = "RIVULET_OFFSETS_TOPIC_REPLICATION_FACTOR", default_value_t = 3, value_parser = clap::value_parser!(i16).range(1..))]
    pub offsets_topic_replication_factor: i16,
}

impl BrokerConfig {
    /// The inter-broker SASL user and password, when configured.
    pub fn inter_broker_sasl(&self) -> anyhow::Result<Option<(String, String)>> {
        let Some(user) = self.inter_broker_sasl_username.clone() else {
            return Ok(None);
        };
        let password = match (&self.inter_broker_sasl_password, &self.inter_broker_sasl_password_file) {
            (Some(p), None) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("--inter-broker-sasl-password-file {}: {e}", f.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            (Some(_), Some(_)) => anyhow::bail!(
                "give one of --inter-broker-sasl-password and --inter-broker-sasl-password-file"
            ),
            (None, None) => anyhow::bail!(
                "--inter-broker-sasl-username needs --inter-broker-sasl-password or --inter-broker-sasl-password-file"
            ),
        };
        if user.is_empty() || password.is_empty() {
            anyhow::bail!("--inter-broker-sasl-username and its password must not be empty");
        }
        Ok(Some((user, password)))
    }

    /// `user:password` for the coordinator's digest scheme, when configured.
    pub fn coordinator_digest(&self) -> Result<Option<String>, String> {
        let Some(user) = &self.coordinator_digest_username else {
            if self.zookeeper_set_acl {
                return Err("--zookeeper-set-acl needs --coordinator-digest-username".into());
            }
            return Ok(None);
        };
        let pw = match (&self.coordinator_digest_password, &self.coordinator_digest_password_file) {
            (Some(p), None) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("--coordinator-digest-password-file {}: {e}", f.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            _ => {
                return Err("--coordinator-digest-username needs exactly one of --coordinator-digest-password and --coordinator-digest-password-file".into())
            }
        };
        if user.is_empty() || user.contains(':') || pw.is_empty() {
            return Err("--coordinator-digest-username must be non-empty without ':', and its password non-empty".into());
        }
        Ok(Some(format!("{user}:{pw}")))
    }

    /// The users of --bootstrap-scram-users-file.
    pub fn bootstrap_scram_users(&self) -> anyhow::Result<Vec<(String, String)>> {
        let Some(f) = &self.bootstrap_scram_users_file else {
            return Ok(Vec::new());
        };
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("--bootstrap-scram-users-file {}: {e}", f.display()))?;
        parse_users_file(&text)
            .map_err(|e| anyhow::anyhow!("--bootstrap-scram-users-file {}: {e}", f.display()))
    }

    /// The authorizer's settings, `None` when `--authorizer none`. Checks each super user.
    pub fn authorizer_config(
        &self,
    ) -> anyhow::Result<Option<crate::security::authorizer::AuthorizerConfig>> {
        if self.authorizer == "none" {
            return Ok(None);
        }
        let mut super_users = std::collections::BTreeSet::new();
        for u in self
            .super_users
            .split(';')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            let p = crate::security::principal::KafkaPrincipal::parse(u).ok_or_else(|| {
                anyhow::anyhow!(
                    "--super-users: {u:?} is not a principal (Type:name, e.g. User:admin)"
                )
            })?;
            super_users.insert(p.to_string());
        }
        Ok(Some(crate::security::authorizer::AuthorizerConfig {
            super_users,
            allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
        }))
    }

    /// The listeners from --listeners & co, or the single PLAINTEXT one of --listen-addr.
    pub fn listeners(&self) -> anyhow::Result<crate::security::listeners::Listeners> {
        use crate::security::listeners;
        match &self.listeners {
            Some(l) => listeners::resolve(
                l,
                self.advertised_listeners.as_deref(),
                self.listener_security_protocol_map.as_deref(),
                self.inter_broker_listener_name.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("--listeners: {e}")),
            None => {
                let (host, port) = self.advertised()?;
                let advertised = listeners::ListenerEndpoint {
                    name: "PLAINTEXT".into(),
                    host,
                    port,
                };
                Ok(listeners::Listeners {
                    all: vec![listeners::Listener {
                        name: "PLAINTEXT".into(),
                        protocol: listeners::SecurityProtocol::Plaintext,
                        bind: self.listen_addr,
                        advertised,
                    }],
                    inter_broker: "PLAINTEXT".into(),
                })
            }
        }
    }

    /// The (host, port) advertised to clients.
    pub fn advertised(&self) -> anyhow::Result<(String, i32)> {
        let s = match &self.advertised_addr {
            Some(a) => a.clone(),
            None => self.listen_addr.to_string(),
        };
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("--advertised-addr {s:?} must be host:port"))?;
        let port: u16 = port.parse().map_err(|_| {
            anyhow::anyhow!("--advertised-addr {s:?}: port {port:?} is not a number 1-65535")
        })?;
        if host.is_empty() || port == 0 {
            anyhow::bail!("--advertised-addr {s:?} must be host:port with a non-zero port");
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok((host, port as i32))
    }
}

/// `name=password` lines; blank lines and `#` comments are skipped.
pub fn parse_users_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (user, pw) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected name=password", i + 1))?;
        let user = user.trim();
        if user.is_empty() || pw.is_empty() {
            return Err(format!("line {}: empty name or password", i + 1));
        }
        out.push((user.to_string(), pw.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod users_file_tests {
    #[test]
    fn users_file_lines() {
        assert_eq!(
            super::parse_users_file("# c\n\nadmin=a=b\nbroker=x\n").unwrap(),
            vec![
                ("admin".into(), "a=b".into()),
                ("broker".into(), "x".into())
            ]
        );
        assert!(super::parse_users_file("nopassword\n").is_err());
        assert!(super::parse_users_file("=pw\n").is_err());
    }
}
