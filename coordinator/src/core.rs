//! The request processor: one thread owns the tree, the log, the sessions and the
//! watches, handles requests in arrival order and answers only after the batch's
//! transactions are fsynced (group commit). Within a batch, watch events are queued
//! before the reply that could reveal the change, and every connection's output
//! is queued in order.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::{mpsc::UnboundedSender, oneshot};
use tracing::{debug, error, info, warn};

use crate::jute::Writer;
use crate::metrics::Metrics;
use crate::proto::{
    err, op, perm, reply, watch_event, write_acls, xid, Acl, ConnectRequest, Id, ReadOp, Request,
    RequestFrame, SetWatches, WriteOp,
};
use crate::tree::{acl_allows, digest_id, DataTree, OpResult, Txn};
use crate::wal::{LogWriter, Wal};
use crate::watch::{ConnId, WatchManager};

pub const VERSION: &str = concat!("3.8.0-rivulet-", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub tick_ms: u64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub snapshot_every_txns: u64,
    pub container_check_interval_ms: u64,
    pub jute_max_buffer: usize,
    pub data_dir: PathBuf,
    pub client_addr: String,
    pub admin_addr: String,
}

pub enum Out {
    Frame(Bytes),
    Close,
}

pub enum CoreMsg {
    Connect {
        conn: ConnId,
        addr: SocketAddr,
        req: ConnectRequest,
        out: UnboundedSender<Out>,
    },
    Request {
        conn: ConnId,
        frame: RequestFrame,
        received: Instant,
    },
    /// A request with an unknown opcode: answered Unimplemented, then closed.
    Unknown {
        conn: ConnId,
        xid: i32,
    },
    Disconnected {
        conn: ConnId,
    },
    FourLetter {
        cmd: String,
        reply: oneshot::Sender<String>,
    },
    Shutdown,
}

struct Conn {
    out: UnboundedSender<Out>,
    addr: SocketAddr,
    session: i64,
    auth: Vec<Id>,
    received: u64,
    sent: u64,
    last_zxid: i64,
    established: Instant,
}

struct SessionRt {
    deadline: Instant,
    timeout_ms: i32,
    conn: Option<ConnId>,
}

#[derive(Default)]
struct Latency {
    count: u64,
    total_us: u128,
    min_us: u64,
    max_us: u64,
}

impl Latency {
    fn record(&mut self, d: Duration) {
        let us = d.as_micros() as u64;
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.count += 1;
        self.total_us += us as u128;
    }
    fn fmt(&self) -> (f64, f64, f64) {
        let avg = if self.count == 0 {
            0.0
        } else {
            self.total_us as f64 / self.count as f64 / 1000.0
        };
        (
            self.min_us as f64 / 1000.0,
            avg,
            self.max_us as f64 / 1000.0,
        )
    }
}

/// One group commit: log bytes to make durable, then the output they unlock.
struct Batch {
    log: Vec<u8>,
    txns: u64,
    outbox: Vec<(UnboundedSender<Out>, Out)>,
    started: Vec<Instant>,
    roll: Option<PathBuf>,
}

