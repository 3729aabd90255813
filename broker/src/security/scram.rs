//! SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka runs it: the server side of the
//! exchange as pure steps (nonce injected), and the stored credential in Kafka's ZooKeeper form
//! `salt=...,stored_key=...,server_key=...,iterations=...`. No password is ever kept.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's minimum (and the RFC's recommended) iteration count.
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's maximum.
pub const MAX_ITERATIONS: u32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "SCRAM-SHA-256" => Some(Self::Sha256),
            "SCRAM-SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }
    /// KIP-554's mechanism codes.
    pub fn code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }
    pub fn from_code(c: i8) -> Option<Self> {
        match c {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }
    pub fn all() -> [Self; 2] {
        [Self::Sha256, Self::Sha512]
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                // HMAC accepts keys of any length.
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with HMAC of the mechanism's hash.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Self::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }

    /// The stored form of `password`.
    pub fn credential(self, password: &[u8], salt: &[u8], iterations: u32) -> ScramCredential {
        let salted = self.salted_password(password, salt, iterations);
        self.credential_from_salted(&salted, salt, iterations)
    }

    /// The stored form from a salted password (AlterUserScramCredentials sends only that).
    pub fn credential_from_salted(
        self,
        salted: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = self.hmac(salted, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    /// Checks a clear-text password (SASL/PLAIN) against a stored credential, in constant time.
    pub fn verify_password(self, cred: &ScramCredential, password: &[u8]) -> bool {
        let salted = self.salted_password(password, &cred.salt, cred.iterations);
        let stored = self.hash(&self.hmac(&salted, b"Client Key"));
        bool::from(stored.ct_eq(&cred.stored_key))
    }
}

/// What the broker keeps for a user and mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

// Keys are secrets too: never printed, even at debug level.
impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// Kafka's ZooKeeper form.
    pub fn to_kafka_string(&self) -> String {
        format!(
            "salt={},stored_key={},server_key={},iterations={}",
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key),
            self.iterations
        )
    }

    pub fn from_kafka_string(s: &str) -> Result<Self, ScramError> {
        let mut salt = None;
        let mut stored = None;
        let mut server = None;
        let mut iterations = None;
        for kv in s.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or(ScramError::Malformed("credential entry without '='"))?;
            let dec = |v: &str| {
                B64.decode(v)
                    .map_err(|_| ScramError::Malformed("credential value is not base64"))
            };
            match k {
                "salt" => salt = Some(dec(v)?),
                "stored_key" => stored = Some(dec(v)?),
                "server_key" => server = Some(dec(v)?),
                "iterations" => {
                    iterations = Some(
                        v.parse::<u32>()
                            .map_err(|_| ScramError::Malformed("iterations is not a number"))?,
                    )
                }
                _ => {}
            }
        }
        match (salt, stored, server, iterations) {
            (Some(salt), Some(stored_key), Some(server_key), Some(iterations)) => Ok(Self {
                salt,
                stored_key,
                server_key,
                iterations,
            }),
            _ => Err(ScramError::Malformed("credential is missing a field")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Unknown user or wrong proof: one message for both, as Kafka, so logins cannot probe users.
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {0}")]
    BadCredentials(&'static str),
    #[error("{0}")]
    Unsupported(&'static str),
}

/// The parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub gs2_header: String,
    pub authzid: Option<String>,
    pub username: String,
    pub nonce: String,
    /// The message without the GS2 header (it enters the AuthMessage).
    pub bare: String,
    pub extensions: Vec<(String, String)>,
}

/// RFC 5802 saslname: `=2C` is ',' and `=3D` is '='; any other '=' is invalid.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3);
        match esc {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|c| (0x21..=0x7e).contains(&c) && c != b',')
}

pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut parts = msg.splitn(3, ',');
    let cbind = parts.next().unwrap_or("");
    let authz = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
    let bare = parts
        .next()
        .ok_or(ScramError::Malformed("no client-first-message-bare"))?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => {
            return Err(ScramError::Unsupported("channel binding is not supported"))
        }
        _ => return Err(ScramError::Malformed("bad GS2 channel-binding flag")),
    }
    let authzid = match authz {
        "" => None,
        a => Some(decode_saslname(
            a.strip_prefix("a=")
                .ok_or(ScramError::Malformed("bad authzid"))?,
        )?),
    };
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .ok_or(ScramError::Malformed("no user name"))?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or(ScramError::Malformed("no client nonce"))?;
    if !printable_nonce(nonce) {
        return Err(ScramError::Malformed("bad client nonce"));
    }
    let mut extensions = Vec::new();
    for f in fields {
        let (k, v) = f
            .split_once('=')
            .ok_or(ScramError::Malformed("bad extension"))?;
        if k.is_empty() {
            return Err(ScramError::Malformed("bad extension"));
        }
        extensions.push((k.to_string(), v.to_string()));
    }
    let username = decode_saslname(user)?;
    if username.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(ClientFirst {
        gs2_header: format!("{cbind},{authz},"),
        authzid,
        username,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
        extensions,
    })
}

/// The parsed client-final message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    pub channel_binding: Vec<u8>,
    pub nonce: String,
    pub proof: Vec<u8>,
    /// Everything before ",p=" (it enters the AuthMessage).
    pub without_proof: String,
}

