//! HTTP plumbing every service shares: request ids and the middleware that answers every
//! error as a problem document ([`crate::problem`]), bearer authentication, the internal
//! listener's health and metrics routes, and the shutdown signal. Serving itself (timeouts)
//! is `server`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthError, MeterAuth, StaticToken, bearer};
use crate::bus::Bus;
use crate::domain::MeterId;
use crate::metrics::Metrics;
pub use crate::problem::{ApiError, ErrorCode, PROBLEM_JSON, Query};
use crate::store::Store;

/// The id of a request: the client's `X-Request-Id` when it is a sane token, else a fresh
/// one. Echoed in the response header and in every error body and log line of the request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (8..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(
            || {
                let bytes: [u8; 12] = rand::random();
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
            },
            str::to_owned,
        )
}

/// Gives every request an id, and every error response the problem format: an [`ApiError`]
/// gets the id added (and its detail logged), any other 4xx/5xx without a body of its own
/// kind (axum's extractor rejections, 405) is turned into a problem document. HTML error
/// pages stay HTML.
pub async fn problem_responses(mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = next.run(req).instrument(span).await;
    let failed = res.status().is_client_error() || res.status().is_server_error();
    let error = match res.extensions_mut().remove::<ApiError>() {
        Some(e) => Some((e, std::mem::take(res.headers_mut()))),
        None if failed => match adopt(res).await {
            Ok(adopted) => {
                res = Response::default();
                Some(adopted)
            }
            Err(unchanged) => {
                res = unchanged;
                None
            }
        },
        None => None,
    };
    if let Some((e, headers)) = error {
        if e.status().is_server_error() {
            tracing::warn!(request_id = %id, status = %e.status(), code = e.code.as_str(), detail = %e.message, "request failed");
        } else {
            tracing::debug!(request_id = %id, status = %e.status(), code = e.code.as_str(), detail = %e.message, field = ?e.field, "request refused");
        }
        res = e.render(Some(&id));
        for (name, value) in &headers {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                res.headers_mut()
                    .entry(name)
                    .or_insert_with(|| value.clone());
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// An error response some other layer wrote (plain text, or empty), as an [`ApiError`];
/// the response back unchanged when it already is a page or a problem document.
async fn adopt(res: Response) -> Result<(ApiError, axum::http::HeaderMap), Response> {
    let kind = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind.starts_with("text/html") || kind.starts_with(PROBLEM_JSON) {
        return Err(res);
    }
    let (parts, body) = res.into_parts();
    let status = parts.status;
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    Ok((
        ApiError::new(ErrorCode::for_status(status), message),
        parts.headers,
    ))
}

/// The request's `Authorization: Bearer` token, or why there is none.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AuthError> {
    match headers.get(header::AUTHORIZATION) {
        None => bearer(None),
        Some(v) => bearer(Some(v.to_str().map_err(|_| AuthError::Malformed)?)),
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message).field("authorization")
}

/// The meter whose valid, unrevoked token the request carries; 401 otherwise.
pub fn authenticate_meter(
    auth: &MeterAuth,
    headers: &axum::http::HeaderMap,
) -> Result<MeterId, ApiError> {
    bearer_token(headers)
        .and_then(|t| auth.check(t))
        .map_err(ApiError::from)
}

/// State that knows the analyst token (`IOT_ANALYST_TOKEN`), so handlers can ask for an
/// [`Analyst`].
pub trait AnalystSecret {
    fn analyst_token(&self) -> &StaticToken;
}

/// A request that carries the analyst token as `Authorization: Bearer`. As a handler's
/// argument it refuses every other request with 401 before the handler runs: who may ask is
/// said in the signature, once.
#[derive(Debug, Clone, Copy)]
pub struct Analyst;

impl<S: AnalystSecret + Send + Sync> FromRequestParts<S> for Analyst {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if is_analyst(state.analyst_token(), &parts.headers) {
            Ok(Analyst)
        } else {
            Err(unauthorized(
                "this route needs `Authorization: Bearer <IOT_ANALYST_TOKEN>`",
            ))
        }
    }
}

/// Whether `headers` carry `expected` as the bearer token.
pub fn is_analyst(expected: &StaticToken, headers: &axum::http::HeaderMap) -> bool {
    bearer_token(headers).is_ok_and(|t| expected.matches(t))
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
    let (router, _) = health_api().split_for_parts();
    router.with_state(health)
}

/// The description of [`health_routes`], for the internal document.
pub fn health_openapi() -> utoipa::openapi::OpenApi {
    health_api().into_openapi()
}

fn health_api() -> OpenApiRouter<Health> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
struct Alive {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready` when every check answered `ok`.
    #[schema(value_type = String, pattern = "^(ready|not_ready)$")]
    status: &'static str,
    /// Each port the service needs (`store`, `bus`): `ok`, or why it does not answer.
    checks: BTreeMap<&'static str, String>,
}

/// Whether the process answers at all.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers.", body = Alive)))]
async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// Whether the service's store and bus answer: a load balancer sends it work only then.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Every port answers.", body = Readiness),
))]
async fn readyz(State(h): State<Health>) -> Response {
    let mut checks = BTreeMap::new();
    let mut ready = true;
    if let Some(store) = &h.store {
        let r = store.ping().await;
        ready &= r.is_ok();
        checks.insert("store", r.map_or_else(|e| e.to_string(), |_| "ok".into()));
    }
    if let Some(bus) = &h.bus {
        let r = bus.ping().await;
        ready &= r.is_ok();
        checks.insert("bus", r.map_or_else(|e| e.to_string(), |_| "ok".into()));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks,
    };
    (status, Json(body)).into_response()
}

/// The service's Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Counters and histograms, in the OpenMetrics text format.",
     body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
))]
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
