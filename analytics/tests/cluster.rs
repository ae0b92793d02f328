//! The job and analysts' SQL on a Ballista cluster of our own binaries: a scheduler and two
//! executors as processes on loopback, over SQLite and over the suite's Cassandra node
//! (IOT_TEST_CASSANDRA). `analytics run` with IOT_BALLISTA_SCHEDULER equals the run in one
//! process; `docs/sql.md`'s queries answer the same; an executor killed mid-run never leaves
//! half a run published.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use iot_analytics::cluster::SchedulerClient;
use iot_analytics::job::RunRequest;
use iot_analytics::plan::differences;
use iot_analytics::source::Cluster;
use iot_analytics::sql::{SqlEngine, SqlLimits, SqlSource};
use iot_analytics::sql_output::answer_json;
use iot_analytics::{Analytics, JobConfig};
use iot_common::domain::{Meter, MeterId, Reading, RegionCode, Trigger};
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_common::{ProfileFigures, Run, RunStatus};
use iot_testkit::KillOnDrop;

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

/// Where the cluster processes find the store: SQLite in a directory, or a Cassandra keyspace.
#[derive(Clone)]
enum StoreAt {
    Sqlite(std::path::PathBuf),
    Cassandra { nodes: String, keyspace: String },
}

impl StoreAt {
    fn apply(&self, cmd: &mut Command) {
        match self {
            StoreAt::Sqlite(dir) => {
                cmd.env("IOT_DATA_DIR", dir)
                    .env_remove("IOT_CASSANDRA_NODES");
            }
            StoreAt::Cassandra { nodes, keyspace } => {
                cmd.env("IOT_CASSANDRA_NODES", nodes)
                    .env("IOT_CASSANDRA_KEYSPACE", keyspace)
                    .env("IOT_CASSANDRA_CONSISTENCY", "ONE");
            }
        }
    }
}

/// A process whose log lines (stderr) are read by a thread and handed over a channel.
struct Logged {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
}

impl Logged {
    fn spawn(mut cmd: Command, what: &'static str) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("{what}: no stderr"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("IOT_TEST_VERBOSE").is_some() {
                    eprintln!("[{what}] {line}");
                }
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining so the pipe never fills.
                    continue;
                }
            }
        });
        Self {
            child: KillOnDrop(child),
            lines,
        }
    }

    /// Waits for a log line containing `needle`.
    fn wait_for(&self, needle: &str, what: &str, timeout: Duration) {
        let until = std::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("{what} did not log `{needle}` within {timeout:?}"),
            }
        }
    }
}

/// A scheduler and `executors` executors of the `analytics` binary on loopback.
struct TestCluster {
    scheduler: String,
    _scheduler: Logged,
    executors: Vec<Logged>,
    _work: tempfile::TempDir,
}

impl TestCluster {
    fn start(store: &StoreAt, executors: usize) -> Self {
        let port = free_port();
        let scheduler = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_analytics"));
        cmd.arg("scheduler")
            .env("IOT_SCHEDULER_ADDR", &scheduler)
            .env("IOT_SCHEDULER_EXTERNAL_HOST", "127.0.0.1")
            .env("IOT_EXECUTOR_TIMEOUT_S", "5")
            .env("RUST_LOG", "info");
        store.apply(&mut cmd);
        let sched = Logged::spawn(cmd, "scheduler");
        sched.wait_for("listening", "the scheduler", Duration::from_secs(60));
        let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut running = Vec::new();
        for i in 0..executors {
            let dir = work.path().join(format!("executor-{i}"));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_analytics"));
            cmd.arg("executor")
                .env("IOT_BALLISTA_SCHEDULER", &scheduler)
                .env("IOT_EXECUTOR_PORT", free_port().to_string())
                .env("IOT_EXECUTOR_GRPC_PORT", free_port().to_string())
                .env("IOT_EXECUTOR_WORK_DIR", &dir)
                .env("IOT_EXECUTOR_SLOTS", "2")
                .env("IOT_EXECUTOR_HEARTBEAT_S", "1")
                .env("RUST_LOG", "info");
            store.apply(&mut cmd);
            let e = Logged::spawn(cmd, "executor");
            e.wait_for(
                "Executor registration succeed",
                "an executor",
                Duration::from_secs(60),
            );
            running.push(e);
        }
        Self {
            scheduler,
            _scheduler: sched,
            executors: running,
            _work: work,
        }
    }

