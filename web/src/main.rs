use std::time::Duration;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = iot_web::cli::Cli::parse();
    iot_common::telemetry::init("info");
    let web = iot_web::cli::start(cli).await?;
    println!(
        "listening external=http://{} internal=http://{}",
        web.external, web.internal
    );
    web.service.run_until_signal(Duration::from_secs(30)).await;
    Ok(())
}
