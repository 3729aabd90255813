//! The Kafka listeners: accept connections and run each one's request loop. Requests on one
//! connection are handled in order and answered in order. One exception to one-at-a-time (as
//! Kafka runs them): an acks=all Produce is appended, then waits for the in-sync replicas while
//! the Produce requests pipelined behind it are appended too, so a producer's writes in flight
//! are committed together rather than one replication round each.
//! Bad input closes only that connection, with a log line and a metric. SSL listeners run TLS
//! first; SASL listeners serve nothing but the SASL exchange until it succeeds
//! (`security::connection`).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::{api_name, Broker};
use crate::handlers::{api_versions, produce};
use crate::protocol::codec::{decode_request, encode_response, DecodeError, Request};
use crate::protocol::frame::{read_frame, FrameError};
use crate::security::connection::{AuthOutcome, Gate, ListenerCtx, Session};
use crate::security::principal::KafkaPrincipal;

/// Serves one PLAINTEXT listener until `shutdown` turns true.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    run_listener(
        listener,
        ListenerCtx::plaintext("PLAINTEXT"),
        broker,
        shutdown,
    )
    .await
}

/// Accepts connections of one named listener until `shutdown` turns true.
pub async fn run_listener(
    listener: TcpListener,
    ctx: ListenerCtx,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ctx = Arc::new(ctx);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let b = broker.clone();
                    let sd = shutdown.clone();
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        b.metrics.connection_opened();
                        accept_connection(b.clone(), ctx, stream, peer, sd).await;
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

async fn accept_connection(
    b: Arc<Broker>,
    ctx: Arc<ListenerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = &ctx.tls else {
        let session = Session::new(&ctx, None);
        serve_connection(b, &ctx, session, stream, peer, shutdown).await;
        return;
    };
    // A handshake that never finishes must not hold the connection open forever.
    let handshake = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.acceptor().accept(stream),
    )
    .await;
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, listener = %ctx.name, error = %e, "TLS handshake failed");
            b.metrics.authentication("SSL", false);
            return;
        }
        Err(_) => {
            tracing::info!(%peer, listener = %ctx.name, "TLS handshake timed out");
            b.metrics.connection_error("tls_handshake_timeout");
            return;
        }
    };
    let cert_principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| KafkaPrincipal::from_certificate(c.as_ref()));
    if let Some(p) = &cert_principal {
        tracing::info!(%peer, listener = %ctx.name, principal = %p, "TLS client certificate verified");
    }
    // On SASL_SSL the SASL user is the principal, as in Kafka.
    let tls_principal = if ctx.protocol.uses_sasl() {
        None
    } else {
        cert_principal
    };
    let session = Session::new(&ctx, tls_principal);
    serve_connection(b, &ctx, session, stream, peer, shutdown).await;
}

