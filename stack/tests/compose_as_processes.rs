//! docker-compose.yml, run as processes (tansu for Kafka, the SQLite store for Cassandra):
//! every service starts from the file's own command and environment, passes its own
//! healthcheck in `depends_on` order, and the data flows end to end through the edge. A
//! broken file fails, naming the service: a misspelt variable, a wrong command, a
//! healthcheck path that does not exist.
//!
//! The binaries come from the same target directory as this test (`cargo test --workspace`
//! builds them); `haproxy`, `curl`, `wget` and `tansu` must be installed (`.ci/run` does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use iot_stack::{Stack, StackConfig, StackError};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const TOKEN: &str = "compose-test-analyst-token";

/// `target/debug` (or release): this test binary lives in its `deps/`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no target dir above {}", exe.display()))
}

/// A loopback prefix per stack, so stacks of parallel tests never share an address.
fn prefix() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let base = (std::process::id() % 200) as u8;
    20 + (base + NEXT.fetch_add(1, Ordering::SeqCst) * 7) % 230
}

fn config(compose_text: Option<String>, work: &Path) -> StackConfig {
    config_with(compose_text, work, &[])
}

fn config_with(compose_text: Option<String>, work: &Path, profiles: &[&str]) -> StackConfig {
    let compose_file = match compose_text {
        Some(text) => {
            let path = work.join("docker-compose.yml");
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
            path
        }
        None => Path::new(ROOT).join("docker-compose.yml"),
    };
    StackConfig {
        root: PathBuf::from(ROOT),
        compose_file,
        bin_dir: bin_dir(),
        vars: HashMap::from([
            (
                "IOT_METER_SECRET".to_owned(),
                "compose-test-meter-secret-of-at-least-32-bytes".to_owned(),
            ),
            ("IOT_ANALYST_TOKEN".to_owned(), TOKEN.to_owned()),
            ("IOT_METERS".to_owned(), "66".to_owned()),
            ("IOT_BACKFILL_DAYS".to_owned(), "3".to_owned()),
        ]),
        work_dir: work.to_path_buf(),
        prefix: prefix(),
        profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_file_runs_as_processes_and_the_data_flows_end_to_end() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut stack = Stack::up(&config(None, work.path()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = iot_stack::flow::check(&mut stack, TOKEN, 33)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.per_replica.len(), 2, "{report:?}");
    // The compose file's fleet fails like real meters (faults on by default): it posts all
    // its fault plan lets through, which is most but not all of 66 meters' 3 days.
    let every_slot = 66 * 3 * 48;
    assert_eq!(
        report.backfill_posted, report.backfill_expected,
        "{report:?}"
    );
    assert!(
        report.backfill_expected < every_slot && report.backfill_expected > every_slot * 8 / 10,
        "{report:?}"
    );
    assert!(report.first_run.rows_scanned > 0, "{report:?}");
    assert_eq!(report.coloured_regions, 33);
}

/// `docker compose --profile cluster up`: the analytics scheduler and its two executors run
/// too, the first run is computed on them (the scheduler named as the README says), and the
/// data still flows end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_profile_runs_as_processes_and_the_first_run_is_computed_on_it() {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = config_with(None, work.path(), &["cluster"]);
    config.vars.insert(
        "IOT_BALLISTA_SCHEDULER".to_owned(),
        "analytics-scheduler:50050".to_owned(),
    );
    let mut stack = Stack::up(&config).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stack.replicas("analytics-executor").count(), 2);
    assert_eq!(stack.replicas("analytics-scheduler").count(), 1);
    let report = iot_stack::flow::check(&mut stack, TOKEN, 33)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.first_run.rows_scanned > 0, "{report:?}");
    assert_eq!(report.coloured_regions, 33);
    // The run's tasks ran on the executors: each logged the tasks it executed.
    let tasks: usize = stack
        .replicas("analytics-executor")
        .map(|p| p.log_text().matches("Execute task").count())
        .sum();
    assert!(tasks > 0, "no executor ran a task");
    stack.check_alive().unwrap_or_else(|e| panic!("{e}"));
}

/// The file with `from` replaced by `to` (exactly once).
fn mutated(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.matches(from).count(), 1, "`{from}` is not unique");
    text.replace(from, to)
}

async fn fails_naming(text: String, service: &str, says: &str) {
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    match Stack::up(&config(Some(text), work.path())).await {
        Ok(_) => panic!("the broken file ran; expected a failure of `{service}`"),
        Err(e @ StackError::Service { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("service `{service}")),
                "names another service: {msg}"
            );
            assert!(msg.contains(says), "{msg}");
        }
        Err(e) => panic!("failed without naming a service: {e}"),
    }
}

#[tokio::test]
async fn a_misspelt_variable_fails_naming_its_service() {
    fails_naming(
        mutated("IOT_KAFKA_GROUP: iot-sink", "IOT_KAFKA_GRUOP: iot-sink"),
        "sink",
        "IOT_KAFKA_GRUOP",
    )
    .await;
}

#[tokio::test]
async fn a_command_that_is_not_a_subcommand_fails_naming_its_service() {
    fails_naming(
        mutated(
            r#"command: ["simulator", "sink"]"#,
            r#"command: ["simulator", "sinc"]"#,
        ),
        "sink",
        "is not a command",
    )
    .await;
}

#[tokio::test]
async fn a_missing_required_variable_fails_naming_its_service() {
    // web refuses to start without the analyst token.
    fails_naming(
        mutated(
            "      IOT_ANALYST_TOKEN: ${IOT_ANALYST_TOKEN:?set IOT_ANALYST_TOKEN (see README)}\n      IOT_ANALYTICS_URL",
            "      IOT_ANALYTICS_URL",
        ),
        "web",
        "exited",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthcheck_that_never_passes_fails_naming_its_service() {
    fails_naming(
        mutated(
            r#"test: ["CMD", "curl", "-fsS", "http://127.0.0.1:9082/readyz"]"#,
            r#"test: ["CMD", "curl", "-fsS", "http://127.0.0.1:9082/ready"]"#,
        ),
        "sink",
        "never passed",
    )
    .await;
}
