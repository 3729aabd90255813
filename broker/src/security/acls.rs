//! ACL bindings: an in-memory set every authorization reads, kept in step with where they are
//! stored. Cluster mode keeps them where Kafka's ZooKeeper mode does:
//!
//! - LITERAL patterns in `/kafka-acl/<ResourceType>/<name>`, PREFIXED ones in
//!   `/kafka-acl-extended/prefixed/<ResourceType>/<name>`, each znode holding
//!   `{"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow","operation":"Read","host":"*"}]}`;
//! - each change announced by a sequential `acl_changes_` znode, in `/kafka-acl-changes` for
//!   LITERAL patterns (data `Topic:orders`) and in `/kafka-acl-extended-changes` for PREFIXED
//!   ones (data `{"version":1,"resourceType":"Topic","name":"team-","patternType":"PREFIXED"}`).
//!
//! Every broker watches both change directories and re-reads the ACLs when one grows.
//! Standalone mode keeps the same bindings in a file of its data directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use zookeeper_client as zk;

use super::authorizer::{
    AccessControlEntry, AclBinding, AclFilter, Operation, PatternType, Permission, ResourcePattern,
    ResourceType,
};

pub const LITERAL_ROOT: &str = "/kafka-acl";
pub const PREFIXED_ROOT: &str = "/kafka-acl-extended/prefixed";
pub const LITERAL_CHANGES: &str = "/kafka-acl-changes";
pub const EXTENDED_CHANGES: &str = "/kafka-acl-extended-changes";
pub const CHANGE_PREFIX: &str = "acl_changes_";
/// Standalone mode's file, in the data directory.
pub const LOCAL_FILE: &str = "acls.json";

#[derive(Debug, thiserror::Error)]
pub enum AclStoreError {
    #[error("ACL storage failed: {0}")]
    Storage(String),
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
}

enum Backend {
    Memory,
    Local(PathBuf),
    Zk(watch::Receiver<Option<zk::Client>>),
}

/// Where the ACLs of one resource pattern live, and how its change is announced.
pub fn znode_path(p: &ResourcePattern) -> String {
    let root = match p.pattern_type {
        PatternType::Literal => LITERAL_ROOT,
        PatternType::Prefixed => PREFIXED_ROOT,
    };
    format!("{root}/{}/{}", p.resource_type.zk_name(), p.name)
}

