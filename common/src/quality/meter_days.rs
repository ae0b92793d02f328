//! One meter's local days through VEE, from its stored readings: what a household's page and
//! the analysts' `meter_days` table show. The profile job applies the same rules
//! ([`validate`]) to every meter at once in its own accumulator, with the same days: from
//! the meter's first reading to the window's last day.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::{DaySlots, Quality, Rules, SLOT_S, Verdict, validate};
use crate::domain::Reading;
use crate::local_time::{LocalClock, LocalDay};

const DAY_S: i64 = 86_400;

/// What VEE made of one of a meter's local days.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterDay {
    pub day: NaiveDate,
    /// The local midnight starting the day.
    pub start: DateTime<Utc>,
    /// Readings stored for the day, and their sum.
    pub readings: u32,
    pub raw_kwh: f64,
    /// Half-hour slots the day has: 46, 48 or 50.
    pub expected: u8,
    pub verdict: Verdict,
}

impl MeterDay {
    /// Each estimated interval's start, kWh and method, in slot order.
    pub fn estimated(&self) -> impl Iterator<Item = (DateTime<Utc>, f64, Quality)> + '_ {
        let mut estimates = self.verdict.estimates.clone();
        estimates.sort_by_key(|e| e.slot);
        estimates
            .into_iter()
            .map(|e| (self.slot_start(e.slot), e.kwh, e.quality))
    }

    /// The questionable (spiked) interval's start.
    pub fn questionable(&self) -> Option<DateTime<Utc>> {
        self.verdict.questionable.map(|k| self.slot_start(k))
    }

    fn slot_start(&self, slot: u8) -> DateTime<Utc> {
        self.start + chrono::Duration::seconds(i64::from(slot) * SLOT_S)
    }
}

fn local_day(d: NaiveDate) -> LocalDay {
    (d - NaiveDate::default()).num_days() as LocalDay
}

fn date(day: LocalDay) -> NaiveDate {
    NaiveDate::default() + chrono::Days::new(u64::try_from(day.max(0)).unwrap_or(0))
}

/// One meter's `readings` (any order) through VEE over its local days in `tz` from `from`
/// to `to`, inclusive; days before its first reading in that range are not its days.
/// Readings outside the range are left out.
pub fn meter_days(
    readings: &[Reading],
    from: NaiveDate,
    to: NaiveDate,
    tz: Tz,
    rules: &Rules,
) -> Vec<MeterDay> {
    let (first, last) = (local_day(from), local_day(to));
    if last < first {
        return Vec::new();
    }
    let mut clock = LocalClock::new(tz);
    clock.cover(
        i64::from(first) * DAY_S - DAY_S,
        (i64::from(last) + 2) * DAY_S,
    );
    let n = (last - first + 1) as usize;
    let starts: Vec<i64> = (first..=last + 1).map(|d| clock.day_start_utc(d)).collect();
    let mut slots = vec![DaySlots::default(); n];
    let mut raw = vec![0.0; n];
    let mut counts = vec![0u32; n];
    for r in readings {
        let ts = r.ts.timestamp();
        let (day, _) = clock.day_hour(ts);
        if !(first..=last).contains(&day) {
            continue;
        }
        let i = (day - first) as usize;
        slots[i].add(((ts - starts[i]) / SLOT_S) as usize, r.kwh);
        raw[i] += r.kwh;
        counts[i] += 1;
    }
    let Some(own) = counts.iter().position(|c| *c > 0) else {
        return Vec::new();
    };
    let expected: Vec<u8> = (own..n)
        .map(|i| ((starts[i + 1] - starts[i]) / SLOT_S) as u8)
        .collect();
    let days: Vec<Option<&DaySlots>> = (own..n)
        .map(|i| (counts[i] > 0).then_some(&slots[i]))
        .collect();
    validate(&days, &expected, &raw[own..], rules)
        .into_iter()
        .enumerate()
        .map(|(k, verdict)| {
            let i = own + k;
            MeterDay {
                day: date(first + i as LocalDay),
                start: DateTime::from_timestamp(starts[i], 0).unwrap_or_default(),
                readings: counts[i],
                raw_kwh: raw[i],
                expected: expected[k],
                verdict,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::Flags;

    fn readings(from: &str, slots: usize, skip: &[usize]) -> Vec<Reading> {
        let start: DateTime<Utc> = from.parse().unwrap_or_else(|e| panic!("{e}"));
        (0..slots)
            .filter(|k| !skip.contains(k))
            .map(|k| Reading {
                meter_id: "m1".parse().unwrap_or_else(|e| panic!("{e}")),
                ts: start + chrono::Duration::seconds(k as i64 * SLOT_S),
                kwh: 0.1 + (k % 7) as f64 * 0.05,
                interval_s: 1800,
            })
            .collect()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_short_gap_is_interpolated_at_its_local_times_and_the_clocks_change_counts() {
        // London, Sunday 2026-03-29 has 46 slots; three days from the Saturday, midnight
        // UTC = midnight local before the change. Slots 50..53 (the Sunday 02:00-03:30 BST
        // = 01:00-02:30 UTC) are missing.
        let rs = readings("2026-03-28T00:00:00Z", 48 + 46 + 48, &[50, 51, 52]);
        let days = meter_days(
            &rs,
            d("2026-03-27"),
            d("2026-03-30"),
            chrono_tz::Europe::London,
            &Rules::default(),
        );
        let expected: Vec<u8> = days.iter().map(|m| m.expected).collect();
        assert_eq!(
            expected,
            [48, 46, 48],
            "the days before the first reading are not its days"
        );
        let sunday = &days[1];
        assert!(sunday.verdict.flags.has(Flags::INTERPOLATED), "{sunday:?}");
        assert_eq!(sunday.readings, 43);
        let at: Vec<String> = sunday.estimated().map(|(t, _, _)| t.to_rfc3339()).collect();
        assert_eq!(
            at,
            [
                "2026-03-29T01:00:00+00:00",
                "2026-03-29T01:30:00+00:00",
                "2026-03-29T02:00:00+00:00"
            ]
        );
        assert!(!days[0].verdict.estimated() && !days[2].verdict.estimated());
    }
}
