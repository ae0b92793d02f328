//! The producer readings and dead letters are sent with: its settings, and a handle that
//! every clone of the bus and every consumer's dead letters share, so a renewed producer
//! (see `KafkaBus::recover`) is the one all of them use next.

use std::sync::{Arc, RwLock};

use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;

use crate::config::KafkaConfig;

/// The producer settings readings are published with; the benchmark's raw producer uses
/// them too, so the comparison is like for like.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("{}-producer", config.client_id))
        // A 202 means durable: every in-sync replica has it, written once, in order.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        // Throughput: wait up to 5 ms to fill batches of up to 10,000 messages / 1 MB.
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set(
            "message.timeout.ms",
            config.message_timeout.as_millis().to_string(),
        )
        .set("topic.metadata.refresh.interval.ms", "10000");
    c
}

/// The current producer, replaceable. Cheap to clone.
#[derive(Clone)]
pub struct SharedProducer(Arc<RwLock<FutureProducer>>);

impl SharedProducer {
    pub fn new(producer: FutureProducer) -> Self {
        Self(Arc::new(RwLock::new(producer)))
    }

    /// The producer to send with now (a cheap handle to the client).
    pub fn current(&self) -> FutureProducer {
        match self.0.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Sends from now on with `fresh`; sends still waiting on the old one finish on their own.
    pub fn replace(&self, fresh: FutureProducer) {
        let mut slot = match self.0.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = fresh;
    }
}
