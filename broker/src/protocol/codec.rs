//! Request decoding and response encoding around `kafka-protocol`'s generated messages.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use std::sync::Arc;

use super::chunked::ChunkedBuf;
use super::versions;
use crate::security::principal::KafkaPrincipal;

/// Why a frame could not become a request. Each variant closes the connection, as Kafka does.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("{api:?} version {version} is not supported (supported {min}..={max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
        correlation_id: i32,
    },
    #[error("api {0:?} is not implemented by this broker")]
    NotImplemented(ApiKey),
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A decoded request with its header.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api: ApiKey,
    pub body: RequestKind,
    /// The client's address as Kafka reports it in DescribeGroups ("/127.0.0.1").
    pub client_host: String,
    /// Who sent it (`User:ANONYMOUS` until a listener authenticates the connection).
    pub principal: Arc<KafkaPrincipal>,
    /// The listener it came in on (Metadata answers with that listener's endpoints).
    pub listener: Arc<str>,
}

/// Decodes a frame's payload (without the length prefix) into a request.
pub fn decode_request(mut frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| DecodeError::UnknownApi(key))?;
    let Some((min, max)) = versions::range(api) else {
        return Err(DecodeError::NotImplemented(api));
    };
    if version < min || version > max {
        return Err(DecodeError::UnsupportedVersion {
            api,
            version,
            min,
            max,
            correlation_id,
        });
    }
    let malformed = |e: anyhow::Error| DecodeError::Malformed {
        api,
        version,
        reason: format!("{e:#}"),
    };
    let header_version = api.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(malformed)?;
    let body = RequestKind::decode(api, &mut frame, version).map_err(malformed)?;
    Ok(Request {
        header,
        api,
        body,
        client_host: String::new(),
        principal: Arc::new(KafkaPrincipal::anonymous()),
        listener: Arc::from("PLAINTEXT"),
    })
}

/// Encodes a response frame (length prefix included) for the given request header, as chunks to
/// write in order. A Fetch response's record data is not copied: each partition's records (read
/// from the log) become chunks of their own (`chunked::ChunkedBuf`); any other response is one
/// chunk.
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Vec<Bytes>> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    if let ResponseKind::Fetch(f) = body {
        let mut buf = ChunkedBuf::with_capacity(1024);
        for p in f.responses.iter().flat_map(|t| t.partitions.iter()) {
            if let Some(r) = &p.records {
                buf.pass(r.clone());
            }
        }
        header.encode(&mut buf, header_version)?;
        f.encode(&mut buf, version)?;
        let len = i32::try_from(buf.len())?;
        let mut chunks = Vec::with_capacity(2 * f.responses.len() + 2);
        chunks.push(Bytes::copy_from_slice(&len.to_be_bytes()));
        chunks.extend(buf.into_chunks());
        return Ok(chunks);
    }
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(vec![buf.freeze()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::StrBytes;

    fn frame(api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_api_versions_v3() {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("x"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let r = decode_request(frame(ApiKey::ApiVersions, 3, &req)).unwrap();
        assert_eq!(r.header.correlation_id, 42);
        assert!(matches!(r.body, RequestKind::ApiVersions(_)));
    }

    #[test]
    fn rejects_unknown_and_unsupported() {
        let mut f = BytesMut::new();
        f.put_i16(999);
        f.put_i16(0);
        f.put_i32(1);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(DecodeError::UnknownApi(999))
        ));
        let req = ApiVersionsRequest::default();
        assert!(decode_request(frame(ApiKey::ApiVersions, 4, &req)).is_ok());
        let mut f = BytesMut::new();
        f.put_i16(ApiKey::ApiVersions as i16);
        f.put_i16(99);
        f.put_i32(7);
        f.put_i16(-1);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(DecodeError::UnsupportedVersion {
                correlation_id: 7,
                ..
            })
        ));
    }

    #[test]
    fn truncated_body_is_malformed_not_a_panic() {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("client"));
        let f = frame(ApiKey::ApiVersions, 3, &req);
        for cut in 8..f.len() {
            let _ = decode_request(f.slice(..cut));
        }
    }

    /// The chunked Fetch encoding is byte for byte the contiguous one, for the old and the
    /// flexible versions, and passes the record data through without copying it.
    #[test]
    fn fetch_response_chunks_equal_the_contiguous_encoding() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use kafka_protocol::messages::{FetchResponse, TopicName};

        let records: Vec<Bytes> = (0..3u8)
            .map(|i| Bytes::from(vec![i; 5000 + usize::from(i)]))
            .collect();
        let parts = |rs: &[Bytes]| {
            rs.iter()
                .enumerate()
                .map(|(i, r)| {
                    PartitionData::default()
                        .with_partition_index(i as i32)
                        .with_high_watermark(100)
                        .with_records(Some(r.clone()))
                })
                .chain(std::iter::once(
                    PartitionData::default()
                        .with_partition_index(9)
                        .with_error_code(6),
                ))
                .collect::<Vec<_>>()
        };
        let resp = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("a")))
                .with_partitions(parts(&records[..2])),
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("b")))
                .with_partitions(parts(&records[2..])),
        ]);
        for version in [4i16, 11, 12, 13, 16] {
            let body = ResponseKind::Fetch(resp.clone());
            let chunks = encode_response(ApiKey::Fetch, version, 42, &body).unwrap();
            let mut want = BytesMut::new();
            want.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(42)
                .encode(&mut want, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            body.encode(&mut want, version).unwrap();
            let len = (want.len() - 4) as i32;
            want[0..4].copy_from_slice(&len.to_be_bytes());
            let got: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(got, want.to_vec(), "v{version}");
            for r in &records {
                assert!(
                    chunks
                        .iter()
                        .any(|c| c.as_ptr() == r.as_ptr() && c.len() == r.len()),
                    "v{version}: records copied"
                );
            }
        }
    }
}
