//! Assembles the services on the embedded adapters and runs them until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use iot_analytics::api::run_request;
use iot_analytics::api::{RunsState, runs_router};
use iot_analytics::job::RunRequest;
use iot_analytics::sql::{SqlEngine, SqlLimits, SqlSource};
use iot_analytics::sql_output::{AnswerFormat, answer_bytes};
use iot_analytics::{Analytics, JobConfig};
use iot_common::auth::{MeterAuth, MeterTokens, StaticToken};
use iot_common::bus::Bus;
use iot_common::bus::sqlite_log::SqliteLog;
use iot_common::domain::Trigger;
use iot_common::http::{Health, fallback, health_routes};
use iot_common::metrics::Metrics;
use iot_common::problem::ApiError;
use iot_common::regions::Regions;
use iot_common::server::HttpLimits;
use iot_common::service::{ListenError, Service};
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_meter::{IngestConfig, MeterState};
use iot_simulator::backfill::{Backfill, BackfillStatus};
use iot_simulator::{Fleet, FleetConfig, LiveConfig, SinkConfig, run_live, run_sink};
use iot_web::{
    AnalyticsError, AnalyticsPort, FleetProgress, QueryAnswer, RecomputeRequest, WebState,
};
use tokio_util::sync::CancellationToken;

/// How often the revocation list is read again (a `meters revoke` run by another process).
const REVOCATION_REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Regions(#[from] iot_common::regions::RegionError),
    #[error("cannot open the store")]
    Store(#[from] iot_common::store::StoreError),
    #[error("cannot open the bus log")]
    Bus(#[from] iot_common::bus::BusError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot start the query runtime")]
    QueryRuntime(#[source] std::io::Error),
    #[error("cannot start the fleet")]
    Fleet(#[from] iot_simulator::fleet::FleetError),
}

/// Everything `start` needs, already resolved (secrets loaded, paths chosen).
#[derive(Clone)]
pub struct AppConfig {
    pub data_dir: PathBuf,
    pub regions: Option<PathBuf>,
    /// Meter token keys (current and, while rotating, previous secret).
    pub tokens: MeterTokens,
    pub analyst_token: String,
    /// Timeouts of both listeners.
    pub http: HttpLimits,
    /// Marks the console cookie `Secure` (behind TLS).
    pub cookie_secure: bool,
    pub external_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    /// The meter's rules: publish deadline, how readings may be dated.
    pub ingest: IngestConfig,
    /// The fleet to run; `meter_url` is filled in from the external listener.
    pub fleet: Option<FleetConfig>,
    pub analytics: JobConfig,
    /// What one analyst's SQL query may use.
    pub sql: SqlLimits,
    /// The tariffs the estimator and a household's page price energy on.
    pub tariffs: iot_web::tariffs::Tariffs,
    /// Time between scheduled recomputes.
    pub recompute_every: Duration,
    /// A meter is silent after this long without a reading.
    pub silent_after: Duration,
}

pub struct RunningApp {
    pub external: SocketAddr,
    pub internal: SocketAddr,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    service: Service,
}

impl RunningApp {
    /// A token that stops the app when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.service.shutdown_token()
    }

    /// Stops everything: listeners stop accepting and drain, the fleet stops posting, the
    /// sink commits what it wrote. Gives up on stragglers after `grace`.
    pub async fn stop(self, grace: Duration) {
        self.service.stop(grace).await;
    }
}

/// The embedded adapters and what the services share, opened once.
struct Parts {
    regions: Arc<Regions>,
    store: Arc<dyn Store>,
    log: SqliteLog,
    bus: Arc<dyn Bus>,
    analytics: Arc<Analytics>,
    sql: Arc<SqlEngine>,
    /// The fleet's backfill status, once a fleet is started.
    fleet_status: Arc<OnceLock<BackfillStatus>>,
    metrics: Arc<Metrics>,
    /// One revocation list for ingest and the web: a revocation made here takes effect at
    /// once; one made by the `meters revoke` command arrives with the next refresh.
    auth: MeterAuth,
}

/// Opens the stores, binds both listeners and starts every service.
pub async fn start(config: AppConfig) -> Result<RunningApp, AppError> {
    let parts = open(&config).await?;
    let mut service = Service::with_limits(config.http);
    let shutdown = service.shutdown_token();
    let refresh = parts.auth.revocations.clone().keep_fresh(
        parts.store.clone(),
        REVOCATION_REFRESH,
        shutdown.clone(),
    );
    service.spawn("revocations", refresh);
    let (external, internal, web) = routers(&parts, &config);
    service.spawn(
        "silent meters",
        iot_web::silence::watch(web.watched(), service.shutdown_token()),
    );
    let ext_addr = service
        .listen("external", config.external_addr, external)
        .await?;
    let int_addr = service
        .listen("internal", config.internal_addr, internal)
        .await?;
    let sink = run_sink(
        parts.bus.clone(),
        parts.store.clone(),
        parts.metrics.clone(),
        SinkConfig::default(),
        shutdown.clone(),
    );
    service.spawn("sink", sink);
    let live = run_live(
        parts.bus.clone(),
        parts.store.clone(),
        LiveConfig::default(),
        shutdown.clone(),
    );
    service.spawn("live", live);
    let fleet = config.fleet.clone().filter(|f| f.meters > 0);
    let backfilled = start_fleet(&mut service, &parts, &config.tokens, fleet, ext_addr).await?;
    let (analytics, log, status) = (
        parts.analytics.clone(),
        parts.log.clone(),
        parts.fleet_status.clone(),
    );
    service.spawn("recompute", async move {
        let stored = Stored { log, status };
        recompute(
            analytics,
            stored,
            backfilled,
            config.recompute_every,
            shutdown,
        )
        .await;
        Ok::<(), std::convert::Infallible>(())
    });
    Ok(RunningApp {
        external: ext_addr,
        internal: int_addr,
        store: parts.store,
        metrics: parts.metrics,
        service,
    })
}

#[tracing::instrument(skip_all, fields(data_dir = %config.data_dir.display()))]
async fn open(config: &AppConfig) -> Result<Parts, AppError> {
    let regions = Arc::new(Regions::load(config.regions.as_deref())?);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&SqliteStore::path_in(&config.data_dir))?);
    let log = SqliteLog::open(&config.data_dir.join("bus.sqlite"))?;
    log.register_group(&LiveConfig::default().group).await?;
    let auth = MeterAuth::new(config.tokens.clone());
    auth.revocations.refresh(store.as_ref()).await?;
    Ok(Parts {
        bus: Arc::new(log.clone()),
        analytics: Analytics::new(store.clone(), config.analytics.clone()),
        sql: Arc::new(
            SqlEngine::new(
                SqlSource::Store(store.clone()),
                config.sql,
                config.analytics.threads,
            )
            .map_err(AppError::QueryRuntime)?,
        ),
        metrics: Arc::new(Metrics::new()),
        fleet_status: Arc::default(),
        regions,
        store,
        log,
        auth,
    })
}

/// The external listener's routes (ingest and the residents' web) and the internal one's
/// (health, the operators' web, the runs API).
fn routers(parts: &Parts, config: &AppConfig) -> (Router, Router, WebState) {
    let web = WebState::new(
        parts.store.clone(),
        parts.regions.clone(),
        parts.auth.clone(),
        StaticToken::new(&config.analyst_token),
        config.tariffs.clone(),
        Some(Arc::new(InProcessAnalytics {
            job: parts.analytics.clone(),
            sql: parts.sql.clone(),
        })),
    )
    .secure_cookies(config.cookie_secure)
    .with_fleet(Arc::new(InProcessFleet(parts.fleet_status.clone())))
    .silent_after(config.silent_after)
    .with_metrics(parts.metrics.clone())
    .with_api_docs(api_docs());
    let meter = MeterState::new(
        parts.bus.clone(),
        parts.auth.clone(),
        parts.metrics.clone(),
        config.ingest.clone(),
    );
    let external = iot_meter::router(meter)
        .merge(iot_web::external_router(web.clone()))
        .fallback(fallback);
    let internal = Router::new()
        .merge(health_routes(Health {
            metrics: parts.metrics.clone(),
            store: Some(parts.store.clone()),
            bus: Some(parts.bus.clone()),
        }))
        .merge(iot_web::internal_router(web.clone()))
        .merge(runs_router(RunsState {
            analytics: parts.analytics.clone(),
            analyst_token: StaticToken::new(&config.analyst_token),
            sql: parts.sql.clone(),
        }))
        .fallback(fallback);
    (external, internal, web)
}

/// The OpenAPI documents of every route the all-in-one serves.
pub fn api_docs() -> iot_web::api_docs::ApiDocs {
    iot_web::api_docs::ApiDocs::new(iot_meter::ingest::openapi(), iot_analytics::api::openapi())
}

/// Registers the fleet's meters and starts it posting to the external listener. The
/// receiver hears when its backfill is acknowledged (at once without a fleet).
async fn start_fleet(
    service: &mut Service,
    parts: &Parts,
    tokens: &MeterTokens,
    fleet: Option<FleetConfig>,
    ext_addr: SocketAddr,
) -> Result<tokio::sync::oneshot::Receiver<Backfill>, AppError> {
    let (backfilled_tx, backfilled) = tokio::sync::oneshot::channel();
    let Some(mut fleet_config) = fleet else {
        // Nothing to wait for: the receiver hears the sender go.
        drop(backfilled_tx);
        return Ok(backfilled);
    };
    fleet_config.meter_url = format!("http://{ext_addr}");
    let fleet = Fleet::build(&parts.regions, fleet_config)?;
    fleet.register(parts.store.as_ref()).await?;
    // Taken once: the web's status page follows this fleet's backfill from now on.
    let _ = parts.fleet_status.set(fleet.backfill_status());
    tracing::info!(
        meters = fleet.households().len(),
        regions = parts.regions.len(),
        "fleet registered"
    );
    let (tokens, metrics, stop) = (
        tokens.clone(),
        parts.metrics.clone(),
        service.shutdown_token(),
    );
    service.spawn("fleet", async move {
        match fleet.run(tokens, metrics, stop, Some(backfilled_tx)).await {
            Ok(()) | Err(iot_simulator::fleet::FleetError::Cancelled) => {}
            // The rest of the platform keeps serving real meters.
            Err(e) => tracing::error!(error = %e, "fleet stopped"),
        }
        Ok::<(), std::convert::Infallible>(())
    });
    Ok(backfilled)
}

/// What tells that the fleet's backfill is stored: the bus log drained, which the fleet's
/// status then says.
struct Stored {
    log: SqliteLog,
    status: Arc<OnceLock<BackfillStatus>>,
}

/// Computes the profiles once the backfill is stored, so the first map is never empty, then
/// on a schedule.
async fn recompute(
    analytics: Arc<Analytics>,
    stored: Stored,
    backfilled: tokio::sync::oneshot::Receiver<Backfill>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let backfill = tokio::select! {
        () = shutdown.cancelled() => return,
        b = backfilled => b.ok(),
    };
    // The meter has acknowledged the backfill; wait (bounded) until the sink has stored it.
    for _ in 0..600 {
        if shutdown.is_cancelled() || stored.log.backlog().await.is_ok_and(|n| n == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if shutdown.is_cancelled() {
        return;
    }
    if let (Some(b), Some(status)) = (backfill, stored.status.get()) {
        status.stored(&b);
    }
    if let Err(e) = analytics
        .run_now(Trigger::Startup, RunRequest::default_window())
        .await
    {
        tracing::warn!(error = %e, "first recompute did not run");
    }
    analytics.schedule(every, every, shutdown).await;
}

/// The fleet's backfill for the status page, once the fleet runs in this process.
struct InProcessFleet(Arc<OnceLock<BackfillStatus>>);

#[async_trait::async_trait]
impl FleetProgress for InProcessFleet {
    async fn backfill(&self) -> Option<iot_common::wire::BackfillReport> {
        Some(self.0.get()?.report())
    }
}

/// The analyst console's "recompute now" and SQL, served by the in-process job.
struct InProcessAnalytics {
    job: Arc<Analytics>,
    sql: Arc<SqlEngine>,
}

#[async_trait::async_trait]
impl AnalyticsPort for InProcessAnalytics {
    async fn recompute(
        &self,
        request: &RecomputeRequest,
    ) -> Result<iot_common::Run, AnalyticsError> {
        let request = run_request(
            request.from.as_deref(),
            request.to.as_deref(),
            request.publish,
        )
        .map_err(AnalyticsError::from)?;
        self.job
            .trigger(Trigger::Console, request)
            .await
            .map_err(|e| AnalyticsError::from(ApiError::from(e)))
    }

    async fn query(&self, sql: &str, format: AnswerFormat) -> Result<QueryAnswer, AnalyticsError> {
        let answer = self
            .sql
            .run(sql)
            .await
            .map_err(|e| AnalyticsError::from(ApiError::from(e)))?;
        let body = answer_bytes(&answer, format)
            .map_err(|e| AnalyticsError::unavailable(e.to_string()))?;
        Ok(QueryAnswer {
            content_type: format.content_type().to_owned(),
            body,
            truncated: answer.truncated,
        })
    }
}
