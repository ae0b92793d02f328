//! Validation, estimation and editing (VEE) of meter-days, as meter-data-management systems
//! run it before any figure is used. The rules (docs/analytics.md, "Data quality"):
//!
//! - A local day has 46, 48 or 50 half-hour **slots** (DST); a reading fills the slot its
//!   start falls in. A day is **complete** when every slot has a reading.
//! - **Spike**: the day's highest interval is more than [`Rules::spike_ratio`] times its third
//!   highest and at least [`Rules::spike_floor_kwh`]. That interval is *questionable*: kept as
//!   stored, left out of the profile, and estimated like a missing one.
//! - **Estimation** of a run of missing (or questionable) slots: up to
//!   [`Rules::interpolate_max_slots`] long, with an actual reading on both sides (across
//!   midnight too), linear interpolation between those two readings; otherwise each day's
//!   slots of the run come from a **reference day**, the same weekday one week back, else two
//!   weeks back, that was complete with no flag (Itron's two-week rule). Slots no rule can
//!   fill stay missing.
//! - A day with a slot still missing, or more than [`Rules::max_estimated_share`] of its slots
//!   estimated, is **excluded** from profiles; a day with any estimate is *estimated*.
//! - Informational flags that leave the day in: a whole day of zero use, and a day above
//!   [`Rules::high_day_ratio`] times (or below its inverse) the meter's own mean day over
//!   the days it keeps.
//!
//! Negative, non-finite and physically impossible values never get here: the meter refuses
//! them at ingest (`Reading::check_format`). Duplicates neither: the store keeps one reading
//! per (meter, start), the later write winning. The raw readings are never changed; estimates
//! live beside them, with quality bits numbered as IEEE 2030.5's `qualityFlags`.

mod meter_days;

pub use meter_days::{MeterDay, meter_days};

/// Seconds in a slot: the half hour the platform's meters report by default.
pub const SLOT_S: i64 = 1800;
/// Most slots a local day has (the 25-hour day of a DST fall-back).
pub const MAX_SLOTS: usize = 50;

/// The stated tolerances and limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Longest run of missing slots filled by interpolation: 4 half hours, 2 hours.
    pub interpolate_max_slots: usize,
    /// A day with more than this share of its slots estimated is excluded.
    pub max_estimated_share: f64,
    /// Highest interval against the third highest, above which the highest is a spike.
    pub spike_ratio: f64,
    /// A spike is also at least this many kWh (a 1 kW average over the half hour), so a
    /// nearly idle day's kettle is not one.
    pub spike_floor_kwh: f64,
    /// A day above this many times the meter's mean day is high; below its inverse, low.
    pub high_day_ratio: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            interpolate_max_slots: 4,
            max_estimated_share: 0.25,
            spike_ratio: 5.0,
            spike_floor_kwh: 0.5,
            high_day_ratio: 3.0,
        }
    }
}

/// What was found about one meter-day, as bits (names in [`Flags::NAMES`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u16);

impl Flags {
    /// Fewer readings than the day has slots.
    pub const INCOMPLETE: u16 = 1;
    /// No reading at all on a day between the meter's first reading and the window's end.
    pub const NO_READINGS: u16 = 1 << 1;
    /// A spiked interval, left out of the profile and estimated.
    pub const SPIKE: u16 = 1 << 2;
    /// Complete, and zero use all day (kept: a home can stand empty).
    pub const ZERO_DAY: u16 = 1 << 3;
    pub const HIGH_DAY: u16 = 1 << 4;
    pub const LOW_DAY: u16 = 1 << 5;
    /// Some slots interpolated.
    pub const INTERPOLATED: u16 = 1 << 6;
    /// Some slots taken from a reference day.
    pub const REFERENCE_DAY: u16 = 1 << 7;
    /// Left out of profiles.
    pub const EXCLUDED: u16 = 1 << 8;

