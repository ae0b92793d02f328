//! The store port: everything the platform keeps (meters, readings, regional profiles,
//! recompute runs). Adapters: [`sqlite::SqliteStore`] (embedded default) and, in its own
//! crate, Cassandra. Every adapter must pass the contract suite in [`contract`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Meter, MeterId, Reading, RegionCode, RegionProfile, Run};
use crate::live::{LiveEntry, LiveSlot};

pub mod sqlite;

#[cfg(any(test, feature = "contract"))]
pub mod contract;
#[cfg(any(test, feature = "contract"))]
pub mod double;

/// What caused a store error: the adapter's own error (a driver's, SQLite's, serde's) or a
/// message, kept so a caller can walk the chain (`Error::source`).
pub type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is busy: the caller should retry later.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Source),
    /// The store answered with data this version cannot read.
    #[error("store data is corrupt: {0}")]
    Corrupt(#[source] Source),
    /// The schema on disk does not match the migrations this binary carries.
    #[error("store schema mismatch: {0}")]
    Schema(#[source] Source),
    /// The store refused the request (no permission, a request it calls invalid): trying
    /// again will not help until an operator changes something.
    #[error("store refused the request: {0}")]
    Refused(#[source] Source),
}

/// Counts an operator looks at to see that data flows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreSummary {
    pub meters: u64,
    pub readings: u64,
    /// Meters per region code, with `None` for meters in no known region.
    pub meters_by_region: Vec<(Option<RegionCode>, u64)>,
    /// Registered meters that have at least one reading.
    pub meters_with_readings: u64,
    pub latest_reading: Option<DateTime<Utc>>,
    /// Each meter's newest reading (by its start), for every meter that has one, ordered by
    /// meter: how silent meters are found. Not part of the summary's JSON.
    #[serde(skip)]
    pub last_reading_by_meter: Vec<(MeterId, DateTime<Utc>)>,
}

/// How long past runs' profiles are kept (as long as run records).
pub const HISTORY_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(365);

/// Most readings one read-back call returns: a year of half-hourly data is 17,520.
pub const MAX_READBACK: usize = 20_000;

/// A reading with the region of its meter, as the batch job scans them.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionReading {
    pub region: RegionCode,
    pub meter_id: MeterId,
    pub ts: DateTime<Utc>,
    pub kwh: f64,
    /// The reading's interval, where the store keeps it next to the region.
    pub interval_s: Option<u32>,
}

/// A part of a window scan that can be read on its own, in parallel with the other parts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanSlice {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Which part of the window, opaque to callers; empty for all of it.
    pub part: String,
}

impl ScanSlice {
    /// The whole window as one slice.
    pub fn whole(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self {
            from,
            to,
            part: String::new(),
        }
    }
}

/// One page of a window scan, and where the next page starts (`None`: the scan is done).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanPage {
    pub rows: Vec<RegionReading>,
    /// Opaque to callers; only the adapter that made it reads it.
    pub next: Option<String>,
}

/// The answer to [`Store::acquire_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The asker holds the lease now (taken, or renewed).
    Acquired,
    /// Another holder has it; the asker may try again later.
    HeldBy(String),
}

