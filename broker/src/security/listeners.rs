//! Named listeners, as Kafka configures them: `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map` and `inter.broker.listener.name`. Parsing and validation are
//! pure; the server binds one socket per [`Listener`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

/// How a listener secures its connections (Kafka's `SecurityProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecurityProtocol {
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A listener name with a host and port: one entry of `listeners` or `advertised.listeners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl ListenerEndpoint {
    /// Kafka's URL form, `NAME://host:port` (IPv6 hosts in brackets).
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.name, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.name, self.host, self.port)
        }
    }

    /// Parses `NAME://host:port`; an empty host means all interfaces (Kafka's default host).
    pub fn parse(s: &str) -> Result<Self, ListenerError> {
        let s = s.trim();
        let (name, rest) = s
            .split_once("://")
            .ok_or_else(|| ListenerError(format!("{s:?} is not NAME://host:port")))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ListenerError(format!(
                "{s:?}: listener name {name:?} must be letters, digits, '_' or '-'"
            )));
        }
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| ListenerError(format!("{s:?} has no port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| ListenerError(format!("{s:?}: port {port:?} is not a number 0-65535")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Self {
            name: name.to_ascii_uppercase(),
            host: host.to_string(),
            port: port as i32,
        })
    }
}

/// One listener to bind: where, under which name and protocol, and what clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised: ListenerEndpoint,
}

/// The validated listener set of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub all: Vec<Listener>,
    /// Name of the listener other brokers replicate through.
    pub inter_broker: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ListenerError(pub String);

/// Kafka's default `listener.security.protocol.map`: each protocol maps to itself.
pub fn default_protocol_map() -> BTreeMap<String, SecurityProtocol> {
    [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ]
    .into_iter()
    .map(|p| (p.name().to_string(), p))
    .collect()
}

/// Parses `NAME:PROTOCOL,...`. An explicit map replaces the default one, as in Kafka.
pub fn parse_protocol_map(s: &str) -> Result<BTreeMap<String, SecurityProtocol>, ListenerError> {
    let mut map = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, proto) = entry.split_once(':').ok_or_else(|| {
            ListenerError(format!(
                "listener security protocol map entry {entry:?} is not NAME:PROTOCOL"
            ))
        })?;
        let proto = SecurityProtocol::parse(proto).ok_or_else(|| {
            ListenerError(format!(
                "{entry:?}: unknown security protocol {proto:?} (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
            ))
        })?;
        if map
            .insert(name.trim().to_ascii_uppercase(), proto)
            .is_some()
        {
            return Err(ListenerError(format!(
                "listener {name:?} appears twice in the security protocol map"
            )));
        }
    }
    Ok(map)
}

fn parse_list(s: &str, what: &str) -> Result<Vec<ListenerEndpoint>, ListenerError> {
    let mut out: Vec<ListenerEndpoint> = Vec::new();
    for e in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let ep = ListenerEndpoint::parse(e).map_err(|e| ListenerError(format!("{what}: {e}")))?;
        if out.iter().any(|o| o.name == ep.name) {
            return Err(ListenerError(format!(
                "{what}: listener {} appears twice",
                ep.name
            )));
        }
        out.push(ep);
    }
    if out.is_empty() {
        return Err(ListenerError(format!("{what} is empty")));
    }
    Ok(out)
}

/// Kafka's rules: names unique and in the protocol map, bind ports unique, every advertised
/// listener is a bound one, the inter-broker listener exists (default: the one named
/// PLAINTEXT, or the only listener), advertised hosts are concrete (no 0.0.0.0).
pub fn resolve(
    listeners: &str,
    advertised: Option<&str>,
    protocol_map: Option<&str>,
    inter_broker: Option<&str>,
) -> Result<Listeners, ListenerError> {
    let map = match protocol_map {
        Some(m) if !m.trim().is_empty() => parse_protocol_map(m)?,
        _ => default_protocol_map(),
    };
    let bound = parse_list(listeners, "listeners")?;
    let advertised = match advertised {
        Some(a) if !a.trim().is_empty() => parse_list(a, "advertised listeners")?,
        _ => bound.clone(),
    };
    for a in &advertised {
        if !bound.iter().any(|b| b.name == a.name) {
            return Err(ListenerError(format!(
                "advertised listener {} is not among the listeners",
                a.name
            )));
        }
    }
    let mut all = Vec::new();
    for b in &bound {
        let protocol = *map.get(&b.name).ok_or_else(|| {
            ListenerError(format!(
                "listener {} has no security protocol: add {}:<PROTOCOL> to the listener security protocol map",
                b.name, b.name
            ))
        })?;
        if all
            .iter()
            .any(|l: &Listener| l.bind.port() as i32 == b.port && b.port != 0)
        {
            return Err(ListenerError(format!(
                "listeners: port {} is used by two listeners",
                b.port
            )));
        }
        let host = if b.host.is_empty() {
            "0.0.0.0"
        } else {
            &b.host
        };
        let bind = (host, b.port as u16)
            .to_socket_addrs()
            .map_err(|e| {
                ListenerError(format!("listener {}: cannot resolve {host:?}: {e}", b.name))
            })?
            .next()
            .ok_or_else(|| {
                ListenerError(format!("listener {}: {host:?} has no address", b.name))
            })?;
        let adv = advertised
            .iter()
            .find(|a| a.name == b.name)
            .cloned()
            .unwrap_or_else(|| b.clone());
        all.push(Listener {
            name: b.name.clone(),
            protocol,
            bind,
            advertised: adv,
        });
    }
    for l in &all {
        if l.advertised.host.is_empty()
            || l.advertised.host == "0.0.0.0"
            || l.advertised.host == "::"
        {
            return Err(ListenerError(format!(
                "listener {}: advertised host {:?} is not an address clients can reach; set the advertised listeners",
                l.name, l.advertised.host
            )));
        }
    }
    let inter_broker = match inter_broker {
        Some(n) if !n.trim().is_empty() => n.trim().to_ascii_uppercase(),
        _ if all.len() == 1 => all[0].name.clone(),
        _ => "PLAINTEXT".to_string(),
    };
    if !all.iter().any(|l| l.name == inter_broker) {
        return Err(ListenerError(format!(
            "inter-broker listener {inter_broker} is not among the listeners (set the inter-broker listener name)"
        )));
    }
    Ok(Listeners { all, inter_broker })
}

