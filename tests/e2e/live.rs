//! The live layer on the embedded bus: the `iot-demo` process stopped with SIGTERM and
//! killed with -9 while meters post readings of the last hours (repeats and corrections
//! among them) keeps figures equal, to the micro-kWh, to the same slots computed from the
//! stored readings; `/api/v1/live` and `/api/v1/live/{code}` serve them.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use chrono::Utc;
use iot_common::auth::MeterTokens;
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_simulator::acked_load::{Target, terminate};
use iot_simulator::live_check::{
    assert_live_equals_readings, distinct_readings, meters, post_rounds, rounds_available,
    wait_rounds,
};
use serde_json::Value;

use crate::process::launch_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_figures_equal_the_stored_readings_after_sigterm_and_kill_dash_nine() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (mut proc, url, _) = launch_with(dir.path(), &[]);
    let secret = std::fs::read_to_string(dir.path().join("meter-secret"))
        .unwrap_or_else(|e| panic!("meter secret: {e}"));
    let tokens = MeterTokens::new(secret.trim()).unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::open(&dir.path().join("store.sqlite"))
        .unwrap_or_else(|e| panic!("open store: {e}"));
    let fleet = meters("LIVEE", 8, &["E09000001", "E09000007"]);
    store
        .upsert_meters(&fleet)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let rounds = 60.min(rounds_available(Utc::now()));
    let done = Arc::new(AtomicUsize::new(0));
    let target = Target::new(&url);
    let with_tokens = fleet
        .iter()
        .map(|m| (m.clone(), tokens.issue(&m.meter_id)))
        .collect();
    let load = tokio::spawn(post_rounds(
        target.clone(),
        with_tokens,
        rounds,
        done.clone(),
    ));
    wait_rounds(&done, rounds / 3).await;
    terminate(&mut proc.0, Duration::from_secs(20)).await;
    let (next, url, _) = launch_with(dir.path(), &[]);
    proc = next;
    target.set(&url);
    wait_rounds(&done, 2 * rounds / 3).await;
    proc.0.kill().unwrap_or_else(|e| panic!("kill -9: {e}"));
    let _ = proc.0.wait();
    let (_proc, url, _) = launch_with(dir.path(), &[]);
    target.set(&url);
    load.await.unwrap_or_else(|e| panic!("{e}"));

    assert_live_equals_readings(
        &store,
        &fleet,
        distinct_readings(&fleet, rounds),
        Duration::from_secs(60),
    )
    .await;

    // The API serves the same figures: the region's slots, and the map's last half hour.
    let figures = store
        .live_slots(iot_common::live::window_start(Utc::now()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let city: Value = reqwest::get(format!("{url}/api/v1/live/E09000001"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let slots = city["slots"].as_array().cloned().unwrap_or_default();
    assert!(slots.len() >= 96, "48 hours of half hours: {}", slots.len());
    for f in figures.iter().filter(|f| f.region == "E09000001") {
        let served = slots
            .iter()
            .find(|s| {
                s["slot"]
                    .as_str()
                    .and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok())
                    == Some(f.slot)
            })
            .unwrap_or_else(|| panic!("slot {} served", f.slot));
        assert_eq!(served["meters"], f.meters);
        assert_eq!(served["readings"], f.readings);
        assert_eq!(served["kwh"].as_f64(), Some(f.micro_kwh as f64 / 1e6));
        assert_eq!(
            served["complete"], true,
            "all four meters of the City reported"
        );
    }
    let now: Value = reqwest::get(format!("{url}/api/v1/live"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(now["regions"].as_array().map(Vec::len), Some(33));
    assert_eq!(now["complete_share"], 0.75);
    let missing = reqwest::get(format!("{url}/api/v1/live/NOWHERE"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.status().as_u16(), 404);
}