/// The commit stage: writes and fsyncs each batch's log bytes, then releases its
/// replies and watch events. Runs on its own thread so the request processor can
/// prepare the next batch during the fsync; batches are handled strictly in order,
/// so nothing (not even a read) is answered before the writes it could reveal are
/// durable.
fn committer(
    mut log: LogWriter,
    rx: Receiver<Batch>,
    metrics: Arc<Metrics>,
    latency: Arc<Mutex<Latency>>,
    inflight: Arc<AtomicUsize>,
) {
    for b in rx {
        if !b.log.is_empty() {
            let t = Instant::now();
            if let Err(e) = log.write(&b.log) {
                // Durability can no longer be promised: stop rather than answer.
                error!("transaction log write failed, exiting: {e}");
                std::process::exit(1);
            }
            metrics.fsync_latency.observe(t.elapsed().as_secs_f64());
            metrics.fsync_batch.observe(b.txns as f64);
        }
        if let Some(path) = b.roll {
            if let Err(e) = log.roll(path) {
                error!("cannot start a new transaction log, exiting: {e}");
                std::process::exit(1);
            }
        }
        for (tx, out) in b.outbox {
            let _ = tx.send(out);
        }
        record_latency(&latency, &metrics, &b.started);
        inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn record_latency(latency: &Mutex<Latency>, metrics: &Metrics, started: &[Instant]) {
    let now = Instant::now();
    if let Ok(mut l) = latency.lock() {
        for t in started {
            let d = now - *t;
            l.record(d);
            metrics.latency.observe(d.as_secs_f64());
        }
    }
}

pub struct Core {
    cfg: CoreConfig,
    tree: DataTree,
    wal: Wal,
    watches: WatchManager,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<i64, SessionRt>,
    /// Output held back until the batch's txns are durable.
    outbox: Vec<(ConnId, Out)>,
    /// Requests whose latency is measured when the outbox flushes.
    pending_latency: Vec<Instant>,
    next_session: i64,
    random: std::collections::hash_map::RandomState,
    random_ctr: u64,
    metrics: Arc<Metrics>,
    latency: Arc<Mutex<Latency>>,
    commit_tx: Option<Sender<Batch>>,
    commit_thread: Option<JoinHandle<()>>,
    /// Batches handed to the commit stage and not yet released.
    inflight: Arc<AtomicUsize>,
    received: u64,
    sent: u64,
    started: Instant,
    batch_txns: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn op_name(opcode: i32) -> &'static str {
    match opcode {
        op::CREATE => "create",
        op::CREATE2 => "create2",
        op::CREATE_CONTAINER => "createContainer",
        op::CREATE_TTL => "createTTL",
        op::DELETE => "delete",
        op::EXISTS => "exists",
        op::GET_DATA => "getData",
        op::SET_DATA => "setData",
        op::GET_ACL => "getACL",
        op::SET_ACL => "setACL",
        op::GET_CHILDREN => "getChildren",
        op::GET_CHILDREN2 => "getChildren2",
        op::SYNC => "sync",
        op::PING => "ping",
        op::CHECK => "check",
        op::MULTI => "multi",
        op::MULTI_READ => "multiRead",
        op::CLOSE_SESSION => "closeSession",
        op::AUTH => "auth",
        op::SET_WATCHES | op::SET_WATCHES2 => "setWatches",
        op::ADD_WATCH => "addWatch",
        op::REMOVE_WATCHES => "removeWatches",
        op::CHECK_WATCHES => "checkWatches",
        op::GET_EPHEMERALS => "getEphemerals",
        op::GET_ALL_CHILDREN_NUMBER => "getAllChildrenNumber",
        op::WHO_AM_I => "whoAmI",
        _ => "other",
    }
}

impl Core {
    pub fn new(
        cfg: CoreConfig,
        tree: DataTree,
        wal: Wal,
        log: LogWriter,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Core> {
        let now = Instant::now();
        let mut sessions = HashMap::new();
        let mut max_sid = 0;
        // Recovered sessions get a full timeout to reconnect, as ZooKeeper does.
        for (id, s) in tree.sessions() {
            max_sid = max_sid.max(*id);
            sessions.insert(
                *id,
                SessionRt {
                    deadline: now + Duration::from_millis(s.timeout_ms.max(0) as u64),
                    timeout_ms: s.timeout_ms,
                    conn: None,
                },
            );
        }
        // ZooKeeper's session-id layout (server id 0 in the top byte, time below).
        let base = (((now_ms() as u64) << 24) >> 8) as i64;
        let latency = Arc::new(Mutex::new(Latency::default()));
        // A short queue: if the disk falls behind, the request processor waits.
        let (commit_tx, commit_rx) = crossbeam_channel::bounded(4);
        let inflight = Arc::new(AtomicUsize::new(0));
        let (m, l, i) = (metrics.clone(), latency.clone(), inflight.clone());
        let commit_thread = std::thread::Builder::new()
            .name("zk-commit".into())
            .spawn(move || committer(log, commit_rx, m, l, i))?;
        Ok(Core {
            cfg,
            tree,
            wal,
            watches: WatchManager::default(),
            conns: HashMap::new(),
            sessions,
            outbox: Vec::new(),
            pending_latency: Vec::new(),
            next_session: base.max(max_sid + 1),
            random: std::collections::hash_map::RandomState::new(),
            random_ctr: 0,
            metrics,
            latency,
            commit_tx: Some(commit_tx),
            commit_thread: Some(commit_thread),
            inflight,
            received: 0,
            sent: 0,
            started: now,
            batch_txns: 0,
        })
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let mut h = self.random.build_hasher();
            h.write_u64(self.random_ctr);
            h.write_u128(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            self.random_ctr += 1;
            v.extend_from_slice(&h.finish().to_be_bytes());
        }
        v.truncate(n);
        v
    }

    /// Runs until Shutdown or a log failure (then durability cannot be promised).
    pub fn run(mut self, rx: Receiver<CoreMsg>) -> anyhow::Result<()> {
        let tick = Duration::from_millis(self.cfg.tick_ms.max(1));
        let container_every = Duration::from_millis(self.cfg.container_check_interval_ms.max(1));
        let mut next_tick = Instant::now() + tick;
        let mut next_container = Instant::now() + container_every;
        self.update_gauges();
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            let first = match rx.recv_timeout(timeout) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut shutdown = false;
            if let Some(m) = first {
                shutdown |= self.handle(m);
                // Group commit: take what has queued up, then one fsync for all.
                for _ in 0..2000 {
                    match rx.try_recv() {
                        Ok(m) => shutdown |= self.handle(m),
                        Err(_) => break,
                    }
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.expire_sessions(now);
                next_tick = now + tick;
            }
            if now >= next_container {
                self.clean_containers();
                next_container = now + container_every;
            }
            self.commit(None);
            if self.wal.txns_since_snapshot >= self.cfg.snapshot_every_txns {
                let next_log = self.wal.snapshot(&self.tree)?;
                self.commit(Some(next_log));
            }
            if shutdown {
                break;
            }
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in conns {
            self.close(c);
        }
        self.commit(None);
        // Wait until every batch is durable and its replies are handed over.
        drop(self.commit_tx.take());
        if let Some(t) = self.commit_thread.take() {
            let _ = t.join();
        }
        info!(zxid = self.tree.last_zxid, "request processor stopped");
        Ok(())
    }

    /// Hands the batch to the commit stage (see `committer`).
    fn commit(&mut self, roll: Option<PathBuf>) {
        let log = self.wal.take_pending();
        if log.is_empty() && self.outbox.is_empty() && roll.is_none() {
            return;
        }
        let mut outbox = Vec::with_capacity(self.outbox.len());
        for (conn, out) in self.outbox.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                if let Out::Frame(_) = out {
                    c.sent += 1;
                    self.sent += 1;
                }
                outbox.push((c.out.clone(), out));
            }
        }
        let started = std::mem::take(&mut self.pending_latency);
        if log.is_empty() && roll.is_none() && self.inflight.load(Ordering::Acquire) == 0 {
            // Reads only, and every earlier batch is already released: answering
            // now keeps the order and reveals nothing that is not durable.
            for (tx, out) in outbox {
                let _ = tx.send(out);
            }
            record_latency(&self.latency, &self.metrics, &started);
        } else if let Some(tx) = &self.commit_tx {
            self.inflight.fetch_add(1, Ordering::AcqRel);
            let batch = Batch {
                log,
                txns: std::mem::take(&mut self.batch_txns),
                outbox,
                started,
                roll,
            };
            if tx.send(batch).is_err() {
                self.inflight.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let m = &self.metrics;
        m.connections.set(self.conns.len() as i64);
        m.sessions.set(self.tree.sessions().len() as i64);
        m.znodes.set(self.tree.node_count() as i64);
        m.watches.set(self.watches.count() as i64);
        m.ephemerals.set(self.tree.ephemeral_count() as i64);
        m.last_zxid.set(self.tree.last_zxid);
    }

    fn send(&mut self, conn: ConnId, frame: Bytes) {
        self.outbox.push((conn, Out::Frame(frame)));
    }

    fn close(&mut self, conn: ConnId) {
        self.outbox.push((conn, Out::Close));
    }

    /// Stamps, applies and logs one transaction; fires its watch events.
    fn propose(&mut self, session: i64, auth: Vec<Id>, op: WriteOp) -> (i64, OpResult) {
        let txn = Txn {
            zxid: self.tree.last_zxid + 1,
            time_ms: now_ms(),
            session_id: session,
            auth,
            op,
        };
        let (result, events) = self.tree.apply(&txn);
        self.wal.append(&txn);
        self.batch_txns += 1;
        let mut notes = Vec::new();
        for ev in &events {
            self.watches.fire(ev, &mut notes);
        }
        for (conn, kind, path) in notes {
            self.send(conn, watch_event(kind, &path));
        }
        (txn.zxid, result)
    }

    /// Returns true on shutdown.
    fn handle(&mut self, msg: CoreMsg) -> bool {
        match msg {
            CoreMsg::Connect {
                conn,
                addr,
                req,
                out,
            } => self.connect(conn, addr, req, out),
            CoreMsg::Request {
                conn,
                frame,
                received,
            } => self.request(conn, frame, received),
            CoreMsg::Unknown { conn, xid } => {
                warn!(conn, xid, "unknown opcode; closing connection");
                let z = self.tree.last_zxid;
                self.send(conn, reply(xid, z, err::UNIMPLEMENTED, |_| {}));
                self.close(conn);
            }
            CoreMsg::Disconnected { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    debug!(
                        conn,
                        session = format!("0x{:x}", c.session),
                        "connection closed"
                    );
                    if let Some(s) = self.sessions.get_mut(&c.session) {
                        if s.conn == Some(conn) {
                            s.conn = None;
                        }
                    }
                }
                self.watches.drop_conn(conn);
            }
            CoreMsg::FourLetter { cmd, reply } => {
                let _ = reply.send(self.four_letter(&cmd));
            }
            CoreMsg::Shutdown => return true,
        }
        false
    }

    fn connect(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        req: ConnectRequest,
        out: UnboundedSender<Out>,
    ) {
        self.received += 1;
        self.conns.insert(
            conn,
            Conn {
                out,
                addr,
                session: 0,
                auth: vec![Id::new("ip", &addr.ip().to_string())],
                received: 1,
                sent: 0,
                last_zxid: 0,
                established: Instant::now(),
            },
        );
        if req.last_zxid_seen > self.tree.last_zxid {
            // The client has seen a newer state than ours (it talked to a server
            // with more history): ZooKeeper refuses and so do we.
            warn!(
                conn,
                client_zxid = format!("0x{:x}", req.last_zxid_seen),
                our_zxid = format!("0x{:x}", self.tree.last_zxid),
                "refusing session: client has seen a newer zxid"
            );
            self.close(conn);
            return;
        }
        let timeout = req.timeout_ms.clamp(
            self.cfg.min_session_timeout_ms,
            self.cfg.max_session_timeout_ms,
        );
        let (sid, password, valid) = if req.session_id == 0 {
            let sid = self.next_session;
            self.next_session += 1;
            let password = self.random_bytes(16);
            self.propose(
                sid,
                Vec::new(),
                WriteOp::CreateSession {
                    timeout_ms: timeout,
                    password: password.clone(),
                },
            );
            self.sessions.insert(
                sid,
                SessionRt {
                    deadline: Instant::now() + Duration::from_millis(timeout as u64),
                    timeout_ms: timeout,
                    conn: None,
                },
            );
            info!(conn, session = format!("0x{sid:x}"), timeout, %addr, "session created");
            (sid, password, true)
        } else {
            match self.tree.session(req.session_id) {
                Some(s) if s.password == req.password => {
                    info!(conn, session = format!("0x{:x}", req.session_id), %addr, "session re-established");
                    (req.session_id, s.password.clone(), true)
                }
                _ => {
                    info!(
                        conn,
                        session = format!("0x{:x}", req.session_id),
                        "session expired or bad password"
                    );
                    (0, vec![0; 16], false)
                }
            }
        };
        if valid {
            let old = self.sessions.get_mut(&sid).and_then(|s| {
                s.timeout_ms = timeout;
                s.deadline = Instant::now() + Duration::from_millis(timeout as u64);
                s.conn.replace(conn)
            });
            if let Some(old) = old {
                if old != conn {
                    // The session moved to this connection; the old one must go.
                    info!(
                        conn = old,
                        to_conn = conn,
                        session = format!("0x{sid:x}"),
                        "session moved to another connection; closing this one"
                    );
                    self.close(old);
                }
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = sid;
            }
        }
        let mut w = Writer::framed();
        w.i32(0)
            .i32(if valid { timeout } else { 0 })
            .i64(sid)
            .buffer(&password);
        if req.read_only.is_some() {
            // Never read-only: a standalone server always has the whole state.
            w.bool(false);
        }
        self.send(conn, w.finish_frame());
        if !valid {
            self.close(conn);
        }
    }

    fn request(&mut self, conn: ConnId, frame: RequestFrame, received: Instant) {
        self.received += 1;
        let (session, auth) = match self.conns.get_mut(&conn) {
            Some(c) => {
                c.received += 1;
                (c.session, c.auth.clone())
            }
            None => return,
        };
        if session == 0 {
            return;
        }
        let xid_ = frame.xid;
        let Some(rt) = self.sessions.get_mut(&session) else {
            let z = self.tree.last_zxid;
            self.send(conn, reply(xid_, z, err::SESSION_EXPIRED, |_| {}));
            self.close(conn);
            return;
        };
        rt.deadline = Instant::now() + Duration::from_millis(rt.timeout_ms.max(0) as u64);
        self.metrics
            .requests
            .get_or_create(&vec![("op".to_string(), op_name(frame.opcode).to_string())])
            .inc();
        self.pending_latency.push(received);
        let opcode = frame.opcode;
        let last = self.tree.last_zxid;
        let (zxid, code, body): (i64, i32, Option<Writer>) = match frame.request {
            Request::Ping => {
                self.send(conn, reply(xid::PING, last, 0, |_| {}));
                return;
            }
            Request::Write(WriteOp::CloseSession) => {
                let (z, _) = self.propose(session, auth, WriteOp::CloseSession);
                self.sessions.remove(&session);
                info!(
                    conn,
                    session = format!("0x{session:x}"),
                    "session closed by client"
                );
                self.send(conn, reply(xid_, z, 0, |_| {}));
                self.close(conn);
                return;
            }
            Request::Write(w) => {
                let (z, r) = self.propose(session, auth, w);
                let mut b = Writer::new();
                if r.err == 0 {
                    write_result(&mut b, opcode, &r);
                }
                (z, r.err, Some(b))
            }
            Request::Exists { path, watch } => match self.tree.node(&path) {
                Some(n) => {
                    if !acl_allows(&n.acl, &auth, perm::READ) {
                        (last, err::NO_AUTH, None)
                    } else {
                        let st = n.full_stat();
                        if watch {
                            self.watches.add_data(&path, conn);
                        }
                        let mut b = Writer::new();
                        st.write(&mut b);
                        (last, 0, Some(b))
                    }
                }
                None => {
                    if watch && crate::tree::validate_path(&path) {
                        self.watches.add_data(&path, conn);
                    }
                    (last, err::NO_NODE, None)
                }
            },
            Request::GetData { path, watch } => {
                let mut b = Writer::new();
                let code = self.get_data(conn, &auth, &path, watch, &mut b);
                (last, code, Some(b))
            }
            Request::GetChildren {
                path,
                watch,
                with_stat,
            } => {
                let mut b = Writer::new();
                let code = self.get_children(conn, &auth, &path, watch, with_stat, &mut b);
                (last, code, Some(b))
            }
            Request::GetAcl { path } => match self.tree.node(&path) {
                None => (last, err::NO_NODE, None),
                Some(n) if !acl_allows(&n.acl, &auth, perm::READ | perm::ADMIN) => {
                    (last, err::NO_AUTH, None)
                }
                Some(n) => {
                    let admin = acl_allows(&n.acl, &auth, perm::ADMIN);
                    let acl: Vec<Acl> = n
                        .acl
                        .iter()
                        .map(|a| {
                            let mut a = a.clone();
                            if !admin && a.id.scheme == "digest" {
                                let user = a.id.id.split(':').next().unwrap_or("").to_string();
                                a.id.id = format!("{user}:x");
                            }
                            a
                        })
                        .collect();
                    let mut b = Writer::new();
                    write_acls(&mut b, &acl);
                    n.full_stat().write(&mut b);
                    (last, 0, Some(b))
                }
            },
            Request::Sync { path } => {
                let mut b = Writer::new();
                b.string(&path);
                (last, 0, Some(b))
            }
            Request::MultiRead(ops) => {
                let mut b = Writer::new();
                for o in ops {
                    let mut sub = Writer::new();
                    let (t, code) = match o {
                        ReadOp::GetData { path, watch } => (
                            op::GET_DATA,
                            self.get_data(conn, &auth, &path, watch, &mut sub),
                        ),
                        ReadOp::GetChildren { path, watch } => (
                            op::GET_CHILDREN,
                            self.get_children(conn, &auth, &path, watch, false, &mut sub),
                        ),
                    };
                    if code == 0 {
                        b.i32(t).bool(false).i32(0);
                        b.buf.extend_from_slice(&sub.buf);
                    } else {
                        b.i32(op::ERROR).bool(false).i32(code).i32(code);
                    }
                }
                b.i32(-1).bool(true).i32(-1);
                (last, 0, Some(b))
            }
            Request::GetAllChildrenNumber { path } => match self.tree.node(&path) {
                None => (last, err::NO_NODE, None),
                Some(n) if !acl_allows(&n.acl, &auth, perm::READ) => (last, err::NO_AUTH, None),
                Some(_) => {
                    let mut b = Writer::new();
                    b.i32(self.tree.descendant_count(&path) as i32);
                    (last, 0, Some(b))
                }
            },
            Request::GetEphemerals { prefix } => {
                let prefix = prefix.trim().to_string();
                let list: Vec<&String> = self
                    .tree
                    .session(session)
                    .map(|s| {
                        s.ephemerals
                            .iter()
                            .filter(|p| {
                                prefix.is_empty() || prefix == "/" || p.starts_with(&prefix)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut b = Writer::new();
                b.string_vec(&list);
                (last, 0, Some(b))
            }
            Request::SetWatches(sw) => {
                self.set_watches(conn, sw);
                (last, 0, None)
            }
            Request::AddWatch { path, mode } => {
                if mode != 0 && mode != 1 {
                    (last, err::BAD_ARGUMENTS, None)
                } else {
                    self.watches.add_persistent(&path, conn, mode == 1);
                    let mut b = Writer::new();
                    b.i32(0);
                    (last, 0, Some(b))
                }
            }
            Request::RemoveWatches { path, kind, remove } => {
                if !(1..=3).contains(&kind) {
                    // ZooKeeper 3.8 knows only Children/Data/Any here.
                    (last, err::MARSHALLING_ERROR, None)
                } else if self.watches.remove(&path, conn, kind, remove) {
                    (last, 0, None)
                } else {
                    (last, err::NO_WATCHER, None)
                }
            }
            Request::Auth { scheme, auth: cred } => {
                if scheme == "digest" {
                    let s = String::from_utf8_lossy(&cred).to_string();
                    let id = Id::new("digest", &digest_id(&s));
                    if let Some(c) = self.conns.get_mut(&conn) {
                        if !c.auth.contains(&id) {
                            c.auth.push(id);
                        }
                    }
                    // ZooKeeper answers with the request's xid (the Java client sends -4, others their own).
                    self.send(conn, reply(xid_, 0, 0, |_| {}));
                } else {
                    warn!(conn, scheme, "auth with unsupported scheme; closing");
                    self.send(conn, reply(xid_, 0, err::AUTH_FAILED, |_| {}));
                    self.close(conn);
                }
                return;
            }
            Request::WhoAmI => {
                let mut b = Writer::new();
                b.i32(auth.len() as i32);
                for a in &auth {
                    let user = if a.scheme == "digest" {
                        a.id.split(':').next().unwrap_or("").to_string()
                    } else {
                        a.id.clone()
                    };
                    b.string(&a.scheme).string(&user);
                }
                (last, 0, Some(b))
            }
        };
        if code != 0 {
            self.metrics.request_errors.inc();
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_zxid = zxid;
        }
        let mut w = Writer::framed();
        w.i32(xid_).i64(zxid).i32(code);
        if code == 0 {
            if let Some(b) = body {
                w.buf.extend_from_slice(&b.buf);
            }
        }
        self.send(conn, w.finish_frame());
    }

    fn get_data(
        &mut self,
        conn: ConnId,
        auth: &[Id],
        path: &str,
        watch: bool,
        b: &mut Writer,
    ) -> i32 {
        match self.tree.node(path) {
            None => err::NO_NODE,
            Some(n) if !acl_allows(&n.acl, auth, perm::READ) => err::NO_AUTH,
            Some(n) => {
                b.opt_buffer(n.data.as_deref());
                n.full_stat().write(b);
                if watch {
                    self.watches.add_data(path, conn);
                }
                0
            }
        }
    }

    fn get_children(
        &mut self,
        conn: ConnId,
        auth: &[Id],
        path: &str,
        watch: bool,
        with_stat: bool,
        b: &mut Writer,
    ) -> i32 {
        match self.tree.node(path) {
            None => err::NO_NODE,
            Some(n) if !acl_allows(&n.acl, auth, perm::READ) => err::NO_AUTH,
            Some(n) => {
                let kids: Vec<&String> = n.children.iter().collect();
                b.string_vec(&kids);
                if with_stat {
                    n.full_stat().write(b);
                }
                if watch {
                    self.watches.add_child(path, conn);
                }
                0
            }
        }
    }

    /// ZooKeeper's DataTree.setWatches: re-arm watches after a reconnect, firing at
    /// once the ones whose change happened after `relative_zxid`.
    fn set_watches(&mut self, conn: ConnId, sw: SetWatches) {
        use crate::proto::event::*;
        let rel = sw.relative_zxid;
        let mut fire = Vec::new();
        for p in &sw.data {
            match self.tree.node(p) {
                None => fire.push((NODE_DELETED, p.clone())),
                Some(n) if n.stat.mzxid > rel => fire.push((NODE_DATA_CHANGED, p.clone())),
                Some(_) => self.watches.add_data(p, conn),
            }
        }
        for p in &sw.exist {
            match self.tree.node(p) {
                Some(_) => fire.push((NODE_CREATED, p.clone())),
                None => self.watches.add_data(p, conn),
            }
        }
        for p in &sw.child {
            match self.tree.node(p) {
                None => fire.push((NODE_DELETED, p.clone())),
                Some(n) if n.stat.pzxid > rel => fire.push((NODE_CHILDREN_CHANGED, p.clone())),
                Some(_) => self.watches.add_child(p, conn),
            }
        }
        for p in &sw.persistent {
            self.watches.add_persistent(p, conn, false);
        }
        for p in &sw.recursive {
            self.watches.add_persistent(p, conn, true);
        }
        for (kind, path) in fire {
            self.send(conn, watch_event(kind, &path));
        }
    }

    fn expire_sessions(&mut self, now: Instant) {
        let expired: Vec<i64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for sid in expired {
            if let Some(rt) = self.sessions.remove(&sid) {
                info!(
                    session = format!("0x{sid:x}"),
                    timeout = rt.timeout_ms,
                    "session expired"
                );
                self.propose(sid, Vec::new(), WriteOp::CloseSession);
                if let Some(c) = rt.conn {
                    self.close(c);
                }
            }
        }
    }

    fn clean_containers(&mut self) {
        for path in self.tree.cleanup_candidates(now_ms()) {
            let (_, r) = self.propose(
                0,
                Vec::new(),
                WriteOp::DeleteContainer { path: path.clone() },
            );
            debug!(path, err = r.err, "container/ttl cleanup");
        }
    }

    fn four_letter(&self, cmd: &str) -> String {
        let (min, avg, max) = self.latency.lock().map(|l| l.fmt()).unwrap_or_default();
        let srvr_tail = format!(
            "Latency min/avg/max: {min:.3}/{avg:.4}/{max:.3}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: 0\nZxid: 0x{:x}\nMode: standalone\nNode count: {}\n",
            self.received,
            self.sent,
            self.conns.len(),
            self.tree.last_zxid,
            self.tree.node_count()
        );
        let version = format!("Zookeeper version: {VERSION}, built for Rivulet\n");
        match cmd {
            "ruok" => "imok".into(),
            "srvr" => format!("{version}{srvr_tail}"),
            "stat" => {
                let mut s = format!("{version}Clients:\n");
                for c in self.conns.values() {
                    s.push_str(&format!(
                        " /{}[1](queued=0,recved={},sent={})\n",
                        c.addr, c.received, c.sent
                    ));
                }
                s.push('\n');
                s.push_str(&srvr_tail);
                s
            }
            "cons" => {
                let mut s = String::new();
                for c in self.conns.values() {
                    s.push_str(&format!(
                        " /{}[1](queued=0,recved={},sent={},sid=0x{:x},lzxid=0x{:x},established_ms_ago={})\n",
                        c.addr,
                        c.received,
                        c.sent,
                        c.session,
                        c.last_zxid,
                        c.established.elapsed().as_millis()
                    ));
                }
                s.push('\n');
                s
            }
            "conf" => format!(
                "clientPort={}\nadminAddr={}\ndataDir={}\ndataLogDir={}\ntickTime={}\nmaxClientCnxns=0\nminSessionTimeout={}\nmaxSessionTimeout={}\nserverId=0\njute.maxbuffer={}\nsnapshotEveryTxns={}\n",
                self.cfg.client_addr.rsplit(':').next().unwrap_or(""),
                self.cfg.admin_addr,
                self.cfg.data_dir.display(),
                self.cfg.data_dir.display(),
                self.cfg.tick_ms,
                self.cfg.min_session_timeout_ms,
                self.cfg.max_session_timeout_ms,
                self.cfg.jute_max_buffer,
                self.cfg.snapshot_every_txns,
            ),
            "envi" => format!(
                "Environment:\nzookeeper.version={VERSION}\nhost.name={}\nos.name={}\nos.arch={}\nuser.dir={}\n",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::env::current_dir()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            "mntr" => {
                let mut lines = vec![
                    ("zk_version", VERSION.to_string()),
                    ("zk_server_state", "standalone".into()),
                    ("zk_avg_latency", format!("{avg:.4}")),
                    ("zk_max_latency", format!("{max:.3}")),
                    ("zk_min_latency", format!("{min:.3}")),
                    ("zk_packets_received", self.received.to_string()),
                    ("zk_packets_sent", self.sent.to_string()),
                    ("zk_num_alive_connections", self.conns.len().to_string()),
                    ("zk_outstanding_requests", "0".into()),
                    ("zk_znode_count", self.tree.node_count().to_string()),
                    ("zk_watch_count", self.watches.count().to_string()),
                    ("zk_ephemerals_count", self.tree.ephemeral_count().to_string()),
                    (
                        "zk_approximate_data_size",
                        self.tree.approximate_data_size().to_string(),
                    ),
                    ("zk_global_sessions", self.tree.sessions().len().to_string()),
                    ("zk_last_zxid", format!("0x{:x}", self.tree.last_zxid)),
                    ("zk_uptime", self.started.elapsed().as_millis().to_string()),
                ];
                if let Some(fds) = open_fds() {
                    lines.push(("zk_open_file_descriptor_count", fds.to_string()));
                }
                lines
                    .into_iter()
                    .map(|(k, v)| format!("{k}\t{v}\n"))
                    .collect()
            }
            _ => String::new(),
        }
    }
}

fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// Writes the body of a successful write reply (or of one multi sub-result).
fn write_result(b: &mut Writer, opcode: i32, r: &OpResult) {
    match opcode {
        op::CREATE => {
            b.string(&r.path);
        }
        op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
            b.string(&r.path);
            r.stat.unwrap_or_default().write(b);
        }
        op::SET_DATA | op::SET_ACL => r.stat.unwrap_or_default().write(b),
        op::MULTI => {
            for sub in &r.multi {
                if sub.err != 0 || sub.opcode == op::ERROR {
                    b.i32(op::ERROR).bool(false).i32(sub.err).i32(sub.err);
                    continue;
                }
                let t = match sub.opcode {
                    op::CREATE_CONTAINER | op::CREATE_TTL => op::CREATE2,
                    o => o,
                };
                b.i32(t).bool(false).i32(0);
                write_result(b, t, sub);
            }
            b.i32(-1).bool(true).i32(-1);
        }
        _ => {}
    }
}

/// Lists the four-letter words this server answers.
pub const FOUR_LETTER_WORDS: [&str; 7] = ["ruok", "srvr", "stat", "mntr", "conf", "cons", "envi"];
