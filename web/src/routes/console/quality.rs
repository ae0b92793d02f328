//! The console's data-quality page: per borough, how the current profiles' household-days
//! fared in validation (complete, estimated, excluded) with a completeness bar chart, the
//! meters of note (most days left out, estimated for days running: SQL over `meter_days`)
//! and the silent meters; and the meters of note and the silent meters as JSON for scripts.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use chrono_tz::Europe::London;
use iot_common::http::Analyst;
use iot_common::problem::{ApiError, ErrorCode};
use iot_common::wire::{
    AnswerFormat, JsonAnswer, PROLONGED_ESTIMATION_DAYS, prolonged_estimation_sql, worst_meters_sql,
};
use serde::Serialize;

use super::AnalystPage;
use crate::cache::Profiles;
use crate::present::{count, when};
use crate::respond;
use crate::silence::SilenceReport;
use crate::state::{AnalyticsError, WebState};

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

/// A meter of note: among the worst of the window, or estimated for days running.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NotedMeter {
    pub meter_id: String,
    pub region: String,
    /// Its days in the window, or the run's.
    pub days: u64,
    pub estimated: Option<u64>,
    pub excluded: Option<u64>,
    pub first_day: Option<String>,
    pub last_day: Option<String>,
}

/// The meters of note in the current profiles' window, from the analysts' `meter_days`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MetersOfNote {
    /// The local days `[from, to)` looked at.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Most days left out, then estimated.
    pub worst: Vec<NotedMeter>,
    /// Runs of more than `PROLONGED_ESTIMATION_DAYS` days estimated or left out.
    pub prolonged: Vec<NotedMeter>,
}

/// The current profiles' window as local days, once there are profiles.
fn profiles_window(profiles: &Profiles) -> Option<(NaiveDate, NaiveDate)> {
    profiles.values().next().map(|p| {
        let day = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&London).date_naive();
        (day(p.window_from), day(p.window_to))
    })
}

async fn ask(s: &WebState, sql: &str) -> Result<JsonAnswer, AnalyticsError> {
    let analytics = s
        .analytics
        .as_ref()
        .ok_or_else(|| AnalyticsError::unavailable("no analytics service is configured"))?;
    let answer = analytics.query(sql, AnswerFormat::Json).await?;
    serde_json::from_slice(&answer.body)
        .map_err(|e| AnalyticsError::unavailable(format!("the analytics answer is not JSON: {e}")))
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A row of `worst_meters_sql` (meter, region, days, estimated, excluded), or with `runs` of
/// `prolonged_estimation_sql` (meter, region, days, first and last day).
fn noted(r: &[serde_json::Value], runs: bool) -> NotedMeter {
    let count = |v: &serde_json::Value| v.as_u64().filter(|_| !runs);
    let day = |v: &serde_json::Value| runs.then(|| text(v));
    NotedMeter {
        meter_id: text(&r[0]),
        region: text(&r[1]),
        days: r[2].as_u64().unwrap_or(0),
        estimated: count(&r[3]),
        excluded: count(&r[4]),
        first_day: day(&r[3]),
        last_day: day(&r[4]),
    }
}

/// Asks analytics' SQL for the meters of note of `[from, to)`.
async fn meters_of_note(
    s: &WebState,
    (from, to): (NaiveDate, NaiveDate),
) -> Result<MetersOfNote, AnalyticsError> {
    let worst = ask(s, &worst_meters_sql(from, to)).await?;
    let prolonged = ask(s, &prolonged_estimation_sql(from, to)).await?;
    let decode = |answer: JsonAnswer, runs: bool| {
        answer
            .rows
            .iter()
            .filter(|r| r.len() >= 5)
            .map(|r| noted(r, runs))
            .collect()
    };
    let (worst, prolonged) = (decode(worst, false), decode(prolonged, true));
    Ok(MetersOfNote {
        from,
        to,
        worst,
        prolonged,
    })
}

/// A meter of note as the page prints it.
struct NotedRow {
    meter: String,
    borough: String,
    days: String,
    estimated: String,
    excluded: String,
    period: String,
}

fn noted_rows(s: &WebState, meters: &[NotedMeter]) -> Vec<NotedRow> {
    let n = |v: Option<u64>| v.map_or_else(String::new, count);
    meters
        .iter()
        .map(|m| NotedRow {
            meter: m.meter_id.clone(),
            borough: borough_name(s, &m.region),
            days: count(m.days),
            estimated: n(m.estimated),
            excluded: n(m.excluded),
            period: match (&m.first_day, &m.last_day) {
                (Some(a), Some(b)) => format!("{a} to {b}"),
                _ => String::new(),
            },
        })
        .collect()
}

fn borough_name(s: &WebState, code: &str) -> String {
    s.regions
        .get(code)
        .map_or_else(|| code.to_owned(), |r| r.name.clone())
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
    /// The meters of note, or why they could not be found.
    noted: Result<(Vec<NotedRow>, Vec<NotedRow>), String>,
    prolonged_days: u32,
    silent_after_hours: String,
    as_of: String,
}

/// Pixels per row of the chart, and the longest bar (the template starts bars at x = 190
/// and ends each row with its figure at x = 538).
const ROW_H: u32 = 18;
const BAR_MAX: f64 = 290.0;

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
    let noted = match profiles_window(&profiles) {
        None => Err("No profiles computed yet.".to_owned()),
        Some(window) => meters_of_note(&s, window)
            .await
            .map(|m| (noted_rows(&s, &m.worst), noted_rows(&s, &m.prolonged)))
            .map_err(|e| format!("The analytics service did not answer: {e}")),
    };
    respond::page(&QualityPage {
        chart_height: rows.len() as u32 * ROW_H + 4,
        rows,
        silent: silent_rows(&s, &report),
        noted,
        prolonged_days: PROLONGED_ESTIMATION_DAYS,
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
                .map_or_else(|| "–".into(), |code| borough_name(s, code.as_str())),
            last: m.last_reading.map_or_else(|| "never".into(), when),
        })
        .collect()
}

/// The silent meters as the last refresh found them, longest silent first.
#[utoipa::path(get, path = "/internal/v1/quality/silent-meters", tag = "data quality",
    security(("analyst_token" = [])),
    responses(
        (status = 200, description = "The silent meters.", body = SilenceReport),
        (status = 401, description = "No analyst token."),
    ))]
pub async fn silent_meters(_: Analyst, State(s): State<WebState>) -> Response {
    Json(s.silence.report().as_ref().clone()).into_response()
}

/// The meters of note of the current profiles' window: most days left out or estimated,
/// and estimated for days running.
#[utoipa::path(get, path = "/internal/v1/quality/meters", tag = "data quality",
    security(("analyst_token" = [])),
    responses(
        (status = 200, description = "The meters of note.", body = MetersOfNote),
        (status = 401, description = "No analyst token."),
        (status = 404, description = "No profiles computed yet."),
    ))]
pub async fn noted_meters(_: Analyst, State(s): State<WebState>) -> Result<Response, ApiError> {
    let window = profiles_window(&s.current_profiles().await?)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no profiles computed yet"))?;
    Ok(Json(meters_of_note(&s, window).await?).into_response())
}
