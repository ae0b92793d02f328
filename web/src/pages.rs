//! The residents' pages, server-rendered: the map, a region's profile, the estimator.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use iot_common::domain::{Dwelling, household_factor};
use iot_common::http::ApiError;
use iot_common::{ProfileFigures, RegionProfile};

use crate::routes::{WebState, store_error};

/// What the map can be coloured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Mean,
    P90,
    Evening,
}

impl Metric {
    const ALL: [Metric; 3] = [Metric::Mean, Metric::P90, Metric::Evening];

    fn key(self) -> &'static str {
        match self {
            Metric::Mean => "mean",
            Metric::P90 => "p90",
            Metric::Evening => "evening",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::Mean => "Mean daily use",
            Metric::P90 => "p90 daily use",
            Metric::Evening => "Evening-peak share",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Metric::Mean => "Mean electricity a household uses in a day, kWh.",
            Metric::P90 => "Daily use that one household-day in ten exceeds, kWh.",
            Metric::Evening => "Share of a day's use between 17:00 and 21:00 local time.",
        }
    }

    pub fn value(self, f: &ProfileFigures) -> f64 {
        match self {
            Metric::Mean => f.avg_daily_kwh,
            Metric::P90 => f.p90_daily_kwh,
            Metric::Evening => evening_share(f),
        }
    }

    fn label(self, v: f64) -> String {
        match self {
            Metric::Evening => format!("{:.1} %", v * 100.0),
            _ => format!("{v:.2} kWh/day"),
        }
    }

    fn range_label(self, a: f64, b: f64) -> String {
        match self {
            Metric::Evening => format!("{:.1}–{:.1} %", a * 100.0, b * 100.0),
            _ => format!("{a:.2}–{b:.2} kWh/day"),
        }
    }
}

/// Share of the average day's use that falls in local hours 17 to 20.
pub fn evening_share(f: &ProfileFigures) -> f64 {
    let total: f64 = f.hourly_kwh.iter().sum();
    if total > 0.0 {
        f.hourly_kwh[17..21].iter().sum::<f64>() / total
    } else {
        0.0
    }
}

/// ColorBrewer "Oranges", five classes: light is low use, dark is high.
const PALETTE: [&str; 5] = ["#feedde", "#fdbe85", "#fd8d3c", "#e6550d", "#a63603"];

fn class_of(v: f64, lo: f64, hi: f64) -> usize {
    if hi <= lo {
        return 2;
    }
    (((v - lo) / (hi - lo) * 5.0).floor() as usize).min(4)
}

struct MetricLink {
    key: &'static str,
    title: &'static str,
    current: bool,
}

struct MapRegion {
    code: String,
    name: String,
    d: String,
    fill: String,
    label: String,
}

struct LegendRow {
    fill: &'static str,
    label: String,
}

#[derive(Template)]
#[template(path = "map.html")]
struct MapPage<'a> {
    attribution: &'a str,
    metrics: Vec<MetricLink>,
    metric_title: &'static str,
    metric_help: &'static str,
    width: f64,
    height: f64,
    regions: Vec<MapRegion>,
    legend: Vec<LegendRow>,
    computed_at: Option<String>,
    window: String,
}

pub(crate) fn render(t: &impl Template) -> Result<Response, ApiError> {
    let html = t.render().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "render_failed",
            e.to_string(),
        )
    })?;
    Ok(Html(html).into_response())
}

fn day(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::London)
        .format("%-d %b %Y")
        .to_string()
}

fn window_text(p: &RegionProfile) -> String {
    let last = p.window_to - chrono::Duration::seconds(1);
    format!("{} to {}", day(p.window_from), day(last))
}

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::London)
        .format("%-d %b %Y %H:%M %Z")
        .to_string()
}

pub(crate) async fn profiles_by_region(s: &WebState) -> Result<crate::cache::Profiles, ApiError> {
    s.profiles.get(s.store.as_ref()).await.map_err(store_error)
}

