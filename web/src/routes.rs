//! The web service's HTTP routes, external and internal.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use iot_common::auth::{MeterAuth, StaticToken};
use iot_common::domain::is_valid_meter_id;
use iot_common::http::{ApiError, authenticate_meter, require_analyst};
use iot_common::regions::Regions;
use iot_common::store::{MAX_READBACK, Store, StoreError, StoreSummary};
use serde_json::json;

use crate::provisioning::{NewMeter, ProvisionError, provision};

/// Starts a recompute of the regional profiles (the analytics job, in process or remote).
#[async_trait::async_trait]
pub trait Recompute: Send + Sync {
    async fn recompute(&self) -> Result<iot_common::Run, String>;
}

#[derive(Clone)]
pub struct WebState {
    pub store: Arc<dyn Store>,
    pub regions: Arc<Regions>,
    pub geometry: Arc<crate::geometry::MapGeometry>,
    /// Meter tokens and the revocations this process knows.
    pub auth: MeterAuth,
    /// Operators and analysts present this on internal routes that change state.
    pub operator_token: StaticToken,
    /// Electricity unit price for the estimator, pence per kWh.
    pub unit_price_pence: f64,
    pub recompute: Option<Arc<dyn Recompute>>,
    pub profiles: Arc<crate::cache::ProfileCache>,
    pub summary: Arc<crate::cache::SummaryCache>,
    /// Signed-in analysts' console sessions.
    pub sessions: Arc<crate::sessions::Sessions>,
}

impl WebState {
    pub fn new(
        store: Arc<dyn Store>,
        regions: Arc<Regions>,
        auth: MeterAuth,
        operator_token: StaticToken,
        unit_price_pence: f64,
        recompute: Option<Arc<dyn Recompute>>,
    ) -> Self {
        Self {
            store,
            geometry: Arc::new(crate::geometry::MapGeometry::new(&regions)),
            regions,
            auth,
            operator_token,
            unit_price_pence,
            recompute,
            profiles: Arc::default(),
            summary: Arc::default(),
            sessions: Arc::new(crate::sessions::Sessions::new(false)),
        }
    }

    /// Marks the console cookie `Secure` (for a deployment behind TLS).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.sessions = Arc::new(crate::sessions::Sessions::new(secure));
        self
    }
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Security headers on every response, and a cache policy: static files for a day, pages
/// and API answers revalidated every time.
fn secured(router: Router) -> Router {
    use axum::http::{HeaderName, HeaderValue};
    use tower_http::set_header::SetResponseHeaderLayer;
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    router
        .layer(header("content-security-policy", CSP))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("referrer-policy", "no-referrer"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("cache-control", "no-cache"))
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

const APP_CSS: &str = include_str!("../static/app.css");
const MAP_JS: &str = include_str!("../static/map.js");
const OPENAPI: &str = include_str!("../static/openapi.json");

async fn css() -> Response {
    static_file("text/css; charset=utf-8", APP_CSS)
}

/// Routes residents reach through the edge.
pub fn external_router(state: WebState) -> Router {
    secured(
        Router::new()
            .route("/", get(crate::pages::map))
            .route("/regions/{code}", get(crate::pages::region))
            .route("/estimate", get(crate::pages::estimator))
            .route("/status", get(status_page))
            .route("/static/app.css", get(css))
            .route(
                "/static/map.js",
                get(|| async { static_file("text/javascript; charset=utf-8", MAP_JS) }),
            )
            .route(
                "/api/v1/openapi.json",
                get(|| async { static_file("application/json", OPENAPI) }),
            )
            .route("/api/v1/regions", get(crate::api::regions_geojson))
            .route("/api/v1/regions/{code}", get(crate::api::region_profile))
            .route("/api/v1/meters/{id}/readings", get(meter_readings))
            .with_state(state),
    )
}

/// Routes only reachable inside the deployment.
pub fn internal_router(state: WebState) -> Router {
    secured(
        Router::new()
            .route("/internal/v1/meters", get(list_meters).post(register_meter))
            .route("/internal/v1/meters/{id}", delete(revoke_meter))
            .route("/internal/console", get(crate::console::page))
            .route("/internal/console/login", post(crate::console::login))
            .route("/internal/console/logout", post(crate::console::logout))
            .route(
                "/internal/console/recompute",
                post(crate::console::recompute),
            )
            .route("/internal/static/app.css", get(css))
            .with_state(state),
    )
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    ApiError::unavailable(format!("the store is unavailable: {e}"))
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage<'a> {
    summary: &'a StoreSummary,
    as_of: String,
    refresh_s: u64,
    latest: Option<String>,
    rows: Vec<RegionRow>,
    unplaced: u64,
    attribution: &'a str,
}

struct RegionRow {
    code: String,
    name: String,
    meters: u64,
}

fn region_rows(regions: &Regions, summary: &StoreSummary) -> Vec<RegionRow> {
    regions
        .iter()
        .map(|r| RegionRow {
            code: r.code.clone(),
            name: r.name.clone(),
            meters: summary
                .meters_by_region
                .iter()
                .find(|(c, _)| c.as_deref() == Some(r.code.as_str()))
                .map_or(0, |(_, n)| *n),
        })
        .collect()
}

async fn status_page(State(s): State<WebState>) -> Result<Response, ApiError> {
    let (taken, summary) = s.summary.get(&s.store).await.map_err(store_error)?;
    let age = chrono::Duration::from_std(taken.elapsed()).unwrap_or_default();
    let unplaced = summary
        .meters_by_region
        .iter()
        .filter(|(c, _)| c.as_deref().is_none_or(|c| s.regions.get(c).is_none()))
        .map(|(_, n)| *n)
        .sum();
    let page = StatusPage {
        rows: region_rows(&s.regions, &summary),
        latest: summary
            .latest_reading
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
        as_of: (Utc::now() - age).format("%H:%M:%S UTC").to_string(),
        refresh_s: s.summary.refresh_every.as_secs(),
        summary: &summary,
        unplaced,
        attribution: s
            .regions
            .attribution()
            .unwrap_or("not stated in the region file"),
    };
    crate::pages::render(&page)
}

fn parse_time(
    q: &HashMap<String, String>,
    key: &'static str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    q.get(key)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_query",
                        format!("must be an RFC 3339 timestamp ({e})"),
                    )
                    .field(key)
                })
        })
        .transpose()
}

