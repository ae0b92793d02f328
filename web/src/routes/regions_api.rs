//! The read-only JSON API: regions as GeoJSON with profile summaries, one region's profile,
//! a region's figures over past runs.
//! Described in the public OpenAPI document (`/api/v1/openapi.json`), made from these handlers.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use iot_common::RegionProfile;
use iot_common::domain::RegionCode;
use iot_common::problem::ApiError;
use iot_common::regions::Region;
use serde::Serialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::metric::evening_share;
use crate::state::WebState;

/// The regions as a GeoJSON FeatureCollection, each with its current profile's summary.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct RegionsCollection {
    #[serde(rename = "type")]
    #[schema(pattern = "^FeatureCollection$")]
    kind: String,
    /// Whose boundaries these are, and their licence.
    attribution: String,
    features: Vec<RegionFeature>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct RegionFeature {
    #[serde(rename = "type")]
    #[schema(pattern = "^Feature$")]
    kind: String,
    id: RegionCode,
    properties: FeatureProperties,
    /// The region's boundary: a GeoJSON Polygon or MultiPolygon.
    #[schema(value_type = Object)]
    geometry: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
struct FeatureProperties {
    code: RegionCode,
    name: String,
    /// `null` before the first profiles of the region.
    profile: Option<RegionSummary>,
}

/// A region's profile in brief, for the map.
#[derive(Serialize, ToSchema)]
struct RegionSummary {
    meters: u64,
    avg_daily_kwh: f64,
    p50_daily_kwh: f64,
    p90_daily_kwh: f64,
    /// Share of a day's energy used from 17:00 to 21:00 local time.
    evening_peak_share: f64,
    #[schema(maximum = 23)]
    peak_hour: u8,
    computed_at: DateTime<Utc>,
}

#[utoipa::path(get, path = "/api/v1/regions", tag = "regions", responses(
    (status = 200, description = "Every region, with its profile in brief.", body = RegionsCollection),
))]
pub async fn regions_geojson(State(s): State<WebState>) -> Result<Response, ApiError> {
    let profiles = s.current_profiles().await?;
    let mut body = String::with_capacity(96 * 1024);
    body.push_str(r#"{"type":"FeatureCollection","attribution":"#);
    body.push_str(&json!(s.regions.attribution()).to_string());
    body.push_str(r#","features":["#);
    for (i, (r, geometry)) in s.regions.iter().zip(&s.geometry.geojson).enumerate() {
        if i > 0 {
            body.push(',');
        }
        push_feature(&mut body, r, profiles.get(r.code.as_str()), geometry);
    }
    body.push_str("]}");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// One region as a GeoJSON feature: its code, name and profile summary, then its geometry
/// (cached as text, so it is copied rather than serialized again).
fn push_feature(body: &mut String, r: &Region, p: Option<&RegionProfile>, geometry: &str) {
    let summary = p.map(|p| RegionSummary {
        meters: p.figures.meters,
        avg_daily_kwh: p.figures.avg_daily_kwh,
        p50_daily_kwh: p.figures.p50_daily_kwh,
        p90_daily_kwh: p.figures.p90_daily_kwh,
        evening_peak_share: evening_share(&p.figures),
        peak_hour: p.figures.peak_hour,
        computed_at: p.computed_at,
    });
    let properties = FeatureProperties {
        code: r.code.clone(),
        name: r.name.clone(),
        profile: summary,
    };
    let head = json!({"type": "Feature", "id": r.code, "properties": properties}).to_string();
    // The feature object without its closing brace, then the cached geometry.
    body.push_str(&head[..head.len() - 1]);
    body.push_str(r#","geometry":"#);
    body.push_str(geometry);
    body.push('}');
}

/// A region, its neighbours, and its current profile.
#[derive(Serialize, ToSchema)]
struct RegionAnswer {
    code: RegionCode,
    name: String,
    neighbours: Vec<RegionCode>,
    /// `null` before the first profiles of the region.
    profile: Option<RegionProfile>,
}

/// A region's current profile.
#[utoipa::path(get, path = "/api/v1/regions/{code}", tag = "regions",
    params(("code" = RegionCode, Path, description = "The region's code.", example = "E09000007")),
    responses(
        (status = 200, description = "The region and its profile.", body = RegionAnswer),
        (status = 404, description = "No such region."),
    ))]
pub async fn region_profile(
    State(s): State<WebState>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let region = s.regions.get(&code).ok_or_else(ApiError::not_found)?;
    let profile = s.current_profiles().await?.get(code.as_str()).cloned();
    // Where each household stands is for that household's own page, not the open API.
    let profile = profile.map(|mut p| {
        p.figures.meter_daily_percentiles.clear();
        p
    });
    let neighbours = s
        .geometry
        .shape(&code)
        .map(|g| g.neighbours.clone())
        .unwrap_or_default();
    Ok(Json(RegionAnswer {
        code: region.code.clone(),
        name: region.name.clone(),
        neighbours,
        profile,
    })
    .into_response())
}

#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many runs, newest first; 30 when absent.
    #[param(minimum = 1, maximum = 365)]
    limit: Option<usize>,
}

/// A region's profiles of past runs, as the map showed them.
#[derive(Serialize, ToSchema)]
struct HistoryAnswer {
    code: RegionCode,
    name: String,
    history: Vec<HistoryRun>,
}

#[derive(Serialize, ToSchema)]
struct HistoryRun {
    run_id: String,
    window_from: DateTime<Utc>,
    window_to: DateTime<Utc>,
    computed_at: DateTime<Utc>,
    meters: u64,
    readings: u64,
    avg_daily_kwh: f64,
    p50_daily_kwh: f64,
    p90_daily_kwh: f64,
    #[schema(maximum = 23)]
    peak_hour: u8,
}

/// Most past runs one history answer holds.
const MAX_HISTORY: usize = 365;

/// `GET /api/v1/regions/{code}/history`: the region's published figures over past runs,
/// newest first (`?limit=`, default 30).
/// A region's published profiles, newest first.
#[utoipa::path(get, path = "/api/v1/regions/{code}/history", tag = "regions",
    params(("code" = RegionCode, Path, description = "The region's code.", example = "E09000007"), HistoryQuery),
    responses(
        (status = 200, description = "The region's past profiles.", body = HistoryAnswer),
        (status = 400, description = "`limit` is not 1 to 365."),
        (status = 404, description = "No such region."),
    ))]
pub async fn region_history(
    State(s): State<WebState>,
    Path(code): Path<String>,
    iot_common::problem::Query(q): iot_common::problem::Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let region = s.regions.get(&code).ok_or_else(ApiError::not_found)?;
    let limit = q.limit.unwrap_or(30);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(ApiError::new(
            iot_common::problem::ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_HISTORY}"),
        )
        .field("limit"));
    }
    let history = s.published_history(&region.code, limit).await?;
    let history = history
        .into_iter()
        .map(|p| HistoryRun {
            run_id: p.run_id,
            window_from: p.window_from,
            window_to: p.window_to,
            computed_at: p.computed_at,
            meters: p.figures.meters,
            readings: p.figures.readings,
            avg_daily_kwh: p.figures.avg_daily_kwh,
            p50_daily_kwh: p.figures.p50_daily_kwh,
            p90_daily_kwh: p.figures.p90_daily_kwh,
            peak_hour: p.figures.peak_hour,
        })
        .collect();
    Ok(Json(HistoryAnswer {
        code: region.code.clone(),
        name: region.name.clone(),
        history,
    })
    .into_response())
}
