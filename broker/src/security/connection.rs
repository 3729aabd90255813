//! The security state of one connection: who it is, and what it may send before it has
//! authenticated. Kafka's rules: on a SASL listener only ApiVersions, SaslHandshake and
//! SaslAuthenticate are served until authentication completes (anything else closes the
//! connection); a failed authentication is answered after `connection.failed.authentication.delay.ms`
//! and the connection closed; with `connections.max.reauth.ms` the session expires and the client
//! re-authenticates on the same connection (KIP-368), as the same principal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::credentials::CredentialStore;
use super::listeners::SecurityProtocol;
use super::principal::KafkaPrincipal;
use super::sasl::{Mechanism, SaslError, SaslExchange};
use super::tls::TlsContext;

/// What a listener's connections share.
#[derive(Clone)]
pub struct ListenerCtx {
    pub name: Arc<str>,
    pub protocol: SecurityProtocol,
    pub tls: Option<Arc<TlsContext>>,
    pub mechanisms: Arc<Vec<Mechanism>>,
    pub credentials: Arc<CredentialStore>,
    pub failed_auth_delay: Duration,
    /// 0: sessions never expire.
    pub max_reauth_ms: i64,
}

impl ListenerCtx {
    /// A PLAINTEXT listener with no security at all (what `server::run` serves).
    pub fn plaintext(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            mechanisms: Arc::new(Vec::new()),
            credentials: Arc::new(CredentialStore::in_memory()),
            failed_auth_delay: Duration::ZERO,
            max_reauth_ms: 0,
        }
    }
}

/// Whether a decoded request may be served now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Serve,
    /// Close the connection without answering; the reason goes to the log.
    Close(&'static str),
}

/// The outcome of a SASL step for the server loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Keep going (more tokens, or nothing happened).
    Continue,
    /// Authenticated (or re-authenticated) now.
    Succeeded,
    /// Answer after the failed-authentication delay, then close.
    Failed,
}

pub struct Session {
    pub principal: Arc<KafkaPrincipal>,
    pub listener: Arc<str>,
    protocol: SecurityProtocol,
    sasl: Option<SaslExchange>,
    authenticated: bool,
    raw_tokens: bool,
    mechanism: Option<Mechanism>,
    expires_at: Option<Instant>,
    max_reauth_ms: i64,
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

impl Session {
    /// `tls_principal`: the verified client certificate's subject on SSL listeners.
    pub fn new(ctx: &ListenerCtx, tls_principal: Option<KafkaPrincipal>) -> Self {
        let sasl = ctx
            .protocol
            .uses_sasl()
            .then(|| SaslExchange::new(ctx.mechanisms.clone(), ctx.credentials.clone()));
        Self {
            principal: Arc::new(tls_principal.unwrap_or_else(KafkaPrincipal::anonymous)),
            listener: ctx.name.clone(),
            protocol: ctx.protocol,
            authenticated: sasl.is_none(),
            sasl,
            raw_tokens: false,
            mechanism: None,
            expires_at: None,
            max_reauth_ms: ctx.max_reauth_ms,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// After a v0 SaslHandshake the next frames are bare SASL tokens, not Kafka requests.
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens
    }

    pub fn mechanism_name(&self) -> &'static str {
        self.mechanism.map(|m| m.name()).unwrap_or("none")
    }

    pub fn gate(&self, api: ApiKey, now: Instant) -> Gate {
        let auth_api = matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        if self.sasl.is_none() || auth_api {
            return Gate::Serve;
        }
        if !self.authenticated {
            return Gate::Close("request before SASL authentication completed");
        }
        match self.expires_at {
            Some(t) if now >= t => Gate::Close("SASL session expired without re-authentication"),
            _ => Gate::Serve,
        }
    }

