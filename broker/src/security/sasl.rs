//! The SASL exchange of one connection (Kafka's `SaslServerAuthenticator`): SaslHandshake picks
//! a mechanism, then SaslAuthenticate carries its tokens (or, after a v0 handshake, raw frames).
//! PLAIN checks the password against the stored SCRAM credential, so no clear password is kept.

use std::sync::Arc;

use super::credentials::CredentialStore;
use super::principal::KafkaPrincipal;
use super::scram::{self, ScramError, ScramMechanism, ScramServerFirst};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "PLAIN" => Some(Self::Plain),
            s => ScramMechanism::from_name(s).map(Self::Scram),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(m) => m.name(),
        }
    }
}

/// Where the exchange stands.
#[derive(Clone)]
enum Stage {
    /// Waiting for SaslHandshake (or a re-authentication's handshake).
    Handshake,
    /// Mechanism chosen; waiting for its first token.
    FirstToken(Mechanism),
    /// SCRAM: server-first sent; waiting for client-final.
    ScramFinal(Box<ScramServerFirst>),
}

/// Why a SASL step failed, and so which Kafka error the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// SASL_AUTHENTICATION_FAILED: the message is safe to show (no secret, no user probing).
    #[error("{0}")]
    AuthenticationFailed(String),
    /// UNSUPPORTED_SASL_MECHANISM.
    #[error("unsupported SASL mechanism {0}")]
    UnsupportedMechanism(String),
    /// ILLEGAL_SASL_STATE.
    #[error("{0}")]
    IllegalState(String),
}

/// One step's result: a token to send back, and the principal once authentication completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub token: Vec<u8>,
    pub complete: Option<KafkaPrincipal>,
}

pub struct SaslExchange {
    enabled: Arc<Vec<Mechanism>>,
    credentials: Arc<CredentialStore>,
    stage: Stage,
}

