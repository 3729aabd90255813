//! Certificates: the cluster CA, broker certificates and user (client) certificates, generated
//! with rcgen (ECDSA P-256), and the pure checks that decide when one must be issued again:
//! past two thirds of its validity, names (SANs) not the wanted ones, or not signed by the
//! current CA.

use std::collections::BTreeSet;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Validity of the cluster CA.
pub const CA_VALIDITY: Duration = Duration::days(3 * 365);
/// Validity of broker and user certificates.
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// A certificate is renewed once this fraction of its validity has passed.
pub const RENEW_NUMERATOR: i32 = 2;
pub const RENEW_DENOMINATOR: i32 = 3;
/// Allowance for clocks: certificates start this long before "now".
const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("parsing a certificate: {0}")]
    Parse(String),
    #[error("randomness: {0}")]
    Random(String),
}

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKey {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// What the checks need from a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject_cn: Option<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names of the subjectAltName extension.
    pub dns_names: BTreeSet<String>,
}

/// Why a certificate must be issued again; None: it is fine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    Missing,
    Unreadable(String),
    Expiring {
        not_after: OffsetDateTime,
    },
    NamesChanged {
        missing: Vec<String>,
        extra: Vec<String>,
    },
    SubjectChanged,
    OtherCa,
}

impl std::fmt::Display for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Renewal::Missing => write!(f, "no certificate yet"),
            Renewal::Unreadable(e) => write!(f, "certificate unreadable: {e}"),
            Renewal::Expiring { not_after } => {
                write!(f, "past 2/3 of its validity (expires {not_after})")
            }
            Renewal::NamesChanged { missing, extra } => {
                write!(f, "names changed (missing {missing:?}, extra {extra:?})")
            }
            Renewal::SubjectChanged => write!(f, "subject changed"),
            Renewal::OtherCa => write!(f, "not signed by the current cluster CA"),
        }
    }
}

fn random_serial() -> Result<SerialNumber, Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Error::Random(e.to_string()))?;
    b[0] &= 0x7f; // positive
    Ok(SerialNumber::from_slice(&b))
}

fn ca_params(cluster: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "rivulet");
    dn.push(DnType::CommonName, format!("rivulet-cluster-ca {cluster}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// A new self-signed cluster CA, valid from `now` for [`CA_VALIDITY`].
pub fn generate_ca(cluster: &str, now: OffsetDateTime) -> Result<CertKey, Error> {
    let key = KeyPair::generate()?;
    let mut p = ca_params(cluster);
    p.not_before = now - BACKDATE;
    p.not_after = now + CA_VALIDITY;
    p.serial_number = Some(random_serial()?);
    let cert = p.self_signed(&key)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate signed by the cluster CA of `cluster`: a server certificate for
/// `dns_names` when `server`, else a client certificate; the subject is `CN=<cn>`.
pub fn issue(
    cluster: &str,
    ca: &CertKey,
    cn: &str,
    dns_names: &[String],
    server: bool,
    now: OffsetDateTime,
) -> Result<CertKey, Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::new(ca_params(cluster), ca_key);
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.subject_alt_names = dns_names
        .iter()
        .map(|n| {
            n.clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(Error::Generate)
        })
        .collect::<Result<_, _>>()?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = if server {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - BACKDATE;
    p.not_after = now + LEAF_VALIDITY;
    p.serial_number = Some(random_serial()?);
    let cert = p.signed_by(&key, &issuer)?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn der_of(pem_text: &str) -> Result<Vec<u8>, Error> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| Error::Parse(e.to_string()))?;
    if pem.label != "CERTIFICATE" {
        return Err(Error::Parse(format!("PEM block is {}", pem.label)));
    }
    Ok(pem.contents)
}

/// Reads the fields the checks need from a PEM certificate.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, Error> {
    let der = der_of(cert_pem)?;
    let (_, c) = X509Certificate::from_der(&der).map_err(|e| Error::Parse(e.to_string()))?;
    let subject_cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    let mut dns_names = BTreeSet::new();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.insert(d.to_string());
            }
        }
    }
    Ok(CertInfo {
        subject_cn,
        not_before: c.validity().not_before.to_datetime(),
        not_after: c.validity().not_after.to_datetime(),
        dns_names,
    })
}

/// Whether `cert_pem` carries a valid signature by the CA certificate `ca_pem`.
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(cd), Ok(ad)) = (der_of(cert_pem), der_of(ca_pem)) else {
        return false;
    };
    let (Ok((_, c)), Ok((_, a))) = (
        X509Certificate::from_der(&cd),
        X509Certificate::from_der(&ad),
    ) else {
        return false;
    };
    c.issuer() == a.subject() && c.verify_signature(Some(a.public_key())).is_ok()
}

/// The moment a certificate valid over [not_before, not_after] is due for renewal.
pub fn renew_at(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    not_before + (not_after - not_before) * RENEW_NUMERATOR / RENEW_DENOMINATOR
}

