//! The job and analysts' SQL on an Apache DataFusion Ballista cluster: our scheduler and
//! executor processes (`analytics scheduler`, `analytics executor`), which carry the codecs of
//! our plan parts, and the client a run or a query submits through when
//! `IOT_BALLISTA_SCHEDULER` names a scheduler. Only the `analytics` binary links this; the
//! all-in-one runs every plan in its own process.

pub mod codec;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use iot_common::store::Store;

pub use codec::AnalyticsCodec;

use crate::plan::ProfileQueryPlanner;
use crate::source::Cluster;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("ballista: {0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    #[error("{0}")]
    Config(String),
}

/// A scheduler to submit plans to, e.g. `df://analytics-scheduler:50050`.
#[derive(Debug)]
pub struct SchedulerClient {
    url: String,
    codec: Arc<AnalyticsCodec>,
}

impl SchedulerClient {
    pub fn new(url: String, store: Arc<dyn Store>) -> Self {
        Self {
            url,
            codec: Arc::new(AnalyticsCodec::new(store)),
        }
    }
}

#[async_trait]
impl Cluster for SchedulerClient {
    async fn context(&self, config: SessionConfig) -> Result<SessionContext, DataFusionError> {
        let config = config
            .upgrade_for_ballista()
            .with_ballista_logical_extension_codec(self.codec.clone())
            .with_ballista_physical_extension_codec(self.codec.clone());
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        SessionContext::remote_with_state(&self.url, state).await
    }

    fn describe(&self) -> String {
        format!("the Ballista cluster at {}", self.url)
    }
}

/// How a scheduler listens and what it tells executors about itself.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: SocketAddr,
    /// The host executors and clients reach it at.
    pub external_host: String,
    /// An executor silent this long is taken as lost and its tasks are run elsewhere.
    pub executor_timeout_s: u64,
}

/// Runs a scheduler until its process ends; its sessions plan the profile node, and its
/// codecs read and write our plan parts, over `store` (its scans ask the store for slices).
pub async fn run_scheduler(
    store: Arc<dyn Store>,
    options: SchedulerOptions,
) -> Result<(), ClusterError> {
    let codec = Arc::new(AnalyticsCodec::new(store));
    let mut config = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        bind_port: options.bind.port(),
        external_host: options.external_host,
        executor_timeout_seconds: options.executor_timeout_s,
        expire_dead_executor_interval_seconds: options.executor_timeout_s.clamp(1, 15),
        ..SchedulerConfig::default()
    };
    config.override_logical_codec = Some(codec.clone());
    config.override_physical_codec = Some(codec);
    config.override_session_builder = Some(Arc::new(|config: SessionConfig| {
        Ok(
            SessionStateBuilder::new_from_existing(default_session_builder(config)?)
                .with_query_planner(Arc::new(ProfileQueryPlanner))
                .build(),
        )
    }));
    let cluster = BallistaCluster::new_from_config(&config).await?;
    tracing::info!(addr = %options.bind, "listening (Ballista scheduler)");
    start_server(cluster, options.bind, Arc::new(config)).await?;
    Ok(())
}

/// How an executor reaches its scheduler and serves its shuffle files.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// `host:port` of the scheduler.
    pub scheduler: String,
    pub bind_host: String,
    /// Where other executors and clients fetch this one's results (Arrow Flight).
    pub flight_port: u16,
    pub grpc_port: u16,
    /// The host others reach it at.
    pub external_host: Option<String>,
    /// Tasks at a time.
    pub slots: usize,
    /// Shuffle files.
    pub work_dir: Option<String>,
    pub heartbeat_s: u64,
}

/// Runs an executor until its process ends; its codecs decode our scans over `store`, so it
/// reads its own slices straight from the store.
pub async fn run_executor(
    store: Arc<dyn Store>,
    options: ExecutorOptions,
) -> Result<(), ClusterError> {
    // The clients' spelling (df://host:port) works here too.
    let at = options
        .scheduler
        .split_once("://")
        .map_or(options.scheduler.as_str(), |(_, rest)| rest);
    let (host, port) = at
        .trim_end_matches('/')
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            ClusterError::Config(format!(
                "the scheduler `{}` is not host:port",
                options.scheduler
            ))
        })?;
    let codec = Arc::new(AnalyticsCodec::new(store));
    // Bound to one address, that is where the others reach it; bound to every address, the
    // scheduler takes the one it sees the executor connect from.
    let external_host = options
        .external_host
        .or_else(|| (options.bind_host != "0.0.0.0").then(|| options.bind_host.clone()));
    let config = ExecutorProcessConfig {
        scheduler_host: host,
        scheduler_port: port,
        scheduler_connect_timeout_seconds: 60,
        bind_host: options.bind_host,
        port: options.flight_port,
        grpc_port: options.grpc_port,
        external_host,
        vcores: options.slots.max(1),
        work_dir: options.work_dir,
        executor_heartbeat_interval_seconds: options.heartbeat_s.max(1),
        override_logical_codec: Some(codec.clone()),
        override_physical_codec: Some(codec),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(flight = config.port, grpc = config.grpc_port, scheduler = %options.scheduler, "listening (Ballista executor)");
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}
