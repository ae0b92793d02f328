//! `meter bench`: the meter's ingest throughput over HTTP into Kafka, next to the raw
//! producer's throughput into the same broker from the same machine, so the meter's
//! overhead (HTTP, JSON parsing, authentication, validation) reads as a ratio.
//!
//! Both phases send the same readings in the same shape: `concurrency` rounds in flight,
//! each of `batch` readings, each round waiting for the broker to acknowledge all of it. The
//! readings go to a fresh topic so the benchmark never mixes with real data.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::{DurationRound, TimeDelta, Utc};
use iot_common::Reading;
use iot_common::auth::MeterTokens;
use iot_common::bus::BusError;
use iot_common::domain::{IdError, MeterId};
use iot_kafka::KafkaConfig;
use iot_kafka::bus::{produce_readings, producer_config};
use iot_kafka::message::{SCHEMA_V1, encode};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinSet;

use crate::IngestConfig;
use crate::cli::BenchArgs;
use crate::service::{self, MeterConfig, MeterError};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start the meter")]
    Meter(#[from] MeterError),
    #[error("Kafka")]
    Bus(#[from] BusError),
    #[error("raw producer: {0}")]
    Producer(#[from] KafkaError),
    #[error("HTTP request failed")]
    Http(#[from] reqwest::Error),
    #[error("the meter refused a request: {0}")]
    Refused(String),
    #[error("bad benchmark settings: {0}")]
    Args(&'static str),
    #[error(transparent)]
    Secret(#[from] iot_common::auth::SecretError),
    #[error("bench meter id: {0}")]
    MeterId(#[from] IdError),
}

/// One phase's figures.
pub struct Phase {
    pub readings: u64,
    pub elapsed: Duration,
    /// Time per round (request or producer batch), sorted.
    pub latencies: Vec<Duration>,
}

impl Phase {
    pub fn per_second(&self) -> f64 {
        self.readings as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, q: f64) -> Duration {
        let last = self.latencies.len().saturating_sub(1);
        self.latencies
            .get(((last as f64) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "{:>10} readings in {:.1} s = {:>9.0} readings/s; per round p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} rounds)",
            self.readings,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(0.99)),
            ms(self.percentile(1.0)),
            self.latencies.len(),
        )
    }
}

pub struct Report {
    pub args: BenchArgs,
    pub brokers: String,
    pub http: Phase,
    pub raw: Phase,
}

impl Report {
    /// The meter's throughput as a share of the raw producer's.
    pub fn ratio(&self) -> f64 {
        self.http.per_second() / self.raw.per_second()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "broker {}; {} readings per round, {} rounds in flight, {} meters",
            self.brokers, self.args.batch, self.args.concurrency, self.args.meters
        )?;
        writeln!(f, "meter over HTTP: {}", self.http)?;
        writeln!(f, "raw producer:    {}", self.raw)?;
        write!(f, "meter / raw throughput: {:.2}", self.ratio())
    }
}

/// A message key (the meter id) and its encoded value.
type Keyed = (MeterId, Vec<u8>);

/// Rounds of readings, one per meter: the same data for both phases.
fn rounds(args: &BenchArgs) -> Result<Vec<Vec<Reading>>, IdError> {
    let base = Utc::now()
        .duration_trunc(TimeDelta::minutes(30))
        .unwrap_or_else(|_| Utc::now())
        - TimeDelta::days(1);
    (0..args.meters)
        .map(|m| {
            let meter_id = MeterId::parse(format!("BENCH{m:05}"))?;
            Ok((0..args.batch)
                .map(|i| Reading {
                    meter_id: meter_id.clone(),
                    ts: base - TimeDelta::minutes(30 * i as i64),
                    kwh: 0.1 + (m % 17) as f64 * 0.01 + (i % 48) as f64 * 0.005,
                    interval_s: 1800,
                })
                .collect())
        })
        .collect()
}

pub async fn run(kafka: KafkaConfig, args: BenchArgs) -> Result<Report, BenchError> {
    if args.batch == 0 || args.batch > crate::MAX_BATCH {
        return Err(BenchError::Args("--batch must be between 1 and 10000"));
    }
    if args.concurrency == 0 || args.meters == 0 || args.seconds == 0 {
        return Err(BenchError::Args(
            "--concurrency, --meters and --seconds must be at least 1",
        ));
    }
    let topic = format!("bench-readings-{}", Utc::now().timestamp_millis());
    let kafka = KafkaConfig {
        dlq_topic: format!("{topic}-dlq"),
        topic,
        ..kafka
    };
    let brokers = kafka.brokers.clone();
    let tokens = MeterTokens::new(&iot_common::auth::random_secret())?;
    let meter = service::start(MeterConfig {
        external_addr: ([127, 0, 0, 1], 0).into(),
        internal_addr: ([127, 0, 0, 1], 0).into(),
        tokens: tokens.clone(),
        revocations: None,
        revocation_refresh: Duration::from_secs(2),
        http: iot_common::server::HttpLimits::default(),
        ingest: IngestConfig {
            publish_timeout: Duration::from_secs(30),
            ..IngestConfig::default()
        },
        kafka: kafka.clone(),
    })
    .await?;
    meter.bus.ensure_topics().await?;
    let data = Arc::new(rounds(&args)?);
    let duration = Duration::from_secs(args.seconds);

    tracing::info!(topic = %kafka.topic, "benchmark: meter over HTTP");
    let requests: Arc<Vec<(String, Bytes)>> = Arc::new(
        data.iter()
            .map(|round| {
                let token = tokens.issue(&round[0].meter_id);
                let body = serde_json::to_vec(round).unwrap_or_default();
                (token, Bytes::from(body))
            })
            .collect(),
    );
    let url = format!("http://{}/api/v1/readings", meter.external);
    let client = reqwest::Client::new();
    let http = drive(&args, duration, move |i| {
        let (client, url, requests) = (client.clone(), url.clone(), requests.clone());
        async move {
            let (token, body) = &requests[i % requests.len()];
            let res = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            if res.status() != reqwest::StatusCode::ACCEPTED {
                return Err(BenchError::Refused(format!(
                    "{}: {}",
                    res.status(),
                    res.text().await.unwrap_or_default()
                )));
            }
            Ok(())
        }
    })
    .await?;
    meter.service.stop(Duration::from_secs(10)).await;

    tracing::info!(topic = %kafka.topic, "benchmark: raw producer");
    let producer: FutureProducer = producer_config(&kafka).create()?;
    let encoded: Arc<Vec<Vec<Keyed>>> = Arc::new(
        data.iter()
            .map(|round| {
                round
                    .iter()
                    .map(|r| (r.meter_id.clone(), encode(r)))
                    .collect()
            })
            .collect(),
    );
    let topic = kafka.topic.clone();
    let raw = drive(&args, duration, move |i| {
        let (producer, encoded, topic) = (producer.clone(), encoded.clone(), topic.clone());
        async move {
            let round = &encoded[i % encoded.len()];
            let messages: Vec<(&str, &[u8], &'static str)> = round
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice(), SCHEMA_V1))
                .collect();
            produce_readings(&producer, &topic, messages).await?;
            Ok(())
        }
    })
    .await?;
    Ok(Report {
        args,
        brokers,
        http,
        raw,
    })
}

/// Runs `round(i)` from `concurrency` workers for `duration` and times each round.
async fn drive<F, Fut>(args: &BenchArgs, duration: Duration, round: F) -> Result<Phase, BenchError>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BenchError>> + Send,
{
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for w in 0..args.concurrency {
        let (round, step) = (round.clone(), args.concurrency);
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = w;
            while started.elapsed() < duration {
                let t = Instant::now();
                round(i).await?;
                latencies.push(t.elapsed());
                i += step;
            }
            Ok::<_, BenchError>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = workers.join_next().await {
        latencies.extend(done.map_err(|_| BenchError::Refused("worker panicked".into()))??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Phase {
        readings: latencies.len() as u64 * args.batch as u64,
        elapsed,
        latencies,
    })
}
