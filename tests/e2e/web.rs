//! The residents' pages and API and the analyst console, over real HTTP, with profiles in
//! the store for every borough but one.

use iot_testkit::no_redirect_client;
use std::time::Duration;

use crate::support::{ANALYST, MISSING, SendOrPanic, TestApp, with_profiles};
use reqwest::StatusCode;
use serde_json::Value;

async fn text(app: &TestApp, url: String) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let res = app.client.get(url).send_or_panic().await;
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.unwrap_or_default())
}

#[tokio::test]
async fn the_map_draws_every_borough_with_a_legend_and_stays_light() {
    let app = with_profiles().await;
    let (status, headers, html) = text(&app, app.ext("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<a class=\"region\"").count(), 33);
    assert_eq!(html.matches("<path d=\"M").count(), 33);
    assert!(html.contains("class=\"legend\"") && html.contains("kWh/day"));
    assert_eq!(
        html.matches("fill=\"url(#hatch)\"><title>").count(),
        1,
        "one borough without data"
    );
    assert!(html.contains("Havering: no data yet"));
    assert!(html.contains("Open Government Licence"));
    assert!(html.contains("Profiles computed"));
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(
        headers
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    let (_, css_headers, css) = text(&app, app.ext("/static/app.css")).await;
    let (_, _, js) = text(&app, app.ext("/static/map.js")).await;
    assert!(
        css_headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("max-age"))
    );
    let weight = html.len() + css.len() + js.len();
    assert!(weight < 250 * 1024, "page weight {weight} bytes");
    for metric in ["p90", "evening", "now"] {
        let (status, _, html) = text(&app, app.ext(&format!("/?metric={metric}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("aria-current=\"true\""));
    }
    let (status, _, _) = text(&app, app.ext("/?metric=nonsense")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_region_page_shows_its_figures_curve_and_neighbours() {
    let app = with_profiles().await;
    let (status, _, html) = text(&app, app.ext("/regions/E09000001")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("City of London"));
    assert!(html.contains("5.50 kWh"), "median of the first borough");
    assert_eq!(
        html.matches("<rect class=\"bar").count(),
        24 + 1,
        "24 hours and the comparison bar"
    );
    assert!(html.contains("/regions/E09000033"), "links to Westminster");
    let (status, _, html) = text(&app, app.ext(&format!("/regions/{MISSING}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No data yet"));
    let (status, _, _) = text(&app, app.ext("/regions/E09999999")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_estimator_answers_with_a_range_and_refuses_nonsense() {
    let app = with_profiles().await;
    let (status, _, html) = text(
        &app,
        app.ext("/estimate?region=E09000001&size=2&dwelling=terraced"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The typical household is the region's median: 5.50 kWh a day, 2008 kWh a year.
    assert!(html.contains("<b>5.50 kWh a day</b>"), "{html}");
    assert!(html.contains("2008 kWh a year"));
    // The shipped price cap: 2007.5 kWh × 25.73p = £516.53 and 365 × 51.37p = £187.50.
    assert!(html.contains("<b>£704.03</b>"), "{html}");
    assert!(html.contains("<b>£58.67</b>"), "a twelfth of it");
    // The night tariff: 511 kWh off peak × 14p + 1496.5 kWh × 34p + £187.50 = £767.85.
    assert!(html.contains("<b>£767.85</b>"), "{html}");
    assert!(
        html.contains("id=\"cheapest\">Standard variable, at the price cap</b>"),
        "a household with little use at night pays less on the flat rate"
    );
    let (_, _, big) = text(
        &app,
        app.ext("/estimate?region=E09000001&size=5&dwelling=detached"),
    )
    .await;
    assert!(
        big.contains("<b>11.01 kWh a day</b>"),
        "5.5 × 1.45 × 1.45 / 1.05"
    );
    for bad in ["size=9", "dwelling=castle", "region=nowhere"] {
        let (status, _, _) = text(&app, app.ext(&format!("/estimate?{bad}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_json_api_serves_geojson_profiles_and_its_openapi() {
    let app = with_profiles().await;
    let (status, _, body) = text(&app, app.ext("/api/v1/regions")).await;
    assert_eq!(status, StatusCode::OK);
    let fc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(fc["type"], "FeatureCollection");
    let features = fc["features"].as_array().cloned().unwrap_or_default();
    assert_eq!(features.len(), 33);
    assert_eq!(
        features
            .iter()
            .filter(|f| f["properties"]["profile"].is_null())
            .count(),
        1
    );
    assert_eq!(features[0]["geometry"]["type"], "MultiPolygon");
    let (_, _, body) = text(&app, app.ext("/api/v1/regions/E09000001")).await;
    let one: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(one["profile"]["p50_daily_kwh"], 5.5);
    assert_eq!(
        one["profile"]["hourly_kwh"].as_array().map(Vec::len),
        Some(24)
    );
    let (_, _, body) = text(&app, app.ext("/api/v1/openapi.json")).await;
    let spec: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert!(spec["paths"]["/api/v1/regions/{code}"].is_object());
    app.app.stop(Duration::from_secs(5)).await;
}

fn set_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_console_is_internal_and_needs_the_analyst_token() {
    let app = with_profiles().await;
    let (status, _, _) = text(&app, app.ext("/internal/console")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, html) = text(&app, app.int("/internal/console")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Sign in"));
    let no_redirects = no_redirect_client();
    let res = no_redirects
        .post(app.int("/internal/console/login"))
        .form(&[("token", "wrong")])
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = no_redirects
        .post(app.int("/internal/console/login"))
        .form(&[("token", ANALYST)])
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie(&res);
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let res = no_redirects
        .post(app.int("/internal/console/recompute"))
        .send_or_panic()
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "no cookie, no recompute"
    );
    // The start-up run may still hold the job: then the console says so (409) until it ends.
    let mut status = StatusCode::CONFLICT;
    for _ in 0..100 {
        let res = no_redirects
            .post(app.int("/internal/console/recompute"))
            .header("cookie", &pair)
            .send_or_panic()
            .await;
        status = res.status();
        if status != StatusCode::CONFLICT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::SEE_OTHER);
    let res = no_redirects
        .get(app.int("/internal/console"))
        .header("cookie", &pair)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap_or_default();
    assert!(
        html.contains("Recompute now") && html.contains("console"),
        "{html}"
    );
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_region_name_with_markup_renders_as_text() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("regions.geojson");
    let geojson = r#"{"type":"FeatureCollection","features":[
      {"type":"Feature","properties":{"code":"X1","name":"<script>alert(1)</script>"},
       "geometry":{"type":"Polygon","coordinates":[[[-0.2,51.4],[-0.1,51.4],[-0.1,51.5],[-0.2,51.5],[-0.2,51.4]]]}},
      {"type":"Feature","properties":{"code":"X2","name":"Plain & \"quoted\""},
       "geometry":{"type":"Polygon","coordinates":[[[-0.1,51.4],[0.0,51.4],[0.0,51.5],[-0.1,51.5],[-0.1,51.4]]]}}]}"#;
    std::fs::write(&file, geojson).unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::builder().regions(file).start().await;
    for path in [
        "/",
        "/regions/X1",
        "/regions/X2",
        "/estimate?region=X1",
        "/status",
    ] {
        let (status, _, html) = text(&app, app.ext(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !html.contains("<script>alert"),
            "{path} renders the name as markup"
        );
        if path != "/regions/X2" {
            assert!(
                html.contains("&#60;script&#62;alert(1)")
                    || html.contains("&lt;script&gt;alert(1)"),
                "{path}"
            );
        }
    }
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn console_sessions_hold_no_token_refuse_other_sites_and_throttle_guessing() {
    let app = with_profiles().await;
    let client = no_redirect_client();
    let login = app.int("/internal/console/login");
    let host = app.app.internal.to_string();

    let sign_in = |header: &'static str, value: String| {
        client
            .post(&login)
            .header(header, value)
            .form(&[("token", ANALYST)])
            .send_or_panic()
    };
    // A form posted from another site is refused, even with the right token.
    let res = sign_in("origin", "https://evil.example".into()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = sign_in("sec-fetch-site", "cross-site".into()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Signing in from the console's own page: the cookie is a session id, not the token.
    let res = sign_in("origin", format!("http://{host}")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie(&res);
    assert!(
        !cookie.contains(ANALYST),
        "the cookie carries the token: {cookie}"
    );
    assert!(
        cookie.starts_with("iot_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "Secure only when IOT_COOKIE_SECURE=1: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let page = |pair: String| {
        let client = client.clone();
        let url = app.int("/internal/console");
        async move {
            client
                .get(url)
                .header("cookie", pair)
                .send_or_panic()
                .await
                .status()
        }
    };
    assert_eq!(page(pair.clone()).await, StatusCode::OK);
    assert_eq!(
        page("iot_session=guessed".into()).await,
        StatusCode::UNAUTHORIZED
    );

    // A forged-origin recompute with a live session is refused too.
    let res = client
        .post(app.int("/internal/console/recompute"))
        .header("cookie", &pair)
        .header("origin", "https://evil.example")
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Signing out ends the session on the server, not only in the browser.
    let res = client
        .post(app.int("/internal/console/logout"))
        .header("cookie", &pair)
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(pair).await, StatusCode::UNAUTHORIZED);

    // Five wrong tokens in a minute, then the sixth try is refused before it is checked.
    for _ in 0..5 {
        let res = client
            .post(&login)
            .form(&[("token", "guess")])
            .send_or_panic()
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = client
        .post(&login)
        .form(&[("token", ANALYST)])
        .send_or_panic()
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn every_error_is_a_problem_document_with_the_request_id() {
    let app = with_profiles().await;
    // axum's own refusals: a method a route does not take, a path no route has.
    for (method, url) in [
        (reqwest::Method::POST, app.ext("/")),
        (reqwest::Method::DELETE, app.ext("/estimate")),
        (reqwest::Method::GET, app.ext("/no/such/page")),
        (reqwest::Method::PUT, app.int("/internal/v1/meters")),
    ] {
        let res = app
            .client
            .request(method.clone(), &url)
            .send_or_panic()
            .await;
        assert!(res.status().is_client_error(), "{method} {url}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{method} {url}"
        );
        let id = res.headers()["x-request-id"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        let problem: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(problem["request_id"], id.as_str(), "{problem}");
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:iot-demo:problem:")),
            "{problem}"
        );
    }
    // A client's own request id is kept when it is a sane token.
    let res = app
        .client
        .get(app.ext("/regions/NOPE"))
        .header("x-request-id", "client-chosen-id-123")
        .send_or_panic()
        .await;
    assert_eq!(res.headers()["x-request-id"], "client-chosen-id-123");
    app.app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_status_page_uses_the_stylesheet_and_a_cached_summary() {
    let app = with_profiles().await;
    let (status, headers, html) = text(&app, app.ext("/status")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(r#"<link rel="stylesheet" href="/static/app.css">"#),
        "{html}"
    );
    assert!(
        !html.contains("<style"),
        "inline styles are blocked by the page's own CSP"
    );
    assert!(headers.contains_key("content-security-policy"));
    assert!(html.contains("refreshed in the background"), "{html}");
    app.app.stop(Duration::from_secs(5)).await;
}

/// Progress where people wait: a running recompute on the console (rows of an estimate from
/// the last run, scaled to its window) and the fleet's backfill on the status page, both
/// refreshed by the pages' script from JSON answers.
#[tokio::test]
async fn the_console_and_the_status_page_show_progress() {
    let app = TestApp::builder()
        .fleet(iot_simulator::FleetConfig {
            meters: 33,
            backfill_days: 2,
            seed: 5,
            // Every half hour once, so the page's count below is exact.
            faults: iot_simulator::faults::FaultRates::OFF,
            ..iot_simulator::FleetConfig::default()
        })
        .start()
        .await;
    let store = app.app.store.clone();
    let now = chrono::Utc::now();
    let window = (now - chrono::Duration::days(28), now);
    let done = iot_common::Run {
        status: iot_common::RunStatus::Succeeded,
        started_at: Some(now - chrono::Duration::hours(2)),
        finished_at: Some(now - chrono::Duration::hours(2)),
        window_from: Some(window.0 - chrono::Duration::days(1)),
        window_to: Some(window.1 - chrono::Duration::days(1)),
        rows_scanned: 4_000,
        ..iot_common::Run::queued(
            "run-earlier".into(),
            iot_common::domain::Trigger::Api,
            now - chrono::Duration::hours(2),
        )
    };
    let going = iot_common::Run {
        status: iot_common::RunStatus::Running,
        started_at: Some(now - chrono::Duration::seconds(12)),
        window_from: Some(window.0),
        window_to: Some(window.1),
        rows_scanned: 1_000,
        ..iot_common::Run::queued(
            "run-going".into(),
            iot_common::domain::Trigger::Console,
            now - chrono::Duration::seconds(13),
        )
    };
    for run in [&done, &going] {
        store.put_run(run).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let (status, _, html) = {
        let res = app
            .client
            .get(app.int("/internal/console"))
            .bearer_auth(ANALYST)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (res.status(), (), res.text().await.unwrap_or_default())
    };
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<progress id=\"progress-run-going\""),
        "{html}"
    );
    assert!(html.contains("1000 of ~4000 rows (25 %)"), "{html}");
    assert!(html.contains("/internal/static/progress.js"));
    let progress: Value = app
        .client
        .get(app.int("/internal/console/progress"))
        .bearer_auth(ANALYST)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert_eq!(progress["items"][0]["id"], "progress-run-going");
    assert_eq!(progress["items"][0]["value"], 1_000);
    assert_eq!(progress["items"][0]["max"], 4_000);

    // The fleet's backfill on the status page, until it is stored.
    let stored = crate::support::eventually(Duration::from_secs(60), || {
        let client = app.client.clone();
        let url = app.ext("/status");
        async move {
            let Ok(res) = client
                .get(&url)
                .header("accept", "application/json")
                .send()
                .await
            else {
                return false;
            };
            let body: Value = res.json().await.unwrap_or(Value::Null);
            body["items"][0]["done"] == true
        }
    })
    .await;
    assert!(stored, "the status page says when the backfill is stored");
    let (_, _, page) = text(&app, app.ext("/status")).await;
    assert!(page.contains("id=\"backfill\""), "{page}");
    assert!(
        page.contains("33 meters&#39; history is stored (3168 readings)"),
        "{page}"
    );
    app.app.stop(Duration::from_secs(5)).await;
}
