use clap::Parser;
use iot_analytics::cli::{Cli, Command, execute};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    iot_common::telemetry::init("info");
    let threads = match &cli.command {
        Command::Bench { threads, .. } => *threads,
        Command::Run { job, .. }
        | Command::Export { job, .. }
        | Command::Serve { job, .. }
        | Command::Sql { job, .. }
        | Command::BenchStore { job, .. } => job.threads,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(execute(cli))?;
    Ok(())
}
