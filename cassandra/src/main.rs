use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    iot_common::telemetry::init("info");
    iot_cassandra::cli::execute(iot_cassandra::cli::Cli::parse()).await?;
    Ok(())
}
