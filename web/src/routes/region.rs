//! `GET /regions/{code}`: one region's profile, its average day's load curve, today's half
//! hours so far (the live layer) over the typical day, how it compares with the mean of all
//! regions, and its neighbours.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use iot_common::problem::ApiError;
use iot_common::{ProfileFigures, RegionProfile};

use chrono::{DateTime, Utc};
use iot_common::live::SLOT;

use crate::geometry::Shape;
use crate::live::{LiveFigures, TZ, typical_kwh};
use crate::present::{basis, kwh, when, window_text};
use crate::respond;
use crate::state::WebState;
use crate::svg::{Bar, Tick, at, hour_ticks};
use crate::trend::{Trend, trend};

struct ProfileView {
    meters: u64,
    readings: u64,
    avg: String,
    p50: String,
    p90: String,
    weekday: String,
    weekend: String,
    peak: String,
    computed_at: String,
    window: String,
    run_id: String,
    /// How many household-days the figures rest on, and how many were estimated.
    basis: Option<String>,
}

struct Chart {
    width: u32,
    height: u32,
    bars: Vec<Bar>,
    ticks: Vec<Tick>,
}

struct Compare {
    this_w: String,
    this_x: String,
    all_w: String,
    all_x: String,
    all_label: String,
}

#[derive(Template)]
#[template(path = "region.html")]
struct RegionPage<'a> {
    attribution: &'a str,
    code: String,
    name: String,
    name_short: String,
    profile: Option<ProfileView>,
    chart: Chart,
    compare: Compare,
    neighbours: Vec<(String, String)>,
    /// The published figures over past runs, with two runs or more.
    trend: Option<Trend>,
    today: TodayChart,
}

/// Today's half hours so far (household mean, bars; incomplete ones paler) over the typical
/// household's (a line), London time.
struct TodayChart {
    width: u32,
    height: u32,
    bars: Vec<Bar>,
    /// Bars of incomplete half hours (too few meters reported).
    incomplete: Vec<Bar>,
    /// The typical day, as polyline points; empty without a profile.
    typical: String,
    ticks: Vec<Tick>,
    /// Half hours with readings so far.
    reported: usize,
}

pub async fn region(
    State(s): State<WebState>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let shape = s.geometry.shape(&code).ok_or_else(ApiError::not_found)?;
    let profiles = s.current_profiles().await?;
    let mine = profiles.get(code.as_str());
    let all_avg = mean_of_means(profiles.values());
    let figures = mine.map_or_else(|| empty_figures(shape), |p| p.figures.clone());
    let history = s.published_history(&shape.code, TREND_RUNS).await?;
    let live = s.live_parts().await?;
    let now = Utc::now();
    let day_start = local_midnight(now);
    let today_slots =
        live.inputs(&s.regions, now)
            .region_slots(&shape.code, &shape.name, day_start);
    respond::page(&RegionPage {
        attribution: s.attribution(),
        name_short: shape.name.chars().take(18).collect(),
        code: shape.code.to_string(),
        name: shape.name.clone(),
        profile: mine.map(profile_view),
        chart: load_curve(&figures),
        compare: compare(figures.avg_daily_kwh, all_avg),
        neighbours: neighbours(&s, shape),
        trend: trend(&history),
        today: today_chart(&today_slots.slots, mine.map(|p| &p.figures), day_start),
    })
}

/// The start of today in London.
fn local_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&TZ).date_naive();
    local
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(TZ).earliest())
        .map_or(now - SLOT * 48, |t| t.with_timezone(&Utc))
}

/// Today's half hours over the typical day: 48 slots from London midnight (46 or 50 on the
/// days the clocks change, drawn on the same 48).
fn today_chart(
    slots: &[LiveFigures],
    profile: Option<&ProfileFigures>,
    day_start: DateTime<Utc>,
) -> TodayChart {
    let (width, height, left, bottom) = (600u32, 220u32, 30.0, 20.0);
    let n = 48usize;
    let step = (f64::from(width) - left) / n as f64;
    let usable = f64::from(height) - bottom - 10.0;
    let typical: Vec<f64> = (0..n)
        .map(|i| profile.map_or(0.0, |p| typical_kwh(p, day_start + SLOT * i as i32)))
        .collect();
    let top = slots
        .iter()
        .filter_map(|f| f.household_kwh)
        .chain(typical.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.1;
    let y = |v: f64| 10.0 + usable - v / top * usable;
    let (mut bars, mut incomplete, mut reported) = (Vec::new(), Vec::new(), 0);
    for (i, f) in slots.iter().enumerate().take(n) {
        let Some(v) = f.household_kwh else { continue };
        reported += 1;
        let local = f.slot.with_timezone(&TZ).format("%H:%M");
        let bar = Bar {
            x: at(left + i as f64 * step + 0.5),
            y: at(y(v)),
            w: at(step - 1.0),
            h: at(v / top * usable),
            peak: false,
            label: if f.complete {
                format!("{local}: {v:.3} kWh a household ({} meters)", f.meters)
            } else {
                format!(
                    "{local}: {v:.3} kWh a household, incomplete ({} meters)",
                    f.meters
                )
            },
        };
        if f.complete {
            bars.push(bar)
        } else {
            incomplete.push(bar)
        }
    }
    let typical = if profile.is_some() {
        typical
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                let x0 = left + i as f64 * step;
                [
                    format!("{},{}", at(x0), at(y(*v))),
                    format!("{},{}", at(x0 + step), at(y(*v))),
                ]
            })
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        String::new()
    };
    TodayChart {
        width,
        height,
        bars,
        incomplete,
        typical,
        ticks: hour_ticks(left, step * 2.0, height, top),
        reported,
    }
}

