//! The `analytics` command: run the job once (from the store or a Parquet file), export
//! stored readings, serve the internal API with a schedule, or benchmark.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::{Args, Parser, Subcommand};
use iot_common::auth::StaticToken;
use iot_common::http::{Health, fallback, health_routes};
use iot_common::metrics::Metrics;
use iot_common::service::Service;
use iot_common::store::Store;

use crate::aggregate::ProfileFigures;
use crate::api::{RunsState, runs_router};
use crate::cluster::{ExecutorOptions, SchedulerClient, SchedulerOptions};
use crate::first_run::FirstRun;
use crate::job::{Analytics, JobConfig, RunRequest, window};
use crate::output::{parquet_writer, write_profiles};
use crate::plan::Scanned;
use crate::schema::{readings_schema, rows_to_batch};
use crate::source::{Cluster, aggregate, register_parquet, session};
use crate::sql::{SqlArgs, SqlEngine, SqlError, SqlLimits, SqlSource};
use crate::sql_output::{answer_bytes, format_of_path};

#[derive(Debug, Parser)]
#[command(
    name = "analytics",
    version,
    about = "Regional energy profiles from smart-meter readings (DataFusion batch job)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub store: iot_cassandra::StoreArgs,
    /// DataFusion partitions and worker threads.
    #[arg(long, env = "IOT_ANALYTICS_THREADS", default_value_t = 2)]
    pub threads: usize,
    /// Whole local days before today that a run covers.
    #[arg(long, env = "IOT_WINDOW_DAYS", default_value_t = 28)]
    pub window_days: u32,
    /// Time zone of the regions (IANA name).
    #[arg(long, env = "IOT_TZ", default_value = "Europe/London")]
    pub tz: Tz,
    /// A Ballista scheduler (`analytics scheduler`) to run store runs and SQL on, as host:port
    /// or df://host:port; unset, they run in this process. On a cluster --threads is the
    /// partitions of each stage: the executors' task slots in all is a good figure.
    #[arg(long, env = "IOT_BALLISTA_SCHEDULER")]
    pub ballista_scheduler: Option<String>,
}

impl JobArgs {
    /// The cluster runs and queries over `store` go to, if one is named.
    pub fn cluster(&self, store: &Arc<dyn Store>) -> Option<Arc<dyn Cluster>> {
        let at = self
            .ballista_scheduler
            .as_ref()
            .filter(|at| !at.trim().is_empty());
        at.map(|at| {
            let url = if at.contains("://") {
                at.clone()
            } else {
                format!("df://{at}")
            };
            Arc::new(SchedulerClient::new(url, store.clone())) as Arc<dyn Cluster>
        })
    }

    pub fn job_config(&self, store: &Arc<dyn Store>) -> JobConfig {
        JobConfig {
            tz: self.tz,
            threads: self.threads,
            window_days: self.window_days,
            cluster: self.cluster(store),
        }
    }
}

