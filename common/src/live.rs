//! The live layer's vocabulary (docs/live.md): half-hour slots of the last 48 hours, what one
//! reading contributes to its slot, and a slot's figures per region. The live aggregator
//! (`simulator live`) keeps them; the web service reads them. They never touch the batch
//! profiles: the map's "now" compares the two and changes neither.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{MeterId, Reading, RegionCode};

/// A slot's length: the half hour of the fleet's default interval.
pub const SLOT: TimeDelta = TimeDelta::minutes(30);
/// How far back the live layer keeps slots; older readings are the batch profile's.
pub const WINDOW: TimeDelta = TimeDelta::hours(48);
/// A slot counts as complete when at least this share of the region's registered meters
/// has reported in it; below, its mean is shown as incomplete rather than as low use.
pub const COMPLETE_SHARE: f64 = 0.75;

/// The slot a reading starting at `ts` counts in: the half hour holding its start, the same
/// rule by which the batch profile files a reading under the hour of its start.
pub fn slot_of(ts: DateTime<Utc>) -> DateTime<Utc> {
    ts.duration_trunc(SLOT).unwrap_or(ts)
}

/// The oldest slot the window holds at `now`.
pub fn window_start(now: DateTime<Utc>) -> DateTime<Utc> {
    slot_of(now - WINDOW)
}

/// The newest slot that has ended at `now`.
pub fn last_complete_slot(now: DateTime<Utc>) -> DateTime<Utc> {
    slot_of(now) - SLOT
}

/// kWh as whole micro-kWh: integers add up the same in any order, so a slot's sum is exact
/// however its readings arrive, and equal to the same sum taken over the stored readings.
pub fn micro_kwh(kwh: f64) -> i64 {
    (kwh * 1e6).round() as i64
}

/// What one reading contributes to its region's slot: the live aggregator's state, kept in
/// the store per bus part so a restarted aggregator rebuilds from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEntry {
    pub meter_id: MeterId,
    /// The reading's start.
    pub ts: DateTime<Utc>,
    pub region: RegionCode,
    pub micro_kwh: i64,
}

/// One region's figures in one slot: the exact sum of its readings, how many distinct meters
/// and readings are behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSlot {
    pub region: RegionCode,
    pub slot: DateTime<Utc>,
    pub micro_kwh: i64,
    pub meters: u32,
    pub readings: u32,
}

impl LiveSlot {
    /// The mean household's kWh in the slot.
    pub fn household_kwh(&self) -> Option<f64> {
        (self.meters > 0).then(|| self.micro_kwh as f64 / 1e6 / f64::from(self.meters))
    }

    /// Whether enough of the region's `registered` meters reported ([`COMPLETE_SHARE`]).
    pub fn complete(&self, registered: u64) -> bool {
        registered > 0 && f64::from(self.meters) >= COMPLETE_SHARE * registered as f64
    }

    /// Adds another part's figures for the same region and slot (meters are distinct across
    /// parts: a meter's readings all travel in one part).
    pub fn add(&mut self, other: &LiveSlot) {
        self.micro_kwh += other.micro_kwh;
        self.meters += other.meters;
        self.readings += other.readings;
    }
}

/// The slots `readings` (each with its meter's region) make when summed directly: exact
/// micro-kWh, distinct meters and readings per (region, slot), ordered by region and slot as
/// `Store::live_slots` answers. The reference the live aggregator's figures
/// must equal, computed without its state.
pub fn slots_of<'a>(
    readings: impl IntoIterator<Item = (RegionCode, &'a Reading)>,
) -> Vec<LiveSlot> {
    #[derive(Default)]
    struct Sum {
        micro: i64,
        meters: BTreeSet<MeterId>,
        readings: u32,
    }
    let mut sums: BTreeMap<(RegionCode, DateTime<Utc>), Sum> = BTreeMap::new();
    for (region, r) in readings {
        let sum = sums.entry((region, slot_of(r.ts))).or_default();
        sum.micro += micro_kwh(r.kwh);
        sum.meters.insert(r.meter_id.clone());
        sum.readings += 1;
    }
    sums.into_iter()
        .map(|((region, slot), sum)| LiveSlot {
            region,
            slot,
            micro_kwh: sum.micro,
            meters: u32::try_from(sum.meters.len()).unwrap_or(u32::MAX),
            readings: sum.readings,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_reading_counts_in_the_half_hour_of_its_start() {
        assert_eq!(
            slot_of(at("2026-12-06T10:29:59Z")),
            at("2026-12-06T10:00:00Z")
        );
        assert_eq!(
            slot_of(at("2026-12-06T10:30:00Z")),
            at("2026-12-06T10:30:00Z")
        );
        assert_eq!(
            last_complete_slot(at("2026-12-06T10:31:00Z")),
            at("2026-12-06T10:00:00Z")
        );
        assert_eq!(
            window_start(at("2026-12-06T10:31:00Z")),
            at("2026-12-04T10:30:00Z")
        );
    }

    #[test]
    fn micro_kwh_sums_do_not_depend_on_order() {
        let v = [0.1, 0.2, 0.3, 1.234_567, 0.000_001];
        let forward: i64 = v.iter().map(|&k| micro_kwh(k)).sum();
        let backward: i64 = v.iter().rev().map(|&k| micro_kwh(k)).sum();
        assert_eq!(forward, backward);
        assert_eq!(forward, 1_834_568);
    }

    #[test]
    fn a_slot_is_complete_from_the_stated_share_of_registered_meters() {
        let slot = LiveSlot {
            region: "E09000001".parse().unwrap(),
            slot: at("2026-12-06T10:00:00Z"),
            micro_kwh: 3_000_000,
            meters: 3,
            readings: 3,
        };
        assert!(slot.complete(4));
        assert!(!slot.complete(5));
        assert!(!slot.complete(0));
        assert_eq!(slot.household_kwh(), Some(1.0));
    }
}
