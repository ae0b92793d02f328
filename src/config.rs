//! Command line and environment: every setting has a flag and an `IOT_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use iot_common::domain::{Dwelling, MeterId, RegionCode};

#[derive(Debug, Parser)]
#[command(
    name = "iot-demo",
    version,
    about = "Smart-meter analytics platform, all services in one process on embedded storage",
    long_about = "Runs the meter ingest, the web API, the simulated meter fleet and the sink in \
one process, storing everything in SQLite under the data directory. Without a subcommand it \
runs the platform until Ctrl-C or SIGTERM."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Directory for the embedded store, the bus log and generated secrets.
    #[arg(long, env = "IOT_DATA_DIR", default_value = "iot-data", global = true)]
    pub data_dir: PathBuf,
    /// Region boundaries (GeoJSON FeatureCollection with `code` and `name` properties);
    /// default: the embedded 33 London boroughs.
    #[arg(long, env = "IOT_REGIONS", global = true)]
    pub regions: Option<PathBuf>,
    /// Secret from which meter tokens are derived; default: generated once and kept in
    /// `<data-dir>/meter-secret`.
    #[arg(long, env = "IOT_METER_SECRET", hide_env_values = true, global = true)]
    pub meter_secret: Option<String>,
    /// The meter secret being rotated out: its tokens still work while it is set here.
    #[arg(
        long,
        env = "IOT_METER_SECRET_PREVIOUS",
        hide_env_values = true,
        global = true
    )]
    pub meter_secret_previous: Option<String>,
    /// Token operators and analysts present on internal routes; default: generated once and
    /// kept in `<data-dir>/analyst-token`.
    #[arg(long, env = "IOT_ANALYST_TOKEN", hide_env_values = true, global = true)]
    pub analyst_token: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Listener for residents and meters (map, API, ingest).
    #[arg(long, env = "IOT_EXTERNAL_ADDR", default_value = "127.0.0.1:8080")]
    pub external_addr: SocketAddr,
    /// Listener for operators: health, metrics, provisioning. Keep it off the internet.
    #[arg(long, env = "IOT_INTERNAL_ADDR", default_value = "127.0.0.1:9080")]
    pub internal_addr: SocketAddr,
    #[command(flatten)]
    pub fleet: iot_simulator::FleetFlags,
    /// Minutes between scheduled recomputes of the regional profiles.
    #[arg(long, env = "IOT_ANALYTICS_EVERY_MIN", default_value_t = 15)]
    pub recompute_every_min: u64,
    /// Whole local days before today that a recompute covers.
    #[arg(long, env = "IOT_WINDOW_DAYS", default_value_t = 28)]
    pub window_days: u32,
    /// DataFusion partitions for the recompute.
    #[arg(long, env = "IOT_ANALYTICS_THREADS", default_value_t = 2)]
    pub analytics_threads: usize,
    /// Tariffs the estimator and a household's page price energy on: a TOML file (or JSON,
    /// ending in `.json`) checked at start-up; unset: the shipped price-cap and night tariffs.
    #[arg(long, env = "IOT_TARIFFS")]
    pub tariffs: Option<std::path::PathBuf>,
    /// A registered meter with no reading for this many hours is silent (on /status, the
    /// `iot_meters_silent` gauge and the console's data-quality page).
    #[arg(long, env = "IOT_SILENT_AFTER_HOURS", default_value_t = 6.0, value_parser = iot_common::flags::parse_hours)]
    pub silent_after_hours: f64,
    /// How long the meter waits for the bus before answering 503.
    #[arg(long, env = "IOT_PUBLISH_TIMEOUT_MS", default_value_t = 10_000)]
    pub publish_timeout_ms: u64,
    /// Oldest reading the meter accepts, in days before now (the readings' retention):
    /// older ones get 422 on `ts`.
    #[arg(long, env = "IOT_MAX_READING_AGE_DAYS", default_value_t = iot_common::domain::DEFAULT_MAX_READING_AGE_DAYS)]
    pub max_reading_age_days: u32,
    /// Ingest requests parsed and published at once; more are shed with 503 + Retry-After.
    #[arg(long, env = "IOT_INGEST_MAX_IN_FLIGHT", default_value_t = iot_meter::ingest::DEFAULT_MAX_IN_FLIGHT)]
    pub ingest_max_in_flight: usize,
    /// Mark the console's session cookie `Secure`: set it when a TLS front serves the console.
    #[arg(long, env = "IOT_COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = iot_common::flags::parse_flag)]
    pub cookie_secure: bool,
    #[command(flatten)]
    pub http: iot_common::server::HttpArgs,
    #[command(flatten)]
    pub sql: iot_analytics::sql::SqlArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform (the default).
    Run,
    /// Print the bearer token of a meter.
    Token {
        /// Meter id, 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'.
        meter_id: MeterId,
    },
    /// Register and list meters.
    #[command(subcommand)]
    Meters(MetersCommand),
}

#[derive(Debug, Subcommand)]
pub enum MetersCommand {
    /// Register a meter (or update its registration) and print its token.
    Add {
        meter_id: MeterId,
        /// Region code, e.g. E09000001; or give --lat and --lon.
        #[arg(long)]
        region: Option<RegionCode>,
        #[arg(long, allow_hyphen_values = true)]
        lat: Option<f64>,
        #[arg(long, allow_hyphen_values = true)]
        lon: Option<f64>,
        /// People in the household.
        #[arg(long)]
        household_size: Option<u8>,
        /// flat, terraced, semi_detached or detached.
        #[arg(long)]
        dwelling: Option<Dwelling>,
    },
    /// List registered meters as JSON lines.
    List,
    /// Revoke a meter's tokens: every token issued so far gets 401 (registering the meter
    /// again issues one that works). Readings and registration stay.
    Revoke { meter_id: MeterId },
}
