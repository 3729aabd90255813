//! rivulet-coordinator binary: flags/env config, recovery, the client and admin
//! ports, graceful SIGTERM.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info};

use rivulet_coordinator::core::{Core, CoreConfig, CoreMsg};
use rivulet_coordinator::metrics::Metrics;
use rivulet_coordinator::wal::Wal;
use rivulet_coordinator::{admin, net};

#[derive(Parser, Debug)]
#[command(
    name = "rivulet-coordinator",
    version,
    about = "ZooKeeper-wire-compatible metadata service"
)]
struct Args {
    /// Address of the ZooKeeper client port.
    #[arg(
        long,
        env = "RIVULET_COORDINATOR_CLIENT_ADDR",
        default_value = "127.0.0.1:2181"
    )]
    client_addr: String,
    /// Address of the admin HTTP port (/healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "RIVULET_COORDINATOR_ADMIN_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    admin_addr: String,
    /// Directory for the transaction log and snapshots.
    #[arg(
        long,
        env = "RIVULET_COORDINATOR_DATA_DIR",
        default_value = "./data/coordinator"
    )]
    data_dir: PathBuf,
    /// ZooKeeper's tickTime: the session-expiry check interval and timeout unit.
    #[arg(long, env = "RIVULET_COORDINATOR_TICK_TIME_MS", default_value_t = 2000)]
    tick_time_ms: u64,
    /// Smallest session timeout granted (default 2 ticks).
    #[arg(long, env = "RIVULET_COORDINATOR_MIN_SESSION_TIMEOUT_MS")]
    min_session_timeout_ms: Option<u32>,
    /// Largest session timeout granted (default 20 ticks).
    #[arg(long, env = "RIVULET_COORDINATOR_MAX_SESSION_TIMEOUT_MS")]
    max_session_timeout_ms: Option<u32>,
    /// Write a snapshot (and start a new log) after this many transactions.
    #[arg(
        long,
        env = "RIVULET_COORDINATOR_SNAPSHOT_EVERY_TXNS",
        default_value_t = 100_000
    )]
    snapshot_every_txns: u64,
    /// Largest accepted frame in bytes (ZooKeeper's jute.maxbuffer).
    #[arg(
        long,
        env = "RIVULET_COORDINATOR_JUTE_MAX_BUFFER",
        default_value_t = 1_048_575
    )]
    jute_max_buffer: usize,
    /// How often empty container nodes and expired TTL nodes are removed.
    #[arg(
        long,
        env = "RIVULET_COORDINATOR_CONTAINER_CHECK_INTERVAL_MS",
        default_value_t = 60_000
    )]
    container_check_interval_ms: u64,
    /// fsync the transaction log before replying (turn off only for throwaway tests).
    #[arg(long, env = "RIVULET_COORDINATOR_FSYNC", default_value_t = true, action = clap::ArgAction::Set)]
    fsync: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. info or rivulet_coordinator=debug.
    #[arg(long, env = "RIVULET_COORDINATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn core_config(a: &Args) -> anyhow::Result<CoreConfig> {
    if a.tick_time_ms == 0 || a.tick_time_ms > 60_000 {
        bail!(
            "--tick-time-ms must be between 1 and 60000, got {}",
            a.tick_time_ms
        );
    }
    let tick = a.tick_time_ms as u32;
    let min = a.min_session_timeout_ms.unwrap_or(tick.saturating_mul(2));
    let max = a.max_session_timeout_ms.unwrap_or(tick.saturating_mul(20));
    if min == 0 || min > max || max > i32::MAX as u32 {
        bail!(
            "session timeouts must satisfy 0 < min ({min}) <= max ({max}) <= {}",
            i32::MAX
        );
    }
    if a.jute_max_buffer < 1024 || a.jute_max_buffer > i32::MAX as usize {
        bail!(
            "--jute-max-buffer must be between 1024 and {}, got {}",
            i32::MAX,
            a.jute_max_buffer
        );
    }
    if a.snapshot_every_txns == 0 {
        bail!("--snapshot-every-txns must be at least 1");
    }
    if a.container_check_interval_ms == 0 {
        bail!("--container-check-interval-ms must be at least 1");
    }
    Ok(CoreConfig {
        tick_ms: a.tick_time_ms,
        min_session_timeout_ms: min as i32,
        max_session_timeout_ms: max as i32,
        snapshot_every_txns: a.snapshot_every_txns,
        container_check_interval_ms: a.container_check_interval_ms,
        jute_max_buffer: a.jute_max_buffer,
        data_dir: a.data_dir.clone(),
        client_addr: a.client_addr.clone(),
        admin_addr: a.admin_addr.clone(),
    })
}

fn main() {
    let args = Args::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: invalid --log-level {:?}: {e}", args.log_level);
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();
    if let Err(e) = run(args) {
        error!("{e:#}");
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let cfg = core_config(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let metrics = Metrics::new();
        let admin_listener = TcpListener::bind(&cfg.admin_addr)
            .await
            .with_context(|| format!("binding admin port {}", cfg.admin_addr))?;
        // The core's queue exists from the start so that the admin port can take
        // /commands/<word> requests; it is read once recovery is done.
        let (tx, rx) = crossbeam_channel::unbounded();
        let m = metrics.clone();
        let admin_tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(admin_listener, m, admin_tx).await {
                error!("admin server failed: {e}");
            }
        });
        let (wal, log, tree, rec) = Wal::open(&cfg.data_dir, args.fsync)
            .with_context(|| format!("recovering from {}", cfg.data_dir.display()))?;
        info!(
            zxid = format!("0x{:x}", tree.last_zxid),
            snapshot_zxid = rec.snapshot_zxid,
            replayed = rec.replayed,
            truncated_bytes = rec.truncated_bytes,
            sessions = tree.sessions().len(),
            nodes = tree.node_count(),
            "recovered"
        );
        let listener = TcpListener::bind(&cfg.client_addr)
            .await
            .with_context(|| format!("binding client port {}", cfg.client_addr))?;
        let max_frame = cfg.jute_max_buffer;
        let core = Core::new(cfg.clone(), tree, wal, log, metrics.clone())?;
        let core_thread = std::thread::Builder::new()
            .name("zk-core".into())
            .spawn(move || core.run(rx))?;
        tokio::spawn(net::serve(listener, tx.clone(), max_frame, metrics.clone()));
        metrics.ready.store(true, Ordering::Relaxed);
        info!(client = %cfg.client_addr, admin = %cfg.admin_addr, data_dir = %cfg.data_dir.display(), "rivulet-coordinator serving");

        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let core_done = tokio::task::spawn_blocking(move || core_thread.join());
        tokio::pin!(core_done);
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
            r = &mut core_done => {
                return match r {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(e))) => Err(e.context("request processor failed")),
                    _ => Err(anyhow::anyhow!("request processor panicked")),
                };
            }
        }
        metrics.ready.store(false, Ordering::Relaxed);
        let _ = tx.send(CoreMsg::Shutdown);
        match core_done.await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e.context("request processor failed")),
            _ => anyhow::bail!("request processor panicked"),
        }
        // Let connection tasks flush their last frames.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        info!("stopped");
        Ok(())
    })
}
