//! The Kafka listener: accepts connections and runs each one's request loop. Requests on one
//! connection are handled in order and answered in order. One exception to one-at-a-time (as
//! Kafka runs them): an acks=all Produce is appended, then waits for the in-sync replicas while
//! the Produce requests pipelined behind it are appended too, so a producer's writes in flight
//! are committed together rather than one replication round each.
//! Bad input closes only that connection, with a log line and a metric.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::{api_name, Broker};
use crate::handlers::{api_versions, produce};
use crate::protocol::codec::{decode_request, encode_response, DecodeError, Request};
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

/// Produce requests appended and still waiting for the in-sync replicas, per connection; past
/// this the connection reads nothing more until the oldest is answered (a muted Kafka channel).
const MAX_WAITING_PRODUCES: usize = 64;

/// One response to send, in request order.
struct Answer {
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: Option<ResponseKind>,
    started: Instant,
}

type Waiting<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

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
    let broker: &Broker = &b;
    // acks=all Produce requests appended in arrival order and waiting for the in-sync
    // replicas, oldest first. Only further Produce requests are read past them (any other
    // request waits until they are answered, so it sees them as Kafka's one-at-a-time
    // connection would); responses go out in request order.
    let mut waiting: VecDeque<Waiting<'_>> = VecDeque::new();
    // Set when writing to the client failed: nothing owed can be delivered any more.
    let mut broken = false;
    'conn: loop {
        if *shutdown.borrow() {
            break;
        }
        // Answer waiting Produce requests as they complete until the next request arrives.
        loop {
            let full = waiting.len() >= MAX_WAITING_PRODUCES;
            if !rd.buffer().is_empty() && !full {
                break;
            }
            let Some(head) = waiting.front_mut() else {
                break;
            };
            tokio::select! {
                biased;
                a = head.as_mut() => {
                    waiting.pop_front();
                    if !respond(broker, &mut wr, peer, a).await
                        || (rd.buffer().is_empty() && wr.flush().await.is_err())
                    {
                        broken = true;
                        break 'conn;
                    }
                }
                // fill_buf is cancel-safe: nothing is consumed when the other branch wins.
                r = rd.fill_buf(), if !full => match r {
                    // The client finished sending (it is still owed its answers).
                    Ok([]) => break 'conn,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection read error");
                        break 'conn;
                    }
                },
                _ = shutdown.changed() => break 'conn,
            }
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
        let answer = match decode_request(frame.freeze()) {
            Ok(mut req) => {
                req.client_host = format!("/{}", peer.ip());
                let api = req.api;
                let version = req.header.request_api_version;
                let correlation_id = req.header.correlation_id;
                let answer = move |response| Answer {
                    api,
                    version,
                    correlation_id,
                    response,
                    started,
                };
                match req.body {
                    RequestKind::Produce(r) => {
                        let acks = r.acks;
                        let staged = produce::stage(broker, version, r);
                        if acks == 0 {
                            // No response; nothing to keep in order.
                            b.metrics
                                .request(api_name(api), started.elapsed().as_secs_f64());
                            continue;
                        }
                        if !staged.is_done() || !waiting.is_empty() {
                            waiting.push_back(Box::pin(async move {
                                let resp = staged.finish(broker).await;
                                answer(Some(ResponseKind::Produce(resp)))
                            }));
                            continue;
                        }
                        answer(Some(ResponseKind::Produce(staged.finish(broker).await)))
                    }
                    body => {
                        // Anything else runs after the Produce requests before it are answered.
                        if !finish_waiting(broker, &mut wr, peer, &mut waiting).await {
                            broken = true;
                            break;
                        }
                        let req = Request { body, ..req };
                        if api == ApiKey::Metadata && b.metadata.is_fenced() {
                            // Cut off from the coordinator, this broker's metadata may be stale
                            // (its leadership may have moved). Answering would keep a client
                            // that only has this connection asking here forever; a closed
                            // connection sends it to another broker of the cluster.
                            tracing::info!(%peer, "closing client connection on Metadata: this broker is fenced (no coordinator session)");
                            b.metrics.connection_error("fenced");
                            break;
                        }
                        answer(b.handle(req).await)
                    }
                }
            }
            Err(DecodeError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                correlation_id,
                version,
                ..
            }) => {
                tracing::debug!(%peer, version, "ApiVersions version not supported; answering in v0");
                if !finish_waiting(broker, &mut wr, peer, &mut waiting).await {
                    broken = true;
                    break;
                }
                Answer {
                    api: ApiKey::ApiVersions,
                    version: 0,
                    correlation_id,
                    response: Some(ResponseKind::ApiVersions(api_versions::unsupported())),
                    started,
                }
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
        if !respond(broker, &mut wr, peer, answer).await {
            broken = true;
            break;
        }
        // Batch responses of pipelined requests; flush once the client is waiting on us.
        if rd.buffer().is_empty() {
            if let Err(e) = wr.flush().await {
                tracing::debug!(%peer, error = %e, "connection flush error");
                broken = true;
                break;
            }
        }
    }
    // Closing (end of input, a bad frame, shutdown): the writes already appended are answered
    // first; on shutdown leadership has moved away, so they end at once (NOT_LEADER_OR_FOLLOWER
    // unless committed).
    if !broken {
        finish_waiting(broker, &mut wr, peer, &mut waiting).await;
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// Answers every waiting Produce, oldest first; false when the connection broke.
async fn finish_waiting(
    b: &Broker,
    wr: &mut BufWriter<OwnedWriteHalf>,
    peer: SocketAddr,
    waiting: &mut VecDeque<Waiting<'_>>,
) -> bool {
    while let Some(f) = waiting.pop_front() {
        if !respond(b, wr, peer, f.await).await {
            return false;
        }
    }
    true
}

/// Records the request's metrics and writes its response (if any) into the connection's
/// buffer; false when the connection must close.
async fn respond(
    b: &Broker,
    wr: &mut BufWriter<OwnedWriteHalf>,
    peer: SocketAddr,
    a: Answer,
) -> bool {
    b.metrics
        .request(api_name(a.api), a.started.elapsed().as_secs_f64());
    let Some(resp) = a.response else {
        return true;
    };
    let bytes = match encode_response(a.api, a.version, a.correlation_id, &resp) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(%peer, api = ?a.api, version = a.version, error = %e, "encoding response failed");
            return false;
        }
    };
    if let Err(e) = wr.write_all(&bytes).await {
        tracing::debug!(%peer, error = %e, "connection write error");
        return false;
    }
    true
}
