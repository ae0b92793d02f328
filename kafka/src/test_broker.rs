//! A private Kafka-protocol broker for tests: a `tansu` process with in-memory storage on a
//! free loopback port, which a test can stop (`kill -9`) and start again.
//!
//! Where `tansu` is not installed the tests that need it say so loudly and return; with `CI`
//! or `IOT_REQUIRE_KAFKA` set they fail instead, so CI never passes without a broker.
//! `IOT_TANSU` names the binary when it is not on `PATH` or in `~/.cargo/bin`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use iot_common::Reading;

use crate::KafkaConfig;

pub struct TestBroker {
    bin: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

fn find_tansu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("IOT_TANSU") {
        return Some(PathBuf::from(path));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

fn required() -> bool {
    ["CI", "IOT_REQUIRE_KAFKA"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty() && v != "0"))
}

impl TestBroker {
    /// Starts a broker for `test`, or explains loudly why it cannot and returns `None`.
    /// Panics instead when `CI` or `IOT_REQUIRE_KAFKA` is set.
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = find_tansu() else {
            let why = "no Kafka-protocol broker: `tansu` is not installed \
                       (cargo install tansu --features dynostore, or set IOT_TANSU)";
            assert!(!required(), "{test}: {why}");
            eprintln!("\n!!! SKIPPED {test}: {why}. Set CI=1 to make this a failure. !!!\n");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let log = std::env::temp_dir().join(format!("iot-tansu-{port}.log"));
        let mut broker = Self {
            bin,
            port,
            log,
            child: None,
        };
        broker.resume();
        Some(broker)
    }

    /// The bootstrap address to give clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Settings for clients of this broker: one message per record batch. tansu 0.6 fetches
    /// from the first batch that starts at or after the offset asked for, so a consumer that
    /// resumes from a commit inside a batch would never get the rest of that batch (a real
    /// Kafka broker returns the batch holding the offset). Tests that stop consumers
    /// mid-load commit inside batches; with single-message batches every offset starts one.
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig {
            batch_messages: 1,
            ..KafkaConfig::new(&self.brokers())
        }
    }

    /// Kills the broker at once, as a crash would. Its in-memory data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker (again) on the same port and waits until it accepts connections.
    pub fn resume(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(&self.log).expect("broker log file");
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env(
                "RUST_LOG",
                std::env::var("IOT_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "broker did not listen on port {} within 30 s; log: {}",
                self.port,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
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