/// The body of a change notification for `p` (Kafka's two formats).
pub fn change_notification(p: &ResourcePattern) -> (&'static str, String) {
    match p.pattern_type {
        PatternType::Literal => (
            LITERAL_CHANGES,
            format!("{}:{}", p.resource_type.zk_name(), p.name),
        ),
        PatternType::Prefixed => (
            EXTENDED_CHANGES,
            serde_json::json!({
                "version": 1,
                "resourceType": p.resource_type.zk_name(),
                "name": p.name,
                "patternType": "PREFIXED",
            })
            .to_string(),
        ),
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AclJson {
    principal: String,
    #[serde(rename = "permissionType")]
    permission_type: String,
    operation: String,
    host: String,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
struct AclZnode {
    version: i32,
    acls: Vec<AclJson>,
}

fn entry_json(e: &AccessControlEntry) -> AclJson {
    AclJson {
        principal: e.principal.clone(),
        permission_type: match e.permission {
            Permission::Allow => "Allow",
            Permission::Deny => "Deny",
        }
        .into(),
        operation: e.operation.zk_name().into(),
        host: e.host.clone(),
    }
}

fn entry_from_json(j: &AclJson) -> Option<AccessControlEntry> {
    Some(AccessControlEntry {
        principal: j.principal.clone(),
        host: j.host.clone(),
        operation: Operation::from_zk_name(&j.operation)?,
        permission: match j.permission_type.as_str() {
            "Allow" => Permission::Allow,
            "Deny" => Permission::Deny,
            _ => return None,
        },
    })
}

/// Encodes the ACL entries of one resource as Kafka's znode JSON.
pub fn encode_entries(entries: &BTreeSet<AccessControlEntry>) -> Vec<u8> {
    let z = AclZnode {
        version: 1,
        acls: entries.iter().map(entry_json).collect(),
    };
    serde_json::to_vec(&z).unwrap_or_default()
}

/// Decodes a resource's znode; entries this broker does not understand are skipped (logged).
pub fn decode_entries(data: &[u8]) -> Result<BTreeSet<AccessControlEntry>, String> {
    let z: AclZnode = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    Ok(z.acls
        .iter()
        .filter_map(|j| {
            let e = entry_from_json(j);
            if e.is_none() {
                tracing::warn!(operation = %j.operation, permission = %j.permission_type, "ignoring an unreadable ACL entry");
            }
            e
        })
        .collect())
}

type Acls = BTreeMap<ResourcePattern, BTreeSet<AccessControlEntry>>;

pub struct AclStore {
    acls: RwLock<Arc<Vec<AclBinding>>>,
    backend: Backend,
    /// Bumped on every reload, so tests can see a change arrive.
    version: watch::Sender<u64>,
    /// Serialises this broker's own writes (the coordinator's versions order brokers).
    writes: tokio::sync::Mutex<()>,
}

fn flatten(acls: &Acls) -> Vec<AclBinding> {
    acls.iter()
        .flat_map(|(p, es)| {
            es.iter().map(|e| AclBinding {
                pattern: p.clone(),
                entry: e.clone(),
            })
        })
        .collect()
}

fn group(bindings: &[AclBinding]) -> Acls {
    let mut out = Acls::new();
    for b in bindings {
        out.entry(b.pattern.clone())
            .or_default()
            .insert(b.entry.clone());
    }
    out
}

impl AclStore {
    pub fn in_memory() -> Self {
        Self::with(Backend::Memory, Vec::new())
    }

    fn with(backend: Backend, acls: Vec<AclBinding>) -> Self {
        Self {
            acls: RwLock::new(Arc::new(acls)),
            backend,
            version: watch::channel(0).0,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Standalone: loads `<data_dir>/acls.json` (absent: no ACLs).
    pub fn open_local(data_dir: &std::path::Path) -> Result<Self, AclStoreError> {
        let path = data_dir.join(LOCAL_FILE);
        let acls = match std::fs::read(&path) {
            Ok(bytes) => {
                let raw: BTreeMap<String, AclZnode> = serde_json::from_slice(&bytes)
                    .map_err(|e| AclStoreError::Storage(format!("{}: {e}", path.display())))?;
                let mut acls = Vec::new();
                for (key, z) in raw {
                    let Some(pattern) = pattern_from_key(&key) else {
                        return Err(AclStoreError::Storage(format!(
                            "{}: unreadable resource {key:?}",
                            path.display()
                        )));
                    };
                    for e in z.acls.iter().filter_map(entry_from_json) {
                        acls.push(AclBinding {
                            pattern: pattern.clone(),
                            entry: e,
                        });
                    }
                }
                acls
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(AclStoreError::Storage(format!("{}: {e}", path.display()))),
        };
        Ok(Self::with(Backend::Local(path), acls))
    }

    /// Cluster mode: writes go through the current coordinator session; [`watch_changes`]
    /// keeps the set current.
    pub fn zookeeper(sessions: watch::Receiver<Option<zk::Client>>) -> Self {
        Self::with(Backend::Zk(sessions), Vec::new())
    }

    /// The current bindings (a snapshot; cheap to take per request).
    pub fn snapshot(&self) -> Arc<Vec<AclBinding>> {
        self.acls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn replace(&self, acls: Vec<AclBinding>) {
        *self.acls.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(acls);
        self.version.send_modify(|v| *v += 1);
    }

    /// Adds bindings (already validated); adding one that exists is a no-op, as in Kafka.
    pub async fn create(&self, new: &[AclBinding]) -> Result<(), AclStoreError> {
        let _w = self.writes.lock().await;
        let by_pattern = group(new);
        self.apply(by_pattern, |cur, add| cur.extend(add.iter().cloned()))
            .await
    }

    /// Deletes every binding matching each filter; returns, per filter, what it deleted.
    pub async fn delete(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        let _w = self.writes.lock().await;
        let current = self.fresh().await?;
        let per_filter: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| current.iter().filter(|b| f.matches(b)).cloned().collect())
            .collect();
        let doomed = group(&per_filter.concat());
        self.apply(doomed, |cur, del| cur.retain(|e| !del.contains(e)))
            .await?;
        Ok(per_filter)
    }

    /// The bindings as the store holds them now (cluster mode: read from the coordinator,
    /// so a delete sees what another broker created a moment ago).
    async fn fresh(&self) -> Result<Vec<AclBinding>, AclStoreError> {
        match &self.backend {
            Backend::Zk(sessions) => {
                let client = session(sessions)?;
                zk_read_all(&client)
                    .await
                    .map_err(|e| zk_err("reading ACLs", e))
            }
            _ => Ok(self.snapshot().to_vec()),
        }
    }

    /// Changes the entries of each named pattern with `edit`, persists them, then updates the
    /// in-memory set.
    async fn apply(
        &self,
        changes: Acls,
        edit: impl Fn(&mut BTreeSet<AccessControlEntry>, &BTreeSet<AccessControlEntry>),
    ) -> Result<(), AclStoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Zk(sessions) => {
                let client = session(sessions)?;
                for (pattern, entries) in &changes {
                    zk_update(&client, pattern, |cur| edit(cur, entries)).await?;
                }
                let all = zk_read_all(&client)
                    .await
                    .map_err(|e| zk_err("reading ACLs", e))?;
                self.replace(all);
            }
            Backend::Memory | Backend::Local(_) => {
                let mut all = group(&self.snapshot());
                for (pattern, entries) in &changes {
                    let cur = all.entry(pattern.clone()).or_default();
                    edit(cur, entries);
                    if cur.is_empty() {
                        all.remove(pattern);
                    }
                }
                if let Backend::Local(path) = &self.backend {
                    let raw: BTreeMap<String, AclZnode> = all
                        .iter()
                        .map(|(p, es)| {
                            (
                                pattern_key(p),
                                AclZnode {
                                    version: 1,
                                    acls: es.iter().map(entry_json).collect(),
                                },
                            )
                        })
                        .collect();
                    let bytes = serde_json::to_vec_pretty(&raw)
                        .map_err(|e| AclStoreError::Storage(e.to_string()))?;
                    write_atomically(path, &bytes)
                        .map_err(|e| AclStoreError::Storage(format!("{}: {e}", path.display())))?;
                }
                self.replace(flatten(&all));
            }
        }
        Ok(())
    }
}

/// `LITERAL:Topic:orders` — the standalone file's key for a pattern.
fn pattern_key(p: &ResourcePattern) -> String {
    let t = match p.pattern_type {
        PatternType::Literal => "LITERAL",
        PatternType::Prefixed => "PREFIXED",
    };
    format!("{t}:{}:{}", p.resource_type.zk_name(), p.name)
}

fn pattern_from_key(k: &str) -> Option<ResourcePattern> {
    let mut it = k.splitn(3, ':');
    let pattern_type = match it.next()? {
        "LITERAL" => PatternType::Literal,
        "PREFIXED" => PatternType::Prefixed,
        _ => return None,
    };
    let resource_type = ResourceType::from_zk_name(it.next()?)?;
    Some(ResourcePattern {
        resource_type,
        name: it.next()?.to_string(),
        pattern_type,
    })
}

fn session(sessions: &watch::Receiver<Option<zk::Client>>) -> Result<zk::Client, AclStoreError> {
    sessions
        .borrow()
        .clone()
        .ok_or_else(|| AclStoreError::Unavailable("no coordinator session".into()))
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn zk_err(ctx: &str, e: zk::Error) -> AclStoreError {
    match e {
        zk::Error::ConnectionLoss | zk::Error::SessionExpired | zk::Error::ClientClosed => {
            AclStoreError::Unavailable(format!("{ctx}: {e}"))
        }
        e => AclStoreError::Storage(format!("{ctx}: {e}")),
    }
}

fn create_options(mode: zk::CreateMode) -> zk::CreateOptions<'static> {
    mode.with_acls(crate::cluster::zk_acl::sensitive_acls())
}

async fn ensure_dir(client: &zk::Client, path: &str) -> Result<(), AclStoreError> {
    match client
        .mkdir(path, &create_options(zk::CreateMode::Persistent))
        .await
    {
        Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(zk_err(&format!("creating {path}"), e)),
    }
}

/// Read-modify-write of one resource's znode (compare-and-set on its version), then the
/// change notification. An emptied resource's znode is deleted, as Kafka does.
async fn zk_update(
    client: &zk::Client,
    pattern: &ResourcePattern,
    edit: impl Fn(&mut BTreeSet<AccessControlEntry>),
) -> Result<(), AclStoreError> {
    let path = znode_path(pattern);
    for _ in 0..20 {
        let (mut entries, version) = match client.get_data(&path).await {
            Ok((data, stat)) => (
                decode_entries(&data)
                    .map_err(|e| AclStoreError::Storage(format!("{path}: {e}")))?,
                Some(stat.version),
            ),
            Err(zk::Error::NoNode) => (BTreeSet::new(), None),
            Err(e) => return Err(zk_err("reading an ACL znode", e)),
        };
        let before = entries.clone();
        edit(&mut entries);
        if entries == before {
            return Ok(());
        }
        let written = match (version, entries.is_empty()) {
            (Some(v), true) => client.delete(&path, Some(v)).await,
            (Some(v), false) => client
                .set_data(&path, &encode_entries(&entries), Some(v))
                .await
                .map(|_| ()),
            (None, _) => {
                let parent = &path[..path.rfind('/').unwrap_or(0)];
                ensure_dir(client, parent).await?;
                client
                    .create(
                        &path,
                        &encode_entries(&entries),
                        &create_options(zk::CreateMode::Persistent),
                    )
                    .await
                    .map(|_| ())
            }
        };
        match written {
            Ok(()) => return notify(client, pattern).await,
            Err(zk::Error::BadVersion) | Err(zk::Error::NodeExists) | Err(zk::Error::NoNode) => {
                continue
            }
            Err(e) => return Err(zk_err("writing an ACL znode", e)),
        }
    }
    Err(AclStoreError::Unavailable(
        "writing an ACL znode: too much contention".into(),
    ))
}

async fn notify(client: &zk::Client, pattern: &ResourcePattern) -> Result<(), AclStoreError> {
    let (dir, body) = change_notification(pattern);
    ensure_dir(client, dir).await?;
    client
        .create(
            &format!("{dir}/{CHANGE_PREFIX}"),
            body.as_bytes(),
            &create_options(zk::CreateMode::PersistentSequential),
        )
        .await
        .map_err(|e| zk_err("writing an ACL change notification", e))?;
    Ok(())
}

async fn list_or_empty(client: &zk::Client, path: &str) -> Result<Vec<String>, zk::Error> {
    match client.list_children(path).await {
        Ok(n) => Ok(n),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Every binding under both roots.
async fn zk_read_all(client: &zk::Client) -> Result<Vec<AclBinding>, zk::Error> {
    let mut out = Vec::new();
    for (root, pattern_type) in [
        (LITERAL_ROOT, PatternType::Literal),
        (PREFIXED_ROOT, PatternType::Prefixed),
    ] {
        for rt_name in list_or_empty(client, root).await? {
            let Some(resource_type) = ResourceType::from_zk_name(&rt_name) else {
                continue; // e.g. `/kafka-acl-extended/prefixed` under no type, or other types
            };
            let dir = format!("{root}/{rt_name}");
            for name in list_or_empty(client, &dir).await? {
                let data = match client.get_data(&format!("{dir}/{name}")).await {
                    Ok((data, _)) => data,
                    Err(zk::Error::NoNode) => continue,
                    Err(e) => return Err(e),
                };
                let entries = match decode_entries(&data) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(resource = %format!("{dir}/{name}"), error = %e, "ignoring an unreadable ACL znode");
                        continue;
                    }
                };
                let pattern = ResourcePattern {
                    resource_type,
                    name: name.clone(),
                    pattern_type,
                };
                out.extend(entries.into_iter().map(|entry| AclBinding {
                    pattern: pattern.clone(),
                    entry,
                }));
            }
        }
    }
    Ok(out)
}

/// Runs for one coordinator session: reads every ACL, then again after each change
/// notification in either change directory, until `stop` fires or the session fails.
pub async fn watch_changes(store: Arc<AclStore>, client: zk::Client, stop: watch::Receiver<bool>) {
    super::zk_sync::reload_on_change(
        &client,
        "ACLs",
        &[LITERAL_CHANGES, EXTENDED_CHANGES],
        &create_options(zk::CreateMode::Persistent),
        zk_read_all,
        |acls| store.replace(acls),
        stop,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(pt: PatternType, name: &str, who: &str, op: Operation) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::Topic,
                name: name.into(),
                pattern_type: pt,
            },
            entry: AccessControlEntry {
                principal: who.into(),
                host: "*".into(),
                operation: op,
                permission: Permission::Allow,
            },
        }
    }

    #[test]
    fn znode_layout_and_json_are_kafkas() {
        let lit = binding(
            PatternType::Literal,
            "orders",
            "User:alice",
            Operation::Read,
        );
        let pre = binding(PatternType::Prefixed, "team-", "User:bob", Operation::Write);
        assert_eq!(znode_path(&lit.pattern), "/kafka-acl/Topic/orders");
        assert_eq!(
            znode_path(&pre.pattern),
            "/kafka-acl-extended/prefixed/Topic/team-"
        );
        assert_eq!(
            change_notification(&lit.pattern),
            (LITERAL_CHANGES, "Topic:orders".to_string())
        );
        let (dir, body) = change_notification(&pre.pattern);
        assert_eq!(dir, EXTENDED_CHANGES);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["patternType"], "PREFIXED");
        assert_eq!(v["resourceType"], "Topic");
        let data = encode_entries(&[lit.entry.clone()].into());
        assert_eq!(
            String::from_utf8(data.clone()).unwrap(),
            r#"{"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow","operation":"Read","host":"*"}]}"#
        );
        assert_eq!(decode_entries(&data).unwrap(), [lit.entry].into());
        assert!(decode_entries(b"not json").is_err());
    }

    #[tokio::test]
    async fn local_store_creates_deletes_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let s = AclStore::open_local(dir.path()).unwrap();
        let a = binding(
            PatternType::Literal,
            "orders",
            "User:alice",
            Operation::Read,
        );
        let b = binding(PatternType::Prefixed, "team-", "User:bob", Operation::Write);
        s.create(&[a.clone(), b.clone(), a.clone()]).await.unwrap();
        assert_eq!(s.snapshot().len(), 2);
        let again = AclStore::open_local(dir.path()).unwrap();
        assert_eq!(again.snapshot().len(), 2);
        let deleted = again
            .delete(&[AclFilter {
                principal: Some("User:alice".into()),
                ..Default::default()
            }])
            .await
            .unwrap();
        assert_eq!(deleted, vec![vec![a]]);
        let third = AclStore::open_local(dir.path()).unwrap();
        assert_eq!(*third.snapshot(), vec![b]);
    }
}