impl SaslExchange {
    pub fn new(enabled: Arc<Vec<Mechanism>>, credentials: Arc<CredentialStore>) -> Self {
        Self {
            enabled,
            credentials,
            stage: Stage::Handshake,
        }
    }

    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|m| m.name()).collect()
    }

    pub fn awaiting_handshake(&self) -> bool {
        matches!(self.stage, Stage::Handshake)
    }

    /// SaslHandshake: the mechanism must be enabled on this listener.
    pub fn handshake(&mut self, mechanism: &str) -> Result<Mechanism, SaslError> {
        if !self.awaiting_handshake() {
            return Err(SaslError::IllegalState(
                "Unexpected SaslHandshake request: a SASL exchange is in progress".into(),
            ));
        }
        let m = Mechanism::from_name(mechanism)
            .filter(|m| self.enabled.contains(m))
            .ok_or_else(|| SaslError::UnsupportedMechanism(mechanism.to_string()))?;
        self.stage = Stage::FirstToken(m);
        Ok(m)
    }

    /// One SaslAuthenticate token (or raw v0 frame).
    pub fn authenticate(&mut self, token: &[u8]) -> Result<Step, SaslError> {
        let stage = std::mem::replace(&mut self.stage, Stage::Handshake);
        match stage {
            Stage::Handshake => Err(SaslError::IllegalState(
                "Unexpected SaslAuthenticate request: no SaslHandshake yet".into(),
            )),
            Stage::FirstToken(Mechanism::Plain) => {
                let user = self.plain(token)?;
                Ok(Step {
                    token: Vec::new(),
                    complete: Some(KafkaPrincipal::user(user)),
                })
            }
            Stage::FirstToken(Mechanism::Scram(m)) => {
                let creds = &self.credentials;
                let (state, first) =
                    scram::server_first(m, token, |u| creds.get(u, m), &scram::new_nonce())
                        .map_err(scram_err)?;
                self.stage = Stage::ScramFinal(Box::new(state));
                Ok(Step {
                    token: first.into_bytes(),
                    complete: None,
                })
            }
            Stage::ScramFinal(state) => {
                let fin = state.server_final(token).map_err(scram_err)?;
                Ok(Step {
                    token: fin.into_bytes(),
                    complete: Some(KafkaPrincipal::user(state.username.clone())),
                })
            }
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`; the authzid, if any, must be the user.
    fn plain(&self, token: &[u8]) -> Result<String, SaslError> {
        let (user, password) = parse_plain(token)?;
        let cred = ScramMechanism::all()
            .into_iter()
            .rev()
            .find_map(|m| self.credentials.get(&user, m).map(|c| (m, c)));
        match cred {
            Some((m, c)) if m.verify_password(&c, password) => Ok(user),
            _ => Err(SaslError::AuthenticationFailed(
                "Authentication failed: Invalid username or password".into(),
            )),
        }
    }
}

/// Splits a PLAIN message into the user and the password.
pub fn parse_plain(token: &[u8]) -> Result<(String, &[u8]), SaslError> {
    let bad = |m: &str| SaslError::AuthenticationFailed(format!("Invalid SASL/PLAIN message: {m}"));
    let mut parts = token.splitn(3, |b| *b == 0);
    let authzid = parts.next().ok_or_else(|| bad("empty"))?;
    let user = parts.next().ok_or_else(|| bad("expected 3 tokens"))?;
    let password = parts.next().ok_or_else(|| bad("expected 3 tokens"))?;
    if password.contains(&0) {
        return Err(bad("expected 3 tokens"));
    }
    let user = std::str::from_utf8(user).map_err(|_| bad("user name is not UTF-8"))?;
    if user.is_empty() {
        return Err(bad("Authentication failed: username not specified"));
    }
    if password.is_empty() {
        return Err(bad("Authentication failed: password not specified"));
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(SaslError::AuthenticationFailed(
            "Authentication failed: Client requested an authorization id that is different from username".into(),
        ));
    }
    Ok((user.to_string(), password))
}

fn scram_err(e: ScramError) -> SaslError {
    match e {
        ScramError::BadCredentials(_) => SaslError::AuthenticationFailed(e.to_string()),
        other => SaslError::AuthenticationFailed(format!("Authentication failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn store() -> Arc<CredentialStore> {
        let s = CredentialStore::in_memory();
        s.put_local(
            "alice",
            ScramMechanism::Sha512,
            ScramMechanism::Sha512.credential(b"pw", b"salty", 4096),
        );
        Arc::new(s)
    }

    fn all() -> Arc<Vec<Mechanism>> {
        Arc::new(vec![
            Mechanism::Plain,
            Mechanism::Scram(ScramMechanism::Sha256),
            Mechanism::Scram(ScramMechanism::Sha512),
        ])
    }

    #[test]
    fn plain_accepts_the_password_and_nothing_else() {
        let mut x = SaslExchange::new(all(), store());
        x.handshake("PLAIN").unwrap();
        let step = x.authenticate(b"\0alice\0pw").unwrap();
        assert_eq!(step.complete, Some(KafkaPrincipal::user("alice".into())));
        for bad in [
            &b"\0alice\0pX"[..],
            b"\0bob\0pw",
            b"root\0alice\0pw",
            b"alice",
            b"\0alice\0",
        ] {
            let mut x = SaslExchange::new(all(), store());
            x.handshake("PLAIN").unwrap();
            assert!(
                matches!(x.authenticate(bad), Err(SaslError::AuthenticationFailed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn states_are_enforced() {
        let mut x = SaslExchange::new(Arc::new(vec![Mechanism::Plain]), store());
        assert!(matches!(
            x.authenticate(b"x"),
            Err(SaslError::IllegalState(_))
        ));
        assert_eq!(
            x.handshake("SCRAM-SHA-512"),
            Err(SaslError::UnsupportedMechanism("SCRAM-SHA-512".into()))
        );
        assert_eq!(
            x.handshake("GSSAPI"),
            Err(SaslError::UnsupportedMechanism("GSSAPI".into()))
        );
        x.handshake("PLAIN").unwrap();
        assert!(matches!(
            x.handshake("PLAIN"),
            Err(SaslError::IllegalState(_))
        ));
    }

    proptest! {
        #[test]
        fn any_token_at_any_stage_never_panics(
            mech in prop::sample::select(vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "X"]),
            t1 in proptest::collection::vec(any::<u8>(), 0..80),
            t2 in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut x = SaslExchange::new(all(), store());
            let _ = x.handshake(mech);
            let _ = x.authenticate(&t1);
            let _ = x.authenticate(&t2);
            let _ = parse_plain(&t1);
        }
    }
}
