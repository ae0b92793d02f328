//! The store's summary for the status page, counted where it is asked for.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use iot_common::domain::{MeterId, RegionCode};
use iot_common::store::{Store, StoreError, StoreSummary};

use super::CassandraStore;
use crate::client::rows;
use crate::layout::day_start;
use crate::write_path::fan_out;

impl CassandraStore {
    pub(super) async fn count_summary(&self) -> Result<StoreSummary, StoreError> {
        let meters = self.meters().await?;
        let mut by_region: BTreeMap<Option<RegionCode>, u64> = BTreeMap::new();
        for m in &meters {
            *by_region.entry(m.region.clone()).or_default() += 1;
        }
        // Counted here, where the count is asked for (the status page caches it), not kept
        // per write: one count per meter-month partition that has readings.
        let days: Vec<(String, NaiveDate, Option<DateTime<Utc>>)> =
            self.all_rows(&self.statements.meter_days_all).await?;
        let mut latest: Option<DateTime<Utc>> = None;
        let mut by_meter: BTreeMap<String, Option<DateTime<Utc>>> = BTreeMap::new();
        let mut partitions: BTreeSet<(String, NaiveDate)> = BTreeSet::new();
        for (meter, day, last) in days {
            latest = latest.max(last);
            partitions.insert((meter.clone(), crate::layout::month_of(day_start(day))));
            let newest = by_meter.entry(meter).or_default();
            *newest = (*newest).max(last);
        }
        let counts = fan_out(
            partitions
                .iter()
                .map(|(meter, month)| async move {
                    let result = self
                        .client
                        .execute(
                            "count meter month",
                            &self.statements.meter_month_count,
                            (meter.as_str(), *month),
                        )
                        .await?;
                    let n = rows::<(i64,)>(result)?
                        .into_iter()
                        .next()
                        .map_or(0, |r| r.0);
                    Ok::<_, StoreError>(n.max(0) as u64)
                })
                .collect(),
        )
        .await?;
        let readings: u64 = counts.iter().sum();
        let registered_with_readings = meters
            .iter()
            .filter(|m| by_meter.contains_key(m.meter_id.as_str()))
            .count() as u64;
        // Ids that do not parse were never written by this version: left out, as the scan
        // leaves them out.
        let last_reading_by_meter = by_meter
            .into_iter()
            .filter_map(|(meter, last)| Some((MeterId::parse(meter).ok()?, last?)))
            .collect();
        Ok(StoreSummary {
            meters: meters.len() as u64,
            readings,
            meters_by_region: by_region.into_iter().collect(),
            meters_with_readings: registered_with_readings,
            latest_reading: latest,
            last_reading_by_meter,
        })
    }
}
