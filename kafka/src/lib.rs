//! The bus port's Kafka adapter, used by the distributed services (the meter publishes, the
//! sink consumes). Built on `rdkafka` (librdkafka). The wire format is in [`message`].
//!
//! Modules depend one way: [`bus`] (the port's adapter) builds a [`consumer`] per group and
//! hands it the [`dead_letters`] it owns; both send through the [`producer`] handle and map
//! client errors with [`error`].

pub mod bus;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod error;
pub mod message;
pub mod producer;

pub use bus::KafkaBus;
pub use config::{ConfigError, KafkaArgs, KafkaConfig};

#[cfg(feature = "test-broker")]
pub mod test_broker;
