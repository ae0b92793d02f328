//! How pages print figures and dates: kWh to two places, days and times in London time.

use chrono::{DateTime, Utc};
use iot_common::RegionProfile;
use iot_common::domain::MeterDayCounts;

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

/// A count with thousands separated: 8,412.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What figures rest on: "based on 8,412 household-days, 3 % estimated", with the days left
/// out when there were any; `None` for profiles computed before validation counted days.
pub fn basis(days: &MeterDayCounts) -> Option<String> {
    let share = days.estimated_share()?;
    let mut text = format!(
        "based on {} household-days, {} % estimated",
        count(days.kept()),
        percent(share)
    );
    if days.excluded > 0 {
        text.push_str(&format!(
            "; {} left out for missing readings",
            count(days.excluded)
        ));
    }
    Some(text)
}

/// A share as a whole percentage, or to one place below 1 % so a few estimates do not
/// read as none.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p > 0.0 && p < 1.0 {
        format!("{p:.1}")
    } else {
        format!("{p:.0}")
    }
}

/// The counts of several profiles together.
pub fn total_days<'a>(profiles: impl IntoIterator<Item = &'a RegionProfile>) -> MeterDayCounts {
    profiles
        .into_iter()
        .fold(MeterDayCounts::default(), |mut sum, p| {
            let d = p.figures.meter_days;
            sum.complete += d.complete;
            sum.estimated += d.estimated;
            sum.excluded += d.excluded;
            sum
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_the_basis_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(8412), "8,412");
        assert_eq!(count(1_234_567), "1,234,567");
        let days = MeterDayCounts {
            complete: 8160,
            estimated: 252,
            excluded: 31,
        };
        assert_eq!(
            basis(&days).as_deref(),
            Some("based on 8,412 household-days, 3 % estimated; 31 left out for missing readings")
        );
        assert_eq!(basis(&MeterDayCounts::default()), None);
        let few = MeterDayCounts {
            complete: 1000,
            estimated: 2,
            excluded: 0,
        };
        assert_eq!(
            basis(&few).as_deref(),
            Some("based on 1,002 household-days, 0.2 % estimated")
        );
    }
}
