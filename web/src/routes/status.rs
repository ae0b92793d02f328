//! `GET /status`: what the store holds (meters per region, readings, the latest one), from
//! the cached summary, and the simulated fleet's backfill while it runs (its progress bar
//! follows `Accept: application/json` answers of the same route without a reload).

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use iot_common::problem::ApiError;
use iot_common::regions::Regions;
use iot_common::store::StoreSummary;

use crate::respond;
use iot_common::wire::{BackfillPhase, BackfillReport, Progress, ProgressItem};

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
    backfill: Option<BackfillLine>,
    /// How many meters are silent, once the watch has looked.
    silent: Option<String>,
}

/// The fleet's backfill as the page prints it.
struct BackfillLine {
    /// Still going: the page follows it.
    going: bool,
    value: u64,
    max: u64,
    text: String,
}

fn backfill_line(b: &BackfillReport) -> BackfillLine {
    let elapsed = b.started_at.map(|t| (Utc::now() - t).num_seconds().max(0));
    let text = match b.phase {
        BackfillPhase::Stored => format!(
            "the fleet's {} meters' history is stored ({} readings)",
            b.meters, b.readings_posted
        ),
        BackfillPhase::Storing => format!(
            "{} readings posted; {} of {} meters' history stored so far",
            b.readings_posted, b.meters_stored, b.meters
        ),
        BackfillPhase::Posting => format!(
            "posting the fleet's history: {} of {} readings ({:.0} %){}",
            b.readings_posted,
            b.readings_expected,
            b.readings_posted as f64 / b.readings_expected.max(1) as f64 * 100.0,
            elapsed.map_or_else(String::new, |s| format!(", {s} s"))
        ),
    };
    let (value, max) = match b.phase {
        BackfillPhase::Storing => (b.meters_stored, b.meters),
        BackfillPhase::Posting | BackfillPhase::Stored => (
            b.readings_posted,
            b.readings_expected.max(b.readings_posted),
        ),
    };
    BackfillLine {
        going: b.phase != BackfillPhase::Stored,
        value,
        max,
        text,
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("application/json"))
}

struct RegionRow {
    code: String,
    name: String,
    meters: u64,
}

pub async fn status(State(s): State<WebState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let backfill = match &s.fleet {
        Some(fleet) => fleet.backfill().await.map(|b| backfill_line(&b)),
        None => None,
    };
    if wants_json(&headers) {
        let items = backfill
            .into_iter()
            .map(|b| ProgressItem {
                id: "backfill".into(),
                value: b.value,
                max: Some(b.max),
                text: b.text,
                done: !b.going,
                run_id: None,
                status: None,
            })
            .collect();
        return Ok(axum::Json(Progress { items }).into_response());
    }
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
        backfill,
        silent: silent_line(&s.silence.report()),
    })
}

/// "3 meters silent (no reading for 6 hours or more)", once the watch has looked.
fn silent_line(report: &crate::silence::SilenceReport) -> Option<String> {
    report.as_of?;
    let n = report.meters.len();
    Some(format!(
        "{n} {} silent (no reading for {} hours or more)",
        if n == 1 { "meter" } else { "meters" },
        report.silent_after_hours
    ))
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
