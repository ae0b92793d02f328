//! The live layer as residents see it (docs/live.md): each region's last complete half hour
//! against the typical household of the published profile for the same local hour, and a
//! region's slots of the last 48 hours. The live figures come from the live aggregator's
//! slots in the store; the profiles are only read, never changed.

use std::collections::HashMap;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use iot_common::ProfileFigures;
use iot_common::domain::RegionCode;
use iot_common::live::{COMPLETE_SHARE, LiveSlot, SLOT, last_complete_slot};
use iot_common::regions::Regions;
use serde::Serialize;
use utoipa::ToSchema;

use crate::cache::Profiles;

/// The time zone of the profiles' local hours and of the pages.
pub const TZ: Tz = chrono_tz::Europe::London;

/// The diverging scale of "now": the household mean over the typical one, in fixed bands
/// (a colour means the same at every update), each with its upper bound. ColorBrewer
/// "RdBu", seven classes, reversed: blue below typical, red above.
pub const BANDS: [(f64, &str); 7] = [
    (0.6, "#2166ac"),
    (0.8, "#67a9cf"),
    (0.95, "#d1e5f0"),
    (1.05, "#f7f7f7"),
    (1.25, "#fddbc7"),
    (1.67, "#ef8a62"),
    (f64::INFINITY, "#b2182b"),
];

/// The band of a ratio to typical.
pub fn band_of(ratio: f64) -> usize {
    BANDS
        .iter()
        .position(|(upper, _)| ratio < *upper)
        .unwrap_or(BANDS.len() - 1)
}

/// A band's legend line.
pub fn band_label(i: usize) -> String {
    let lower = i.checked_sub(1).map(|j| BANDS[j].0);
    match (lower, BANDS[i].0) {
        (None, hi) => format!("under {} of typical", percent(hi)),
        (Some(lo), hi) if hi.is_infinite() => format!("over {} of typical", percent(lo)),
        (Some(lo), hi) => format!("{}–{} of typical", percent(lo), percent(hi)),
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.0} %", ratio * 100.0)
}

/// The typical household's kWh in the half hour starting at `slot`: half the profile's mean
/// for that local hour.
pub fn typical_kwh(profile: &ProfileFigures, slot: DateTime<Utc>) -> f64 {
    let hour = slot.with_timezone(&TZ).hour() as usize;
    profile.hourly_kwh[hour.min(23)] / 2.0
}

/// One region in one slot, as the API and the pages show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveFigures {
    /// Start of the half hour (UTC).
    pub slot: DateTime<Utc>,
    /// The region's total kWh in the slot, exact to the micro-kWh.
    pub kwh: f64,
    /// Distinct meters that reported in the slot.
    pub meters: u32,
    pub readings: u32,
    /// Mean kWh per reporting household; `null` when none reported.
    pub household_kwh: Option<f64>,
    /// The typical household's kWh in this half hour, from the published profile; `null`
    /// before the region's first profile.
    pub typical_kwh: Option<f64>,
    /// `household_kwh` over `typical_kwh`.
    pub vs_typical: Option<f64>,
    /// Whether at least `complete_share` of the region's registered meters reported; an
    /// incomplete slot's mean is not to be read as low use.
    pub complete: bool,
}

impl LiveFigures {
    fn of(
        slot: DateTime<Utc>,
        figures: Option<&LiveSlot>,
        registered: u64,
        profile: Option<&ProfileFigures>,
    ) -> Self {
        let household_kwh = figures.and_then(LiveSlot::household_kwh);
        let typical_kwh = profile.map(|p| typical_kwh(p, slot));
        Self {
            slot,
            kwh: figures.map_or(0.0, |f| f.micro_kwh as f64 / 1e6),
            meters: figures.map_or(0, |f| f.meters),
            readings: figures.map_or(0, |f| f.readings),
            household_kwh,
            typical_kwh,
            vs_typical: household_kwh
                .zip(typical_kwh)
                .filter(|(_, t)| *t > 0.0)
                .map(|(h, t)| h / t),
            complete: figures.is_some_and(|f| f.complete(registered)),
        }
    }

    /// How the map labels a region for this slot.
    pub fn label(&self, registered: u64) -> String {
        match (self.household_kwh, self.vs_typical) {
            _ if self.meters == 0 => "no readings yet".to_owned(),
            _ if !self.complete => format!(
                "incomplete: {} of {} meters reported",
                self.meters, registered
            ),
            (Some(h), Some(r)) => format!("{h:.2} kWh a household, {} of typical", percent(r)),
            (Some(h), None) => format!("{h:.2} kWh a household, no typical yet"),
            (None, _) => "no readings yet".to_owned(),
        }
    }
}

/// One region's last complete half hour.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveRegion {
    pub code: RegionCode,
    pub name: String,
    /// Meters registered in the region: what `complete` is measured against.
    pub registered_meters: u64,
    #[serde(flatten)]
    pub figures: LiveFigures,
}