pub async fn map(
    State(s): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let metric = match q.get("metric").map(String::as_str) {
        None | Some("mean") => Metric::Mean,
        Some("p90") => Metric::P90,
        Some("evening") => Metric::Evening,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("unknown metric `{other}` (mean, p90, evening)"),
            )
            .field("metric"));
        }
    };
    let profiles = profiles_by_region(&s).await?;
    let values: Vec<f64> = s
        .geometry
        .shapes
        .iter()
        .filter_map(|g| profiles.get(&g.code).map(|p| metric.value(&p.figures)))
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let regions = s
        .geometry
        .shapes
        .iter()
        .map(|g| {
            let (fill, label) = match profiles.get(&g.code) {
                Some(p) => {
                    let v = metric.value(&p.figures);
                    (PALETTE[class_of(v, lo, hi)].to_owned(), metric.label(v))
                }
                None => ("url(#hatch)".to_owned(), "no data yet".to_owned()),
            };
            MapRegion {
                code: g.code.clone(),
                name: g.name.clone(),
                d: g.d.clone(),
                fill,
                label,
            }
        })
        .collect();
    let legend = if values.is_empty() {
        Vec::new()
    } else {
        (0..5)
            .map(|i| {
                let a = lo + (hi - lo) * i as f64 / 5.0;
                let b = lo + (hi - lo) * (i + 1) as f64 / 5.0;
                LegendRow {
                    fill: PALETTE[i],
                    label: metric.range_label(a, b),
                }
            })
            .collect()
    };
    let newest = profiles.values().max_by_key(|p| p.computed_at);
    let page = MapPage {
        attribution: s.regions.attribution().unwrap_or("see the region file"),
        metrics: Metric::ALL
            .iter()
            .map(|m| MetricLink {
                key: m.key(),
                title: m.title(),
                current: *m == metric,
            })
            .collect(),
        metric_title: metric.title(),
        metric_help: metric.help(),
        width: s.geometry.width,
        height: s.geometry.height,
        regions,
        legend,
        computed_at: newest.map(|p| when(p.computed_at)),
        window: newest.map(window_text).unwrap_or_default(),
    };
    render(&page)
}

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
}

struct Bar {
    x: String,
    y: String,
    w: String,
    h: String,
    peak: bool,
    label: String,
}

struct Tick {
    x: String,
    y: String,
    label: String,
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
}

fn kwh(v: f64) -> String {
    format!("{v:.2}")
}

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
    let mut ticks: Vec<Tick> = (0..24)
        .step_by(3)
        .map(|h| Tick {
            x: format!("{:.1}", left + (h as f64 + 0.5) * slot),
            y: format!("{}", height - 5),
            label: format!("{h:02}:00"),
        })
        .collect();
    ticks.push(Tick {
        x: "14".into(),
        y: "20".into(),
        label: format!("{top:.2}"),
    });
    Chart {
        width,
        height,
        bars,
        ticks,
    }
}

pub async fn region(
    State(s): State<WebState>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let shape = s.geometry.shape(&code).ok_or_else(ApiError::not_found)?;
    let profiles = profiles_by_region(&s).await?;
    let mine = profiles.get(&code);
    let all_avg = if profiles.is_empty() {
        0.0
    } else {
        profiles
            .values()
            .map(|p| p.figures.avg_daily_kwh)
            .sum::<f64>()
            / profiles.len() as f64
    };
    let empty = ProfileFigures {
        region: code.clone(),
        meters: 0,
        readings: 0,
        avg_daily_kwh: 0.0,
        p50_daily_kwh: 0.0,
        p90_daily_kwh: 0.0,
        weekday_avg_daily_kwh: None,
        weekend_avg_daily_kwh: None,
        hourly_kwh: [0.0; 24],
        peak_hour: 0,
    };
    let figures = mine.map_or(&empty, |p| &p.figures);
    let scale = 270.0 / figures.avg_daily_kwh.max(all_avg).max(1e-9);
    let opt = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), kwh);
    let page = RegionPage {
        attribution: s.regions.attribution().unwrap_or("see the region file"),
        name_short: shape.name.chars().take(18).collect(),
        code: code.clone(),
        name: shape.name.clone(),
        profile: mine.map(|p| ProfileView {
            meters: p.figures.meters,
            readings: p.figures.readings,
            avg: kwh(p.figures.avg_daily_kwh),
            p50: kwh(p.figures.p50_daily_kwh),
            p90: kwh(p.figures.p90_daily_kwh),
            weekday: opt(p.figures.weekday_avg_daily_kwh),
            weekend: opt(p.figures.weekend_avg_daily_kwh),
            peak: format!(
                "{:02}:00–{:02}:00",
                p.figures.peak_hour,
                (p.figures.peak_hour + 1) % 24
            ),
            computed_at: when(p.computed_at),
            window: window_text(p),
            run_id: p.run_id.clone(),
        }),
        chart: load_curve(figures),
        compare: Compare {
            this_w: format!("{:.1}", figures.avg_daily_kwh * scale),
            this_x: format!("{:.1}", 126.0 + figures.avg_daily_kwh * scale),
            all_w: format!("{:.1}", all_avg * scale),
            all_x: format!("{:.1}", 126.0 + all_avg * scale),
            all_label: kwh(all_avg),
        },
        neighbours: shape
            .neighbours
            .iter()
            .filter_map(|c| {
                s.geometry
                    .shape(c)
                    .map(|n| (n.code.clone(), n.name.clone()))
            })
            .collect(),
    };
    render(&page)
}