impl Lease {
    /// From the holder the store found: the asker's own name means it holds the lease.
    pub fn of(current: String, asker: &str) -> Self {
        if current == asker {
            Self::Acquired
        } else {
            Self::HeldBy(current)
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Registers meters or updates their registration (keyed by `meter_id`).
    async fn upsert_meters(&self, meters: &[Meter]) -> Result<(), StoreError>;
    async fn meter(&self, meter_id: &MeterId) -> Result<Option<Meter>, StoreError>;
    /// All registered meters, ordered by id.
    async fn meters(&self) -> Result<Vec<Meter>, StoreError>;

    /// Upserts readings keyed by `(meter_id, ts)`: writing one twice stores it once, and the
    /// later write wins. All or nothing.
    async fn write_readings(&self, readings: &[Reading]) -> Result<(), StoreError>;
    /// One meter's readings with `from <= ts < to`, oldest first, at most `limit`.
    async fn meter_readings(
        &self,
        meter_id: &MeterId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError>;

    /// The slices a scan of `from <= ts < to` splits into: together they hold every reading
    /// of the window once (of the meters in `regions` only, when given).
    async fn scan_slices(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        regions: Option<&[RegionCode]>,
    ) -> Result<Vec<ScanSlice>, StoreError>;

    /// Readings of one slice of meters registered in a region, tagged with that region, in
    /// pages of at most `limit`: pass each page's `next` to get the following one. Every such
    /// reading appears in exactly one page; readings of meters in no region are left out.
    async fn scan_readings(
        &self,
        slice: &ScanSlice,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError>;

    /// Replaces the current profile of each region named in `profiles`; other regions keep
    /// theirs.
    async fn put_profiles(&self, profiles: &[RegionProfile]) -> Result<(), StoreError>;
    /// The current profile of every region that has one, ordered by region.
    async fn profiles(&self) -> Result<Vec<RegionProfile>, StoreError>;

    /// Keeps a succeeded run's profiles (each names its run) for comparisons and each
    /// region's history, for [`HISTORY_RETENTION`]; the current profiles are not touched.
    async fn put_run_profiles(&self, profiles: &[RegionProfile]) -> Result<(), StoreError>;
    /// The profiles one run computed, ordered by region; empty for a run unknown or expired.
    async fn run_profiles(&self, run_id: &str) -> Result<Vec<RegionProfile>, StoreError>;
    /// One region's profiles over past runs, newest first, at most `limit`.
    async fn region_history(
        &self,
        region: &RegionCode,
        limit: usize,
    ) -> Result<Vec<RegionProfile>, StoreError>;

    /// Creates or replaces a run record (keyed by `run_id`).
    async fn put_run(&self, run: &Run) -> Result<(), StoreError>;
    async fn run(&self, run_id: &str) -> Result<Option<Run>, StoreError>;
    /// The newest runs first, at most `limit`.
    async fn runs(&self, limit: usize) -> Result<Vec<Run>, StoreError>;

    async fn summary(&self) -> Result<StoreSummary, StoreError>;

    /// Voids the meter's tokens issued up to `at` (a later revocation moves the instant).
    /// Works for any meter id, registered or not: tokens do not depend on registration.
    async fn revoke_meter(&self, meter_id: &MeterId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Every revocation, as (meter id, instant), in no particular order.
    async fn revocations(&self) -> Result<Vec<(MeterId, DateTime<Utc>)>, StoreError>;

    /// Takes the named lease for `holder` until `ttl` from now, or renews it when `holder`
    /// has it already. [`Lease::HeldBy`] another holder leaves it unchanged: the store
    /// decides atomically, so of several processes asking at once exactly one gets it.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Lease, StoreError>;
    /// Gives the lease up if `holder` has it; a lease someone else holds is left alone.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// The live aggregator's state for bus part `part`: upserts `entries` (keyed by
    /// `(part, meter_id, ts)`) and the part's figures `slots` (keyed by `(slot, region,
    /// part)`), so writing the same state twice changes nothing. Rows whose slot has left
    /// [`crate::live::WINDOW`] go, in the adapter's own way (deleted, or expired).
    async fn put_live(
        &self,
        part: u32,
        entries: &[LiveEntry],
        slots: &[LiveSlot],
    ) -> Result<(), StoreError>;
    /// Part `part`'s entries whose reading starts at or after `from`, in no particular order:
    /// what a restarted aggregator rebuilds from.
    async fn live_entries(
        &self,
        part: u32,
        from: DateTime<Utc>,
    ) -> Result<Vec<LiveEntry>, StoreError>;
    /// The figures of every slot from `from` on, summed over parts, ordered by region and
    /// slot.
    async fn live_slots(&self, from: DateTime<Utc>) -> Result<Vec<LiveSlot>, StoreError>;
}

/// Sums per-part figures into one per (region, slot), ordered by region and slot: how every
/// adapter answers [`Store::live_slots`].
pub fn sum_live_parts(rows: impl IntoIterator<Item = LiveSlot>) -> Vec<LiveSlot> {
    let mut summed: std::collections::BTreeMap<(RegionCode, DateTime<Utc>), LiveSlot> =
        std::collections::BTreeMap::new();
    for row in rows {
        match summed.entry((row.region.clone(), row.slot)) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().add(&row),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(row);
            }
        }
    }
    summed.into_values().collect()
}
