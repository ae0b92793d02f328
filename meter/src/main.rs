use std::time::Duration;

use clap::Parser;
use iot_meter::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    iot_common::telemetry::init("info");
    match &cli.command {
        Some(Command::Token { meter_id }) => println!("{}", cli.token(meter_id)?),
        Some(Command::Bench(args)) => {
            let kafka = cli.kafka.resolve("meter-bench")?;
            let report = iot_meter::bench::run(kafka, args.clone()).await?;
            println!("{report}");
        }
        None | Some(Command::Run) => {
            let meter = iot_meter::service::start(cli.meter_config()?).await?;
            println!(
                "listening external=http://{} internal=http://{}",
                meter.external, meter.internal
            );
            meter
                .service
                .run_until_signal(Duration::from_secs(30))
                .await;
        }
    }
    Ok(())
}
