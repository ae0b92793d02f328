//! The `simulator` command line: every setting a flag and an `IOT_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use iot_cassandra::StoreArgs;
use iot_kafka::KafkaArgs;

use crate::fleet_flags::FleetFlags;
use crate::service::{LiveServiceConfig, SinkServiceConfig};
use crate::{LiveConfig, SinkConfig};

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
    /// Keep each region's half-hour figures of the last 48 hours from the readings topic
    /// (a consumer group of its own), writing them to the store every few seconds and
    /// committing offsets only after.
    Live(LiveArgs),
    /// Run the virtual households: register their meters in the store, backfill their
    /// history through the meter service, then post each interval as it ends.
    Fleet(FleetArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Listener for operators: /healthz, /readyz, /metrics.
    #[arg(long, env = "IOT_INTERNAL_ADDR", default_value = "127.0.0.1:9084")]
    pub internal_addr: SocketAddr,
    /// Base URL the readings are posted to: the meter service or the edge in front of it.
    #[arg(long, env = "IOT_METER_URL", default_value = "http://127.0.0.1:8081")]
    pub meter_url: String,
    /// Secret the meter service derives tokens from; the fleet signs its meters' tokens
    /// with it.
    #[arg(long, env = "IOT_METER_SECRET", hide_env_values = true)]
    pub meter_secret: String,
    /// Region boundaries (GeoJSON); default: the embedded 33 London boroughs.
    #[arg(long, env = "IOT_REGIONS")]
    pub regions: Option<PathBuf>,
    #[command(flatten)]
    pub fleet: FleetFlags,
    /// Meter ids are this prefix and a six-digit number.
    #[arg(long, env = "IOT_FLEET_PREFIX", default_value = "MAC")]
    pub id_prefix: String,
    /// Time zone of the households' daily routine (IANA name).
    #[arg(long, env = "IOT_TZ", default_value = "Europe/London")]
    pub tz: chrono_tz::Tz,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    /// Listener for operators: /healthz, /readyz, /metrics.
    #[arg(long, env = "IOT_INTERNAL_ADDR", default_value = "127.0.0.1:9082")]
    pub internal_addr: SocketAddr,
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
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// Listener for operators: /healthz, /readyz, /metrics.
    #[arg(long, env = "IOT_INTERNAL_ADDR", default_value = "127.0.0.1:9085")]
    pub internal_addr: SocketAddr,
    /// Consumer group: aggregators in the same group share the topic's partitions.
    #[arg(long, env = "IOT_LIVE_GROUP", default_value = "iot-live")]
    pub live_group: String,
    /// How often what changed is written to the store, in milliseconds.
    #[arg(long, env = "IOT_LIVE_FLUSH_MS", default_value_t = 2_000)]
    pub live_flush_ms: u64,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl LiveArgs {
    pub fn config(&self) -> Result<LiveServiceConfig, iot_kafka::ConfigError> {
        Ok(LiveServiceConfig {
            internal_addr: self.internal_addr,
            store: self.store.clone(),
            kafka: self.kafka.resolve("live")?,
            live: LiveConfig {
                group: self.live_group.clone(),
                flush_every: Duration::from_millis(self.live_flush_ms.max(100)),
                ..LiveConfig::default()
            },
        })
    }
}

impl SinkArgs {
    pub fn config(&self) -> Result<SinkServiceConfig, iot_kafka::ConfigError> {
        Ok(SinkServiceConfig {
            internal_addr: self.internal_addr,
            store: self.store.clone(),
            kafka: self.kafka.resolve("sink")?,
            sink: SinkConfig {
                group: self.kafka_group.clone(),
                max_batch: self.sink_batch.max(1),
                max_wait: Duration::from_millis(self.sink_wait_ms),
            },
        })
    }
}

impl FleetArgs {
    pub fn fleet_config(&self) -> crate::FleetConfig {
        crate::FleetConfig {
            id_prefix: self.id_prefix.clone(),
            tz: self.tz,
            ..self.fleet.config(&self.meter_url)
        }
    }
}
