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
        Command::Executor { slots, .. } => *slots,
        Command::Scheduler { .. } => 2,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        // Planning recurses over the plan tree (Ballista's own binaries use 32 MiB).
        .thread_stack_size(16 * 1024 * 1024)
        .build()?;
    runtime.block_on(execute(cli))?;
    Ok(())
}
