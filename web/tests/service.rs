//! The `web` service on its own, as compose runs it: the external listener serves the map
//! and never an internal path, the internal one serves health and the console, and the
//! console's "recompute now" reaches a separate analytics service over HTTP.

use iot_testkit::no_redirect_client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use iot_analytics::api::{RunsState, runs_router};
use iot_analytics::sql::{SqlEngine, SqlLimits, SqlSource};
use iot_analytics::{Analytics, JobConfig};
use iot_common::auth::StaticToken;
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_web::cli::{Cli, RunningWeb, start};

use iot_testkit::secrets::ANALYST_TOKEN as TOKEN;

/// The analytics runs API on a free port, on the store in `dir`.
async fn analytics(dir: &std::path::Path) -> SocketAddr {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&SqliteStore::path_in(dir)).unwrap_or_else(|e| panic!("{e}")));
    let router = runs_router(RunsState {
        analytics: Analytics::new(store.clone(), JobConfig::default()),
        analyst_token: StaticToken::new(TOKEN),
        sql: Arc::new(
            SqlEngine::new(SqlSource::Store(store), SqlLimits::default(), 2)
                .unwrap_or_else(|e| panic!("{e}")),
        ),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn web(dir: &std::path::Path, analytics_url: &str) -> RunningWeb {
    let dir = dir.display().to_string();
    let cli = Cli::parse_from([
        "web",
        "--external-addr",
        "127.0.0.1:0",
        "--internal-addr",
        "127.0.0.1:0",
        "--meter-secret",
        "meter-secret-for-tests-of-32-bytes-or-more",
        "--analyst-token",
        TOKEN,
        "--analytics-url",
        analytics_url,
        "--data-dir",
        &dir,
    ]);
    start(cli).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_web_service_serves_each_listener_its_routes_and_recomputes_remotely() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let analytics = analytics(dir.path()).await;
    let web = web(dir.path(), &format!("http://{analytics}")).await;
    let (ext, int) = (web.external, web.internal);
    let c = no_redirect_client();
    assert_eq!(status(c.get(format!("http://{ext}/"))).await, 200);
    assert_eq!(
        status(c.get(format!("http://{ext}/api/v1/regions"))).await,
        200
    );
    for path in [
        "/internal/console",
        "/healthz",
        "/metrics",
        "/internal/v1/meters",
    ] {
        assert_eq!(
            status(c.get(format!("http://{ext}{path}"))).await,
            404,
            "{path}"
        );
    }
    assert_eq!(status(c.get(format!("http://{int}/readyz"))).await, 200);
    assert_eq!(
        status(c.get(format!("http://{int}/internal/console"))).await,
        401,
        "the console asks for the analyst token"
    );

    let recompute = format!("http://{int}/internal/console/recompute");
    assert_eq!(status(c.post(&recompute)).await, 401, "signed out");
    let signed_in = c.post(&recompute).bearer_auth(TOKEN);
    assert_eq!(status(signed_in).await, 303, "back to the console");
    let store =
        SqliteStore::open(&SqliteStore::path_in(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    let mut runs = Vec::new();
    for _ in 0..100 {
        runs = store.runs(10).await.unwrap_or_else(|e| panic!("{e}"));
        if !runs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(runs.len(), 1, "the analytics service started one run");
    assert_eq!(
        runs[0].trigger.as_ref(),
        "console",
        "recorded as the console's"
    );
    web.service.stop(Duration::from_secs(5)).await;
}

/// The console's SQL page through the separate analytics service: a table, a refusal in the
/// analyst's words, a CSV download.
#[tokio::test]
async fn the_console_asks_sql_of_the_analytics_service() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let analytics = analytics(dir.path()).await;
    let web = web(dir.path(), &format!("http://{analytics}")).await;
    let c = no_redirect_client();
    let page = format!("http://{}/internal/console/query", web.internal);
    assert_eq!(status(c.get(&page)).await, 401, "signed out");
    let ask = |sql: &str, format: &str| {
        c.post(&page)
            .bearer_auth(TOKEN)
            .form(&[("sql", sql), ("format", format)])
            .send()
    };

    let answer = ask("SELECT 41 + 1 AS answer, 'Camden' AS borough", "json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status().as_u16(), 200);
    let html = answer.text().await.unwrap_or_default();
    assert!(
        html.contains(">answer</th>") && html.contains(">42</td>") && html.contains(">Camden</td>"),
        "{html}"
    );

    let refused = ask("DROP TABLE readings", "json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.status().as_u16(), 400);
    let html = refused.text().await.unwrap_or_default();
    assert!(html.contains("this is DROP TABLE"), "{html}");
    assert!(
        html.contains("DROP TABLE readings</textarea>"),
        "the query is kept: {html}"
    );

    let csv = ask("SELECT 1 AS a, 2 AS b", "csv")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(csv.status().as_u16(), 200);
    let disposition = csv
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(disposition.contains("query.csv"), "{disposition}");
    assert_eq!(csv.text().await.unwrap_or_default(), "a,b\n1,2\n");

    // The analytics API itself needs the token.
    let direct = c
        .post(format!("http://{analytics}/internal/v1/query"))
        .json(&serde_json::json!({ "sql": "SELECT 1" }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(direct.status().as_u16(), 401);
    web.service.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn recompute_says_so_when_the_analytics_service_is_down() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // A port that was free a moment ago: nothing answers there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}"))
    };
    let web = web(dir.path(), &format!("http://{closed}")).await;
    let response = no_redirect_client()
        .post(format!(
            "http://{}/internal/console/recompute",
            web.internal
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Not the analyst's fault: 503, try again later (the detail is in the service's log).
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body = response.text().await.unwrap_or_default();
    assert!(body.contains("problem:unavailable"), "{body}");
    web.service.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_web_service_refuses_to_start_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path().display().to_string();
    let cli = Cli::parse_from([
        "web",
        "--meter-secret",
        " ",
        "--analyst-token",
        TOKEN,
        "--data-dir",
        &d,
        "--external-addr",
        "127.0.0.1:0",
        "--internal-addr",
        "127.0.0.1:0",
    ]);
    match start(cli).await {
        Err(e) => assert!(e.to_string().contains("IOT_METER_SECRET"), "{e}"),
        Ok(_) => panic!("started without a meter secret"),
    }
}
