//! HTTP plumbing every service shares: JSON errors, the internal listener's health and
//! metrics routes, and serving a router until shutdown.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, MeterTokens, StaticToken, bearer};
use crate::bus::Bus;
use crate::metrics::Metrics;
use crate::store::Store;

/// An error answered as JSON: `{"error": code, "message": ..., "field": ..., "index": ...}`.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    #[serde(rename = "error")]
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The position of the offending reading in a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip)]
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            index: None,
            retry_after_s: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).retry_after(5)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(&self)).into_response();
        if let Some(s) = self.retry_after_s {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

/// The request's `Authorization: Bearer` token, or why there is none.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AuthError> {
    match headers.get(header::AUTHORIZATION) {
        None => bearer(None),
        Some(v) => bearer(Some(v.to_str().map_err(|_| AuthError::Malformed)?)),
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).field("authorization")
}

/// The meter whose valid token the request carries; 401 otherwise.
pub fn authenticate_meter<'h>(
    tokens: &MeterTokens,
    headers: &'h axum::http::HeaderMap,
) -> Result<&'h str, ApiError> {
    bearer_token(headers)
        .and_then(|t| tokens.verify(t))
        .map_err(|e| unauthorized(e.to_string()))
}

/// 401 unless the request carries the analyst token.
pub fn require_analyst(
    expected: &StaticToken,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    match bearer_token(headers) {
        Ok(t) if expected.matches(t) => Ok(()),
        _ => Err(unauthorized(
            "this route needs `Authorization: Bearer <IOT_ANALYST_TOKEN>`",
        )),
    }
}

/// JSON 404 for paths no route serves (internal paths on the external listener among them).
pub async fn fallback() -> ApiError {
    ApiError::not_found()
}

/// What the internal listener's health routes look at.
#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub store: Option<Arc<dyn Store>>,
    pub bus: Option<Arc<dyn Bus>>,
}

/// `/healthz` (the process answers), `/readyz` (its store and bus answer), `/metrics`.
pub fn health_routes(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    if let Some(store) = &h.store {
        let r = store.ping().await;
        ready &= r.is_ok();
        checks.insert(
            "store".into(),
            json!(r.map_or_else(|e| e.to_string(), |_| "ok".into())),
        );
    }
    if let Some(bus) = &h.bus {
        let r = bus.ping().await;
        ready &= r.is_ok();
        checks.insert(
            "bus".into(),
            json!(r.map_or_else(|e| e.to_string(), |_| "ok".into())),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ready { "ready" } else { "not_ready" }, "checks": checks});
    (status, Json(body)).into_response()
}

async fn metrics(State(h): State<Health>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.render(),
    )
        .into_response()
}

/// Serves `router` on `listener` until `shutdown` fires, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Waits for Ctrl-C, SIGTERM, or `token` being cancelled (an internal failure).
pub async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
        () = token.cancelled() => {}
    }
}