pub fn parse_client_final(msg: &[u8]) -> Result<ClientFinal, ScramError> {
    let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let (without_proof, proof) = msg
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("no proof"))?;
    let mut fields = without_proof.split(',');
    let c = fields
        .next()
        .and_then(|f| f.strip_prefix("c="))
        .ok_or(ScramError::Malformed("no channel binding"))?;
    let r = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or(ScramError::Malformed("no nonce"))?;
    Ok(ClientFinal {
        channel_binding: B64
            .decode(c)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?,
        nonce: r.to_string(),
        proof: B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?,
        without_proof: without_proof.to_string(),
    })
}

/// The server between its first and final message.
#[derive(Clone)]
pub struct ScramServerFirst {
    mechanism: ScramMechanism,
    pub username: String,
    client_first: ClientFirst,
    server_first: String,
    /// The part of the nonce this server generated.
    server_nonce: String,
    credential: ScramCredential,
}

/// Step 1: the client-first message, the user's credential (`None`: unknown user) and a fresh
/// server nonce give the server-first message.
pub fn server_first(
    mechanism: ScramMechanism,
    client_first: &[u8],
    lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    server_nonce: &str,
) -> Result<(ScramServerFirst, String), ScramError> {
    let cf = parse_client_first(client_first)?;
    if let Some(a) = &cf.authzid {
        if a != &cf.username {
            return Err(ScramError::BadCredentials(mechanism.name()));
        }
    }
    // Kafka's only extension is tokenauth (delegation tokens), which we do not issue.
    if cf
        .extensions
        .iter()
        .any(|(k, v)| k == "tokenauth" && v.eq_ignore_ascii_case("true"))
    {
        return Err(ScramError::BadCredentials(mechanism.name()));
    }
    let credential = lookup(&cf.username).ok_or(ScramError::BadCredentials(mechanism.name()))?;
    let nonce = format!("{}{}", cf.nonce, server_nonce);
    let server_first = format!(
        "r={nonce},s={},i={}",
        B64.encode(&credential.salt),
        credential.iterations
    );
    let state = ScramServerFirst {
        mechanism,
        username: cf.username.clone(),
        client_first: cf,
        server_first: server_first.clone(),
        server_nonce: server_nonce.to_string(),
        credential,
    };
    Ok((state, server_first))
}

impl ScramServerFirst {
    /// Step 2: checks the client's proof; on success, the server-final message (the server's
    /// signature, which proves to the client that the server knows the credential).
    pub fn server_final(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let cf = parse_client_final(client_final)?;
        if cf.channel_binding != self.client_first.gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding does not match the GS2 header",
            ));
        }
        // Kafka checks only that the nonce ends with the server's part (ScramSaslServer), and
        // librdkafka before 2.2 sends the client nonce twice: accept what Kafka accepts. The
        // fresh server part is what defeats replay; the proof covers the nonce as sent.
        if !cf.nonce.ends_with(&self.server_nonce) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first.bare, self.server_first, cf.without_proof
        );
        let m = self.mechanism;
        let client_signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if cf.proof.len() != client_signature.len() {
            return Err(ScramError::BadCredentials(m.name()));
        }
        let client_key: Vec<u8> = cf
            .proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !bool::from(m.hash(&client_key).ct_eq(&self.credential.stored_key)) {
            return Err(ScramError::BadCredentials(m.name()));
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// A fresh random nonce or salt from the OS.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    // The OS random source failing is not recoverable for a security component.
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}

