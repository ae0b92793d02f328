//! The `simulator` command line: every setting a flag and an `IOT_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use iot_kafka::KafkaArgs;

use crate::SinkConfig;
use crate::service::SinkServiceConfig;

#[derive(Debug, Parser)]
#[command(
    name = "simulator",
    version,
    about = "The smart-meter simulator's services for the distributed stack"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume readings from Kafka in a consumer group and write them to the store,
    /// committing offsets only after each write.
    Sink(SinkArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Listener for operators: /healthz, /readyz, /metrics.
    #[arg(long, env = "IOT_INTERNAL_ADDR", default_value = "127.0.0.1:9082")]
    pub internal_addr: SocketAddr,
    /// Directory of the store (SQLite `store.sqlite`); sinks on one machine may share it.
    #[arg(long, env = "IOT_DATA_DIR", default_value = "iot-data")]
    pub data_dir: PathBuf,
    /// Consumer group: sinks in the same group share the topic's partitions.
    #[arg(long, env = "IOT_KAFKA_GROUP", default_value = "iot-sink")]
    pub kafka_group: String,
    /// Most readings in one store write.
    #[arg(long, env = "IOT_SINK_BATCH", default_value_t = 5_000)]
    pub sink_batch: usize,
    /// Longest a reading waits for its batch to fill, in milliseconds.
    #[arg(long, env = "IOT_SINK_WAIT_MS", default_value_t = 200)]
    pub sink_wait_ms: u64,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

impl SinkArgs {
    pub fn config(&self) -> Result<SinkServiceConfig, iot_kafka::ConfigError> {
        Ok(SinkServiceConfig {
            internal_addr: self.internal_addr,
            data_dir: self.data_dir.clone(),
            kafka: self.kafka.resolve("sink")?,
            sink: SinkConfig {
                group: self.kafka_group.clone(),
                max_batch: self.sink_batch.max(1),
                max_wait: Duration::from_millis(self.sink_wait_ms),
            },
        })
    }
}
