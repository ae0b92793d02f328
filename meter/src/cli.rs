//! The `meter` command line: every setting a flag and an `IOT_*` variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use iot_cassandra::StoreArgs;
use iot_common::auth::{MeterTokens, SecretError};
use iot_common::domain::{AcceptWindow, DEFAULT_MAX_READING_AGE_DAYS, MeterId};
use iot_common::server::HttpArgs;
use iot_kafka::KafkaArgs;

use crate::IngestConfig;
use crate::service::MeterConfig;

#[derive(Debug, Parser)]
#[command(
    name = "meter",
    version,
    about = "Smart-meter ingest: authenticates meters, validates readings, publishes them to Kafka",
    long_about = "Accepts readings on POST /api/v1/readings (external listener) and answers 202 \
only once Kafka has acknowledged every reading (acks=all); 503 with Retry-After when Kafka \
does not answer within the publish timeout. Health and metrics are on the internal listener."
)]
pub struct Cli {
    /// Listener for meters (ingest).
    #[arg(long, env = "IOT_EXTERNAL_ADDR", default_value = "127.0.0.1:8081")]
    pub external_addr: SocketAddr,
    /// Listener for operators: /healthz, /readyz, /metrics. Keep it off the internet.
    #[arg(long, env = "IOT_INTERNAL_ADDR", default_value = "127.0.0.1:9081")]
    pub internal_addr: SocketAddr,
    /// Secret from which meter tokens are derived (at least 32 bytes); the same as the web
    /// service's.
    #[arg(long, env = "IOT_METER_SECRET", hide_env_values = true)]
    pub meter_secret: Option<String>,
    /// The secret being rotated out: its tokens are still accepted while it is set here.
    #[arg(long, env = "IOT_METER_SECRET_PREVIOUS", hide_env_values = true)]
    pub meter_secret_previous: Option<String>,
    /// Ingest requests parsed and published at once; more are shed with 503 + Retry-After.
    #[arg(long, env = "IOT_INGEST_MAX_IN_FLIGHT", default_value_t = crate::ingest::DEFAULT_MAX_IN_FLIGHT)]
    pub ingest_max_in_flight: usize,
    /// How often the list of revoked meters is read from the store, in milliseconds.
    #[arg(long, env = "IOT_REVOCATION_REFRESH_MS", default_value_t = 2_000)]
    pub revocation_refresh_ms: u64,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Where revoked meters are listed (Cassandra, or the embedded store file).
    #[command(flatten)]
    pub store: StoreArgs,
    /// How long a request waits for Kafka before the meter answers 503.
    #[arg(long, env = "IOT_PUBLISH_TIMEOUT_MS", default_value_t = 5_000)]
    pub publish_timeout_ms: u64,
    /// Oldest reading accepted, in days before now (the readings' retention): older ones
    /// get 422 on `ts`.
    #[arg(long, env = "IOT_MAX_READING_AGE_DAYS", default_value_t = DEFAULT_MAX_READING_AGE_DAYS)]
    pub max_reading_age_days: u32,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default).
    Run,
    /// Print the bearer token of a meter (derived from the meter secret).
    Token {
        /// Meter id, 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'.
        meter_id: MeterId,
    },
    /// Measure ingest throughput over HTTP into Kafka against the raw producer's.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Seconds each phase (HTTP, raw producer) runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Readings per request (and per raw producer round).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Requests (and raw producer rounds) in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Distinct meters the readings come from.
    #[arg(long, default_value_t = 200)]
    pub meters: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Kafka(#[from] iot_kafka::ConfigError),
    #[error(
        "IOT_METER_SECRET (or --meter-secret) is required: meter tokens are derived from it, \
         and the web service must use the same one"
    )]
    NoSecret,
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl Cli {
    /// The token keys: the current secret and, while rotating, the previous one.
    pub fn tokens(&self) -> Result<MeterTokens, CliError> {
        let secret = self
            .meter_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(CliError::NoSecret)?;
        Ok(MeterTokens::new(secret)?.with_previous(self.meter_secret_previous.as_deref())?)
    }

    /// The token a meter presents.
    pub fn token(&self, meter_id: &MeterId) -> Result<String, CliError> {
        Ok(self.tokens()?.issue(meter_id))
    }

    /// Everything but the revocation store, which the caller opens.
    pub fn meter_config(&self) -> Result<MeterConfig, CliError> {
        let kafka = self.kafka.resolve("meter")?;
        Ok(MeterConfig {
            external_addr: self.external_addr,
            internal_addr: self.internal_addr,
            tokens: self.tokens()?,
            revocations: None,
            revocation_refresh: Duration::from_millis(self.revocation_refresh_ms.max(100)),
            http: self.http.limits(),
            ingest: IngestConfig {
                publish_timeout: Duration::from_millis(self.publish_timeout_ms.max(1)),
                window: AcceptWindow {
                    max_age_days: self.max_reading_age_days,
                },
                max_in_flight: self.ingest_max_in_flight.max(1),
            },
            kafka,
        })
    }
}
