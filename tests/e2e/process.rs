//! The real binary as a process: `kill -9` right after a 202 loses nothing (a 202 means
//! durable), SIGTERM stops it cleanly, and stopping it again and again while meters post
//! loses no reading it answered 202 for.

use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use iot_common::auth::MeterTokens;
use iot_common::store::sqlite::SqliteStore;
use iot_simulator::acked_load::{AckedLoad, Target, assert_all_stored, terminate};
use iot_testkit::{listening, poll_until};
use serde_json::{Value, json};

pub(crate) use iot_testkit::KillOnDrop as Proc;

/// Starts `iot-demo` on free ports without a fleet; returns it and its external base URL.
fn launch(data: &std::path::Path) -> (Proc, String) {
    let (proc, external, _) = launch_with(data, &[]);
    (proc, external)
}

/// [`launch`] with more flags; also returns the internal base URL.
pub(crate) fn launch_with(data: &std::path::Path, flags: &[&str]) -> (Proc, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iot-demo"))
        .args([
            "--meters",
            "0",
            "--external-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
        ])
        .args(flags)
        .env("IOT_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .env_remove("IOT_METER_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn iot-demo: {e}"));
    let (external, internal) = listening(&mut child, "iot-demo");
    (Proc(child), external, internal)
}

pub(crate) fn token(data: &std::path::Path, meter: &str) -> String {
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

/// Waits until `load` has had `more` readings accepted since now: the process is mid-load.
async fn until_accepted(load: &AckedLoad, more: usize) {
    let goal = load.accepted() + more;
    let what = format!("the meter accepting {more} more readings");
    poll_until(
        &what,
        Duration::from_secs(12),
        Duration::from_millis(20),
        || async { (load.accepted() >= goal).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_again_and_again_under_load_it_keeps_every_reading_it_answered_202_for() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (mut proc, url) = launch(dir.path());
    let secret = std::fs::read_to_string(dir.path().join("meter-secret"))
        .unwrap_or_else(|e| panic!("meter secret: {e}"));
    let target = Target::new(&url);
    // Four meters posting 48 readings a request, concurrently, as fast as they are taken.
    let tokens = MeterTokens::new(secret.trim()).unwrap_or_else(|e| panic!("{e}"));
    let load = AckedLoad::start(target.clone(), &tokens, "LOAD", 4, 48);
    // Eight SIGTERMs (the normal stop: drain, flush, commit), then two kill -9s.
    for round in 0..10 {
        until_accepted(&load, 1_000).await;
        if round < 8 {
            terminate(&mut proc.0, Duration::from_secs(15)).await;
        } else {
            proc.0.kill().unwrap_or_else(|e| panic!("kill -9: {e}"));
            let _ = proc.0.wait();
        }
        let (next, url) = launch(dir.path());
        proc = next;
        target.set(&url);
    }
    until_accepted(&load, 1_000).await;
    let accepted = load.stop().await;

    let store = SqliteStore::open(&dir.path().join("store.sqlite"))
        .unwrap_or_else(|e| panic!("open store: {e}"));
    assert_all_stored(&store, &accepted, Duration::from_secs(30)).await;
    terminate(&mut proc.0, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn sigterm_stops_the_process_cleanly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (mut proc, url) = launch(dir.path());
    let res = reqwest::get(format!("{url}/api/v1/regions"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status().as_u16(), 200);
    terminate(&mut proc.0, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meters_revoke_reaches_the_running_process_within_5_s() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (_proc, url) = launch(dir.path());
    let token = token(dir.path(), "CLI-REVOKE");
    let client = reqwest::Client::new();
    let post = || {
        let body = json!([{"meter_id": "CLI-REVOKE", "ts": (Utc::now() - chrono::TimeDelta::hours(3)).format("%Y-%m-%dT%H:00:00Z").to_string(), "kwh": 0.2}]);
        client
            .post(format!("{url}/api/v1/readings"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let status = post().await.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status, 202);
    let out = Command::new(env!("CARGO_BIN_EXE_iot-demo"))
        .args(["meters", "revoke", "CLI-REVOKE"])
        .env("IOT_DATA_DIR", dir.path())
        .env_remove("IOT_METER_SECRET")
        .output()
        .unwrap_or_else(|e| panic!("iot-demo meters revoke: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = std::time::Instant::now();
    loop {
        let status = post().await.map(|r| r.status().as_u16()).unwrap_or(0);
        if status == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "still {status} 5 s after `meters revoke`"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
