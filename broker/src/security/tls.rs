//! TLS for SSL and SASL_SSL listeners (rustls with the ring provider): the certificate chain and
//! key from PEM files, optionally a CA bundle to verify client certificates (Kafka's
//! `ssl.client.auth` = required | requested | none). The files are re-read when they change, so
//! a renewed certificate is served to new connections without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "requested" => Some(Self::Requested),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// The client-certificate mode of each TLS listener: `overrides` (Kafka's
/// `listener.name.<listener>.ssl.client.auth`, given as `NAME:mode,...`) where it names the
/// listener, else `ssl_default` for SSL listeners and `none` for SASL_SSL ones (SASL
/// authenticates those clients, as in Kafka). `tls_listeners` are (name, is SASL_SSL).
pub fn client_auth_per_listener(
    tls_listeners: &[(&str, bool)],
    ssl_default: ClientAuth,
    overrides: &str,
) -> Result<BTreeMap<String, ClientAuth>, TlsError> {
    let mut given = BTreeMap::new();
    for item in overrides
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, mode) = item
            .split_once(':')
            .ok_or_else(|| TlsError(format!("{item:?} is not LISTENER:none|requested|required")))?;
        let name = name.trim().to_ascii_uppercase();
        let mode = ClientAuth::parse(mode).ok_or_else(|| {
            TlsError(format!(
                "{item:?}: the mode must be none, requested or required"
            ))
        })?;
        if !tls_listeners
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            return Err(TlsError(format!(
                "{item:?}: {name} is not an SSL or SASL_SSL listener"
            )));
        }
        if given.insert(name.clone(), mode).is_some() {
            return Err(TlsError(format!("{name} is given twice")));
        }
    }
    Ok(tls_listeners
        .iter()
        .map(|(name, sasl)| {
            let upper = name.to_ascii_uppercase();
            let mode = given.get(&upper).copied().unwrap_or(if *sasl {
                ClientAuth::None
            } else {
                ssl_default
            });
            (name.to_string(), mode)
        })
        .collect())
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The current server configuration, swapped whole when the files change.
pub struct TlsContext {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    stamp: RwLock<Vec<Option<SystemTime>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            TlsError(format!(
                "cannot read certificates from {}: {e}",
                path.display()
            ))
        })?
        .collect();
    let certs =
        certs.map_err(|e| TlsError(format!("bad certificate PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

/// Builds a server configuration from the files as they are now.
pub fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        TlsError(format!(
            "cannot read a private key from {}: {e}",
            files.key.display()
        ))
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match (files.client_auth, &files.ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err(TlsError(
            "client authentication needs a CA bundle to verify client certificates (--ssl-ca-file)"
                .into(),
        )),
        (mode, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| {
                    TlsError(format!("bad CA certificate in {}: {e}", ca.display()))
                })?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let v = if mode == ClientAuth::Requested {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| TlsError(format!("client certificate verifier: {e}")))?,
            )
        }
    };
    let mut cfg = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError(format!(
            "certificate and key do not make a server identity: {e}"
        ))
    })?;
    cfg.alpn_protocols.clear();
    Ok(cfg)
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [Some(&files.cert), Some(&files.key), files.ca.as_ref()]
        .into_iter()
        .map(|p| p.and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()))
        .collect()
}

impl TlsContext {
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let stamp = stamps(&files);
        let cfg = build(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(cfg)),
            stamp: RwLock::new(stamp),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let cfg = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(cfg)
    }

    /// Reloads when a file's modification time changed. A half-written or mismatched pair keeps
    /// the previous configuration (logged) and is tried again on the next check.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.files);
        if *self.stamp.read().unwrap_or_else(|e| e.into_inner()) == now {
            return Ok(false);
        }
        let cfg = build(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
        *self.stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
        Ok(true)
    }

    /// Checks the files every `every` until `stop`.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        let ctx = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                match ctx.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(cert = %ctx.files.cert.display(), "TLS certificate reloaded")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the previous certificate")
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LS: &[(&str, bool)] = &[("CLIENTS", false), ("MTLS", false), ("SCRAM", true)];

    fn modes(default: ClientAuth, overrides: &str) -> Result<Vec<(String, ClientAuth)>, String> {
        client_auth_per_listener(LS, default, overrides)
            .map(|m| m.into_iter().collect())
            .map_err(|e| e.0)
    }

    #[test]
    fn listeners_take_the_default_unless_named() {
        use ClientAuth::*;
        let table: &[(ClientAuth, &str, [ClientAuth; 3])] = &[
            (None, "", [None, None, None]),
            (Required, "", [Required, Required, None]),
            (None, "MTLS:required", [None, Required, None]),
            (Required, "clients:none", [None, Required, None]),
            (
                None,
                " mtls : required , scram:requested ",
                [None, Required, Requested],
            ),
        ];
        for (default, overrides, want) in table {
            let got: Vec<ClientAuth> = modes(*default, overrides)
                .unwrap()
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            assert_eq!(got, want.to_vec(), "{default:?} {overrides:?}");
        }
    }

    #[test]
    fn bad_overrides_are_refused_with_the_reason() {
        for (overrides, says) in [
            ("MTLS", "not LISTENER:"),
            ("MTLS:sometimes", "none, requested or required"),
            ("PLAINTEXT:required", "not an SSL or SASL_SSL listener"),
            ("MTLS:required,mtls:none", "given twice"),
        ] {
            let e = modes(ClientAuth::None, overrides).unwrap_err();
            assert!(e.contains(says), "{overrides:?}: {e}");
        }
    }
}
