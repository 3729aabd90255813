//! Authentication of clients and brokers: named listeners with their security protocols
//! (`listeners`), TLS by rustls with reloaded certificates (`tls`), SASL PLAIN and SCRAM
//! (`sasl`, `scram`) against credentials kept where Kafka's ZooKeeper mode keeps them
//! (`credentials`), the per-connection state machine the server runs (`connection`), principals
//! (`principal`) and KIP-554's credential APIs (`scram_admin`).

pub mod acl_admin;
pub mod acls;
pub mod authorizer;
pub mod connection;
pub mod credentials;
pub mod listeners;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod scram_admin;
pub mod tls;
pub mod zk_sync;

use std::sync::{Arc, OnceLock, RwLock};

use acls::AclStore;
use authorizer::{AuthorizerConfig, Operation, ResourceType};
use credentials::CredentialStore;
use principal::KafkaPrincipal;

/// What the handlers need of security, set once at start-up (tests run without it).
#[derive(Default)]
pub struct BrokerSecurity {
    credentials: OnceLock<Arc<CredentialStore>>,
    acls: OnceLock<Arc<AclStore>>,
    /// Set when an authorizer is on (`--authorizer simple`); without it everything is allowed.
    authorizer: OnceLock<AuthorizerConfig>,
    /// How this broker connects to the others' inter-broker listener (PLAINTEXT when unset);
    /// replaced when the CA bundle (or this broker's certificate) changes on disk, so new
    /// replica connections trust a renewed cluster CA without a restart.
    inter_broker: RwLock<Option<rivulet_admin_client::ClientSecurity>>,
}

/// Who asks, from where: what every authorization decision needs of a request.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub principal: &'a KafkaPrincipal,
    /// The client's IP address without Kafka's leading `/`.
    pub host: &'a str,
}

impl<'a> Caller<'a> {
    pub fn of(req: &'a crate::protocol::codec::Request) -> Self {
        Caller {
            principal: &req.principal,
            host: req.client_host.trim_start_matches('/'),
        }
    }
}

/// The cluster resource's only name.
pub const CLUSTER_NAME: &str = "kafka-cluster";

impl BrokerSecurity {
    /// Sets (or replaces) the TLS/SASL settings of connections to other brokers; connections
    /// already open keep theirs.
    pub fn set_inter_broker(&self, c: rivulet_admin_client::ClientSecurity) {
        *self.inter_broker.write().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    /// The TLS/SASL settings of connections to other brokers.
    pub fn inter_broker(&self) -> rivulet_admin_client::ClientSecurity {
        self.inter_broker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }

    pub fn set_acls(&self, a: Arc<AclStore>) {
        let _ = self.acls.set(a);
    }

    /// The ACL store; a broker started without one gets an empty in-memory store.
    pub fn acls(&self) -> Arc<AclStore> {
        self.acls
            .get_or_init(|| Arc::new(AclStore::in_memory()))
            .clone()
    }

    /// Turns the authorizer on.
    pub fn enable_authorizer(&self, cfg: AuthorizerConfig) {
        let _ = self.authorizer.set(cfg);
    }

    pub fn authorizer_enabled(&self) -> bool {
        self.authorizer.get().is_some()
    }

    /// May `caller` do `op` on the named resource? Always yes without an authorizer.
    pub fn allows(
        &self,
        caller: Caller<'_>,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let Some(cfg) = self.authorizer.get() else {
            return true;
        };
        let acls = self.acls().snapshot();
        let ok = authorizer::authorize(
            cfg,
            acls.iter(),
            caller.principal,
            caller.host,
            op,
            resource_type,
            name,
        );
        if !ok {
            tracing::debug!(principal = %caller.principal, host = caller.host, ?op, ?resource_type, resource = name, "denied");
        }
        ok
    }

    /// May `caller` do `op` on some resource of the type (Kafka's `authorizeByResourceType`)?
    pub fn allows_any(
        &self,
        caller: Caller<'_>,
        op: Operation,
        resource_type: ResourceType,
    ) -> bool {
        let Some(cfg) = self.authorizer.get() else {
            return true;
        };
        let acls = self.acls().snapshot();
        authorizer::authorize_any(
            cfg,
            acls.iter(),
            caller.principal,
            caller.host,
            op,
            resource_type,
        )
    }

    /// `allows` on the cluster resource.
    pub fn allows_cluster(&self, caller: Caller<'_>, op: Operation) -> bool {
        self.allows(caller, op, ResourceType::Cluster, CLUSTER_NAME)
    }

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