/// The store a cluster process reads, and its time zone.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub store: iot_cassandra::StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one read-only SQL query over `readings`, `meters`, `profiles` and `runs` (from the
    /// store), or over `readings` of a Parquet file with --input; print it or write a file.
    Sql {
        /// The query, e.g. "SELECT region, count(*) FROM readings WHERE ts >= now() -
        /// interval '1 day' GROUP BY region".
        query: String,
        #[command(flatten)]
        job: JobArgs,
        /// Parquet readings (`meter_id`, `region_id`, `ts`, `kwh`) as the `readings` table,
        /// instead of the store.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Write the answer here (.csv, .parquet or .json) instead of printing a table.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        limits: SqlArgs,
    },
    /// Compute the profiles once: from the store (recorded as a run, profiles written back),
    /// or with --input from a Parquet file (nothing stored).
    Run {
        #[command(flatten)]
        job: JobArgs,
        /// Parquet readings (`meter_id`, `region_id`, `ts`, `kwh`) instead of the store.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Also write the profiles here: a .csv or .parquet file.
        #[arg(long)]
        output: Option<PathBuf>,
        /// First local day of a chosen window (YYYY-MM-DD), instead of the default one.
        #[arg(long, requires = "to")]
        from: Option<chrono::NaiveDate>,
        /// The day after the chosen window's last (not included).
        #[arg(long, requires = "from")]
        to: Option<chrono::NaiveDate>,
        /// Let a run over a chosen window replace the map's profiles (a run over the default
        /// window always does).
        #[arg(long)]
        publish: bool,
    },
    /// Write the stored readings of a window to Parquet (the same columns `run --input` reads).
    Export {
        #[command(flatten)]
        job: JobArgs,
        #[arg(long)]
        output: PathBuf,
        /// Window start (RFC 3339); default: `--window-days` whole days before today.
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Window end, exclusive (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
    /// A Ballista scheduler for runs and SQL (`IOT_BALLISTA_SCHEDULER` of the other
    /// commands names it); it plans with our codecs and asks the store for its slices.
    Scheduler {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, env = "IOT_SCHEDULER_ADDR", default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// The host executors and clients reach this scheduler at.
        #[arg(long, env = "IOT_SCHEDULER_EXTERNAL_HOST", default_value = "localhost")]
        external_host: String,
        /// An executor silent this long is lost: its tasks run again elsewhere.
        #[arg(long, env = "IOT_EXECUTOR_TIMEOUT_S", default_value_t = 30)]
        executor_timeout_s: u64,
    },
    /// A Ballista executor: runs the scheduler's tasks, reading its slices straight from the
    /// store and serving its shuffle files to the others.
    Executor {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The scheduler, host:port.
        #[arg(
            long,
            env = "IOT_BALLISTA_SCHEDULER",
            default_value = "localhost:50050"
        )]
        scheduler: String,
        #[arg(long, env = "IOT_EXECUTOR_BIND_HOST", default_value = "127.0.0.1")]
        bind_host: String,
        /// Where the others fetch this executor's results (Arrow Flight).
        #[arg(long, env = "IOT_EXECUTOR_PORT", default_value_t = 50051)]
        port: u16,
        #[arg(long, env = "IOT_EXECUTOR_GRPC_PORT", default_value_t = 50052)]
        grpc_port: u16,
        /// The host the others reach this executor at (default: its bind host).
        #[arg(long, env = "IOT_EXECUTOR_EXTERNAL_HOST")]
        external_host: Option<String>,
        /// Tasks at a time.
        #[arg(long, env = "IOT_EXECUTOR_SLOTS", default_value_t = 2)]
        slots: usize,
        /// Where shuffle files go (default: a temporary directory).
        #[arg(long, env = "IOT_EXECUTOR_WORK_DIR")]
        work_dir: Option<PathBuf>,
        /// How often it tells the scheduler it is alive.
        #[arg(long, env = "IOT_EXECUTOR_HEARTBEAT_S", default_value_t = 5)]
        heartbeat_s: u64,
    },
    /// Serve the internal runs API and recompute on a schedule.
    Serve {
        #[command(flatten)]
        job: JobArgs,
        #[arg(long, env = "IOT_INTERNAL_ADDR", default_value = "127.0.0.1:9083")]
        internal_addr: SocketAddr,
        /// Bearer token for the runs API.
        #[arg(long, env = "IOT_ANALYST_TOKEN", hide_env_values = true)]
        analyst_token: String,
        /// Minutes between scheduled runs; 0: no schedule (the runs API only, e.g. when a
        /// Kubernetes CronJob runs `analytics run` instead).
        #[arg(long, env = "IOT_ANALYTICS_EVERY_MIN", default_value_t = 60)]
        every_minutes: u64,
        /// Seconds from start-up to the first run, so a fresh stack has readings to profile.
        #[arg(long, env = "IOT_ANALYTICS_FIRST_RUN_S", default_value_t = 120)]
        first_run_s: u64,
        /// Instead of the fixed delay: the first run waits until this URL answers 2xx (the
        /// fleet's `/backfill`, which does once its history is stored).
        #[arg(long, env = "IOT_ANALYTICS_FIRST_RUN_AFTER")]
        first_run_after: Option<reqwest::Url>,
        /// Longest wait for --first-run-after, in seconds; then the first run goes ahead.
        #[arg(long, env = "IOT_ANALYTICS_FIRST_RUN_WAIT_S", default_value_t = 1800)]
        first_run_wait_s: u64,
        #[command(flatten)]
        http: iot_common::server::HttpArgs,
        #[command(flatten)]
        sql: SqlArgs,
    },
    /// Time the profile computation on a Parquet file and print rows per second and memory.
    Bench {
        #[arg(long)]
        input: PathBuf,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Timed repetitions after one warm-up.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        #[arg(long, default_value = "Europe/London")]
        tz: Tz,
    },
    /// Time the store's half of the pipeline on the store the flags name (SQLite, or
    /// Cassandra with IOT_CASSANDRA_NODES): write `meters` × `days` of half-hourly readings
    /// through the sink's store write in batches of the sink's size, then one profile run over
    /// them; print readings written per second and rows scanned per second. Use a keyspace or
    /// data directory of its own: its meters and readings stay there.
    BenchStore {
        #[command(flatten)]
        job: JobArgs,
        #[arg(long, default_value_t = 300)]
        meters: usize,
        /// Whole days of readings, ending yesterday (the run's default window is 28).
        #[arg(long, default_value_t = 28)]
        days: u32,
        /// Readings per store write: the sink's default IOT_SINK_BATCH.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] iot_common::store::StoreError),
    #[error("cannot open the store: {0}")]
    OpenStore(#[from] iot_cassandra::select::SelectError),
    #[error(transparent)]
    Job(#[from] crate::job::JobError),
    #[error(transparent)]
    Bench(#[from] crate::store_bench::BenchError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error(transparent)]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error(transparent)]
    Listen(#[from] iot_common::service::ListenError),
    #[error("{0}")]
    Usage(String),
    #[error("the run failed: {0}")]
    RunFailed(String),
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot start the query runtime: {0}")]
    Runtime(std::io::Error),
}

async fn open_store(job: &JobArgs) -> Result<Arc<dyn Store>, CliError> {
    Ok(job.store.open_patiently(Duration::from_secs(120)).await?)
}

/// Profiles of a Parquet file; also returns rows scanned.
pub async fn profile_parquet(
    input: &Path,
    threads: usize,
    tz: Tz,
) -> Result<(Vec<ProfileFigures>, u64), CliError> {
    let path = input
        .to_str()
        .ok_or_else(|| CliError::Usage(format!("{} is not a UTF-8 path", input.display())))?;
    let ctx = session(threads);
    register_parquet(&ctx, path).await?;
    let scanned = Scanned::default();
    let figures = aggregate(&ctx, tz, None, scanned.clone()).await?;
    Ok((figures, scanned.0.load(Ordering::Relaxed)))
}

pub async fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Sql {
            query,
            job,
            input,
            output,
            limits,
        } => sql(query, job, input, output, limits).await,
        Command::Run {
            job,
            input,
            output,
            from,
            to,
            publish,
        } => {
            let request = RunRequest {
                days: from.zip(to),
                publish,
            };
            run(job, input, output, request).await
        }
        Command::Export {
            job,
            output,
            from,
            to,
        } => export(job, output, from, to).await,
        Command::Scheduler {
            cluster,
            bind,
            external_host,
            executor_timeout_s,
        } => {
            let store = cluster
                .store
                .open_patiently(Duration::from_secs(120))
                .await?;
            let options = SchedulerOptions {
                bind,
                external_host,
                executor_timeout_s,
            };
            until_stopped(crate::cluster::run_scheduler(store, options)).await
        }
        Command::Executor {
            cluster,
            scheduler,
            bind_host,
            port,
            grpc_port,
            external_host,
            slots,
            work_dir,
            heartbeat_s,
        } => {
            let store = cluster
                .store
                .open_patiently(Duration::from_secs(120))
                .await?;
            let options = ExecutorOptions {
                scheduler,
                bind_host,
                flight_port: port,
                grpc_port,
                external_host,
                slots,
                work_dir: work_dir.map(|d| d.display().to_string()),
                heartbeat_s,
            };
            until_stopped(crate::cluster::run_executor(store, options)).await
        }
        Command::Serve {
            job,
            internal_addr,
            analyst_token,
            every_minutes,
            first_run_s,
            first_run_after,
            first_run_wait_s,
            http,
            sql,
        } => {
            let first_run = match first_run_after {
                Some(url) => FirstRun::After(url, Duration::from_secs(first_run_wait_s)),
                None => FirstRun::In(Duration::from_secs(first_run_s)),
            };
            serve_api(
                job,
                internal_addr,
                analyst_token,
                first_run,
                every_minutes,
                http.limits(),
                sql.limits(),
            )
            .await
        }
        Command::Bench {
            input,
            threads,
            repeat,
            tz,
        } => bench(&input, threads, repeat, tz).await,
        Command::BenchStore {
            job,
            meters,
            days,
            batch,
        } => {
            let label = if job.store.cassandra.cassandra_nodes.is_some() {
                "Cassandra"
            } else {
                "SQLite"
            };
            let size = crate::store_bench::BenchSize {
                meters,
                days,
                batch,
            };
            let store = open_store(&job).await?;
            let config = job.job_config(&store);
            Ok(crate::store_bench::bench_store(store, config, label, size).await?)
        }
    }
}

/// Runs a cluster process until it ends or SIGTERM (or Ctrl-C) stops it. Nothing of a run
/// lives in a scheduler or an executor alone: a run's client sees the failure, records the run
/// failed and publishes nothing.
async fn until_stopped(
    process: impl std::future::Future<Output = Result<(), crate::cluster::ClusterError>>,
) -> Result<(), CliError> {
    let never = tokio_util::sync::CancellationToken::new();
    tokio::select! {
        ended = process => Ok(ended?),
        () = iot_common::http::shutdown_signal(never) => {
            tracing::info!("stopping");
            Ok(())
        }
    }
}

async fn run(
    job: JobArgs,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    request: RunRequest,
) -> Result<(), CliError> {
    let figures = match input {
        Some(input) => {
            let started = Instant::now();
            let (figures, rows) = profile_parquet(&input, job.threads, job.tz).await?;
            eprintln!(
                "{rows} readings, {} regions in {:.3} s",
                figures.len(),
                started.elapsed().as_secs_f64()
            );
            figures
        }
        None => {
            let store = open_store(&job).await?;
            let analytics = Analytics::new(store.clone(), job.job_config(&store));
            let run = match analytics
                .run_now(iot_common::domain::Trigger::Cli, request)
                .await
            {
                Ok(run) => run,
                // Another replica (or the CronJob's previous run) is computing: nothing to do.
                Err(crate::job::JobError::Busy(holder)) => {
                    eprintln!("run {holder} is in progress; this one is skipped");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            if let Ok(json) = serde_json::to_string(&run) {
                println!("{json}");
            }
            if let Some(e) = run.error {
                return Err(CliError::RunFailed(e));
            }
            // The figures as stored, for --output.
            store
                .run_profiles(&run.run_id)
                .await?
                .into_iter()
                .map(|p| p.figures)
                .collect()
        }
    };
    if let Some(out) = output {
        write_profiles(&out, &figures)?;
        eprintln!("wrote {} profiles to {}", figures.len(), out.display());
    }
    Ok(())
}

async fn sql(
    query: String,
    job: JobArgs,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    limits: SqlArgs,
) -> Result<(), CliError> {
    let format = output.as_deref().map(format_of_path).transpose()?;
    let source = match input {
        Some(path) => SqlSource::Parquet(path),
        None => SqlSource::Store(open_store(&job).await?),
    };
    let cluster = match &source {
        SqlSource::Store(store) => job.cluster(store),
        SqlSource::Parquet(_) => None,
    };
    let engine = SqlEngine::new(source, limits.limits(), job.threads)
        .map_err(CliError::Runtime)?
        .on_cluster(cluster);
    let answer = engine.run(&query).await?;
    let cut = if answer.truncated {
        format!(
            " (cut at the row limit of {}: raise --sql-max-rows for more)",
            answer.row_limit
        )
    } else {
        String::new()
    };
    match (output, format) {
        (Some(path), Some(format)) => {
            let bytes = answer_bytes(&answer, format)?;
            std::fs::write(&path, bytes).map_err(|source| crate::output::OutputError::Io {
                path: path.display().to_string(),
                source,
            })?;
            eprintln!("wrote {} rows to {}{cut}", answer.rows, path.display());
        }
        _ => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&answer.batches)
                .map_err(crate::output::OutputError::from)?;
            println!("{table}");
        }
    }
    eprintln!(
        "{} rows in {:.3} s (planning included); peak RSS {:.1} MiB{cut}",
        answer.rows,
        answer.elapsed.as_secs_f64(),
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}

async fn export(
    job: JobArgs,
    output: PathBuf,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<(), CliError> {
    let (default_from, default_to) = window(Utc::now(), job.window_days, job.tz);
    let (from, to) = (from.unwrap_or(default_from), to.unwrap_or(default_to));
    if from >= to {
        return Err(CliError::Usage("--from must be before --to".into()));
    }
    let store = open_store(&job).await?;
    let schema = readings_schema();
    let mut writer = parquet_writer(&output, schema.clone())?;
    let slices = store.scan_slices(from, to, None).await?;
    let mut pages = std::pin::pin!(crate::source::scan_pages(store, slices, 50_000));
    let mut rows = 0usize;
    while let Some(page) = futures::StreamExt::next(&mut pages).await {
        let page = page?;
        rows += page.len();
        writer.write(&rows_to_batch(&schema, &page)?)?;
        eprintln!("exported {rows} readings");
    }
    writer.close()?;
    eprintln!(
        "wrote {rows} readings ({from} .. {to}) to {}",
        output.display()
    );
    Ok(())
}

async fn serve_api(
    job: JobArgs,
    addr: SocketAddr,
    token: String,
    first_run: FirstRun,
    every_minutes: u64,
    limits: iot_common::server::HttpLimits,
    sql_limits: SqlLimits,
) -> Result<(), CliError> {
    let store = open_store(&job).await?;
    let analytics = Analytics::new(store.clone(), job.job_config(&store));
    let sql = Arc::new(
        SqlEngine::new(SqlSource::Store(store.clone()), sql_limits, job.threads)
            .map_err(CliError::Runtime)?
            .on_cluster(job.cluster(&store)),
    );
    let router = Router::new()
        .merge(health_routes(Health {
            metrics: Arc::new(Metrics::new()),
            store: Some(store),
            bus: None,
        }))
        .merge(runs_router(RunsState {
            analytics: analytics.clone(),
            analyst_token: StaticToken::new(&token),
            sql,
        }))
        .fallback(fallback);
    let mut service = Service::with_limits(limits);
    let addr = service.listen("internal", addr, router).await?;
    let stop = service.shutdown_token();
    if every_minutes > 0 {
        let every = Duration::from_secs(every_minutes * 60);
        service.spawn("schedule", async move {
            let first = first_run.wait(&stop).await;
            analytics.schedule(first, every, stop).await;
            Ok::<(), std::convert::Infallible>(())
        });
    }
    eprintln!(
        "analytics serving runs on http://{addr}/internal/v1/runs, every {every_minutes} min (0: no schedule)"
    );
    service.run_until_signal(Duration::from_secs(30)).await;
    Ok(())
}

fn peak_rss_mib() -> Option<f64> {
    iot_common::proc_status::peak_rss_mib(None)
}

async fn bench(input: &Path, threads: usize, repeat: usize, tz: Tz) -> Result<(), CliError> {
    let mut times = Vec::new();
    let mut rows = 0;
    for i in 0..=repeat {
        let started = Instant::now();
        let (figures, scanned) = profile_parquet(input, threads, tz).await?;
        let secs = started.elapsed().as_secs_f64();
        rows = scanned;
        if i == 0 {
            eprintln!(
                "warm-up: {scanned} readings, {} regions in {secs:.3} s",
                figures.len()
            );
        } else {
            times.push(secs);
        }
    }
    // Peak memory of the computation itself, read before anything else touches the input.
    let peak = peak_rss_mib();
    let in_memory = arrow_size(input, threads).await?;
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let best = times.first().copied().unwrap_or(f64::NAN);
    println!("input: {} ({rows} readings)", input.display());
    println!("threads: {threads}; timed runs: {repeat} after one warm-up");
    println!("compute time: median {median:.3} s, best {best:.3} s");
    println!(
        "throughput: {:.0} readings/s (median)",
        rows as f64 / median
    );
    println!(
        "peak RSS during the runs: {:.1} MiB; the input as Arrow arrays would take {:.1} MiB",
        peak.unwrap_or(f64::NAN),
        in_memory as f64 / 1_048_576.0
    );
    Ok(())
}

/// Bytes the input would take as Arrow arrays if collected, measured batch by batch
/// without keeping them.
async fn arrow_size(input: &Path, threads: usize) -> Result<usize, CliError> {
    let path = input
        .to_str()
        .ok_or_else(|| CliError::Usage(format!("{} is not a UTF-8 path", input.display())))?;
    let ctx = session(threads);
    register_parquet(&ctx, path).await?;
    let mut stream = ctx
        .table(crate::source::TABLE)
        .await?
        .execute_stream()
        .await?;
    let mut bytes = 0;
    while let Some(batch) = futures::StreamExt::next(&mut stream).await {
        bytes += batch?.get_array_memory_size();
    }
    Ok(bytes)
}
