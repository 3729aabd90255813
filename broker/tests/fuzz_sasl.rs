//! Property tests of the SASL requests as they arrive: SaslHandshake (v0, v1) and
//! SaslAuthenticate (v0-v2, v2 flexible) frames, valid, mutated, truncated or with arbitrary
//! tokens, go through the request decoder and then through a SASL listener's connection state
//! (`security::connection::Session`), as the server loop runs them. Nothing panics; a frame that
//! does not decode is an error naming the API (the server closes the connection); a decoded one
//! is answered with an error code and a message, and never authenticates without the password.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use rivulet_broker::protocol::codec::{decode_request, DecodeError};
use rivulet_broker::security::connection::{AuthOutcome, Gate, ListenerCtx, Session};
use rivulet_broker::security::credentials::CredentialStore;
use rivulet_broker::security::listeners::SecurityProtocol;
use rivulet_broker::security::sasl::Mechanism;
use rivulet_broker::security::scram::ScramMechanism;

fn frame(api: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz-sasl")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn handshake_frame(version: i16, mechanism: &str) -> Vec<u8> {
    frame(
        ApiKey::SaslHandshake,
        version,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )
}

fn authenticate_frame(version: i16, token: &[u8]) -> Vec<u8> {
    frame(
        ApiKey::SaslAuthenticate,
        version,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
    )
}

/// A SASL_SSL listener's context with user alice (SCRAM-SHA-512, password "pw").
fn listener() -> ListenerCtx {
    let creds = CredentialStore::in_memory();
    creds.put_local(
        "alice",
        ScramMechanism::Sha512,
        ScramMechanism::Sha512.credential(b"pw", b"salt", 4096),
    );
    ListenerCtx {
        protocol: SecurityProtocol::SaslSsl,
        mechanisms: Arc::new(vec![
            Mechanism::Plain,
            Mechanism::Scram(ScramMechanism::Sha256),
            Mechanism::Scram(ScramMechanism::Sha512),
        ]),
        credentials: Arc::new(creds),
        ..ListenerCtx::plaintext("SASL_SSL")
    }
}

/// What the server loop does with one decoded request on a SASL connection: the response's
/// error code and message, and the outcome. Decode errors are returned as such. A frame mutated
/// into another API must meet the gate: before authentication only ApiVersions is served.
fn serve(
    session: &mut Session,
    data: Vec<u8>,
) -> Result<(i16, Option<String>, AuthOutcome), DecodeError> {
    let req = decode_request(Bytes::from(data))?;
    let version = req.header.request_api_version;
    Ok(match req.body {
        RequestKind::SaslHandshake(r) => {
            let (resp, out) = session.handshake(version, &r);
            (resp.error_code, None, out)
        }
        RequestKind::SaslAuthenticate(r) => {
            let (resp, out) = session.authenticate(&r, Instant::now());
            (
                resp.error_code,
                resp.error_message.map(|m| m.to_string()),
                out,
            )
        }
        _ => {
            let gate = session.gate(req.api, Instant::now());
            if req.api == ApiKey::ApiVersions {
                assert_eq!(gate, Gate::Serve);
            } else {
                assert!(
                    matches!(gate, Gate::Close(_)),
                    "{:?} served before login",
                    req.api
                );
            }
            (0, None, AuthOutcome::Continue)
        }
    })
}

/// Error codes a failed SASL step may answer with.
fn is_sasl_error(code: i16) -> bool {
    [
        ResponseError::SaslAuthenticationFailed.code(),
        ResponseError::IllegalSaslState.code(),
        ResponseError::UnsupportedSaslMechanism.code(),
    ]
    .contains(&code)
}

