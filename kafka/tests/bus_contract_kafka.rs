//! The consumer contract suite against the Kafka adapter on a real Apache Kafka broker
//! (a private one per check; see `iot_kafka::test_broker`).

use std::sync::Arc;
use std::time::Duration;

use iot_common::metrics::Metrics;
use iot_kafka::test_broker::TestBroker;
use iot_kafka::{KafkaBus, KafkaConfig};

struct BrokerBus {
    bus: KafkaBus,
    _broker: TestBroker,
}

impl std::ops::Deref for BrokerBus {
    type Target = KafkaBus;
    fn deref(&self) -> &KafkaBus {
        &self.bus
    }
}

async fn fresh() -> Option<BrokerBus> {
    let broker = TestBroker::start("kafka consumer contract")?;
    let config = KafkaConfig {
        partitions: 3,
        session_timeout: Duration::from_secs(6),
        ..broker.config()
    };
    let bus = KafkaBus::new(config, Arc::new(Metrics::new())).unwrap_or_else(|e| panic!("{e}"));
    bus.ensure_topics()
        .await
        .unwrap_or_else(|e| panic!("topics: {e}"));
    Some(BrokerBus {
        bus,
        _broker: broker,
    })
}

iot_common::bus_contract_tests!(fresh());
