//! The console's comparison of two runs: each borough's mean, median and p90 day before
//! and after, and the change.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use iot_common::problem::{ApiError, Query};
use iot_common::{ProfileFigures, RegionProfile, Run, RunStatus};
use serde::Deserialize;

use super::AnalystPage;
use crate::respond;
use crate::state::WebState;

struct RunChoice {
    id: String,
    label: String,
}

/// One figure before and after, and the change as people read it.
struct Change {
    before: String,
    after: String,
    change: String,
}

struct CompareRow {
    name: String,
    /// Mean, median, p90.
    cells: Vec<Change>,
}

#[derive(Template)]
#[template(path = "console_compare.html")]
struct ComparePage {
    runs: Vec<RunChoice>,
    a: String,
    b: String,
    a_window: String,
    b_window: String,
    message: Option<String>,
    rows: Vec<CompareRow>,
}

#[derive(Deserialize)]
pub struct CompareQuery {
    a: Option<String>,
    b: Option<String>,
}

fn change(before: Option<f64>, after: Option<f64>) -> Change {
    let text = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), crate::present::kwh);
    Change {
        before: text(before),
        after: text(after),
        change: match (before, after) {
            (Some(b), Some(a)) if b.abs() > 1e-12 => {
                format!("{:+.2} ({:+.1} %)", a - b, (a - b) / b * 100.0)
            }
            (Some(b), Some(a)) => format!("{:+.2}", a - b),
            _ => "–".into(),
        },
    }
}

/// `GET /internal/console/compare?a=RUN&b=RUN`: two runs' figures per borough side by side
/// (by default the two newest succeeded runs).
pub async fn compare(
    _: AnalystPage,
    State(s): State<WebState>,
    Query(q): Query<CompareQuery>,
) -> Result<Response, ApiError> {
    let succeeded: Vec<Run> = s
        .store
        .runs(100)
        .await?
        .into_iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .collect();
    let newest = |i: usize| succeeded.get(i).map(|r| r.run_id.clone());
    let a = q.a.or_else(|| newest(1)).unwrap_or_default();
    let b = q.b.or_else(|| newest(0)).unwrap_or_default();
    let (before, after) = (
        s.store.run_profiles(&a).await?,
        s.store.run_profiles(&b).await?,
    );
    let message = if succeeded.len() < 2 {
        Some("Two succeeded runs are needed to compare.".to_owned())
    } else if before.is_empty() || after.is_empty() {
        Some("One of these runs has no profiles kept (failed, expired, or from before the history was kept).".to_owned())
    } else {
        None
    };
    let rows = match message {
        Some(_) => Vec::new(),
        None => compare_rows(&s, &before, &after),
    };
    respond::page(&ComparePage {
        runs: succeeded.iter().map(run_choice).collect(),
        a_window: window_of(&succeeded, &a),
        b_window: window_of(&succeeded, &b),
        a,
        b,
        message,
        rows,
    })
}

/// The window of run `id` among `runs`, as the page prints it ("" when unknown).
fn window_of(runs: &[Run], id: &str) -> String {
    runs.iter()
        .find(|r| r.run_id == id)
        .and_then(|r| Some(crate::present::window_days(r.window_from?, r.window_to?)))
        .unwrap_or_default()
}

/// A borough's row per region either run has figures for, in the region file's order.
fn compare_rows(
    s: &WebState,
    before: &[RegionProfile],
    after: &[RegionProfile],
) -> Vec<CompareRow> {
    let figures = |profiles: &[RegionProfile], code: &str| {
        profiles
            .iter()
            .find(|p| p.figures.region.as_str() == code)
            .map(|p| p.figures.clone())
    };
    s.regions
        .iter()
        .filter_map(|r| {
            let x = figures(before, r.code.as_str());
            let y = figures(after, r.code.as_str());
            if x.is_none() && y.is_none() {
                return None;
            }
            let pick = |f: fn(&ProfileFigures) -> f64| change(x.as_ref().map(f), y.as_ref().map(f));
            Some(CompareRow {
                name: r.name.clone(),
                cells: vec![
                    pick(|f| f.avg_daily_kwh),
                    pick(|f| f.p50_daily_kwh),
                    pick(|f| f.p90_daily_kwh),
                ],
            })
        })
        .collect()
}

/// A run as the pickers list it: when, its window, and whether the map showed it.
fn run_choice(r: &Run) -> RunChoice {
    let window = match (r.window_from, r.window_to) {
        (Some(f), Some(t)) => crate::present::window_days(f, t),
        _ => String::new(),
    };
    RunChoice {
        id: r.run_id.clone(),
        label: format!(
            "{} · {window}{}",
            r.created_at.format("%Y-%m-%d %H:%M"),
            if r.published { "" } else { " · history only" }
        ),
    }
}
