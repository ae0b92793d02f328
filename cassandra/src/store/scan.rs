//! The profile job's scan: slices of (region, day, shard) partitions, read page by page.

use std::collections::BTreeSet;

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use iot_common::domain::{MeterId, RegionCode};
use iot_common::store::{RegionReading, ScanPage, ScanSlice, StoreError};
use scylla::response::PagingState;

use super::rows::MeterRow;
use super::{CassandraStore, decode};
use crate::client::rows;
use crate::layout::{day_start, days, parse_part, shard_of, slice_part};

impl CassandraStore {
    pub(super) async fn slices(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        only: Option<&[RegionCode]>,
    ) -> Result<Vec<ScanSlice>, StoreError> {
        // The (region, shard) partitions that can hold readings: those of the meters placed
        // in a region now (a meter's rows follow it when it moves). Regions with no meters
        // and shards with no meter cost nothing.
        let meters: Vec<MeterRow> = self.all_rows(&self.statements.meters_all).await?;
        let shards = self.writer.shards();
        let mut parts: BTreeSet<(String, i32)> = BTreeSet::new();
        for m in meters {
            let Some(region) = m.region else { continue };
            if only.is_none_or(|only| only.iter().any(|o| o.as_str() == region)) {
                let shard = shard_of(&m.meter_id, shards);
                parts.insert((region, shard));
            }
        }
        let mut slices = Vec::new();
        for day in days(from, to) {
            let start = day_start(day).max(from);
            let end = (day_start(day) + TimeDelta::days(1)).min(to);
            for (region, shard) in &parts {
                slices.push(ScanSlice {
                    from: start,
                    to: end,
                    part: slice_part(region, day, *shard),
                });
            }
        }
        Ok(slices)
    }

    pub(super) async fn scan_page(
        &self,
        slice: &ScanSlice,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        let (region, day, shard) = parse_part(&slice.part)?;
        let paging = match cursor {
            None => PagingState::start(),
            Some(c) => PagingState::new_from_raw_bytes(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .map_err(|_| StoreError::Corrupt(format!("bad scan cursor `{c}`").into()))?,
            ),
        };
        let mut statement = self.statements.region_day_scan.clone();
        statement.set_page_size(i32::try_from(limit.max(1)).unwrap_or(i32::MAX));
        let values = (region.as_str(), day, shard, slice.from, slice.to);
        let (result, next) = self
            .client
            .run("scan region day shard", || {
                self.client
                    .session
                    .execute_single_page(&statement, values, paging.clone())
            })
            .await?;
        let rows = rows::<(DateTime<Utc>, String, f64, Option<i32>)>(result)?
            .into_iter()
            .map(|(ts, meter_id, kwh, interval_s)| {
                Ok(RegionReading {
                    region: region.clone(),
                    meter_id: MeterId::parse(meter_id).map_err(decode)?,
                    ts,
                    kwh,
                    interval_s: interval_s.and_then(|i| u32::try_from(i).ok()),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let next = match next.into_paging_control_flow() {
            std::ops::ControlFlow::Break(()) => None,
            std::ops::ControlFlow::Continue(state) => state
                .as_bytes_slice()
                .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)),
        };
        Ok(ScanPage { rows, next })
    }
}
