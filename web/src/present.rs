//! How pages print figures and dates: kWh to two places, days and times in London time.

use chrono::{DateTime, Utc};
use iot_common::RegionProfile;

pub fn kwh(v: f64) -> String {
    format!("{v:.2}")
}

pub fn day(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::London)
        .format("%-d %b %Y")
        .to_string()
}

pub fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::London)
        .format("%-d %b %Y %H:%M %Z")
        .to_string()
}

/// The days a profile covers, first to last, as people read them.
pub fn window_text(p: &RegionProfile) -> String {
    window_days(p.window_from, p.window_to)
}

/// The days of `[from, to)`, first to last, as people read them.
pub fn window_days(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let last = to - chrono::Duration::seconds(1);
    format!("{} to {}", day(from), day(last))
}