/// Pure decision for an issued certificate: why it must be issued again, or None.
pub fn leaf_renewal(
    info: &CertInfo,
    want_cn: &str,
    want_names: &BTreeSet<String>,
    now: OffsetDateTime,
) -> Option<Renewal> {
    if info.subject_cn.as_deref() != Some(want_cn) {
        return Some(Renewal::SubjectChanged);
    }
    if &info.dns_names != want_names {
        return Some(Renewal::NamesChanged {
            missing: want_names.difference(&info.dns_names).cloned().collect(),
            extra: info.dns_names.difference(want_names).cloned().collect(),
        });
    }
    if now >= renew_at(info.not_before, info.not_after) {
        return Some(Renewal::Expiring {
            not_after: info.not_after,
        });
    }
    None
}

/// The full check of a stored leaf certificate against the current CA.
pub fn check_leaf(
    cert_pem: Option<&str>,
    ca_pem: &str,
    want_cn: &str,
    want_names: &BTreeSet<String>,
    now: OffsetDateTime,
) -> Option<Renewal> {
    let Some(pem) = cert_pem else {
        return Some(Renewal::Missing);
    };
    let info = match inspect(pem) {
        Ok(i) => i,
        Err(e) => return Some(Renewal::Unreadable(e.to_string())),
    };
    if !signed_by(pem, ca_pem) {
        return Some(Renewal::OtherCa);
    }
    leaf_renewal(&info, want_cn, want_names, now)
}

/// Whether the CA must be generated again (missing, unreadable, or past 2/3 of its validity).
/// A new CA re-issues every certificate it signed.
pub fn check_ca(ca: Option<&CertKey>, now: OffsetDateTime) -> Option<Renewal> {
    let Some(ca) = ca else {
        return Some(Renewal::Missing);
    };
    if let Err(e) = KeyPair::from_pem(&ca.key_pem) {
        return Some(Renewal::Unreadable(e.to_string()));
    }
    match inspect(&ca.cert_pem) {
        Err(e) => Some(Renewal::Unreadable(e.to_string())),
        Ok(i) if now >= renew_at(i.not_before, i.not_after) => Some(Renewal::Expiring {
            not_after: i.not_after,
        }),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
    }

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn issued_certificate_checks_out_until_two_thirds_of_its_life() {
        let ca = generate_ca("demo", t0()).expect("ca");
        assert_eq!(check_ca(Some(&ca), t0()), None);
        let want = names(&["a.demo.svc", "b.demo.svc"]);
        let sans: Vec<String> = want.iter().cloned().collect();
        let leaf = issue("demo", &ca, "demo-broker", &sans, true, t0()).expect("leaf");
        assert!(signed_by(&leaf.cert_pem, &ca.cert_pem));
        let info = inspect(&leaf.cert_pem).expect("inspect");
        assert_eq!(info.dns_names, want);
        assert_eq!(info.subject_cn.as_deref(), Some("demo-broker"));
        let check = |now| {
            check_leaf(
                Some(&leaf.cert_pem),
                &ca.cert_pem,
                "demo-broker",
                &want,
                now,
            )
        };
        assert_eq!(check(t0()), None);
        assert_eq!(check(t0() + Duration::days(240)), None);
        assert!(matches!(
            check(t0() + Duration::days(245)),
            Some(Renewal::Expiring { .. })
        ));
        // The CA itself renews at 2/3 of three years.
        assert_eq!(check_ca(Some(&ca), t0() + Duration::days(720)), None);
        assert!(check_ca(Some(&ca), t0() + Duration::days(735)).is_some());
    }

    #[test]
    fn names_subject_and_ca_changes_are_detected() {
        let ca = generate_ca("demo", t0()).expect("ca");
        let other = generate_ca("demo", t0()).expect("other ca");
        let want = names(&["a", "b"]);
        let leaf = issue("demo", &ca, "u", &["a".into()], false, t0()).expect("leaf");
        assert_eq!(
            check_leaf(Some(&leaf.cert_pem), &ca.cert_pem, "u", &want, t0()),
            Some(Renewal::NamesChanged {
                missing: vec!["b".into()],
                extra: vec![]
            })
        );
        let want = names(&["a"]);
        assert_eq!(
            check_leaf(Some(&leaf.cert_pem), &ca.cert_pem, "v", &want, t0()),
            Some(Renewal::SubjectChanged)
        );
        assert_eq!(
            check_leaf(Some(&leaf.cert_pem), &other.cert_pem, "u", &want, t0()),
            Some(Renewal::OtherCa)
        );
        assert_eq!(
            check_leaf(None, &ca.cert_pem, "u", &want, t0()),
            Some(Renewal::Missing)
        );
        assert!(matches!(
            check_leaf(Some("garbage"), &ca.cert_pem, "u", &want, t0()),
            Some(Renewal::Unreadable(_))
        ));
        assert!(matches!(
            check_ca(
                Some(&CertKey {
                    cert_pem: ca.cert_pem.clone(),
                    key_pem: "nope".into()
                }),
                t0()
            ),
            Some(Renewal::Unreadable(_))
        ));
    }

    #[test]
    fn renewal_point_is_two_thirds() {
        let nb = t0();
        let na = t0() + Duration::days(300);
        assert_eq!(renew_at(nb, na), t0() + Duration::days(200));
    }

    #[test]
    fn debug_output_hides_the_key() {
        let ca = generate_ca("demo", t0()).expect("ca");
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
    }
}
