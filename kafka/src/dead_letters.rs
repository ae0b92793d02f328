//! The dead-letter topic: where a consumer puts a message that is not a well-formed reading
//! message, with the reason and the message's origin in headers, before it moves past it.

use std::sync::Arc;
use std::time::Duration;

use iot_common::bus::BusError;
use iot_common::metrics::Metrics;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::error::kafka_error;
use crate::message::{DLQ_REASON_HEADER, DLQ_SOURCE_HEADER, Poison};
use crate::producer::SharedProducer;

/// How long a dead letter may take to be acknowledged before the consumer stops to retry.
const DLQ_TIMEOUT: Duration = Duration::from_secs(10);

/// A poison message waiting for the dead-letter topic.
pub struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    partition: i32,
    offset: i64,
    reason: Poison,
}

impl DeadLetter {
    pub fn new(msg: &BorrowedMessage<'_>, reason: Poison) -> Self {
        Self {
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers: msg
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
            partition: msg.partition(),
            offset: msg.offset(),
            reason,
        }
    }

    /// The partition it came from, and the offset after it.
    pub fn next_position(&self) -> (i32, i64) {
        (self.partition, self.offset + 1)
    }
}

/// Sends dead letters: the producer, the topics, and the counter operators watch.
#[derive(Clone)]
pub struct DeadLetters {
    pub producer: SharedProducer,
    /// Where the messages came from (the readings topic), named in the source header.
    pub source_topic: String,
    pub topic: String,
    pub metrics: Arc<Metrics>,
}

impl DeadLetters {
    /// Sends `letter` and waits for the broker's acknowledgement.
    #[tracing::instrument(skip_all, fields(group = %group))]
    pub async fn send(&self, letter: &DeadLetter, group: &str) -> Result<(), BusError> {
        let source = format!(
            "{}/{}/{}",
            self.source_topic, letter.partition, letter.offset
        );
        let mut headers = OwnedHeaders::new_with_capacity(letter.headers.len() + 2);
        for (key, value) in &letter.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        headers = headers
            .insert(Header {
                key: DLQ_REASON_HEADER,
                value: Some(letter.reason.0.as_str()),
            })
            .insert(Header {
                key: DLQ_SOURCE_HEADER,
                value: Some(source.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload.as_slice());
        }
        let producer = self.producer.current();
        match tokio::time::timeout(DLQ_TIMEOUT, producer.send(record, DLQ_TIMEOUT)).await {
            Ok(Ok(_)) => {
                self.metrics.dead_letters.inc();
                tracing::warn!(source = %source, reason = %letter.reason, "message sent to the dead-letter topic");
                Ok(())
            }
            Ok(Err((e, _))) => Err(kafka_error(&e)),
            Err(_) => Err(BusError::Timeout(DLQ_TIMEOUT)),
        }
    }
}
