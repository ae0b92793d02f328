//! UTC instants to local days and hours, fast: a time zone's UTC offset only changes at a few
//! transitions a year, so the offsets are found once per range (with chrono-tz) and each
//! instant is a binary search in that short table.

use chrono::{Offset, TimeZone};
use chrono_tz::Tz;

const DAY_S: i64 = 86_400;

/// A local calendar day, as days since 1970-01-01.
pub type LocalDay = i32;

#[derive(Debug, Clone)]
pub struct LocalClock {
    tz: Tz,
    /// `(first UTC second, offset in seconds)`, sorted; covers `covered`.
    spans: Vec<(i64, i32)>,
    covered: (i64, i64),
}

impl LocalClock {
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            spans: Vec::new(),
            covered: (i64::MAX, i64::MIN),
        }
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    fn offset_at(&self, utc: i64) -> i32 {
        match chrono::DateTime::from_timestamp(utc, 0) {
            Some(t) => self
                .tz
                .offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
            None => 0,
        }
    }

    /// Makes `[lo, hi]` (UTC seconds) answerable, finding every offset change inside it.
    pub fn cover(&mut self, lo: i64, hi: i64) {
        if lo >= self.covered.0 && hi <= self.covered.1 {
            return;
        }
        let lo = lo.min(self.covered.0).saturating_sub(DAY_S);
        let hi = hi.max(self.covered.1).saturating_add(DAY_S);
        let mut spans = vec![(i64::MIN, self.offset_at(lo))];
        let mut t = lo;
        while t < hi {
            let next = (t + DAY_S).min(hi);
            let (a, b) = (self.offset_at(t), self.offset_at(next));
            if a != b {
                // Bisect to the first second of the new offset.
                let (mut l, mut h) = (t, next);
                while h - l > 1 {
                    let m = l + (h - l) / 2;
                    if self.offset_at(m) == a { l = m } else { h = m }
                }
                spans.push((h, b));
            }
            t = next;
        }
        self.spans = spans;
        self.covered = (lo, hi);
    }

    /// UTC offset at `utc`; `cover` must have been called for it.
    #[inline]
    pub fn offset(&self, utc: i64) -> i32 {
        let i = self.spans.partition_point(|(start, _)| *start <= utc);
        self.spans[i.saturating_sub(1)].1
    }

    /// The local day and hour (0..24) of a UTC instant.
    #[inline]
    pub fn day_hour(&self, utc: i64) -> (LocalDay, u8) {
        let local = utc + i64::from(self.offset(utc));
        let day = local.div_euclid(DAY_S);
        let hour = local.rem_euclid(DAY_S) / 3600;
        (day as LocalDay, hour as u8)
    }

    /// UTC second at which local day `day` starts (its first existing local instant).
    pub fn day_start_utc(&self, day: LocalDay) -> i64 {
        let midnight = i64::from(day) * DAY_S;
        // Try the offsets in force around that midnight; the smallest UTC instant that maps
        // into the day is its start.
        let mut best = i64::MAX;
        for probe in [midnight - DAY_S, midnight, midnight + DAY_S] {
            let off = i64::from(self.offset_at(probe));
            let candidate = midnight - off;
            if i64::from(self.offset_at(candidate)) == off {
                best = best.min(candidate);
            }
        }
        if best == i64::MAX { midnight } else { best }
    }
}

/// ISO day of week of a local day: Monday 1 … Sunday 7 (1970-01-01 was a Thursday).
#[inline]
pub fn iso_weekday(day: LocalDay) -> u8 {
    ((i64::from(day) + 3).rem_euclid(7) + 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};

    fn utc(s: &str) -> i64 {
        s.parse::<chrono::DateTime<Utc>>()
            .map(|t| t.timestamp())
            .unwrap_or(0)
    }

    fn day(y: i32, m: u32, d: u32) -> LocalDay {
        NaiveDate::from_ymd_opt(y, m, d)
            .map(|x| (x - NaiveDate::default()).num_days() as LocalDay)
            .unwrap_or(0)
    }

    fn london(lo: &str, hi: &str) -> LocalClock {
        let mut c = LocalClock::new(chrono_tz::Europe::London);
        c.cover(utc(lo), utc(hi));
        c
    }

    #[test]
    fn spring_forward_skips_local_one_oclock() {
        // 2026-03-29: at 01:00 UTC London goes from GMT to BST.
        let c = london("2026-03-01T00:00:00Z", "2026-04-30T00:00:00Z");
        let d = day(2026, 3, 29);
        assert_eq!(c.day_hour(utc("2026-03-29T00:30:00Z")), (d, 0));
        assert_eq!(c.day_hour(utc("2026-03-29T01:00:00Z")), (d, 2));
        assert_eq!(c.day_hour(utc("2026-03-29T22:59:59Z")), (d, 23));
        assert_eq!(c.day_hour(utc("2026-03-29T23:00:00Z")), (d + 1, 0));
        assert_eq!(c.day_start_utc(d + 1), utc("2026-03-29T23:00:00Z"));
        assert_eq!(c.day_start_utc(d), utc("2026-03-29T00:00:00Z"));
    }

    #[test]
    fn fall_back_repeats_local_one_oclock() {
        // 2026-10-25: at 01:00 UTC London goes from BST back to GMT.
        let c = london("2026-10-01T00:00:00Z", "2026-11-30T00:00:00Z");
        let d = day(2026, 10, 25);
        assert_eq!(c.day_hour(utc("2026-10-24T23:00:00Z")), (d, 0));
        assert_eq!(c.day_hour(utc("2026-10-25T00:30:00Z")), (d, 1));
        assert_eq!(c.day_hour(utc("2026-10-25T01:30:00Z")), (d, 1));
        assert_eq!(c.day_hour(utc("2026-10-25T23:30:00Z")), (d, 23));
        assert_eq!(c.day_hour(utc("2026-10-26T00:00:00Z")), (d + 1, 0));
        assert_eq!(c.day_start_utc(d), utc("2026-10-24T23:00:00Z"));
    }

    #[test]
    fn agrees_with_chrono_tz_everywhere() {
        let tz = chrono_tz::Europe::London;
        let (lo, hi) = (utc("2024-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"));
        let mut c = LocalClock::new(tz);
        c.cover(lo, hi);
        let mut t = lo;
        while t < hi {
            let local = chrono::DateTime::from_timestamp(t, 0)
                .map(|x| x.with_timezone(&tz).naive_local())
                .unwrap_or_default();
            let want = (
                (local.date() - NaiveDate::default()).num_days() as LocalDay,
                chrono::Timelike::hour(&local) as u8,
            );
            assert_eq!(c.day_hour(t), want, "at {t}");
            t += 1800 * 7 + 13;
        }
    }

    #[test]
    fn weekdays() {
        assert_eq!(iso_weekday(0), 4); // Thursday
        assert_eq!(iso_weekday(day(2026, 11, 21)), 6); // Saturday
        assert_eq!(iso_weekday(day(2026, 11, 23)), 1); // Monday
    }
}
