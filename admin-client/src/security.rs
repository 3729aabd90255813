//! How a connection authenticates: TLS (rustls, optionally with a client certificate) and SASL
//! PLAIN or SCRAM-SHA-256/512 (RFC 5802/7677), as a Kafka client's `security.protocol`,
//! `sasl.mechanism`, `sasl.username` / `sasl.password` and `ssl.*` settings say.

use crate::user_admin::{salted_password, ScramMechanism};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha512};

/// A SASL mechanism this client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Plain, Self::ScramSha256, Self::ScramSha512]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }
}

/// SASL user and password (never logged: `Debug` leaves the password out).
#[derive(Clone)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a connection does before its first request: nothing (PLAINTEXT), TLS, SASL or both.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<SaslCredentials>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

impl ClientSecurity {
    pub fn plaintext() -> Self {
        Self::default()
    }
}

/// A rustls client configuration trusting the PEM CA certificates in `ca_pem`, presenting the
/// PEM certificate chain and key when given (mutual TLS).
pub fn tls_config(
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("CA file: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("CA file holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))
        }
    }
}

/// The client side of one SCRAM exchange.
pub struct ScramClient {
    mechanism: SaslMechanism,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

/// RFC 5802's `saslname`: `=` and `,` escaped.
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn hmac(m: SaslMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        SaslMechanism::ScramSha256 => {
            let mut h = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key");
            h.update(data);
            h.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut h = <Hmac<Sha512>>::new_from_slice(key).expect("HMAC takes any key");
            h.update(data);
            h.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(m: SaslMechanism, data: &[u8]) -> Vec<u8> {
    match m {
        SaslMechanism::ScramSha256 => Sha256::digest(data).to_vec(),
        _ => Sha512::digest(data).to_vec(),
    }
}

/// The KIP-554 mechanism of a SCRAM SASL mechanism (PLAIN never salts).
fn scram_mechanism(m: SaslMechanism) -> ScramMechanism {
    match m {
        SaslMechanism::ScramSha256 => ScramMechanism::Sha256,
        _ => ScramMechanism::Sha512,
    }
}

/// Highest iteration count a server may ask for (keeps a hostile server from burning CPU).
const MAX_ITERATIONS: u32 = 1 << 20;

impl ScramClient {
    pub fn new(mechanism: SaslMechanism, user: &str, password: &str, nonce: String) -> Self {
        let client_first_bare = format!("n={},r={nonce}", sasl_name(user));
        Self {
            mechanism,
            password: password.to_string(),
            client_nonce: nonce,
            client_first_bare,
            server_signature: None,
        }
    }

    /// A fresh random nonce.
    pub fn random_nonce() -> String {
        let mut b = [0u8; 24];
        getrandom::fill(&mut b).expect("the OS has a random source");
        B64.encode(b)
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers the server-first message with the client-final one.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8")?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(B64.decode(v).map_err(|_| "bad salt")?),
                Some(("i", v)) => {
                    iterations = Some(v.parse::<u32>().map_err(|_| "bad iteration count")?)
                }
                Some(("e", v)) => return Err(format!("server error: {v}")),
                _ => {}
            }
        }
        let nonce = nonce.ok_or("server-first without a nonce")?;
        let salt = salt.ok_or("server-first without a salt")?;
        let iterations = iterations.ok_or("server-first without an iteration count")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err("server nonce does not extend the client's".into());
        }
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(format!("iteration count {iterations} out of range"));
        }
        let m = self.mechanism;
        let salted = salted_password(scram_mechanism(m), &self.password, &salt, iterations);
        let client_key = hmac(m, &salted, b"Client Key");
        let stored_key = hash(m, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac(m, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(m, &salted, b"Server Key");
        self.server_signature = Some(hmac(m, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (the server proves it knows the credential too).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final is not UTF-8")?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("server error: {e}"));
        }
        let v = text
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .ok_or("server-final without a verifier")?;
        let got = B64.decode(v).map_err(|_| "bad server signature")?;
        match &self.server_signature {
            Some(want) if *want == got => Ok(()),
            _ => Err("server signature does not match".into()),
        }
    }
}

/// PLAIN's single message.
pub fn plain_message(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example exchange.
    #[test]
    fn rfc7677_example() {
        let mut c = ScramClient::new(
            SaslMechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .client_final(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c.verify_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn hostile_server_first_messages_are_refused() {
        let mk = || ScramClient::new(SaslMechanism::ScramSha512, "u", "p", "abc".into());
        for bad in [
            &b"r=xyz123,s=AAAA,i=4096"[..], // nonce not extending ours
            b"r=abc,s=AAAA,i=4096",         // nonce not extended
            b"r=abcd,s=AAAA,i=0",
            b"r=abcd,s=AAAA,i=99999999",
            b"r=abcd,i=4096",
            b"r=abcd,s=!!,i=4096",
            b"e=other-error",
            b"\xff\xfe",
        ] {
            assert!(mk().client_final(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sasl_name("a=b,c"), "a=3Db=2Cc");
    }
}
