//! The read-only JSON API: regions as GeoJSON with profile summaries, one region's profile,
//! a region's figures over past runs.
//! Documented in `static/openapi.json`, served at `/api/v1/openapi.json`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use iot_common::RegionProfile;
use iot_common::problem::ApiError;
use iot_common::regions::Region;
use serde_json::json;

use crate::metric::evening_share;
use crate::state::WebState;

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
    let summary = p.map(|p| {
        json!({
            "meters": p.figures.meters,
            "avg_daily_kwh": p.figures.avg_daily_kwh,
            "p50_daily_kwh": p.figures.p50_daily_kwh,
            "p90_daily_kwh": p.figures.p90_daily_kwh,
            "evening_peak_share": evening_share(&p.figures),
            "peak_hour": p.figures.peak_hour,
            "computed_at": p.computed_at,
        })
    });
    let head = json!({
        "type": "Feature",
        "id": r.code,
        "properties": {"code": r.code, "name": r.name, "profile": summary},
    })
    .to_string();
    // The feature object without its closing brace, then the cached geometry.
    body.push_str(&head[..head.len() - 1]);
    body.push_str(r#","geometry":"#);
    body.push_str(geometry);
    body.push('}');
}

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
    Ok(Json(json!({
        "code": region.code,
        "name": region.name,
        "neighbours": neighbours,
        "profile": profile,
    }))
    .into_response())
}

#[derive(serde::Deserialize)]
pub struct HistoryQuery {
    limit: Option<usize>,
}

/// Most past runs one history answer holds.
const MAX_HISTORY: usize = 365;

/// `GET /api/v1/regions/{code}/history`: the region's published figures over past runs,
/// newest first (`?limit=`, default 30).
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
    let runs: Vec<serde_json::Value> = history
        .iter()
        .map(|p| {
            json!({
                "run_id": p.run_id,
                "window_from": p.window_from,
                "window_to": p.window_to,
                "computed_at": p.computed_at,
                "meters": p.figures.meters,
                "readings": p.figures.readings,
                "avg_daily_kwh": p.figures.avg_daily_kwh,
                "p50_daily_kwh": p.figures.p50_daily_kwh,
                "p90_daily_kwh": p.figures.p90_daily_kwh,
                "peak_hour": p.figures.peak_hour,
            })
        })
        .collect();
    Ok(Json(json!({
        "code": region.code,
        "name": region.name,
        "history": runs,
    }))
    .into_response())
}