/// A printable nonce (base64 of 24 random bytes: no ',').
pub fn new_nonce() -> String {
    B64.encode(random_bytes(24))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A SCRAM client, as the test's peer (RFC 5802 section 3, client side).
    fn client_final(
        m: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        gs2: &str,
    ) -> (String, String) {
        let mut salt = None;
        let mut iters = 0;
        let mut nonce = "";
        for f in server_first.split(',') {
            if let Some(s) = f.strip_prefix("s=") {
                salt = Some(B64.decode(s).unwrap());
            } else if let Some(i) = f.strip_prefix("i=") {
                iters = i.parse().unwrap();
            } else if let Some(r) = f.strip_prefix("r=") {
                nonce = r;
            }
        }
        let salted = m.salted_password(password.as_bytes(), &salt.unwrap(), iters);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(gs2));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = m.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = m.hmac(&salted, b"Server Key");
        let expect_v = format!("v={}", B64.encode(m.hmac(&server_key, auth.as_bytes())));
        (format!("{without_proof},p={}", B64.encode(proof)), expect_v)
    }

    /// RFC 7677 section 3's exchange, byte for byte.
    #[test]
    fn rfc7677_test_vector() {
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = m.credential(b"pencil", &salt, 4096);
        let (state, sf) = server_first(
            m,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |u| (u == "user").then(|| cred.clone()),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            sf,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        // The nonce must carry the server's part.
        assert!(state
            .server_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
            )
            .is_err());
        let fin = state
            .server_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        // One bit off in the proof fails.
        let bad = state.server_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=");
        assert!(matches!(bad, Err(ScramError::BadCredentials(_))));
    }

    #[test]
    fn sha512_round_trip_wrong_password_and_unknown_user() {
        let m = ScramMechanism::Sha512;
        let cred = m.credential(b"s3cret", b"0123456789abcdef", 4096);
        let bare = "n=alice,r=abc";
        let (st, sf) = server_first(
            m,
            format!("n,,{bare}").as_bytes(),
            |_| Some(cred.clone()),
            "xyz",
        )
        .unwrap();
        let (cfin, v) = client_final(m, "s3cret", bare, &sf, "n,,");
        assert_eq!(st.server_final(cfin.as_bytes()).unwrap(), v);
        let (cfin, _) = client_final(m, "wrong", bare, &sf, "n,,");
        assert_eq!(
            st.server_final(cfin.as_bytes()),
            Err(ScramError::BadCredentials("SCRAM-SHA-512"))
        );
        assert!(matches!(
            server_first(m, b"n,,n=bob,r=abc", |_| None, "xyz"),
            Err(ScramError::BadCredentials(_))
        ));
        // authzid must name the user itself.
        assert!(server_first(m, b"n,a=root,n=alice,r=abc", |_| Some(cred.clone()), "x").is_err());
        assert!(server_first(m, b"n,a=alice,n=alice,r=abc", |_| Some(cred.clone()), "x").is_ok());
    }

    #[test]
    fn kafka_credential_string_round_trips_and_plain_verifies() {
        let m = ScramMechanism::Sha512;
        let cred = m.credential(b"pw", b"salt", 8192);
        let s = cred.to_kafka_string();
        assert!(s.starts_with("salt=c2FsdA==,stored_key="), "{s}");
        assert!(s.ends_with(",iterations=8192"));
        let back = ScramCredential::from_kafka_string(&s).unwrap();
        assert_eq!(back, cred);
        assert!(m.verify_password(&back, b"pw"));
        assert!(!m.verify_password(&back, b"pW"));
        assert!(!format!("{cred:?}").contains(&B64.encode(&cred.stored_key)));
    }

    #[test]
    fn saslname_escapes() {
        let cf = parse_client_first(b"n,,n=a=2Cb=3Dc,r=n1,ext=1").unwrap();
        assert_eq!(cf.username, "a,b=c");
        assert_eq!(cf.extensions, vec![("ext".into(), "1".into())]);
        assert!(parse_client_first(b"n,,n=a=2,r=n").is_err());
        assert!(parse_client_first(b"p=tls-unique,,n=a,r=n").is_err());
    }

    /// A parse error says it is a malformed (or unsupported) SCRAM message, and what part.
    fn parse_error_is_clear(e: &ScramError) -> bool {
        match e {
            ScramError::Malformed(m) | ScramError::Unsupported(m) => !m.is_empty(),
            ScramError::BadCredentials(_) => false,
        }
    }

    proptest! {
        // client-first: arbitrary bytes give either a message whose parts rebuild it (GS2 header
        // + bare), with a non-empty user and a printable nonce, or a clear parse error.
        #[test]
        fn client_first_is_parsed_or_refused_clearly(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            match parse_client_first(&bytes) {
                Ok(cf) => {
                    let rebuilt = format!("{}{}", cf.gs2_header, cf.bare);
                    prop_assert_eq!(rebuilt.as_bytes(), &bytes[..]);
                    prop_assert!(!cf.username.is_empty());
                    prop_assert!(printable_nonce(&cf.nonce));
                }
                Err(e) => prop_assert!(parse_error_is_clear(&e), "{e:?}"),
            }
        }

        // The same with a valid frame around arbitrary text (any UTF-8, '=' escapes, commas),
        // which reaches the user-name decoding and the extensions.
        #[test]
        fn client_first_fields_are_parsed_or_refused_clearly(
            gs2 in prop::sample::select(vec!["n,,", "y,,", "n,a=alice,", "p=tls-unique,,", "x,,", "n,a=,"]),
            user in "\\PC{0,16}",
            nonce in "\\PC{0,16}",
            ext in prop_oneof![Just(String::new()), "\\PC{0,16}".prop_map(|e| format!(",{e}"))],
        ) {
            let msg = format!("{gs2}n={user},r={nonce}{ext}");
            match parse_client_first(msg.as_bytes()) {
                Ok(cf) => {
                    prop_assert_eq!(format!("{}{}", cf.gs2_header, cf.bare), msg);
                    prop_assert!(!cf.username.contains("=2C") || user.contains("=3D2C"));
                }
                Err(e) => prop_assert!(parse_error_is_clear(&e), "{msg:?}: {e:?}"),
            }
        }

        // client-final: parsed (the proof and channel binding decoded, the text before ",p="
        // kept for the AuthMessage) or refused with a clear error.
        #[test]
        fn client_final_is_parsed_or_refused_clearly(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            match parse_client_final(&bytes) {
                Ok(cf) => {
                    let text = std::str::from_utf8(&bytes).unwrap();
                    prop_assert!(text.starts_with(&cf.without_proof));
                    prop_assert!(text[cf.without_proof.len()..].starts_with(",p="));
                    prop_assert!(cf.without_proof.starts_with("c="));
                }
                Err(e) => prop_assert!(parse_error_is_clear(&e), "{e:?}"),
            }
        }

        // A client-final that is not the client's real proof never passes, whatever its shape:
        // a random proof of the right length, one bit of the right proof flipped, another
        // nonce, another channel binding or arbitrary bytes.
        #[test]
        fn only_the_real_proof_passes(
            m in prop::sample::select(vec![ScramMechanism::Sha256, ScramMechanism::Sha512]),
            bit in 0usize..512,
            random_proof in proptest::collection::vec(any::<u8>(), 64),
            garbage in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let cred = m.credential(b"pw", b"salt", 4096);
            let bare = "n=u,r=cn";
            let (st, sf) = server_first(m, format!("n,,{bare}").as_bytes(), |_| Some(cred.clone()), "sn").unwrap();
            let (good, _) = client_final(m, "pw", bare, &sf, "n,,");
            prop_assert!(st.server_final(good.as_bytes()).is_ok());
            let (without_proof, proof) = good.rsplit_once(",p=").unwrap();
            let mut proof = B64.decode(proof).unwrap();
            let i = bit % (proof.len() * 8);
            proof[i / 8] ^= 1 << (i % 8);
            let len = proof.len();
            for bad in [
                format!("{without_proof},p={}", B64.encode(&proof)),
                format!("{without_proof},p={}", B64.encode(&random_proof[..len])),
                good.replace(",r=cn", ",r=cX"),
                good.replace("c=biws", "c=eSws"),
            ] {
                prop_assert!(st.server_final(bad.as_bytes()).is_err(), "{bad}");
            }
            prop_assert!(st.server_final(&garbage).is_err());
        }

        // The parsers see attacker bytes before any authentication: they must never panic.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_client_first(&bytes);
            let _ = parse_client_final(&bytes);
            let _ = std::str::from_utf8(&bytes).map(ScramCredential::from_kafka_string);
        }

        #[test]
        fn structured_garbage_never_panics(
            user in "[a-z=,2CD3]{0,12}",
            nonce in "[ -~]{0,12}",
            ext in "[a-z=,]{0,12}",
            proof in "[A-Za-z0-9+/=,]{0,40}",
        ) {
            let first = format!("n,,n={user},r={nonce},{ext}");
            let cred = ScramMechanism::Sha256.credential(b"p", b"s", 4096);
            if let Ok((st, _)) = server_first(ScramMechanism::Sha256, first.as_bytes(), |_| Some(cred.clone()), "srv") {
                let _ = st.server_final(format!("c=biws,r={nonce}srv,p={proof}").as_bytes());
                let _ = st.server_final(proof.as_bytes());
            }
        }

        #[test]
        fn any_password_round_trips(pw in "[ -~]{1,24}", salt in proptest::collection::vec(any::<u8>(), 1..32)) {
            let m = ScramMechanism::Sha256;
            let cred = m.credential(pw.as_bytes(), &salt, 4096);
            let bare = "n=u,r=cn";
            let (st, sf) = server_first(m, format!("n,,{bare}").as_bytes(), |_| Some(cred.clone()), "sn").unwrap();
            let (cfin, v) = client_final(m, &pw, bare, &sf, "n,,");
            prop_assert_eq!(st.server_final(cfin.as_bytes()).unwrap(), v);
        }
    }
}