/// Most past runs the trend draws.
const TREND_RUNS: usize = 60;

/// The mean of the regions' mean daily use (0 with no profiles).
fn mean_of_means<'a>(profiles: impl ExactSizeIterator<Item = &'a RegionProfile>) -> f64 {
    let n = profiles.len();
    let sum: f64 = profiles.map(|p| p.figures.avg_daily_kwh).sum();
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// All zeros: the chart of a region that has no profile yet.
fn empty_figures(shape: &Shape) -> ProfileFigures {
    ProfileFigures {
        region: shape.code.clone(),
        meters: 0,
        readings: 0,
        avg_daily_kwh: 0.0,
        p50_daily_kwh: 0.0,
        p90_daily_kwh: 0.0,
        weekday_avg_daily_kwh: None,
        weekend_avg_daily_kwh: None,
        hourly_kwh: [0.0; 24],
        peak_hour: 0,
        meter_daily_percentiles: Vec::new(),
        meter_days: Default::default(),
    }
}

fn profile_view(p: &RegionProfile) -> ProfileView {
    let f = &p.figures;
    let opt = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), kwh);
    ProfileView {
        meters: f.meters,
        readings: f.readings,
        avg: kwh(f.avg_daily_kwh),
        p50: kwh(f.p50_daily_kwh),
        p90: kwh(f.p90_daily_kwh),
        weekday: opt(f.weekday_avg_daily_kwh),
        weekend: opt(f.weekend_avg_daily_kwh),
        peak: format!("{:02}:00–{:02}:00", f.peak_hour, (f.peak_hour + 1) % 24),
        computed_at: when(p.computed_at),
        window: window_text(p),
        run_id: p.run_id.clone(),
        basis: basis(&f.meter_days),
    }
}

/// Two bars, this region's mean daily use and all regions', on one scale.
fn compare(this: f64, all: f64) -> Compare {
    let scale = 270.0 / this.max(all).max(1e-9);
    Compare {
        this_w: format!("{:.1}", this * scale),
        this_x: format!("{:.1}", 126.0 + this * scale),
        all_w: format!("{:.1}", all * scale),
        all_x: format!("{:.1}", 126.0 + all * scale),
        all_label: kwh(all),
    }
}

fn neighbours(s: &WebState, shape: &Shape) -> Vec<(String, String)> {
    shape
        .neighbours
        .iter()
        .filter_map(|c| s.geometry.shape(c))
        .map(|n| (n.code.to_string(), n.name.clone()))
        .collect()
}

/// The average day's use, hour by hour, as SVG bars with the peak hour marked.
fn load_curve(f: &ProfileFigures) -> Chart {
    let (width, height, left, bottom) = (600u32, 220u32, 30.0, 20.0);
    let top = f
        .hourly_kwh
        .iter()
        .copied()
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let slot = (f64::from(width) - left) / 24.0;
    let usable = f64::from(height) - bottom - 10.0;
    let bars = f
        .hourly_kwh
        .iter()
        .enumerate()
        .map(|(h, v)| {
            let bh = v / top * usable;
            Bar {
                x: format!("{:.1}", left + h as f64 * slot + 1.0),
                y: format!("{:.1}", 10.0 + usable - bh),
                w: format!("{:.1}", slot - 2.0),
                h: format!("{bh:.1}"),
                peak: h == usize::from(f.peak_hour),
                label: format!("{h:02}:00–{:02}:00: {v:.3} kWh", (h + 1) % 24),
            }
        })
        .collect();
    Chart {
        width,
        height,
        bars,
        ticks: hour_ticks(left, slot, height, top),
    }
}
