//! A private Apache Kafka broker for tests: a real Kafka 4.1 node (KRaft, one process) on a
//! free loopback port with its data in a directory of its own, started by the project's
//! `tests/nodes/run` from the broker's jars on Maven Central. A test can kill it (`kill -9`)
//! or stop it (SIGTERM) and start it again on the same data, as an operator's broker restarts.
//!
//! Each test gets its own broker (about four seconds to start) because several stop theirs
//! mid-test. Where Java is missing the tests that need a broker say so loudly and return; with
//! `CI` or `IOT_REQUIRE_KAFKA` set they fail instead, so CI never passes without a broker.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use iot_common::Reading;

use crate::KafkaConfig;

/// The project's node runner (`tests/nodes/run`).
pub fn node_runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nodes/run")
}

pub struct TestBroker {
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

fn required() -> bool {
    ["CI", "IOT_REQUIRE_KAFKA"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// A port whose next one is free too: the broker's controller listens on it.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let Ok(a) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = a.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free loopback ports in a row")
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet).
fn gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl TestBroker {
    /// Starts a broker for `test`, or explains loudly why it cannot and returns `None`.
    /// Panics instead when `CI` or `IOT_REQUIRE_KAFKA` is set.
    pub fn start(test: &str) -> Option<Self> {
        if let Err(why) = Command::new("java").arg("-version").output() {
            let why = format!("no Kafka broker: Java cannot run ({why}); tests/nodes/run needs Java 17 and Maven");
            assert!(!required(), "{test}: {why}");
            say_skipped(test, &why);
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("iot-kafka-")
            .tempdir()
            .unwrap_or_else(|e| panic!("{test}: a broker directory: {e}"));
        let mut broker = Self {
            dir,
            port: free_port_pair(),
            running: false,
        };
        broker.resume();
        Some(broker)
    }

    /// The bootstrap address to give clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Settings for clients of this broker.
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig::new(&self.brokers())
    }

    /// The broker's process id, while it runs.
    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("pid"))
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
    }

    /// Kills the broker at once, as a crash would (`kill -9`). What it acknowledged is on
    /// its disk and there again when it resumes.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            let until = Instant::now() + Duration::from_secs(30);
            while !gone(&pid) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = std::fs::remove_file(self.dir.path().join("pid"));
        }
        self.running = false;
    }

    /// Stops the broker the normal way (SIGTERM: it closes its logs and leaves the cluster).
    pub fn terminate(&mut self) {
        let _ = Command::new(node_runner())
            .args(["stop"])
            .arg(self.dir.path())
            .status();
        self.running = false;
    }

    /// Starts the broker (again) on the same port and data, and waits until it answers a
    /// broker API request.
    pub fn resume(&mut self) {
        if self.running {
            self.stop();
        }
        let out = Command::new(node_runner())
            .args(["start", "kafka", "--heap", "384m", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", node_runner().display()));
        assert!(
            out.status.success(),
            "the Kafka broker on port {} did not start:\n{}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Says a test did not run, on the process's own stderr: the test harness captures
/// `eprintln!` of passing tests, and a skip must show in every run's output.
pub fn say_skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n!!! SKIPPED {test}: {why}. Set CI=1 to make this a failure. !!!\n"
    );
}

/// `per_meter` half-hourly readings of each of `meters` meters (`M000`, `M001`, ...) from
/// 1 November 2026, interleaved by time; all valid.
pub fn sample_readings(meters: usize, per_meter: usize) -> Vec<Reading> {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (0..per_meter)
        .flat_map(|i| {
            (0..meters).map(move |m| Reading {
                meter_id: iot_common::domain::MeterId::parse(format!("M{m:03}"))
                    .unwrap_or_else(|e| panic!("{e}")),
                ts: start + chrono::Duration::minutes(30 * i as i64),
                kwh: m as f64 * 0.01 + i as f64 * 0.0001,
                interval_s: 1800,
            })
        })
        .collect()
}
