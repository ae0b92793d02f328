//! [`KafkaConsumer`]: a member of the sink's consumer group.
//!
//! Offsets are committed only when the sink says its batch is stored ([`Consumer::commit`]),
//! and only for partitions this member still owns. The sink commits after every store
//! write and never polls in between, so when a rebalance takes partitions away (which
//! happens inside a poll) everything it wrote is already committed; readings it had polled
//! but not written are read again by the new owner, and the store's upsert makes that
//! harmless. A message that is not a valid reading goes to the dead-letter topic with the
//! reason in a header; nothing after it on its partition is handed out until the dead-letter
//! topic has it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use iot_common::Reading;
use iot_common::bus::{BusError, Consumer};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::bus::{KafkaBus, kafka_error};
use crate::message::{DLQ_REASON_HEADER, DLQ_SOURCE_HEADER, Poison, decode_message};

/// How long a dead letter may take to be acknowledged before the consumer stops to retry.
const DLQ_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs partition moves, so an operator can see who consumes what.
pub struct GroupContext {
    group: String,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(group = %self.group, partitions = ?partitions(tpl), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, partitions = ?partitions(tpl), "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance failed")
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// A poison message waiting for the dead-letter topic.
struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    partition: i32,
    offset: i64,
    reason: Poison,
}

impl DeadLetter {
    fn new(msg: &BorrowedMessage<'_>, reason: Poison) -> Self {
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
}

pub struct KafkaConsumer {
    bus: KafkaBus,
    consumer: Arc<StreamConsumer<GroupContext>>,
    group: String,
    /// Per partition, the offset after the last message handed out or dead-lettered: what a
    /// commit records.
    positions: HashMap<i32, i64>,
    stalled: Option<DeadLetter>,
}

impl KafkaConsumer {
    pub(crate) fn new(bus: KafkaBus, group: &str) -> Result<Self, BusError> {
        let config = bus.config();
        let session_ms = config.session_timeout.as_millis().max(1000);
        let consumer: StreamConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", group)
            .set("client.id", format!("{}-consumer", config.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", (session_ms / 4).to_string())
            .set("topic.metadata.refresh.interval.ms", "10000")
            // Bounds what is fetched ahead while the sink waits on a slow store.
            .set("queued.max.messages.kbytes", "16384")
            .create_with_context(GroupContext {
                group: group.to_string(),
            })
            .map_err(|e| kafka_error(&e))?;
        consumer
            .subscribe(&[config.topic.as_str()])
            .map_err(|e| kafka_error(&e))?;
        Ok(Self {
            bus,
            consumer: Arc::new(consumer),
            group: group.to_string(),
            positions: HashMap::new(),
            stalled: None,
        })
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), BusError> {
        let config = self.bus.config();
        let source = format!("{}/{}/{}", config.topic, letter.partition, letter.offset);
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
            FutureRecord::to(&config.dlq_topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload.as_slice());
        }
        let producer = self.bus.producer();
        match tokio::time::timeout(DLQ_TIMEOUT, producer.send(record, DLQ_TIMEOUT)).await {
            Ok(Ok(_)) => {
                self.bus.metrics().dead_letters.inc();
                tracing::warn!(group = %self.group, source = %source, reason = %letter.reason, "message sent to the dead-letter topic");
                Ok(())
            }
            Ok(Err((e, _))) => Err(kafka_error(&e)),
            Err(_) => Err(BusError::Timeout(DLQ_TIMEOUT)),
        }
    }

    /// Sends `letter` to the dead-letter topic, or keeps it to retry first on the next poll.
    async fn settle(&mut self, letter: DeadLetter) -> Result<(), BusError> {
        match self.dead_letter(&letter).await {
            Ok(()) => {
                self.positions.insert(letter.partition, letter.offset + 1);
                Ok(())
            }
            Err(e) => {
                self.stalled = Some(letter);
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Reading>, BusError> {
        if let Some(letter) = self.stalled.take() {
            self.settle(letter).await?;
        }
        let consumer = self.consumer.clone();
        let deadline = Instant::now() + wait;
        let mut batch = Vec::new();
        while batch.len() < max {
            // Wait for the first message; after that take only what is already fetched.
            let until = if batch.is_empty() {
                deadline
            } else {
                Instant::now()
            };
            let msg = match tokio::time::timeout_at(until, consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(msg)) => msg,
                Ok(Err(e)) if batch.is_empty() => return Err(kafka_error(&e)),
                Ok(Err(_)) => break,
            };
            match decode_message(&msg, Utc::now()) {
                Ok(reading) => {
                    self.positions.insert(msg.partition(), msg.offset() + 1);
                    batch.push(reading);
                }
                Err(reason) => {
                    let letter = DeadLetter::new(&msg, reason);
                    drop(msg);
                    if let Err(e) = self.settle(letter).await {
                        if batch.is_empty() {
                            return Err(e);
                        }
                        break;
                    }
                }
            }
        }
        Ok(batch)
    }

    async fn commit(&mut self) -> Result<(), BusError> {
        if self.positions.is_empty() {
            return Ok(());
        }
        let topic = self.bus.config().topic.clone();
        let assigned = self.consumer.assignment().map_err(|e| kafka_error(&e))?;
        let mut tpl = TopicPartitionList::new();
        for (&partition, &next) in &self.positions {
            // A partition given away in a rebalance is the new owner's to commit.
            if assigned.find_partition(&topic, partition).is_some() {
                tpl.add_partition_offset(&topic, partition, Offset::Offset(next))
                    .map_err(|e| kafka_error(&e))?;
            }
        }
        if tpl.count() > 0 {
            let consumer = self.consumer.clone();
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
                .await
                .map_err(|e| BusError::Unavailable(e.to_string()))?
                .map_err(|e| kafka_error(&e))?;
        }
        self.positions.clear();
        Ok(())
    }
}
