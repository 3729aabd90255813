//! The Kafka listener: accepts connections and runs each one's request loop. Requests on one
//! connection are handled in order, one at a time (as Kafka does), so responses stay in order.
//! Bad input closes only that connection, with a log line and a metric.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::{api_name, Broker};
use crate::handlers::api_versions;
use crate::protocol::codec::{decode_request, encode_response, DecodeError};
use crate::protocol::frame::{read_frame, FrameError};

/// Accepts connections until `shutdown` turns true.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let b = broker.clone();
                    let sd = shutdown.clone();
                    tokio::spawn(async move {
                        b.metrics.connection_opened();
                        serve_connection(b.clone(), stream, peer, sd).await;
                        b.metrics.connection_closed();
                    });
                }
                Err(e) => {
                    // EMFILE and friends: keep the listener, back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

async fn serve_connection(
    b: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let max = b.config.socket_request_max_bytes;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let frame = tokio::select! {
            f = read_frame(&mut rd, max) => f,
            _ = shutdown.changed() => break,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "connection read error");
                break;
            }
            Err(e) => {
                let kind = match e {
                    FrameError::BadSize { .. } => "frame_size",
                    _ => "truncated",
                };
                tracing::warn!(%peer, error = %e, "closing connection");
                b.metrics.connection_error(kind);
                break;
            }
        };
        let started = Instant::now();
        let (api, version, correlation_id, response) = match decode_request(frame.freeze()) {
            Ok(mut req) => {
                req.client_host = format!("/{}", peer.ip());
                let api = req.api;
                let version = req.header.request_api_version;
                let corr = req.header.correlation_id;
                if api == ApiKey::Metadata && b.metadata.is_fenced() {
                    // Cut off from the coordinator, this broker's metadata may be stale (its
                    // leadership may have moved). Answering would keep a client that only has this
                    // connection asking here forever; a closed connection sends it to another
                    // broker of the cluster.
                    tracing::info!(%peer, "closing client connection on Metadata: this broker is fenced (no coordinator session)");
                    b.metrics.connection_error("fenced");
                    break;
                }
                (api, version, corr, b.handle(req).await)
            }
            Err(DecodeError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                correlation_id,
                version,
                ..
            }) => {
                tracing::debug!(%peer, version, "ApiVersions version not supported; answering in v0");
                (
                    ApiKey::ApiVersions,
                    0,
                    correlation_id,
                    Some(ResponseKind::ApiVersions(api_versions::unsupported())),
                )
            }
            Err(e) => {
                let kind = match e {
                    DecodeError::UnknownApi(_) | DecodeError::NotImplemented(_) => "unknown_api",
                    DecodeError::UnsupportedVersion { .. } => "unsupported_version",
                    _ => "malformed",
                };
                tracing::warn!(%peer, error = %e, "closing connection: bad request");
                b.metrics.connection_error(kind);
                break;
            }
        };
        b.metrics
            .request(api_name(api), started.elapsed().as_secs_f64());
        if let Some(resp) = response {
            let bytes = match encode_response(api, version, correlation_id, &resp) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(%peer, ?api, version, error = %e, "encoding response failed");
                    break;
                }
            };
            if let Err(e) = wr.write_all(&bytes).await {
                tracing::debug!(%peer, error = %e, "connection write error");
                break;
            }
        }
        // Batch responses of pipelined requests; flush once the client is waiting on us.
        if rd.buffer().is_empty() {
            if let Err(e) = wr.flush().await {
                tracing::debug!(%peer, error = %e, "connection flush error");
                break;
            }
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}
