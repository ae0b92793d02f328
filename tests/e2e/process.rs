//! The real binary as a process: `kill -9` right after a 202 loses nothing (a 202 means
//! durable), and SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `iot-demo` on free ports without a fleet; returns it and its external base URL.
fn launch(data: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iot-demo"))
        .args([
            "--meters",
            "0",
            "--external-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
        ])
        .env("IOT_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .env_remove("IOT_METER_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn iot-demo: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let proc = Proc(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_else(|e| panic!("read stdout: {e}"));
        if let Some(rest) = line.strip_prefix("listening external=") {
            let url = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            return (proc, url);
        }
    }
    panic!("iot-demo exited before it listened");
}

fn token(data: &std::path::Path, meter: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_iot-demo"))
        .args(["token", meter])
        .env("IOT_DATA_DIR", data)
        .env_remove("IOT_METER_SECRET")
        .output()
        .unwrap_or_else(|e| panic!("iot-demo token: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn kill_dash_nine_right_after_202_loses_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let meter = "MAC000042";
    let tok = token(dir.path(), meter);
    let client = reqwest::Client::new();
    let s = Utc::now().timestamp() - 3 * 3600;
    let first = s - s.rem_euclid(1800);
    let batch: Vec<Value> = (0..48)
        .map(|i| {
            let ts = chrono::DateTime::from_timestamp(first - i * 1800, 0).unwrap_or_default();
            json!({"meter_id": meter, "ts": ts.to_rfc3339(), "kwh": 0.01 * i as f64})
        })
        .collect();

    let (mut proc, url) = launch(dir.path());
    let res = client
        .post(format!("{url}/api/v1/readings"))
        .bearer_auth(&tok)
        .json(&batch)
        .send()
        .await
        .unwrap_or_else(|e| panic!("post: {e}"));
    assert_eq!(res.status().as_u16(), 202);
    proc.0.kill().unwrap_or_else(|e| panic!("kill -9: {e}"));
    let _ = proc.0.wait();

    let (_proc, url) = launch(dir.path());
    let from = chrono::DateTime::from_timestamp(first - 48 * 1800, 0).unwrap_or_default();
    let mut got = 0;
    for _ in 0..200 {
        let body: Value = client
            .get(format!("{url}/api/v1/meters/{meter}/readings"))
            .query(&[("from", from.to_rfc3339())])
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap_or_else(|e| panic!("read back: {e}"))
            .json()
            .await
            .unwrap_or(Value::Null);
        got = body["count"].as_u64().unwrap_or(0);
        if got == 48 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        got, 48,
        "every acknowledged reading is there after the restart"
    );
}

#[tokio::test]
async fn sigterm_stops_the_process_cleanly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (mut proc, url) = launch(dir.path());
    let res = reqwest::get(format!("{url}/api/v1/regions"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status().as_u16(), 200);
    let pid = proc.0.id().to_string();
    // The shell's builtin `kill`: no dependency on procps.
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap_or_else(|e| panic!("kill -TERM: {e}"));
    assert!(killed.success());
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = proc.0.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.unwrap_or_else(|| panic!("still running 15 s after SIGTERM"));
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