struct EstimateView {
    daily: String,
    daily_low: String,
    daily_high: String,
    yearly: String,
    yearly_low: String,
    yearly_high: String,
    cost: String,
    cost_low: String,
    cost_high: String,
    price: String,
    explanation: String,
}

#[derive(Template)]
#[template(path = "estimate.html")]
struct EstimatePage<'a> {
    attribution: &'a str,
    regions: Vec<(String, String)>,
    selected: String,
    sizes: Vec<u8>,
    size: u8,
    dwellings: Vec<(&'static str, &'static str)>,
    dwelling: String,
    estimate: Option<EstimateView>,
    message: Option<String>,
}

/// A household's estimated daily kWh: the region's median and p90 daily use scaled by how
/// the household compares with the typical one.
pub struct Estimate {
    pub daily_p50: f64,
    pub daily_p90: f64,
    pub factor: f64,
}

pub fn estimate(f: &ProfileFigures, size: u8, dwelling: Dwelling) -> Estimate {
    let factor = household_factor(size, dwelling);
    Estimate {
        daily_p50: f.p50_daily_kwh * factor,
        daily_p90: f.p90_daily_kwh * factor,
        factor,
    }
}

pub async fn estimator(
    State(s): State<WebState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let bad = |field: &'static str, msg: &str| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", msg.to_owned()).field(field)
    };
    let size: u8 = match q.get("size") {
        None => 2,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| bad("size", "size must be 1 to 5"))?,
    };
    let dwelling: Dwelling = match q.get("dwelling") {
        None => Dwelling::Terraced,
        Some(v) => v.parse().map_err(|e: String| bad("dwelling", &e))?,
    };
    let selected = q.get("region").cloned().unwrap_or_default();
    if !selected.is_empty() && s.geometry.shape(&selected).is_none() {
        return Err(bad("region", "unknown region code"));
    }
    let profiles = profiles_by_region(&s).await?;
    let (estimate, message) = match profiles.get(&selected) {
        _ if selected.is_empty() => (None, None),
        None => (
            None,
            Some("No profile for this borough yet: try again after the next recompute.".to_owned()),
        ),
        Some(p) => {
            let e = estimate(&p.figures, size, dwelling);
            let price = s.unit_price_pence;
            let year = |d: f64| d * 365.0;
            let cost = |d: f64| format!("{:.0}", year(d) * price / 100.0);
            let name = s.geometry.shape(&selected).map_or("", |g| g.name.as_str());
            (
                Some(EstimateView {
                    daily: kwh(e.daily_p50),
                    daily_low: kwh(e.daily_p50),
                    daily_high: kwh(e.daily_p90),
                    yearly: format!("{:.0}", year(e.daily_p50)),
                    yearly_low: format!("{:.0}", year(e.daily_p50)),
                    yearly_high: format!("{:.0}", year(e.daily_p90)),
                    cost: cost(e.daily_p50),
                    cost_low: cost(e.daily_p50),
                    cost_high: cost(e.daily_p90),
                    price: format!("{price:.1}"),
                    explanation: format!(
                        "{name}'s median household uses {} kWh a day and one household-day in ten exceeds {} kWh; \
                         a {}-person {} uses about {:.2}× a typical two-person terraced home, so the range is \
                         the median to the p90 scaled by {:.2}.",
                        kwh(p.figures.p50_daily_kwh),
                        kwh(p.figures.p90_daily_kwh),
                        size,
                        dwelling_name(dwelling).to_lowercase(),
                        e.factor,
                        e.factor
                    ),
                }),
                None,
            )
        }
    };
    let page = EstimatePage {
        attribution: s.regions.attribution().unwrap_or("see the region file"),
        regions: s
            .geometry
            .shapes
            .iter()
            .map(|g| (g.code.clone(), g.name.clone()))
            .collect(),
        selected,
        sizes: (1..=5).collect(),
        size,
        dwellings: Dwelling::ALL
            .iter()
            .map(|d| (d.as_str(), dwelling_name(*d)))
            .collect(),
        dwelling: dwelling.as_str().to_owned(),
        estimate,
        message,
    };
    render(&page)
}

fn dwelling_name(d: Dwelling) -> &'static str {
    match d {
        Dwelling::Flat => "Flat",
        Dwelling::Terraced => "Terraced house",
        Dwelling::SemiDetached => "Semi-detached house",
        Dwelling::Detached => "Detached house",
    }
}
