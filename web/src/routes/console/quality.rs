//! The console's data-quality page: per borough, how the current profiles' household-days
//! fared in validation (complete, estimated, excluded) with a completeness bar chart, and
//! the silent meters; and the silent meters as JSON for scripts.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use iot_common::http::Analyst;
use iot_common::problem::ApiError;

use super::AnalystPage;
use crate::present::{count, when};
use crate::respond;
use crate::silence::SilenceReport;
use crate::state::WebState;

/// One borough's meter-days, as the table and the chart print them.
struct BoroughRow {
    name: String,
    complete: String,
    estimated: String,
    excluded: String,
    /// Complete days as a share of all, in per cent to one place.
    completeness: String,
    estimated_share: String,
    /// The chart's bar: its top and length in the SVG's units.
    y: u32,
    w: String,
}

struct SilentRow {
    meter: String,
    borough: String,
    last: String,
}

#[derive(Template)]
#[template(path = "console_quality.html")]
struct QualityPage {
    rows: Vec<BoroughRow>,
    chart_height: u32,
    silent: Vec<SilentRow>,
    silent_after_hours: String,
    as_of: String,
}

/// Pixels per row of the chart, and the longest bar (the template starts bars at x = 190).
const ROW_H: u32 = 18;
const BAR_MAX: f64 = 300.0;

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64 * 100.0
    }
}

/// `GET /internal/console/quality`.
pub async fn page(_: AnalystPage, State(s): State<WebState>) -> Result<Response, ApiError> {
    let profiles = s.current_profiles().await?;
    let rows = s
        .regions
        .iter()
        .filter_map(|r| profiles.get(r.code.as_str()).map(|p| (r, p)))
        .enumerate()
        .map(|(i, (r, p))| {
            let d = p.figures.meter_days;
            let all = d.kept() + d.excluded;
            let completeness = share(d.complete, all);
            BoroughRow {
                name: r.name.clone(),
                complete: count(d.complete),
                estimated: count(d.estimated),
                excluded: count(d.excluded),
                completeness: format!("{completeness:.1}"),
                estimated_share: format!("{:.1}", share(d.estimated, d.kept())),
                y: i as u32 * ROW_H,
                w: format!("{:.1}", completeness / 100.0 * BAR_MAX),
            }
        })
        .collect::<Vec<_>>();
    let report = s.silence.report();
    respond::page(&QualityPage {
        chart_height: rows.len() as u32 * ROW_H + 4,
        rows,
        silent: silent_rows(&s, &report),
        silent_after_hours: format!("{}", report.silent_after_hours),
        as_of: report.as_of.map_or_else(|| "not yet".to_owned(), when),
    })
}

fn silent_rows(s: &WebState, report: &SilenceReport) -> Vec<SilentRow> {
    report
        .meters
        .iter()
        .map(|m| SilentRow {
            meter: m.meter_id.to_string(),
            borough: m
                .region
                .as_ref()
                .map(|code| {
                    s.regions
                        .get(code.as_str())
                        .map_or_else(|| code.to_string(), |r| r.name.clone())
                })
                .unwrap_or_else(|| "–".into()),
            last: m.last_reading.map_or_else(|| "never".into(), when),
        })
        .collect()
}

/// `GET /internal/v1/quality/silent-meters`: the silent meters as the last refresh found
/// them, longest silent first.
pub async fn silent_meters(_: Analyst, State(s): State<WebState>) -> Response {
    Json(s.silence.report().as_ref().clone()).into_response()
}
