//! The store port on Cassandra (keyspace `iot_demo`, tables from `migrations/cql`).
//!
//! Every statement is prepared once at connect time. The sink's writes go through
//! [`ReadingWriter`]: writes only, no read per write (`write_path`). Readings live by meter
//! and month and by (region, day, shard); the shard count is the keyspace's own, fixed by
//! `migrate` (`store_settings`). Writes are idempotent upserts, so a write that fails
//! part-way is made whole by writing the same readings again (the sink does: it commits
//! offsets only after a write succeeds).
//!
//! A reading is filed under its meter's region when written. Readings of a meter in no
//! region are kept by meter only, and filed under the region when the meter is placed:
//! registration re-files the meter's stored readings ([`CassandraStore::refile`]), and a
//! write whose meter had no region looks again once its readings are stored. A meter that
//! moves is re-filed by the process that moves it, and again by any sink whose cached region
//! turns out stale, so the same history gives the same profiles as on SQLite, which joins at
//! scan time (see `docs/capacity.md` for the window in between).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use iot_common::domain::{Meter, MeterId, Reading, RegionCode, RegionProfile, Run};
use iot_common::live::{LiveEntry, LiveSlot};
use iot_common::store::{Lease, ScanPage, ScanSlice, Store, StoreError, StoreSummary};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use crate::client::{Client, ClientError, rows};
use crate::config::CassandraConfig;
use crate::layout::{REGION_SHARDS, months};
use crate::lease::LEASES;
use crate::region_cache::RegionCache;
use crate::statements as cql;
use crate::write_path::{ReadingWriter, Row, Write, WritePort, fan_out};

mod legacy_copy;
mod live;
mod prepared;
mod refile;
mod rows;
mod scan;
mod summary;

use prepared::Prepared;
use rows::{MeterRow, RunRow, count, profiles_from_json};

impl From<ClientError> for StoreError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Decode(m) => StoreError::Corrupt(m.into()),
            e if e.is_permanent() => StoreError::Refused(e.into()),
            other => StoreError::Unavailable(other.into()),
        }
    }
}

pub(crate) fn decode(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string().into())
}

/// A failure while connecting: one that passes (a timeout, a node starting) is "unavailable",
/// so the binary tries again; anything else is about the schema or the settings.
fn at_start_up(e: ClientError, context: String) -> StoreError {
    let message = format!("{context}: {e}");
    if e.is_transient() {
        StoreError::Unavailable(message.into())
    } else if e.is_permanent() {
        StoreError::Refused(message.into())
    } else {
        StoreError::Schema(message.into())
    }
}

/// Statements per unlogged batch: a day of 15-minute readings is 96, and Cassandra warns
/// about batches over 5 KiB.
const BATCH_ROWS: usize = 48;
const RUNS_BUCKET: &str = "all";
/// The one partition of `meter_revocations`.
const REVOCATIONS_SHARD: i32 = 0;

#[derive(Clone)]
pub struct CassandraStore {
    client: Client,
    statements: Arc<Prepared>,
    writer: Arc<ReadingWriter>,
}

impl CassandraStore {
    /// Connects to the keyspace, checks that its migrations are applied, prepares every
    /// statement and reads the keyspace's shard count. A failure that passes (a node still
    /// starting, a timeout) is `Unavailable`, so a binary waiting for the cluster tries again.
    pub async fn connect(config: &CassandraConfig) -> Result<Self, StoreError> {
        let client = Client::connect(config).await?;
        client.use_keyspace(&config.keyspace).await.map_err(|e| {
            at_start_up(
                e,
                format!(
                    "keyspace `{}` is not usable (run `migrate` first)",
                    config.keyspace
                ),
            )
        })?;
        crate::migrate::verify(&client, iot_migrations::CQL)
            .await
            .map_err(|e| match e {
                crate::migrate::MigrateError::Client(e) => {
                    at_start_up(e, "cannot read the applied migrations".into())
                }
                other => StoreError::Schema(other.into()),
            })?;
        let statements = Prepared::all(&client).await?;
        let shards = keyspace_shards(&client, &config.keyspace, config.region_shards).await?;
        let cache = RegionCache::new(config.region_cache_entries, config.region_cache_ttl);
        tracing::info!(
            region_shards = shards,
            region_cache_ttl_s = config.region_cache_ttl.as_secs(),
            "Cassandra store ready"
        );
        Ok(Self {
            client,
            statements: Arc::new(statements),
            writer: Arc::new(ReadingWriter::new(cache, shards)),
        })
    }

