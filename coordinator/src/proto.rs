//! ZooKeeper client-protocol records (zookeeper.jute) and constants.

use crate::jute::{JuteError, Reader, Result, Writer};

pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// ZooKeeper's KeeperException codes.
pub mod err {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const NO_WATCHER: i32 = -121;
}

pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    pub const STATE_SYNC_CONNECTED: i32 = 3;
}

pub mod perm {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

/// Ephemeral-owner encodings of ZooKeeper's extended node types.
pub const CONTAINER_OWNER: i64 = i64::MIN;
pub const TTL_OWNER_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
pub const TTL_MAX: i64 = 0x0000_00ff_ffff_ffff;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl Stat {
    pub fn write(&self, w: &mut Writer) {
        w.i64(self.czxid)
            .i64(self.mzxid)
            .i64(self.ctime)
            .i64(self.mtime)
            .i32(self.version)
            .i32(self.cversion)
            .i32(self.aversion)
            .i64(self.ephemeral_owner)
            .i32(self.data_length)
            .i32(self.num_children)
            .i64(self.pzxid);
    }

    pub fn read(r: &mut Reader) -> Result<Stat> {
        Ok(Stat {
            czxid: r.read_i64()?,
            mzxid: r.read_i64()?,
            ctime: r.read_i64()?,
            mtime: r.read_i64()?,
            version: r.read_i32()?,
            cversion: r.read_i32()?,
            aversion: r.read_i32()?,
            ephemeral_owner: r.read_i64()?,
            data_length: r.read_i32()?,
            num_children: r.read_i32()?,
            pzxid: r.read_i64()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

impl Id {
    pub fn new(scheme: &str, id: &str) -> Id {
        Id {
            scheme: scheme.to_string(),
            id: id.to_string(),
        }
    }
    pub fn write(&self, w: &mut Writer) {
        w.string(&self.scheme).string(&self.id);
    }
    pub fn read(r: &mut Reader) -> Result<Id> {
        Ok(Id {
            scheme: r.read_string()?,
            id: r.read_string()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

impl Acl {
    pub fn world_all() -> Vec<Acl> {
        vec![Acl {
            perms: perm::ALL,
            id: Id::new("world", "anyone"),
        }]
    }
}

pub fn write_acls(w: &mut Writer, acls: &[Acl]) {
    w.i32(acls.len() as i32);
    for a in acls {
        w.i32(a.perms);
        a.id.write(w);
    }
}

pub fn read_acls(r: &mut Reader) -> Result<Vec<Acl>> {
    let n = r.read_vec_len(12)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let perms = r.read_i32()?;
        let id = Id::read(r)?;
        v.push(Acl { perms, id });
    }
    Ok(v)
}

pub fn write_ids(w: &mut Writer, ids: &[Id]) {
    w.i32(ids.len() as i32);
    for i in ids {
        i.write(w);
    }
}

pub fn read_ids(r: &mut Reader) -> Result<Vec<Id>> {
    let n = r.read_vec_len(8)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Id::read(r)?);
    }
    Ok(v)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    /// None when an old client did not send the flag.
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn read(buf: &[u8]) -> Result<ConnectRequest> {
        let mut r = Reader::new(buf);
        let protocol_version = r.read_i32()?;
        let last_zxid_seen = r.read_i64()?;
        let timeout_ms = r.read_i32()?;
        let session_id = r.read_i64()?;
        let password = r.read_buffer()?;
        let read_only = if r.remaining() > 0 {
            Some(r.read_bool()?)
        } else {
            None
        };
        Ok(ConnectRequest {
            protocol_version,
            last_zxid_seen,
            timeout_ms,
            session_id,
            password,
            read_only,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.i32(self.protocol_version)
            .i64(self.last_zxid_seen)
            .i32(self.timeout_ms)
            .i64(self.session_id)
            .buffer(&self.password);
        if let Some(ro) = self.read_only {
            w.bool(ro);
        }
    }
}

/// One write operation: a request as the client sent it. Applied to the tree as part of a txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Create {
        opcode: i32,
        path: String,
        /// `None` is ZooKeeper's null data (length -1), kept distinct from empty.
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        flags: i32,
        ttl: i64,
    },
    Delete {
        path: String,
        version: i32,
    },
    DeleteContainer {
        path: String,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<WriteOp>),
    CreateSession {
        timeout_ms: i32,
        password: Vec<u8>,
    },
    CloseSession,
}

impl WriteOp {
    pub fn opcode(&self) -> i32 {
        match self {
            WriteOp::Create { opcode, .. } => *opcode,
            WriteOp::Delete { .. } => op::DELETE,
            WriteOp::DeleteContainer { .. } => op::DELETE_CONTAINER,
            WriteOp::SetData { .. } => op::SET_DATA,
            WriteOp::SetAcl { .. } => op::SET_ACL,
            WriteOp::Check { .. } => op::CHECK,
            WriteOp::Multi(_) => op::MULTI,
            WriteOp::CreateSession { .. } => op::CREATE_SESSION,
            WriteOp::CloseSession => op::CLOSE_SESSION,
        }
    }

    /// Decodes the body of a write request of type `opcode`.
    pub fn read(opcode: i32, r: &mut Reader) -> Result<WriteOp> {
        Ok(match opcode {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                let path = r.read_string()?;
                let data = r.read_opt_buffer()?;
                let acl = read_acls(r)?;
                let flags = r.read_i32()?;
                let ttl = if opcode == op::CREATE_TTL {
                    r.read_i64()?
                } else {
                    -1
                };
                WriteOp::Create {
                    opcode,
                    path,
                    data,
                    acl,
                    flags,
                    ttl,
                }
            }
            op::DELETE => WriteOp::Delete {
                path: r.read_string()?,
                version: r.read_i32()?,
            },
            op::DELETE_CONTAINER => WriteOp::DeleteContainer {
                path: r.read_string()?,
            },
            op::SET_DATA => WriteOp::SetData {
                path: r.read_string()?,
                data: r.read_opt_buffer()?,
                version: r.read_i32()?,
            },
            op::SET_ACL => WriteOp::SetAcl {
                path: r.read_string()?,
                acl: read_acls(r)?,
                version: r.read_i32()?,
            },
            op::CHECK => WriteOp::Check {
                path: r.read_string()?,
                version: r.read_i32()?,
            },
            op::MULTI => {
                let mut ops = Vec::new();
                loop {
                    let (t, done) = read_multi_header(r)?;
                    if done {
                        break;
                    }
                    if !matches!(
                        t,
                        op::CREATE
                            | op::CREATE2
                            | op::CREATE_CONTAINER
                            | op::CREATE_TTL
                            | op::DELETE
                            | op::SET_DATA
                            | op::CHECK
                    ) {
                        return Err(JuteError::Invalid(format!("op type {t} in multi")));
                    }
                    ops.push(WriteOp::read(t, r)?);
                }
                WriteOp::Multi(ops)
            }
            op::CREATE_SESSION => WriteOp::CreateSession {
                timeout_ms: r.read_i32()?,
                password: r.read_buffer()?,
            },
            op::CLOSE_SESSION => WriteOp::CloseSession,
            other => return Err(JuteError::Invalid(format!("write opcode {other}"))),
        })
    }

    pub fn write(&self, w: &mut Writer) {
        match self {
            WriteOp::Create {
                opcode,
                path,
                data,
                acl,
                flags,
                ttl,
            } => {
                w.string(path).opt_buffer(data.as_deref());
                write_acls(w, acl);
                w.i32(*flags);
                if *opcode == op::CREATE_TTL {
                    w.i64(*ttl);
                }
            }
            WriteOp::Delete { path, version } => {
                w.string(path).i32(*version);
            }
            WriteOp::DeleteContainer { path } => {
                w.string(path);
            }
            WriteOp::SetData {
                path,
                data,
                version,
            } => {
                w.string(path).opt_buffer(data.as_deref()).i32(*version);
            }
            WriteOp::SetAcl { path, acl, version } => {
                w.string(path);
                write_acls(w, acl);
                w.i32(*version);
            }
            WriteOp::Check { path, version } => {
                w.string(path).i32(*version);
            }
            WriteOp::Multi(ops) => {
                for o in ops {
                    w.i32(o.opcode()).bool(false).i32(-1);
                    o.write(w);
                }
                w.i32(-1).bool(true).i32(-1);
            }
            WriteOp::CreateSession {
                timeout_ms,
                password,
            } => {
                w.i32(*timeout_ms).buffer(password);
            }
            WriteOp::CloseSession => {}
        }
    }
}

/// MultiHeader: (type, done, err). Returns (type, done).
pub fn read_multi_header(r: &mut Reader) -> Result<(i32, bool)> {
    let t = r.read_i32()?;
    let done = r.read_bool()?;
    let _err = r.read_i32()?;
    Ok((t, done))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOp {
    GetChildren { path: String, watch: bool },
    GetData { path: String, watch: bool },
}

/// A decoded client request (after the connect handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    Write(WriteOp),
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    GetAcl {
        path: String,
    },
    GetChildren {
        path: String,
        watch: bool,
        with_stat: bool,
    },
    Sync {
        path: String,
    },
    MultiRead(Vec<ReadOp>),
    GetAllChildrenNumber {
        path: String,
    },
    GetEphemerals {
        prefix: String,
    },
    SetWatches(SetWatches),
    AddWatch {
        path: String,
        mode: i32,
    },
    RemoveWatches {
        path: String,
        kind: i32,
        remove: bool,
    },
    Auth {
        scheme: String,
        auth: Vec<u8>,
    },
    WhoAmI,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub recursive: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    pub xid: i32,
    pub opcode: i32,
    pub request: Request,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown opcode {opcode} (xid {xid})")]
    UnknownOp { xid: i32, opcode: i32 },
    #[error("malformed request: {0}")]
    Malformed(#[from] JuteError),
}

impl RequestFrame {
    /// Decodes one request frame body (without the length prefix).
    pub fn decode(buf: &[u8]) -> std::result::Result<RequestFrame, DecodeError> {
        let mut r = Reader::new(buf);
        let xid = r.read_i32()?;
        let opcode = r.read_i32()?;
        let request = match opcode {
            op::PING => Request::Ping,
            op::CREATE
            | op::CREATE2
            | op::CREATE_CONTAINER
            | op::CREATE_TTL
            | op::DELETE
            | op::SET_DATA
            | op::SET_ACL
            | op::CHECK
            | op::MULTI => Request::Write(WriteOp::read(opcode, &mut r)?),
            op::CLOSE_SESSION => Request::Write(WriteOp::CloseSession),
            op::EXISTS => Request::Exists {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            op::GET_DATA => Request::GetData {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            op::GET_ACL => Request::GetAcl {
                path: r.read_string()?,
            },
            op::GET_CHILDREN | op::GET_CHILDREN2 => Request::GetChildren {
                path: r.read_string()?,
                watch: r.read_bool()?,
                with_stat: opcode == op::GET_CHILDREN2,
            },
            op::SYNC => Request::Sync {
                path: r.read_string()?,
            },
            op::MULTI_READ => {
                let mut ops = Vec::new();
                loop {
                    let (t, done) = read_multi_header(&mut r)?;
                    if done {
                        break;
                    }
                    let path = r.read_string()?;
                    let watch = r.read_bool()?;
                    ops.push(match t {
                        op::GET_CHILDREN => ReadOp::GetChildren { path, watch },
                        op::GET_DATA => ReadOp::GetData { path, watch },
                        t => return Err(JuteError::Invalid(format!("op {t} in multiRead")).into()),
                    });
                }
                Request::MultiRead(ops)
            }
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber {
                path: r.read_string()?,
            },
            op::GET_EPHEMERALS => Request::GetEphemerals {
                prefix: r.read_string()?,
            },
            op::SET_WATCHES | op::SET_WATCHES2 => {
                let mut sw = SetWatches {
                    relative_zxid: r.read_i64()?,
                    data: r.read_string_vec()?,
                    exist: r.read_string_vec()?,
                    child: r.read_string_vec()?,
                    ..Default::default()
                };
                if opcode == op::SET_WATCHES2 {
                    sw.persistent = r.read_string_vec()?;
                    sw.recursive = r.read_string_vec()?;
                }
                Request::SetWatches(sw)
            }
            op::ADD_WATCH => Request::AddWatch {
                path: r.read_string()?,
                mode: r.read_i32()?,
            },
            op::REMOVE_WATCHES | op::CHECK_WATCHES => Request::RemoveWatches {
                path: r.read_string()?,
                kind: r.read_i32()?,
                remove: opcode == op::REMOVE_WATCHES,
            },
            op::AUTH => {
                let _type = r.read_i32()?;
                Request::Auth {
                    scheme: r.read_string()?,
                    auth: r.read_buffer()?,
                }
            }
            op::WHO_AM_I => Request::WhoAmI,
            _ => return Err(DecodeError::UnknownOp { xid, opcode }),
        };
        Ok(RequestFrame {
            xid,
            opcode,
            request,
        })
    }
}

/// Reply header followed by a body written by `body`.
pub fn reply(xid: i32, zxid: i64, err: i32, body: impl FnOnce(&mut Writer)) -> bytes::Bytes {
    let mut w = Writer::framed();
    w.i32(xid).i64(zxid).i32(err);
    if err == 0 {
        body(&mut w);
    }
    w.finish_frame()
}

pub fn watch_event(kind: i32, path: &str) -> bytes::Bytes {
    let mut w = Writer::framed();
    w.i32(xid::NOTIFICATION).i64(-1).i32(0);
    w.i32(kind).i32(event::STATE_SYNC_CONNECTED).string(path);
    w.finish_frame()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(xid: i32, opcode: i32, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        w.i32(xid).i32(opcode);
        body(&mut w);
        w.buf.to_vec()
    }

    #[test]
    fn decodes_create_and_multi() {
        let acl = Acl::world_all();
        let f = frame(7, op::CREATE2, |w| {
            w.string("/a").buffer(b"x");
            write_acls(w, &acl);
            w.i32(3);
        });
        let d = RequestFrame::decode(&f).unwrap();
        assert_eq!(d.xid, 7);
        assert!(matches!(
            d.request,
            Request::Write(WriteOp::Create { flags: 3, .. })
        ));

        let m = WriteOp::Multi(vec![
            WriteOp::Check {
                path: "/a".into(),
                version: 1,
            },
            WriteOp::Delete {
                path: "/a".into(),
                version: -1,
            },
        ]);
        let f = frame(8, op::MULTI, |w| m.write(w));
        assert_eq!(RequestFrame::decode(&f).unwrap().request, Request::Write(m));
    }

    #[test]
    fn unknown_and_truncated() {
        let f = frame(1, 999, |_| {});
        assert_eq!(
            RequestFrame::decode(&f),
            Err(DecodeError::UnknownOp {
                xid: 1,
                opcode: 999
            })
        );
        let f = frame(1, op::GET_DATA, |w| {
            w.string("/abc");
        });
        assert!(matches!(
            RequestFrame::decode(&f),
            Err(DecodeError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RequestFrame::decode(&bytes);
            let _ = ConnectRequest::read(&bytes);
        }

        #[test]
        fn decode_never_panics_with_valid_header(opcode in prop::sample::select(vec![1,2,3,4,5,6,7,8,9,12,13,14,15,17,18,19,21,22,100,101,103,104,105,106]),
                                                 body in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut f = frame(1, opcode, |_| {});
            f.extend_from_slice(&body);
            let _ = RequestFrame::decode(&f);
        }

        #[test]
        fn write_ops_roundtrip(path in "/[a-z]{1,8}", data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
                               version in any::<i32>(), flags in 0i32..7) {
            let ops = vec![
                WriteOp::Create { opcode: op::CREATE_TTL, path: path.clone(), data: data.clone(), acl: Acl::world_all(), flags, ttl: 5 },
                WriteOp::SetData { path: path.clone(), data, version },
                WriteOp::Delete { path: path.clone(), version },
                WriteOp::Check { path: path.clone(), version },
            ];
            let m = WriteOp::Multi(ops);
            let mut w = Writer::new();
            m.write(&mut w);
            let b = w.buf.freeze();
            let back = WriteOp::read(op::MULTI, &mut Reader::new(&b)).unwrap();
            prop_assert_eq!(back, m);
        }
    }
}
