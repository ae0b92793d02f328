//! `GET /api/v1/meters/{id}/readings` and `/daily`: a meter's own readings and daily
//! totals, for the holder of that meter's token: JSON pages of readings, or any window up
//! to the retention as streamed CSV (`Accept: text/csv`, and always for `/daily`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use iot_common::domain::{MeterId, Reading};
use iot_common::http::authenticate_meter;
use iot_common::problem::{ApiError, ErrorCode, Query};
use iot_common::store::MAX_READBACK;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::export::{Download, Export};
use crate::state::WebState;

/// The window asked for, as RFC 3339 text: each bound is judged on its own, so an error
/// names it.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadingsQuery {
    /// Start of the window, RFC 3339; a week before `to` when absent.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// End of the window (exclusive), RFC 3339; now when absent.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
}

/// One page of a meter's readings, oldest first.
#[derive(Serialize, ToSchema)]
struct ReadingsPage<'a> {
    meter_id: &'a MeterId,
    #[schema(value_type = String, format = DateTime)]
    from: String,
    #[schema(value_type = String, format = DateTime)]
    to: String,
    count: usize,
    readings: Vec<ReadingRow>,
    /// Where the next page starts (`from` of the next request); `null` on the last page.
    #[schema(value_type = Option<String>, format = DateTime)]
    next_from: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ReadingRow {
    #[schema(value_type = String, format = DateTime)]
    ts: String,
    kwh: f64,
    interval_s: u32,
}

const METER_PARAM: &str = "The meter's id; the token must be this meter's.";

/// `from <= ts < to` (default: the last 7 days), oldest first, at most [`MAX_READBACK`];
/// `next_from` says where to continue when there are more. With `Accept: text/csv`: the
/// whole window as CSV, estimated half hours included and flagged.
/// A meter's own readings over a window: JSON pages of at most 10,000 readings, or the
/// whole window as CSV with `Accept: text/csv`.
#[utoipa::path(get, path = "/api/v1/meters/{id}/readings", tag = "meters",
    security(("meter_token" = [])),
    params(("id" = MeterId, Path, description = METER_PARAM, example = "MTR-000123"), ReadingsQuery),
    responses(
        (status = 200, description = "The readings.", content(
            (ReadingsPage = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`from` or `to` is not an RFC 3339 time, or `from` is not before `to`."),
        (status = 401, description = "No meter token, or not a valid one."),
        (status = 403, description = "The token is another meter's."),
        (status = 404, description = "Not a meter id."),
    ))]
pub async fn meter_readings(
    State(s): State<WebState>,
    Path(id): Path<String>,
    Query(q): Query<ReadingsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meter = owned_meter(&s, &id, &headers)?;
    let (from, to) = window(&q)?;
    if wants_csv(&headers) {
        return download(&s, meter, from, to, Export::Readings);
    }
    let readings = s
        .store
        .meter_readings(&meter, from, to, MAX_READBACK + 1)
        .await?;
    Ok(Json(page(&meter, from, to, &readings)).into_response())
}

/// The meter's daily totals over `from <= t < to` (default: the last 7 days) as CSV, each
/// local day with its readings, its use and VEE's verdict.
/// A meter's own daily totals over a window (London days), as CSV.
#[utoipa::path(get, path = "/api/v1/meters/{id}/daily", tag = "meters",
    security(("meter_token" = [])),
    params(("id" = MeterId, Path, description = METER_PARAM, example = "MTR-000123"), ReadingsQuery),
    responses(
        (status = 200, description = "One row per day.", body = String, content_type = "text/csv"),
        (status = 400, description = "`from` or `to` is not an RFC 3339 time, or `from` is not before `to`."),
        (status = 401, description = "No meter token, or not a valid one."),
        (status = 403, description = "The token is another meter's."),
        (status = 404, description = "Not a meter id."),
    ))]
pub async fn meter_daily(
    State(s): State<WebState>,
    Path(id): Path<String>,
    Query(q): Query<ReadingsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meter = owned_meter(&s, &id, &headers)?;
    let (from, to) = window(&q)?;
    download(&s, meter, from, to, Export::Daily)
}

/// Whether the client asks for CSV (`text/csv` among its `Accept` types).
fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
        })
}

fn download(
    s: &WebState,
    meter: MeterId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    kind: Export,
) -> Result<Response, ApiError> {
    Ok(Download::london(s.store.clone(), meter, from, to, kind)?.response())
}

/// The meter of the path, if the request's token is that meter's: 401 without a valid
/// token, 404 for an id that cannot exist, 403 for another meter's.
fn owned_meter(s: &WebState, id: &str, headers: &HeaderMap) -> Result<MeterId, ApiError> {
    let owner = authenticate_meter(&s.auth, headers)?;
    let meter = MeterId::parse(id).map_err(|_| ApiError::not_found())?;
    if owner != meter {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the token belongs to meter `{owner}`"),
        )
        .field("authorization"));
    }
    Ok(meter)
}

fn window(q: &ReadingsQuery) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = parse_time(q.to.as_deref(), "to")?.unwrap_or_else(Utc::now);
    let from = parse_time(q.from.as_deref(), "from")?.unwrap_or(to - Duration::days(7));
    if from >= to {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "from must be before to").field("from"));
    }
    Ok((from, to))
}

fn parse_time(v: Option<&str>, key: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|v| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("must be an RFC 3339 timestamp ({e})"),
                )
                .field(key)
            })
    })
    .transpose()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The answer: up to [`MAX_READBACK`] of `readings` (which holds one more when there are).
fn page<'a>(
    meter: &'a MeterId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    readings: &[Reading],
) -> ReadingsPage<'a> {
    let shown = &readings[..readings.len().min(MAX_READBACK)];
    let rows: Vec<ReadingRow> = shown
        .iter()
        .map(|r| ReadingRow {
            ts: rfc3339(r.ts),
            kwh: r.kwh,
            interval_s: r.interval_s,
        })
        .collect();
    ReadingsPage {
        meter_id: meter,
        from: rfc3339(from),
        to: rfc3339(to),
        count: rows.len(),
        readings: rows,
        next_from: readings.get(MAX_READBACK).map(|r| rfc3339(r.ts)),
    }
}
