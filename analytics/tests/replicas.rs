//! Two `analytics serve` processes on one store, triggered at once: one run, one 409. The
//! run's lease in the store keeps replicas from recomputing together.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use iot_common::domain::{DEFAULT_INTERVAL_S, Meter, MeterId, Reading};
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;

use iot_testkit::secrets::ANALYST_TOKEN as TOKEN;

use iot_testkit::KillOnDrop as Serve;

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}")).to_string()
}

fn serve(data: &std::path::Path, addr: &str) -> Serve {
    let child = Command::new(env!("CARGO_BIN_EXE_analytics"))
        .arg("serve")
        .env("IOT_DATA_DIR", data)
        .env("IOT_INTERNAL_ADDR", addr)
        .env("IOT_ANALYST_TOKEN", TOKEN)
        // No scheduled run during the test.
        .env("IOT_ANALYTICS_FIRST_RUN_S", "3600")
        .env_remove("IOT_CASSANDRA_NODES")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn analytics: {e}"));
    Serve(child)
}

/// Enough readings that a run takes a while: both triggers land while it holds the lease.
async fn fill(store: &SqliteStore) {
    let now = Utc::now().timestamp();
    let start = now - now.rem_euclid(86_400) - 20 * 86_400;
    let mut meters = Vec::new();
    for i in 0..60 {
        let id = MeterId::parse(format!("MAC{i:06}")).unwrap_or_else(|e| panic!("{e}"));
        meters.push(Meter {
            meter_id: id,
            region: Some("E09000001".parse().unwrap_or_else(|e| panic!("{e}"))),
            lat: None,
            lon: None,
            household_size: None,
            dwelling: None,
            registered_at: Utc::now(),
        });
    }
    store
        .upsert_meters(&meters)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for m in &meters {
        let readings: Vec<Reading> = (0..19 * 48)
            .map(|k| Reading {
                meter_id: m.meter_id.clone(),
                ts: DateTime::from_timestamp(start + k * 1800, 0).unwrap_or_default(),
                kwh: 0.1 + (k % 48) as f64 * 0.01,
                interval_s: DEFAULT_INTERVAL_S,
            })
            .collect();
        store
            .write_readings(&readings)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

async fn ready(client: &reqwest::Client, addr: &str) {
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("analytics on {addr} never became ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_triggered_at_once_make_one_run_and_one_409() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store =
        SqliteStore::open(&SqliteStore::path_in(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    fill(&store).await;
    let (a, b) = (free_addr(), free_addr());
    let _one = serve(dir.path(), &a);
    let _two = serve(dir.path(), &b);
    let client = reqwest::Client::new();
    ready(&client, &a).await;
    ready(&client, &b).await;
    let post = |addr: String| {
        let client = client.clone();
        async move {
            let res = client
                .post(format!("http://{addr}/internal/v1/runs"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (res.status().as_u16(), res.text().await.unwrap_or_default())
        }
    };
    let (ra, rb) = tokio::join!(post(a.clone()), post(b.clone()));
    let mut statuses = [ra.0, rb.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 409], "{ra:?} {rb:?}");
    let refused = if ra.0 == 409 { &ra.1 } else { &rb.1 };
    assert!(refused.contains("in progress"), "{refused}");
    // Only the accepted run exists, and it finishes.
    let mut runs = Vec::new();
    for _ in 0..600 {
        runs = store.runs(10).await.unwrap_or_else(|e| panic!("{e}"));
        if runs.iter().all(|r| r.finished_at.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, iot_common::RunStatus::Succeeded, "{runs:?}");
    // With the run over, the other replica may run.
    let (status, body) = post(b).await;
    assert_eq!(status, 202, "{body}");
}