/// Flips bytes at the given positions and cuts the tail off.
fn mutate(mut data: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for (pos, byte) in flips {
        let i = pos % data.len();
        data[i] = *byte;
    }
    let keep = data.len() - cut % (data.len() / 2 + 1);
    data.truncate(keep);
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // SaslAuthenticate with an arbitrary token, right after a valid handshake (every version):
    // refused with SASL_AUTHENTICATION_FAILED and a message, or (a well-formed SCRAM
    // client-first) continued; never authenticated.
    #[test]
    fn arbitrary_tokens_get_sasl_authentication_failed(
        mech in prop::sample::select(vec!["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
        version in 0i16..=2,
        token in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut s = Session::new(&listener(), None);
        let (code, _, out) = serve(&mut s, handshake_frame(1, mech)).unwrap();
        prop_assert_eq!((code, out), (0, AuthOutcome::Continue));
        let (code, msg, out) = serve(&mut s, authenticate_frame(version, &token)).unwrap();
        match out {
            AuthOutcome::Failed => {
                prop_assert_eq!(code, ResponseError::SaslAuthenticationFailed.code());
                prop_assert!(msg.is_some_and(|m| !m.is_empty()));
            }
            AuthOutcome::Continue => prop_assert!(mech == "SCRAM-SHA-512" && code == 0),
            AuthOutcome::Succeeded => prop_assert!(false, "{mech} logged in with {token:?}"),
        }
        prop_assert!(!s.is_authenticated());
    }

    // A well-formed SCRAM client-first, then an arbitrary client-final: refused.
    #[test]
    fn arbitrary_client_final_is_refused(
        version in 0i16..=2,
        nonce in "[!-+.-~]{1,24}",
        fin in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut s = Session::new(&listener(), None);
        serve(&mut s, handshake_frame(1, "SCRAM-SHA-512")).unwrap();
        let first = format!("n,,n=alice,r={nonce}");
        let (code, _, out) = serve(&mut s, authenticate_frame(version, first.as_bytes())).unwrap();
        prop_assert_eq!((code, out), (0, AuthOutcome::Continue));
        let (code, msg, out) = serve(&mut s, authenticate_frame(version, &fin)).unwrap();
        prop_assert_eq!(out, AuthOutcome::Failed);
        prop_assert_eq!(code, ResponseError::SaslAuthenticationFailed.code());
        prop_assert!(msg.is_some_and(|m| m.contains("Authentication failed")));
        prop_assert!(!s.is_authenticated());
    }

    // Valid SaslHandshake / SaslAuthenticate frames with bytes changed and the tail cut: the
    // decoder refuses them with an error naming the request, or the session answers with a
    // SASL error code; no mutation authenticates (the valid token is PLAIN with a wrong
    // password, so only a broken frame could).
    #[test]
    fn mutated_sasl_frames_are_refused(
        seed in 0usize..5,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let seeds = [
            handshake_frame(0, "PLAIN"),
            handshake_frame(1, "PLAIN"),
            authenticate_frame(0, b"\0alice\0wrong"),
            authenticate_frame(1, b"\0alice\0wrong"),
            authenticate_frame(2, b"\0alice\0wrong"),
        ];
        let data = mutate(seeds[seed].clone(), &flips, cut);
        let mut s = Session::new(&listener(), None);
        if seed >= 2 {
            serve(&mut s, handshake_frame(1, "PLAIN")).unwrap();
        }
        match serve(&mut s, data) {
            Ok((code, _, out)) => {
                prop_assert!(out != AuthOutcome::Succeeded);
                prop_assert!(code == 0 || is_sasl_error(code), "error code {code}");
                if out == AuthOutcome::Failed {
                    prop_assert!(is_sasl_error(code));
                }
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(!text.is_empty());
                if let DecodeError::Malformed { api, .. } = e {
                    prop_assert!(text.contains(&format!("{api:?}")), "{text}");
                }
            }
        }
        prop_assert!(!s.is_authenticated());
    }

    // A frame of a SASL API key and version followed by arbitrary bytes decodes or is refused.
    #[test]
    fn arbitrary_sasl_bodies_never_panic(
        api in prop::sample::select(vec![ApiKey::SaslHandshake, ApiKey::SaslAuthenticate]),
        version in 0i16..=2,
        body in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut data = Vec::new();
        data.extend_from_slice(&(api as i16).to_be_bytes());
        data.extend_from_slice(&version.to_be_bytes());
        data.extend_from_slice(&1i32.to_be_bytes());
        data.extend_from_slice(&body);
        let mut s = Session::new(&listener(), None);
        if let Ok((code, _, out)) = serve(&mut s, data) {
            prop_assert!(out != AuthOutcome::Succeeded);
            prop_assert!(code == 0 || is_sasl_error(code));
        }
    }
}

/// The control: the real password logs in through the same path, with each version.
#[test]
fn the_real_password_logs_in() {
    for version in 0..=2 {
        let mut s = Session::new(&listener(), None);
        serve(&mut s, handshake_frame(1, "PLAIN")).unwrap();
        let (code, _, out) = serve(&mut s, authenticate_frame(version, b"\0alice\0pw")).unwrap();
        assert_eq!((code, out), (0, AuthOutcome::Succeeded));
        assert!(s.is_authenticated());
        assert_eq!(s.principal.to_string(), "User:alice");
    }
}

/// A SaslAuthenticate whose token claims more bytes than the frame holds is a decode error
/// that names the request (the server closes the connection on it).
#[test]
fn truncated_sasl_authenticate_is_a_named_decode_error() {
    for version in 0..=2 {
        let mut data = authenticate_frame(version, b"\0alice\0pw");
        data.truncate(data.len() - 3);
        let e = decode_request(Bytes::from(data)).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::Malformed {
                    api: ApiKey::SaslAuthenticate,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("SaslAuthenticate"), "{e}");
    }
}
