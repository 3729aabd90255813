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

    /// A PLAIN error is SASL_AUTHENTICATION_FAILED with a message that says what was wrong.
    fn plain_error_is_clear(e: &SaslError) -> bool {
        matches!(e, SaslError::AuthenticationFailed(m)
            if m.starts_with("Invalid SASL/PLAIN message: ") || m.starts_with("Authentication failed: "))
    }

    proptest! {
        // PLAIN's parser is total: arbitrary bytes give either the three parts, rebuilt to the
        // very same bytes, or a SASL_AUTHENTICATION_FAILED that names the problem.
        #[test]
        fn parse_plain_accepts_exactly_well_formed_messages(
            token in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            match parse_plain(&token) {
                Ok((user, password)) => {
                    prop_assert!(!user.is_empty() && !password.is_empty());
                    prop_assert!(!user.contains('\0') && !password.contains(&0));
                    let tail = [user.as_bytes(), b"\0", password].concat();
                    prop_assert!(token.ends_with(&tail));
                    let authzid = &token[..token.len() - tail.len()];
                    prop_assert!(authzid == b"\0" || authzid == [user.as_bytes(), b"\0"].concat());
                }
                Err(e) => prop_assert!(plain_error_is_clear(&e), "{e:?}"),
            }
        }

        // Built from parts (any bytes, NULs included): accepted exactly when Kafka's
        // PlainSaslServer accepts, with the user and password it would see.
        #[test]
        fn parse_plain_model(
            authzid in proptest::collection::vec(any::<u8>(), 0..6),
            user in proptest::collection::vec(any::<u8>(), 0..10),
            password in proptest::collection::vec(any::<u8>(), 0..10),
            same_authzid in any::<bool>(),
        ) {
            let authzid = if same_authzid { user.clone() } else { authzid };
            let token = [&authzid[..], b"\0", &user, b"\0", &password].concat();
            let valid = !authzid.contains(&0)
                && !user.contains(&0)
                && !password.contains(&0)
                && !user.is_empty()
                && !password.is_empty()
                && std::str::from_utf8(&user).is_ok()
                && (authzid.is_empty() || authzid == user);
            match parse_plain(&token) {
                Ok((u, p)) => {
                    prop_assert!(valid, "accepted {token:?}");
                    prop_assert_eq!(u.as_bytes(), &user[..]);
                    prop_assert_eq!(p, &password[..]);
                }
                Err(e) => {
                    prop_assert!(!valid, "refused {token:?}: {e}");
                    prop_assert!(plain_error_is_clear(&e), "{e:?}");
                }
            }
        }

        // Attacker bytes at every stage of an exchange never panic and never log anyone in:
        // PLAIN needs the password, SCRAM a proof; every failure is SASL_AUTHENTICATION_FAILED
        // with a message (ILLEGAL_SASL_STATE only out of order).
        #[test]
        fn arbitrary_tokens_never_authenticate(
            mech in prop::sample::select(vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
            first in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..80),
                // A well-formed client-first for the known user, so client-final is reached.
                "[!-+.-~]{1,24}".prop_map(|n| format!("n,,n=alice,r={n}").into_bytes()),
            ],
            fin in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut x = SaslExchange::new(all(), store());
            x.handshake(mech).unwrap();
            match x.authenticate(&first) {
                Ok(step) => {
                    prop_assert!(mech.starts_with("SCRAM"), "PLAIN accepted {first:?}");
                    prop_assert_eq!(step.complete, None);
                    let r = x.authenticate(&fin);
                    prop_assert!(
                        matches!(&r, Err(SaslError::AuthenticationFailed(m)) if !m.is_empty()),
                        "client-final {fin:?}: {r:?}"
                    );
                }
                Err(SaslError::AuthenticationFailed(m)) => prop_assert!(!m.is_empty()),
                Err(e) => prop_assert!(false, "first token {first:?}: {e:?}"),
            }
            // After a failure the exchange is back at the start: a token is out of order.
            prop_assert!(matches!(x.authenticate(&fin), Err(SaslError::IllegalState(_))));
        }

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
