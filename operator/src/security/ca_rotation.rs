//! Cluster CA renewal without downtime (pure): a new CA is trusted everywhere before anything
//! is signed with it, and the old one stays trusted until it expires.
//!
//! 1. **Trust.** At 2/3 of the CA's validity a new CA is generated as the *next* CA. The trust
//!    bundle (`ca.crt` of `<cluster>-cluster-ca-cert` and of the broker certificate Secret)
//!    becomes `[current, next, older...]`; every certificate is still signed by the current
//!    CA, so nothing changes for anyone yet. Brokers reload the bundle from their mounted
//!    Secret (listeners and the replica fetcher alike), clients have [`TRUST_GRACE`] to pick it
//!    up.
//! 2. **Promote.** After [`TRUST_GRACE`], the next CA signs: broker and user certificates are
//!    issued again from it (the broker reloads its certificate files), and the bundle is
//!    `[next, previous, older...]` — peers that have not reloaded yet still trust the
//!    previous CA's certificates, everyone trusts the new ones.
//! 3. **Drop.** A CA in the bundle past its `notAfter` is removed from it.
//!
//! A missing or unreadable CA is generated at once (nothing could be trusting it).

use time::{Duration, OffsetDateTime};

use super::certs::{self, CertKey, Renewal};

/// How long a new CA is trusted before it signs anything: the kubelet's Secret volume sync
/// (about a minute) and the brokers' reload are covered many times over; clients that read
/// `<cluster>-cluster-ca-cert` only at start have a day to restart.
pub const TRUST_GRACE: Duration = Duration::hours(24);

/// The cluster CA as stored: the signing CA, the other certificates still trusted (previous
/// CAs), and the next CA with the moment it was added to the bundle.
#[derive(Clone, Debug, Default)]
pub struct CaState {
    pub current: Option<CertKey>,
    pub older: Vec<String>,
    pub next: Option<(CertKey, OffsetDateTime)>,
}

/// What to do with the CA now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaStep {
    Keep,
    /// No usable CA: generate one that signs at once.
    Generate(Renewal),
    /// The CA is due: generate the next CA and add it to the bundle.
    StartTransition(Renewal),
    /// The next CA has been trusted for [`TRUST_GRACE`]: it signs from now on.
    Promote,
    /// Remove these (expired or unreadable) certificates from the bundle.
    Drop(Vec<String>),
}

fn expired(pem: &str, now: OffsetDateTime) -> bool {
    match certs::inspect(pem) {
        Ok(i) => i.not_after <= now,
        Err(_) => true,
    }
}

/// The pure decision.
pub fn step(state: &CaState, now: OffsetDateTime) -> CaStep {
    let why = certs::check_ca(state.current.as_ref(), now);
    if let Some(r @ (Renewal::Missing | Renewal::Unreadable(_))) = why {
        return CaStep::Generate(r);
    }
    // Expired already (the operator was away): nothing can be trusting it any more.
    if let Some(Renewal::Expiring { not_after }) = &why {
        if *not_after <= now {
            return CaStep::Generate(Renewal::Expiring {
                not_after: *not_after,
            });
        }
    }
    match &state.next {
        Some((next, _)) if certs::check_ca(Some(next), now).is_some() => {
            // A broken next CA is replaced (it signed nothing yet).
            return CaStep::StartTransition(Renewal::Unreadable("next CA".into()));
        }
        Some((_, since)) if now >= *since + TRUST_GRACE => return CaStep::Promote,
        Some(_) => {}
        None => {
            if let Some(r) = why {
                return CaStep::StartTransition(r);
            }
        }
    }
    let gone: Vec<String> = state
        .older
        .iter()
        .filter(|p| expired(p, now))
        .cloned()
        .collect();
    if gone.is_empty() {
        CaStep::Keep
    } else {
        CaStep::Drop(gone)
    }
}

/// The state after `step`; `fresh` is a newly generated CA (used by `Generate` and
/// `StartTransition` only).
pub fn apply(
    state: &CaState,
    step: &CaStep,
    fresh: Option<CertKey>,
    now: OffsetDateTime,
) -> CaState {
    let mut s = state.clone();
    match step {
        CaStep::Keep => {}
        CaStep::Generate(_) => {
            if let Some(f) = fresh {
                s.current = Some(f);
                s.next = None;
            }
        }
        CaStep::StartTransition(_) => {
            if let Some(f) = fresh {
                s.next = Some((f, now));
            }
        }
        CaStep::Promote => {
            if let Some((next, _)) = s.next.take() {
                if let Some(prev) = s.current.take() {
                    s.older.insert(0, prev.cert_pem);
                }
                s.current = Some(next);
            }
        }
        CaStep::Drop(gone) => s.older.retain(|p| !gone.contains(p)),
    }
    s
}

