//! The replicated state machine: the znode tree and the sessions.
//!
//! `DataTree::apply` takes one transaction (a write request stamped with zxid, time,
//! session and the caller's auth ids) and deterministically produces the new state,
//! the result for the caller and the watch events to fire. Validation happens inside
//! `apply` against the current state, so replaying the same log on any replica gives
//! the same tree and the same results. Watches themselves are per-connection and live
//! outside, in `watch::WatchManager`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::jute::{Reader, Result as JuteResult, Writer};
use crate::proto::{
    err, event, op, perm, read_acls, read_ids, write_acls, write_ids, Acl, Id, Stat, WriteOp,
    CONTAINER_OWNER, TTL_MAX, TTL_OWNER_MASK,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub zxid: i64,
    pub time_ms: i64,
    pub session_id: i64,
    pub auth: Vec<Id>,
    pub op: WriteOp,
}

impl Txn {
    pub fn write(&self, w: &mut Writer) {
        w.i64(self.zxid).i64(self.time_ms).i64(self.session_id);
        write_ids(w, &self.auth);
        w.i32(self.op.opcode());
        self.op.write(w);
    }

    pub fn read(r: &mut Reader) -> JuteResult<Txn> {
        let zxid = r.read_i64()?;
        let time_ms = r.read_i64()?;
        let session_id = r.read_i64()?;
        let auth = read_ids(r)?;
        let opcode = r.read_i32()?;
        let op = WriteOp::read(opcode, r)?;
        Ok(Txn {
            zxid,
            time_ms,
            session_id,
            auth,
            op,
        })
    }
}

/// The outcome of one operation. `err != 0` means it failed (and changed nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    pub opcode: i32,
    pub err: i32,
    pub path: String,
    pub stat: Option<Stat>,
    /// Per-op results of a multi.
    pub multi: Vec<OpResult>,
}

