//! The read-only JSON API: regions as GeoJSON with profile summaries, one region's profile.
//! Documented in `static/openapi.json`, served at `/api/v1/openapi.json`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use iot_common::http::ApiError;
use serde_json::{Value, json};

use crate::pages::evening_share;
use crate::routes::{WebState, store_error};

pub async fn regions_geojson(State(s): State<WebState>) -> Result<Response, ApiError> {
    let profiles = s.store.profiles().await.map_err(store_error)?;
    let features: Vec<Value> = s
        .regions
        .iter()
        .map(|r| {
            let summary = profiles
                .iter()
                .find(|p| p.figures.region == r.code)
                .map(|p| {
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
            let rings: Vec<Value> = r
                .boundary
                .0
                .iter()
                .map(|poly| {
                    let ring = |l: &geo::LineString<f64>| {
                        l.0.iter().map(|c| json!([c.x, c.y])).collect::<Vec<_>>()
                    };
                    let mut rs = vec![json!(ring(poly.exterior()))];
                    rs.extend(poly.interiors().iter().map(|i| json!(ring(i))));
                    json!(rs)
                })
                .collect();
            json!({
                "type": "Feature",
                "id": r.code,
                "properties": {"code": r.code, "name": r.name, "profile": summary},
                "geometry": {"type": "MultiPolygon", "coordinates": rings},
            })
        })
        .collect();
    Ok(Json(json!({
        "type": "FeatureCollection",
        "attribution": s.regions.attribution(),
        "features": features,
    }))
    .into_response())
}

pub async fn region_profile(
    State(s): State<WebState>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let region = s.regions.get(&code).ok_or_else(ApiError::not_found)?;
    let profile = s
        .store
        .profiles()
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|p| p.figures.region == code);
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
