//! The meter's answer when the bus cannot take readings: 503 with `Retry-After` within the
//! publish deadline, never a hang and never a 2xx. The buses here are test doubles.

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
            format!("Bearer {}", tokens.issue("m1")),
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
