//! The Kafka wire protocol at the edge of the broker: frame reading with size limits, the table of
//! supported API versions, and request decoding/response encoding on top of `kafka-protocol`.

pub mod chunked;
pub mod codec;
pub mod frame;
pub mod versions;
