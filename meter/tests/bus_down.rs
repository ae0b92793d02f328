//! The meter's answer when the bus cannot take readings: 503 with `Retry-After` within the
//! publish deadline, never a hang and never a 2xx, and never the bus's own error text; and
//! when too many requests are in flight, 503 at once rather than a queue. The buses here are
//! test doubles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use iot_common::Reading;
use iot_common::auth::{MeterAuth, MeterTokens};
use iot_common::bus::{Bus, BusError, Consumer};
use iot_common::metrics::Metrics;
use iot_meter::{IngestConfig, MeterState, router};
use tower::ServiceExt;

/// Test double: a bus that never confirms.
struct StalledBusDouble;
/// Test double: a bus that refuses at once.
struct DownBusDouble;

#[async_trait]
impl Bus for StalledBusDouble {
    async fn publish(&self, _: &[Reading]) -> Result<(), BusError> {
        std::future::pending().await
    }
    async fn subscribe(&self, _: &str) -> Result<Box<dyn Consumer>, BusError> {
        Err(BusError::Unavailable("double".into()))
    }
    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[async_trait]
impl Bus for DownBusDouble {
    async fn publish(&self, _: &[Reading]) -> Result<(), BusError> {
        Err(BusError::Unavailable("broker unreachable".into()))
    }
    async fn subscribe(&self, _: &str) -> Result<Box<dyn Consumer>, BusError> {
        Err(BusError::Unavailable("double".into()))
    }
    async fn ping(&self) -> Result<(), BusError> {
        Err(BusError::Unavailable("broker unreachable".into()))
    }
}

async fn post_to(bus: Arc<dyn Bus>) -> (StatusCode, Option<String>, Duration) {
    let tokens = MeterTokens::new("a-test-secret-of-thirty-two-bytes-or-more").unwrap();
    let metrics = Arc::new(Metrics::new());
    let app = router(MeterState::new(
        bus,
        MeterAuth::new(tokens.clone()),
        metrics.clone(),
        IngestConfig {
            publish_timeout: Duration::from_millis(300),
            ..IngestConfig::default()
        },
    ));
    let body = r#"{"meter_id":"m1","ts":"2026-01-01T00:00:00Z","kwh":0.1}"#;
    let req = Request::post("/api/v1/readings")
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", tokens.issue(&"m1".parse().unwrap())),
        )
        .body(Body::from(body))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let res = app.oneshot(req).await.unwrap_or_else(|e| match e {});
    let retry = res
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert!(metrics.render().contains("status=\"503\""));
    (res.status(), retry, started.elapsed())
}

#[tokio::test]
async fn a_stalled_bus_gets_503_within_the_deadline() {
    let (status, retry, took) = post_to(Arc::new(StalledBusDouble)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.is_some());
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[tokio::test]
async fn a_down_bus_gets_503_with_retry_after() {
    let (status, retry, _) = post_to(Arc::new(DownBusDouble)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("5"));
}

/// The meter's routes as a listener serves them (problem documents with request ids).
fn served(state: MeterState) -> axum::Router {
    router(state).layer(axum::middleware::from_fn(
        iot_common::http::problem_responses,
    ))
}

fn request(tokens: &MeterTokens, meter: &str) -> Request<Body> {
    let body = format!(r#"{{"meter_id":"{meter}","ts":"2026-01-01T00:00:00Z","kwh":0.1}}"#);
    Request::post("/api/v1/readings")
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", tokens.issue(&meter.parse().unwrap())),
        )
        .body(Body::from(body))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn tokens() -> MeterTokens {
    MeterTokens::new("a-test-secret-of-thirty-two-bytes-or-more").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_5xx_tells_the_client_a_request_id_not_the_bus_error() {
    let tokens = tokens();
    let app = served(MeterState::new(
        Arc::new(DownBusDouble),
        MeterAuth::new(tokens.clone()),
        Arc::new(Metrics::new()),
        IngestConfig::default(),
    ));
    let res = app
        .oneshot(request(&tokens, "m1"))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let id = res.headers()["x-request-id"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("broker unreachable"), "{text}");
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(problem["request_id"], id.as_str(), "{problem}");
    assert_eq!(problem["status"], 503, "{problem}");
}

#[tokio::test]
async fn past_the_in_flight_bound_requests_are_shed_at_once() {
    let tokens = tokens();
    let metrics = Arc::new(Metrics::new());
    let app = served(MeterState::new(
        Arc::new(StalledBusDouble),
        MeterAuth::new(tokens.clone()),
        metrics.clone(),
        IngestConfig {
            publish_timeout: Duration::from_secs(30),
            max_in_flight: 2,
            ..IngestConfig::default()
        },
    ));
    // Two requests hold both places (their bus never answers)...
    let held: Vec<_> = (0..2)
        .map(|i| tokio::spawn(app.clone().oneshot(request(&tokens, &format!("m{i}")))))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so the third is answered at once, with a hint when to come back.
    let started = Instant::now();
    let res = app
        .clone()
        .oneshot(request(&tokens, "m3"))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shed after {:?}",
        started.elapsed()
    );
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    assert!(
        metrics.render().contains("iot_meter_requests_shed_total 1"),
        "{}",
        metrics.render()
    );
    for h in held {
        h.abort();
    }
    // A place freed is a place taken again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let app = served(MeterState::new(
        Arc::new(DownBusDouble),
        MeterAuth::new(tokens.clone()),
        metrics,
        IngestConfig {
            max_in_flight: 1,
            ..IngestConfig::default()
        },
    ));
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(request(&tokens, "m4"))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(
            res.headers()[header::RETRY_AFTER],
            "5",
            "the bus's 503, not shedding"
        );
    }
}
