//! What energy costs a household, from the figures the platform has: a meter's own days
//! priced on each tariff, a typical household's day (a borough's median or p90 day on the
//! borough's hourly curve) priced for the estimator, and the rule for an unusual week.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use iot_common::domain::Reading;
use iot_common::quality::MeterDay;

use crate::tariffs::{Bill, Tariff};

/// The energy a meter's days are billed on, as a supplier bills a smart meter: each stored
/// reading as the meter sent it (an implausible one too: it is the meter's reading), and
/// VEE's estimate for each half hour that has no reading.
pub fn billed_intervals(readings: &[Reading], days: &[MeterDay]) -> Vec<(DateTime<Utc>, f64)> {
    let mut intervals: Vec<(DateTime<Utc>, f64)> = readings.iter().map(|r| (r.ts, r.kwh)).collect();
    for d in days {
        let questionable = d.questionable();
        intervals.extend(
            d.estimated()
                .filter(|e| Some(e.0) != questionable)
                .map(|e| (e.0, e.1)),
        );
    }
    intervals
}

/// A day of `daily_kwh` spread over the local day's half hours as `hourly` (kWh in each
/// local hour, any scale) shapes it; evenly when the curve is all zero.
pub fn typical_day(daily_kwh: f64, hourly: &[f64; 24]) -> Vec<(u16, f64)> {
    let total: f64 = hourly.iter().filter(|v| v.is_finite() && **v > 0.0).sum();
    (0..48u16)
        .map(|slot| {
            let h = hourly[usize::from(slot / 2)];
            let share = if total > 0.0 && h.is_finite() && h > 0.0 {
                h / total
            } else if total > 0.0 {
                0.0
            } else {
                1.0 / 24.0
            };
            (slot * 30, daily_kwh * share / 2.0)
        })
        .collect()
}

/// `days` days of the typical day of `daily_kwh` on `hourly`'s curve, priced on `tariff`.
pub fn typical_bill(tariff: &Tariff, daily_kwh: f64, hourly: &[f64; 24], days: u32) -> Bill {
    let n = f64::from(days);
    tariff.bill_by_clock(
        typical_day(daily_kwh, hourly)
            .into_iter()
            .map(|(m, kwh)| (m, kwh * n)),
        days,
    )
}

/// An unusual week is one whose mean day is more than this many times the household's usual
/// (the mean of its previous four weeks)…
pub const UNUSUAL_RATIO: f64 = 1.3;
/// …and above the borough's p90 day. The usual needs this many days kept in the four weeks…
pub const USUAL_MIN_DAYS: usize = 14;
/// …and the week this many.
pub const WEEK_MIN_DAYS: usize = 5;

/// A week well above the household's usual.
#[derive(Debug, Clone, PartialEq)]
pub struct UnusualWeek {
    /// The week's mean day and the usual one, kWh.
    pub mean: f64,
    pub usual: f64,
    /// The week's days above the usual by more than [`UNUSUAL_RATIO`], with their kWh.
    pub days: Vec<(NaiveDate, f64)>,
}

/// Whether the 7 days to `last` (inclusive) are unusual for a household whose kept days'
/// kWh are `days`, in a borough whose p90 day is `p90` (no borough figures: no verdict).
pub fn unusual_week(
    days: &BTreeMap<NaiveDate, f64>,
    last: NaiveDate,
    p90: Option<f64>,
) -> Option<UnusualWeek> {
    let p90 = p90?;
    let week_from = last - Days::new(6);
    let usual_from = week_from - Days::new(28);
    let week: Vec<(NaiveDate, f64)> = days
        .range(week_from..=last)
        .map(|(d, v)| (*d, *v))
        .collect();
    let before: Vec<f64> = days.range(usual_from..week_from).map(|(_, v)| *v).collect();
    if week.len() < WEEK_MIN_DAYS || before.len() < USUAL_MIN_DAYS {
        return None;
    }
    let mean = week.iter().map(|(_, v)| v).sum::<f64>() / week.len() as f64;
    let usual = before.iter().sum::<f64>() / before.len() as f64;
    (mean > UNUSUAL_RATIO * usual && mean > p90).then(|| UnusualWeek {
        mean,
        usual,
        days: week
            .into_iter()
            .filter(|(_, v)| *v > UNUSUAL_RATIO * usual)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn a_typical_day_keeps_its_kwh_and_its_shape() {
        let mut hourly = [0.1; 24];
        hourly[18] = 0.7;
        let day = typical_day(10.0, &hourly);
        assert_eq!(day.len(), 48);
        let sum: f64 = day.iter().map(|(_, k)| k).sum();
        assert!((sum - 10.0).abs() < 1e-9);
        assert_eq!(day[36].0, 18 * 60);
        assert!((day[36].1 - 10.0 * 0.7 / 3.0 / 2.0).abs() < 1e-12);
        let flat = typical_day(4.8, &[0.0; 24]);
        assert!(flat.iter().all(|(_, k)| (k - 0.1).abs() < 1e-12));
    }

    #[test]
    fn a_week_is_unusual_only_above_its_usual_by_30_percent_and_above_the_borough_p90() {
        let last = d("2026-11-30");
        let mut days: BTreeMap<NaiveDate, f64> =
            (7..35).map(|k| (last - Days::new(k), 8.0)).collect();
        for k in 0..7 {
            days.insert(last - Days::new(k), if k < 3 { 14.0 } else { 9.0 });
        }
        // The week: (3 × 14 + 4 × 9) / 7 = 11.14 kWh, against 8: 39 % above.
        let w = unusual_week(&days, last, Some(11.0)).unwrap_or_else(|| panic!("unusual"));
        assert!((w.usual - 8.0).abs() < 1e-12);
        assert_eq!(
            w.days.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
            vec![d("2026-11-28"), d("2026-11-29"), d("2026-11-30")],
            "the days above 10.4 kWh"
        );
        assert_eq!(
            unusual_week(&days, last, Some(12.0)),
            None,
            "under the borough's p90"
        );
        assert_eq!(unusual_week(&days, last, None), None, "no borough figures");
        for k in 0..7 {
            days.insert(last - Days::new(k), 10.0);
        }
        assert_eq!(unusual_week(&days, last, Some(5.0)), None, "25 % above");
        // Twice the usual, but only 13 days to tell the usual from.
        let few: BTreeMap<NaiveDate, f64> = (0..20)
            .map(|k| (last - Days::new(k), if k < 7 { 20.0 } else { 8.0 }))
            .collect();
        assert_eq!(
            unusual_week(&few, last, Some(5.0)),
            None,
            "too few usual days"
        );
    }
}
