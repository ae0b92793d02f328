//! Domain types and the rules a reading must obey before the platform accepts it.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use strum::VariantArray;

mod ids;

pub use ids::{IdError, MeterId, RegionCode};

/// Interval lengths a meter may report, in seconds.
pub const KNOWN_INTERVALS_S: [u32; 3] = [900, 1800, 3600];
/// The interval a reading has when it does not say.
pub const DEFAULT_INTERVAL_S: u32 = 1800;
/// Highest average power a domestic supply can draw: a 100 A single-phase fuse at 240 V is
/// 24 kW; 25 kW leaves headroom for meter rounding. A reading above this is a fault.
pub const MAX_POWER_KW: f64 = 25.0;
/// How far in the future an interval may start, to tolerate meter clock drift.
pub const MAX_FUTURE_SKEW_S: i64 = 300;
/// How old a reading may be by default: the retention of raw readings (730 days). An older
/// one would be expired by the store at once, and one request could rewrite years of history.
pub const DEFAULT_MAX_READING_AGE_DAYS: u32 = 730;

/// Energy used by one meter in one interval. Identified by `(meter_id, ts)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub meter_id: MeterId,
    /// Start of the interval, UTC.
    pub ts: DateTime<Utc>,
    pub kwh: f64,
    pub interval_s: u32,
}

/// Why a reading was refused: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl Reading {
    /// The physical and protocol rules every stored reading obeys, whenever it is looked at:
    /// they do not depend on a clock, so the sink checks a message by exactly these.
    pub fn check_format(&self) -> Result<(), FieldError> {
        if !KNOWN_INTERVALS_S.contains(&self.interval_s) {
            return Err(FieldError::new(
                "interval_s",
                format!("must be one of {KNOWN_INTERVALS_S:?}"),
            ));
        }
        if !self.kwh.is_finite() {
            return Err(FieldError::new("kwh", "must be a finite number"));
        }
        if self.kwh < 0.0 {
            return Err(FieldError::new("kwh", "must not be negative"));
        }
        let max = max_kwh(self.interval_s);
        if self.kwh > max {
            return Err(FieldError::new(
                "kwh",
                format!(
                    "{} kWh in {} s exceeds the physical limit of {max} kWh ({MAX_POWER_KW} kW)",
                    self.kwh, self.interval_s
                ),
            ));
        }
        if self.ts.timestamp_subsec_nanos() != 0
            || self.ts.timestamp().rem_euclid(i64::from(self.interval_s)) != 0
        {
            return Err(FieldError::new(
                "ts",
                format!(
                    "must be aligned to the start of a {} s interval",
                    self.interval_s
                ),
            ));
        }
        Ok(())
    }
}

/// When a reading may be dated, relative to the clock of the service that accepts it: at
/// most [`MAX_FUTURE_SKEW_S`] ahead, at most `max_age_days` behind. Judged once, by the
/// meter when it answers; what it accepted is stored whatever the sink's clock says later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptWindow {
    pub max_age_days: u32,
}

impl Default for AcceptWindow {
    fn default() -> Self {
        Self {
            max_age_days: DEFAULT_MAX_READING_AGE_DAYS,
        }
    }
}

impl AcceptWindow {
    pub fn check(&self, reading: &Reading, now: DateTime<Utc>) -> Result<(), FieldError> {
        let ts = reading.ts.timestamp();
        if ts > now.timestamp() + MAX_FUTURE_SKEW_S {
            return Err(FieldError::new(
                "ts",
                format!("is in the future (more than {MAX_FUTURE_SKEW_S} s ahead of server time)"),
            ));
        }
        if ts < now.timestamp() - i64::from(self.max_age_days) * 86_400 {
            return Err(FieldError::new(
                "ts",
                format!(
                    "is older than the retention of {} days; such a reading would not be kept",
                    self.max_age_days
                ),
            ));
        }
        Ok(())
    }
}

/// The largest energy a meter can report for an interval of `interval_s` seconds.
pub fn max_kwh(interval_s: u32) -> f64 {
    MAX_POWER_KW * f64::from(interval_s) / 3600.0
}