    /// `analytics run` on this cluster: the run it printed.
    fn run(&self, store: &StoreAt) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_analytics"));
        cmd.arg("run")
            .env("IOT_BALLISTA_SCHEDULER", &self.scheduler)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        store.apply(&mut cmd);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("analytics run: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("analytics run printed no run: {stdout}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

/// `meters` meters over `regions`, half-hourly from `days` days ago to now, with what real
/// meters do: a gap of an hour, a lost day, a spike, and one meter silent for the last five
/// days.
fn fleet(
    tag: &str,
    regions: &[RegionCode],
    meters: usize,
    days: i64,
) -> (Vec<Meter>, Vec<Reading>) {
    let now = Utc::now().timestamp();
    let start = now - now.rem_euclid(1800) - days * 86_400;
    let mut ms = Vec::new();
    let mut readings = Vec::new();
    for i in 0..meters {
        let id = MeterId::parse(format!("{tag}{i:05}")).unwrap_or_else(|e| panic!("{e}"));
        ms.push(Meter {
            meter_id: id.clone(),
            region: Some(regions[i % regions.len()].clone()),
            lat: None,
            lon: None,
            household_size: Some(2),
            dwelling: None,
            registered_at: DateTime::from_timestamp(start, 0).unwrap_or_default(),
        });
        let mut ts = start;
        let mut k = 0i64;
        while ts < now {
            let gap = i % 7 == 1 && (300..302).contains(&k);
            let lost_day = i % 7 == 2 && (600..648).contains(&k);
            let silent = i % 7 == 3 && ts > now - 5 * 86_400;
            if !(gap || lost_day || silent) {
                let spike = if i % 7 == 4 && k == 900 { 30.0 } else { 0.0 };
                readings.push(Reading {
                    meter_id: id.clone(),
                    ts: DateTime::from_timestamp(ts, 0).unwrap_or_default(),
                    kwh: 0.05 + ((k * 13 + i as i64 * 7) % 41) as f64 / 100.0 + spike,
                    interval_s: 1800,
                });
            }
            ts += 1800;
            k += 1;
        }
    }
    (ms, readings)
}

async fn fill(store: &dyn Store, meters: &[Meter], readings: &[Reading]) {
    store
        .upsert_meters(meters)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for chunk in readings.chunks(5_000) {
        store
            .write_readings(chunk)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

fn mine(profiles: Vec<iot_common::RegionProfile>, regions: &[RegionCode]) -> Vec<ProfileFigures> {
    let mut out: Vec<ProfileFigures> = profiles
        .into_iter()
        .filter(|p| regions.contains(&p.figures.region))
        .map(|p| p.figures)
        .collect();
    out.sort_by(|a, b| a.region.cmp(&b.region));
    out
}

/// Runs in process, then with `analytics run` on the cluster, and compares the two runs'
/// figures for `regions`.
async fn in_process_and_distributed(store: Arc<dyn Store>, at: &StoreAt, regions: &[RegionCode]) {
    let local = Analytics::new(store.clone(), JobConfig::default())
        .run_now(Trigger::Cli, RunRequest::default_window())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(local.status, RunStatus::Succeeded, "{local:?}");
    let cluster = TestCluster::start(at, 2);
    let remote = cluster.run(at);
    assert_eq!(remote.status, RunStatus::Succeeded, "{remote:?}");
    assert_eq!(
        (remote.window_from, remote.window_to),
        (local.window_from, local.window_to)
    );
    let figures = |run: &Run| {
        let store = store.clone();
        let id = run.run_id.clone();
        async move {
            mine(
                store
                    .run_profiles(&id)
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
                regions,
            )
        }
    };
    let (a, b) = (figures(&local).await, figures(&remote).await);
    assert_eq!(a.len(), regions.len(), "{a:?}");
    assert!(
        a.iter()
            .any(|f| f.meter_days.excluded > 0 && f.meter_days.estimated > 0)
    );
    assert_eq!(differences(&a, &b, 1e-12), Vec::<String>::new());
    let exact = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    println!(
        "{} regions equal within 1e-12 relative, {exact} of them bit for bit; rows {} and {}",
        a.len(),
        local.rows_scanned,
        remote.rows_scanned
    );
    // What the executors read is what the process read.
    let rows = |f: &[ProfileFigures]| f.iter().map(|f| f.readings).sum::<u64>();
    assert_eq!(rows(&a), rows(&b));
}

fn sqlite_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&SqliteStore::path_in(dir)).unwrap_or_else(|e| panic!("{e}")))
}

fn codes(names: &[&str]) -> Vec<RegionCode> {
    names
        .iter()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_the_cluster_equals_the_run_in_process_on_sqlite() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = sqlite_store(dir.path());
    let regions = codes(&["E09000001", "E09000007", "E09000033"]);
    let (meters, readings) = fleet("CLU", &regions, 21, 40);
    fill(store.as_ref(), &meters, &readings).await;
    in_process_and_distributed(store, &StoreAt::Sqlite(dir.path().to_owned()), &regions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_the_cluster_equals_the_run_in_process_on_cassandra() {
    let Some(cassandra) = iot_cassandra::test_node::store("cluster run on cassandra").await else {
        return;
    };
    let tag: u32 = rand::random();
    let regions: Vec<RegionCode> = (0..3)
        .map(|i| {
            format!("T{tag:08x}C{i}")
                .parse()
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let (meters, readings) = fleet(&format!("c{tag:08x}m"), &regions, 15, 40);
    fill(&cassandra, &meters, &readings).await;
    let at = StoreAt::Cassandra {
        nodes: std::env::var("IOT_TEST_CASSANDRA").unwrap_or_default(),
        keyspace: iot_cassandra::test_node::keyspace(),
    };
    in_process_and_distributed(Arc::new(cassandra), &at, &regions).await;
}

/// Numbers within 1e-12 relative (an aggregate's partial sums may meet in another order),
/// everything else equal.
fn same_answer(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_answer(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_answer(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_queries_answer_the_same_on_the_cluster() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sql.md"))
        .unwrap_or_else(|e| panic!("docs/sql.md: {e}"));
    let queries: Vec<&str> = guide
        .split("```sql\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(q, _)| q))
        .collect();
    assert!(queries.len() >= 2, "docs/sql.md has its examples");
    // The guide's window (late October to late November 2026) in its borough.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = sqlite_store(dir.path());
    let regions = codes(&["E09000007", "E09000001"]);
    // From a day before the guide's window (or 40 days back, if that is earlier) to now, so
    // the guide's dates and the queries on recent days both find readings, whatever today is.
    let guide_from: DateTime<Utc> = "2026-10-24T23:00:00Z".parse().unwrap_or_default();
    let days = (Utc::now() - guide_from).num_days().max(39) + 1;
    let (meters, readings) = fleet("SQLC", &regions, 8, days);
    fill(store.as_ref(), &meters, &readings).await;
    let first = readings.iter().map(|r| r.ts).min();
    assert!(
        first.is_some_and(|t| t <= guide_from),
        "the fleet covers the guide's window"
    );
    let cluster = TestCluster::start(&StoreAt::Sqlite(dir.path().to_owned()), 2);
    let remote: Arc<dyn Cluster> = Arc::new(SchedulerClient::new(
        format!("df://{}", cluster.scheduler),
        store.clone(),
    ));
    let engine = |cluster: Option<Arc<dyn Cluster>>| {
        SqlEngine::new(SqlSource::Store(store.clone()), SqlLimits::default(), 2)
            .unwrap_or_else(|e| panic!("{e}"))
            .on_cluster(cluster)
    };
    let (here, there) = (engine(None), engine(Some(remote)));
    let extra = [
        "SELECT region, count(*) AS meters FROM meters GROUP BY region ORDER BY region",
        "SELECT m.region, count(*) AS n, sum(r.kwh) AS kwh FROM readings r JOIN meters m \
         ON r.meter_id = m.meter_id WHERE r.ts >= now() - interval '3 days' \
         GROUP BY m.region ORDER BY m.region",
        "SELECT count(*) AS days, sum(excluded::int) AS excluded FROM meter_days",
    ];
    for q in queries.iter().copied().chain(extra) {
        let a = here.run(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        let b = there
            .run(q)
            .await
            .unwrap_or_else(|e| panic!("on the cluster: {q}: {e}"));
        let json = |x| {
            serde_json::to_value(answer_json(x).unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (ja, jb) = (json(&a), json(&b));
        assert!(a.rows > 0, "{q} answers something");
        assert!(
            same_answer(&ja["rows"], &jb["rows"]),
            "{q}:\n{ja}\nagainst\n{jb}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_mid_run_never_leaves_half_a_run_published() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = sqlite_store(dir.path());
    let regions: Vec<RegionCode> = (1..=12)
        .map(|i| {
            format!("E090000{i:02}")
                .parse()
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    // Enough readings that the run is still going when an executor dies.
    let (meters, readings) = fleet("KIL", &regions, 240, 40);
    fill(store.as_ref(), &meters, &readings).await;
    let before = Analytics::new(store.clone(), JobConfig::default())
        .run_now(Trigger::Cli, RunRequest::default_window())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(before.status, RunStatus::Succeeded);
    let published = mine(
        store.profiles().await.unwrap_or_else(|e| panic!("{e}")),
        &regions,
    );

    let at = StoreAt::Sqlite(dir.path().to_owned());
    let mut cluster = TestCluster::start(&at, 2);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_analytics"));
    cmd.arg("run")
        .env("IOT_BALLISTA_SCHEDULER", &cluster.scheduler)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    at.apply(&mut cmd);
    let client = cmd.spawn().unwrap_or_else(|e| panic!("analytics run: {e}"));
    // The first executor to start a task of the run is killed there, mid-run.
    let until = std::time::Instant::now() + Duration::from_secs(120);
    let busy = 'found: loop {
        for (i, e) in cluster.executors.iter().enumerate() {
            while let Ok(line) = e.lines.try_recv() {
                if line.contains("Execute task") {
                    break 'found i;
                }
            }
        }
        assert!(
            std::time::Instant::now() < until,
            "no executor started a task"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut victim = cluster.executors.remove(busy).child;
    victim.0.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let out = client
        .wait_with_output()
        .unwrap_or_else(|e| panic!("analytics run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let run: Run = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .unwrap_or_else(|| panic!("no run printed: {stdout}"));
    let stored = store
        .runs(10)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|r| r.run_id == run.run_id)
        .unwrap_or_else(|| panic!("run {} not recorded", run.run_id));
    assert_eq!(stored.status, run.status);
    let now_published = mine(
        store.profiles().await.unwrap_or_else(|e| panic!("{e}")),
        &regions,
    );
    let of_run = mine(
        store
            .run_profiles(&run.run_id)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        &regions,
    );
    match run.status {
        RunStatus::Succeeded => {
            // Ballista ran the lost tasks again: the whole run, equal to the one in process.
            println!("the executor's tasks were retried; the run succeeded");
            assert_eq!(
                differences(&of_run, &published, 1e-12),
                Vec::<String>::new()
            );
            assert_eq!(
                differences(&now_published, &published, 1e-12),
                Vec::<String>::new()
            );
        }
        RunStatus::Failed => {
            println!("the run failed: {:?}", run.error);
            assert!(
                of_run.is_empty(),
                "a failed run wrote {} profiles",
                of_run.len()
            );
            assert_eq!(now_published, published, "the map's profiles were kept");
            assert!(!out.status.success(), "a failed run exits non-zero");
        }
        other => panic!("the run ended {other:?}"),
    }
    let by_region: BTreeMap<_, _> = now_published.iter().map(|f| (&f.region, f)).collect();
    assert_eq!(by_region.len(), regions.len());
}
