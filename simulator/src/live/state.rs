//! The live aggregator's state, per bus part: every (meter, ts) of the window with the
//! micro-kWh it contributes, and per (region, slot) the exact sum, the readings and the
//! distinct meters behind it. A reading seen again with the same value changes nothing (the
//! bus delivers at least once); with a new value, or from a meter that moved, it replaces what
//! it contributed before. What changed since the last flush is kept apart until the store
//! has it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use iot_common::Reading;
use iot_common::domain::{MeterId, RegionCode};
use iot_common::live::{LiveEntry, LiveSlot, micro_kwh, slot_of};

type EntryKey = (MeterId, DateTime<Utc>);
type SlotKey = (RegionCode, DateTime<Utc>);

#[derive(Debug, Default)]
struct SlotSum {
    micro_kwh: i64,
    readings: u32,
    /// Readings per meter, for the distinct count.
    per_meter: HashMap<MeterId, u32>,
}

/// One part's state.
#[derive(Debug, Default)]
pub struct PartState {
    entries: HashMap<EntryKey, (RegionCode, i64)>,
    slots: HashMap<SlotKey, SlotSum>,
    dirty_entries: HashSet<EntryKey>,
    dirty_slots: HashSet<SlotKey>,
}

impl PartState {
    /// The state a part's stored entries describe. Every slot is to be written again at the
    /// next flush: figures a crash left behind their entries are made whole that way.
    pub fn rebuilt(entries: Vec<LiveEntry>, window_start: DateTime<Utc>) -> Self {
        let mut state = Self::default();
        for e in entries {
            state.put(e.meter_id, e.ts, e.region, e.micro_kwh, window_start);
        }
        state.dirty_entries.clear();
        state
    }

    /// Counts `reading` in `region`'s slot, once per (meter, ts): `false` when it changed
    /// nothing (a repeat) or starts before the window.
    pub fn apply(
        &mut self,
        region: RegionCode,
        reading: &Reading,
        window_start: DateTime<Utc>,
    ) -> bool {
        self.put(
            reading.meter_id.clone(),
            reading.ts,
            region,
            micro_kwh(reading.kwh),
            window_start,
        )
    }

    fn put(
        &mut self,
        meter: MeterId,
        ts: DateTime<Utc>,
        region: RegionCode,
        micro: i64,
        window_start: DateTime<Utc>,
    ) -> bool {
        let slot = slot_of(ts);
        if slot < window_start {
            return false;
        }
        let key = (meter, ts);
        if let Some((old_region, old_micro)) = self.entries.get(&key) {
            if *old_region == region && *old_micro == micro {
                return false;
            }
            let (old_region, old_micro) = (old_region.clone(), *old_micro);
            self.take_out(&key.0, (old_region, slot), old_micro);
        }
        let sum = self.slots.entry((region.clone(), slot)).or_default();
        sum.micro_kwh += micro;
        sum.readings += 1;
        *sum.per_meter.entry(key.0.clone()).or_default() += 1;
        self.dirty_slots.insert((region.clone(), slot));
        self.dirty_entries.insert(key.clone());
        self.entries.insert(key, (region, micro));
        true
    }

    fn take_out(&mut self, meter: &MeterId, slot: SlotKey, micro: i64) {
        if let Some(sum) = self.slots.get_mut(&slot) {
            sum.micro_kwh -= micro;
            sum.readings = sum.readings.saturating_sub(1);
            if let Some(n) = sum.per_meter.get_mut(meter) {
                *n -= 1;
                if *n == 0 {
                    sum.per_meter.remove(meter);
                }
            }
        }
        self.dirty_slots.insert(slot);
    }

    /// What changed since the last flush: the entries, and the figures of the slots they
    /// touched (a slot left with no reading is written as zeros).
    pub fn pending(&self) -> (Vec<LiveEntry>, Vec<LiveSlot>) {
        let entries = self
            .dirty_entries
            .iter()
            .filter_map(|key| {
                let (region, micro) = self.entries.get(key)?;
                Some(LiveEntry {
                    meter_id: key.0.clone(),
                    ts: key.1,
                    region: region.clone(),
                    micro_kwh: *micro,
                })
            })
            .collect();
        let slots = self
            .dirty_slots
            .iter()
            .map(|key| self.figures(key))
            .collect();
        (entries, slots)
    }

    fn figures(&self, (region, slot): &SlotKey) -> LiveSlot {
        let sum = self.slots.get(&(region.clone(), *slot));
        LiveSlot {
            region: region.clone(),
            slot: *slot,
            micro_kwh: sum.map_or(0, |s| s.micro_kwh),
            meters: sum.map_or(0, |s| u32::try_from(s.per_meter.len()).unwrap_or(u32::MAX)),
            readings: sum.map_or(0, |s| s.readings),
        }
    }

