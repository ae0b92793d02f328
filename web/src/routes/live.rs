//! The live layer's JSON API: every region's last complete half hour against its typical
//! household (what the map's "now" shows and polls), and one region's half hours of the last
//! 48 hours. Described in the public OpenAPI document.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use iot_common::domain::RegionCode;
use iot_common::live::window_start;
use iot_common::problem::ApiError;

use crate::live::{LiveNow, LiveRegionSlots};
use crate::state::WebState;

/// Every region's household mean in the last complete half hour, against the typical
/// household of its published profile for that local hour.
#[utoipa::path(get, path = "/api/v1/live", tag = "live", responses(
    (status = 200, description = "The last complete half hour of every region.", body = LiveNow),
))]
pub async fn live_now(State(s): State<WebState>) -> Result<Response, ApiError> {
    let parts = s.live_parts().await?;
    Ok(Json(parts.inputs(&s.regions, Utc::now()).now_view()).into_response())
}

/// One region's half hours of the last 48 hours, oldest first, up to the current one.
#[utoipa::path(get, path = "/api/v1/live/{code}", tag = "live",
    params(("code" = RegionCode, Path, description = "The region's code.", example = "E09000007")),
    responses(
        (status = 200, description = "The region's half hours.", body = LiveRegionSlots),
        (status = 404, description = "No such region."),
    ))]
pub async fn live_region(
    State(s): State<WebState>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let region = s.regions.get(&code).ok_or_else(ApiError::not_found)?;
    let parts = s.live_parts().await?;
    let now = Utc::now();
    let answer =
        parts
            .inputs(&s.regions, now)
            .region_slots(&region.code, &region.name, window_start(now));
    Ok(Json(answer).into_response())
}
