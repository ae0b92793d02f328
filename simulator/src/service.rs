//! The sink, the live aggregator and the fleet as services of their own, with health and
//! metrics on an internal listener. The sink: Kafka in, the store out. The live aggregator:
//! Kafka in, the live slots out. The fleet: households posting to the meter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use iot_cassandra::StoreArgs;
use iot_common::bus::{Bus, BusError};
use iot_common::http::{Health, fallback, health_routes};
use iot_common::metrics::Metrics;
use iot_common::service::{ListenError, Service};
use iot_common::store::Store;
use iot_kafka::{KafkaBus, KafkaConfig};
use tokio_util::sync::CancellationToken;

use crate::backfill::wait_until_stored;
use crate::{SinkConfig, run_sink};

/// How long a service waits at start-up for a store that is not answering yet.
pub const STORE_PATIENCE: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum SinkServiceError {
    #[error("cannot open the store: {0}")]
    Store(#[from] iot_cassandra::select::SelectError),
    #[error("cannot set up Kafka")]
    Bus(#[from] BusError),
    #[error(transparent)]
    Listen(#[from] ListenError),
}

#[derive(Debug, Clone)]
pub struct SinkServiceConfig {
    pub internal_addr: SocketAddr,
    pub store: StoreArgs,
    pub kafka: KafkaConfig,
    pub sink: SinkConfig,
}

/// A running consumer service: the sink or the live aggregator.
pub struct RunningSink {
    pub internal: SocketAddr,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub service: Service,
}

/// Opens the store and starts the sink once the broker answers.
pub async fn start_sink(config: SinkServiceConfig) -> Result<RunningSink, SinkServiceError> {
    let sink = config.sink;
    start_consumer(
        "sink",
        config.internal_addr,
        &config.store,
        config.kafka,
        |bus, store, metrics, shutdown| run_sink(bus, store, metrics, sink, shutdown),
    )
    .await
}

#[derive(Debug, Clone)]
pub struct LiveServiceConfig {
    pub internal_addr: SocketAddr,
    pub store: StoreArgs,
    pub kafka: KafkaConfig,
    pub live: crate::LiveConfig,
}

/// Opens the store and starts the live aggregator once the broker answers.
pub async fn start_live(config: LiveServiceConfig) -> Result<RunningSink, SinkServiceError> {
    let live = config.live;
    start_consumer(
        "live",
        config.internal_addr,
        &config.store,
        config.kafka,
        |bus, store, _, shutdown| crate::run_live(bus, store, live, shutdown),
    )
    .await
}

/// A consumer of the readings topic as a service of its own: the store opened, the task
/// `run` started once the broker answers, health and metrics on the internal listener.
async fn start_consumer<F, Fut, E>(
    name: &'static str,
    internal_addr: SocketAddr,
    store: &StoreArgs,
    kafka: KafkaConfig,
    run: F,
) -> Result<RunningSink, SinkServiceError>
where
    F: FnOnce(Arc<dyn Bus>, Arc<dyn Store>, Arc<Metrics>, CancellationToken) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + 'static,
{
    let store = store.open_patiently(STORE_PATIENCE).await?;
    let metrics = Arc::new(Metrics::new());
    let kafka = KafkaBus::new(kafka, metrics.clone())?;
    let bus: Arc<dyn Bus> = Arc::new(kafka.clone());
    let mut service = Service::new();
    let shutdown = service.shutdown_token();
    let (s, m, b) = (store.clone(), metrics.clone(), bus.clone());
    service.spawn(name, async move {
        if !kafka.ensure_topics_until_ready(&shutdown).await {
            return Ok(());
        }
        run(b, s, m, shutdown).await
    });
    let internal = Router::new()
        .merge(health_routes(Health {
            metrics: metrics.clone(),
            store: Some(store.clone()),
            bus: Some(bus),
        }))
        .fallback(fallback);
    let internal = service.listen("internal", internal_addr, internal).await?;
    Ok(RunningSink {
        internal,
        store,
        metrics,
        service,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FleetServiceError {
    #[error("the fleet signs its meters' tokens with IOT_METER_SECRET: {0}")]
    Secret(#[from] iot_common::auth::SecretError),
    #[error(transparent)]
    Regions(#[from] iot_common::regions::RegionError),
    #[error("cannot open the store: {0}")]
    Store(#[from] iot_cassandra::select::SelectError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error(transparent)]
    Listen(#[from] ListenError),
}

pub struct RunningFleet {
    pub internal: SocketAddr,
    pub service: Service,
}

/// Registers the fleet's meters and starts posting.
pub async fn start_fleet(
    internal_addr: SocketAddr,
    regions: Option<&std::path::Path>,
    meter_secret: &str,
    store: &StoreArgs,
    config: crate::FleetConfig,
) -> Result<RunningFleet, FleetServiceError> {
    let tokens = iot_common::auth::MeterTokens::new(meter_secret)?;
    let regions = iot_common::regions::Regions::load(regions)?;
    let store = store.open_patiently(STORE_PATIENCE).await?;
    let fleet = crate::Fleet::build(&regions, config)?;
    fleet.register(store.as_ref()).await?;
    tracing::info!(meters = fleet.households().len(), "fleet registered");
    let metrics = Arc::new(Metrics::new());
    let mut service = Service::new();
    let status = fleet.backfill_status();
    let (backfilled_tx, backfilled) = tokio::sync::oneshot::channel();
    let (m, stop) = (metrics.clone(), service.shutdown_token());
    service.spawn("fleet", async move {
        match fleet.run(tokens, m, stop, Some(backfilled_tx)).await {
            Ok(()) | Err(crate::fleet::FleetError::Cancelled) => Ok(()),
            Err(e) => Err(e),
        }
    });
    let (s, st, stop) = (store.clone(), status.clone(), service.shutdown_token());
    service.spawn("backfill check", async move {
        // An error means the fleet stopped before its backfill was acknowledged; it says why.
        if let Ok(backfill) = backfilled.await {
            wait_until_stored(s.as_ref(), backfill, &st, &stop).await;
        }
        Ok::<(), std::convert::Infallible>(())
    });
    let internal = Router::new()
        .merge(health_routes(Health {
            metrics,
            store: Some(store),
            bus: None,
        }))
        .merge(status.router())
        .fallback(fallback);
    let internal = service.listen("internal", internal_addr, internal).await?;
    Ok(RunningFleet { internal, service })
}
