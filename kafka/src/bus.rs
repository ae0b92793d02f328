//! [`KafkaBus`]: the bus port on Kafka. Publishing waits for the broker's acknowledgement
//! (`acks=all`, idempotent producer) of every reading; subscribing joins a consumer group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use iot_common::Reading;
use iot_common::bus::{Bus, BusError, Consumer};
use iot_common::metrics::Metrics;
use iot_common::retry::Backoff;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::consumer::KafkaConsumer;
use crate::dead_letters::DeadLetters;
use crate::error::kafka_error;
use crate::message::{
    BATCH_MAX, SCHEMA_BATCH_V1, SCHEMA_HEADER, SCHEMA_V1, encode_batch_into, encode_into,
};
use crate::producer::SharedProducer;
pub use crate::producer::producer_config;

/// How long topic checks and metadata requests may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a readiness check waits for the broker.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Least time between two renewals of the producer.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The Kafka adapter of the bus port. Cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    /// Replaced when it wedges (see [`KafkaBus::recover`]); clones share one client.
    producer: SharedProducer,
    admin: AdminClient<DefaultClientContext>,
    metrics: Arc<Metrics>,
    /// Set while [`KafkaBus::recover`] runs, so a burst of failures starts only one.
    recovering: AtomicBool,
    renewed: Mutex<Option<std::time::Instant>>,
}

