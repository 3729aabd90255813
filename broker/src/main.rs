//! `rivulet-broker`: settings from flags/env, then the Kafka listener, the admin HTTP port and
//! the background schedulers; SIGTERM/SIGINT stop it gracefully.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use rivulet_broker::broker::Broker;
use rivulet_broker::cluster::controller;
use rivulet_broker::cluster::zk_store::{ZkMetadataStore, ZkSettings};
use rivulet_broker::config::BrokerConfig;
use rivulet_broker::metadata::standalone::LocalMetadataStore;
use rivulet_broker::metadata::{BrokerMeta, MetadataStore};
use rivulet_broker::metrics::Metrics;
use rivulet_broker::partition::ReplicaManager;
use rivulet_broker::security::{
    self,
    connection::ListenerCtx,
    credentials::CredentialStore,
    listeners::{Listeners, SecurityProtocol},
    tls,
};
use rivulet_broker::{admin_http, background, server};

/// Fetch reads and responses are buffers of up to a few MiB per partition, allocated and freed on
/// every Fetch. With glibc's defaults such blocks come from fresh mappings or are handed back to
/// the kernel on free (mmap/munmap, madvise), so every Fetch page-faulted and zeroed its buffers
/// anew: a profile of a 6-partition consume showed a third of the broker's time in page faults
/// and page clearing. Blocks up to 32 MiB now come from the malloc arenas and up to 64 MiB of
/// free memory stays there for the next Fetch.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets glibc allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() {
    tune_malloc();
    let config = BrokerConfig::parse();
    if let Err(e) = init_tracing(&config) {
        eprintln!("rivulet-broker: {e:#}");
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rivulet-broker: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(config)) {
        tracing::error!(error = %format!("{e:#}"), "broker failed");
        eprintln!("rivulet-broker: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing(config: &BrokerConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid --log-level {:?}", config.log_level))?;
    // Colour only on a terminal: captured logs (files, kubectl logs) stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Holds an exclusive lock on the data directory so two brokers never share it.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "data directory {} is in use by another broker (lock {} is held)",
            dir.display(),
            path.display()
        );
    }
    Ok(f)
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let listeners = config.listeners()?;
    let mechanisms = Arc::new(
        security::parse_mechanisms(&config.sasl_enabled_mechanisms)
            .map_err(|e| anyhow::anyhow!("--sasl-enabled-mechanisms: {e}"))?,
    );
    let tls_ctxs = tls_contexts(&config, &listeners)?;
    let authorizer = config.authorizer_config()?;
    // Only cluster mode has other brokers to connect to.
    let inter_broker = match &config.coordinator {
        Some(_) => inter_broker_security(&config, listeners.inter_broker().protocol)?,
        None => rivulet_admin_client::ClientSecurity::plaintext(),
    };
    let bootstrap_users = config.bootstrap_scram_users()?;
    let inter = listeners.inter_broker().advertised.clone();
    let (host, port) = (inter.host.clone(), inter.port);
    // Cluster mode: the --coordinator value is checked before anything touches the disk.
    let cluster = match &config.coordinator {
        Some(_) => {
            let settings = ZkSettings::from_config(&config).map_err(anyhow::Error::msg)?;
            if config.zookeeper_set_acl {
                rivulet_broker::cluster::zk_acl::enable();
            }
            Some(settings)
        }
        None => None,
    };
    if cluster.is_none() && config.default_replication_factor != 1 {
        bail!(
            "--default-replication-factor {} needs {} brokers, but a standalone broker is one",
            config.default_replication_factor,
            config.default_replication_factor
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;

    let me = BrokerMeta {
        id: config.broker_id,
        host: host.clone(),
        port,
        rack: config.rack.clone(),
        endpoints: listeners.endpoints(),
    };
    // Cluster mode: connected and the metadata read, but not registered yet (see below).
    let (store, zk): (Arc<dyn MetadataStore>, Option<Arc<ZkMetadataStore>>) = match cluster {
        Some(settings) => {
            let zk = Arc::new(
                ZkMetadataStore::open(settings, me.clone())
                    .await
                    .context("joining the cluster")?,
            );
            (zk.clone(), Some(zk))
        }
        None => (
            Arc::new(
                LocalMetadataStore::open(&config.data_dir, me.clone())
                    .context("opening standalone metadata")?,
            ),
            None,
        ),
    };
    let replicas = ReplicaManager::new(&config.data_dir, config.broker_id);
    let broker = Arc::new(Broker::new(
        config.clone(),
        me,
        store,
        replicas,
        Metrics::new(),
    ));
    let credentials = Arc::new(match &zk {
        Some(zk) => CredentialStore::zookeeper(zk.sessions()),
        None => CredentialStore::open_local(&config.data_dir)
            .context("opening standalone SCRAM credentials")?,
    });
    broker.security.set_credentials(credentials.clone());
    let acls = Arc::new(match &zk {
        Some(zk) => security::acls::AclStore::zookeeper(zk.sessions()),
        None => security::acls::AclStore::open_local(&config.data_dir)
            .context("opening standalone ACLs")?,
    });
    broker.security.set_acls(acls.clone());
    broker.security.set_inter_broker(inter_broker);
    if let Some(cfg) = authorizer {
        tracing::info!(super_users = ?cfg.super_users, allow_everyone_if_no_acl_found = cfg.allow_everyone_if_no_acl_found, "ACL authorizer on");
        broker.security.enable_authorizer(cfg);
    }
    let started = std::time::Instant::now();
    broker.sync_partitions().context("opening partition logs")?;
    tracing::info!(
        partitions = broker.replicas.all().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "logs recovered"
    );
    broker
        .groups
        .load(&broker)
        .await
        .context("loading consumer groups from __consumer_offsets")?;

    let mut bound = Vec::new();
    for l in &listeners.all {
        let sock = tokio::net::TcpListener::bind(l.bind)
            .await
            .with_context(|| format!("cannot listen on {} (listener {})", l.bind, l.name))?;
        let ctx = ListenerCtx {
            name: Arc::from(l.name.as_str()),
            protocol: l.protocol,
            tls: tls_ctxs.by_listener.get(&l.name).cloned(),
            mechanisms: mechanisms.clone(),
            credentials: credentials.clone(),
            failed_auth_delay: Duration::from_millis(
                config.connection_failed_authentication_delay_ms,
            ),
            max_reauth_ms: config.connections_max_reauth_ms,
        };
        bound.push((sock, ctx));
    }
    let admin = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-addr)", config.admin_addr))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut admin_stop = stop_rx.clone();
    let admin_task = tokio::spawn(admin_http::serve(admin, broker.clone(), async move {
        let _ = admin_stop.wait_for(|s| *s).await;
    }));
    // Cluster mode: register only now that the logs are recovered and the listener is bound,
    // as Kafka does: the controller may make this broker a leader the moment it registers.
    // Replication and requests start after it (a broker with a duplicate id that is refused
    // here never fetches as that replica).
    if let Some(zk) = &zk {
        zk.register().await.context("joining the cluster")?;
    }
    // Cluster mode writes through the registered session, so the users come after it.
    let mut own_users = bootstrap_users;
    if let Some((user, password)) = config.inter_broker_sasl()? {
        own_users.push((user, password));
    }
    for (user, password) in &own_users {
        let created = credentials
            .create_if_absent(user, password)
            .await
            .with_context(|| format!("creating the bootstrap SCRAM user {user}"))?;
        if created {
            tracing::info!(user = %user, "bootstrap SCRAM user created");
        }
    }
    background::spawn(broker.clone(), stop_rx.clone());
    rivulet_broker::group::GroupCoordinator::spawn_ticker(broker.clone(), stop_rx.clone());
    for (_, tls) in &tls_ctxs.distinct {
        tls.spawn_reloader(
            Duration::from_millis(config.ssl_reload_interval_ms),
            stop_rx.clone(),
        );
    }
    if config.coordinator.is_some() && listeners.inter_broker().protocol.uses_tls() {
        spawn_inter_broker_reloader(
            config.clone(),
            listeners.inter_broker().protocol,
            broker.clone(),
            stop_rx.clone(),
        );
    }
    let server_tasks: Vec<_> = bound
        .into_iter()
        .map(|(sock, ctx)| {
            tokio::spawn(server::run_listener(
                sock,
                ctx,
                broker.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    if let Some(zk) = &zk {
        spawn_cluster_tasks(&broker, zk, stop_rx.clone());
        let creds = credentials.clone();
        zk.spawn_per_session(stop_rx.clone(), move |client, stop| {
            security::credentials::watch_changes(creds.clone(), client, stop)
        });
        let acls = acls.clone();
        zk.spawn_per_session(stop_rx.clone(), move |client, stop| {
            security::acls::watch_changes(acls.clone(), client, stop)
        });
    }
    broker.set_ready(true);
    tracing::info!(
        broker_id = config.broker_id,
        listeners = %listeners
            .all
            .iter()
            .map(|l| format!("{}={}({})", l.name, l.bind, l.protocol))
            .collect::<Vec<_>>()
            .join(","),
        inter_broker = %listeners.inter_broker,
        advertised = %format!("{host}:{port}"),
        admin = %config.admin_addr,
        data_dir = %config.data_dir.display(),
        mode = if zk.is_some() { "cluster" } else { "standalone" },
        "{}",
        if zk.is_some() {
            "rivulet-broker ready (cluster)"
        } else {
            "rivulet-broker ready (standalone)"
        }
    );

    wait_for_signal().await?;
    tracing::info!("shutting down");
    // Controlled shutdown: keep serving while the controller moves leadership away, so acks=all
    // clients see at most a retriable NOT_LEADER_OR_FOLLOWER during a rolling restart.
    if config.coordinator.is_some() && config.controlled_shutdown_enable {
        let timeout = Duration::from_millis(config.controlled_shutdown_timeout_ms);
        match broker.metadata.controlled_shutdown(timeout).await {
            Ok(()) => tracing::info!("controlled shutdown: leadership moved off this broker"),
            Err(e) => tracing::warn!(error = %e, "controlled shutdown incomplete; stopping anyway"),
        }
    }
    broker.set_ready(false);
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(config.shutdown_timeout_secs);
    for t in server_tasks {
        let _ = tokio::time::timeout(grace, t).await;
    }
    let _ = tokio::time::timeout(grace, admin_task).await;
    // Connections were told to stop; give in-flight requests a moment to finish writing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    broker.replicas.shutdown();
    if let Some(zk) = &zk {
        zk.close().await; // leave the cluster now rather than after the session timeout
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The TLS contexts: one per client-certificate mode in use (--ssl-client-auth for SSL
/// listeners, none for SASL_SSL ones where SASL authenticates the client, as in Kafka;
/// --listener-ssl-client-auth overrides either per listener), and which one each TLS listener
/// uses.
struct TlsContexts {
    by_listener: BTreeMap<String, Arc<tls::TlsContext>>,
    distinct: Vec<(tls::ClientAuth, Arc<tls::TlsContext>)>,
}

fn tls_contexts(config: &BrokerConfig, listeners: &Listeners) -> anyhow::Result<TlsContexts> {
    let tls_listeners: Vec<(&str, bool)> = listeners
        .all
        .iter()
        .filter(|l| l.protocol.uses_tls())
        .map(|l| (l.name.as_str(), l.protocol == SecurityProtocol::SaslSsl))
        .collect();
    let default = tls::ClientAuth::parse(&config.ssl_client_auth)
        .ok_or_else(|| anyhow::anyhow!("--ssl-client-auth {:?}", config.ssl_client_auth))?;
    let modes =
        tls::client_auth_per_listener(&tls_listeners, default, &config.listener_ssl_client_auth)
            .map_err(|e| anyhow::anyhow!("--listener-ssl-client-auth: {e}"))?;
    let mut out = TlsContexts {
        by_listener: BTreeMap::new(),
        distinct: Vec::new(),
    };
    for (name, mode) in modes {
        let ctx = match out.distinct.iter().find(|(m, _)| *m == mode) {
            Some((_, c)) => c.clone(),
            None => {
                let c = tls_context(config, mode)?;
                out.distinct.push((mode, c.clone()));
                c
            }
        };
        out.by_listener.insert(name, ctx);
    }
    Ok(out)
}

fn tls_context(
    config: &BrokerConfig,
    client_auth: tls::ClientAuth,
) -> anyhow::Result<Arc<tls::TlsContext>> {
    let (Some(cert), Some(key)) = (&config.ssl_cert_file, &config.ssl_key_file) else {
        bail!("an SSL or SASL_SSL listener needs --ssl-cert-file and --ssl-key-file");
    };
    let ctx = tls::TlsContext::new(tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        ca: config.ssl_ca_file.clone(),
        client_auth,
    })
    .map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    Ok(Arc::new(ctx))
}

/// How the replica fetcher connects to the inter-broker listener of other brokers: TLS
/// trusting --ssl-ca-file (presenting this broker's own certificate on SSL, for mutual TLS)
/// and SASL as --inter-broker-sasl-username.
fn inter_broker_security(
    config: &BrokerConfig,
    protocol: SecurityProtocol,
) -> anyhow::Result<rivulet_admin_client::ClientSecurity> {
    use rivulet_admin_client::{ClientSecurity, SaslCredentials, SaslMechanism};
    let mut sec = ClientSecurity::plaintext();
    if protocol.uses_tls() {
        let Some(ca) = &config.ssl_ca_file else {
            bail!("a TLS inter-broker listener needs --ssl-ca-file to verify the other brokers");
        };
        let ca_pem =
            std::fs::read(ca).with_context(|| format!("--ssl-ca-file {}", ca.display()))?;
        let own = match (protocol, &config.ssl_cert_file, &config.ssl_key_file) {
            (SecurityProtocol::Ssl, Some(c), Some(k)) => Some((
                std::fs::read(c).with_context(|| format!("--ssl-cert-file {}", c.display()))?,
                std::fs::read(k).with_context(|| format!("--ssl-key-file {}", k.display()))?,
            )),
            _ => None,
        };
        let tls = rivulet_admin_client::security::tls_config(
            &ca_pem,
            own.as_ref().map(|(c, k)| (&c[..], &k[..])),
        )
        .map_err(|e| anyhow::anyhow!("inter-broker TLS: {e}"))?;
        sec.tls = Some(Arc::new(tls));
    }
    if protocol.uses_sasl() {
        let Some((username, password)) = config.inter_broker_sasl()? else {
            bail!(
                "the inter-broker listener is {protocol}: set --inter-broker-sasl-username and its password"
            );
        };
        let mechanism =
            SaslMechanism::from_name(&config.inter_broker_sasl_mechanism).ok_or_else(|| {
                anyhow::anyhow!(
                    "--inter-broker-sasl-mechanism {}",
                    config.inter_broker_sasl_mechanism
                )
            })?;
        sec.sasl = Some(SaslCredentials {
            mechanism,
            username,
            password,
        });
    }
    Ok(sec)
}

/// Modification times of the files the inter-broker TLS settings are made of.
fn inter_broker_stamps(config: &BrokerConfig) -> Vec<Option<std::time::SystemTime>> {
    [
        &config.ssl_ca_file,
        &config.ssl_cert_file,
        &config.ssl_key_file,
    ]
    .into_iter()
    .map(|p| {
        p.as_ref()
            .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    })
    .collect()
}

/// Rebuilds the replica fetcher's TLS settings when the CA bundle (or, for mutual TLS, this
/// broker's certificate) changes on disk, as the listeners reload theirs: a cluster CA renewal
/// that first adds the new CA to the bundle reaches replication without a restart. Files that
/// can't be loaded (half-written) keep the previous settings and are tried again.
fn spawn_inter_broker_reloader(
    config: BrokerConfig,
    protocol: SecurityProtocol,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(config.ssl_reload_interval_ms);
    tokio::spawn(async move {
        let mut seen = inter_broker_stamps(&config);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = inter_broker_stamps(&config);
            if now == seen {
                continue;
            }
            match inter_broker_security(&config, protocol) {
                Ok(sec) => {
                    broker.security.set_inter_broker(sec);
                    seen = now;
                    tracing::info!(ca = ?config.ssl_ca_file, "inter-broker TLS settings reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "inter-broker TLS files changed but cannot be loaded; keeping the previous settings")
                }
            }
        }
    });
}

/// Cluster mode: hosted partitions follow every metadata change, and the controller runs on
/// the registration's session (losing the session loses controllership).
fn spawn_cluster_tasks(broker: &Arc<Broker>, zk: &ZkMetadataStore, stop: watch::Receiver<bool>) {
    let b = broker.clone();
    let mut changes = broker.metadata.subscribe();
    let mut sync_stop = stop.clone();
    tokio::spawn(async move {
        loop {
            // First pass at once: the view may have changed since start-up's sync.
            if let Err(e) = b.sync_partitions() {
                tracing::error!(error = %format!("{e:#}"), "applying metadata to hosted partitions failed");
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = sync_stop.wait_for(|s| *s) => return,
            }
        }
    });
    let mut cfg = controller::ControllerConfig::from_broker(&broker.config);
    cfg.metrics = broker.metrics.controller();
    zk.spawn_per_session(stop, move |client, stop| {
        controller::run(client, cfg.clone(), stop)
    });
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