    pub fn handshake(
        &mut self,
        version: i16,
        req: &SaslHandshakeRequest,
    ) -> (SaslHandshakeResponse, AuthOutcome) {
        let Some(x) = self.sasl.as_mut() else {
            // Kafka answers SASL requests on a non-SASL listener with ILLEGAL_SASL_STATE.
            return (
                SaslHandshakeResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code()),
                AuthOutcome::Failed,
            );
        };
        if self.authenticated && x.awaiting_handshake() {
            // KIP-368 re-authentication starts with a new handshake.
            tracing::debug!(principal = %self.principal, "re-authentication started");
        }
        let enabled: Vec<StrBytes> = x.enabled_names().into_iter().map(s).collect();
        let resp = SaslHandshakeResponse::default().with_mechanisms(enabled);
        match x.handshake(req.mechanism.as_str()) {
            Ok(m) => {
                self.mechanism = Some(m);
                self.raw_tokens = version == 0;
                (resp, AuthOutcome::Continue)
            }
            Err(SaslError::UnsupportedMechanism(_)) => (
                resp.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
                AuthOutcome::Failed,
            ),
            Err(_) => (
                resp.with_error_code(ResponseError::IllegalSaslState.code()),
                AuthOutcome::Failed,
            ),
        }
    }

    pub fn authenticate(
        &mut self,
        req: &SaslAuthenticateRequest,
        now: Instant,
    ) -> (SaslAuthenticateResponse, AuthOutcome) {
        if self.sasl.is_none() || self.raw_tokens {
            return (
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(s("SaslAuthenticate is not expected here"))),
                AuthOutcome::Failed,
            );
        }
        match self.step(&req.auth_bytes, now) {
            Ok((token, outcome)) => {
                let mut resp = SaslAuthenticateResponse::default().with_auth_bytes(token.into());
                if outcome == AuthOutcome::Succeeded && self.max_reauth_ms > 0 {
                    resp = resp.with_session_lifetime_ms(self.max_reauth_ms);
                }
                (resp, outcome)
            }
            Err(e) => {
                let code = match e {
                    SaslError::AuthenticationFailed(_) => ResponseError::SaslAuthenticationFailed,
                    SaslError::UnsupportedMechanism(_) => ResponseError::UnsupportedSaslMechanism,
                    SaslError::IllegalState(_) => ResponseError::IllegalSaslState,
                };
                (
                    SaslAuthenticateResponse::default()
                        .with_error_code(code.code())
                        .with_error_message(Some(s(e.to_string()))),
                    AuthOutcome::Failed,
                )
            }
        }
    }

    /// A bare token after a v0 handshake.
    pub fn raw_token(
        &mut self,
        token: &[u8],
        now: Instant,
    ) -> Result<(Vec<u8>, AuthOutcome), SaslError> {
        let r = self.step(token, now);
        if matches!(r, Ok((_, AuthOutcome::Succeeded)) | Err(_)) {
            self.raw_tokens = false;
        }
        r
    }

    fn step(&mut self, token: &[u8], now: Instant) -> Result<(Vec<u8>, AuthOutcome), SaslError> {
        let x = self
            .sasl
            .as_mut()
            .ok_or_else(|| SaslError::IllegalState("not a SASL listener".into()))?;
        let step = x.authenticate(token)?;
        let Some(principal) = step.complete else {
            return Ok((step.token, AuthOutcome::Continue));
        };
        if self.authenticated && *self.principal != principal {
            return Err(SaslError::AuthenticationFailed(
                "Cannot change principals during re-authentication".into(),
            ));
        }
        self.principal = Arc::new(principal);
        self.authenticated = true;
        self.expires_at = (self.max_reauth_ms > 0)
            .then(|| now + Duration::from_millis(self.max_reauth_ms as u64));
        Ok((step.token, AuthOutcome::Succeeded))
    }

    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::ScramMechanism;

    fn ctx(protocol: SecurityProtocol, reauth: i64) -> ListenerCtx {
        let creds = CredentialStore::in_memory();
        creds.put_local(
            "u",
            ScramMechanism::Sha512,
            ScramMechanism::Sha512.credential(b"p", b"s", 4096),
        );
        creds.put_local(
            "v",
            ScramMechanism::Sha512,
            ScramMechanism::Sha512.credential(b"p", b"s", 4096),
        );
        ListenerCtx {
            protocol,
            mechanisms: Arc::new(vec![Mechanism::Plain]),
            credentials: Arc::new(creds),
            max_reauth_ms: reauth,
            ..ListenerCtx::plaintext("L")
        }
    }

    fn plain(user: &str) -> SaslAuthenticateRequest {
        SaslAuthenticateRequest::default()
            .with_auth_bytes(format!("\0{user}\0p").into_bytes().into())
    }

    fn hs() -> SaslHandshakeRequest {
        SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))
    }

    #[test]
    fn sasl_listener_serves_only_auth_apis_until_authenticated() {
        let now = Instant::now();
        let mut sess = Session::new(&ctx(SecurityProtocol::SaslSsl, 0), None);
        assert_eq!(sess.gate(ApiKey::ApiVersions, now), Gate::Serve);
        assert!(matches!(sess.gate(ApiKey::Produce, now), Gate::Close(_)));
        assert!(matches!(sess.gate(ApiKey::Metadata, now), Gate::Close(_)));
        assert_eq!(sess.handshake(1, &hs()).1, AuthOutcome::Continue);
        let (resp, out) = sess.authenticate(&plain("u"), now);
        assert_eq!((resp.error_code, out), (0, AuthOutcome::Succeeded));
        assert_eq!(sess.principal.to_string(), "User:u");
        assert_eq!(sess.gate(ApiKey::Produce, now), Gate::Serve);
    }

    #[test]
    fn plaintext_is_anonymous_and_refuses_sasl() {
        let mut sess = Session::new(&ctx(SecurityProtocol::Plaintext, 0), None);
        assert_eq!(sess.principal.to_string(), "User:ANONYMOUS");
        assert_eq!(sess.gate(ApiKey::Produce, Instant::now()), Gate::Serve);
        let (r, o) = sess.handshake(1, &hs());
        assert_eq!(r.error_code, ResponseError::IllegalSaslState.code());
        assert_eq!(o, AuthOutcome::Failed);
    }

    #[test]
    fn reauthentication_extends_the_session_and_keeps_the_principal() {
        let t0 = Instant::now();
        let mut sess = Session::new(&ctx(SecurityProtocol::SaslPlaintext, 1000), None);
        sess.handshake(1, &hs());
        let (resp, _) = sess.authenticate(&plain("u"), t0);
        assert_eq!(resp.session_lifetime_ms, 1000);
        let later = t0 + Duration::from_millis(1500);
        assert!(matches!(sess.gate(ApiKey::Fetch, later), Gate::Close(_)));
        sess.handshake(1, &hs());
        assert_eq!(
            sess.authenticate(&plain("u"), later).1,
            AuthOutcome::Succeeded
        );
        assert_eq!(sess.gate(ApiKey::Fetch, later), Gate::Serve);
        sess.handshake(1, &hs());
        let (resp, out) = sess.authenticate(&plain("v"), later);
        assert_eq!(out, AuthOutcome::Failed);
        assert_eq!(
            resp.error_code,
            ResponseError::SaslAuthenticationFailed.code()
        );
    }

    #[test]
    fn wrong_password_is_sasl_authentication_failed() {
        let mut sess = Session::new(&ctx(SecurityProtocol::SaslPlaintext, 0), None);
        sess.handshake(1, &hs());
        let req = SaslAuthenticateRequest::default().with_auth_bytes(b"\0u\0nope".to_vec().into());
        let (resp, out) = sess.authenticate(&req, Instant::now());
        assert_eq!(out, AuthOutcome::Failed);
        assert_eq!(
            resp.error_code,
            ResponseError::SaslAuthenticationFailed.code()
        );
        assert!(!resp.error_message.unwrap().contains("nope"));
        assert!(!sess.is_authenticated());
    }
}
