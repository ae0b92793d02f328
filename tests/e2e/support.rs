//! Helpers shared by the end-to-end tests: start the app on free loopback ports.

use std::time::Duration;

use iot_demo::app::AppConfig;
use iot_demo::{RunningApp, start};
use iot_simulator::FleetConfig;

pub use iot_testkit::secrets::{ANALYST_TOKEN as ANALYST, METER_SECRET as SECRET};

pub struct TestApp {
    pub app: RunningApp,
    /// Held so the app's data directory lives as long as the app.
    _dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl TestApp {
    pub fn ext(&self, path: &str) -> String {
        format!("http://{}{path}", self.app.external)
    }
    pub fn int(&self, path: &str) -> String {
        format!("http://{}{path}", self.app.internal)
    }
}

/// How a test's app is started: [`TestApp::start`] for the plain app (no fleet, the London
/// boroughs), or [`TestApp::builder`] to give it a fleet or another region file.
#[derive(Default)]
pub struct TestAppBuilder {
    fleet: Option<FleetConfig>,
    regions: Option<std::path::PathBuf>,
}

impl TestAppBuilder {
    /// Runs the simulated fleet too.
    pub fn fleet(mut self, fleet: FleetConfig) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Reads its regions from `file` instead of the embedded boroughs.
    pub fn regions(mut self, file: std::path::PathBuf) -> Self {
        self.regions = Some(file);
        self
    }

    /// Starts the app on free loopback ports, with its data in a directory of its own.
    pub async fn start(self) -> TestApp {
        launch(self.fleet, self.regions).await
    }
}

impl TestApp {
    /// The plain app: no fleet, the London boroughs.
    pub async fn start() -> TestApp {
        Self::builder().start().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }
}

async fn launch(fleet: Option<FleetConfig>, regions: Option<std::path::PathBuf>) -> TestApp {
    iot_common::telemetry::init("warn");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = AppConfig {
        data_dir: dir.path().to_path_buf(),
        regions,
        tokens: tokens(),
        analyst_token: ANALYST.into(),
        http: iot_common::server::HttpLimits::default(),
        cookie_secure: false,
        external_addr: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        internal_addr: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        ingest: iot_meter::IngestConfig {
            publish_timeout: Duration::from_secs(5),
            ..iot_meter::IngestConfig::default()
        },
        fleet,
        analytics: iot_analytics::JobConfig::default(),
        sql: iot_analytics::sql::SqlLimits::default(),
        recompute_every: Duration::from_secs(3600),
        tariffs: iot_web::tariffs::Tariffs::load(None).unwrap_or_else(|e| panic!("{e}")),
        silent_after: iot_web::silence::DEFAULT_SILENT_AFTER,
    };
    let app = start(config).await.unwrap_or_else(|e| panic!("start: {e}"));
    TestApp {
        app,
        _dir: dir,
        client: reqwest::Client::new(),
    }
}

pub fn tokens() -> iot_common::auth::MeterTokens {
    iot_common::auth::MeterTokens::new(SECRET).unwrap_or_else(|e| panic!("{e}"))
}

pub fn token(meter: &str) -> String {
    tokens().issue(&meter.parse().unwrap())
}

/// Polls `check` every 50 ms until it is true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let check = || {
        let answer = check();
        async move { answer.await.then_some(()) }
    };
    iot_testkit::poll(limit, Duration::from_millis(50), check)
        .await
        .is_some()
}

/// Sends a request a test expects to reach the server; a transport error fails the test.
pub trait SendOrPanic {
    fn send_or_panic(self) -> impl std::future::Future<Output = reqwest::Response>;
}

impl SendOrPanic for reqwest::RequestBuilder {
    async fn send_or_panic(self) -> reqwest::Response {
        self.send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"))
    }
}

/// The app's start-up recompute once it is recorded finished (succeeded or failed), waiting
/// at most `limit`; its profiles are written just before that record.
pub async fn startup_run(app: &TestApp, limit: Duration) -> Option<iot_common::Run> {
    use iot_common::RunStatus::{Failed, Succeeded};
    let store = app.app.store.clone();
    iot_testkit::poll(limit, Duration::from_millis(50), || {
        let store = store.clone();
        async move {
            store.runs(10).await.ok()?.into_iter().find(|r| {
                r.trigger == iot_common::domain::Trigger::Startup
                    && matches!(r.status, Succeeded | Failed)
            })
        }
    })
    .await
}

/// The borough `with_profiles` leaves without a profile (Havering).
pub const MISSING: &str = "E09000016";

