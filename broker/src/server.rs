//! The Kafka listeners: accept connections and run each one's request loop. Requests on one
//! connection are handled in order, one at a time (as Kafka does), so responses stay in order.
//! Bad input closes only that connection, with a log line and a metric. SSL listeners run TLS
//! first; SASL listeners serve nothing but the SASL exchange until it succeeds
//! (`security::connection`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::{api_name, Broker};
use crate::handlers::api_versions;
use crate::protocol::codec::{decode_request, encode_response, DecodeError};
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
        if session.expects_raw_token() {
            // v0 SASL: a bare token, answered with a bare token.
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
                break;
            }
            continue;
        }
        let (api, version, correlation_id, response) = match decode_request(frame.freeze()) {
            Ok(mut req) => {
                req.client_host = format!("/{}", peer.ip());
                req.principal = session.principal.clone();
                req.listener = session.listener.clone();
                let api = req.api;
                let version = req.header.request_api_version;
                let corr = req.header.correlation_id;
                if let Gate::Close(why) = session.gate(api, started) {
                    tracing::info!(%peer, listener = %ctx.name, api = api_name(api), reason = why, "closing connection");
                    b.metrics.connection_error("unauthenticated");
                    break;
                }
                let sasl = match &req.body {
                    RequestKind::SaslHandshake(r) => {
                        let (resp, outcome) = session.handshake(version, r);
                        Some((ResponseKind::SaslHandshake(resp), outcome))
                    }
                    RequestKind::SaslAuthenticate(r) => {
                        let (resp, outcome) = session.authenticate(r, started);
                        Some((ResponseKind::SaslAuthenticate(resp), outcome))
                    }
                    _ => None,
                };
                if let Some((resp, outcome)) = sasl {
                    b.metrics
                        .request(api_name(api), started.elapsed().as_secs_f64());
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
                    if let Ok(bytes) = encode_response(api, version, corr, &resp) {
                        let _ = wr.write_all(&bytes).await;
                    }
                    if outcome == AuthOutcome::Failed || wr.flush().await.is_err() {
                        break;
                    }
                    continue;
                }
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
