//! One broker connection: size-prefixed frames, request headers, version negotiation.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::security::{plain_message, ClientSecurity, SaslMechanism, ScramClient};
use crate::{Error, Result};

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// Largest response accepted (a describe of many configs stays far below this).
const MAX_RESPONSE: usize = 64 << 20;
const CLIENT_ID: &str = "rivulet-admin";

pub struct Connection {
    addr: String,
    stream: Box<dyn Stream>,
    timeout: Duration,
    correlation: i32,
    /// Broker's (min, max) version per API key, from ApiVersions.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects over PLAINTEXT and negotiates API versions.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self> {
        Self::connect_with(addr, timeout, &ClientSecurity::plaintext()).await
    }

    async fn open(addr: &str, timeout: Duration, sec: &ClientSecurity) -> Result<Box<dyn Stream>> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                addr: addr.into(),
                after: timeout,
            })?
            .map_err(|source| Error::Connect {
                addr: addr.into(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &sec.tls else {
            return Ok(Box::new(stream));
        };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| Error::Protocol(format!("TLS server name {host:?}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(tls.clone());
        let stream = tokio::time::timeout(timeout, tls.connect(name, stream))
            .await
            .map_err(|_| Error::Timeout {
                addr: addr.into(),
                after: timeout,
            })?
            .map_err(|source| Error::Connect {
                addr: addr.into(),
                source,
            })?;
        Ok(Box::new(stream))
    }

    /// Connects with TLS and/or SASL as `sec` says, negotiates API versions and authenticates.
    pub async fn connect_with(addr: &str, timeout: Duration, sec: &ClientSecurity) -> Result<Self> {
        let stream = Self::open(addr, timeout, sec).await?;
        let mut c = Self {
            addr: addr.into(),
            stream,
            timeout,
            correlation: 0,
            versions: HashMap::new(),
        };
        // v3 is flexible and the broker answers v0 if it can't; v0 is the universal fallback.
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("rivulet-admin-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = match c.exchange(req.clone(), 3).await {
            Ok(r) if r.error_code == 0 => r,
            _ => {
                // The broker may have closed on an unsupported version: reconnect for v0.
                c.stream = Self::open(addr, timeout, sec).await?;
                c.exchange(req, 0).await?
            }
        };
        c.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(creds) = &sec.sasl {
            c.authenticate(creds.mechanism, &creds.username, &creds.password)
                .await?;
        }
        Ok(c)
    }

    /// SaslHandshake, then the mechanism's SaslAuthenticate round trips.
    async fn authenticate(&mut self, m: SaslMechanism, user: &str, password: &str) -> Result<()> {
        let hs = self
            .send(
                SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(m.name())),
            )
            .await?;
        if hs.error_code != 0 {
            return Err(Error::Auth(format!(
                "{} not enabled by the broker (error {}; it offers {:?})",
                m.name(),
                hs.error_code,
                hs.mechanisms
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
            )));
        }
        let step =
            |bytes: Vec<u8>| SaslAuthenticateRequest::default().with_auth_bytes(bytes.into());
        match m {
            SaslMechanism::Plain => {
                let r = self.send(step(plain_message(user, password))).await?;
                auth_result(&r)?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let mut scram = ScramClient::new(m, user, password, ScramClient::random_nonce());
                let r = self.send(step(scram.client_first())).await?;
                auth_result(&r)?;
                let fin = scram.client_final(&r.auth_bytes).map_err(Error::Auth)?;
                let r = self.send(step(fin)).await?;
                auth_result(&r)?;
                scram
                    .verify_server_final(&r.auth_bytes)
                    .map_err(Error::Auth)?;
            }
        }
        Ok(())
    }

    /// The address this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Highest version both sides speak.
    fn pick<R: Request>(&self) -> Result<i16> {
        let api = api_name::<R>();
        let (bmin, bmax) = self
            .versions
            .get(&R::KEY)
            .copied()
            .ok_or(Error::Unsupported { api })?;
        let v = bmax.min(R::VERSIONS.max);
        if v < bmin.max(R::VERSIONS.min) {
            return Err(Error::Unsupported { api });
        }
        Ok(v)
    }

    /// The version [`Self::send`] will use for `R` (for requests whose fields depend on it).
    pub fn version<R: Request>(&self) -> Result<i16> {
        self.pick::<R>()
    }

    /// Sends a request at the best common version and waits for its response.
    pub async fn send<R: Request>(&mut self, req: R) -> Result<R::Response> {
        let v = self.pick::<R>()?;
        self.exchange(req, v).await
    }

    async fn exchange<R: Request>(&mut self, req: R, version: i16) -> Result<R::Response> {
        let api = api_name::<R>();
        let codec = |e: anyhow_like::E| Error::Codec { api, message: e.0 };
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(|e| codec(anyhow_like::E(e.to_string())))?;
        req.encode(&mut body, version)
            .map_err(|e| codec(anyhow_like::E(e.to_string())))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);

        let addr = self.addr.clone();
        let timeout = self.timeout;
        let io = |source| Error::Io {
            addr: addr.clone(),
            source,
        };
        let fut = async {
            self.stream.write_all(&frame).await.map_err(io)?;
            let size = self.stream.read_i32().await.map_err(io)?;
            if size < 4 || size as usize > MAX_RESPONSE {
                return Err(Error::Protocol(format!("{api}: bad response size {size}")));
            }
            let mut buf = vec![0u8; size as usize];
            self.stream.read_exact(&mut buf).await.map_err(io)?;
            Ok(Bytes::from(buf))
        };
        let mut buf = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Error::Timeout {
                addr: self.addr.clone(),
                after: timeout,
            })??;
        let rh = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| codec(anyhow_like::E(e.to_string())))?;
        if rh.correlation_id != self.correlation {
            return Err(Error::Protocol(format!(
                "{api}: correlation id {} does not match {}",
                rh.correlation_id, self.correlation
            )));
        }
        let resp = R::Response::decode(&mut buf, version)
            .map_err(|e| codec(anyhow_like::E(e.to_string())))?;
        if buf.has_remaining() {
            tracing::debug!(api, left = buf.remaining(), "response had trailing bytes");
        }
        Ok(resp)
    }
}

fn auth_result(r: &kafka_protocol::messages::SaslAuthenticateResponse) -> Result<()> {
    if r.error_code == 0 {
        return Ok(());
    }
    Err(Error::Auth(format!(
        "error {}{}",
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    )))
}

fn api_name<R: Request>() -> &'static str {
    // e.g. "kafka_protocol::messages::metadata_request::MetadataRequest" -> "MetadataRequest"
    let full = std::any::type_name::<R>();
    full.rsplit("::").next().unwrap_or(full)
}

/// A string error, so the codec's error type doesn't leak into ours.
mod anyhow_like {
    pub struct E(pub String);
}
