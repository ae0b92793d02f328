//! `GET /`: the regional energy map, each region coloured by the chosen metric.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use iot_common::problem::{ApiError, Query};
use serde::Deserialize;
use strum::VariantArray;

use crate::cache::Profiles;
use crate::geometry::MapGeometry;
use crate::metric::Metric;
use crate::present::{basis, total_days, when, window_text};
use crate::respond;
use crate::state::WebState;

/// ColorBrewer "Oranges", five classes: light is low use, dark is high.
const PALETTE: [&str; 5] = ["#feedde", "#fdbe85", "#fd8d3c", "#e6550d", "#a63603"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapQuery {
    #[serde(default)]
    metric: Metric,
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
    /// How many household-days the map rests on, and how many were estimated.
    basis: Option<String>,
}

/// The lowest and highest value of `metric` over the regions that have a profile.
struct Scale {
    lo: f64,
    hi: f64,
}

impl Scale {
    fn of(metric: Metric, geometry: &MapGeometry, profiles: &Profiles) -> Option<Self> {
        let values: Vec<f64> = geometry
            .shapes
            .iter()
            .filter_map(|g| profiles.get(g.code.as_str()))
            .map(|p| metric.value(&p.figures))
            .collect();
        let lo = values.iter().copied().reduce(f64::min)?;
        let hi = values.iter().copied().reduce(f64::max)?;
        Some(Self { lo, hi })
    }

    /// The palette class of `v`: five equal bands from `lo` to `hi`.
    fn class_of(&self, v: f64) -> usize {
        if self.hi <= self.lo {
            return 2;
        }
        (((v - self.lo) / (self.hi - self.lo) * 5.0).floor() as usize).min(4)
    }

    fn bound(&self, i: usize) -> f64 {
        self.lo + (self.hi - self.lo) * i as f64 / 5.0
    }
}

pub async fn map(
    State(s): State<WebState>,
    Query(q): Query<MapQuery>,
) -> Result<Response, ApiError> {
    let profiles = s.current_profiles().await?;
    let scale = Scale::of(q.metric, &s.geometry, &profiles);
    let newest = profiles.values().max_by_key(|p| p.computed_at);
    respond::page(&MapPage {
        attribution: s.attribution(),
        metrics: metric_links(q.metric),
        metric_title: q.metric.title(),
        metric_help: q.metric.help(),
        width: s.geometry.width,
        height: s.geometry.height,
        regions: coloured_regions(q.metric, scale.as_ref(), &s.geometry, &profiles),
        legend: scale.map_or_else(Vec::new, |scale| legend(q.metric, &scale)),
        computed_at: newest.map(|p| when(p.computed_at)),
        window: newest.map(window_text).unwrap_or_default(),
        basis: basis(&total_days(profiles.values())),
    })
}

fn metric_links(current: Metric) -> Vec<MetricLink> {
    Metric::VARIANTS
        .iter()
        .map(|m| MetricLink {
            key: m.as_ref(),
            title: m.title(),
            current: *m == current,
        })
        .collect()
}

/// Every region with its fill and label; regions without a profile are hatched.
fn coloured_regions(
    metric: Metric,
    scale: Option<&Scale>,
    geometry: &MapGeometry,
    profiles: &Profiles,
) -> Vec<MapRegion> {
    geometry
        .shapes
        .iter()
        .map(|g| {
            let shown = profiles.get(g.code.as_str()).zip(scale).map(|(p, scale)| {
                let v = metric.value(&p.figures);
                (PALETTE[scale.class_of(v)].to_owned(), metric.label(v))
            });
            let (fill, label) =
                shown.unwrap_or_else(|| ("url(#hatch)".to_owned(), "no data yet".to_owned()));
            MapRegion {
                code: g.code.to_string(),
                name: g.name.clone(),
                d: g.d.clone(),
                fill,
                label,
            }
        })
        .collect()
}

fn legend(metric: Metric, scale: &Scale) -> Vec<LegendRow> {
    PALETTE
        .iter()
        .enumerate()
        .map(|(i, fill)| LegendRow {
            fill,
            label: metric.range_label(scale.bound(i), scale.bound(i + 1)),
        })
        .collect()
}
