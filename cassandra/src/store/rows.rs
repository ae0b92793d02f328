//! Rows of the store's tables, decoded into domain types.

use chrono::{DateTime, Utc};
use iot_common::domain::{Meter, RegionProfile, Run};
use iot_common::store::StoreError;
use scylla::DeserializeRow;

use super::decode;

pub(super) fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A row of `meters`, by column name.
#[derive(DeserializeRow)]
pub(super) struct MeterRow {
    pub(super) meter_id: String,
    pub(super) region: Option<String>,
    pub(super) lat: Option<f64>,
    pub(super) lon: Option<f64>,
    pub(super) household_size: Option<i32>,
    pub(super) dwelling: Option<String>,
    pub(super) registered_at: Option<DateTime<Utc>>,
}

impl TryFrom<MeterRow> for Meter {
    type Error = StoreError;
    fn try_from(r: MeterRow) -> Result<Meter, StoreError> {
        Ok(Meter {
            meter_id: r.meter_id.parse().map_err(decode)?,
            region: r.region.map(|c| c.parse()).transpose().map_err(decode)?,
            lat: r.lat,
            lon: r.lon,
            household_size: r.household_size.and_then(|s| u8::try_from(s).ok()),
            dwelling: r.dwelling.map(|d| d.parse()).transpose().map_err(decode)?,
            registered_at: r.registered_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
        })
    }
}

/// A row of `runs`, by column name.
#[derive(DeserializeRow)]
pub(super) struct RunRow {
    run_id: String,
    status: Option<String>,
    run_trigger: Option<String>,
    created_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    window_from: Option<DateTime<Utc>>,
    window_to: Option<DateTime<Utc>>,
    rows_scanned: Option<i64>,
    regions_written: Option<i64>,
    error: Option<String>,
    published: Option<bool>,
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;
    fn try_from(r: RunRow) -> Result<Run, StoreError> {
        Ok(Run {
            run_id: r.run_id,
            status: r.status.unwrap_or_default().parse().map_err(decode)?,
            trigger: r.run_trigger.unwrap_or_default().parse().map_err(decode)?,
            created_at: r.created_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
            started_at: r.started_at,
            finished_at: r.finished_at,
            window_from: r.window_from,
            window_to: r.window_to,
            rows_scanned: r.rows_scanned.unwrap_or(0).max(0) as u64,
            regions_written: r.regions_written.unwrap_or(0).max(0) as u64,
            error: r.error,
            // Written before the column existed: every run then was published.
            published: r.published.unwrap_or(true),
        })
    }
}

/// Profiles stored as JSON, in row order; a null is passed over.
pub(super) fn profiles_from_json(
    rows: Vec<(Option<String>,)>,
) -> Result<Vec<RegionProfile>, StoreError> {
    rows.into_iter()
        .filter_map(|r| r.0)
        .map(|json| serde_json::from_str(&json).map_err(decode))
        .collect()
}
