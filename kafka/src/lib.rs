//! The bus port's Kafka adapter, used by the distributed services (the meter publishes, the
//! sink consumes). Built on `rdkafka` (librdkafka). The wire format is in [`message`].

pub mod bus;
pub mod config;
pub mod consumer;
pub mod message;

pub use bus::KafkaBus;
pub use config::{ConfigError, KafkaArgs, KafkaConfig};

#[cfg(feature = "test-broker")]
pub mod test_broker;
