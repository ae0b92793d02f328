//! The embedded store: one SQLite file (WAL, `synchronous=FULL`), schema from
//! `migrations/sqlite`. Calls run on tokio's blocking pool; one connection writes and another
//! reads so the read-back route is not queued behind the sink's batches.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Lease, RegionReading, ScanPage, ScanSlice, Store, StoreError, StoreSummary, sum_live_parts,
};
use crate::domain::{
    Meter, MeterId, Reading, RegionCode, RegionProfile, Run, from_epoch, from_epoch_ms,
};
use crate::live::{self, LiveEntry, LiveSlot};
use crate::sqlite::{self as db, SqliteError};

impl From<SqliteError> for StoreError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Schema(m) => StoreError::Schema(m.into()),
            SqliteError::Sqlite(e) => StoreError::Unavailable(e.into()),
            SqliteError::Io(m) => StoreError::Unavailable(m.into()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.into()),
            other => StoreError::Unavailable(other.into()),
        }
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// The store's file in a data directory: every binary that shares a data directory
    /// shares this file.
    pub fn path_in(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join("store.sqlite")
    }

    /// Opens (creating if needed) the store file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = db::open(path, iot_migrations::SQLITE)?;
        let reader = db::open(path, &[])?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        db::blocking(self.writer.clone(), f).await
    }

    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        db::blocking(self.reader.clone(), f).await
    }
}

impl From<db::BlockingError> for StoreError {
    fn from(e: db::BlockingError) -> Self {
        StoreError::Unavailable(e.into())
    }
}

fn meter_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Meter> {
    let size: Option<i64> = row.get(4)?;
    Ok(Meter {
        meter_id: row.get(0)?,
        region: row.get(1)?,
        lat: row.get(2)?,
        lon: row.get(3)?,
        household_size: size.and_then(|s| u8::try_from(s).ok()),
        dwelling: row.get(5)?,
        registered_at: from_epoch(row.get(6)?),
    })
}

const METER_COLUMNS: &str = "meter_id, region, lat, lon, household_size, dwelling, registered_at";

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    let ms = |v: i64| DateTime::from_timestamp_millis(v).unwrap_or(DateTime::<Utc>::MIN_UTC);
    Ok(Run {
        run_id: row.get(0)?,
        status: row.get(1)?,
        trigger: row.get(2)?,
        created_at: ms(row.get(3)?),
        started_at: row.get::<_, Option<i64>>(4)?.map(ms),
        finished_at: row.get::<_, Option<i64>>(5)?.map(ms),
        window_from: row.get::<_, Option<i64>>(6)?.map(from_epoch),
        window_to: row.get::<_, Option<i64>>(7)?.map(from_epoch),
        rows_scanned: row.get::<_, i64>(8)?.max(0) as u64,
        regions_written: row.get::<_, i64>(9)?.max(0) as u64,
        error: row.get(10)?,
        published: row.get(11)?,
    })
}

const RUN_COLUMNS: &str = "run_id, status, trigger, created_ms, started_ms, finished_ms, \
     window_from, window_to, rows_scanned, regions_written, error, published";

/// Each profile with its JSON, as both profile tables keep it.
fn with_json(profiles: &[RegionProfile]) -> Result<Vec<(RegionProfile, String)>, StoreError> {
    profiles
        .iter()
        .map(|p| {
            serde_json::to_string(p)
                .map(|json| (p.clone(), json))
                .map_err(|e| StoreError::Corrupt(e.into()))
        })
        .collect()
}

/// Upserts `rows` into `table` (`regional_profiles` or `profiles_by_run`: the same columns,
/// keyed by region and by run and region).
fn insert_profiles(
    tx: &rusqlite::Transaction<'_>,
    table: &'static str,
    rows: &[(RegionProfile, String)],
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {table}
         (region, run_id, window_from, window_to, computed_at, profile_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ))?;
    for (p, json) in rows {
        statement.execute(params![
            p.figures.region,
            p.run_id,
            epoch(p.window_from),
            epoch(p.window_to),
            epoch(p.computed_at),
            json
        ])?;
    }
    Ok(())
}

fn profiles_from_json(
    rows: impl Iterator<Item = rusqlite::Result<String>>,
) -> Result<Vec<RegionProfile>, StoreError> {
    rows.map(|json| serde_json::from_str(&json?).map_err(|e| StoreError::Corrupt(e.into())))
        .collect()
}