impl Listeners {
    pub fn inter_broker(&self) -> &Listener {
        // `resolve` checked that it exists.
        self.all
            .iter()
            .find(|l| l.name == self.inter_broker)
            .unwrap_or(&self.all[0])
    }
    pub fn endpoints(&self) -> Vec<ListenerEndpoint> {
        self.all.iter().map(|l| l.advertised.clone()).collect()
    }
    pub fn protocol_map(&self) -> BTreeMap<String, String> {
        self.all
            .iter()
            .map(|l| (l.name.clone(), l.protocol.name().to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_plaintext_listener_defaults() {
        let l = resolve("PLAINTEXT://127.0.0.1:9092", None, None, None).unwrap();
        assert_eq!(l.all.len(), 1);
        assert_eq!(l.all[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(l.inter_broker, "PLAINTEXT");
        assert_eq!(l.all[0].advertised.url(), "PLAINTEXT://127.0.0.1:9092");
    }

    #[test]
    fn named_listeners_with_a_map_and_advertised_hosts() {
        let l = resolve(
            "CLIENT://0.0.0.0:9093,REPLICATION://127.0.0.1:9094",
            Some("CLIENT://kafka-0.example:9093,REPLICATION://10.0.0.1:9094"),
            Some("CLIENT:SASL_SSL,REPLICATION:SSL"),
            Some("replication"),
        )
        .unwrap();
        assert_eq!(l.inter_broker, "REPLICATION");
        assert_eq!(l.all[0].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l.all[0].advertised.host, "kafka-0.example");
        assert_eq!(l.inter_broker().protocol, SecurityProtocol::Ssl);
        assert_eq!(
            l.protocol_map().get("CLIENT").map(String::as_str),
            Some("SASL_SSL")
        );
    }

    #[test]
    fn refusals() {
        let bad = [
            (
                "FOO://127.0.0.1:1",
                None,
                None,
                None,
                "no security protocol",
            ),
            (
                "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2",
                None,
                None,
                None,
                "twice",
            ),
            (
                "PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:1",
                None,
                None,
                None,
                "port 1",
            ),
            (
                "PLAINTEXT://127.0.0.1:1",
                Some("SSL://h:2"),
                None,
                None,
                "not among",
            ),
            ("PLAINTEXT://0.0.0.0:1", None, None, None, "advertised host"),
            (
                "SSL://127.0.0.1:1,SASL_SSL://127.0.0.1:2",
                None,
                None,
                None,
                "inter-broker",
            ),
            (
                "A://127.0.0.1:1",
                None,
                Some("A:TLS"),
                None,
                "unknown security protocol",
            ),
            ("127.0.0.1:1", None, None, None, "NAME://"),
            ("PLAINTEXT://127.0.0.1:x", None, None, None, "not a number"),
        ];
        for (ls, adv, map, ib, want) in bad {
            let e = resolve(ls, adv, map, ib).unwrap_err();
            assert!(e.0.contains(want), "{ls}: {e} should mention {want:?}");
        }
    }

    #[test]
    fn endpoint_urls_round_trip() {
        for s in [
            "PLAINTEXT://h:1",
            "SASL_SSL://[::1]:9093",
            "X_1://10.0.0.1:65535",
        ] {
            assert_eq!(ListenerEndpoint::parse(s).unwrap().url(), s);
        }
    }
}