/// UTC instant from epoch milliseconds, for adapters that store integers.
pub fn from_epoch_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// UTC instant from epoch seconds, for adapters that store integers.
pub fn from_epoch(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A name from a closed set that was not one of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}` ({expected})")]
pub struct UnknownName {
    what: &'static str,
    given: String,
    expected: String,
}

/// The variant of a closed set spelled `s`, the way serde and the stores spell it (strum's
/// `AsRefStr`, in snake case like serde); the error lists the names there are.
fn parse_name<T>(what: &'static str, s: &str) -> Result<T, UnknownName>
where
    T: VariantArray + AsRef<str> + Clone,
{
    T::VARIANTS
        .iter()
        .find(|v| v.as_ref() == s)
        .cloned()
        .ok_or_else(|| UnknownName {
            what,
            given: s.to_owned(),
            expected: T::VARIANTS
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A closed set of names, spelled in snake case the same way everywhere: serde on the wire,
/// `AsRef<str>`/`Display` and `FromStr` in stores and forms.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Serialize,
            Deserialize,
            strum::AsRefStr,
            strum::Display,
            VariantArray,
            utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                parse_name($what, s)
            }
        }
    };
}

named_enum! {
    /// Kind of dwelling, which the load model and the estimator use.
    Dwelling("dwelling") {
        Flat,
        Terraced,
        SemiDetached,
        Detached,
    }
}

/// Relative electricity use by household size (1 to 5+ people).
fn size_factor(size: u8) -> f64 {
    match size {
        0 | 1 => 0.68,
        2 => 1.0,
        3 => 1.15,
        4 => 1.3,
        _ => 1.45,
    }
}

/// Relative electricity use by dwelling type.
fn dwelling_factor(d: Dwelling) -> f64 {
    match d {
        Dwelling::Flat => 0.82,
        Dwelling::Terraced => 1.05,
        Dwelling::SemiDetached => 1.2,
        Dwelling::Detached => 1.45,
    }
}

/// How a household's use compares with the typical one (two people in a terraced house,
/// factor 1): the simulator's load model and the estimator share these figures.
pub fn household_factor(size: u8, dwelling: Dwelling) -> f64 {
    size_factor(size) / size_factor(2) * dwelling_factor(dwelling)
        / dwelling_factor(Dwelling::Terraced)
}

/// A registered meter: where it is and the household behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Meter {
    pub meter_id: MeterId,
    /// `None` until the meter's location falls in a known region.
    pub region: Option<RegionCode>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub household_size: Option<u8>,
    pub dwelling: Option<Dwelling>,
    pub registered_at: DateTime<Utc>,
}

/// What the batch job computes for one region (docs/analytics.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileFigures {
    pub region: RegionCode,
    pub meters: u64,
    pub readings: u64,
    pub avg_daily_kwh: f64,
    pub p50_daily_kwh: f64,
    pub p90_daily_kwh: f64,
    pub weekday_avg_daily_kwh: Option<f64>,
    pub weekend_avg_daily_kwh: Option<f64>,
    /// Mean kWh in each local hour of a (meter, day), hours 0 to 23.
    pub hourly_kwh: [f64; 24],
    pub peak_hour: u8,
    /// Where households stand: the percentiles 0, 1, …, 100 of the meters' own mean daily
    /// kWh (a fixed-size sketch, whatever the number of meters). Empty in profiles computed
    /// before it existed. Kept for a household's own page, not published in the open API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meter_daily_percentiles: Vec<f64>,
    /// How the household-days behind the figures fared in validation; all zero in profiles
    /// computed before it existed.
    #[serde(default)]
    pub meter_days: MeterDayCounts,
}

/// Meter-days of a window by what validation made of them (docs/analytics.md, "Data
/// quality"): complete as read, kept with some intervals estimated, or left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeterDayCounts {
    pub complete: u64,
    pub estimated: u64,
    pub excluded: u64,
}

impl MeterDayCounts {
    /// The household-days the figures are based on.
    pub fn kept(&self) -> u64 {
        self.complete + self.estimated
    }

    /// Estimated days as a share of the kept ones; `None` before counts were kept.
    pub fn estimated_share(&self) -> Option<f64> {
        let kept = self.kept();
        (kept > 0).then(|| self.estimated as f64 / kept as f64)
    }
}

impl ProfileFigures {
    /// The share of the region's meters (0 to 100) whose mean daily kWh is below `kwh`,
    /// read off the percentile sketch; `None` without one.
    pub fn percentile_of(&self, kwh: f64) -> Option<f64> {
        let q = &self.meter_daily_percentiles;
        let (first, last) = (*q.first()?, *q.last()?);
        let step = 100.0 / (q.len().max(2) - 1) as f64;
        if kwh <= first {
            return Some(0.0);
        }
        if kwh >= last {
            return Some(100.0);
        }
        let i = q.partition_point(|v| *v <= kwh).saturating_sub(1);
        let (lo, hi) = (q[i], q[(i + 1).min(q.len() - 1)]);
        let within = if hi > lo { (kwh - lo) / (hi - lo) } else { 0.0 };
        Some((i as f64 + within) * step)
    }
}

/// The current energy profile of one region: the figures and the run that computed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegionProfile {
    pub run_id: String,
    pub window_from: DateTime<Utc>,
    pub window_to: DateTime<Utc>,
    pub computed_at: DateTime<Utc>,
    /// Its run replaced the map's profiles (kept with past runs' profiles, so a region's
    /// history for residents shows only what the map showed).
    #[serde(default = "published_by_default")]
    pub published: bool,
    #[serde(flatten)]
    pub figures: ProfileFigures,
}

named_enum! {
    /// Where a recompute run is in its life.
    RunStatus("run status") {
        Queued,
        Running,
        Succeeded,
        Failed,
    }
}

named_enum! {
    /// What started a run, as recorded on it: a closed set, so no caller writes free text into
    /// the run history.
    Trigger("trigger") {
        /// The analytics service's timer.
        Schedule,
        /// The all-in-one's first run, once the fleet's backfill is stored.
        Startup,
        /// `analytics run`.
        Cli,
        /// `POST /internal/v1/runs`.
        Api,
        /// The analyst console's "recompute now".
        Console,
    }
}

/// One recompute of the regional profiles. Times are kept to the millisecond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub run_id: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
    pub rows_scanned: u64,
    pub regions_written: u64,
    pub error: Option<String>,
    /// Its profiles replace the map's when it succeeds (every run over the default window;
    /// one over a chosen window only when the analyst asks). Records from before this field
    /// read as published.
    #[serde(default = "published_by_default")]
    pub published: bool,
}

fn published_by_default() -> bool {
    true
}

impl Run {
    /// A run just asked for: nothing started, nothing scanned.
    pub fn queued(run_id: String, trigger: Trigger, created_at: DateTime<Utc>) -> Self {
        Self {
            run_id,
            status: RunStatus::Queued,
            trigger,
            created_at,
            started_at: None,
            finished_at: None,
            window_from: None,
            window_to: None,
            rows_scanned: 0,
            regions_written: 0,
            error: None,
            published: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-21T12:00:00Z".parse().unwrap_or_default()
    }

    #[test]
    fn a_households_percentile_is_read_off_the_sketch() {
        let mut f: ProfileFigures = serde_json::from_value(serde_json::json!({
            "region": "E09000001", "meters": 3, "readings": 9, "avg_daily_kwh": 1.0,
            "p50_daily_kwh": 1.0, "p90_daily_kwh": 1.0, "weekday_avg_daily_kwh": null,
            "weekend_avg_daily_kwh": null, "hourly_kwh": vec![0.0; 24], "peak_hour": 0
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.percentile_of(5.0), None, "older profiles have no sketch");
        // 0 … 100 kWh in steps of 1: the percentile is the kWh.
        f.meter_daily_percentiles = (0..=100).map(f64::from).collect();
        assert_eq!(f.percentile_of(-1.0), Some(0.0));
        assert_eq!(f.percentile_of(37.5), Some(37.5));
        assert_eq!(f.percentile_of(250.0), Some(100.0));
    }

    #[test]
    fn closed_sets_parse_as_serde_spells_them_and_list_the_names() {
        for d in Dwelling::VARIANTS {
            let json = serde_json::to_string(d).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", d.as_ref()));
            assert_eq!(d.as_ref().parse::<Dwelling>().ok(), Some(*d));
        }
        let e = "bungalow".parse::<Dwelling>().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("unknown dwelling `bungalow` (flat, terraced, semi_detached, detached)")
        );
        assert_eq!("console".parse::<Trigger>().ok(), Some(Trigger::Console));
        assert_eq!(RunStatus::Succeeded.as_ref(), "succeeded");
    }

    proptest::proptest! {
        #[test]
        fn kwh_outside_the_physical_range_is_always_refused(kwh in proptest::num::f64::ANY) {
            let r = Reading { meter_id: MeterId::parse("m").unwrap_or_else(|e| panic!("{e}")), ts: now() - chrono::Duration::hours(1), kwh, interval_s: 1800 };
            let ok = kwh.is_finite() && (0.0..=max_kwh(1800)).contains(&kwh);
            proptest::prop_assert_eq!(r.check_format().is_ok(), ok);
        }
    }
}