    pub const NAMES: [(u16, &'static str); 9] = [
        (Self::INCOMPLETE, "incomplete"),
        (Self::NO_READINGS, "no_readings"),
        (Self::SPIKE, "spike"),
        (Self::ZERO_DAY, "zero_day"),
        (Self::HIGH_DAY, "high_day"),
        (Self::LOW_DAY, "low_day"),
        (Self::INTERPOLATED, "interpolated"),
        (Self::REFERENCE_DAY, "reference_day"),
        (Self::EXCLUDED, "excluded"),
    ];

    /// Every bit of `bits` is set.
    pub fn has(self, bits: u16) -> bool {
        self.0 & bits == bits
    }

    fn set(&mut self, bit: u16) {
        self.0 |= bit;
    }

    /// The names of the bits set, in [`Flags::NAMES`] order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(bit, _)| self.has(*bit))
            .map(|(_, name)| name)
    }
}

/// How an interval's value was obtained, numbered as the bits of IEEE 2030.5's
/// `ReadingBase.qualityFlags` (2: estimated using a reference day, 3: estimated using linear
/// interpolation, 4: questionable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Quality {
    ReferenceDay = 2,
    Interpolated = 3,
    Questionable = 4,
}

impl Quality {
    /// The `qualityFlags` value with this one bit set.
    pub fn bit(self) -> u16 {
        1 << self as u8
    }
}

/// An estimated interval of a meter-day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub slot: u8,
    pub kwh: f64,
    pub quality: Quality,
}

/// One meter-day's readings by slot, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DaySlots {
    /// Bit k set: slot k has a reading.
    pub present: u64,
    pub kwh: [f64; MAX_SLOTS],
}

impl Default for DaySlots {
    fn default() -> Self {
        Self {
            present: 0,
            kwh: [0.0; MAX_SLOTS],
        }
    }
}

impl DaySlots {
    /// Adds a reading's kWh to slot `k` (finer readings share a slot).
    pub fn add(&mut self, k: usize, kwh: f64) {
        if k < MAX_SLOTS {
            self.kwh[k] += kwh;
            self.present |= 1 << k;
        }
    }

    /// Folds another part of the same day in.
    pub fn merge(&mut self, other: &DaySlots) {
        for k in 0..MAX_SLOTS {
            if other.has(k) {
                self.add(k, other.kwh[k]);
            }
        }
    }

    pub fn has(&self, k: usize) -> bool {
        self.present >> k & 1 == 1
    }

    /// The slots of a day of `expected` slots that have a reading.
    pub fn filled(&self, expected: u8) -> u64 {
        self.present & mask(expected)
    }

    fn complete(&self, expected: u8) -> bool {
        self.filled(expected).count_ones() == u32::from(expected)
    }

    /// The slot of a spike, by [`Rules`]'s spike rule.
    fn spike(&self, expected: u8, rules: &Rules) -> Option<usize> {
        let mut top: [(f64, usize); 3] = [(f64::NEG_INFINITY, 0); 3];
        let mut seen = 0;
        for k in (0..usize::from(expected)).filter(|k| self.has(*k)) {
            seen += 1;
            let v = self.kwh[k];
            if v > top[0].0 {
                top = [(v, k), top[0], top[1]];
            } else if v > top[1].0 {
                top = [top[0], (v, k), top[1]];
            } else if v > top[2].0 {
                top[2] = (v, k);
            }
        }
        let (highest, slot) = top[0];
        (seen >= 3 && highest >= rules.spike_floor_kwh && highest > rules.spike_ratio * top[2].0)
            .then_some(slot)
    }
}

fn mask(expected: u8) -> u64 {
    if expected >= 64 {
        u64::MAX
    } else {
        (1u64 << expected) - 1
    }
}

/// What VEE made of one meter-day.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub flags: Flags,
    /// The questionable (spiked) slot, left out of the day's use.
    pub questionable: Option<u8>,
    pub estimates: Vec<Estimate>,
    /// Slots with neither an accepted reading nor an estimate.
    pub missing: u8,
    /// The day's use from accepted readings and estimates, when it is kept; `None` when
    /// excluded.
    pub kwh: Option<f64>,
}

