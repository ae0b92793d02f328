use std::time::Duration;

use clap::Parser;
use iot_simulator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    iot_common::telemetry::init("info");
    match cli.command {
        Command::Sink(args) => {
            let sink = iot_simulator::service::start_sink(args.config()?).await?;
            println!("listening internal=http://{}", sink.internal);
            sink.service.run_until_signal(Duration::from_secs(30)).await;
        }
        Command::Live(args) => {
            let live = iot_simulator::service::start_live(args.config()?).await?;
            println!("listening internal=http://{}", live.internal);
            live.service.run_until_signal(Duration::from_secs(30)).await;
        }
        Command::Fleet(args) => {
            let fleet = iot_simulator::service::start_fleet(
                args.internal_addr,
                args.regions.as_deref(),
                &args.meter_secret,
                &args.store,
                args.fleet_config(),
            )
            .await?;
            println!("listening internal=http://{}", fleet.internal);
            fleet
                .service
                .run_until_signal(Duration::from_secs(30))
                .await;
        }
    }
    Ok(())
}
