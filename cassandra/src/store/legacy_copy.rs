//! The copy of the readings of the tables before migration 6 into the current ones.

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use iot_common::domain::{MeterId, Reading};
use iot_common::store::{Store, StoreError};

use super::{CassandraStore, decode};
use crate::client::{ClientError, rows};
use crate::statements as cql;

/// Readings the legacy copy writes at once.
const COPY_BATCH: usize = 5_000;

impl CassandraStore {
    /// Copies the readings of the tables before migration 6 (`readings_by_meter`, indexed by
    /// `meter_days`) into the current ones, through the same write path as the sink: safe to
    /// run again, and while the sink runs. Answers how many readings it wrote.
    pub async fn copy_legacy_readings(&self) -> Result<u64, StoreError> {
        let days = self
            .client
            .session
            .query_iter(cql::LEGACY_METER_DAYS, ())
            .await
            .map_err(ClientError::from)?
            .rows_stream::<(String, NaiveDate)>()
            .map_err(decode)?
            .map_err(|e| StoreError::Unavailable(e.into()));
        let legacy = self
            .client
            .session
            .prepare(cql::LEGACY_READINGS)
            .await
            .map_err(ClientError::from)?;
        let legacy = &legacy;
        let mut readings = days
            .map_ok(|(meter, day)| async move {
                let meter_id = MeterId::parse(&meter).map_err(decode)?;
                let result = self
                    .client
                    .execute("legacy readings", legacy, (meter.as_str(), day))
                    .await?;
                rows::<(DateTime<Utc>, f64, Option<i32>)>(result)?
                    .into_iter()
                    .map(|(ts, kwh, interval_s)| {
                        Ok(Reading {
                            meter_id: meter_id.clone(),
                            ts,
                            kwh,
                            interval_s: u32::try_from(interval_s.unwrap_or(1800))
                                .map_err(decode)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .try_buffer_unordered(crate::write_path::FAN_OUT);
        let (mut batch, mut copied) = (Vec::with_capacity(COPY_BATCH), 0u64);
        while let Some(day) = readings.try_next().await? {
            batch.extend(day);
            if batch.len() >= COPY_BATCH {
                self.write_readings(&batch).await?;
                copied += batch.len() as u64;
                tracing::info!(copied, "copying legacy readings");
                batch.clear();
            }
        }
        self.write_readings(&batch).await?;
        Ok(copied + batch.len() as u64)
    }
}
