//! InitProducerId for idempotent producers: a fresh producer id with epoch 0, as Kafka does when
//! no transactional id is given. Transactions are not supported.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;

pub async fn handle(
    b: &Broker,
    _version: i16,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        tracing::warn!(
            "InitProducerId with a transactional id refused: transactions are not supported"
        );
        return resp.with_error_code(ResponseError::InvalidRequest.code());
    }
    match b.next_producer_id().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            resp.with_error_code(ResponseError::KafkaStorageError.code())
        }
    }
}
