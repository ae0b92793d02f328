//! `GET /`: the regional energy map, each region coloured by the chosen metric: a figure of
//! the published profiles, or "now", the live layer's last complete half hour against the
//! typical household (`/static/map.js` polls `/api/v1/live` and recolours it in place).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use iot_common::problem::{ApiError, Query};
use serde::Deserialize;
use strum::VariantArray;

use chrono::{DateTime, Utc};
use iot_common::live::SLOT;

use crate::cache::Profiles;
use crate::geometry::MapGeometry;
use crate::live::{BANDS, LiveNow, TZ, band_label, band_of};
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
    metric: Shown,
}

/// What colours the map: a profile figure, or the live "now".
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
enum Shown {
    Profile(Metric),
    Live(Now),
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Now {
    Now,
}

impl Default for Shown {
    fn default() -> Self {
        Shown::Profile(Metric::default())
    }
}

const NOW_TITLE: &str = "Now, against typical";
const NOW_HELP: &str = "Each borough's mean household use in the last complete half hour, \
                        against its typical household at that hour of the day (the published \
                        profile). Updates itself.";

/// What the "now" view adds to the page.
struct LiveView {
    /// The half hour shown, as people read it.
    slot: String,
    /// The bands as JSON (`[[upper, fill], ...]`), for the script that recolours the map.
    bands: String,
    complete_share: String,
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

impl MapRegion {
    fn of(shape: &crate::geometry::Shape, fill: String, label: String) -> Self {
        Self {
            code: shape.code.to_string(),
            name: shape.name.clone(),
            d: shape.d.clone(),
            fill,
            label,
        }
    }
}

struct LegendRow {
    fill: String,
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
    live: Option<LiveView>,
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
    let newest = profiles.values().max_by_key(|p| p.computed_at);
    let mut page = MapPage {
        attribution: s.attribution(),
        metrics: metric_links(q.metric),
        metric_title: NOW_TITLE,
        metric_help: NOW_HELP,
        width: s.geometry.width,
        height: s.geometry.height,
        regions: Vec::new(),
        legend: Vec::new(),
        computed_at: newest.map(|p| when(p.computed_at)),
        window: newest.map(window_text).unwrap_or_default(),
        basis: basis(&total_days(profiles.values())),
        live: None,
    };
    match q.metric {
        Shown::Profile(metric) => {
            let scale = Scale::of(metric, &s.geometry, &profiles);
            page.metric_title = metric.title();
            page.metric_help = metric.help();
            page.regions = coloured_regions(metric, scale.as_ref(), &s.geometry, &profiles);
            page.legend = scale.map_or_else(Vec::new, |scale| legend(metric, &scale));
        }
        Shown::Live(Now::Now) => {
            let parts = s.live_parts().await?;
            let now = parts.inputs(&s.regions, Utc::now()).now_view();
            page.regions = live_regions(&now, &s.geometry);
            page.legend = live_legend();
            page.live = Some(LiveView {
                slot: slot_text(now.slot),
                bands: bands_json(),
                complete_share: format!("{:.0} %", now.complete_share * 100.0),
            });
        }
    }
    respond::page(&page)
}

fn metric_links(current: Shown) -> Vec<MetricLink> {
    Metric::VARIANTS
        .iter()
        .map(|m| MetricLink {
            key: m.as_ref(),
            title: m.title(),
            current: current == Shown::Profile(*m),
        })
        .chain(std::iter::once(MetricLink {
            key: "now",
            title: "Now",
            current: current == Shown::Live(Now::Now),
        }))
        .collect()
}

/// Fills of a region with no live readings, and with too few.
const NO_READINGS: &str = "url(#hatch)";
const INCOMPLETE: &str = "url(#hatch-incomplete)";

/// Every region coloured by its last complete half hour against typical.
fn live_regions(now: &LiveNow, geometry: &MapGeometry) -> Vec<MapRegion> {
    geometry
        .shapes
        .iter()
        .map(|g| {
            let live = now.regions.iter().find(|r| r.code == g.code);
            let (fill, label) = live.map_or_else(
                || (NO_READINGS.to_owned(), "no readings yet".to_owned()),
                |r| {
                    let f = &r.figures;
                    let fill = match f.vs_typical {
                        _ if f.meters == 0 => NO_READINGS.to_owned(),
                        _ if !f.complete => INCOMPLETE.to_owned(),
                        Some(ratio) => BANDS[band_of(ratio)].1.to_owned(),
                        None => NO_READINGS.to_owned(),
                    };
                    (fill, f.label(r.registered_meters))
                },
            );
            MapRegion::of(g, fill, label)
        })
        .collect()
}

fn live_legend() -> Vec<LegendRow> {
    let mut rows: Vec<LegendRow> = (0..BANDS.len())
        .rev()
        .map(|i| LegendRow {
            fill: BANDS[i].1.to_owned(),
            label: band_label(i),
        })
        .collect();
    rows.push(LegendRow {
        fill: INCOMPLETE.to_owned(),
        label: "incomplete: too few meters reported".to_owned(),
    });
    rows
}

/// The bands as the map's script reads them; the last band's bound is open.
fn bands_json() -> String {
    let bands: Vec<(Option<f64>, &str)> = BANDS
        .iter()
        .map(|(upper, fill)| (upper.is_finite().then_some(*upper), *fill))
        .collect();
    serde_json::to_string(&bands).unwrap_or_default()
}

/// "10:00–10:30 GMT, 6 Dec 2026": a half hour in London time.
fn slot_text(slot: DateTime<Utc>) -> String {
    let start = slot.with_timezone(&TZ);
    let end = (slot + SLOT).with_timezone(&TZ);
    format!(
        "{}–{} {}, {}",
        start.format("%H:%M"),
        end.format("%H:%M"),
        end.format("%Z"),
        start.format("%-d %b %Y")
    )
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
            MapRegion::of(g, fill, label)
        })
        .collect()
}

fn legend(metric: Metric, scale: &Scale) -> Vec<LegendRow> {
    PALETTE
        .iter()
        .enumerate()
        .map(|(i, fill)| LegendRow {
            fill: (*fill).to_owned(),
            label: metric.range_label(scale.bound(i), scale.bound(i + 1)),
        })
        .collect()
}
