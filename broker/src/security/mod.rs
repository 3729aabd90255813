//! Authentication of clients and brokers: named listeners with their security protocols
//! (`listeners`), TLS by rustls with reloaded certificates (`tls`), SASL PLAIN and SCRAM
//! (`sasl`, `scram`) against credentials kept where Kafka's ZooKeeper mode keeps them
//! (`credentials`), the per-connection state machine the server runs (`connection`), principals
//! (`principal`) and KIP-554's credential APIs (`scram_admin`).

pub mod authorizer;
pub mod connection;
pub mod credentials;
pub mod listeners;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod scram_admin;
pub mod tls;

use std::sync::{Arc, OnceLock};

use credentials::CredentialStore;

/// What the handlers need of security, set once at start-up (tests run without it).
#[derive(Default)]
pub struct BrokerSecurity {
    credentials: OnceLock<Arc<CredentialStore>>,
}

impl BrokerSecurity {
    pub fn set_credentials(&self, c: Arc<CredentialStore>) {
        let _ = self.credentials.set(c);
    }

    /// The credential store; a broker started without one gets an empty in-memory store.
    pub fn credentials(&self) -> Arc<CredentialStore> {
        self.credentials
            .get_or_init(|| Arc::new(CredentialStore::in_memory()))
            .clone()
    }
}

/// Parses `sasl.enabled.mechanisms`.
pub fn parse_mechanisms(s: &str) -> Result<Vec<sasl::Mechanism>, String> {
    let mut out = Vec::new();
    for m in s.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let mech = sasl::Mechanism::from_name(&m.to_ascii_uppercase()).ok_or_else(|| {
            format!("unsupported SASL mechanism {m:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
        })?;
        if !out.contains(&mech) {
            out.push(mech);
        }
    }
    Ok(out)
}
