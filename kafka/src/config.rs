//! Settings of the Kafka adapter, shared by every binary that talks to Kafka.

use std::time::Duration;

use clap::Args;

/// Kafka settings as flags and `IOT_KAFKA_*` variables.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port. Required: the embedded bus only
    /// exists inside the all-in-one `iot-demo`.
    #[arg(long, env = "IOT_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Topic the readings travel on.
    #[arg(long, env = "IOT_KAFKA_TOPIC", default_value = "meter-readings")]
    pub kafka_topic: String,
    /// Topic for messages the sink cannot read.
    #[arg(
        long,
        env = "IOT_KAFKA_DLQ_TOPIC",
        default_value = "meter-readings-dlq"
    )]
    pub kafka_dlq_topic: String,
    /// Partitions of the topics when this service creates them: the most sinks that can
    /// share the work.
    #[arg(long, env = "IOT_KAFKA_PARTITIONS", default_value_t = 6)]
    pub kafka_partitions: i32,
    /// Replication factor of the topics when this service creates them.
    #[arg(long, env = "IOT_KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,
    /// Seconds the consumer group waits for a silent member (a crashed sink) before handing
    /// its partitions to the others. Kafka accepts 6 to 300 by default.
    #[arg(long, env = "IOT_KAFKA_SESSION_TIMEOUT_S", default_value_t = 10)]
    pub kafka_session_timeout_s: u64,
}

/// Why a Kafka setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "IOT_KAFKA_BROKERS (or --kafka-brokers) is required: this service talks to Kafka. \
         The embedded bus exists only inside the all-in-one `iot-demo`."
    )]
    NoBrokers,
    #[error("{0} must be at least 1, got {1}")]
    NotPositive(&'static str, i32),
}

impl KafkaArgs {
    /// Resolves the flags into a [`KafkaConfig`], refusing what cannot work.
    pub fn resolve(&self, client_id: &str) -> Result<KafkaConfig, ConfigError> {
        let brokers = self
            .kafka_brokers
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .ok_or(ConfigError::NoBrokers)?;
        if self.kafka_partitions < 1 {
            return Err(ConfigError::NotPositive(
                "IOT_KAFKA_PARTITIONS",
                self.kafka_partitions,
            ));
        }
        if self.kafka_replication < 1 {
            return Err(ConfigError::NotPositive(
                "IOT_KAFKA_REPLICATION",
                self.kafka_replication,
            ));
        }
        if self.kafka_session_timeout_s < 1 {
            return Err(ConfigError::NotPositive("IOT_KAFKA_SESSION_TIMEOUT_S", 0));
        }
        Ok(KafkaConfig {
            brokers: brokers.to_string(),
            client_id: client_id.to_string(),
            topic: self.kafka_topic.clone(),
            dlq_topic: self.kafka_dlq_topic.clone(),
            partitions: self.kafka_partitions,
            replication: self.kafka_replication,
            session_timeout: Duration::from_secs(self.kafka_session_timeout_s),
            ..KafkaConfig::new(brokers)
        })
    }
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    /// Shown in the broker's logs and metrics.
    pub client_id: String,
    pub topic: String,
    pub dlq_topic: String,
    pub partitions: i32,
    pub replication: i32,
    /// How long a produced message may wait for the broker before it fails. The meter's own
    /// deadline answers 503 sooner; this bounds what piles up in memory while the broker is
    /// away.
    pub message_timeout: Duration,
    /// How long the consumer group waits for a silent member before giving its partitions to
    /// the others: the pause a crashed sink causes.
    pub session_timeout: Duration,
}

impl KafkaConfig {
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            client_id: "iot".into(),
            topic: "meter-readings".into(),
            dlq_topic: "meter-readings-dlq".into(),
            partitions: 6,
            replication: 1,
            message_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
        }
    }
}