impl OpResult {
    fn error(opcode: i32, code: i32) -> OpResult {
        OpResult {
            opcode,
            err: code,
            path: String::new(),
            stat: None,
            multi: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: i32,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub stat: Stat,
    /// `None` is null data, as a client may create or set it: ZooKeeper returns it
    /// as null (not as empty bytes) and reports dataLength 0.
    pub data: Option<Arc<[u8]>>,
    pub acl: Arc<Vec<Acl>>,
    pub children: BTreeSet<String>,
}

impl Node {
    /// The stat as clients see it. Like ZooKeeper, `cversion` is stored as the
    /// number of child creations (which names sequential children) and reported as
    /// creations + deletions = 2 * creations - live children; container and TTL
    /// owners are internal and reported as 0.
    pub fn full_stat(&self) -> Stat {
        let mut s = self.stat;
        let kids = self.children.len() as i32;
        s.data_length = self.data.as_deref().map_or(0, |d| d.len() as i32);
        s.num_children = kids;
        s.cversion = s.cversion.wrapping_mul(2).wrapping_sub(kids);
        if s.ephemeral_owner == CONTAINER_OWNER
            || (s.ephemeral_owner & TTL_OWNER_MASK) == TTL_OWNER_MASK
        {
            s.ephemeral_owner = 0;
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub timeout_ms: i32,
    pub password: Vec<u8>,
    pub ephemerals: BTreeSet<String>,
}

/// What to undo if a later op of the same multi fails.
enum Undo {
    Meta {
        path: String,
        stat: Stat,
        data: Option<Arc<[u8]>>,
        acl: Arc<Vec<Acl>>,
    },
    Created(String),
    Deleted(String, Node),
}

pub struct DataTree {
    nodes: HashMap<String, Node>,
    sessions: BTreeMap<i64, Session>,
    /// Container and TTL nodes, for the cleanup scan.
    extended: BTreeSet<String>,
    pub last_zxid: i64,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn child_name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// ZooKeeper's PathUtils.validatePath.
pub fn validate_path(path: &str) -> bool {
    if path.is_empty() || !path.starts_with('/') {
        return false;
    }
    if path == "/" {
        return true;
    }
    if path.ends_with('/') {
        return false;
    }
    for comp in path[1..].split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return false;
        }
    }
    !path.chars().any(|c| {
        c == '\0'
            || ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{e000}'..='\u{f8ff}').contains(&c)
            || ('\u{fff0}'..='\u{ffff}').contains(&c)
    })
}

pub fn digest_id(user_password: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

fn ip_matches(client: &str, acl_id: &str) -> bool {
    let (net, bits) = match acl_id.split_once('/') {
        Some((n, b)) => match b.parse::<u32>() {
            Ok(b) if b <= 32 => (n, b),
            _ => return false,
        },
        None => (acl_id, 32),
    };
    match (
        client.parse::<std::net::Ipv4Addr>(),
        net.parse::<std::net::Ipv4Addr>(),
    ) {
        (Ok(c), Ok(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (u32::from(c) & mask) == (u32::from(n) & mask)
        }
        _ => client == acl_id,
    }
}

/// ZooKeeper's checkACL: does any id of the caller hold `wanted` on a node with `acl`?
pub fn acl_allows(acl: &[Acl], auth: &[Id], wanted: i32) -> bool {
    if acl.is_empty() || auth.iter().any(|a| a.scheme == "super") {
        return true;
    }
    acl.iter().any(|a| {
        (a.perms & wanted) != 0
            && ((a.id.scheme == "world" && a.id.id == "anyone")
                || auth.iter().any(|c| {
                    c.scheme == a.id.scheme
                        && match c.scheme.as_str() {
                            "digest" => c.id == a.id.id,
                            "ip" => ip_matches(&c.id, &a.id.id),
                            _ => false,
                        }
                }))
    })
}

/// ZooKeeper's fixupACL: validates schemes and expands `auth` to the caller's ids.
fn fixup_acl(acl: &[Acl], auth: &[Id]) -> Result<Vec<Acl>, i32> {
    if acl.is_empty() {
        return Err(err::INVALID_ACL);
    }
    let mut out: Vec<Acl> = Vec::new();
    let push = |a: Acl, out: &mut Vec<Acl>| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    for a in acl {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => push(a.clone(), &mut out),
            "auth" => {
                let mut any = false;
                for c in auth.iter().filter(|c| c.scheme == "digest") {
                    any = true;
                    push(
                        Acl {
                            perms: a.perms,
                            id: c.clone(),
                        },
                        &mut out,
                    );
                }
                if !any {
                    return Err(err::INVALID_ACL);
                }
            }
            "digest" if a.id.id.split(':').count() == 2 => push(a.clone(), &mut out),
            "ip" if !a.id.id.is_empty() => push(a.clone(), &mut out),
            _ => return Err(err::INVALID_ACL),
        }
    }
    Ok(out)
}

fn check_version(expected: i32, current: i32) -> Result<i32, i32> {
    if expected != -1 && expected != current {
        return Err(err::BAD_VERSION);
    }
    Ok(current.wrapping_add(1))
}

/// Decoded create flags.
struct CreateMode {
    ephemeral: bool,
    sequential: bool,
    container: bool,
    ttl: bool,
}

fn create_mode(flags: i32) -> Option<CreateMode> {
    let m = |e, s, c, t| CreateMode {
        ephemeral: e,
        sequential: s,
        container: c,
        ttl: t,
    };
    Some(match flags {
        0 => m(false, false, false, false),
        1 => m(true, false, false, false),
        2 => m(false, true, false, false),
        3 => m(true, true, false, false),
        4 => m(false, false, true, false),
        5 => m(false, false, false, true),
        6 => m(false, true, false, true),
        _ => return None,
    })
}

impl DataTree {
    pub fn new() -> DataTree {
        let mut t = DataTree {
            nodes: HashMap::new(),
            sessions: BTreeMap::new(),
            extended: BTreeSet::new(),
            last_zxid: 0,
        };
        // ZooKeeper creates its system nodes with empty (not null) data.
        let empty: Option<Arc<[u8]>> = Some(Arc::from(&b""[..]));
        let open = Arc::new(Acl::world_all());
        let mk = |acl: &Arc<Vec<Acl>>| Node {
            stat: Stat::default(),
            data: empty.clone(),
            acl: acl.clone(),
            children: BTreeSet::new(),
        };
        // The system nodes every ZooKeeper server has.
        let read_only = Arc::new(vec![Acl {
            perms: perm::READ,
            id: Id::new("world", "anyone"),
        }]);
        let mut root = mk(&open);
        root.children.insert("zookeeper".into());
        let mut zk = mk(&open);
        zk.children.insert("quota".into());
        zk.children.insert("config".into());
        t.nodes.insert("/".into(), root);
        t.nodes.insert("/zookeeper".into(), zk);
        t.nodes.insert("/zookeeper/quota".into(), mk(&open));
        let mut config = mk(&read_only);
        config.stat.aversion = -1;
        t.nodes.insert("/zookeeper/config".into(), config);
        t
    }

    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn sessions(&self) -> &BTreeMap<i64, Session> {
        &self.sessions
    }

    pub fn session(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn ephemeral_count(&self) -> usize {
        self.sessions.values().map(|s| s.ephemerals.len()).sum()
    }

    pub fn approximate_data_size(&self) -> usize {
        self.nodes
            .iter()
            .map(|(p, n)| p.len() + n.data.as_deref().map_or(0, <[u8]>::len))
            .sum()
    }

    /// Number of descendants of `path` (not counting itself).
    pub fn descendant_count(&self, path: &str) -> usize {
        let mut count = 0;
        let mut stack = vec![path.to_string()];
        while let Some(p) = stack.pop() {
            if let Some(n) = self.nodes.get(&p) {
                for c in &n.children {
                    count += 1;
                    stack.push(join(&p, c));
                }
            }
        }
        count
    }

    /// Containers and TTL nodes that the cleanup should delete now (ZooKeeper's
    /// ContainerManager rules: a container that once had children and has none now; a
    /// childless TTL node not modified for longer than its TTL).
    pub fn cleanup_candidates(&self, now_ms: i64) -> Vec<String> {
        self.extended
            .iter()
            .filter(|p| {
                self.nodes.get(*p).is_some_and(|n| {
                    if !n.children.is_empty() {
                        return false;
                    }
                    let owner = n.stat.ephemeral_owner;
                    if owner == CONTAINER_OWNER {
                        n.stat.cversion > 0
                    } else {
                        let ttl = owner & TTL_MAX;
                        now_ms - n.stat.mtime > ttl
                    }
                })
            })
            .cloned()
            .collect()
    }

    /// Applies one transaction. Never fails: errors are part of the result.
    pub fn apply(&mut self, txn: &Txn) -> (OpResult, Vec<WatchEvent>) {
        if txn.zxid > self.last_zxid {
            self.last_zxid = txn.zxid;
        }
        let mut events = Vec::new();
        let result = match &txn.op {
            WriteOp::CreateSession {
                timeout_ms,
                password,
            } => {
                self.sessions
                    .entry(txn.session_id)
                    .or_insert_with(|| Session {
                        timeout_ms: *timeout_ms,
                        password: password.clone(),
                        ephemerals: BTreeSet::new(),
                    });
                OpResult::error(op::CREATE_SESSION, err::OK)
            }
            WriteOp::CloseSession => {
                if let Some(s) = self.sessions.remove(&txn.session_id) {
                    for path in s.ephemerals {
                        let mut undo = Vec::new();
                        // Ephemerals have no children, so this cannot fail.
                        let _ = self.delete_node(&path, txn.zxid, &mut undo, &mut events);
                    }
                }
                OpResult::error(op::CLOSE_SESSION, err::OK)
            }
            WriteOp::Multi(ops) => self.apply_multi(txn, ops, &mut events),
            single => {
                let mut undo = Vec::new();
                match self.apply_op(txn, single, &mut undo, &mut events) {
                    Ok(r) => r,
                    Err(code) => {
                        self.rollback(undo);
                        events.clear();
                        OpResult::error(single.opcode(), code)
                    }
                }
            }
        };
        (result, events)
    }

    fn apply_multi(
        &mut self,
        txn: &Txn,
        ops: &[WriteOp],
        events: &mut Vec<WatchEvent>,
    ) -> OpResult {
        let mut undo = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        let mut failed_at = None;
        for (i, o) in ops.iter().enumerate() {
            match self.apply_op(txn, o, &mut undo, events) {
                Ok(r) => results.push(r),
                Err(code) => {
                    failed_at = Some((i, code));
                    break;
                }
            }
        }
        if let Some((i, code)) = failed_at {
            self.rollback(undo);
            events.clear();
            // ZooKeeper's per-op results: ops before the failure report OK inside an
            // error result, the failing op its code, the ones after RuntimeInconsistency.
            results = (0..ops.len())
                .map(|j| {
                    let c = match j.cmp(&i) {
                        std::cmp::Ordering::Less => err::OK,
                        std::cmp::Ordering::Equal => code,
                        std::cmp::Ordering::Greater => err::RUNTIME_INCONSISTENCY,
                    };
                    OpResult::error(op::ERROR, c)
                })
                .collect();
        }
        OpResult {
            opcode: op::MULTI,
            err: err::OK,
            path: String::new(),
            stat: None,
            multi: results,
        }
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Meta {
                    path,
                    stat,
                    data,
                    acl,
                } => {
                    if let Some(n) = self.nodes.get_mut(&path) {
                        n.stat = stat;
                        n.data = data;
                        n.acl = acl;
                    }
                }
                Undo::Created(path) => {
                    if let Some(n) = self.nodes.remove(&path) {
                        self.unindex(&path, n.stat.ephemeral_owner);
                    }
                    if let Some(p) = self.nodes.get_mut(parent_of(&path)) {
                        p.children.remove(child_name(&path));
                    }
                }
                Undo::Deleted(path, node) => {
                    let owner = node.stat.ephemeral_owner;
                    if let Some(p) = self.nodes.get_mut(parent_of(&path)) {
                        p.children.insert(child_name(&path).to_string());
                    }
                    self.nodes.insert(path.clone(), node);
                    self.index(&path, owner);
                }
            }
        }
    }

    fn index(&mut self, path: &str, owner: i64) {
        if owner == CONTAINER_OWNER || (owner & TTL_OWNER_MASK) == TTL_OWNER_MASK {
            self.extended.insert(path.to_string());
        } else if owner != 0 {
            if let Some(s) = self.sessions.get_mut(&owner) {
                s.ephemerals.insert(path.to_string());
            }
        }
    }

    fn unindex(&mut self, path: &str, owner: i64) {
        if owner == CONTAINER_OWNER || (owner & TTL_OWNER_MASK) == TTL_OWNER_MASK {
            self.extended.remove(path);
        } else if owner != 0 {
            if let Some(s) = self.sessions.get_mut(&owner) {
                s.ephemerals.remove(path);
            }
        }
    }

    fn save_meta(&self, path: &str, undo: &mut Vec<Undo>) {
        if let Some(n) = self.nodes.get(path) {
            undo.push(Undo::Meta {
                path: path.to_string(),
                stat: n.stat,
                data: n.data.clone(),
                acl: n.acl.clone(),
            });
        }
    }

    fn apply_op(
        &mut self,
        txn: &Txn,
        o: &WriteOp,
        undo: &mut Vec<Undo>,
        events: &mut Vec<WatchEvent>,
    ) -> Result<OpResult, i32> {
        let ok = |opcode, path: &str, stat| OpResult {
            opcode,
            err: err::OK,
            path: path.to_string(),
            stat,
            multi: Vec::new(),
        };
        match o {
            WriteOp::Create {
                opcode,
                path,
                data,
                acl,
                flags,
                ttl,
            } => {
                let mode = create_mode(*flags).ok_or(err::BAD_ARGUMENTS)?;
                if mode.ttl {
                    if *ttl <= 0 || *ttl > TTL_MAX {
                        return Err(err::BAD_ARGUMENTS);
                    }
                } else if *ttl >= 0 {
                    return Err(err::BAD_ARGUMENTS);
                }
                // A sequential path may end in '/': the suffix completes it.
                let probe = if mode.sequential {
                    format!("{path}1")
                } else {
                    path.clone()
                };
                if !validate_path(&probe) || path == "/" {
                    return Err(err::BAD_ARGUMENTS);
                }
                let acl = fixup_acl(acl, &txn.auth)?;
                let parent_path = parent_of(&probe).to_string();
                let parent = self.nodes.get(&parent_path).ok_or(err::NO_NODE)?;
                if !acl_allows(&parent.acl, &txn.auth, perm::CREATE) {
                    return Err(err::NO_AUTH);
                }
                let final_path = if mode.sequential {
                    format!("{path}{:010}", parent.stat.cversion)
                } else {
                    path.clone()
                };
                if self.nodes.contains_key(&final_path) {
                    return Err(err::NODE_EXISTS);
                }
                let powner = parent.stat.ephemeral_owner;
                if powner != 0
                    && powner != CONTAINER_OWNER
                    && (powner & TTL_OWNER_MASK) != TTL_OWNER_MASK
                {
                    return Err(err::NO_CHILDREN_FOR_EPHEMERALS);
                }
                let owner = if mode.ephemeral {
                    if !self.sessions.contains_key(&txn.session_id) {
                        return Err(err::SESSION_EXPIRED);
                    }
                    txn.session_id
                } else if mode.container {
                    CONTAINER_OWNER
                } else if mode.ttl {
                    TTL_OWNER_MASK | ttl
                } else {
                    0
                };
                self.save_meta(&parent_path, undo);
                let zxid = txn.zxid;
                if let Some(p) = self.nodes.get_mut(&parent_path) {
                    p.stat.cversion = p.stat.cversion.wrapping_add(1);
                    p.stat.pzxid = zxid;
                    p.children.insert(child_name(&final_path).to_string());
                }
                let node = Node {
                    stat: Stat {
                        czxid: zxid,
                        mzxid: zxid,
                        ctime: txn.time_ms,
                        mtime: txn.time_ms,
                        version: 0,
                        cversion: 0,
                        aversion: 0,
                        ephemeral_owner: owner,
                        data_length: 0,
                        num_children: 0,
                        pzxid: zxid,
                    },
                    data: data.as_deref().map(Arc::from),
                    acl: Arc::new(acl),
                    children: BTreeSet::new(),
                };
                let stat = node.full_stat();
                self.nodes.insert(final_path.clone(), node);
                self.index(&final_path, owner);
                undo.push(Undo::Created(final_path.clone()));
                events.push(WatchEvent {
                    kind: event::NODE_CREATED,
                    path: final_path.clone(),
                });
                events.push(WatchEvent {
                    kind: event::NODE_CHILDREN_CHANGED,
                    path: parent_path,
                });
                Ok(ok(*opcode, &final_path, Some(stat)))
            }
            WriteOp::Delete { path, version } => {
                if !validate_path(path) || path == "/" {
                    return Err(err::BAD_ARGUMENTS);
                }
                let parent = self.nodes.get(parent_of(path)).ok_or(err::NO_NODE)?;
                if !acl_allows(&parent.acl, &txn.auth, perm::DELETE) {
                    return Err(err::NO_AUTH);
                }
                let node = self.nodes.get(path).ok_or(err::NO_NODE)?;
                check_version(*version, node.stat.version)?;
                if !node.children.is_empty() {
                    return Err(err::NOT_EMPTY);
                }
                self.delete_node(path, txn.zxid, undo, events)?;
                Ok(ok(op::DELETE, path, None))
            }
            WriteOp::DeleteContainer { path } => {
                let node = self.nodes.get(path).ok_or(err::NO_NODE)?;
                if !node.children.is_empty() {
                    return Err(err::NOT_EMPTY);
                }
                let owner = node.stat.ephemeral_owner;
                if owner != CONTAINER_OWNER && (owner & TTL_OWNER_MASK) != TTL_OWNER_MASK {
                    return Err(err::BAD_ARGUMENTS);
                }
                self.delete_node(path, txn.zxid, undo, events)?;
                Ok(ok(op::DELETE_CONTAINER, path, None))
            }
            WriteOp::SetData {
                path,
                data,
                version,
            } => {
                if !validate_path(path) {
                    return Err(err::BAD_ARGUMENTS);
                }
                let node = self.nodes.get(path).ok_or(err::NO_NODE)?;
                if !acl_allows(&node.acl, &txn.auth, perm::WRITE) {
                    return Err(err::NO_AUTH);
                }
                let new_version = check_version(*version, node.stat.version)?;
                self.save_meta(path, undo);
                let n = self.nodes.get_mut(path).ok_or(err::NO_NODE)?;
                n.stat.version = new_version;
                n.stat.mzxid = txn.zxid;
                n.stat.mtime = txn.time_ms;
                n.data = data.as_deref().map(Arc::from);
                let stat = n.full_stat();
                events.push(WatchEvent {
                    kind: event::NODE_DATA_CHANGED,
                    path: path.clone(),
                });
                Ok(ok(op::SET_DATA, path, Some(stat)))
            }
            WriteOp::SetAcl { path, acl, version } => {
                if !validate_path(path) {
                    return Err(err::BAD_ARGUMENTS);
                }
                let acl = fixup_acl(acl, &txn.auth)?;
                let node = self.nodes.get(path).ok_or(err::NO_NODE)?;
                if !acl_allows(&node.acl, &txn.auth, perm::ADMIN) {
                    return Err(err::NO_AUTH);
                }
                let new_version = check_version(*version, node.stat.aversion)?;
                self.save_meta(path, undo);
                let n = self.nodes.get_mut(path).ok_or(err::NO_NODE)?;
                n.stat.aversion = new_version;
                n.acl = Arc::new(acl);
                let stat = n.full_stat();
                Ok(ok(op::SET_ACL, path, Some(stat)))
            }
            WriteOp::Check { path, version } => {
                if !validate_path(path) {
                    return Err(err::BAD_ARGUMENTS);
                }
                let node = self.nodes.get(path).ok_or(err::NO_NODE)?;
                if !acl_allows(&node.acl, &txn.auth, perm::READ) {
                    return Err(err::NO_AUTH);
                }
                check_version(*version, node.stat.version)?;
                Ok(ok(op::CHECK, path, None))
            }
            WriteOp::Multi(_) | WriteOp::CreateSession { .. } | WriteOp::CloseSession => {
                Err(err::BAD_ARGUMENTS)
            }
        }
    }

    fn delete_node(
        &mut self,
        path: &str,
        zxid: i64,
        undo: &mut Vec<Undo>,
        events: &mut Vec<WatchEvent>,
    ) -> Result<(), i32> {
        let parent_path = parent_of(path).to_string();
        self.save_meta(&parent_path, undo);
        let node = self.nodes.remove(path).ok_or(err::NO_NODE)?;
        if let Some(p) = self.nodes.get_mut(&parent_path) {
            p.children.remove(child_name(path));
            if zxid > p.stat.pzxid {
                p.stat.pzxid = zxid;
            }
        }
        self.unindex(path, node.stat.ephemeral_owner);
        undo.push(Undo::Deleted(path.to_string(), node));
        events.push(WatchEvent {
            kind: event::NODE_DELETED,
            path: path.to_string(),
        });
        events.push(WatchEvent {
            kind: event::NODE_CHILDREN_CHANGED,
            path: parent_path,
        });
        Ok(())
    }

    /// Serialises the whole state (for snapshots).
    pub fn write_snapshot(&self, w: &mut Writer) {
        w.i64(self.last_zxid);
        w.i32(self.sessions.len() as i32);
        for (id, s) in &self.sessions {
            w.i64(*id).i32(s.timeout_ms).buffer(&s.password);
        }
        w.i32(self.nodes.len() as i32);
        // Sorted so that parents come before children on load.
        let mut paths: Vec<&String> = self.nodes.keys().collect();
        paths.sort();
        for p in paths {
            let n = &self.nodes[p];
            // Null data is written as length -1, which snapshots from before null
            // data was kept never contain: old snapshots read the same.
            w.string(p).opt_buffer(n.data.as_deref());
            write_acls(w, &n.acl);
            n.stat.write(w);
        }
    }

    pub fn read_snapshot(r: &mut Reader) -> JuteResult<DataTree> {
        let mut t = DataTree {
            nodes: HashMap::new(),
            sessions: BTreeMap::new(),
            extended: BTreeSet::new(),
            last_zxid: r.read_i64()?,
        };
        let ns = r.read_vec_len(16)?;
        for _ in 0..ns {
            let id = r.read_i64()?;
            let timeout_ms = r.read_i32()?;
            let password = r.read_buffer()?;
            t.sessions.insert(
                id,
                Session {
                    timeout_ms,
                    password,
                    ephemerals: BTreeSet::new(),
                },
            );
        }
        let nn = r.read_vec_len(16)?;
        for _ in 0..nn {
            let path = r.read_string()?;
            let data = r.read_opt_buffer()?;
            let acl = read_acls(r)?;
            let stat = Stat::read(r)?;
            if path != "/" {
                match t.nodes.get_mut(parent_of(&path)) {
                    Some(p) => {
                        p.children.insert(child_name(&path).to_string());
                    }
                    None => {
                        return Err(crate::jute::JuteError::Invalid(format!(
                            "snapshot node {path} has no parent"
                        )))
                    }
                }
            }
            t.nodes.insert(
                path.clone(),
                Node {
                    stat,
                    data: data.as_deref().map(Arc::from),
                    acl: Arc::new(acl),
                    children: BTreeSet::new(),
                },
            );
            t.index(&path, stat.ephemeral_owner);
        }
        Ok(t)
    }
}

pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(zxid: i64, session: i64, op: WriteOp) -> Txn {
        Txn {
            zxid,
            time_ms: 1000 + zxid,
            session_id: session,
            auth: vec![],
            op,
        }
    }

    fn create(path: &str, flags: i32) -> WriteOp {
        WriteOp::Create {
            opcode: op::CREATE2,
            path: path.into(),
            data: Some(b"d".to_vec()),
            acl: Acl::world_all(),
            flags,
            ttl: -1,
        }
    }

    #[test]
    fn create_sequential_and_stats() {
        let mut t = DataTree::new();
        let (r, ev) = t.apply(&txn(1, 0, create("/a", 0)));
        assert_eq!(r.err, 0);
        assert_eq!(ev.len(), 2);
        let (r, _) = t.apply(&txn(2, 0, create("/a/s-", 2)));
        assert_eq!(r.path, "/a/s-0000000000");
        t.apply(&txn(
            3,
            0,
            WriteOp::Delete {
                path: "/a/s-0000000000".into(),
                version: -1,
            },
        ));
        let (r, _) = t.apply(&txn(4, 0, create("/a/s-", 2)));
        assert_eq!(r.path, "/a/s-0000000001");
        let a = t.node("/a").unwrap().full_stat();
        // Two creates and one delete: reported cversion 3.
        assert_eq!((a.cversion, a.pzxid, a.num_children), (3, 4, 1));
        let (r, _) = t.apply(&txn(5, 0, create("/a", 0)));
        assert_eq!(r.err, err::NODE_EXISTS);
        let (r, _) = t.apply(&txn(6, 0, create("/x/y", 0)));
        assert_eq!(r.err, err::NO_NODE);
    }

    #[test]
    fn multi_rolls_back() {
        let mut t = DataTree::new();
        let (r, ev) = t.apply(&txn(
            1,
            0,
            WriteOp::Multi(vec![
                create("/m", 0),
                create("/m/c", 0),
                WriteOp::Check {
                    path: "/m".into(),
                    version: 5,
                },
                create("/n", 0),
            ]),
        ));
        let codes: Vec<i32> = r.multi.iter().map(|m| m.err).collect();
        assert_eq!(
            codes,
            vec![0, 0, err::BAD_VERSION, err::RUNTIME_INCONSISTENCY]
        );
        assert!(ev.is_empty());
        assert!(t.node("/m").is_none());
        assert_eq!(t.node("/").unwrap().full_stat().num_children, 1);
    }

    #[test]
    fn session_close_deletes_ephemerals_and_snapshot_roundtrips() {
        let mut t = DataTree::new();
        t.apply(&txn(
            1,
            42,
            WriteOp::CreateSession {
                timeout_ms: 5000,
                password: vec![1; 16],
            },
        ));
        let (r, _) = t.apply(&txn(2, 42, create("/e", 1)));
        assert_eq!(r.err, 0);
        let (r, _) = t.apply(&txn(3, 42, create("/e/c", 0)));
        assert_eq!(r.err, err::NO_CHILDREN_FOR_EPHEMERALS);
        let mut w = Writer::new();
        t.write_snapshot(&mut w);
        let b = w.buf.freeze();
        let mut t2 = DataTree::read_snapshot(&mut Reader::new(&b)).unwrap();
        assert_eq!(t2.session(42).unwrap().ephemerals.len(), 1);
        let (_, ev) = t2.apply(&txn(4, 42, WriteOp::CloseSession));
        assert_eq!(ev[0].kind, event::NODE_DELETED);
        assert!(t2.node("/e").is_none());
    }

    fn create_with(path: &str, data: Option<&[u8]>) -> WriteOp {
        WriteOp::Create {
            opcode: op::CREATE2,
            path: path.into(),
            data: data.map(<[u8]>::to_vec),
            acl: Acl::world_all(),
            flags: 0,
            ttl: -1,
        }
    }

    fn set_to(path: &str, data: Option<&[u8]>, version: i32) -> WriteOp {
        WriteOp::SetData {
            path: path.into(),
            data: data.map(<[u8]>::to_vec),
            version,
        }
    }

    #[test]
    fn null_data_stays_null_and_differs_from_empty() {
        let mut t = DataTree::new();
        let (r, _) = t.apply(&txn(1, 0, create_with("/null", None)));
        assert_eq!(r.err, 0);
        assert_eq!(r.stat.unwrap().data_length, 0);
        t.apply(&txn(2, 0, create_with("/empty", Some(b""))));
        assert!(t.node("/null").unwrap().data.is_none());
        assert_eq!(t.node("/empty").unwrap().data.as_deref(), Some(&b""[..]));
        // set to bytes, then back to null: the stat's length follows.
        let (r, _) = t.apply(&txn(3, 0, set_to("/null", Some(b"abc"), 0)));
        assert_eq!(r.stat.unwrap().data_length, 3);
        let (r, _) = t.apply(&txn(4, 0, set_to("/null", None, 1)));
        let st = r.stat.unwrap();
        assert_eq!((st.data_length, st.version), (0, 2));
        assert!(t.node("/null").unwrap().data.is_none());
        // A failed multi rolls a null set back to the bytes that were there.
        t.apply(&txn(5, 0, set_to("/empty", Some(b"x"), -1)));
        let (r, _) = t.apply(&txn(
            6,
            0,
            WriteOp::Multi(vec![
                set_to("/empty", None, -1),
                WriteOp::Check {
                    path: "/empty".into(),
                    version: 99,
                },
            ]),
        ));
        assert_eq!(r.multi[1].err, err::BAD_VERSION);
        assert_eq!(t.node("/empty").unwrap().data.as_deref(), Some(&b"x"[..]));
        // The snapshot keeps null, empty and bytes apart.
        t.apply(&txn(7, 0, create_with("/empty2", Some(b""))));
        let mut w = Writer::new();
        t.write_snapshot(&mut w);
        let b = w.buf.freeze();
        let t2 = DataTree::read_snapshot(&mut Reader::new(&b)).unwrap();
        assert!(t2.node("/null").unwrap().data.is_none());
        assert_eq!(t2.node("/null").unwrap().full_stat().data_length, 0);
        assert_eq!(t2.node("/empty2").unwrap().data.as_deref(), Some(&b""[..]));
        assert_eq!(t2.node("/empty").unwrap().data.as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn acl_digest() {
        let id = digest_id("bob:secret");
        let acl = vec![Acl {
            perms: perm::READ,
            id: Id::new("digest", &id),
        }];
        assert!(acl_allows(&acl, &[Id::new("digest", &id)], perm::READ));
        assert!(!acl_allows(&acl, &[], perm::READ));
        assert!(!acl_allows(&acl, &[Id::new("digest", &id)], perm::WRITE));
        assert!(ip_matches("10.1.2.3", "10.0.0.0/8"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn arb_path() -> impl Strategy<Value = String> {
            prop::sample::select(vec!["/a", "/b", "/a/x", "/a/y", "/b/z", "/a/x/q", "/a/s-"])
                .prop_map(String::from)
        }

        fn arb_op() -> impl Strategy<Value = WriteOp> {
            let single = prop_oneof![
                (
                    arb_path(),
                    0i32..7,
                    prop::option::of(prop::collection::vec(any::<u8>(), 0..8))
                )
                    .prop_map(|(path, flags, data)| WriteOp::Create {
                        opcode: if flags >= 5 {
                            op::CREATE_TTL
                        } else {
                            op::CREATE2
                        },
                        path,
                        data,
                        acl: Acl::world_all(),
                        flags,
                        ttl: if flags >= 5 { 1000 } else { -1 },
                    }),
                (arb_path(), -1i32..2)
                    .prop_map(|(path, version)| WriteOp::Delete { path, version }),
                (
                    arb_path(),
                    -1i32..3,
                    prop::option::of(prop::collection::vec(any::<u8>(), 0..8))
                )
                    .prop_map(|(path, version, data)| WriteOp::SetData {
                        path,
                        data,
                        version
                    }),
                (arb_path(), -1i32..2).prop_map(|(path, version)| WriteOp::Check { path, version }),
                arb_path().prop_map(|path| WriteOp::DeleteContainer { path }),
            ];
            prop_oneof![
                4 => single.clone(),
                1 => prop::collection::vec(single, 0..4).prop_map(WriteOp::Multi),
                1 => Just(WriteOp::CloseSession),
                1 => Just(WriteOp::CreateSession { timeout_ms: 4000, password: vec![7; 16] }),
            ]
        }

        fn snapshot_bytes(t: &DataTree) -> Vec<u8> {
            let mut w = Writer::new();
            t.write_snapshot(&mut w);
            w.buf.to_vec()
        }

        proptest! {
            /// Replaying the same log gives the same state and results, also when
            /// started from a snapshot taken half-way (what a replica or a
            /// recovery does).
            #[test]
            fn apply_is_deterministic(ops in prop::collection::vec((arb_op(), 1i64..3), 1..40), cut in 0usize..40) {
                let txns: Vec<Txn> = ops.into_iter().enumerate().map(|(i, (op, sess))| Txn {
                    zxid: i as i64 + 1, time_ms: 1000 + i as i64, session_id: sess, auth: vec![], op,
                }).collect();
                let mut a = DataTree::new();
                let mut b = DataTree::new();
                let mut results = Vec::new();
                for (i, t) in txns.iter().enumerate() {
                    results.push(a.apply(t));
                    if i == cut.min(txns.len() - 1) {
                        let bytes = snapshot_bytes(&b);
                        b = DataTree::read_snapshot(&mut Reader::new(&bytes)).unwrap();
                    }
                    let rb = b.apply(t);
                    prop_assert_eq!(&results[i], &rb);
                }
                prop_assert_eq!(snapshot_bytes(&a), snapshot_bytes(&b));
                // Invariants: every child link points at a node, counts agree.
                for (p, n) in &a.nodes {
                    for c in &n.children {
                        prop_assert!(a.nodes.contains_key(&join(p, c)));
                    }
                    if p != "/" {
                        prop_assert!(a.nodes[parent_of(p)].children.contains(child_name(p)));
                    }
                }
                for (sid, s) in &a.sessions {
                    for e in &s.ephemerals {
                        prop_assert_eq!(a.nodes[e].stat.ephemeral_owner, *sid);
                    }
                }
            }
        }
    }
}
