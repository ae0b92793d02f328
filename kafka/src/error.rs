//! How a Kafka client's error reads as the bus port's.

use iot_common::bus::BusError;
use rdkafka::error::KafkaError;

/// A settings mistake is a configuration error; anything else, the broker being away.
pub fn kafka_error(e: &KafkaError) -> BusError {
    match e {
        KafkaError::ClientConfig(..) => BusError::Config(e.to_string()),
        _ => BusError::Unavailable(e.to_string()),
    }
}