    /// The store has what [`PartState::pending`] gave.
    pub fn flushed(&mut self) {
        self.dirty_entries.clear();
        self.dirty_slots.clear();
    }

    pub fn is_clean(&self) -> bool {
        self.dirty_entries.is_empty() && self.dirty_slots.is_empty()
    }

    /// Forgets what has left the window.
    pub fn prune(&mut self, window_start: DateTime<Utc>) {
        self.entries
            .retain(|(_, ts), _| slot_of(*ts) >= window_start);
        self.slots.retain(|(_, slot), _| *slot >= window_start);
        self.dirty_entries
            .retain(|(_, ts)| slot_of(*ts) >= window_start);
        self.dirty_slots.retain(|(_, slot)| *slot >= window_start);
    }

    /// Every slot's figures, ordered by region and slot.
    pub fn all_figures(&self) -> Vec<LiveSlot> {
        let mut keys: Vec<&SlotKey> = self.slots.keys().collect();
        keys.sort();
        keys.into_iter().map(|k| self.figures(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn reading(meter: &str, ts: &str, kwh: f64) -> Reading {
        Reading {
            meter_id: meter.parse().unwrap(),
            ts: at(ts),
            kwh,
            interval_s: 900,
        }
    }

    fn region(s: &str) -> RegionCode {
        s.parse().unwrap()
    }

    const START: &str = "2026-12-05T00:00:00Z";

    #[test]
    fn repeats_count_once_and_corrections_replace() {
        let mut part = PartState::default();
        let w = at(START);
        assert!(part.apply(region("A"), &reading("m1", "2026-12-06T10:00:00Z", 0.25), w));
        assert!(part.apply(region("A"), &reading("m1", "2026-12-06T10:15:00Z", 0.5), w));
        assert!(part.apply(region("A"), &reading("m2", "2026-12-06T10:00:00Z", 1.0), w));
        assert!(!part.apply(region("A"), &reading("m1", "2026-12-06T10:15:00Z", 0.5), w));
        assert!(part.apply(region("A"), &reading("m1", "2026-12-06T10:15:00Z", 0.75), w));
        let figures = part.all_figures();
        assert_eq!(
            figures,
            vec![LiveSlot {
                region: region("A"),
                slot: at("2026-12-06T10:00:00Z"),
                micro_kwh: 2_000_000,
                meters: 2,
                readings: 3,
            }]
        );
        assert_eq!(figures[0].household_kwh(), Some(1.0));
    }

    #[test]
    fn a_meter_that_moves_leaves_its_old_regions_slot() {
        let mut part = PartState::default();
        let w = at(START);
        part.apply(region("A"), &reading("m1", "2026-12-06T10:00:00Z", 0.25), w);
        part.flushed();
        part.apply(region("B"), &reading("m1", "2026-12-06T10:00:00Z", 0.25), w);
        let (entries, mut slots) = part.pending();
        slots.sort_by(|a, b| a.region.cmp(&b.region));
        assert_eq!(entries.len(), 1);
        assert_eq!((slots[0].meters, slots[0].micro_kwh), (0, 0), "A emptied");
        assert_eq!((slots[1].meters, slots[1].micro_kwh), (1, 250_000), "B");
    }

    #[test]
    fn readings_before_the_window_are_left_to_the_batch_profile() {
        let mut part = PartState::default();
        let w = at(START);
        assert!(!part.apply(region("A"), &reading("m1", "2026-12-04T23:30:00Z", 1.0), w));
        assert!(part.pending().0.is_empty());
    }

    #[test]
    fn a_rebuilt_part_writes_every_slot_again_and_no_entry() {
        let mut part = PartState::default();
        let w = at(START);
        part.apply(region("A"), &reading("m1", "2026-12-06T10:00:00Z", 0.25), w);
        part.apply(region("A"), &reading("m1", "2026-12-06T10:30:00Z", 0.5), w);
        let (entries, _) = part.pending();
        let rebuilt = PartState::rebuilt(entries, w);
        let (entries, slots) = rebuilt.pending();
        assert!(entries.is_empty());
        assert_eq!(slots.len(), 2);
        assert_eq!(rebuilt.all_figures(), part.all_figures());
    }

    #[test]
    fn pruning_forgets_what_left_the_window() {
        let mut part = PartState::default();
        let w = at(START);
        part.apply(region("A"), &reading("m1", "2026-12-05T00:00:00Z", 0.25), w);
        part.apply(region("A"), &reading("m1", "2026-12-06T00:00:00Z", 0.5), w);
        part.prune(w + TimeDelta::hours(1));
        assert_eq!(part.all_figures().len(), 1);
        assert_eq!(part.pending().0.len(), 1);
    }
}