impl Verdict {
    pub fn excluded(&self) -> bool {
        self.flags.has(Flags::EXCLUDED)
    }

    pub fn estimated(&self) -> bool {
        !self.excluded() && !self.estimates.is_empty()
    }
}

/// Runs VEE over one meter's consecutive local days (`days[i + 1]` is the day after
/// `days[i]`; `None` for a day without readings, which has `expected[i]` slots). `raw_kwh[i]`
/// is the day's stored sum, used as the day's use when the day is complete and unflagged, so
/// a clean day's figure is exactly the sum the profile always had.
pub fn validate(
    days: &[Option<&DaySlots>],
    expected: &[u8],
    raw_kwh: &[f64],
    rules: &Rules,
) -> Vec<Verdict> {
    let n = days.len();
    let empty = DaySlots::default();
    let day = |i: usize| days[i].unwrap_or(&empty);

    // Validation: flags, and which slots hold an accepted reading.
    let mut flags = vec![Flags::default(); n];
    let mut questionable = vec![None; n];
    let mut accepted: Vec<u64> = Vec::with_capacity(n);
    for i in 0..n {
        let (d, e) = (day(i), expected[i]);
        if days[i].is_none() {
            flags[i].set(Flags::NO_READINGS);
        }
        if !d.complete(e) {
            flags[i].set(Flags::INCOMPLETE);
        }
        let mut ok = d.filled(e);
        if let Some(k) = d.spike(e, rules) {
            flags[i].set(Flags::SPIKE);
            questionable[i] = Some(k as u8);
            ok &= !(1u64 << k);
        } else if d.complete(e) && (0..usize::from(e)).all(|k| d.kwh[k] == 0.0) {
            flags[i].set(Flags::ZERO_DAY);
        }
        accepted.push(ok);
    }
    let reference_ok = |i: usize| {
        days[i].is_some_and(|d| d.complete(expected[i]))
            && !flags[i].has(Flags::SPIKE)
            && !flags[i].has(Flags::ZERO_DAY)
    };

    // Estimation over the meter's whole timeline, so a gap across midnight is one gap.
    let mut estimates: Vec<Vec<Estimate>> = vec![Vec::new(); n];
    let slots: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (0..usize::from(expected[i])).map(move |k| (i, k)))
        .collect();
    let is_ok = |(i, k): (usize, usize)| accepted[i] >> k & 1 == 1;
    let mut t = 0;
    while t < slots.len() {
        if is_ok(slots[t]) {
            t += 1;
            continue;
        }
        let start = t;
        while t < slots.len() && !is_ok(slots[t]) {
            t += 1;
        }
        let run = &slots[start..t];
        let left = start.checked_sub(1).map(|s| slots[s]);
        let right = slots.get(t).copied();
        match (left, right) {
            (Some((li, lk)), Some((ri, rk))) if run.len() <= rules.interpolate_max_slots => {
                let (a, b) = (day(li).kwh[lk], day(ri).kwh[rk]);
                let steps = (run.len() + 1) as f64;
                for (j, &(i, k)) in run.iter().enumerate() {
                    estimates[i].push(Estimate {
                        slot: k as u8,
                        kwh: a + (b - a) * (j + 1) as f64 / steps,
                        quality: Quality::Interpolated,
                    });
                }
            }
            _ => {
                for &(i, k) in run {
                    let reference = [7, 14]
                        .into_iter()
                        .filter_map(|back| i.checked_sub(back))
                        .find(|&r| reference_ok(r) && expected[r] == expected[i]);
                    if let Some(r) = reference {
                        estimates[i].push(Estimate {
                            slot: k as u8,
                            kwh: day(r).kwh[k],
                            quality: Quality::ReferenceDay,
                        });
                    }
                }
            }
        }
    }

    // Outcome per day.
    let mut verdicts: Vec<Verdict> = (0..n)
        .map(|i| {
            let (d, e) = (day(i), expected[i]);
            let mut f = flags[i];
            let est = std::mem::take(&mut estimates[i]);
            let filled = accepted[i].count_ones() as usize + est.len();
            let missing = usize::from(e).saturating_sub(filled) as u8;
            for e in &est {
                f.set(match e.quality {
                    Quality::Interpolated => Flags::INTERPOLATED,
                    _ => Flags::REFERENCE_DAY,
                });
            }
            let too_many = est.len() as f64 > rules.max_estimated_share * f64::from(e);
            let kwh = if missing > 0 || too_many {
                f.set(Flags::EXCLUDED);
                None
            } else if est.is_empty() && questionable[i].is_none() {
                Some(raw_kwh[i])
            } else {
                let accepted_kwh: f64 = (0..usize::from(e))
                    .filter(|k| accepted[i] >> k & 1 == 1)
                    .map(|k| d.kwh[k])
                    .sum();
                Some(accepted_kwh + est.iter().map(|e| e.kwh).sum::<f64>())
            };
            Verdict {
                flags: f,
                questionable: questionable[i],
                estimates: est,
                missing,
                kwh,
            }
        })
        .collect();

    // High and low days, against the meter's mean over the days it keeps.
    let kept: Vec<f64> = verdicts.iter().filter_map(|v| v.kwh).collect();
    if !kept.is_empty() {
        let mean = kept.iter().sum::<f64>() / kept.len() as f64;
        for v in &mut verdicts {
            match v.kwh {
                Some(k) if k > rules.high_day_ratio * mean => v.flags.set(Flags::HIGH_DAY),
                Some(k) if k * rules.high_day_ratio < mean => v.flags.set(Flags::LOW_DAY),
                _ => {}
            }
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A day of 48 slots holding `f(k)`, except the slots `gaps` leaves out.
    fn day(f: impl Fn(usize) -> f64, gaps: &[usize]) -> DaySlots {
        let mut d = DaySlots::default();
        for k in (0..48).filter(|k| !gaps.contains(k)) {
            d.add(k, f(k));
        }
        d
    }

    fn run(days: &[Option<DaySlots>]) -> Vec<Verdict> {
        run_with(days, &vec![48; days.len()])
    }

    fn run_with(days: &[Option<DaySlots>], expected: &[u8]) -> Vec<Verdict> {
        let refs: Vec<Option<&DaySlots>> = days.iter().map(Option::as_ref).collect();
        let raw: Vec<f64> = days
            .iter()
            .map(|d| d.as_ref().map_or(0.0, |d| d.kwh.iter().sum()))
            .collect();
        validate(&refs, expected, &raw, &Rules::default())
    }

    fn linear(k: usize) -> f64 {
        0.1 + 0.01 * k as f64
    }

    #[test]
    fn a_complete_day_keeps_its_stored_sum() {
        let v = run(&[Some(day(linear, &[]))]);
        assert_eq!(v[0].flags, Flags::default());
        assert_eq!(v[0].kwh, Some(day(linear, &[]).kwh.iter().sum()));
    }

    #[test]
    fn a_short_gap_is_interpolated_between_its_neighbours() {
        let v = run(&[Some(day(linear, &[10, 11, 12]))]);
        let est: Vec<(u8, f64)> = v[0].estimates.iter().map(|e| (e.slot, e.kwh)).collect();
        assert_eq!(est.len(), 3);
        for (k, kwh) in est {
            assert!(
                (kwh - linear(usize::from(k))).abs() < 1e-12,
                "slot {k}: {kwh}"
            );
        }
        assert!(v[0].flags.has(Flags::INTERPOLATED | Flags::INCOMPLETE));
        assert!(v[0].estimated());
    }

    #[test]
    fn a_gap_across_midnight_is_one_gap() {
        let v = run(&[Some(day(linear, &[46, 47])), Some(day(linear, &[0, 1]))]);
        assert_eq!(v[0].estimates.len(), 2);
        assert_eq!(v[1].estimates.len(), 2);
        // Between slot 45 of day 0 (0.55) and slot 2 of day 1 (0.12), five steps.
        assert!((v[0].estimates[0].kwh - (0.55 + (0.12 - 0.55) / 5.0)).abs() < 1e-12);
    }

    #[test]
    fn a_long_gap_comes_from_the_same_weekday_before() {
        let mut days: Vec<Option<DaySlots>> = (0..8).map(|_| Some(day(linear, &[]))).collect();
        days[7] = Some(day(|_| 9.0, &[20, 21, 22, 23, 24, 25]));
        days[0] = Some(day(|k| k as f64 / 100.0, &[]));
        let v = run(&days);
        assert_eq!(v[7].estimates.len(), 6);
        assert!(
            v[7].estimates
                .iter()
                .all(|e| e.quality == Quality::ReferenceDay)
        );
        assert_eq!(v[7].estimates[0].kwh, 0.20);
        assert!(!v[7].excluded(), "6 of 48 is under a quarter");
    }

    #[test]
    fn no_reference_day_leaves_the_day_excluded() {
        let v = run(&[Some(day(linear, &[20, 21, 22, 23, 24, 25]))]);
        assert!(v[0].estimates.is_empty());
        assert_eq!(v[0].missing, 6);
        assert!(v[0].excluded());
        assert_eq!(v[0].kwh, None);
    }

    #[test]
    fn a_day_mostly_estimated_is_excluded() {
        let mut days: Vec<Option<DaySlots>> = (0..8).map(|_| Some(day(linear, &[]))).collect();
        days[7] = None;
        let v = run(&days);
        assert_eq!(v[7].estimates.len(), 48);
        assert!(v[7].flags.has(Flags::NO_READINGS | Flags::EXCLUDED));
    }

    #[test]
    fn a_spike_is_questionable_and_estimated_from_its_neighbours() {
        let mut d = day(linear, &[]);
        d.kwh[30] = 50.0 * linear(30);
        let v = run(&[Some(d)]);
        assert!(v[0].flags.has(Flags::SPIKE));
        assert_eq!(v[0].questionable, Some(30));
        assert!((v[0].estimates[0].kwh - linear(30)).abs() < 1e-12);
        let clean: f64 = day(linear, &[]).kwh.iter().sum();
        assert!((v[0].kwh.unwrap_or_default() - clean).abs() < 1e-9);
    }

    #[test]
    fn peaks_that_are_not_spikes_stay() {
        // An evening peak: three high intervals are use, not a fault.
        let v = run(&[Some(day(
            |k| if (36..40).contains(&k) { 2.0 } else { 0.1 },
            &[],
        ))]);
        assert_eq!(v[0].flags, Flags::default());
    }

    #[test]
    fn zero_high_and_low_days_are_flagged_but_kept() {
        let mut days: Vec<Option<DaySlots>> = (0..6).map(|_| Some(day(|_| 0.2, &[]))).collect();
        days[1] = Some(day(|_| 0.0, &[]));
        days[2] = Some(day(|_| 0.9, &[]));
        let v = run(&days);
        assert!(v[1].flags.has(Flags::ZERO_DAY | Flags::LOW_DAY));
        assert!(v[2].flags.has(Flags::HIGH_DAY));
        assert!(v.iter().all(|v| !v.excluded()));
    }

    #[test]
    fn dst_days_take_no_reference_of_another_length() {
        let mut days: Vec<Option<DaySlots>> = (0..8).map(|_| Some(day(linear, &[]))).collect();
        let mut short = DaySlots::default();
        for k in (0..46).filter(|k| !(10..16).contains(k)) {
            short.add(k, 0.3);
        }
        days[7] = Some(short);
        let mut expected = vec![48; 8];
        expected[7] = 46;
        let v = run_with(&days, &expected);
        assert!(
            v[7].excluded(),
            "a 48-slot day cannot stand in for a 46-slot one"
        );
    }
}
