//! Records of `__consumer_offsets`, in Kafka's formats: OffsetCommitKey v1 / OffsetCommitValue
//! v3 and GroupMetadataKey v2 / GroupMetadataValue v3 (big-endian, i16-length strings, i32-length
//! bytes). A null value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("unknown {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("invalid utf-8 in {0}")]
    Utf8(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

fn put_str(b: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&bytes[..len]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn get_i16(b: &mut Bytes, what: &'static str) -> Result<i16, RecordError> {
    if b.remaining() < 2 {
        return Err(RecordError::Truncated(what));
    }
    Ok(b.get_i16())
}

fn get_i32(b: &mut Bytes, what: &'static str) -> Result<i32, RecordError> {
    if b.remaining() < 4 {
        return Err(RecordError::Truncated(what));
    }
    Ok(b.get_i32())
}

fn get_i64(b: &mut Bytes, what: &'static str) -> Result<i64, RecordError> {
    if b.remaining() < 8 {
        return Err(RecordError::Truncated(what));
    }
    Ok(b.get_i64())
}

fn get_nullable_str(b: &mut Bytes, what: &'static str) -> Result<Option<String>, RecordError> {
    let len = get_i16(b, what)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if b.remaining() < len {
        return Err(RecordError::Truncated(what));
    }
    let s = b.split_to(len);
    String::from_utf8(s.to_vec())
        .map(Some)
        .map_err(|_| RecordError::Utf8(what))
}

fn get_str(b: &mut Bytes, what: &'static str) -> Result<String, RecordError> {
    Ok(get_nullable_str(b, what)?.unwrap_or_default())
}

fn get_bytes(b: &mut Bytes, what: &'static str) -> Result<Bytes, RecordError> {
    let len = get_i32(b, what)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    if b.remaining() < len {
        return Err(RecordError::Truncated(what));
    }
    Ok(b.split_to(len))
}

impl Key {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                b.put_i16(1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            Key::Group { group } => {
                b.put_i16(2);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<Key, RecordError> {
        match get_i16(&mut b, "key version")? {
            0 | 1 => Ok(Key::Offset {
                group: get_str(&mut b, "group")?,
                topic: get_str(&mut b, "topic")?,
                partition: get_i32(&mut b, "partition")?,
            }),
            2 => Ok(Key::Group {
                group: get_str(&mut b, "group")?,
            }),
            v => Err(RecordError::UnknownVersion {
                what: "key",
                version: v,
            }),
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        b.put_i64(self.offset);
        b.put_i32(self.leader_epoch);
        put_str(&mut b, &self.metadata);
        b.put_i64(self.commit_timestamp);
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<OffsetValue, RecordError> {
        let version = get_i16(&mut b, "offset value version")?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "offset value",
                version,
            });
        }
        let offset = get_i64(&mut b, "offset")?;
        let leader_epoch = if version >= 3 {
            get_i32(&mut b, "leader epoch")?
        } else {
            -1
        };
        let metadata = get_str(&mut b, "metadata")?;
        let commit_timestamp = get_i64(&mut b, "commit timestamp")?;
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, &self.protocol_type);
        b.put_i32(self.generation);
        put_nullable_str(&mut b, self.protocol.as_deref());
        put_nullable_str(&mut b, self.leader.as_deref());
        b.put_i64(self.current_state_timestamp);
        b.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut b, &m.member_id);
            put_nullable_str(&mut b, m.group_instance_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.rebalance_timeout);
            b.put_i32(m.session_timeout);
            put_bytes(&mut b, &m.subscription);
            put_bytes(&mut b, &m.assignment);
        }
        b.freeze()
    }

    pub fn decode(mut b: Bytes) -> Result<GroupValue, RecordError> {
        let version = get_i16(&mut b, "group value version")?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "group value",
                version,
            });
        }
        let protocol_type = get_str(&mut b, "protocol type")?;
        let generation = get_i32(&mut b, "generation")?;
        let protocol = get_nullable_str(&mut b, "protocol")?;
        let leader = get_nullable_str(&mut b, "leader")?;
        let current_state_timestamp = if version >= 2 {
            get_i64(&mut b, "state timestamp")?
        } else {
            -1
        };
        let n = get_i32(&mut b, "member count")?.max(0) as usize;
        // Never trust the count for allocation: each member needs at least 20 bytes.
        let mut members = Vec::with_capacity(n.min(b.remaining() / 20));
        for _ in 0..n {
            let member_id = get_str(&mut b, "member id")?;
            let group_instance_id = if version >= 3 {
                get_nullable_str(&mut b, "instance id")?
            } else {
                None
            };
            let client_id = get_str(&mut b, "client id")?;
            let client_host = get_str(&mut b, "client host")?;
            let rebalance_timeout = if version >= 1 {
                get_i32(&mut b, "rebalance timeout")?
            } else {
                -1
            };
            let session_timeout = get_i32(&mut b, "session timeout")?;
            let subscription = get_bytes(&mut b, "subscription")?;
            let assignment = get_bytes(&mut b, "assignment")?;
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                subscription,
                assignment,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let k = Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(Key::decode(k.encode()).unwrap(), k);
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 1,
            metadata: "meta".into(),
            commit_timestamp: 7,
        };
        assert_eq!(OffsetValue::decode(v.encode()).unwrap(), v);
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp: 9,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout: 300000,
                session_timeout: 10000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(g.encode()).unwrap(), g);
        assert_eq!(
            Key::decode(Key::Group { group: "g".into() }.encode()).unwrap(),
            Key::Group { group: "g".into() }
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let b = Bytes::from(data);
            let _ = Key::decode(b.clone());
            let _ = OffsetValue::decode(b.clone());
            let _ = GroupValue::decode(b);
        }
    }
}
