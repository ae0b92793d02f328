//! The store port on Cassandra (keyspace `iot_demo`, tables from `migrations/cql`).
//!
//! Every statement is prepared once at connect time. Readings are written twice, by meter
//! and day and by region and day, each as unlogged batches that stay inside one partition;
//! then each touched meter-day's count is refreshed in `meter_days`. Writes are idempotent
//! upserts, so a write that fails part-way is made whole by writing the same readings again
//! (the sink does: it commits offsets only after a write succeeds).
//!
//! A meter's region is looked up from `meters` when its readings are written (a known region
//! is cached for a minute; "no region" never is). Readings of a meter in no region are kept
//! by meter only, and filed under the region when the meter is placed: registration re-files
//! the meter's stored readings ([`CassandraStore::refile`]), and a write whose meter had no
//! region looks again once its readings are stored. Either registration sees the readings or
//! the write sees the registration (both at the configured consistency), so the same history
//! gives the same profiles as on SQLite, which joins at scan time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use crate::statements as cql;

impl From<ClientError> for StoreError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Decode(m) => StoreError::Corrupt(m.into()),
            other => StoreError::Unavailable(other.into()),
        }
    }
}

fn decode(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string().into())
}

/// Statements per unlogged batch: a day of 15-minute readings is 96, and Cassandra warns
/// about batches over 5 KiB.
const BATCH_ROWS: usize = 48;
/// How long a meter's known region is trusted before it is looked up again.
const REGION_TTL: Duration = Duration::from_secs(60);
const RUNS_BUCKET: &str = "all";
/// Requests one fan-out starts at once; the client's permits cap the whole process.
const FAN_OUT: usize = 16;

