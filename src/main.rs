use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use iot_common::auth::MeterTokens;
use iot_demo::app::AppConfig;
use iot_demo::commands;
use iot_demo::config::{Cli, Command};
use iot_demo::secrets::load_or_create;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    iot_common::telemetry::init("info");
    let common = &cli.common;
    let secret = load_or_create(
        common.meter_secret.as_deref(),
        &common.data_dir,
        "meter-secret",
    )
    .context("cannot load or create the meter secret")?;
    let tokens =
        MeterTokens::new(&secret)?.with_previous(common.meter_secret_previous.as_deref())?;
    match cli.command {
        Some(Command::Token { meter_id }) => Ok(commands::token(&tokens, &meter_id)?),
        Some(Command::Meters(cmd)) => Ok(commands::meters(cmd, &cli.common, &tokens).await?),
        None | Some(Command::Run) => run(cli, tokens).await,
    }
}

async fn run(cli: Cli, tokens: MeterTokens) -> anyhow::Result<()> {
    let (common, run) = (cli.common, cli.run);
    let analyst_token = load_or_create(
        common.analyst_token.as_deref(),
        &common.data_dir,
        "analyst-token",
    )
    .context("cannot load or create the analyst token")?;
    let config = AppConfig {
        data_dir: common.data_dir.clone(),
        regions: common.regions.clone(),
        tokens,
        analyst_token,
        http: run.http.limits(),
        cookie_secure: run.cookie_secure,
        external_addr: run.external_addr,
        internal_addr: run.internal_addr,
        ingest: iot_meter::IngestConfig {
            publish_timeout: Duration::from_millis(run.publish_timeout_ms),
            window: iot_common::domain::AcceptWindow {
                max_age_days: run.max_reading_age_days,
            },
            max_in_flight: run.ingest_max_in_flight.max(1),
        },
        // The meter URL is filled in once the external listener is bound.
        fleet: Some(run.fleet.config("")),
        analytics: iot_analytics::JobConfig {
            threads: run.analytics_threads,
            window_days: run.window_days,
            ..iot_analytics::JobConfig::default()
        },
        sql: run.sql.limits(),
        recompute_every: Duration::from_secs(run.recompute_every_min.max(1) * 60),
        tariffs: iot_web::tariffs::Tariffs::load(run.tariffs.as_deref())?,
        silent_after: Duration::from_secs_f64(run.silent_after_hours * 3600.0),
    };
    let app = iot_demo::start(config).await?;
    println!("iot-demo is running (Ctrl-C to stop)");
    println!("  map           http://{}/", app.external);
    println!("  meter ingest  http://{}/api/v1/readings", app.external);
    println!(
        "  internal      http://{}/healthz /readyz /metrics /internal/v1/meters /internal/v1/runs",
        app.internal
    );
    println!("  data          {}", common.data_dir.display());
    println!(
        "listening external=http://{} internal=http://{}",
        app.external, app.internal
    );
    iot_common::http::shutdown_signal(app.shutdown_token()).await;
    tracing::info!("shutting down");
    app.stop(Duration::from_secs(30)).await;
    Ok(())
}
