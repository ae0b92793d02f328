//! The meter as a service of its own: ingest on the external listener, health and metrics
//! on the internal one, publishing to Kafka.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use iot_common::auth::{MeterAuth, MeterTokens};
use iot_common::bus::{Bus, BusError};
use iot_common::http::{Health, fallback, health_routes};
use iot_common::metrics::Metrics;
use iot_common::server::HttpLimits;
use iot_common::service::{ListenError, Service};
use iot_common::store::Store;
use iot_kafka::{KafkaBus, KafkaConfig};

use crate::{IngestConfig, MeterState, router};

#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    #[error("cannot set up Kafka")]
    Bus(#[from] BusError),
    #[error(transparent)]
    Listen(#[from] ListenError),
}

#[derive(Clone)]
pub struct MeterConfig {
    pub external_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    /// The secrets meter tokens are checked against (current and, while rotating, previous).
    pub tokens: MeterTokens,
    /// Where revoked meters are listed, and how often to read the list again; `None`: no
    /// revocations (tests of ingest alone).
    pub revocations: Option<Arc<dyn Store>>,
    pub revocation_refresh: Duration,
    /// Timeouts of both listeners.
    pub http: HttpLimits,
    /// Ingest rules: how long a request waits for Kafka's acknowledgement before the meter
    /// answers 503, and how readings may be dated.
    pub ingest: IngestConfig,
    pub kafka: KafkaConfig,
}

pub struct RunningMeter {
    pub external: SocketAddr,
    pub internal: SocketAddr,
    pub bus: KafkaBus,
    pub metrics: Arc<Metrics>,
    pub service: Service,
}

/// Binds both listeners and starts serving. The topics are set up in the background: until
/// the broker answers, requests get 503 and `/readyz` says why.
pub async fn start(config: MeterConfig) -> Result<RunningMeter, MeterError> {
    let metrics = Arc::new(Metrics::new());
    let kafka = KafkaConfig {
        // Nothing outlives the request that is waiting for it by much.
        message_timeout: config.ingest.publish_timeout.max(Duration::from_secs(1)),
        ..config.kafka
    };
    let bus = KafkaBus::new(kafka, metrics.clone())?;
    let mut service = Service::with_limits(config.http);
    let shutdown = service.shutdown_token();
    let setup = bus.clone();
    service.spawn("topic setup", async move {
        setup.ensure_topics_until_ready(&shutdown).await;
        Ok::<(), std::convert::Infallible>(())
    });

    let auth = MeterAuth::new(config.tokens);
    if let Some(store) = config.revocations {
        let refresh = auth.revocations.clone().keep_fresh(
            store,
            config.revocation_refresh,
            service.shutdown_token(),
        );
        service.spawn("revocations", refresh);
    }
    let shared: Arc<dyn Bus> = Arc::new(bus.clone());
    let external = router(MeterState::new(
        shared.clone(),
        auth,
        metrics.clone(),
        config.ingest,
    ))
    .fallback(fallback);
    let internal = Router::new()
        .merge(health_routes(Health {
            metrics: metrics.clone(),
            store: None,
            bus: Some(shared),
        }))
        .fallback(fallback);
    let external = service
        .listen("external", config.external_addr, external)
        .await?;
    let internal = service
        .listen("internal", config.internal_addr, internal)
        .await?;
    Ok(RunningMeter {
        external,
        internal,
        bus,
        metrics,
        service,
    })
}