/// A meter's own readings, `from <= ts < to` (default: the last 7 days), for the holder of
/// that meter's token.
async fn meter_readings(
    State(s): State<WebState>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let owner = authenticate_meter(&s.auth, &headers)?;
    if !is_valid_meter_id(&id) {
        return Err(ApiError::not_found());
    }
    if owner != id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token belongs to meter `{owner}`"),
        )
        .field("authorization"));
    }
    let Query(q) = query.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()).field("query")
    })?;
    if let Some(k) = q.keys().find(|k| !matches!(k.as_str(), "from" | "to")) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            format!("unknown parameter `{k}` (from, to)"),
        )
        .field(k.clone()));
    }
    let to = parse_time(&q, "to")?.unwrap_or_else(Utc::now);
    let from = parse_time(&q, "from")?.unwrap_or(to - Duration::days(7));
    if from >= to {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            "from must be before to",
        )
        .field("from"));
    }
    let readings = s
        .store
        .meter_readings(&id, from, to, MAX_READBACK + 1)
        .await
        .map_err(store_error)?;
    let truncated = readings.len() > MAX_READBACK;
    let shown = &readings[..readings.len().min(MAX_READBACK)];
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let next_from = truncated.then(|| rfc3339(readings[MAX_READBACK].ts));
    let items: Vec<_> = shown
        .iter()
        .map(|r| json!({"ts": rfc3339(r.ts), "kwh": r.kwh, "interval_s": r.interval_s}))
        .collect();
    Ok(Json(json!({
        "meter_id": id,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "count": items.len(),
        "readings": items,
        "next_from": next_from,
    }))
    .into_response())
}

async fn list_meters(State(s): State<WebState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_analyst(&s.operator_token, &headers)?;
    let meters = s.store.meters().await.map_err(store_error)?;
    Ok(Json(json!({ "meters": meters })).into_response())
}

async fn register_meter(
    State(s): State<WebState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_analyst(&s.operator_token, &headers)?;
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let req: NewMeter = serde_json::from_slice(&body).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, "invalid_meter", e.to_string()).field("body")
    })?;
    match provision(s.store.as_ref(), &s.regions, &s.auth.tokens, req).await {
        Ok((meter, token)) => Ok((
            StatusCode::CREATED,
            Json(json!({"meter": meter, "token": token})),
        )
            .into_response()),
        Err(ProvisionError::Invalid { field, reason }) => {
            Err(
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_meter", reason)
                    .field(field),
            )
        }
        Err(ProvisionError::Store(e)) => Err(store_error(e)),
    }
}

/// Revokes a meter's tokens: every token issued up to now fails with 401, here at once and on
/// every meter replica within its refresh interval. The registration and the readings stay;
/// registering the meter again issues a token that works.
async fn revoke_meter(
    State(s): State<WebState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_analyst(&s.operator_token, &headers)?;
    if !is_valid_meter_id(&id) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_meter",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'",
        )
        .field("meter_id"));
    }
    let at = Utc::now();
    s.store.revoke_meter(&id, at).await.map_err(store_error)?;
    s.auth.revocations.insert(&id, at.timestamp_millis());
    tracing::info!(meter_id = %id, "meter tokens revoked");
    Ok(
        Json(
            json!({"meter_id": id, "revoked_at": at.to_rfc3339_opts(SecondsFormat::Millis, true)}),
        )
        .into_response(),
    )
}