    async fn batch(
        &self,
        statement: &PreparedStatement,
        values: Vec<Row>,
    ) -> Result<(), StoreError> {
        if let [row] = values.as_slice() {
            self.client.execute("write", statement, row).await?;
            return Ok(());
        }
        for chunk in values.chunks(BATCH_ROWS) {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in chunk {
                batch.append_statement(statement.clone());
            }
            batch.set_is_idempotent(true);
            self.client
                .run("write batch", || self.client.session.batch(&batch, chunk))
                .await?;
        }
        Ok(())
    }

    /// Every row of a table query, page by page.
    async fn all_rows<T>(&self, statement: &PreparedStatement) -> Result<Vec<T>, StoreError>
    where
        T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        self.rows_of(statement, ()).await
    }

    /// Every row a statement answers with `values`, paged.
    async fn rows_of<T>(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<T>, StoreError>
    where
        T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let pager = self
            .client
            .session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(ClientError::from)?;
        pager
            .rows_stream::<T>()
            .map_err(decode)?
            .map_err(|e| StoreError::Unavailable(e.into()))
            .try_collect()
            .await
    }
}

/// The keyspace's shards per region-day (`store_settings`), checked against the configured
/// value when one is given: processes that disagreed would file and scan different shards.
async fn keyspace_shards(
    client: &Client,
    keyspace: &str,
    configured: Option<u32>,
) -> Result<u32, StoreError> {
    let result = client
        .query("read settings", cql::SETTING_GET, (REGION_SHARDS,))
        .await
        .map_err(|e| at_start_up(e, "cannot read store_settings".into()))?;
    let stored = rows::<(Option<i32>,)>(result)?
        .into_iter()
        .next()
        .and_then(|r| r.0)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=crate::layout::MAX_REGION_SHARDS).contains(n));
    match (stored, configured) {
        (None, _) => Err(StoreError::Schema(
            format!("keyspace `{keyspace}` has no valid region_shards setting: run `migrate`").into(),
        )),
        (Some(n), Some(c)) if n != c => Err(StoreError::Schema(
            format!(
                "IOT_CASSANDRA_REGION_SHARDS is {c} but keyspace `{keyspace}` files readings in {n} shards; unset it or set it to {n}"
            )
            .into(),
        )),
        (Some(n), _) => Ok(n),
    }
}

#[async_trait]
impl WritePort for CassandraStore {
    async fn write(&self, write: Write, rows: Vec<Row>) -> Result<(), StoreError> {
        self.batch(self.statements.for_write(write), rows).await
    }

    async fn meter_region(&self, meter: &MeterId) -> Result<Option<RegionCode>, StoreError> {
        let result = self
            .client
            .execute(
                "meter region",
                &self.statements.meter_region,
                (meter.as_str(),),
            )
            .await?;
        rows::<(Option<String>,)>(result)?
            .into_iter()
            .next()
            .and_then(|r| r.0)
            .map(RegionCode::parse)
            .transpose()
            .map_err(decode)
    }
}

