//! The all-in-one process computes profiles once the backfill is stored, and analysts drive
//! runs on the internal listener with their token.

use std::time::Duration;

use crate::support::{ANALYST, SendOrPanic, eventually, start_app};
use iot_simulator::FleetConfig;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn the_first_map_is_never_empty_and_analysts_can_recompute() {
    let app = start_app(Some(FleetConfig {
        meters: 66,
        backfill_days: 3,
        seed: 11,
        ..FleetConfig::default()
    }))
    .await;
    let store = app.app.store.clone();
    let profiled = eventually(Duration::from_secs(60), || {
        let store = store.clone();
        async move { store.profiles().await.is_ok_and(|p| p.len() == 33) }
    })
    .await;
    assert!(
        profiled,
        "every borough has a profile after the startup run"
    );
    // Profiles are written just before the run's final record: wait for that too.
    let recorded = eventually(Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            store.runs(10).await.is_ok_and(|runs| {
                runs.iter().any(|r| {
                    r.trigger == iot_common::domain::Trigger::Startup
                        && r.status == iot_common::RunStatus::Succeeded
                })
            })
        }
    })
    .await;
    let runs = store.runs(10).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        recorded,
        "the startup run is recorded as succeeded: {runs:?}"
    );
    let startup = runs
        .iter()
        .find(|r| r.trigger == iot_common::domain::Trigger::Startup)
        .unwrap_or_else(|| panic!("{runs:?}"));
    assert_eq!(startup.regions_written, 33);
    assert!(startup.rows_scanned >= 66 * 2 * 48, "{startup:?}");

    let url = app.int("/internal/v1/runs");
    let res = app.client.post(&url).send_or_panic().await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .post(app.ext("/internal/v1/runs"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "internal routes are not on the external listener"
    );
    let res = app
        .client
        .post(format!("{url}?trigger=startup"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "a caller names itself only as api or console"
    );
    let res = app
        .client
        .post(&url)
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let started: Value = res.json().await.unwrap_or(Value::Null);
    let id = started["run"]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let one = app.int(&format!("/internal/v1/runs/{id}"));
    let finished = eventually(Duration::from_secs(30), || {
        let (client, one) = (app.client.clone(), one.clone());
        async move {
            let Ok(res) = client.get(&one).bearer_auth(ANALYST).send().await else {
                return false;
            };
            let body: Value = res.json().await.unwrap_or(Value::Null);
            body["run"]["status"] == "succeeded"
        }
    })
    .await;
    assert!(finished, "the triggered run succeeds");
    let listed: Value = app
        .client
        .get(format!("{url}?limit=1"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await
        .json()
        .await
        .unwrap_or(Value::Null);
    assert_eq!(listed["runs"][0]["run_id"], id.as_str(), "newest first");
    assert_eq!(listed["runs"][0]["trigger"], "api");

    // Two runs: each borough's history has two points, newest first, and its page a trend.
    let regions = iot_common::regions::Regions::london().unwrap_or_else(|e| panic!("{e}"));
    for r in regions.iter() {
        let history: Value = app
            .client
            .get(app.ext(&format!("/api/v1/regions/{}/history", r.code)))
            .send_or_panic()
            .await
            .json()
            .await
            .unwrap_or(Value::Null);
        let runs: Vec<&str> = history["history"]
            .as_array()
            .map(|h| h.iter().filter_map(|p| p["run_id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            runs,
            vec![id.as_str(), startup.run_id.as_str()],
            "{}",
            r.code
        );
    }
    let page = app
        .client
        .get(app.ext("/regions/E09000007"))
        .send_or_panic()
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(
        page.contains("id=\"trend\""),
        "the region page draws the trend"
    );
    assert_eq!(page.matches("<circle class=\"dot\"").count(), 2);

    // The console compares the two runs borough by borough.
    let compared = app
        .client
        .get(app.int("/internal/console/compare"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(compared.status(), StatusCode::OK);
    let html = compared.text().await.unwrap_or_default();
    assert!(html.contains("id=\"comparison\""), "{html}");
    assert!(
        html.contains(&format!("Before: {}", startup.run_id))
            && html.contains(&format!("After: {id}")),
        "the two newest runs by default"
    );
    assert_eq!(html.matches("<tr><td>").count(), 33, "a row per borough");

    // A window that is not whole past days is refused naming the field; nothing starts.
    let res = app
        .client
        .post(format!("{url}?from=2026-01-10&to=2026-01-03"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let problem: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(problem["field"], "to", "{problem}");
    let res = app
        .client
        .get(app.int("/internal/v1/runs/run-nope"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.app.stop(Duration::from_secs(10)).await;
}
