//! The admin HTTP port: liveness, readiness, Prometheus metrics, and the four-letter
//! words under `/commands/<word>` (where ZooKeeper's AdminServer puts its commands), so
//! that a probe needs only an HTTP client, not netcat.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use crossbeam_channel::Sender;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::core::{CoreMsg, FOUR_LETTER_WORDS};
use crate::metrics::Metrics;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    core: Sender<CoreMsg>,
}

pub fn router(metrics: Arc<Metrics>, core: Sender<CoreMsg>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/commands/{word}", get(command))
        .with_state(AdminState { metrics, core })
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n")
    }
}

async fn metrics_handler(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// The same text the word gets on the client port (`ruok` → `imok`), with a newline.
async fn command(State(s): State<AdminState>, Path(word): Path<String>) -> Response {
    if !FOUR_LETTER_WORDS.contains(&word.as_str()) {
        let known = FOUR_LETTER_WORDS.join(", ");
        return (
            StatusCode::NOT_FOUND,
            format!("unknown command {word:?}; known: {known}\n"),
        )
            .into_response();
    }
    // Until recovery is done the request processor is not reading its queue.
    if !s.metrics.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "recovering\n").into_response();
    }
    let (tx, rx) = oneshot::channel();
    if s.core
        .send(CoreMsg::FourLetter {
            cmd: word,
            reply: tx,
        })
        .is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(mut text) => {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    core: Sender<CoreMsg>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, core)).await
}
