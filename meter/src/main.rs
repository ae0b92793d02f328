use std::time::Duration;

use clap::Parser;
use iot_meter::cli::{Cli, Command};

// Ingest allocates per reading (its id, its record, a delivery future); glibc's allocator
// was a sixth of the meter's time under load (`bench/kafka.sh` under perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            let mut config = cli.meter_config()?;
            config.revocations = Some(cli.store.open_patiently(Duration::from_secs(120)).await?);
            let meter = iot_meter::service::start(config).await?;
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
