//! [`KafkaConsumer`]: a member of the sink's consumer group.
//!
//! Offsets are committed only when the sink says its batch is stored ([`Consumer::commit`]),
//! only up to what was handed out, and only for partitions this member still owns. When a
//! rebalance takes partitions away (which happens inside a poll), readings handed out but not
//! yet committed are read again by the new owner, and the store's upsert makes that harmless.
//! A message that is not a well-formed reading message goes to the dead-letter topic with the
//! reason in a header; nothing after it on its partition is handed out until the dead-letter
//! topic has it.
//!
//! Messages taken from the client wait in the consumer itself ([`KafkaConsumer::taken`]),
//! not in the poll's future, until they are handed out: a poll that is dropped halfway loses
//! nothing, and its messages come out of the next poll. The client's own position has moved
//! past them, so keeping them is what stops them from being skipped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use iot_common::Reading;
use iot_common::bus::{BusError, Consumer};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::config::KafkaConfig;
use crate::dead_letters::{DeadLetter, DeadLetters};
use crate::error::kafka_error;
use crate::message::decode_message;

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

/// A reading taken from the client and not yet handed out, or a dead letter the dead-letter
/// topic already has (`None`), whose offset counts once what comes before it on its partition
/// is handed out. A `readings.v1` message is one entry per reading.
struct Taken {
    partition: i32,
    /// Where a commit after this entry resumes: after its message for the message's last
    /// reading, at the message for the others.
    next: i64,
    /// Readings of its message after this one.
    rest: usize,
    reading: Option<Reading>,
}

pub struct KafkaConsumer {
    consumer: Arc<StreamConsumer<GroupContext>>,
    /// The readings topic, whose offsets it commits.
    topic: String,
    dead_letters: DeadLetters,
    group: String,
    /// Per partition, the offset after the last message handed out (or settled before one
    /// that was): what a commit records.
    positions: HashMap<i32, i64>,
    /// Taken from the client, in order, not handed out yet.
    taken: VecDeque<Taken>,
    /// How many of `taken` are readings.
    taken_readings: usize,
    /// A dead letter being sent, or refused and waiting to be sent again before anything else.
    stalled: Option<DeadLetter>,
}

impl KafkaConsumer {
    pub(crate) fn new(
        config: &KafkaConfig,
        dead_letters: DeadLetters,
        group: &str,
    ) -> Result<Self, BusError> {
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
            consumer: Arc::new(consumer),
            topic: config.topic.clone(),
            dead_letters,
            group: group.to_string(),
            positions: HashMap::new(),
            taken: VecDeque::new(),
            taken_readings: 0,
            stalled: None,
        })
    }

    /// Sends the stalled letter to the dead-letter topic. Until the topic has it, the letter
    /// stays stalled (also if this future is dropped), to be sent before anything else.
    async fn settle_stalled(&mut self) -> Result<(), BusError> {
        if let Some(letter) = &self.stalled {
            self.dead_letters.send(letter, &self.group).await?;
        }
        if let Some(letter) = self.stalled.take() {
            let (partition, next) = letter.next_position();
            self.taken.push_back(Taken {
                partition,
                next,
                rest: 0,
                reading: None,
            });
        }
        Ok(())
    }

    /// Takes messages from the client into `taken` until it holds `max` readings: waits up to
    /// `wait` for the first, then takes only what is already fetched. Stops at the first
    /// error, keeping what it took.
    async fn take(&mut self, max: usize, wait: Duration) -> Result<(), BusError> {
        self.settle_stalled().await?;
        let consumer = self.consumer.clone();
        let deadline = Instant::now() + wait;
        while self.taken_readings < max {
            let until = if self.taken_readings == 0 {
                deadline
            } else {
                Instant::now()
            };
            let msg = match tokio::time::timeout_at(until, consumer.recv()).await {
                Err(_) => return Ok(()),
                Ok(Ok(msg)) => msg,
                Ok(Err(e)) => return Err(kafka_error(&e)),
            };
            let (partition, next) = (msg.partition(), msg.offset() + 1);
            match decode_message(&msg) {
                Ok(readings) => {
                    let n = readings.len();
                    self.taken_readings += n;
                    for (i, reading) in readings.into_iter().enumerate() {
                        // Only a message's last reading moves a commit past it.
                        let rest = n - 1 - i;
                        self.taken.push_back(Taken {
                            partition,
                            next: if rest == 0 { next } else { next - 1 },
                            rest,
                            reading: Some(reading),
                        });
                    }
                }
                Err(reason) => {
                    self.stalled = Some(DeadLetter::new(&msg, reason));
                    drop(msg);
                    self.settle_stalled().await?;
                }
            }
        }
        Ok(())
    }

    /// Hands out up to `max` taken readings in order, with the dead letters among them, and
    /// moves the positions a commit records past them. A message's readings go out together
    /// unless the message alone holds more than `max`: only then is a message handed out in
    /// parts, and a commit between them leaves it to be delivered again (at least once; the
    /// store's writes are upserts).
    fn hand_out(&mut self, max: usize) -> Vec<(u32, Reading)> {
        let mut batch: Vec<(u32, Reading)> = Vec::new();
        let mut in_message = false;
        while let Some(front) = self.taken.front() {
            let whole = front.rest + 1;
            let starts = front.reading.is_some() && !in_message;
            if front.reading.is_some()
                && (batch.len() == max || starts && !batch.is_empty() && batch.len() + whole > max)
            {
                break;
            }
            let Some(taken) = self.taken.pop_front() else {
                break;
            };
            self.positions.insert(taken.partition, taken.next);
            in_message = taken.reading.is_some() && taken.rest > 0;
            if let Some(reading) = taken.reading {
                self.taken_readings -= 1;
                // Partitions are never negative.
                batch.push((u32::try_from(taken.partition).unwrap_or(0), reading));
            }
        }
        batch
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Reading>, BusError> {
        let parted = self.poll_parts(max, wait).await?;
        Ok(parted.into_iter().map(|(_, r)| r).collect())
    }

    async fn poll_parts(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(u32, Reading)>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let took = self.take(max, wait).await;
        let batch = self.hand_out(max);
        match took {
            Ok(()) => Ok(batch),
            Err(e) if batch.is_empty() => Err(e),
            // What was taken before the error is handed out; the error shows again on the
            // next poll if it lasts (a stalled dead letter is retried first).
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, readings = batch.len(), "poll stopped early");
                Ok(batch)
            }
        }
    }

    fn parts(&self) -> Result<Option<Vec<u32>>, BusError> {
        let assigned = self.consumer.assignment().map_err(|e| kafka_error(&e))?;
        Ok(Some(
            assigned
                .elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| u32::try_from(e.partition()).ok())
                .collect(),
        ))
    }

    async fn commit(&mut self) -> Result<(), BusError> {
        if self.positions.is_empty() {
            return Ok(());
        }
        let topic = self.topic.clone();
        let assigned = self.consumer.assignment().map_err(|e| kafka_error(&e))?;
        // A partition given away in a rebalance is the new owner's to commit, and its
        // position here is forgotten even if this commit fails: should the partition come
        // back, what was handed out before is read again rather than committed unseen by a
        // caller that dropped its state for the partition (the live aggregator does).
        self.positions
            .retain(|&partition, _| assigned.find_partition(&topic, partition).is_some());
        let mut tpl = TopicPartitionList::new();
        for (&partition, &next) in &self.positions {
            tpl.add_partition_offset(&topic, partition, Offset::Offset(next))
                .map_err(|e| kafka_error(&e))?;
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
