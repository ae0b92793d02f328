//! `POST /api/v1/readings`: one reading object or a JSON array of them.
//!
//! A batch is all or nothing: if any reading is refused, none is published, and the error
//! names the reading's index and field. A stranger is refused before the body is read; the
//! body is parsed straight into readings; past `max_in_flight` requests the meter sheds load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::StreamExt as _;
use iot_common::Reading;
use iot_common::auth::MeterAuth;
use iot_common::bus::{Bus, BusError};
use iot_common::domain::{AcceptWindow, FieldError, MeterId};
use iot_common::http::authenticate_meter;
use iot_common::metrics::Metrics;
use iot_common::problem::{ApiError, ErrorCode};
use iot_common::reading_json::{BodyShape, JsonError, ParsedBody, parse_readings};
use serde::Serialize;
use tokio::sync::Semaphore;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Requests parsed and published at once; one more is shed with 503 at once rather than
    /// queued behind them.
    pub max_in_flight: usize,
}

/// Default bound on requests being parsed and published at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(10),
            window: AcceptWindow::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

#[derive(Clone)]
pub struct MeterState {
    pub bus: Arc<dyn Bus>,
    pub auth: MeterAuth,
    pub metrics: Arc<Metrics>,
    pub config: IngestConfig,
    admission: Arc<Semaphore>,
}

impl MeterState {
    pub fn new(
        bus: Arc<dyn Bus>,
        auth: MeterAuth,
        metrics: Arc<Metrics>,
        config: IngestConfig,
    ) -> Self {
        let admission = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        Self {
            bus,
            auth,
            metrics,
            config,
            admission,
        }
    }
}

/// The meter's external routes.
pub fn router(state: MeterState) -> Router {
    let (router, _) = api().split_for_parts();
    router.with_state(state)
}

/// The description of [`router`], for the public document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

fn api() -> OpenApiRouter<MeterState> {
    OpenApiRouter::new().routes(routes!(ingest))
}

/// A reading as a meter posts it. The rules JSON Schema cannot say are the server's: `ts`
/// is aligned to the start of an interval of `interval_s` seconds, at most 300 s ahead of
/// the server's clock and at most the retention (730 days by default) behind it; `kwh` is at
/// most 25 kW over the interval (6.25, 12.5 or 25 kWh).
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reading)]
#[allow(dead_code)]
struct ReadingDoc {
    /// The meter's id; it must be the meter the token belongs to.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "MTR-000123")]
    meter_id: String,
    /// Start of the interval, RFC 3339.
    #[schema(example = "2026-11-30T18:30:00Z")]
    ts: chrono::DateTime<Utc>,
    /// Energy used in the interval.
    #[schema(minimum = 0, maximum = 25, example = 0.42)]
    kwh: f64,
    /// Length of the interval in seconds; 1800 when absent.
    #[schema(inline)]
    interval_s: Option<IntervalDoc>,
}

#[derive(serde::Deserialize, ToSchema)]
#[repr(u32)]
#[allow(dead_code)]
#[schema(default = 1800)]
enum IntervalDoc {
    Quarter = 900,
    Half = 1800,
    Hour = 3600,
}

/// One reading, or a batch of 1 to [`MAX_BATCH`] readings of the same meter.
struct ReadingsDoc;

impl utoipa::PartialSchema for ReadingsDoc {
    fn schema() -> RefOr<Schema> {
        let reading = || Ref::from_schema_name(<ReadingDoc as ToSchema>::name());
        OneOfBuilder::new()
            .description(Some(
                "One reading, or a batch of readings of the same meter.",
            ))
            .item(reading())
            .item(
                ArrayBuilder::new()
                    .items(reading())
                    .min_items(Some(1))
                    .max_items(Some(MAX_BATCH)),
            )
            .into()
    }
}

impl ToSchema for ReadingsDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "Readings".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            <ReadingDoc as ToSchema>::name().into_owned(),
            <ReadingDoc as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// What a 202 says: how many readings the bus now holds.
#[derive(Serialize, ToSchema)]
struct Accepted {
    accepted: usize,
}

