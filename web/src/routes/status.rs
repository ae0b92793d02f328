//! `GET /status`: what the store holds (meters per region, readings, the latest one), from
//! the cached summary.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use iot_common::problem::ApiError;
use iot_common::regions::Regions;
use iot_common::store::StoreSummary;

use crate::respond;
use crate::state::WebState;

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

pub async fn status(State(s): State<WebState>) -> Result<Response, ApiError> {
    let (taken, summary) = s.summary.get(&s.store).await?;
    let age = chrono::Duration::from_std(taken.elapsed()).unwrap_or_default();
    respond::page(&StatusPage {
        rows: region_rows(&s.regions, &summary),
        latest: summary
            .latest_reading
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
        as_of: (Utc::now() - age).format("%H:%M:%S UTC").to_string(),
        refresh_s: s.summary.refresh_every.as_secs(),
        unplaced: unplaced(&s.regions, &summary),
        summary: &summary,
        attribution: s
            .regions
            .attribution()
            .unwrap_or("not stated in the region file"),
    })
}

fn region_rows(regions: &Regions, summary: &StoreSummary) -> Vec<RegionRow> {
    regions
        .iter()
        .map(|r| RegionRow {
            code: r.code.to_string(),
            name: r.name.clone(),
            meters: summary
                .meters_by_region
                .iter()
                .find(|(c, _)| c.as_ref() == Some(&r.code))
                .map_or(0, |(_, n)| *n),
        })
        .collect()
}

/// Meters in no region, or in one the region file does not have.
fn unplaced(regions: &Regions, summary: &StoreSummary) -> u64 {
    summary
        .meters_by_region
        .iter()
        .filter(|(c, _)| c.as_ref().is_none_or(|c| regions.get(c).is_none()))
        .map(|(_, n)| *n)
        .sum()
}