/// The map's "now": every region's last complete half hour.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveNow {
    /// Start of the last complete half hour (UTC); it ends 30 minutes later.
    pub slot: DateTime<Utc>,
    /// The share of a region's registered meters that must report for a slot to be complete.
    pub complete_share: f64,
    pub regions: Vec<LiveRegion>,
}

/// A region's half hours of the last 48 hours, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveRegionSlots {
    pub code: RegionCode,
    pub name: String,
    pub registered_meters: u64,
    pub complete_share: f64,
    pub slots: Vec<LiveFigures>,
}

/// What the live views are made of, read once per request.
pub struct LiveInputs<'a> {
    pub regions: &'a Regions,
    /// Ordered by region and slot, as `Store::live_slots` answers.
    pub slots: &'a [LiveSlot],
    pub profiles: &'a Profiles,
    /// Registered meters by region.
    pub registered: &'a HashMap<RegionCode, u64>,
    pub now: DateTime<Utc>,
}

impl LiveInputs<'_> {
    fn find(&self, code: &RegionCode, slot: DateTime<Utc>) -> Option<&LiveSlot> {
        let at = self
            .slots
            .binary_search_by(|s| (&s.region, s.slot).cmp(&(code, slot)))
            .ok()?;
        self.slots.get(at)
    }

    /// The region's registered meters; at least the meters that reported in `figures`
    /// (the count of registrations is refreshed less often than the figures).
    fn registered(&self, code: &RegionCode, figures: Option<&LiveSlot>) -> u64 {
        let counted = self.registered.get(code).copied().unwrap_or(0);
        counted.max(figures.map_or(0, |f| u64::from(f.meters)))
    }

    /// Every region's last complete half hour.
    pub fn now_view(&self) -> LiveNow {
        let slot = last_complete_slot(self.now);
        let regions = self
            .regions
            .iter()
            .map(|r| {
                let figures = self.find(&r.code, slot);
                let registered = self.registered(&r.code, figures);
                LiveRegion {
                    code: r.code.clone(),
                    name: r.name.clone(),
                    registered_meters: registered,
                    figures: LiveFigures::of(
                        slot,
                        figures,
                        registered,
                        self.profiles.get(&r.code).map(|p| &p.figures),
                    ),
                }
            })
            .collect();
        LiveNow {
            slot,
            complete_share: COMPLETE_SHARE,
            regions,
        }
    }

    /// One region's slots from `from` to the current (unfinished) half hour.
    pub fn region_slots(
        &self,
        code: &RegionCode,
        name: &str,
        from: DateTime<Utc>,
    ) -> LiveRegionSlots {
        let registered = self.registered(code, None);
        let profile = self.profiles.get(code).map(|p| &p.figures);
        let mut slots = Vec::new();
        let mut slot = from;
        while slot <= self.now {
            let figures = self.find(code, slot);
            slots.push(LiveFigures::of(
                slot,
                figures,
                self.registered(code, figures),
                profile,
            ));
            slot += SLOT;
        }
        LiveRegionSlots {
            code: code.clone(),
            name: name.to_owned(),
            registered_meters: registered,
            complete_share: COMPLETE_SHARE,
            slots,
        }
    }
}

/// Registered meters by region, from the store's summary.
pub fn registered_by_region(summary: &iot_common::store::StoreSummary) -> HashMap<RegionCode, u64> {
    summary
        .meters_by_region
        .iter()
        .filter_map(|(code, n)| Some((code.clone()?, *n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_split_at_their_bounds_and_say_so() {
        assert_eq!(band_of(0.2), 0);
        assert_eq!(band_of(1.0), 3);
        assert_eq!(band_of(1.05), 4);
        assert_eq!(band_of(9.0), 6);
        assert_eq!(band_label(0), "under 60 % of typical");
        assert_eq!(band_label(3), "95 %–105 % of typical");
        assert_eq!(band_label(6), "over 167 % of typical");
    }

    #[test]
    fn a_slot_is_compared_with_the_typical_half_of_its_local_hour() {
        let mut hourly = [0.0; 24];
        hourly[18] = 1.0;
        // 18:00 UTC in June is 19:00 in London; in December it is 18:00.
        let figures = ProfileFigures {
            region: "E09000001".parse().unwrap(),
            meters: 1,
            readings: 48,
            avg_daily_kwh: 1.0,
            p50_daily_kwh: 1.0,
            p90_daily_kwh: 1.0,
            weekday_avg_daily_kwh: None,
            weekend_avg_daily_kwh: None,
            hourly_kwh: hourly,
            peak_hour: 18,
            meter_daily_percentiles: Vec::new(),
            meter_days: Default::default(),
        };
        assert_eq!(
            typical_kwh(&figures, "2026-12-06T18:30:00Z".parse().unwrap()),
            0.5
        );
        assert_eq!(
            typical_kwh(&figures, "2026-06-06T18:30:00Z".parse().unwrap()),
            0.0
        );
    }
}
