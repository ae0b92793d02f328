//! The load model of one household: how much energy it uses in each half hour.
//!
//! A day's energy is the household's annual use / 365, scaled by season (winter above
//! summer), weekday or weekend and a day-to-day wobble; it is spread over the day by a load
//! shape with a night base load and morning and evening peaks (later, flatter mornings at
//! weekends), in the region's local time, with per-interval noise for appliances switching on
//! and off. Annual use is 2,700 kWh for a typical household, scaled by household size,
//! dwelling type, region and a lognormal spread between otherwise similar homes.

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use iot_common::domain::{Dwelling, MeterId, RegionCode, household_factor};
use rand::rngs::Xoshiro256PlusPlus as SeededRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Gamma, LogNormal};

/// Annual kWh of the median household (Ofgem's typical domestic consumption value is
/// 2,700 kWh of electricity a year).
pub const TYPICAL_ANNUAL_KWH: f64 = 2_700.0;
/// Spread of annual use between similar households (σ of the log).
const SPREAD_SIGMA: f64 = 0.35;

/// What makes one household's use its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Household {
    pub meter_id: MeterId,
    pub region: RegionCode,
    pub lat: f64,
    pub lon: f64,
    pub size: u8,
    pub dwelling: Dwelling,
    /// Expected kWh over a year.
    pub annual_kwh: f64,
    /// Seeds this household's noise: the same seed gives the same readings.
    pub seed: u64,
}

/// A region's own level, from 0.85 to 1.15, fixed by its code so regions differ the same
/// way on every run.
pub fn region_factor(code: &str) -> f64 {
    let h = code.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    0.85 + 0.30 * (splitmix(h) % 10_000) as f64 / 10_000.0
}

/// Draws a household's size and dwelling (a London-like mix) and its annual use.
pub fn draw_household(
    rng: &mut SeededRng,
    meter_id: MeterId,
    region: &RegionCode,
    lat: f64,
    lon: f64,
) -> Household {
    let size = match rng.random_range(0..100u32) {
        0..30 => 1,
        30..64 => 2,
        64..80 => 3,
        80..93 => 4,
        _ => 5,
    };
    let dwelling = match rng.random_range(0..100u32) {
        0..50 => Dwelling::Flat,
        50..75 => Dwelling::Terraced,
        75..90 => Dwelling::SemiDetached,
        _ => Dwelling::Detached,
    };
    let spread = LogNormal::new(0.0, SPREAD_SIGMA).map_or(1.0, |d| d.sample(rng));
    // Relative to the median household (2 people, a terraced house), which keeps the
    // median at TYPICAL_ANNUAL_KWH.
    let annual_kwh =
        TYPICAL_ANNUAL_KWH * household_factor(size, dwelling) * region_factor(region) * spread;
    Household {
        meter_id,
        region: region.clone(),
        lat,
        lon,
        size,
        dwelling,
        annual_kwh,
        seed: rng.random(),
    }
}

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn bump(h: f64, centre: f64, width: f64) -> f64 {
    let d = h - centre;
    (-(d * d) / (2.0 * width * width)).exp()
}

/// Relative demand at local hour `h` (0 ≤ h < 24).
fn shape(h: f64, weekend: bool) -> f64 {
    let base = 0.32;
    if weekend {
        base + 0.75 * bump(h, 9.5, 1.6) + 0.55 * bump(h, 13.5, 2.2) + 1.35 * bump(h, 18.5, 1.8)
    } else {
        base + 0.85 * bump(h, 7.4, 0.9) + 0.22 * bump(h, 13.0, 2.0) + 1.55 * bump(h, 19.0, 1.6)
    }
}

/// Mean of `shape` over a day, so that a day's slots share its energy exactly.
fn shape_mean(weekend: bool) -> f64 {
    (0..96)
        .map(|q| shape(q as f64 / 4.0 + 0.125, weekend))
        .sum::<f64>()
        / 96.0
}

/// Winter above summer: +22 % in mid-January, −22 % in mid-July.
fn season(day_of_year: u32) -> f64 {
    1.0 + 0.22 * (2.0 * std::f64::consts::PI * (f64::from(day_of_year) - 15.0) / 365.25).cos()
}