/// Frames a bare SASL token (after a v0 SaslHandshake).
fn raw_frame(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len() + 4);
    out.extend_from_slice(&(token.len() as i32).to_be_bytes());
    out.extend_from_slice(token);
    out
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Send + Unpin>(
    b: Arc<Broker>,
    ctx: &ListenerCtx,
    mut session: Session,
    stream: S,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let (rd, wr) = tokio::io::split(stream);
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
        if session.expects_raw_token() {
            // v0 SASL: a bare token, answered with a bare token (only before login, so no
            // Produce can be waiting here).
            let answer = session.raw_token(&frame, started);
            let ok = answer.is_ok();
            let reply = match answer {
                Ok((token, outcome)) => {
                    if outcome == AuthOutcome::Succeeded {
                        b.metrics.authentication(session.mechanism_name(), true);
                        tracing::debug!(%peer, principal = %session.principal, "SASL authenticated");
                    }
                    raw_frame(&token)
                }
                Err(e) => {
                    b.metrics.authentication(session.mechanism_name(), false);
                    tracing::info!(%peer, listener = %ctx.name, mechanism = session.mechanism_name(), error = %e, "SASL authentication failed");
                    tokio::time::sleep(ctx.failed_auth_delay).await;
                    break;
                }
            };
            if wr.write_all(&reply).await.is_err() || wr.flush().await.is_err() || !ok {
                broken = true;
                break;
            }
            continue;
        }
        let answer = match decode_request(frame.freeze()) {
            Ok(mut req) => {
                req.client_host = format!("/{}", peer.ip());
                req.principal = session.principal.clone();
                req.listener = session.listener.clone();
                let api = req.api;
                let version = req.header.request_api_version;
                let correlation_id = req.header.correlation_id;
                if let Gate::Close(why) = session.gate(api, started) {
                    tracing::info!(%peer, listener = %ctx.name, api = api_name(api), reason = why, "closing connection");
                    b.metrics.connection_error("unauthenticated");
                    break;
                }
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
                        let host = req.client_host.trim_start_matches('/');
                        let caller = crate::security::Caller {
                            principal: &req.principal,
                            host,
                        };
                        let staged = produce::stage(broker, version, r, caller);
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
                    RequestKind::SaslHandshake(r) => {
                        let (resp, outcome) = session.handshake(version, &r);
                        let a = answer(Some(ResponseKind::SaslHandshake(resp)));
                        match sasl_reply(
                            broker,
                            ctx,
                            &session,
                            &mut wr,
                            peer,
                            &mut waiting,
                            a,
                            outcome,
                        )
                        .await
                        {
                            SaslNext::Continue => continue,
                            SaslNext::Close => break,
                            SaslNext::Broken => {
                                broken = true;
                                break;
                            }
                        }
                    }
                    RequestKind::SaslAuthenticate(r) => {
                        let (resp, outcome) = session.authenticate(&r, started);
                        let a = answer(Some(ResponseKind::SaslAuthenticate(resp)));
                        match sasl_reply(
                            broker,
                            ctx,
                            &session,
                            &mut wr,
                            peer,
                            &mut waiting,
                            a,
                            outcome,
                        )
                        .await
                        {
                            SaslNext::Continue => continue,
                            SaslNext::Close => break,
                            SaslNext::Broken => {
                                broken = true;
                                break;
                            }
                        }
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

/// What the connection does after a SASL answer.
enum SaslNext {
    Continue,
    /// The login failed: the answer went out (late, as Kafka delays it); close.
    Close,
    /// Writing to the client failed.
    Broken,
}

/// Answers a SaslHandshake/SaslAuthenticate after the Produce requests before it (a KIP-368
/// re-authentication can follow writes in flight), counting and logging the outcome.
#[allow(clippy::too_many_arguments)]
async fn sasl_reply<W: AsyncWrite + Unpin>(
    b: &Broker,
    ctx: &ListenerCtx,
    session: &Session,
    wr: &mut BufWriter<W>,
    peer: SocketAddr,
    waiting: &mut VecDeque<Waiting<'_>>,
    answer: Answer,
    outcome: AuthOutcome,
) -> SaslNext {
    if !finish_waiting(b, wr, peer, waiting).await {
        return SaslNext::Broken;
    }
    match outcome {
        AuthOutcome::Continue => {}
        AuthOutcome::Succeeded => {
            b.metrics.authentication(session.mechanism_name(), true);
            tracing::debug!(%peer, principal = %session.principal, "SASL authenticated");
        }
        AuthOutcome::Failed => {
            b.metrics.authentication(session.mechanism_name(), false);
            tracing::info!(%peer, listener = %ctx.name, mechanism = session.mechanism_name(), "SASL authentication failed");
            // Kafka's connection.failed.authentication.delay.ms: answer late, then close.
            tokio::time::sleep(ctx.failed_auth_delay).await;
        }
    }
    if !respond(b, wr, peer, answer).await || wr.flush().await.is_err() {
        return SaslNext::Broken;
    }
    if outcome == AuthOutcome::Failed {
        SaslNext::Close
    } else {
        SaslNext::Continue
    }
}

/// Answers every waiting Produce, oldest first; false when the connection broke.
async fn finish_waiting<W: AsyncWrite + Unpin>(
    b: &Broker,
    wr: &mut BufWriter<W>,
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
async fn respond<W: AsyncWrite + Unpin>(
    b: &Broker,
    wr: &mut BufWriter<W>,
    peer: SocketAddr,
    a: Answer,
) -> bool {
    b.metrics
        .request(api_name(a.api), a.started.elapsed().as_secs_f64());
    let Some(resp) = a.response else {
        return true;
    };
    let chunks = match encode_response(a.api, a.version, a.correlation_id, &resp) {
        Ok(chunks) => chunks,
        Err(e) => {
            tracing::error!(%peer, api = ?a.api, version = a.version, error = %e, "encoding response failed");
            return false;
        }
    };
    // Small chunks gather in the connection's buffer; record data at least as large as the buffer
    // goes to the socket straight from where the log read put it.
    for c in &chunks {
        if let Err(e) = wr.write_all(c).await {
            tracing::debug!(%peer, error = %e, "connection write error");
            return false;
        }
    }
    true
}
