//! Data quality as its users meet it: a recompute over a faulty fleet counts its complete,
//! estimated and excluded household-days and the pages say so; a meter silent for 7 hours
//! shows on `/status`, in `/metrics`, on the console and in the JSON route within one
//! refresh, and leaves them when it posts again.

use std::time::Duration;

use chrono::Utc;
use iot_common::domain::{Meter, MeterId};
use iot_common::{Reading, RunStatus};
use iot_simulator::FleetConfig;
use iot_simulator::faults::FaultRates;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{ANALYST, SendOrPanic, TestApp, eventually, token};

#[tokio::test]
async fn a_recompute_over_a_faulty_fleet_counts_estimated_and_excluded_days() {
    let app = TestApp::builder()
        .fleet(FleetConfig {
            meters: 66,
            backfill_days: 9,
            seed: 26,
            faults: FaultRates {
                gaps: 0.2,
                outages: 0.03,
                late: 0.0,
                duplicates: 0.2,
                spikes: 0.1,
            },
            ..FleetConfig::default()
        })
        .start()
        .await;
    let store = app.app.store.clone();
    let ran = crate::support::startup_run(&app, Duration::from_secs(120)).await;
    assert!(
        ran.is_some_and(|r| r.status == RunStatus::Succeeded),
        "the start-up run succeeds"
    );
    let profiles = store.profiles().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profiles.len(), 33);
    let (mut complete, mut estimated, mut excluded) = (0, 0, 0);
    for p in &profiles {
        let d = p.figures.meter_days;
        complete += d.complete;
        estimated += d.estimated;
        excluded += d.excluded;
        assert!(d.kept() > 0, "{}: {d:?}", p.figures.region);
    }
    assert!(
        complete > 0 && estimated > 0 && excluded > 0,
        "complete {complete}, estimated {estimated}, excluded {excluded}"
    );
    // Every meter's days from its first reading on are counted, excluded ones too: most of
    // 66 meters' 9 days (an outage at a meter's start hides those days), and at most the
    // window and a day either side.
    let all = complete + estimated + excluded;
    assert!(
        (66 * 9 * 9 / 10..=66 * 11).contains(&all),
        "{all} meter-days"
    );
    let res = app.client.get(app.ext("/")).send_or_panic().await;
    let map = res.text().await.unwrap_or_default();
    assert!(
        map.contains("household-days"),
        "the map says what it rests on: {map}"
    );
    let code = profiles[0].figures.region.as_str();
    let page = app
        .client
        .get(app.ext(&format!("/regions/{code}")))
        .send_or_panic()
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(page.contains("% estimated"), "{page}");
    let quality = app
        .client
        .get(app.int("/internal/console/quality"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(quality.status(), StatusCode::OK);
    let html = quality.text().await.unwrap_or_default();
    assert!(
        html.contains("id=\"completeness\"") && html.contains("<rect class=\"bar\""),
        "{html}"
    );
    assert!(
        html.contains("id=\"worst\"")
            && (html.contains("id=\"prolonged\"") || html.contains("id=\"prolonged-none\"")),
        "the meters of note: {html}"
    );
    let noted: Value = app
        .client
        .get(app.int("/internal/v1/quality/meters"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await
        .json()
        .await
        .unwrap_or(Value::Null);
    let worst = noted["worst"].as_array().cloned().unwrap_or_default();
    assert!(!worst.is_empty() && worst.len() <= 10, "{noted}");
    let left_out = |m: &Value| m["excluded"].as_u64().unwrap_or(0);
    assert!(
        worst.windows(2).all(|w| left_out(&w[0]) >= left_out(&w[1])),
        "most days left out first: {noted}"
    );
    app.app.stop(Duration::from_secs(10)).await;
}

async fn silent_json(app: &TestApp) -> Value {
    app.client
        .get(app.int("/internal/v1/quality/silent-meters"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// Whether every view says `meter` is silent (`true`) or none does (`false`); the views
/// that disagree go to stderr.
async fn seen_silent(app: &TestApp, meter: &str, silent: bool) -> bool {
    let json = silent_json(app).await;
    let listed = json["meters"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x["meter_id"] == meter));
    let status = app
        .client
        .get(app.ext("/status"))
        .send_or_panic()
        .await
        .text()
        .await
        .unwrap_or_default();
    // What each view says: silent, not silent, or nothing readable (`None`).
    let counted = if status.contains("1 meter silent") {
        Some(true)
    } else {
        status.contains("0 meters silent").then_some(false)
    };
    let metrics = app
        .client
        .get(app.int("/metrics"))
        .send_or_panic()
        .await
        .text()
        .await
        .unwrap_or_default();
    let gauge = metrics.lines().find_map(|l| match l {
        "iot_meters_silent 1" => Some(true),
        "iot_meters_silent 0" => Some(false),
        _ => None,
    });
    let console = app
        .client
        .get(app.int("/internal/console/quality"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await
        .text()
        .await
        .unwrap_or_default();
    let on_console = console.contains(&format!("<td>{meter}</td>"));
    let views = [Some(listed), counted, gauge, Some(on_console)];
    if views != [Some(silent); 4] {
        eprintln!("silent {silent}: JSON, /status, gauge, console = {views:?}");
    }
    views == [Some(silent); 4]
}

/// Long enough for two refreshes of the silent meters.
const REFRESHES: Duration = Duration::from_secs(75);

#[tokio::test]
async fn a_meter_silent_for_seven_hours_shows_everywhere_until_it_posts_again() {
    let app = TestApp::start().await;
    let meter = "SILENT0001";
    let id: MeterId = meter.parse().unwrap_or_else(|e| panic!("{e}"));
    let now = Utc::now();
    let store = app.app.store.clone();
    store
        .upsert_meters(&[Meter {
            meter_id: id.clone(),
            region: Some("E09000007".parse().unwrap_or_else(|e| panic!("{e}"))),
            lat: None,
            lon: None,
            household_size: Some(2),
            dwelling: None,
            registered_at: now - chrono::Duration::days(3),
        }])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Readings up to the half hour that started 7 hours ago, then nothing.
    let last = now.timestamp() - 7 * 3600;
    let last = last - last.rem_euclid(1800);
    let readings: Vec<Reading> = (0..48)
        .map(|k| Reading {
            meter_id: id.clone(),
            ts: chrono::DateTime::from_timestamp(last - k * 1800, 0).unwrap_or_default(),
            kwh: 0.2,
            interval_s: 1800,
        })
        .collect();
    store
        .write_readings(&readings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The watch refreshes every 30 s, its first time as the app starts: two periods, and a
    // little for a loaded machine.
    let shown = eventually(REFRESHES, || seen_silent(&app, meter, true)).await;
    assert!(shown, "silent everywhere: {}", silent_json(&app).await);

    // It posts again, through the meter.
    let fresh = now.timestamp() - now.timestamp().rem_euclid(1800) - 1800;
    let res = app
        .client
        .post(app.ext("/api/v1/readings"))
        .bearer_auth(token(meter))
        .json(&serde_json::json!([{
            "meter_id": meter,
            "ts": chrono::DateTime::from_timestamp(fresh, 0).unwrap_or_default(),
            "kwh": 0.3,
            "interval_s": 1800
        }]))
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let at = chrono::DateTime::from_timestamp(fresh, 0).unwrap_or_default();
    let stored = eventually(Duration::from_secs(30), || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            store
                .meter_readings(&id, at, at + chrono::Duration::seconds(1), 1)
                .await
                .is_ok_and(|r| r.len() == 1)
        }
    })
    .await;
    assert!(stored, "the sink stores the new reading");
    let gone = eventually(REFRESHES, || seen_silent(&app, meter, false)).await;
    assert!(gone, "no longer silent: {}", silent_json(&app).await);
    app.app.stop(Duration::from_secs(5)).await;
}