/// Takes a meter's readings. A 202 means the bus holds every reading of the request
/// durably; any refusal means none was taken, and the problem's `field` and `index` name
/// the reading and the field at fault.
#[utoipa::path(
    post,
    path = "/api/v1/readings",
    tag = "ingest",
    security(("meter_token" = [])),
    request_body(content = ReadingsDoc, content_type = "application/json"),
    responses(
        (status = 202, description = "Every reading is on the bus.", body = Accepted),
        (status = 400, description = "The body is not JSON, or not a reading or an array of readings."),
        (status = 401, description = "No meter token, or not a valid one (sent before the body is read)."),
        (status = 403, description = "A reading names another meter than the token's."),
        (status = 413, description = "The body is over 4 MiB, or holds more than 10,000 readings."),
        (status = 415, description = "`Content-Type` is not `application/json`."),
        (status = 422, description = "A reading breaks a rule, an empty batch; `field` and `index` say which."),
    )
)]
async fn ingest(State(state): State<MeterState>, req: Request) -> Response {
    let started = Instant::now();
    match accept(&state, req).await {
        Ok(n) => {
            state.metrics.readings_accepted.inc_by(n as u64);
            state
                .metrics
                .publish_seconds
                .observe(started.elapsed().as_secs_f64());
            (StatusCode::ACCEPTED, axum::Json(Accepted { accepted: n })).into_response()
        }
        Err(e) => {
            state.metrics.reject(e.status().as_u16());
            e.into_response()
        }
    }
}

/// The steps of an ingest request, each refusing with its own status: who is asking (401,
/// before a byte of the body is read), what they send (415, 413), whether there is room
/// (503 at once), what it says (400, 422, 403), and whether the bus took it (503).
async fn accept(state: &MeterState, req: Request) -> Result<usize, ApiError> {
    let (parts, body) = req.into_parts();
    let token_meter = authenticate_meter(&state.auth, &parts.headers)?;
    check_content_type(&parts.headers)?;
    let body = read_body(&parts.headers, body).await?;
    let _permit = state.admission.try_acquire().map_err(|_| {
        state.metrics.ingest_shed.inc();
        ApiError::new(
            ErrorCode::Overloaded,
            "the meter is at capacity; retry shortly",
        )
    })?;
    let readings = readings_of(&body, &token_meter, state.config.window)?;
    drop(body);
    publish(state, &readings).await?;
    Ok(readings.len())
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    if is_json(headers) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        "Content-Type must be application/json",
    )
    .field("content-type"))
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds {MAX_BODY_BYTES} bytes"),
    )
}

/// The whole body, at most [`MAX_BODY_BYTES`], in one buffer sized from `Content-Length`
/// (refused before reading when that already says too much).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.map_or(16 * 1024, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(ErrorCode::BadRequest, format!("cannot read the body: {e}"))
        })?;
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The body's readings, each judged by the format and the time window, all the token's.
fn readings_of(
    body: &[u8],
    token_meter: &MeterId,
    window: AcceptWindow,
) -> Result<Vec<Reading>, ApiError> {
    let ParsedBody { readings, shape } = parse_readings(body, MAX_BATCH).map_err(body_error)?;
    let now = Utc::now();
    for (i, reading) in readings.iter().enumerate() {
        let at_index = |e: ApiError| match shape {
            BodyShape::Array => e.index(i),
            BodyShape::One => e,
        };
        window
            .check(reading, now)
            .map_err(|e| at_index(invalid(&e)))?;
        if reading.meter_id != *token_meter {
            return Err(at_index(
                ApiError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "the token belongs to meter `{token_meter}`, not `{}`",
                        reading.meter_id
                    ),
                )
                .field("meter_id"),
            ));
        }
    }
    Ok(readings)
}

fn invalid(e: &FieldError) -> ApiError {
    ApiError::new(ErrorCode::InvalidReading, e.to_string()).field(e.field)
}

fn body_error(e: JsonError) -> ApiError {
    let code = match &e {
        JsonError::Syntax(_) => ErrorCode::MalformedJson,
        JsonError::Shape => ErrorCode::MalformedBody,
        JsonError::Empty => ErrorCode::EmptyBatch,
        JsonError::TooMany { .. } => ErrorCode::BatchTooLarge,
        JsonError::Reading { index, error } => {
            let e = invalid(error);
            return match index {
                Some(i) => e.index(*i),
                None => e,
            };
        }
    };
    ApiError::new(code, e.to_string()).field("body")
}

#[tracing::instrument(skip_all, fields(readings = readings.len()))]
async fn publish(state: &MeterState, readings: &[Reading]) -> Result<(), ApiError> {
    let deadline = state.config.publish_timeout;
    match tokio::time::timeout(deadline, state.bus.publish(readings)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BusError::Timeout(deadline).into()),
    }
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
