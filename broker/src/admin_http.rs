//! The admin HTTP port: /healthz (liveness: the process answers), /readyz (serving, registered
//! and caught up: see [`crate::readiness`]), /metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::broker::Broker;
use crate::handlers::log_dirs::disk_usage;

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let r = b.readiness();
    let code = if r.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{r}\n"))
}

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let parts: Vec<_> = b
        .replicas
        .all()
        .iter()
        .map(|p| (p.topic.clone(), p.index, p.size_bytes(), p.log_end_offset()))
        .collect();
    let disk = disk_usage(b.replicas.data_dir()).ok();
    let lags: Vec<_> = b
        .groups
        .all_committed()
        .await
        .into_iter()
        .filter_map(|(g, t, p, committed)| {
            let hw = b.replicas.get(&t, p)?.high_watermark();
            Some((g, t, p, (hw - committed).max(0)))
        })
        .collect();
    let body = b.metrics.render(&parts, disk, &lags);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(broker)
}

/// Serves the admin port until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(broker))
        .with_graceful_shutdown(shutdown)
        .await
}
