//! The one rule for a test that needs a service from outside the workspace (a Kafka broker,
//! a Cassandra node, Chromium, kubectl, docker-compose, haproxy): in CI (`CI` set, or the
//! service's own `IOT_REQUIRE_<SERVICE>`) a missing service fails the test; elsewhere the
//! test says loudly that it was skipped and returns. The notice goes straight to the
//! process's stderr, which the test harness does not capture, so it shows in every run's
//! output without `--nocapture` (and `.ci/run` fails on any such line).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The project's runner of real Kafka and Cassandra nodes (`tests/nodes/run`).
pub fn node_runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nodes/run")
}

/// Whether Java runs here: the nodes of [`node_runner`] are JVM processes.
pub fn java_runs() -> Result<(), String> {
    std::process::Command::new("java")
        .arg("-version")
        .output()
        .map(drop)
        .map_err(|e| format!("Java cannot run ({e}); tests/nodes/run needs Java 17 and Maven"))
}

/// Whether `pid` has ended (or is a zombie nobody has reaped yet).
pub fn process_gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Kills the node whose pid `dir/pid` holds at once (`kill -9`, as a crash would) and waits
/// until it is gone.
pub fn kill_node(dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(dir.join("pid")) else {
        return;
    };
    let pid = pid.trim();
    if pid.is_empty() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", pid])
        .status();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !process_gone(pid) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(dir.join("pid"));
}

/// Stops the node in `dir` the normal way (SIGTERM) and waits for it to exit.
pub fn terminate_node(dir: &Path) {
    let _ = std::process::Command::new(node_runner())
        .arg("stop")
        .arg(dir)
        .status();
}

/// Starts a node with `tests/nodes/run start <args>` and waits until it answers; panics with
/// the runner's words when it cannot.
pub fn start_node(args: &[&str], dir: &Path) {
    let out = std::process::Command::new(node_runner())
        .arg("start")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", node_runner().display()));
    assert!(
        out.status.success(),
        "tests/nodes/run start {}: the node did not start:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a missing service must fail the test: under CI, or when `require_var` is set.
pub fn required(require_var: Option<&str>) -> bool {
    ["CI"]
        .into_iter()
        .chain(require_var)
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// `test` cannot have its service, because `why`: panics when [`required`], else prints a
/// `!!! SKIPPED` line the run's output shows.
pub fn missing(test: &str, why: &str, require_var: Option<&str>) {
    assert!(!required(require_var), "{test}: {why}");
    let _ = writeln!(
        std::io::stderr(),
        "\n!!! SKIPPED {test}: {why}. Set CI=1 to make this a failure. !!!\n"
    );
}
