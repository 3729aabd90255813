//! Who a connection is: Kafka's `KafkaPrincipal`, `User:<name>`. PLAINTEXT and SSL without a
//! client certificate are `User:ANONYMOUS`; SASL gives the user name; mutual TLS gives the
//! certificate subject in RFC 2253 form, as Java's `X500Principal.getName()` prints it
//! (`User:CN=alice,OU=eng,O=Example`).

use std::fmt;

use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

impl KafkaPrincipal {
    pub fn user(name: String) -> Self {
        Self {
            principal_type: "User".into(),
            name,
        }
    }
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS".into())
    }
    /// `Type:name`, split at the first ':' as Kafka's `SecurityUtils.parseKafkaPrincipal`.
    pub fn parse(s: &str) -> Option<Self> {
        let (t, n) = s.split_once(':')?;
        if t.is_empty() || n.is_empty() {
            return None;
        }
        Some(Self {
            principal_type: t.to_string(),
            name: n.to_string(),
        })
    }
    /// Whether `s` (`Type:name`, as in ACLs and `super.users`) names this principal; compares
    /// without building the string, since the authorizer asks on every produce and fetch.
    pub fn is(&self, s: &str) -> bool {
        s.split_once(':')
            .is_some_and(|(t, n)| t == self.principal_type && n == self.name)
    }
    /// The principal of a client certificate (DER), `None` when it cannot be parsed.
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(Self::user(rfc2253(cert.subject())))
    }
}

impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// RFC 2253: RDNs last-to-first, `,` between them, `+` inside a multi-valued RDN, keywords for
/// the well-known attributes and dotted OIDs for the rest.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::oid_registry as oids;
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type();
                    let key = if *oid == oids::OID_X509_COMMON_NAME {
                        "CN".to_string()
                    } else if *oid == oids::OID_X509_COUNTRY_NAME {
                        "C".into()
                    } else if *oid == oids::OID_X509_LOCALITY_NAME {
                        "L".into()
                    } else if *oid == oids::OID_X509_STATE_OR_PROVINCE_NAME {
                        "ST".into()
                    } else if *oid == oids::OID_X509_ORGANIZATION_NAME {
                        "O".into()
                    } else if *oid == oids::OID_X509_ORGANIZATIONAL_UNIT {
                        "OU".into()
                    } else if *oid == oids::OID_X509_STREET_ADDRESS {
                        "STREET".into()
                    } else if *oid == oids::OID_DOMAIN_COMPONENT {
                        "DC".into()
                    } else {
                        oid.to_id_string()
                    };
                    let value = atv.as_str().map(escape).unwrap_or_else(|_| {
                        // Non-string values are printed as #hex of their DER, as RFC 2253 says.
                        format!("#{}", hex(atv.attr_value().data))
                    });
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == v.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p = KafkaPrincipal::parse("User:CN=a,O=b").unwrap();
        assert_eq!(p.name, "CN=a,O=b");
        assert_eq!(p.to_string(), "User:CN=a,O=b");
        assert!(KafkaPrincipal::parse("alice").is_none());
        assert_eq!(KafkaPrincipal::anonymous().to_string(), "User:ANONYMOUS");
    }

    #[test]
    fn escapes_specials() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#1"), "\\#1");
    }
}