fn epoch(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .map(|_| ())
    }

    async fn upsert_meters(&self, meters: &[Meter]) -> Result<(), StoreError> {
        let meters = meters.to_vec();
        self.write(move |c| {
            let tx = c.transaction()?;
            {
                let mut statement = tx.prepare_cached(
                    "INSERT INTO meters (meter_id, region, lat, lon, household_size, dwelling, registered_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (meter_id) DO UPDATE SET region = excluded.region, lat = excluded.lat,
                       lon = excluded.lon, household_size = excluded.household_size,
                       dwelling = excluded.dwelling, registered_at = excluded.registered_at",
                )?;
                for m in &meters {
                    statement.execute(params![
                        m.meter_id,
                        m.region,
                        m.lat,
                        m.lon,
                        m.household_size.map(i64::from),
                        m.dwelling,
                        epoch(m.registered_at)
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn meter(&self, meter_id: &MeterId) -> Result<Option<Meter>, StoreError> {
        let id = meter_id.clone();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {METER_COLUMNS} FROM meters WHERE meter_id = ?1"),
                [id],
                meter_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn meters(&self) -> Result<Vec<Meter>, StoreError> {
        self.read(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {METER_COLUMNS} FROM meters ORDER BY meter_id"
            ))?;
            let rows = statement.query_map([], meter_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn write_readings(&self, readings: &[Reading]) -> Result<(), StoreError> {
        if readings.is_empty() {
            return Ok(());
        }
        let readings = readings.to_vec();
        self.write(move |c| {
            let tx = c.transaction()?;
            {
                let mut statement = tx.prepare_cached(
                    "INSERT INTO readings (meter_id, ts, kwh, interval_s) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (meter_id, ts) DO UPDATE SET kwh = excluded.kwh,
                       interval_s = excluded.interval_s",
                )?;
                for r in &readings {
                    statement.execute(params![r.meter_id, epoch(r.ts), r.kwh, r.interval_s])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn meter_readings(
        &self,
        meter_id: &MeterId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let id = meter_id.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT meter_id, ts, kwh, interval_s FROM readings
                 WHERE meter_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts LIMIT ?4",
            )?;
            let rows = statement.query_map(params![id, epoch(from), epoch(to), limit], |r| {
                Ok(Reading {
                    meter_id: r.get(0)?,
                    ts: from_epoch(r.get(1)?),
                    kwh: r.get(2)?,
                    interval_s: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// The whole window as one slice (the index on `ts` serves it), or one slice per region
    /// asked for, named by its code.
    async fn scan_slices(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        regions: Option<&[RegionCode]>,
    ) -> Result<Vec<ScanSlice>, StoreError> {
        Ok(match regions {
            None => vec![ScanSlice::whole(from, to)],
            Some(regions) => regions
                .iter()
                .map(|r| ScanSlice {
                    from,
                    to,
                    part: r.to_string(),
                })
                .collect(),
        })
    }

    async fn scan_readings(
        &self,
        slice: &ScanSlice,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        // A slice's part is empty (every region) or one region's code.
        let region = slice.part.clone();
        let (from, to) = (slice.from, slice.to);
        // The cursor is the last (meter_id, ts) handed out, as "<ts>:<meter_id>".
        let (after_meter, after_ts) = match cursor {
            None => (String::new(), i64::MIN),
            Some(c) => {
                let (ts, meter) = c
                    .split_once(':')
                    .ok_or_else(|| StoreError::Corrupt(format!("bad scan cursor `{c}`").into()))?;
                let ts = ts
                    .parse::<i64>()
                    .map_err(|_| StoreError::Corrupt(format!("bad scan cursor `{c}`").into()))?;
                (meter.to_owned(), ts)
            }
        };
        let limit = limit.max(1);
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (from, to) = (epoch(from), epoch(to));
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT m.region, r.meter_id, r.ts, r.kwh, r.interval_s
                 FROM readings r JOIN meters m ON m.meter_id = r.meter_id
                 WHERE m.region IS NOT NULL AND r.ts >= ?1 AND r.ts < ?2
                   AND (r.meter_id, r.ts) > (?3, ?4) AND (?6 = '' OR m.region = ?6)
                 ORDER BY r.meter_id, r.ts LIMIT ?5",
            )?;
            let rows = statement
                .query_map(
                    params![from, to, after_meter, after_ts, sql_limit, region],
                    |r| {
                        Ok(RegionReading {
                            region: r.get(0)?,
                            meter_id: r.get(1)?,
                            ts: from_epoch(r.get(2)?),
                            kwh: r.get(3)?,
                            interval_s: r.get(4)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = (rows.len() == limit)
                .then(|| {
                    rows.last()
                        .map(|l| format!("{}:{}", l.ts.timestamp(), l.meter_id))
                })
                .flatten();
            Ok(ScanPage { rows, next })
        })
        .await
    }

    async fn put_profiles(&self, profiles: &[RegionProfile]) -> Result<(), StoreError> {
        let rows = with_json(profiles)?;
        self.write(move |c| {
            let tx = c.transaction()?;
            insert_profiles(&tx, "regional_profiles", &rows)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn profiles(&self) -> Result<Vec<RegionProfile>, StoreError> {
        self.read(|c| {
            let mut statement =
                c.prepare("SELECT profile_json FROM regional_profiles ORDER BY region")?;
            profiles_from_json(statement.query_map([], |r| r.get::<_, String>(0))?)
        })
        .await
    }

    async fn put_run_profiles(&self, profiles: &[RegionProfile]) -> Result<(), StoreError> {
        let rows = with_json(profiles)?;
        let expired = epoch(Utc::now() - super::HISTORY_RETENTION);
        self.write(move |c| {
            let tx = c.transaction()?;
            insert_profiles(&tx, "profiles_by_run", &rows)?;
            tx.execute(
                "DELETE FROM profiles_by_run WHERE computed_at < ?1",
                [expired],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn run_profiles(&self, run_id: &str) -> Result<Vec<RegionProfile>, StoreError> {
        let id = run_id.to_owned();
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT profile_json FROM profiles_by_run WHERE run_id = ?1 ORDER BY region",
            )?;
            profiles_from_json(statement.query_map([id], |r| r.get::<_, String>(0))?)
        })
        .await
    }

    async fn region_history(
        &self,
        region: &RegionCode,
        limit: usize,
    ) -> Result<Vec<RegionProfile>, StoreError> {
        let region = region.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT profile_json FROM profiles_by_run WHERE region = ?1
                 ORDER BY computed_at DESC, run_id DESC LIMIT ?2",
            )?;
            profiles_from_json(
                statement.query_map(params![region, limit], |r| r.get::<_, String>(0))?,
            )
        })
        .await
    }

    async fn put_run(&self, run: &Run) -> Result<(), StoreError> {
        let r = run.clone();
        self.write(move |c| {
            c.prepare_cached(&format!(
                "INSERT OR REPLACE INTO runs ({RUN_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                r.run_id,
                r.status,
                r.trigger,
                r.created_at.timestamp_millis(),
                r.started_at.map(|t| t.timestamp_millis()),
                r.finished_at.map(|t| t.timestamp_millis()),
                r.window_from.map(epoch),
                r.window_to.map(epoch),
                count(r.rows_scanned),
                count(r.regions_written),
                r.error,
                r.published
            ])?;
            Ok(())
        })
        .await
    }

    async fn run(&self, run_id: &str) -> Result<Option<Run>, StoreError> {
        let id = run_id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                [id],
                run_from_row,
            )
            .optional()?)
        })
        .await
    }

    async fn runs(&self, limit: usize) -> Result<Vec<Run>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut statement = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_ms DESC, run_id DESC LIMIT ?1"
            ))?;
            let rows = statement.query_map([limit], run_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn summary(&self) -> Result<StoreSummary, StoreError> {
        self.read(|c| {
            let meters: i64 = c.query_row("SELECT count(*) FROM meters", [], |r| r.get(0))?;
            let readings: i64 = c.query_row("SELECT count(*) FROM readings", [], |r| r.get(0))?;
            let latest: Option<i64> =
                c.query_row("SELECT max(ts) FROM readings", [], |r| r.get(0))?;
            let with_readings: i64 = c.query_row(
                "SELECT count(*) FROM meters m
                 WHERE EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = m.meter_id)",
                [],
                |r| r.get(0),
            )?;
            let mut statement =
                c.prepare("SELECT region, count(*) FROM meters GROUP BY region ORDER BY region")?;
            let by_region = statement
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut statement = c.prepare(
                "SELECT meter_id, max(ts) FROM readings GROUP BY meter_id ORDER BY meter_id",
            )?;
            let last = statement
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                // Only parsed ids are ever written.
                .filter_map(|(m, ts)| Some((MeterId::parse(m).ok()?, from_epoch(ts))))
                .collect();
            Ok(StoreSummary {
                meters: meters.max(0) as u64,
                readings: readings.max(0) as u64,
                meters_by_region: by_region,
                meters_with_readings: with_readings.max(0) as u64,
                latest_reading: latest.map(from_epoch),
                last_reading_by_meter: last,
            })
        })
        .await
    }

    async fn revoke_meter(&self, meter_id: &MeterId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let (meter_id, at) = (meter_id.clone(), at.timestamp_millis());
        self.write(move |c| {
            c.execute(
                "INSERT INTO meter_revocations (meter_id, revoked_at) VALUES (?1, ?2)
                 ON CONFLICT (meter_id) DO UPDATE SET revoked_at = excluded.revoked_at",
                params![meter_id, at],
            )?;
            Ok(())
        })
        .await
    }

    async fn revocations(&self) -> Result<Vec<(MeterId, DateTime<Utc>)>, StoreError> {
        self.read(|c| {
            let mut statement =
                c.prepare_cached("SELECT meter_id, revoked_at FROM meter_revocations")?;
            let rows = statement.query_map([], |r| {
                let at: i64 = r.get(1)?;
                Ok((r.get(0)?, from_epoch_ms(at)))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Lease, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let now = Utc::now().timestamp_millis();
        let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.write(move |c| {
            // One statement: SQLite's write lock makes it atomic across processes.
            c.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4",
                params![name, holder, until, now],
            )?;
            let current: String = c.query_row(
                "SELECT holder FROM leases WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )?;
            Ok(Lease::of(current, &holder))
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| {
            c.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )?;
            Ok(())
        })
        .await
    }

    async fn put_live(
        &self,
        part: u32,
        entries: &[LiveEntry],
        slots: &[LiveSlot],
    ) -> Result<(), StoreError> {
        let (entries, slots) = (entries.to_vec(), slots.to_vec());
        let expired = epoch(live::window_start(Utc::now()));
        self.write(move |c| {
            let tx = c.transaction()?;
            {
                let mut statement = tx.prepare_cached(
                    "INSERT OR REPLACE INTO live_entries (part, meter_id, ts, region, micro_kwh)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in &entries {
                    statement.execute(params![part, e.meter_id, epoch(e.ts), e.region, e.micro_kwh])?;
                }
                let mut statement = tx.prepare_cached(
                    "INSERT OR REPLACE INTO live_slots (slot, region, part, micro_kwh, meters, readings)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for s in &slots {
                    statement.execute(params![
                        epoch(s.slot),
                        s.region,
                        part,
                        s.micro_kwh,
                        s.meters,
                        s.readings
                    ])?;
                }
            }
            tx.execute("DELETE FROM live_entries WHERE ts < ?1", params![expired])?;
            tx.execute("DELETE FROM live_slots WHERE slot < ?1", params![expired])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn live_entries(
        &self,
        part: u32,
        from: DateTime<Utc>,
    ) -> Result<Vec<LiveEntry>, StoreError> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT meter_id, ts, region, micro_kwh FROM live_entries
                 WHERE part = ?1 AND ts >= ?2",
            )?;
            let rows = statement.query_map(params![part, epoch(from)], |r| {
                Ok(LiveEntry {
                    meter_id: r.get(0)?,
                    ts: from_epoch(r.get(1)?),
                    region: r.get(2)?,
                    micro_kwh: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn live_slots(&self, from: DateTime<Utc>) -> Result<Vec<LiveSlot>, StoreError> {
        let rows = self
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT region, slot, micro_kwh, meters, readings FROM live_slots
                     WHERE slot >= ?1",
                )?;
                let rows = statement.query_map(params![epoch(from)], |r| {
                    Ok(LiveSlot {
                        region: r.get(0)?,
                        slot: from_epoch(r.get(1)?),
                        micro_kwh: r.get(2)?,
                        meters: r.get(3)?,
                        readings: r.get(4)?,
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        Ok(sum_live_parts(rows))
    }
}
