//! Re-filing: a meter's readings follow it into its region's partitions when it is placed
//! or moves (see the store's module comment for when that happens).

use chrono::{NaiveDate, TimeDelta};
use iot_common::domain::{Meter, MeterId, Reading, RegionCode};
use iot_common::store::{Store, StoreError};

use super::CassandraStore;
use crate::client::rows;
use crate::layout::day_start;
use crate::write_path::{Regions, Write, WritePort, fan_out, region_rows, write_parts};

impl CassandraStore {
    /// Writes the meters and re-files the readings of those whose region changed.
    pub(super) async fn put_meters_refiling(&self, meters: &[Meter]) -> Result<(), StoreError> {
        // The regions they had, to re-file their readings if that changes.
        let before: Regions = fan_out(
            meters
                .iter()
                .map(|m| async move {
                    let region = self.meter_region(&m.meter_id).await?;
                    Ok::<_, StoreError>((m.meter_id.clone(), region))
                })
                .collect(),
        )
        .await?
        .into_iter()
        .collect();
        fan_out(meters.iter().map(|m| self.put_meter(m)).collect()).await?;
        for m in meters {
            self.writer.cache().put(&m.meter_id, m.region.as_ref());
        }
        let moved: Vec<_> = meters
            .iter()
            .filter_map(|m| {
                let old = before.get(&m.meter_id).cloned().flatten();
                (old != m.region).then_some((m, old))
            })
            .map(|(m, old)| async move {
                let refiled = self
                    .refile(&m.meter_id, old.as_ref(), m.region.as_ref())
                    .await;
                if refiled.is_err() {
                    // Put the old region back, so that the caller's retry sees the change
                    // again and re-files then.
                    let back = Meter {
                        region: old,
                        ..m.clone()
                    };
                    self.writer.cache().put(&m.meter_id, None);
                    self.put_meter(&back).await?;
                }
                refiled
            })
            .collect();
        fan_out(moved).await?;
        Ok(())
    }

    pub(super) async fn put_meter(&self, m: &Meter) -> Result<(), StoreError> {
        let values = (
            m.meter_id.as_str(),
            m.region.as_deref(),
            m.lat,
            m.lon,
            m.household_size.map(i32::from),
            m.dwelling.as_ref().map(AsRef::<str>::as_ref),
            m.registered_at,
        );
        self.client
            .execute("upsert meter", &self.statements.meter_upsert, values)
            .await?;
        Ok(())
    }

    /// Every stored reading of one meter, from its first day with readings (in
    /// `meter_data_days`) to its last.
    async fn all_readings_of(&self, meter_id: &MeterId) -> Result<Vec<Reading>, StoreError> {
        let result = self
            .client
            .execute(
                "meter days",
                &self.statements.meter_days_of,
                (meter_id.as_str(),),
            )
            .await?;
        let days: Vec<NaiveDate> = rows::<(NaiveDate,)>(result)?
            .into_iter()
            .map(|r| r.0)
            .collect();
        let (Some(first), Some(last)) = (days.iter().min(), days.iter().max()) else {
            return Ok(Vec::new());
        };
        let to = day_start(*last) + TimeDelta::days(1);
        self.meter_readings(meter_id, day_start(*first), to, usize::MAX)
            .await
    }

    /// Re-files a meter's stored readings after its region changed from `old` to `new`:
    /// into the new region's partitions, out of the old one's. Runs after the meter row is
    /// written, so a reading stored meanwhile is either seen here or sees the new region.
    pub(super) async fn refile(
        &self,
        meter_id: &MeterId,
        old: Option<&RegionCode>,
        new: Option<&RegionCode>,
    ) -> Result<(), StoreError> {
        let readings = self.all_readings_of(meter_id).await?;
        if readings.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Reading> = readings.iter().collect();
        let shards = self.writer.shards();
        let under = |region: &RegionCode| Regions::from([(meter_id.clone(), Some(region.clone()))]);
        // Into the new region first: a reading is never in neither.
        for (region, statement, key_only) in [
            (new, Write::ByRegion, false),
            (old, Write::ByRegionDelete, true),
        ] {
            if let Some(region) = region {
                let parts = region_rows(&refs, &under(region), shards, key_only);
                write_parts(self, statement, parts).await?;
            }
        }
        tracing::info!(
            meter = %meter_id,
            ?old,
            ?new,
            readings = readings.len(),
            "meter's readings re-filed under its region"
        );
        Ok(())
    }
}
