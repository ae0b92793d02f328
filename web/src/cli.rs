//! The `web` command: the map, region pages, estimator and JSON API on the external
//! listener; provisioning, the analyst console and health on the internal one. The store is
//! Cassandra or the embedded file ([`StoreArgs`]); "recompute now" goes to the analytics
//! service named by `IOT_ANALYTICS_URL`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Parser;
use iot_cassandra::StoreArgs;
use iot_common::auth::{MeterAuth, MeterTokens, StaticToken};
use iot_common::http::{Health, fallback, health_routes};
use iot_common::metrics::Metrics;
use iot_common::regions::Regions;
use iot_common::server::HttpArgs;
use iot_common::service::{ListenError, Service};

use crate::remote::{RemoteAnalytics, RemoteFleet};
use crate::{AnalyticsPort, WebState, external_router, internal_router};

#[derive(Debug, Parser)]
#[command(
    name = "web",
    version,
    about = "The residents' regional energy map and JSON API, and the analysts' console"
)]
pub struct Cli {
    /// Listener for residents (map, pages, JSON API): what the edge proxy publishes.
    #[arg(long, env = "IOT_EXTERNAL_ADDR", default_value = "127.0.0.1:8080")]
    pub external_addr: SocketAddr,
    /// Listener for operators and analysts: health, metrics, provisioning, console.
    #[arg(long, env = "IOT_INTERNAL_ADDR", default_value = "127.0.0.1:9080")]
    pub internal_addr: SocketAddr,
    /// Region boundaries (GeoJSON); default: the embedded 33 London boroughs.
    #[arg(long, env = "IOT_REGIONS")]
    pub regions: Option<PathBuf>,
    /// Secret meter tokens derive from (provisioning prints a new meter's token); at least
    /// 32 bytes.
    #[arg(long, env = "IOT_METER_SECRET", hide_env_values = true)]
    pub meter_secret: String,
    /// The secret being rotated out: its tokens still work while it is set here.
    #[arg(long, env = "IOT_METER_SECRET_PREVIOUS", hide_env_values = true)]
    pub meter_secret_previous: Option<String>,
    /// How often the list of revoked meters is read from the store, in milliseconds.
    #[arg(long, env = "IOT_REVOCATION_REFRESH_MS", default_value_t = 2_000)]
    pub revocation_refresh_ms: u64,
    /// Mark the console's session cookie `Secure`: set it when a TLS front serves the console.
    #[arg(long, env = "IOT_COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = iot_common::flags::parse_flag)]
    pub cookie_secure: bool,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Token analysts present on the console and internal routes that change state.
    #[arg(long, env = "IOT_ANALYST_TOKEN", hide_env_values = true)]
    pub analyst_token: String,
    /// The analytics service's internal listener, for "recompute now" and SQL; unset: the
    /// console cannot start runs or ask queries.
    #[arg(long, env = "IOT_ANALYTICS_URL")]
    pub analytics_url: Option<String>,
    /// The simulated fleet's internal listener, whose backfill the status page follows;
    /// unset: no fleet on the status page.
    #[arg(long, env = "IOT_FLEET_URL")]
    pub fleet_url: Option<String>,
    /// Tariffs the estimator and a household's page price energy on: a TOML file (or JSON,
    /// ending in `.json`) checked at start-up; unset: the shipped price-cap and night tariffs.
    #[arg(long, env = "IOT_TARIFFS")]
    pub tariffs: Option<PathBuf>,
    /// A registered meter with no reading for this many hours is silent (on /status, the
    /// `iot_meters_silent` gauge and the console's data-quality page).
    #[arg(long, env = "IOT_SILENT_AFTER_HOURS", default_value_t = 6.0, value_parser = iot_common::flags::parse_hours)]
    pub silent_after_hours: f64,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error(transparent)]
    Secret(#[from] iot_common::auth::SecretError),
    #[error(transparent)]
    Tariffs(#[from] crate::tariffs::TariffError),
    #[error(transparent)]
    Regions(#[from] iot_common::regions::RegionError),
    #[error("cannot open the store: {0}")]
    Store(#[from] iot_cassandra::select::SelectError),
    #[error("cannot build the analytics client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Listen(#[from] ListenError),
}

pub struct RunningWeb {
    pub external: SocketAddr,
    pub internal: SocketAddr,
    pub service: Service,
}

pub async fn start(cli: Cli) -> Result<RunningWeb, CliError> {
    let tokens =
        MeterTokens::new(&cli.meter_secret)?.with_previous(cli.meter_secret_previous.as_deref())?;
    if cli.analyst_token.trim().is_empty() {
        return Err(CliError::Empty("IOT_ANALYST_TOKEN"));
    }
    let tariffs = crate::tariffs::Tariffs::load(cli.tariffs.as_deref())?;
    let regions = Arc::new(Regions::load(cli.regions.as_deref())?);
    let store = cli.store.open_patiently(Duration::from_secs(120)).await?;
    let recompute = match &cli.analytics_url {
        Some(url) if !url.trim().is_empty() => {
            Some(Arc::new(RemoteAnalytics::new(url, &cli.analyst_token)?) as Arc<dyn AnalyticsPort>)
        }
        _ => None,
    };
    let web = WebState::new(
        store.clone(),
        regions,
        MeterAuth::new(tokens),
        StaticToken::new(&cli.analyst_token),
        tariffs,
        recompute,
    )
    .secure_cookies(cli.cookie_secure)
    .silent_after(Duration::from_secs_f64(cli.silent_after_hours * 3600.0))
    .with_metrics(Arc::new(Metrics::new()))
    .with_api_docs(crate::api_docs::ApiDocs::new(
        iot_meter::ingest::openapi(),
        iot_analytics::api::openapi(),
    ));
    let web = match cli.fleet_url.as_deref().map(str::trim) {
        Some(url) if !url.is_empty() => web.with_fleet(Arc::new(RemoteFleet::new(url)?)),
        _ => web,
    };
    let mut service = Service::with_limits(cli.http.limits());
    let refresh = web.auth.revocations.clone().keep_fresh(
        store.clone(),
        Duration::from_millis(cli.revocation_refresh_ms.max(100)),
        service.shutdown_token(),
    );
    service.spawn("revocations", refresh);
    service.spawn(
        "silent meters",
        crate::silence::watch(web.watched(), service.shutdown_token()),
    );
    let external = service
        .listen(
            "external",
            cli.external_addr,
            external_router(web.clone()).fallback(fallback),
        )
        .await?;
    let internal_routes = Router::new()
        .merge(health_routes(Health {
            metrics: web.metrics.clone(),
            store: Some(store),
            bus: None,
        }))
        .merge(internal_router(web))
        .fallback(fallback);
    let internal = service
        .listen("internal", cli.internal_addr, internal_routes)
        .await?;
    Ok(RunningWeb {
        external,
        internal,
        service,
    })
}