#[async_trait]
impl Store for CassandraStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .execute("ping", &self.statements.ping, ())
            .await?;
        Ok(())
    }

    async fn upsert_meters(&self, meters: &[Meter]) -> Result<(), StoreError> {
        self.put_meters_refiling(meters).await
    }

    async fn meter(&self, meter_id: &MeterId) -> Result<Option<Meter>, StoreError> {
        let result = self
            .client
            .execute(
                "get meter",
                &self.statements.meter_get,
                (meter_id.as_str(),),
            )
            .await?;
        rows::<MeterRow>(result)?
            .into_iter()
            .next()
            .map(Meter::try_from)
            .transpose()
    }

    async fn meters(&self) -> Result<Vec<Meter>, StoreError> {
        let rows: Vec<MeterRow> = self.all_rows(&self.statements.meters_all).await?;
        let mut meters = rows
            .into_iter()
            .map(Meter::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        meters.sort_by(|a, b| a.meter_id.cmp(&b.meter_id));
        Ok(meters)
    }

    async fn write_readings(&self, readings: &[Reading]) -> Result<(), StoreError> {
        let moved = self.writer.write(self, readings).await?;
        // A sink's cached region was stale: readings it filed since the move may sit under
        // the old region. Re-filing all of the meter's readings is idempotent and rare.
        for m in moved {
            self.refile(&m.meter, Some(&m.old), m.new.as_ref()).await?;
        }
        Ok(())
    }

    async fn meter_readings(
        &self,
        meter_id: &MeterId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        // Month by month in order, at most 13 partitions a year; each query may return the
        // whole limit, and the loop stops at it.
        let most = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut out = Vec::new();
        let mut pages = futures::stream::iter(months(from, to))
            .map(|month| async move {
                let result = self
                    .client
                    .execute(
                        "meter readings",
                        &self.statements.meter_readings,
                        (meter_id.as_str(), month, from, to, most),
                    )
                    .await?;
                Ok::<_, StoreError>(rows::<(DateTime<Utc>, f64, i32)>(result)?)
            })
            .buffered(4);
        while let Some(rows) = pages.next().await {
            for (ts, kwh, interval_s) in rows? {
                out.push(Reading {
                    meter_id: meter_id.clone(),
                    ts,
                    kwh,
                    interval_s: u32::try_from(interval_s).map_err(decode)?,
                });
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    async fn scan_slices(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        only: Option<&[RegionCode]>,
    ) -> Result<Vec<ScanSlice>, StoreError> {
        self.slices(from, to, only).await
    }

    async fn scan_readings(
        &self,
        slice: &ScanSlice,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        self.scan_page(slice, cursor, limit).await
    }

    async fn put_profiles(&self, profiles: &[RegionProfile]) -> Result<(), StoreError> {
        let mut writes = Vec::with_capacity(profiles.len());
        for p in profiles {
            let json = serde_json::to_string(p).map_err(decode)?;
            let values = (
                p.figures.region.as_str(),
                &p.run_id,
                p.window_from,
                p.window_to,
                p.computed_at,
                json,
            );
            writes.push(
                self.client
                    .execute("put profile", &self.statements.profile_put, values),
            );
        }
        fan_out(writes).await?;
        Ok(())
    }

    async fn profiles(&self) -> Result<Vec<RegionProfile>, StoreError> {
        let rows: Vec<(Option<String>,)> = self.all_rows(&self.statements.profiles_all).await?;
        let mut out = profiles_from_json(rows)?;
        out.sort_by(|a, b| a.figures.region.cmp(&b.figures.region));
        Ok(out)
    }

    async fn put_run_profiles(&self, profiles: &[RegionProfile]) -> Result<(), StoreError> {
        let (mut by_run, mut by_region) = (Vec::new(), Vec::new());
        for p in profiles {
            let json = serde_json::to_string(p).map_err(decode)?;
            let region = p.figures.region.as_str();
            by_run.push(self.client.execute(
                "put run profile",
                &self.statements.run_profile_put,
                (
                    p.run_id.as_str(),
                    region,
                    p.window_from,
                    p.window_to,
                    p.computed_at,
                    json.clone(),
                ),
            ));
            by_region.push(self.client.execute(
                "put profile history",
                &self.statements.history_put,
                (
                    region,
                    p.computed_at,
                    p.run_id.as_str(),
                    p.window_from,
                    p.window_to,
                    json,
                ),
            ));
        }
        futures::try_join!(fan_out(by_run), fan_out(by_region))?;
        Ok(())
    }

    async fn run_profiles(&self, run_id: &str) -> Result<Vec<RegionProfile>, StoreError> {
        let result = self
            .client
            .execute("run profiles", &self.statements.run_profiles, (run_id,))
            .await?;
        profiles_from_json(rows::<(Option<String>,)>(result)?)
    }

    async fn region_history(
        &self,
        region: &RegionCode,
        limit: usize,
    ) -> Result<Vec<RegionProfile>, StoreError> {
        let limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let result = self
            .client
            .execute(
                "region history",
                &self.statements.history_newest,
                (region.as_str(), limit),
            )
            .await?;
        profiles_from_json(rows::<(Option<String>,)>(result)?)
    }

    async fn put_run(&self, run: &Run) -> Result<(), StoreError> {
        let values = (
            &run.run_id,
            run.status.as_ref(),
            run.trigger.as_ref(),
            run.created_at,
            run.started_at,
            run.finished_at,
            run.window_from,
            run.window_to,
            count(run.rows_scanned),
            count(run.regions_written),
            &run.error,
            run.published,
        );
        self.client
            .execute("put run", &self.statements.run_put, values)
            .await?;
        // The index row after the run row, so a listed run can always be read.
        self.client
            .execute(
                "index run",
                &self.statements.run_index_put,
                (RUNS_BUCKET, run.created_at, &run.run_id),
            )
            .await?;
        Ok(())
    }

    async fn run(&self, run_id: &str) -> Result<Option<Run>, StoreError> {
        let result = self
            .client
            .execute("get run", &self.statements.run_get, (run_id,))
            .await?;
        rows::<RunRow>(result)?
            .into_iter()
            .next()
            .map(Run::try_from)
            .transpose()
    }

    async fn runs(&self, limit: usize) -> Result<Vec<Run>, StoreError> {
        let n = i32::try_from(limit).unwrap_or(i32::MAX);
        if n == 0 {
            return Ok(Vec::new());
        }
        let result = self
            .client
            .execute(
                "list runs",
                &self.statements.run_index_newest,
                (RUNS_BUCKET, n),
            )
            .await?;
        let ids: Vec<String> = rows::<(String,)>(result)?
            .into_iter()
            .map(|r| r.0)
            .collect();
        let runs: Vec<Option<Run>> = futures::stream::iter(ids)
            .map(|id| async move { self.run(&id).await })
            .buffered(crate::write_path::FAN_OUT)
            .try_collect()
            .await?;
        // A run whose row expired before its index row is left out.
        Ok(runs.into_iter().flatten().collect())
    }

    async fn revoke_meter(&self, meter_id: &MeterId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .execute(
                "revoke meter",
                &self.statements.revocation_put,
                (REVOCATIONS_SHARD, meter_id.as_str(), at),
            )
            .await?;
        Ok(())
    }

    async fn revocations(&self) -> Result<Vec<(MeterId, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, Option<DateTime<Utc>>)> = self
            .rows_of(&self.statements.revocations_all, (REVOCATIONS_SHARD,))
            .await?;
        rows.into_iter()
            .map(|(id, at)| {
                let id = MeterId::parse(id).map_err(decode)?;
                Ok((id, at.unwrap_or(DateTime::<Utc>::MAX_UTC)))
            })
            .collect()
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        Ok(LEASES.acquire(&self.client, name, holder, ttl).await?)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        Ok(LEASES.release(&self.client, name, holder).await?)
    }

    async fn summary(&self) -> Result<StoreSummary, StoreError> {
        self.count_summary().await
    }

    async fn put_live(
        &self,
        part: u32,
        entries: &[LiveEntry],
        slots: &[LiveSlot],
    ) -> Result<(), StoreError> {
        self.put_live_rows(part, entries, slots).await
    }

    async fn live_entries(
        &self,
        part: u32,
        from: DateTime<Utc>,
    ) -> Result<Vec<LiveEntry>, StoreError> {
        self.live_entry_rows(part, from).await
    }

    async fn live_slots(&self, from: DateTime<Utc>) -> Result<Vec<LiveSlot>, StoreError> {
        self.live_slot_rows(from).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

    #[test]
    fn a_start_up_timeout_is_retried_and_a_refusal_is_not_a_schema_error() {
        let timeout: ClientError = ExecutionError::RequestTimeout(Duration::from_secs(5)).into();
        assert!(matches!(
            at_start_up(timeout, "keyspace".into()),
            StoreError::Unavailable(_)
        ));
        let refused: ClientError = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Unauthorized,
            "no SELECT on iot_demo".into(),
        ))
        .into();
        assert!(matches!(
            at_start_up(refused, "keyspace".into()),
            StoreError::Refused(_)
        ));
        let missing: ClientError = ClientError::Decode("no such keyspace".into());
        assert!(matches!(
            at_start_up(missing, "keyspace".into()),
            StoreError::Schema(_)
        ));
        let refused_write: ClientError = ExecutionError::LastAttemptError(
            RequestAttemptError::DbError(DbError::Invalid, "bad".into()),
        )
        .into();
        assert!(matches!(
            StoreError::from(refused_write),
            StoreError::Refused(_)
        ));
    }
}