impl Household {
    /// Energy used in the interval starting at `ts` (UTC), in the household's local time zone.
    pub fn kwh(&self, ts: DateTime<Utc>, interval_s: u32, tz: Tz) -> f64 {
        let local = ts.with_timezone(&tz);
        let weekend = matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
        let mid_h = f64::from(local.hour())
            + f64::from(local.minute()) / 60.0
            + f64::from(interval_s) / 7200.0;
        let day_key = i64::from(local.num_days_from_ce());
        let mut day_rng = SeededRng::seed_from_u64(splitmix(self.seed ^ splitmix(day_key as u64)));
        let day_wobble = LogNormal::new(0.0, 0.15).map_or(1.0, |d| d.sample(&mut day_rng));
        let weekend_factor = if weekend { 1.08 } else { 1.0 };
        let daily =
            self.annual_kwh / 365.25 * season(local.ordinal()) * weekend_factor * day_wobble;
        let mut slot_rng = SeededRng::seed_from_u64(splitmix(
            self.seed ^ splitmix(ts.timestamp() as u64 ^ 0x5151),
        ));
        let noise = Gamma::new(5.0, 0.2).map_or(1.0, |d| d.sample(&mut slot_rng));
        let kwh = daily * f64::from(interval_s) / 86_400.0 * shape(mid_h, weekend)
            / shape_mean(weekend)
            * noise;
        // Meters report to the watt-hour.
        (kwh * 1000.0).round() / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn fleet(n: usize) -> Vec<Household> {
        let mut rng = SeededRng::seed_from_u64(7);
        (0..n)
            .map(|i| {
                draw_household(
                    &mut rng,
                    format!("M{i}").parse().unwrap(),
                    &format!("R{}", i % 33).parse().unwrap(),
                    51.5,
                    -0.1,
                )
            })
            .collect()
    }

    fn year_kwh(h: &Household) -> f64 {
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        (0..365 * 48)
            .map(|s| {
                h.kwh(
                    start + Duration::minutes(30 * s),
                    1800,
                    chrono_tz::Europe::London,
                )
            })
            .sum()
    }

    #[test]
    fn annual_use_centres_near_2700_with_a_realistic_spread() {
        let mut annual: Vec<f64> = fleet(120).iter().map(year_kwh).collect();
        annual.sort_by(f64::total_cmp);
        let median = annual[annual.len() / 2];
        let p10 = annual[annual.len() / 10];
        let p90 = annual[annual.len() * 9 / 10];
        assert!((2_300.0..3_100.0).contains(&median), "median {median}");
        assert!(p90 / p10 > 2.0 && p90 / p10 < 5.0, "p10 {p10} p90 {p90}");
    }

    #[test]
    fn evenings_peak_nights_are_low_winter_beats_summer() {
        let hh = fleet(50);
        let tz = chrono_tz::Europe::London;
        let mean_at = |y, m, d, h| -> f64 {
            let t = Utc
                .with_ymd_and_hms(y, m, d, h, 0, 0)
                .single()
                .unwrap_or_default();
            (0..4)
                .map(|w| {
                    hh.iter()
                        .map(|x| x.kwh(t + Duration::days(7 * w), 1800, tz))
                        .sum::<f64>()
                })
                .sum()
        };
        // 2025-01-07 is a Tuesday; London is on UTC in January.
        let evening = mean_at(2025, 1, 7, 19);
        let night = mean_at(2025, 1, 7, 3);
        assert!(evening > 2.5 * night, "evening {evening} night {night}");
        let winter: f64 = (0..24).map(|h| mean_at(2025, 1, 7, h)).sum();
        let summer: f64 = (0..24).map(|h| mean_at(2025, 7, 8, h)).sum();
        assert!(winter > 1.25 * summer, "winter {winter} summer {summer}");
    }

    #[test]
    fn readings_are_deterministic_and_physical() {
        let (a, b) = (fleet(5), fleet(5));
        assert_eq!(a, b);
        let t = Utc
            .with_ymd_and_hms(2026, 3, 29, 0, 30, 0)
            .single()
            .unwrap_or_default();
        for (h, twin) in a.iter().zip(&b) {
            for s in 0..96 {
                let ts = t + Duration::minutes(30 * s);
                let k = h.kwh(ts, 1800, chrono_tz::Europe::London);
                assert_eq!(k, twin.kwh(ts, 1800, chrono_tz::Europe::London));
                assert!(k.is_finite() && k >= 0.0 && k <= iot_common::domain::max_kwh(1800));
            }
        }
    }

    #[test]
    fn regions_differ_but_stay_within_bounds() {
        let f: Vec<f64> = (1..=33)
            .map(|i| region_factor(&format!("E09{i:06}")))
            .collect();
        assert!(f.iter().all(|x| (0.85..=1.15).contains(x)));
        let (lo, hi) = f
            .iter()
            .fold((2.0_f64, 0.0_f64), |(l, h), x| (l.min(*x), h.max(*x)));
        assert!(hi - lo > 0.1, "regions should differ: {lo}..{hi}");
    }
}
