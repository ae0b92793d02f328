//! What the map can be coloured by, and the figures behind it: the map page and the JSON
//! API share them.

use iot_common::ProfileFigures;
use serde::Deserialize;
use strum::VariantArray;

/// A figure of a region's profile that the map shows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, strum::AsRefStr, VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Metric {
    #[default]
    Mean,
    P90,
    Evening,
}

impl Metric {
    pub fn title(self) -> &'static str {
        match self {
            Metric::Mean => "Mean daily use",
            Metric::P90 => "p90 daily use",
            Metric::Evening => "Evening-peak share",
        }
    }

    pub fn help(self) -> &'static str {
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

    pub fn label(self, v: f64) -> String {
        match self {
            Metric::Evening => format!("{:.1} %", v * 100.0),
            _ => format!("{v:.2} kWh/day"),
        }
    }

    pub fn range_label(self, a: f64, b: f64) -> String {
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
