//! `POST /api/v1/readings`: one reading object or a JSON array of them.
//!
//! A batch is all or nothing: if any reading is refused, none is published, and the error
//! names the reading's index and field.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use iot_common::Reading;
use iot_common::auth::MeterTokens;
use iot_common::bus::{Bus, BusError};
use iot_common::domain::AcceptWindow;
use iot_common::http::{ApiError, authenticate_meter};
use iot_common::metrics::Metrics;
use serde_json::{Value, json};

/// Most readings one request may carry.
pub const MAX_BATCH: usize = 10_000;
/// Largest request body: room for a full batch with generous formatting.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// How long to wait for the bus to confirm before answering 503.
    pub publish_timeout: Duration,
    /// How far ahead and behind the server clock a reading may be dated.
    pub window: AcceptWindow,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(10),
            window: AcceptWindow::default(),
        }
    }
}

#[derive(Clone)]
pub struct MeterState {
    pub bus: Arc<dyn Bus>,
    pub tokens: MeterTokens,
    pub metrics: Arc<Metrics>,
    pub config: IngestConfig,
}

/// The meter's external routes.
pub fn router(state: MeterState) -> Router {
    Router::new()
        .route("/api/v1/readings", post(ingest))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn ingest(
    State(state): State<MeterState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    match accept(&state, &headers, body).await {
        Ok(n) => {
            state.metrics.readings_accepted.inc_by(n as u64);
            state
                .metrics
                .publish_seconds
                .observe(started.elapsed().as_secs_f64());
            (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": n }))).into_response()
        }
        Err(e) => {
            state.metrics.reject(e.status.as_u16());
            if e.status.is_server_error() {
                tracing::warn!(status = %e.status, message = %e.message, "ingest refused");
            } else {
                tracing::debug!(status = %e.status, field = ?e.field, message = %e.message, "ingest refused");
            }
            e.into_response()
        }
    }
}

async fn accept(
    state: &MeterState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<usize, ApiError> {
    // Authenticate before looking at the body: strangers learn nothing about validation.
    let token_meter = authenticate_meter(&state.tokens, headers)?;

    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        )
        .field("content-type"));
    }
    let body = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "payload_too_large",
                format!("request body exceeds {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(status, "bad_request", e.body_text())
        }
    })?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("body is not valid JSON: {e}"),
        )
        .field("body")
    })?;
    let (items, batch) = match &value {
        Value::Array(items) => (items.as_slice(), true),
        Value::Object(_) => (std::slice::from_ref(&value), false),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                "body must be a reading object or an array of readings",
            )
            .field("body"));
        }
    };
    if items.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_batch",
            "a batch must hold at least one reading",
        )
        .field("body"));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "a batch holds at most {MAX_BATCH} readings, this one has {}",
                items.len()
            ),
        )
        .field("body"));
    }

    let now = Utc::now();
    let mut readings: Vec<Reading> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at_index = |e: ApiError| if batch { e.index(i) } else { e };
        let reading = Reading::from_json(item)
            .and_then(|r| state.config.window.check(&r, now).map(|()| r))
            .map_err(|e| {
                at_index(
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_reading",
                        e.to_string(),
                    )
                    .field(e.field),
                )
            })?;
        if reading.meter_id != token_meter {
            return Err(at_index(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "the token belongs to meter `{token_meter}`, not `{}`",
                        reading.meter_id
                    ),
                )
                .field("meter_id"),
            ));
        }
        readings.push(reading);
    }

    let deadline = state.config.publish_timeout;
    match tokio::time::timeout(deadline, state.bus.publish(&readings)).await {
        Ok(Ok(())) => Ok(readings.len()),
        Ok(Err(e)) => Err(unavailable(&e)),
        Err(_) => Err(unavailable(&BusError::Timeout(deadline))),
    }
}

fn unavailable(e: &BusError) -> ApiError {
    ApiError::unavailable(format!("readings not accepted, retry later: {e}"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
        })
}
