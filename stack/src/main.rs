//! `compose-as-processes`: runs docker-compose.yml's services as local processes, checks
//! the data flow through the edge, and keeps the stack up for you to use until Ctrl-C.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Parser;
use iot_stack::{Stack, StackConfig};

#[derive(Debug, Parser)]
#[command(
    name = "compose-as-processes",
    about = "Run docker-compose.yml's services as processes (tansu for Kafka, SQLite for Cassandra) and check the data flow"
)]
struct Cli {
    /// The project root (docker-compose.yml, Dockerfile, deploy/haproxy.cfg).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Where the binaries are built.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Households of the fleet (the file's IOT_METERS).
    #[arg(long, default_value_t = 66)]
    meters: usize,
    /// Days of history the fleet backfills (the file's IOT_BACKFILL_DAYS).
    #[arg(long, default_value_t = 3)]
    backfill_days: u32,
    /// Second octet of the loopback addresses (127.N.*.*).
    #[arg(long, default_value_t = 77)]
    prefix: u8,
    /// Also run the services of this Compose profile (`cluster`: the analytics cluster,
    /// which runs and SQL then use).
    #[arg(long)]
    profile: Vec<String>,
    /// Stop once the checks passed instead of serving until Ctrl-C.
    #[arg(long)]
    check_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let work = tempfile::Builder::new()
        .prefix("compose-as-processes-")
        .tempdir()?;
    let token = format!("analyst-{}", std::process::id());
    let mut vars = HashMap::from([
        (
            "IOT_METER_SECRET".to_owned(),
            format!("meter-secret-of-at-least-32-bytes-{}", std::process::id()),
        ),
        ("IOT_ANALYST_TOKEN".to_owned(), token.clone()),
        ("IOT_METERS".to_owned(), cli.meters.to_string()),
        (
            "IOT_BACKFILL_DAYS".to_owned(),
            cli.backfill_days.to_string(),
        ),
    ]);
    if cli.profile.iter().any(|p| p == "cluster") {
        // What the README has a user put in .env for the cluster profile.
        vars.insert(
            "IOT_BALLISTA_SCHEDULER".to_owned(),
            "analytics-scheduler:50050".to_owned(),
        );
    }
    let config = StackConfig {
        profiles: cli.profile,
        compose_file: cli.root.join("docker-compose.yml"),
        root: cli.root,
        bin_dir: cli.bin_dir,
        vars,
        work_dir: work.path().to_path_buf(),
        prefix: cli.prefix,
    };
    let outcome = match Stack::up(&config).await {
        Ok(mut stack) => {
            println!(
                "every healthcheck passed; logs in {}",
                work.path().join("logs").display()
            );
            iot_stack::flow::check(&mut stack, &token, 33)
                .await
                .map(|report| (stack, report))
        }
        Err(e) => Err(e),
    };
    let (stack, report) = match outcome {
        Ok(ok) => ok,
        Err(e) => {
            // The processes are stopped by now; their logs say why.
            let kept = work.keep();
            eprintln!("logs kept in {}", kept.join("logs").display());
            return Err(e.into());
        }
    };
    println!("{report:#?}");
    for (name, mib) in stack.peak_rss_mib() {
        println!("peak RSS {name}: {mib:.1} MiB");
    }
    let edge = stack.addresses.of("edge")[0];
    println!(
        "map: http://{edge}:8080/   console: http://{edge}:9090/internal/console (token {token})"
    );
    if !cli.check_only {
        println!("serving until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
