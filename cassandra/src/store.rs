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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use iot_common::domain::{Meter, MeterId, Reading, RegionCode, RegionProfile, Run};
use iot_common::store::{RegionReading, ScanPage, ScanSlice, Store, StoreError, StoreSummary};
use scylla::DeserializeRow;
use scylla::response::PagingState;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use crate::client::{Client, ClientError, rows};
use crate::config::CassandraConfig;
use crate::layout::{REGION_SHARDS, day_start, days, months, parse_part, shard_of, slice_part};
use crate::region_cache::RegionCache;
use crate::statements as cql;
use crate::write_path::{ReadingWriter, Row, WritePort, fan_out, region_rows, write_parts};

impl From<ClientError> for StoreError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Decode(m) => StoreError::Corrupt(m.into()),
            e if e.is_permanent() => StoreError::Refused(e.into()),
            other => StoreError::Unavailable(other.into()),
        }
    }
}

fn decode(e: impl std::fmt::Display) -> StoreError {
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
/// Readings the legacy copy writes at once.
const COPY_BATCH: usize = 5_000;

struct Prepared {
    ping: PreparedStatement,
    meter_upsert: PreparedStatement,
    meter_get: PreparedStatement,
    meters_all: PreparedStatement,
    meter_region: PreparedStatement,
    by_meter_upsert: PreparedStatement,
    by_region_upsert: PreparedStatement,
    by_region_delete: PreparedStatement,
    meter_day_put: PreparedStatement,
    meter_days_all: PreparedStatement,
    meter_days_of: PreparedStatement,
    meter_month_count: PreparedStatement,
    meter_readings: PreparedStatement,
    region_day_scan: PreparedStatement,
    profile_put: PreparedStatement,
    profiles_all: PreparedStatement,
    run_put: PreparedStatement,
    run_profile_put: PreparedStatement,
    run_profiles: PreparedStatement,
    history_put: PreparedStatement,
    history_newest: PreparedStatement,
    run_get: PreparedStatement,
    run_index_put: PreparedStatement,
    run_index_newest: PreparedStatement,
    revocation_put: PreparedStatement,
    lease_take: PreparedStatement,
    lease_renew: PreparedStatement,
    lease_holder: PreparedStatement,
    lease_release: PreparedStatement,
    revocations_all: PreparedStatement,
}

impl Prepared {
    /// The prepared form of a write the write path names by its text.
    fn for_write(&self, text: &str) -> Option<&PreparedStatement> {
        match text {
            cql::READING_BY_METER_UPSERT => Some(&self.by_meter_upsert),
            cql::READING_BY_REGION_UPSERT => Some(&self.by_region_upsert),
            cql::READING_BY_REGION_DELETE => Some(&self.by_region_delete),
            cql::METER_DAY_PUT => Some(&self.meter_day_put),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct CassandraStore {
    client: Client,
    statements: Arc<Prepared>,
    writer: Arc<ReadingWriter>,
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

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A row of `meters`, by column name.
#[derive(DeserializeRow)]
struct MeterRow {
    meter_id: String,
    region: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    household_size: Option<i32>,
    dwelling: Option<String>,
    registered_at: Option<DateTime<Utc>>,
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
struct RunRow {
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
fn profiles_from_json(rows: Vec<(Option<String>,)>) -> Result<Vec<RegionProfile>, StoreError> {
    rows.into_iter()
        .filter_map(|r| r.0)
        .map(|json| serde_json::from_str(&json).map_err(decode))
        .collect()
}

/// The one partition of `meter_revocations`.
const REVOCATIONS_SHARD: i32 = 0;

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
        let mut region_day_scan = prepare(&client, cql::REGION_DAY_SCAN).await?;
        region_day_scan.set_execution_profile_handle(Some(client.scan_profile.clone()));
        let statements = Prepared {
            ping: prepare(&client, cql::PING).await?,
            meter_upsert: prepare(&client, cql::METER_UPSERT).await?,
            meter_get: prepare(&client, cql::METER_GET).await?,
            meters_all: prepare(&client, cql::METERS_ALL).await?,
            meter_region: prepare(&client, cql::METER_REGION).await?,
            by_meter_upsert: prepare(&client, cql::READING_BY_METER_UPSERT).await?,
            by_region_upsert: prepare(&client, cql::READING_BY_REGION_UPSERT).await?,
            by_region_delete: prepare(&client, cql::READING_BY_REGION_DELETE).await?,
            meter_day_put: prepare(&client, cql::METER_DAY_PUT).await?,
            meter_days_all: prepare(&client, cql::METER_DAYS_ALL).await?,
            meter_days_of: prepare(&client, cql::METER_DAYS_OF).await?,
            meter_month_count: prepare(&client, cql::METER_MONTH_COUNT).await?,
            meter_readings: prepare(&client, cql::METER_READINGS).await?,
            region_day_scan,
            profile_put: prepare(&client, cql::PROFILE_PUT).await?,
            profiles_all: prepare(&client, cql::PROFILES_ALL).await?,
            run_put: prepare(&client, cql::RUN_PUT).await?,
            run_profile_put: prepare(&client, cql::RUN_PROFILE_PUT).await?,
            run_profiles: prepare(&client, cql::RUN_PROFILES).await?,
            history_put: prepare(&client, cql::HISTORY_PUT).await?,
            history_newest: prepare(&client, cql::HISTORY_NEWEST).await?,
            run_get: prepare(&client, cql::RUN_GET).await?,
            run_index_put: prepare(&client, cql::RUN_INDEX_PUT).await?,
            run_index_newest: prepare(&client, cql::RUN_INDEX_NEWEST).await?,
            revocation_put: prepare(&client, cql::REVOCATION_PUT).await?,
            revocations_all: prepare(&client, cql::REVOCATIONS_ALL).await?,
            lease_take: prepare(&client, cql::LEASE_TAKE).await?,
            lease_renew: prepare(&client, cql::LEASE_RENEW).await?,
            lease_holder: prepare(&client, cql::LEASE_HOLDER).await?,
            lease_release: prepare(&client, cql::LEASE_RELEASE).await?,
        };
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

    async fn put_meter(&self, m: &Meter) -> Result<(), StoreError> {
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
    async fn refile(
        &self,
        meter_id: &MeterId,
        old: Option<&str>,
        new: Option<&str>,
    ) -> Result<(), StoreError> {
        let readings = self.all_readings_of(meter_id).await?;
        if readings.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Reading> = readings.iter().collect();
        let shards = self.writer.shards();
        let under = |region: &str| HashMap::from([(meter_id.to_string(), Some(region.to_owned()))]);
        // Into the new region first: a reading is never in neither.
        for (region, statement, key_only) in [
            (new, cql::READING_BY_REGION_UPSERT, false),
            (old, cql::READING_BY_REGION_DELETE, true),
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
        let pager = self
            .client
            .session
            .execute_iter(statement.clone(), ())
            .await
            .map_err(ClientError::from)?;
        pager
            .rows_stream::<T>()
            .map_err(decode)?
            .map_err(|e| StoreError::Unavailable(e.into()))
            .try_collect()
            .await
    }

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
    async fn write(&self, text: &'static str, rows: Vec<Row>) -> Result<(), StoreError> {
        let statement = self
            .statements
            .for_write(text)
            .ok_or_else(|| decode(format!("not a prepared write: {text}")))?;
        self.batch(statement, rows).await
    }

    async fn meter_region(&self, meter: &str) -> Result<Option<String>, StoreError> {
        let result = self
            .client
            .execute("meter region", &self.statements.meter_region, (meter,))
            .await?;
        Ok(rows::<(Option<String>,)>(result)?
            .into_iter()
            .next()
            .and_then(|r| r.0))
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
        // The regions they had, to re-file their readings if that changes.
        let before: HashMap<String, Option<String>> = fan_out(
            meters
                .iter()
                .map(|m| async move {
                    let region = self.meter_region(m.meter_id.as_str()).await?;
                    Ok::<_, StoreError>((m.meter_id.to_string(), region))
                })
                .collect(),
        )
        .await?
        .into_iter()
        .collect();
        fan_out(meters.iter().map(|m| self.put_meter(m)).collect()).await?;
        for m in meters {
            self.writer
                .cache()
                .put(m.meter_id.as_str(), m.region.as_deref());
        }
        let moved: Vec<_> = meters
            .iter()
            .filter_map(|m| {
                let old = before.get(m.meter_id.as_str()).cloned().flatten();
                (old.as_deref() != m.region.as_deref()).then_some((m, old))
            })
            .map(|(m, old)| async move {
                let refiled = self
                    .refile(&m.meter_id, old.as_deref(), m.region.as_deref())
                    .await;
                if refiled.is_err() {
                    // Put the old region back, so that the caller's retry sees the change
                    // again and re-files then.
                    let back = Meter {
                        region: old.map(RegionCode::parse).transpose().map_err(decode)?,
                        ..m.clone()
                    };
                    self.writer.cache().put(m.meter_id.as_str(), None);
                    self.put_meter(&back).await?;
                }
                refiled
            })
            .collect();
        fan_out(moved).await?;
        Ok(())
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
            let meter = MeterId::parse(&m.meter).map_err(decode)?;
            self.refile(&meter, Some(&m.old), m.new.as_deref()).await?;
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

    async fn scan_readings(
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
        let pager = self
            .client
            .session
            .execute_iter(
                self.statements.revocations_all.clone(),
                (REVOCATIONS_SHARD,),
            )
            .await
            .map_err(ClientError::from)?;
        let rows: Vec<(String, Option<DateTime<Utc>>)> = pager
            .rows_stream()
            .map_err(decode)?
            .map_err(|e| StoreError::Unavailable(e.into()))
            .try_collect()
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
    ) -> Result<Option<String>, StoreError> {
        let ttl = i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX);
        let taken = self
            .client
            .execute(
                "take lease",
                &self.statements.lease_take,
                (name, holder, ttl),
            )
            .await?;
        if crate::migrate::lwt_applied(taken)? {
            return Ok(None);
        }
        // Held: by us (a renewal, or a retried insert whose first attempt landed) or not.
        let renewed = self
            .client
            .execute(
                "renew lease",
                &self.statements.lease_renew,
                (ttl, holder, name, holder),
            )
            .await?;
        if crate::migrate::lwt_applied(renewed)? {
            return Ok(None);
        }
        let result = self
            .client
            .execute("lease holder", &self.statements.lease_holder, (name,))
            .await?;
        let current = rows::<(Option<String>,)>(result)?
            .into_iter()
            .next()
            .and_then(|r| r.0);
        // Expired between the two statements: say so as held; the caller asks again later.
        Ok(Some(current.unwrap_or_else(|| "(just released)".into())))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.client
            .execute(
                "release lease",
                &self.statements.lease_release,
                (name, holder),
            )
            .await?;
        Ok(())
    }

    async fn summary(&self) -> Result<StoreSummary, StoreError> {
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
        let mut with_readings = std::collections::HashSet::new();
        let mut partitions: BTreeSet<(String, NaiveDate)> = BTreeSet::new();
        for (meter, day, last) in days {
            latest = latest.max(last);
            partitions.insert((meter.clone(), crate::layout::month_of(day_start(day))));
            with_readings.insert(meter);
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
            .filter(|m| with_readings.contains(m.meter_id.as_str()))
            .count() as u64;
        Ok(StoreSummary {
            meters: meters.len() as u64,
            readings,
            meters_by_region: by_region.into_iter().collect(),
            meters_with_readings: registered_with_readings,
            latest_reading: latest,
        })
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