impl KafkaBus {
    /// Builds the clients; nothing is sent to the broker yet (see [`KafkaBus::ensure_topics`]).
    pub fn new(config: KafkaConfig, metrics: Arc<Metrics>) -> Result<Self, BusError> {
        let producer: FutureProducer = producer_config(&config)
            .create()
            .map_err(|e| kafka_error(&e))?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", format!("{}-admin", config.client_id))
            .create()
            .map_err(|e| kafka_error(&e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer: SharedProducer::new(producer),
                admin,
                metrics,
                recovering: AtomicBool::new(false),
                renewed: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// Creates the readings topic and the dead-letter topic unless they exist, with
    /// `min.insync.replicas` = min(2, replication): with two or more copies, an `acks=all`
    /// acknowledgement then means at least two brokers have the message. Topics that exist
    /// are left as they are, so a cluster whose topics are managed elsewhere (and that refuses
    /// creation) works too.
    pub async fn ensure_topics(&self) -> Result<(), BusError> {
        let c = &self.inner.config;
        let metadata = self.metadata(None, ADMIN_TIMEOUT).await?;
        let min_insync = c.replication.min(2).to_string();
        let topics: Vec<NewTopic<'_>> = [&c.topic, &c.dlq_topic]
            .into_iter()
            .filter(|t| !has_topic(&metadata, t))
            .map(|t| {
                NewTopic::new(t, c.partitions, TopicReplication::Fixed(c.replication))
                    .set("min.insync.replicas", &min_insync)
            })
            .collect();
        if topics.is_empty() {
            return Ok(());
        }
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = tokio::time::timeout(
            ADMIN_TIMEOUT,
            self.inner.admin.create_topics(&topics, &options),
        )
        .await
        .map_err(|_| BusError::Timeout(ADMIN_TIMEOUT))?
        .map_err(|e| kafka_error(&e))?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(
                    topic = %name,
                    partitions = c.partitions,
                    replication = c.replication,
                    "created topic"
                ),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Unavailable(format!(
                        "cannot create topic {name}: {code}"
                    )));
                }
            }
        }
        self.until_topics_listed().await
    }

    /// Waits until the producer's own metadata lists both topics with their partitions. A
    /// topic the broker has just created can still be missing from a metadata answer; an
    /// idempotent producer that saw it, then saw it missing, restarts its sequence numbers
    /// for it, and the broker then acknowledges repeated numbers as duplicates without
    /// writing them (librdkafka issue 3712). Publishing only once the topics are listed
    /// keeps a new topic out of that window: one reading answered 202 was missing from
    /// the log of a topic created a second before, once, in a fault test on Apache Kafka 4.1.
    async fn until_topics_listed(&self) -> Result<(), BusError> {
        let c = &self.inner.config;
        let until = tokio::time::Instant::now() + ADMIN_TIMEOUT;
        loop {
            let metadata = self.metadata(None, ADMIN_TIMEOUT).await?;
            if has_topic(&metadata, &c.topic) && has_topic(&metadata, &c.dlq_topic) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= until {
                return Err(BusError::Timeout(ADMIN_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The broker's metadata, of one topic or of all; the client call blocks, so it runs off
    /// the async threads.
    async fn metadata(&self, topic: Option<&str>, timeout: Duration) -> Result<Metadata, BusError> {
        let (bus, topic) = (self.clone(), topic.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            bus.inner
                .producer
                .current()
                .client()
                .fetch_metadata(topic.as_deref(), timeout)
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
        .map_err(|e| kafka_error(&e))
    }

    /// Retries [`KafkaBus::ensure_topics`] with backoff until it succeeds or `shutdown`:
    /// a service may come up before its broker. Returns whether the topics are there.
    pub async fn ensure_topics_until_ready(&self, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            match self.ensure_topics().await {
                Ok(()) => {
                    self.warn_if_single_copy().await;
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, brokers = %self.inner.config.brokers, "cannot reach Kafka to set up topics; retrying");
                }
            }
            if !backoff.pause(shutdown).await {
                return false;
            }
        }
    }

    /// Says once, at start-up, when the readings topic keeps a single copy of each message:
    /// what a 202 is worth then is less than operators may assume.
    async fn warn_if_single_copy(&self) {
        let topic = &self.inner.config.topic;
        let Ok(metadata) = self.metadata(Some(topic), ADMIN_TIMEOUT).await else {
            return;
        };
        let copies = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions())
            .map(|p| p.replicas().len())
            .min();
        if copies == Some(1) {
            tracing::warn!(
                topic = %topic,
                "topic has one replica: a 202 means one broker has the reading, which survives \
                 that broker's restart but not the loss of its disk or host; run three brokers \
                 with IOT_KAFKA_REPLICATION=3 for readings that survive a broker host"
            );
        }
    }

    /// After a failed publish: a broker that lost its topics (a restart of an in-memory
    /// broker, an operator's mistake) gets them back, and if the broker answers, the
    /// producer is renewed (at most every [`RENEW_EVERY`]). Runs in the background, without
    /// a request waiting for it.
    fn recover(&self) {
        if self.inner.recovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let bus = self.clone();
        tokio::spawn(async move {
            match bus.ensure_topics().await {
                Ok(()) => {
                    let mut last = match bus.inner.renewed.lock() {
                        Ok(last) => last,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    if last.is_none_or(|t| t.elapsed() >= RENEW_EVERY) {
                        bus.renew_producer();
                        *last = Some(std::time::Instant::now());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Kafka check after a failed publish"),
            }
            bus.inner.recovering.store(false, Ordering::Release);
        });
    }

    /// A publish failed although the broker answers and the topics exist: the producer may
    /// be stuck on state the broker no longer has (an idempotent producer's id after the
    /// broker lost it, seen with an in-memory broker's restart). A fresh producer starts
    /// clean; requests still waiting on the old one finish or time out on their own.
    fn renew_producer(&self) {
        match producer_config(&self.inner.config).create::<FutureProducer>() {
            Ok(fresh) => {
                self.inner.producer.replace(fresh);
                tracing::warn!("publishing failed while the broker answers: producer renewed");
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the producer"),
        }
    }

    async fn publish_all(&self, readings: &[Reading]) -> Result<(), BusError> {
        // One buffer for the request's payloads, each message a slice of it: a run of one
        // meter's readings (at most `BATCH_MAX`) as one `readings.v1` message.
        let mut payloads = Vec::with_capacity(readings.len() * 96);
        let mut records = Vec::new();
        for run in readings.chunk_by(|a, b| a.meter_id == b.meter_id) {
            for part in run.chunks(BATCH_MAX) {
                let start = payloads.len();
                let schema = match part {
                    [one] => {
                        encode_into(&mut payloads, one);
                        SCHEMA_V1
                    }
                    _ => {
                        encode_batch_into(&mut payloads, part);
                        SCHEMA_BATCH_V1
                    }
                };
                records.push((part[0].meter_id.as_str(), start..payloads.len(), schema));
            }
        }
        let messages: Vec<(&str, &[u8], &'static str)> = records
            .into_iter()
            .map(|(key, range, schema)| (key, &payloads[range], schema))
            .collect();
        produce_readings(
            &self.inner.producer.current(),
            &self.inner.config.topic,
            messages,
        )
        .await
        .map_err(|e| kafka_error(&e))
    }
}

/// Sends each `(meter id, encoded value, schema)` to `topic` and waits until the broker
/// acknowledged every one. A full local queue is waited out; the caller's deadline bounds
/// how long.
pub async fn produce_readings<'a>(
    producer: &FutureProducer,
    topic: &str,
    messages: impl IntoIterator<Item = (&'a str, &'a [u8], &'static str)>,
) -> Result<(), KafkaError> {
    let mut deliveries = Vec::new();
    for (key, payload, schema) in messages {
        let mut record =
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: SCHEMA_HEADER,
                    value: Some(schema),
                }));
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}

/// Whether `metadata` shows `topic` as usable: known, without error, with partitions.
fn has_topic(metadata: &Metadata, topic: &str) -> bool {
    metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
}

struct RecoverOnDrop<'a>(Option<&'a KafkaBus>);

impl Drop for RecoverOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(bus) = self.0.take() {
            bus.recover();
        }
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, readings: &[Reading]) -> Result<(), BusError> {
        // Armed until the publish succeeds: a caller that gives up (drops this future at its
        // deadline) still triggers the check.
        let check = RecoverOnDrop(Some(self));
        let result = self.publish_all(readings).await;
        if result.is_ok() {
            std::mem::forget(check);
        }
        result
    }

    async fn subscribe(&self, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        let config = &self.inner.config;
        let dead_letters = DeadLetters {
            producer: self.inner.producer.clone(),
            source_topic: config.topic.clone(),
            topic: config.dlq_topic.clone(),
            metrics: self.inner.metrics.clone(),
        };
        Ok(Box::new(KafkaConsumer::new(config, dead_letters, group)?))
    }

    async fn ping(&self) -> Result<(), BusError> {
        let topic = &self.inner.config.topic;
        let metadata = self.metadata(Some(topic), PING_TIMEOUT).await?;
        if has_topic(&metadata, topic) {
            Ok(())
        } else {
            self.recover();
            Err(BusError::Unavailable(format!("topic {topic} is missing")))
        }
    }
}
