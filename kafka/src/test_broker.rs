//! A private Apache Kafka broker for tests: a real Kafka 4.1 node (KRaft, one process) on a
//! free loopback port with its data in a directory of its own, started by the project's
//! `tests/nodes/run` from the broker's jars on Maven Central. A test can kill it (`kill -9`)
//! or stop it (SIGTERM) and start it again on the same data, as an operator's broker restarts.
//!
//! Each test gets its own broker (about four seconds to start) because several stop theirs
//! mid-test. Where Java is missing the tests that need a broker say so loudly and return; with
//! `CI` or `IOT_REQUIRE_KAFKA` set they fail instead, so CI never passes without a broker.

use std::net::TcpListener;

use chrono::{TimeZone, Utc};
use iot_common::Reading;
use iot_common::test_services::{java_runs, kill_node, start_node, terminate_node};

use crate::KafkaConfig;

pub struct TestBroker {
    /// Kept (and named) when the test fails: the broker's logs are in it.
    dir: Option<tempfile::TempDir>,
    port: u16,
    running: bool,
}

/// A port whose next one is free too (the broker's controller listens on it), below the
/// kernel's ephemeral range: while the broker is down for a restart, a client's outgoing
/// connection could otherwise take its port as a source port (or connect to itself on it),
/// and the broker could not bind it again.
fn free_port_pair() -> u16 {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for i in 0..1_000u64 {
        let port =
            20_000 + ((seed.wrapping_mul(6_364_136_223_846_793_005) >> 33) + i * 7_919) % 12_000;
        let port = port as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
    panic!("no two free loopback ports in a row below the ephemeral range")
}

impl TestBroker {
    /// Starts a broker for `test`, or explains loudly why it cannot and returns `None`.
    /// Panics instead when `CI` or `IOT_REQUIRE_KAFKA` is set.
    pub fn start(test: &str) -> Option<Self> {
        if let Err(why) = java_runs() {
            let why = format!("no Kafka broker: {why}");
            iot_common::test_services::missing(test, &why, Some("IOT_REQUIRE_KAFKA"));
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("iot-kafka-")
            .tempdir()
            .unwrap_or_else(|e| panic!("{test}: a broker directory: {e}"));
        let mut broker = Self {
            dir: Some(dir),
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

    fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().map_or(
            std::path::Path::new("/nonexistent"),
            tempfile::TempDir::path,
        )
    }

    /// Kills the broker at once, as a crash would (`kill -9`). What it acknowledged is on
    /// its disk and there again when it resumes.
    pub fn stop(&mut self) {
        kill_node(self.dir());
        self.running = false;
    }

    /// Stops the broker the normal way (SIGTERM: it closes its logs and leaves the cluster).
    pub fn terminate(&mut self) {
        terminate_node(self.dir());
        self.running = false;
    }

    /// Starts the broker (again) on the same port and data, and waits until it answers a
    /// broker API request.
    pub fn resume(&mut self) {
        if self.running {
            self.stop();
        }
        let port = self.port.to_string();
        start_node(&["kafka", "--heap", "384m", "--port", &port], self.dir());
        self.running = true;
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "the failed test's Kafka broker logs are in {}",
                dir.keep().display()
            );
        }
    }
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
