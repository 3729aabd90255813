//! rivulet-operator: runs the KafkaCluster, KafkaTopic and KafkaUser controllers behind a leader Lease,
//! with `/healthz`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
use rivulet_operator::context::Ctx;
use rivulet_operator::crd::{KafkaCluster, KafkaTopic, KafkaUser};
use rivulet_operator::http::{serve, HttpState};
use rivulet_operator::leader::LeaderElector;
use rivulet_operator::metrics::Metrics;
use rivulet_operator::{cluster_controller, topic_controller, user_controller};
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(version, about = "Rivulet Kubernetes operator")]
struct Args {
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, env = "RIVULET_OPERATOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: json or text.
    #[arg(long, env = "RIVULET_OPERATOR_LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(
        long,
        env = "RIVULET_OPERATOR_HTTP_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    http_addr: SocketAddr,
    /// Image for broker and coordinator pods when a KafkaCluster names none.
    #[arg(long, env = "RIVULET_OPERATOR_BROKER_IMAGE", default_value = rivulet_operator::builders::DEFAULT_BROKER_IMAGE)]
    broker_image: String,
    /// Comma-separated namespaces to manage; all namespaces when empty.
    #[arg(
        long,
        env = "RIVULET_OPERATOR_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    namespaces: Vec<String>,
    /// Run only while holding the leader Lease.
    #[arg(long, env = "RIVULET_OPERATOR_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(
        long,
        env = "RIVULET_OPERATOR_LEASE_NAMESPACE",
        default_value = "default"
    )]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "RIVULET_OPERATOR_LEASE_NAME",
        default_value = "rivulet-operator"
    )]
    lease_name: String,
    /// Lease duration in seconds.
    #[arg(long, env = "RIVULET_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
}

fn init_logs(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run_cluster_controller(api: Api<KafkaCluster>, ns: Option<&str>, ctx: Arc<Ctx>) {
    let client = ctx.client.clone();
    let owned = |c: &Client| -> (
        Api<StatefulSet>,
        Api<Service>,
        Api<ConfigMap>,
        Api<PodDisruptionBudget>,
    ) {
        match ns {
            Some(ns) => (
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
            ),
            None => (
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
            ),
        }
    };
    // Keep in step with cluster_controller::WATCHED (the RBAC test derives list/watch from it).
    let (sts, svc, cm, pdb) = owned(&client);
    let wc = || watcher::Config::default().labels("app.kubernetes.io/managed-by=rivulet-operator");
    Controller::new(api, watcher::Config::default())
        .owns(sts, wc())
        .owns(svc, wc())
        .owns(cm, wc())
        .owns(pdb, wc())
        .shutdown_on_signal()
        .run(
            cluster_controller::reconcile,
            cluster_controller::error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "kafkacluster controller");
            }
        })
        .await;
}

async fn run_topic_controller(api: Api<KafkaTopic>, ctx: Arc<Ctx>) {
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(
            topic_controller::reconcile,
            topic_controller::error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "kafkatopic controller");
            }
        })
        .await;
}

async fn run_user_controller(api: Api<KafkaUser>, ctx: Arc<Ctx>) {
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(
            user_controller::reconcile,
            user_controller::error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "kafkauser controller");
            }
        })
        .await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logs(&args);
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let http = tokio::spawn(serve(
        args.http_addr,
        HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    ));

    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    ready.store(true, Ordering::Relaxed);
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("rivulet-operator-{}", std::process::id()));

    let elector = args.leader_election.then(|| {
        LeaderElector::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_seconds.max(3)),
        )
    });
    if let Some(e) = &elector {
        info!("waiting for the leader Lease");
        e.acquire().await;
    }
    metrics.leader.set(1);

    let mut ctx = Ctx::build(client.clone(), metrics.clone());
    ctx.broker_image = args.broker_image.clone();
    let ctx = Arc::new(ctx);
    let namespaces: Vec<String> = args
        .namespaces
        .iter()
        .filter(|n| !n.is_empty())
        .cloned()
        .collect();
    let mut tasks = Vec::new();
    if namespaces.is_empty() {
        tasks.push(tokio::spawn(run_cluster_controller(
            Api::all(client.clone()),
            None,
            ctx.clone(),
        )));
        tasks.push(tokio::spawn(run_topic_controller(
            Api::all(client.clone()),
            ctx.clone(),
        )));
        tasks.push(tokio::spawn(run_user_controller(
            Api::all(client.clone()),
            ctx.clone(),
        )));
    } else {
        for ns in namespaces {
            let c = ctx.clone();
            let api = Api::namespaced(client.clone(), &ns);
            let topics = Api::namespaced(client.clone(), &ns);
            let users = Api::namespaced(client.clone(), &ns);
            tasks.push(tokio::spawn(async move {
                run_cluster_controller(api, Some(&ns), c).await
            }));
            tasks.push(tokio::spawn(run_topic_controller(topics, ctx.clone())));
            tasks.push(tokio::spawn(run_user_controller(users, ctx.clone())));
        }
    }
    info!(identity = %identity, "controllers running");
    let controllers = futures::future::join_all(tasks);
    tokio::select! {
        _ = controllers => info!("controllers stopped"),
        _ = async { match &elector { Some(e) => e.hold().await, None => std::future::pending().await } } => {
            error!("leadership lost; exiting so a fresh replica can take over");
            std::process::exit(1);
        }
        r = http => {
            anyhow::bail!("http server stopped: {r:?}");
        }
    }
    Ok(())
}
