//! The store's statements, prepared once at connect time.

use iot_common::store::StoreError;
use scylla::statement::prepared::PreparedStatement;

use super::at_start_up;
use crate::client::Client;
use crate::statements as cql;
use crate::write_path::Write;

/// Every statement the store runs, prepared once at connect time.
pub(super) struct Prepared {
    pub(super) ping: PreparedStatement,
    pub(super) meter_upsert: PreparedStatement,
    pub(super) meter_get: PreparedStatement,
    pub(super) meters_all: PreparedStatement,
    pub(super) meter_region: PreparedStatement,
    pub(super) by_meter_upsert: PreparedStatement,
    pub(super) by_region_upsert: PreparedStatement,
    pub(super) by_region_delete: PreparedStatement,
    pub(super) meter_day_put: PreparedStatement,
    pub(super) meter_days_all: PreparedStatement,
    pub(super) meter_days_of: PreparedStatement,
    pub(super) meter_month_count: PreparedStatement,
    pub(super) meter_readings: PreparedStatement,
    pub(super) region_day_scan: PreparedStatement,
    pub(super) profile_put: PreparedStatement,
    pub(super) profiles_all: PreparedStatement,
    pub(super) run_put: PreparedStatement,
    pub(super) run_profile_put: PreparedStatement,
    pub(super) run_profiles: PreparedStatement,
    pub(super) history_put: PreparedStatement,
    pub(super) history_newest: PreparedStatement,
    pub(super) run_get: PreparedStatement,
    pub(super) run_index_put: PreparedStatement,
    pub(super) run_index_newest: PreparedStatement,
    pub(super) revocation_put: PreparedStatement,
    pub(super) revocations_all: PreparedStatement,
    pub(super) live_entry_put: PreparedStatement,
    pub(super) live_entries_of: PreparedStatement,
    pub(super) live_slot_put: PreparedStatement,
    pub(super) live_slots_of_day: PreparedStatement,
}

impl Prepared {
    /// The prepared form of one of the write path's writes.
    pub(super) fn for_write(&self, write: Write) -> &PreparedStatement {
        match write {
            Write::ByMeter => &self.by_meter_upsert,
            Write::ByRegion => &self.by_region_upsert,
            Write::ByRegionDelete => &self.by_region_delete,
            Write::MeterDay => &self.meter_day_put,
        }
    }

    /// Prepares every statement; fails as at start-up (see `at_start_up`).
    pub(super) async fn all(client: &Client) -> Result<Self, StoreError> {
        let mut region_day_scan = prepare(client, cql::REGION_DAY_SCAN).await?;
        region_day_scan.set_execution_profile_handle(Some(client.scan_profile.clone()));
        Ok(Prepared {
            ping: prepare(client, cql::PING).await?,
            meter_upsert: prepare(client, cql::METER_UPSERT).await?,
            meter_get: prepare(client, cql::METER_GET).await?,
            meters_all: prepare(client, cql::METERS_ALL).await?,
            meter_region: prepare(client, cql::METER_REGION).await?,
            by_meter_upsert: prepare(client, Write::ByMeter.cql()).await?,
            by_region_upsert: prepare(client, Write::ByRegion.cql()).await?,
            by_region_delete: prepare(client, Write::ByRegionDelete.cql()).await?,
            meter_day_put: prepare(client, Write::MeterDay.cql()).await?,
            meter_days_all: prepare(client, cql::METER_DAYS_ALL).await?,
            meter_days_of: prepare(client, cql::METER_DAYS_OF).await?,
            meter_month_count: prepare(client, cql::METER_MONTH_COUNT).await?,
            meter_readings: prepare(client, cql::METER_READINGS).await?,
            region_day_scan,
            profile_put: prepare(client, cql::PROFILE_PUT).await?,
            profiles_all: prepare(client, cql::PROFILES_ALL).await?,
            run_put: prepare(client, cql::RUN_PUT).await?,
            run_profile_put: prepare(client, cql::RUN_PROFILE_PUT).await?,
            run_profiles: prepare(client, cql::RUN_PROFILES).await?,
            history_put: prepare(client, cql::HISTORY_PUT).await?,
            history_newest: prepare(client, cql::HISTORY_NEWEST).await?,
            run_get: prepare(client, cql::RUN_GET).await?,
            run_index_put: prepare(client, cql::RUN_INDEX_PUT).await?,
            run_index_newest: prepare(client, cql::RUN_INDEX_NEWEST).await?,
            revocation_put: prepare(client, cql::REVOCATION_PUT).await?,
            revocations_all: prepare(client, cql::REVOCATIONS_ALL).await?,
            live_entry_put: prepare(client, cql::LIVE_ENTRY_PUT).await?,
            live_entries_of: prepare(client, cql::LIVE_ENTRIES_OF).await?,
            live_slot_put: prepare(client, cql::LIVE_SLOT_PUT).await?,
            live_slots_of_day: prepare(client, cql::LIVE_SLOTS_OF_DAY).await?,
        })
    }
}

async fn prepare(client: &Client, text: &str) -> Result<PreparedStatement, StoreError> {
    let mut p = client
        .session
        .prepare(text)
        .await
        .map_err(|e| at_start_up(e.into(), format!("cannot prepare `{text}`")))?;
    // Every statement here is an upsert or a read: safe to retry and to speculate.
    p.set_is_idempotent(true);
    Ok(p)
}