/// The trust bundle of the state: the signing CA, the next one, then older ones.
pub fn bundle(state: &CaState) -> String {
    let mut out = String::new();
    for pem in state
        .current
        .iter()
        .map(|c| c.cert_pem.as_str())
        .chain(state.next.iter().map(|(n, _)| n.cert_pem.as_str()))
        .chain(state.older.iter().map(String::as_str))
    {
        out.push_str(pem);
        if !pem.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Splits a PEM bundle into its certificates.
pub fn split_pems(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(i) = rest.find(END) {
        let block = rest[..i + END.len()].trim_start();
        if !block.is_empty() {
            out.push(format!("{block}\n"));
        }
        rest = &rest[i + END.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::certs::{generate_ca, CA_VALIDITY};

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
    }

    #[test]
    fn a_renewal_goes_trust_then_promote_then_drop() {
        let ca = generate_ca("demo", t0()).expect("ca");
        let mut s = CaState {
            current: Some(ca.clone()),
            ..Default::default()
        };
        let due = t0() + CA_VALIDITY * 2 / 3 + Duration::days(1);
        // (time, expected step kind)
        assert_eq!(step(&s, t0()), CaStep::Keep);
        let st = step(&s, due);
        assert!(
            matches!(st, CaStep::StartTransition(Renewal::Expiring { .. })),
            "{st:?}"
        );
        let next = generate_ca("demo", due).expect("next");
        s = apply(&s, &st, Some(next.clone()), due);
        // Trusted, not signing: the bundle holds both, the current CA still signs.
        assert_eq!(s.current.as_ref(), Some(&ca));
        assert_eq!(
            split_pems(&bundle(&s)),
            [ca.cert_pem.clone(), next.cert_pem.clone()]
        );
        for h in [0, 1, 23] {
            assert_eq!(step(&s, due + Duration::hours(h)), CaStep::Keep, "{h}h");
        }
        let later = due + TRUST_GRACE;
        assert_eq!(step(&s, later), CaStep::Promote);
        s = apply(&s, &CaStep::Promote, None, later);
        assert_eq!(s.current.as_ref(), Some(&next));
        assert!(s.next.is_none());
        assert_eq!(
            split_pems(&bundle(&s)),
            [next.cert_pem.clone(), ca.cert_pem.clone()]
        );
        // The previous CA stays trusted until it expires, then leaves the bundle.
        assert_eq!(step(&s, later + Duration::days(30)), CaStep::Keep);
        let gone = t0() + CA_VALIDITY + Duration::minutes(1);
        let st = step(&s, gone);
        assert_eq!(st, CaStep::Drop(vec![ca.cert_pem.clone()]));
        s = apply(&s, &st, None, gone);
        assert_eq!(
            split_pems(&bundle(&s)),
            std::slice::from_ref(&next.cert_pem)
        );
        assert_eq!(step(&s, gone), CaStep::Keep);
        // A CA found already expired is replaced at once.
        let old = CaState {
            current: Some(ca.clone()),
            ..Default::default()
        };
        assert!(matches!(
            step(&old, gone),
            CaStep::Generate(Renewal::Expiring { .. })
        ));
    }

    #[test]
    fn missing_or_broken_cas_are_generated_at_once() {
        assert_eq!(
            step(&CaState::default(), t0()),
            CaStep::Generate(Renewal::Missing)
        );
        let ca = generate_ca("demo", t0()).expect("ca");
        let broken = CaState {
            current: Some(CertKey {
                cert_pem: ca.cert_pem.clone(),
                key_pem: "nope".into(),
            }),
            ..Default::default()
        };
        assert!(matches!(
            step(&broken, t0()),
            CaStep::Generate(Renewal::Unreadable(_))
        ));
        let fresh = generate_ca("demo", t0()).expect("fresh");
        let s = apply(&broken, &step(&broken, t0()), Some(fresh.clone()), t0());
        assert_eq!(s.current, Some(fresh));
        // A broken next CA is replaced before it could be promoted.
        let s = CaState {
            current: Some(ca.clone()),
            next: Some((
                CertKey {
                    cert_pem: "garbage".into(),
                    key_pem: "x".into(),
                },
                t0(),
            )),
            ..Default::default()
        };
        assert!(matches!(
            step(&s, t0() + TRUST_GRACE * 2),
            CaStep::StartTransition(_)
        ));
        // Unreadable leftovers in the bundle go.
        let s = CaState {
            current: Some(ca),
            older: vec!["garbage".into()],
            next: None,
        };
        assert_eq!(step(&s, t0()), CaStep::Drop(vec!["garbage".into()]));
    }

    #[test]
    fn bundles_split_back_into_their_certificates() {
        let a = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n";
        let b = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----";
        assert_eq!(
            split_pems(&format!("{a}{b}\n")),
            [a.to_string(), format!("{b}\n")]
        );
        assert!(split_pems("").is_empty());
    }
}