struct Prepared {
    ping: PreparedStatement,
    meter_upsert: PreparedStatement,
    meter_get: PreparedStatement,
    meters_all: PreparedStatement,
    meter_region: PreparedStatement,
    by_meter_upsert: PreparedStatement,
    by_region_upsert: PreparedStatement,
    by_region_delete: PreparedStatement,
    meter_day_count: PreparedStatement,
    meter_day_put: PreparedStatement,
    meter_days_in: PreparedStatement,
    meter_days_all: PreparedStatement,
    meter_days_of: PreparedStatement,
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

/// A row of `readings_by_region`: region, day, ts, meter id, kWh.
type RegionRow<'a> = (&'a str, NaiveDate, DateTime<Utc>, &'a str, f64);
/// The primary key of a `readings_by_region` row: region, day, ts, meter id.
type RegionKey<'a> = (&'a str, NaiveDate, DateTime<Utc>, &'a str);

/// Meter id to its region and when that was looked up. Only known regions: a meter without
/// one may be placed any moment, and its next readings must see that at once.
type RegionCache = HashMap<String, (String, Instant)>;

#[derive(Clone)]
pub struct CassandraStore {
    client: Client,
    statements: Arc<Prepared>,
    regions: Arc<Mutex<RegionCache>>,
}

async fn prepare(client: &Client, text: &str) -> Result<PreparedStatement, StoreError> {
    let mut p = client
        .session
        .prepare(text)
        .await
        .map_err(|e| StoreError::Schema(format!("cannot prepare `{text}`: {e}").into()))?;
    // Every statement here is an upsert or a read: safe to retry and to speculate.
    p.set_is_idempotent(true);
    Ok(p)
}

fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The day of the last instant before `to`: a window ending at midnight ends the day before.
fn last_day(to: DateTime<Utc>) -> NaiveDate {
    day_of(to - TimeDelta::milliseconds(1))
}

/// The days from the day of `from` to the day of the last instant before `to`.
fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDate> {
    if from >= to {
        return Vec::new();
    }
    let last = last_day(to);
    day_of(from)
        .iter_days()
        .take_while(|d| *d <= last)
        .collect()
}

/// Runs `futures` at most [`FAN_OUT`] at a time; answers in completion order.
async fn fan_out<T, E, F>(futures: Vec<F>) -> Result<Vec<T>, StoreError>
where
    F: std::future::Future<Output = Result<T, E>>,
    StoreError: From<E>,
{
    futures::stream::iter(futures)
        .buffer_unordered(FAN_OUT)
        .map_err(StoreError::from)
        .try_collect()
        .await
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

/// A scan slice's part: a region and a UTC day, as `<day>/<region>`.
fn slice_part(region: &str, day: NaiveDate) -> String {
    format!("{day}/{region}")
}

fn parse_part(part: &str) -> Result<(RegionCode, NaiveDate), StoreError> {
    let bad = || StoreError::Corrupt(format!("bad scan slice `{part}`").into());
    let (day, region) = part.split_once('/').ok_or_else(bad)?;
    let day = day.parse::<NaiveDate>().map_err(|_| bad())?;
    Ok((RegionCode::parse(region).map_err(|_| bad())?, day))
}

impl CassandraStore {
    /// Connects to the keyspace, checks that its migrations are applied, and prepares every
    /// statement.
    pub async fn connect(config: &CassandraConfig) -> Result<Self, StoreError> {
        let client = Client::connect(config).await?;
        client.use_keyspace(&config.keyspace).await.map_err(|e| {
            StoreError::Schema(
                format!(
                    "keyspace `{}` is not usable ({e}): run `migrate` first",
                    config.keyspace
                )
                .into(),
            )
        })?;
        crate::migrate::verify(&client, iot_migrations::CQL)
            .await
            .map_err(|e| StoreError::Schema(e.into()))?;
        let statements = Prepared {
            ping: prepare(&client, cql::PING).await?,
            meter_upsert: prepare(&client, cql::METER_UPSERT).await?,
            meter_get: prepare(&client, cql::METER_GET).await?,
            meters_all: prepare(&client, cql::METERS_ALL).await?,
            meter_region: prepare(&client, cql::METER_REGION).await?,
            by_meter_upsert: prepare(&client, cql::READING_BY_METER_UPSERT).await?,
            by_region_upsert: prepare(&client, cql::READING_BY_REGION_UPSERT).await?,
            by_region_delete: prepare(&client, cql::READING_BY_REGION_DELETE).await?,
            meter_day_count: prepare(&client, cql::METER_DAY_COUNT).await?,
            meter_day_put: prepare(&client, cql::METER_DAY_PUT).await?,
            meter_days_in: prepare(&client, cql::METER_DAYS_IN).await?,
            meter_days_all: prepare(&client, cql::METER_DAYS_ALL).await?,
            meter_days_of: prepare(&client, cql::METER_DAYS_OF).await?,
            meter_readings: prepare(&client, cql::METER_READINGS).await?,
            region_day_scan: prepare(&client, cql::REGION_DAY_SCAN).await?,
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
        Ok(Self {
            client,
            statements: Arc::new(statements),
            regions: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The regions of `meters` (`None`: unregistered or in no region), from the cache or
    /// looked up once each.
    async fn regions_of<'a>(
        &self,
        meters: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, Option<String>>, StoreError> {
        let mut known = HashMap::new();
        let mut missing = std::collections::BTreeSet::new();
        {
            let cache = self
                .regions
                .lock()
                .map_err(|_| decode("region cache poisoned"))?;
            for id in meters {
                match cache.get(id) {
                    Some((region, at)) if at.elapsed() < REGION_TTL => {
                        known.insert(id.to_owned(), Some(region.clone()));
                    }
                    _ => {
                        missing.insert(id.to_owned());
                    }
                }
            }
        }
        let mut lookups = Vec::with_capacity(missing.len());
        for id in missing {
            lookups.push(async move {
                let result = self
                    .client
                    .execute("meter region", &self.statements.meter_region, (&id,))
                    .await?;
                let rows = rows::<(Option<String>,)>(result)?;
                Ok::<_, StoreError>((id, rows.into_iter().next().and_then(|r| r.0)))
            });
        }
        let found = fan_out(lookups).await?;
        let mut cache = self
            .regions
            .lock()
            .map_err(|_| decode("region cache poisoned"))?;
        for (id, region) in found {
            if let Some(region) = &region {
                cache.insert(id.clone(), (region.clone(), Instant::now()));
            }
            known.insert(id, region);
        }
        Ok(known)
    }

    /// Files `readings` under their meters' regions in `readings_by_region`, one batch per
    /// (region, day) partition; readings of meters not in `regions` are left out.
    async fn write_by_region(
        &self,
        readings: &[&Reading],
        regions: &HashMap<String, Option<String>>,
    ) -> Result<(), StoreError> {
        let mut by_region: BTreeMap<(&str, NaiveDate), Vec<RegionRow<'_>>> = BTreeMap::new();
        for r in readings {
            if let Some(Some(region)) = regions.get(r.meter_id.as_str()) {
                let day = day_of(r.ts);
                by_region.entry((region.as_str(), day)).or_default().push((
                    region.as_str(),
                    day,
                    r.ts,
                    r.meter_id.as_str(),
                    r.kwh,
                ));
            }
        }
        fan_out(
            by_region
                .into_values()
                .map(|rows| self.batch(&self.statements.by_region_upsert, rows))
                .collect(),
        )
        .await?;
        Ok(())
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

    /// Every stored reading of one meter, from its days in `meter_days`.
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
        if let Some(new) = new {
            let regions = HashMap::from([(meter_id.to_string(), Some(new.to_owned()))]);
            let refs: Vec<&Reading> = readings.iter().collect();
            self.write_by_region(&refs, &regions).await?;
        }
        if let Some(old) = old {
            let mut by_day: BTreeMap<NaiveDate, Vec<RegionKey<'_>>> = BTreeMap::new();
            for r in &readings {
                let day = day_of(r.ts);
                by_day
                    .entry(day)
                    .or_default()
                    .push((old, day, r.ts, meter_id));
            }
            fan_out(
                by_day
                    .into_values()
                    .map(|rows| self.batch(&self.statements.by_region_delete, rows))
                    .collect(),
            )
            .await?;
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
        values: Vec<impl scylla::serialize::row::SerializeRow + Clone>,
    ) -> Result<(), StoreError> {
        for chunk in values.chunks(BATCH_ROWS) {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in chunk {
                batch.append_statement(statement.clone());
            }
            batch.set_is_idempotent(true);
            let chunk = chunk.to_vec();
            self.client
                .run("write batch", || {
                    self.client.session.batch(&batch, chunk.clone())
                })
                .await?;
        }
        Ok(())
    }

    /// Recounts one meter-day from its readings and records the count.
    async fn refresh_meter_day(&self, meter: &str, day: NaiveDate) -> Result<(), StoreError> {
        let result = self
            .client
            .execute(
                "count meter day",
                &self.statements.meter_day_count,
                (meter, day),
            )
            .await?;
        let row = rows::<(i64, Option<DateTime<Utc>>)>(result)?
            .into_iter()
            .next();
        let (n, latest) = row.unwrap_or((0, None));
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        self.client
            .execute(
                "put meter day",
                &self.statements.meter_day_put,
                (meter, day, n, latest),
            )
            .await?;
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
                    let result = self
                        .client
                        .execute(
                            "meter region",
                            &self.statements.meter_region,
                            (m.meter_id.as_str(),),
                        )
                        .await?;
                    let region = rows::<(Option<String>,)>(result)?
                        .into_iter()
                        .next()
                        .and_then(|r| r.0);
                    Ok::<_, StoreError>((m.meter_id.to_string(), region))
                })
                .collect(),
        )
        .await?
        .into_iter()
        .collect();
        fan_out(meters.iter().map(|m| self.put_meter(m)).collect()).await?;
        if let Ok(mut cache) = self.regions.lock() {
            for m in meters {
                match &m.region {
                    Some(region) => {
                        cache.insert(m.meter_id.to_string(), (region.to_string(), Instant::now()))
                    }
                    None => cache.remove(m.meter_id.as_str()),
                };
            }
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
                    if let Ok(mut cache) = self.regions.lock() {
                        cache.remove(m.meter_id.as_str());
                    }
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
        if readings.is_empty() {
            return Ok(());
        }
        // The last of several readings with one (meter, ts) wins, as in a sequence of
        // upserts. Inside one batch every write has the same timestamp, so duplicates must
        // not reach it.
        let mut latest: BTreeMap<(&str, DateTime<Utc>), &Reading> = BTreeMap::new();
        for r in readings {
            latest.insert((r.meter_id.as_str(), r.ts), r);
        }
        let regions = self.regions_of(latest.keys().map(|(m, _)| *m)).await?;
        let mut by_meter: BTreeMap<
            (&str, NaiveDate),
            Vec<(&str, NaiveDate, DateTime<Utc>, f64, i32)>,
        > = BTreeMap::new();
        let readings: Vec<&Reading> = latest.into_values().collect();
        for r in &readings {
            let day = day_of(r.ts);
            let interval = i32::try_from(r.interval_s).unwrap_or(i32::MAX);
            by_meter
                .entry((r.meter_id.as_str(), day))
                .or_default()
                .push((r.meter_id.as_str(), day, r.ts, r.kwh, interval));
        }
        let meter_days: Vec<(&str, NaiveDate)> = by_meter.keys().copied().collect();
        // The two tables are independent, so they are written at the same time; only the
        // meter-day recount below must wait for `readings_by_meter`.
        futures::try_join!(
            fan_out(
                by_meter
                    .into_values()
                    .map(|rows| self.batch(&self.statements.by_meter_upsert, rows))
                    .collect(),
            ),
            self.write_by_region(&readings, &regions),
        )?;
        fan_out(
            meter_days
                .into_iter()
                .map(|(meter, day)| self.refresh_meter_day(meter, day))
                .collect(),
        )
        .await?;
        // A meter placed while this write ran re-filed its readings without these: look
        // again, now that they are stored where a registration looks for them.
        let unplaced: Vec<&str> = regions
            .iter()
            .filter(|(_, region)| region.is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        if !unplaced.is_empty() {
            let placed = self.regions_of(unplaced.into_iter()).await?;
            if placed.values().any(Option::is_some) {
                self.write_by_region(&readings, &placed).await?;
            }
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
        // Only the days that have readings, from the day index.
        let (first, last) = (day_of(from), last_day(to));
        let result = self
            .client
            .execute(
                "meter days",
                &self.statements.meter_days_in,
                (meter_id.as_str(), first, last),
            )
            .await?;
        let mut days: Vec<NaiveDate> = rows::<(NaiveDate,)>(result)?
            .into_iter()
            .map(|r| r.0)
            .collect();
        days.sort();
        let mut out = Vec::new();
        let mut pages = futures::stream::iter(days)
            .map(|day| async move {
                // Each day's query may return the whole limit; the loop below stops at it.
                let most = i32::try_from(limit).unwrap_or(i32::MAX);
                let result = self
                    .client
                    .execute(
                        "meter readings",
                        &self.statements.meter_readings,
                        (meter_id.as_str(), day, from, to, most),
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
        let meters: Vec<MeterRow> = self.all_rows(&self.statements.meters_all).await?;
        let mut regions: Vec<String> = meters
            .into_iter()
            .filter_map(|m| m.region)
            .filter(|r| only.is_none_or(|only| only.iter().any(|o| o.as_str() == r)))
            .collect();
        regions.sort();
        regions.dedup();
        let mut slices = Vec::new();
        for day in days(from, to) {
            let start = day_start(day).max(from);
            let end = (day_start(day) + TimeDelta::days(1)).min(to);
            for region in &regions {
                slices.push(ScanSlice {
                    from: start,
                    to: end,
                    part: slice_part(region, day),
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
        let (region, day) = parse_part(&slice.part)?;
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
        let values = (region.as_str(), day, slice.from, slice.to);
        let (result, next) = self
            .client
            .run("scan region day", || {
                self.client
                    .session
                    .execute_single_page(&statement, values, paging.clone())
            })
            .await?;
        let rows = rows::<(DateTime<Utc>, String, f64)>(result)?
            .into_iter()
            .map(|(ts, meter_id, kwh)| {
                Ok(RegionReading {
                    region: region.clone(),
                    meter_id: MeterId::parse(meter_id).map_err(decode)?,
                    ts,
                    kwh,
                    // readings_by_region does not keep the interval (yet).
                    interval_s: None,
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
            .buffered(FAN_OUT)
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
        let days: Vec<(String, Option<i32>, Option<DateTime<Utc>>)> =
            self.all_rows(&self.statements.meter_days_all).await?;
        let mut readings = 0u64;
        let mut latest: Option<DateTime<Utc>> = None;
        let mut with_readings = std::collections::HashSet::new();
        for (meter, n, last) in days {
            let n = n.unwrap_or(0).max(0) as u64;
            readings += n;
            if n > 0 {
                with_readings.insert(meter);
            }
            latest = latest.max(last);
        }
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
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn days_cover_the_half_open_window() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            days(at("2026-03-28T23:00:00Z"), at("2026-03-30T23:00:00Z")),
            vec![d("2026-03-28"), d("2026-03-29"), d("2026-03-30")]
        );
        // `to` at midnight does not reach into the next day.
        assert_eq!(
            days(at("2026-03-29T00:00:00Z"), at("2026-03-30T00:00:00Z")),
            vec![d("2026-03-29")]
        );
        assert!(days(at("2026-03-29T00:00:00Z"), at("2026-03-29T00:00:00Z")).is_empty());
        assert_eq!(
            day_start(d("2026-03-29")),
            Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn slice_parts_round_trip_and_bad_ones_are_refused() {
        let day = "2026-11-21".parse::<NaiveDate>().unwrap();
        let part = slice_part("E09000001", day);
        assert_eq!(
            parse_part(&part).unwrap(),
            (RegionCode::parse("E09000001").unwrap(), day)
        );
        for bad in ["", "E09000001", "2026-13-01/E0900", "x/y"] {
            assert!(
                matches!(parse_part(bad), Err(StoreError::Corrupt(_))),
                "{bad}"
            );
        }
    }
}
