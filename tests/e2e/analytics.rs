//! The all-in-one process computes profiles once the backfill is stored, and analysts drive
//! runs on the internal listener with their token. One app serves every test here (a fleet's
//! backfill and two runs take a while): [`fixture`] starts it on a runtime of its own, waits
//! for the start-up run, triggers one run over the API and waits for it; each test then checks
//! one behaviour of what is there. No test here starts another run.

use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{ANALYST, SendOrPanic, TestApp, eventually};
use iot_common::{Run, RunStatus};
use iot_simulator::FleetConfig;
use reqwest::StatusCode;
use serde_json::Value;

/// The shared app, after its start-up run and one run triggered over the API.
struct Fixture {
    ext: String,
    int: String,
    startup: Run,
    /// The run the fixture triggered with `POST /internal/v1/runs`.
    triggered: String,
}

impl Fixture {
    fn ext(&self, path: &str) -> String {
        format!("{}{path}", self.ext)
    }
    fn int(&self, path: &str) -> String {
        format!("{}{path}", self.int)
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // The app lives on this thread's runtime for the whole test binary: a test's own
        // runtime ends with the test.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
            runtime.block_on(async move {
                let app = TestApp::builder()
                    .fleet(FleetConfig {
                        meters: 66,
                        backfill_days: 3,
                        seed: 11,
                        ..FleetConfig::default()
                    })
                    .start()
                    .await;
                let startup = startup_run(&app).await;
                let triggered = triggered_run(&app).await;
                let _ = tx.send(Fixture {
                    ext: app.ext(""),
                    int: app.int(""),
                    startup,
                    triggered,
                });
                std::future::pending::<()>().await;
            });
        });
        rx.recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("the shared app did not get ready: {e}"))
    })
}

/// The start-up run, once it is recorded as succeeded (its profiles are written just
/// before its final record).
async fn startup_run(app: &TestApp) -> Run {
    let run = crate::support::startup_run(app, Duration::from_secs(60)).await;
    let runs = app
        .app
        .store
        .runs(10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        run.as_ref()
            .is_some_and(|r| r.status == RunStatus::Succeeded),
        "the startup run succeeds: {runs:?}"
    );
    run.unwrap_or_else(|| panic!("{runs:?}"))
}

/// Triggers a run over the API and waits until it succeeded; its id.
async fn triggered_run(app: &TestApp) -> String {
    let res = app
        .client
        .post(app.int("/internal/v1/runs"))
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
    id
}

async fn json(res: reqwest::Response) -> Value {
    res.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_first_map_is_never_empty_the_startup_run_profiles_every_borough() {
    let f = fixture();
    assert_eq!(f.startup.regions_written, 33);
    assert!(f.startup.rows_scanned >= 66 * 2 * 48, "{:?}", f.startup);
    let geojson = json(
        reqwest::get(f.ext("/api/v1/regions"))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let with_profiles = geojson["features"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter(|x| !x["properties"]["profile"].is_null())
                .count()
        })
        .unwrap_or_default();
    assert_eq!(with_profiles, 33, "every borough on the map has a profile");
}

#[tokio::test]
async fn the_runs_api_needs_the_analyst_token_and_is_internal_only() {
    let f = fixture();
    let client = reqwest::Client::new();
    let res = client
        .post(f.int("/internal/v1/runs"))
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client
        .post(f.ext("/internal/v1/runs"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "internal routes are not on the external listener"
    );
}

#[tokio::test]
async fn a_caller_names_itself_only_as_api_or_console() {
    let f = fixture();
    let res = reqwest::Client::new()
        .post(f.int("/internal/v1/runs?trigger=startup"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_triggered_run_is_listed_newest_first_as_the_api_s() {
    let f = fixture();
    let listed = json(
        reqwest::Client::new()
            .get(f.int("/internal/v1/runs?limit=1"))
            .bearer_auth(ANALYST)
            .send_or_panic()
            .await,
    )
    .await;
    assert_eq!(
        listed["runs"][0]["run_id"],
        f.triggered.as_str(),
        "newest first"
    );
    assert_eq!(listed["runs"][0]["trigger"], "api");
}

#[tokio::test]
async fn two_runs_give_each_borough_a_two_point_history_and_its_page_a_trend() {
    let f = fixture();
    let client = reqwest::Client::new();
    let regions = iot_common::regions::Regions::london().unwrap_or_else(|e| panic!("{e}"));
    for r in regions.iter() {
        let url = f.ext(&format!("/api/v1/regions/{}/history", r.code));
        let history = json(client.get(url).send_or_panic().await).await;
        let runs: Vec<&str> = history["history"]
            .as_array()
            .map(|h| h.iter().filter_map(|p| p["run_id"].as_str()).collect())
            .unwrap_or_default();
        let expected = vec![f.triggered.as_str(), f.startup.run_id.as_str()];
        assert_eq!(runs, expected, "{}", r.code);
    }
    let page = client
        .get(f.ext("/regions/E09000007"))
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
}

#[tokio::test]
async fn the_console_compares_the_two_newest_runs_borough_by_borough() {
    let f = fixture();
    let compared = reqwest::Client::new()
        .get(f.int("/internal/console/compare"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(compared.status(), StatusCode::OK);
    let html = compared.text().await.unwrap_or_default();
    assert!(html.contains("id=\"comparison\""), "{html}");
    assert!(
        html.contains(&format!("Before: {}", f.startup.run_id))
            && html.contains(&format!("After: {}", f.triggered)),
        "the two newest runs by default"
    );
    assert_eq!(html.matches("<tr><td>").count(), 33, "a row per borough");
}

#[tokio::test]
async fn a_window_that_is_not_whole_past_days_is_refused_naming_the_field() {
    let f = fixture();
    let res = reqwest::Client::new()
        .post(f.int("/internal/v1/runs?from=2026-01-10&to=2026-01-03"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let problem = json(res).await;
    assert_eq!(problem["field"], "to", "{problem}");
}

#[tokio::test]
async fn an_unknown_run_is_not_found() {
    let f = fixture();
    let res = reqwest::Client::new()
        .get(f.int("/internal/v1/runs/run-nope"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
