//! The sink as a service of its own: Kafka in, the store out, health and metrics on the
//! internal listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use iot_common::bus::{Bus, BusError};
use iot_common::http::{Health, fallback, health_routes};
use iot_common::metrics::Metrics;
use iot_common::service::{ListenError, Service};
use iot_common::store::sqlite::SqliteStore;
use iot_common::store::{Store, StoreError};
use iot_kafka::{KafkaBus, KafkaConfig};

use crate::{SinkConfig, run_sink};

#[derive(Debug, thiserror::Error)]
pub enum SinkServiceError {
    #[error("cannot open the store in {dir}")]
    Store {
        dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot create the data directory {dir}")]
    DataDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up Kafka")]
    Bus(#[from] BusError),
    #[error(transparent)]
    Listen(#[from] ListenError),
}

#[derive(Debug, Clone)]
pub struct SinkServiceConfig {
    pub internal_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub kafka: KafkaConfig,
    pub sink: SinkConfig,
}

pub struct RunningSink {
    pub internal: SocketAddr,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub service: Service,
}

/// Opens the store and starts consuming once the broker answers.
pub async fn start_sink(config: SinkServiceConfig) -> Result<RunningSink, SinkServiceError> {
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| SinkServiceError::DataDir {
        dir: dir.clone(),
        source,
    })?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&SqliteStore::path_in(&dir))
            .map_err(|source| SinkServiceError::Store { dir, source })?,
    );
    let metrics = Arc::new(Metrics::new());
    let kafka = KafkaBus::new(config.kafka, metrics.clone())?;
    let bus: Arc<dyn Bus> = Arc::new(kafka.clone());
    let mut service = Service::new();
    let shutdown = service.shutdown_token();
    let (s, m) = (store.clone(), metrics.clone());
    let b = bus.clone();
    service.spawn("sink", async move {
        if !kafka.ensure_topics_until_ready(&shutdown).await {
            return Ok(());
        }
        run_sink(b, s, m, config.sink, shutdown).await
    });
    let internal = Router::new()
        .merge(health_routes(Health {
            metrics: metrics.clone(),
            store: Some(store.clone()),
            bus: Some(bus),
        }))
        .fallback(fallback);
    let internal = service
        .listen("internal", config.internal_addr, internal)
        .await?;
    Ok(RunningSink {
        internal,
        store,
        metrics,
        service,
    })
}
