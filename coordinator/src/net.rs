//! The client port: framing, the connect handshake, four-letter words. Each
//! connection is one task that reads frames into the request processor's queue and
//! writes what the processor sends back, in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use crossbeam_channel::Sender;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::core::{CoreMsg, Out, FOUR_LETTER_WORDS};
use crate::metrics::Metrics;
use crate::proto::{ConnectRequest, DecodeError, RequestFrame};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Requests a connection may have in flight; beyond this we stop reading from it
/// (TCP backpressure) so a client that does not read its replies cannot make the
/// server queue without bound.
const MAX_OUTSTANDING: usize = 1000;

/// Whether a frame we send is a reply (anything but a watch notification).
fn is_reply(frame: &[u8]) -> bool {
    frame.len() >= 8 && frame[4..8] != crate::proto::xid::NOTIFICATION.to_be_bytes()
}

pub async fn serve(
    listener: TcpListener,
    core: Sender<CoreMsg>,
    max_frame: usize,
    metrics: Arc<Metrics>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let core = core.clone();
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = connection(conn, stream, addr, core.clone(), max_frame).await {
                        metrics.bad_frames.inc();
                        warn!(conn, %addr, "closing connection: {e}");
                    }
                    let _ = core.send(CoreMsg::Disconnected { conn });
                });
            }
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("frame length {0} outside 0..={1} (jute.maxbuffer)")]
    BadLength(i32, usize),
    #[error("malformed connect request: {0}")]
    BadConnect(crate::jute::JuteError),
    #[error("{0}")]
    BadRequest(DecodeError),
    #[error("connection ended inside a frame ({0} bytes pending)")]
    Truncated(usize),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Takes one complete frame body off the front of `buf`, if there is one.
fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ConnError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max {
        return Err(ConnError::BadLength(len, max));
    }
    let len = len as usize;
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len)))
}

async fn connection(
    conn: u64,
    stream: TcpStream,
    addr: SocketAddr,
    core: Sender<CoreMsg>,
    max_frame: usize,
) -> Result<(), ConnError> {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let mut tx = Some(tx);
    let mut handshaken = false;
    let mut outstanding = 0usize;
    loop {
        tokio::select! {
            n = rd.read_buf(&mut buf), if outstanding < MAX_OUTSTANDING => {
                let n = n?;
                if n == 0 {
                    if !buf.is_empty() {
                        return Err(ConnError::Truncated(buf.len()));
                    }
                    return Ok(());
                }
                if !handshaken && buf.len() >= 4 {
                    if let Ok(word) = std::str::from_utf8(&buf[..4]) {
                        if FOUR_LETTER_WORDS.contains(&word) {
                            let (rtx, rrx) = oneshot::channel();
                            let _ = core.send(CoreMsg::FourLetter { cmd: word.to_string(), reply: rtx });
                            let text = rrx.await.unwrap_or_default();
                            wr.write_all(text.as_bytes()).await?;
                            wr.flush().await?;
                            let _ = wr.shutdown().await;
                            return Ok(());
                        }
                    }
                }
                while let Some(frame) = next_frame(&mut buf, max_frame)? {
                    if !handshaken {
                        let req = ConnectRequest::read(&frame).map_err(ConnError::BadConnect)?;
                        handshaken = true;
                        if let Some(out) = tx.take() {
                            let _ = core.send(CoreMsg::Connect { conn, addr, req, out });
                        }
                        continue;
                    }
                    outstanding += 1;
                    match RequestFrame::decode(&frame) {
                        Ok(frame) => {
                            let _ = core.send(CoreMsg::Request { conn, frame, received: Instant::now() });
                        }
                        Err(DecodeError::UnknownOp { xid, opcode }) => {
                            debug!(conn, opcode, "unknown opcode");
                            let _ = core.send(CoreMsg::Unknown { conn, xid });
                        }
                        Err(e) => return Err(ConnError::BadRequest(e)),
                    }
                }
            }
            out = rx.recv() => {
                match out {
                    Some(Out::Frame(b)) => {
                        outstanding -= usize::from(is_reply(&b) && outstanding > 0);
                        wr.write_all(&b).await?;
                        // Coalesce whatever else is ready into one flush.
                        let mut close = false;
                        while let Ok(more) = rx.try_recv() {
                            match more {
                                Out::Frame(b) => {
                                    outstanding -= usize::from(is_reply(&b) && outstanding > 0);
                                    wr.write_all(&b).await?
                                }
                                Out::Close => { close = true; break; }
                            }
                        }
                        wr.flush().await?;
                        if close {
                            let _ = wr.shutdown().await;
                            return Ok(());
                        }
                    }
                    Some(Out::Close) | None => {
                        wr.flush().await?;
                        let _ = wr.shutdown().await;
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_limits() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 3, 1, 2][..]);
        assert!(next_frame(&mut b, 10).unwrap().is_none());
        b.extend_from_slice(&[3, 0, 0]);
        assert_eq!(&next_frame(&mut b, 10).unwrap().unwrap()[..], &[1, 2, 3]);
        let mut b = BytesMut::from(&[0x7fu8, 0, 0, 0][..]);
        assert!(next_frame(&mut b, 10).is_err());
        let mut b = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xfe][..]);
        assert!(next_frame(&mut b, 10).is_err());
    }
}