/// The app with a profile in the store for every London borough but [`MISSING`].
pub async fn with_profiles() -> TestApp {
    let app = TestApp::start().await;
    // The app's start-up recompute would publish profiles of its own, computed from whatever
    // readings a test has stored by then, over these: let it finish first.
    let settled = startup_run(&app, Duration::from_secs(60)).await;
    assert!(settled.is_some(), "the start-up recompute finishes");
    let regions = iot_common::regions::Regions::london().unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::Utc::now();
    let profiles: Vec<iot_common::RegionProfile> = regions
        .iter()
        .filter(|r| r.code != MISSING)
        .enumerate()
        .map(|(i, r)| {
            let mut hourly = [0.2; 24];
            hourly[18] = 0.9 + i as f64 / 100.0;
            iot_common::RegionProfile {
                run_id: "run-test".into(),
                window_from: now - chrono::Duration::days(28),
                window_to: now,
                computed_at: now,
                published: true,
                figures: iot_common::ProfileFigures {
                    region: r.code.clone(),
                    meters: 10,
                    readings: 13_440,
                    avg_daily_kwh: 6.0 + i as f64 / 4.0,
                    p50_daily_kwh: 5.5 + i as f64 / 4.0,
                    p90_daily_kwh: 11.0 + i as f64 / 4.0,
                    weekday_avg_daily_kwh: Some(6.0),
                    weekend_avg_daily_kwh: Some(7.0),
                    hourly_kwh: hourly,
                    peak_hour: 18,
                    meter_daily_percentiles: Vec::new(),
                    meter_days: Default::default(),
                },
            }
        })
        .collect();
    app.app
        .store
        .put_profiles(&profiles)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app
}

/// Households of one borough on the app: registered through the operators' API, their last
/// ten days posted through ingest with their own tokens, and profiled by a run.
pub struct Households {
    pub app: TestApp,
    /// (meter id, token, kWh in each half hour at the evening peak)
    pub meters: Vec<(String, String, f64)>,
}

/// The borough the households live in (Camden).
pub const HOME_BOROUGH: &str = "E09000007";

/// The half hours HOME0002 misses (10:00 to 11:00 UTC on its sixth day of ten): a gap its
/// page shows as interpolated.
pub const HOME0002_GAP: std::ops::Range<i64> = 5 * 48 + 20..5 * 48 + 22;

/// The UTC midnight ten days ago the households' readings start at.
pub fn households_start() -> i64 {
    let now = chrono::Utc::now().timestamp();
    now - now.rem_euclid(86_400) - 10 * 86_400
}

/// Registers meter `id` in [`HOME_BOROUGH`] through the operators' API; returns its token.
pub async fn register(app: &TestApp, id: &str) -> String {
    let res = app
        .client
        .post(app.int("/internal/v1/meters"))
        .bearer_auth(ANALYST)
        .json(&serde_json::json!({"meter_id": id, "region": HOME_BOROUGH}))
        .send_or_panic()
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    body["token"].as_str().unwrap_or_default().to_owned()
}

/// Signs in on `/me` with a meter's `token` (303 to the page); returns the `Set-Cookie` value.
pub async fn sign_in(app: &TestApp, token: &str) -> String {
    let login = iot_testkit::no_redirect_client()
        .post(app.ext("/me/login"))
        .form(&[("token", token)])
        .send_or_panic()
        .await;
    assert_eq!(login.status(), reqwest::StatusCode::SEE_OTHER);
    login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub async fn households() -> Households {
    let app = TestApp::start().await;
    let mut meters = Vec::new();
    for (id, peak) in [("HOME0001", 0.9), ("HOME0002", 0.3), ("HOME0003", 0.6)] {
        let token = register(&app, id).await;
        meters.push((id.to_owned(), token, peak));
    }
    let start = households_start();
    for (id, token, peak) in &meters {
        let readings: Vec<serde_json::Value> = (0..10 * 48)
            .filter(|s| !(id == "HOME0002" && HOME0002_GAP.contains(s)))
            .map(|s: i64| {
                let ts = chrono::DateTime::from_timestamp(start + s * 1800, 0).unwrap_or_default();
                // A flat night and an evening peak (UTC hours 17 to 20).
                let kwh = if (34..42).contains(&(s % 48)) {
                    *peak
                } else {
                    0.1
                };
                serde_json::json!({"meter_id": id, "ts": ts.to_rfc3339(), "kwh": kwh})
            })
            .collect();
        let res = app
            .client
            .post(app.ext("/api/v1/readings"))
            .bearer_auth(token)
            .json(&readings)
            .send_or_panic()
            .await;
        assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
    }
    let store = app.app.store.clone();
    let stored = eventually(Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            store
                .summary()
                .await
                .is_ok_and(|s| s.readings >= 3 * 480 - 2)
        }
    })
    .await;
    assert!(stored, "the households' readings are stored");
    let res = app
        .client
        .post(app.int("/internal/v1/runs"))
        .bearer_auth(ANALYST)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
    let profiled = eventually(Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            store
                .profiles()
                .await
                .is_ok_and(|p| p.iter().any(|p| p.figures.region.as_str() == HOME_BOROUGH))
        }
    })
    .await;
    assert!(profiled, "the borough has a profile");
    Households { app, meters }
}
