//! The sink's write path: a batch of readings becomes writes only. Each reading is written
//! to its meter's month partition and, when its meter has a region, to its (region, day,
//! shard) partition; each meter-day touched gets its `meter_data_days` row, written with the
//! reading's own time as the write timestamp so the newest reading wins without reading
//! anything first. Meters' regions come from a bounded cache ([`RegionCache`]), so a meter
//! is looked up once per cache lifetime, not per reading.
//!
//! The statements run through [`WritePort`], so a recording port shows exactly what the path
//! sends (the test below).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use iot_common::domain::{MeterId, Reading, RegionCode};
use iot_common::store::StoreError;
use scylla::value::{CqlDate, CqlTimestamp, CqlValue};

use crate::layout::{day_of, month_of, shard_of};
use crate::region_cache::{Cached, RegionCache};
use crate::statements as cql;

/// Requests one fan-out starts at once; the client's permits cap the whole process.
pub const FAN_OUT: usize = 16;

/// Runs `futures` at most [`FAN_OUT`] at a time; answers in completion order.
pub async fn fan_out<T, E, F>(futures: Vec<F>) -> Result<Vec<T>, StoreError>
where
    F: std::future::Future<Output = Result<T, E>>,
    StoreError: From<E>,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(futures)
        .buffer_unordered(FAN_OUT)
        .map_err(StoreError::from)
        .try_collect()
        .await
}

/// Writes each partition's rows of `write`, several partitions at a time.
pub async fn write_parts(
    port: &dyn WritePort,
    write: Write,
    parts: Vec<Vec<Row>>,
) -> Result<(), StoreError> {
    fan_out(
        parts
            .into_iter()
            .map(|rows| port.write(write, rows))
            .collect(),
    )
    .await?;
    Ok(())
}

/// One statement's bound values.
pub type Row = Vec<CqlValue>;

/// The writes the write path sends: each one prepared statement of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A reading in its meter's month partition.
    ByMeter,
    /// A reading in its (region, day, shard) partition.
    ByRegion,
    /// A reading out of a (region, day, shard) partition (its meter moved away).
    ByRegionDelete,
    /// A meter-day's row of `meter_data_days`.
    MeterDay,
}

impl Write {
    /// Its CQL, as prepared.
    pub fn cql(self) -> &'static str {
        match self {
            Self::ByMeter => cql::READING_BY_METER_UPSERT,
            Self::ByRegion => cql::READING_BY_REGION_UPSERT,
            Self::ByRegionDelete => cql::READING_BY_REGION_DELETE,
            Self::MeterDay => cql::METER_DAY_PUT,
        }
    }
}

/// What the write path needs of a session.
#[async_trait]
pub trait WritePort: Send + Sync {
    /// Writes `rows` of `write`, every row in one partition.
    async fn write(&self, write: Write, rows: Vec<Row>) -> Result<(), StoreError>;
    /// The region `meter` is registered in (a read of `meters`).
    async fn meter_region(&self, meter: &MeterId) -> Result<Option<RegionCode>, StoreError>;
}

/// A meter whose cached region was stale and turned out different: it moved, and readings
/// this process filed since may sit under the old region until re-filed.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    pub meter: MeterId,
    pub old: RegionCode,
    pub new: Option<RegionCode>,
}

fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.to_owned())
}

fn date(d: NaiveDate) -> CqlValue {
    CqlValue::Date(CqlDate::from(d))
}

fn timestamp(t: DateTime<Utc>) -> CqlValue {
    CqlValue::Timestamp(CqlTimestamp::from(t))
}

fn interval(r: &Reading) -> CqlValue {
    CqlValue::Int(i32::try_from(r.interval_s).unwrap_or(i32::MAX))
}

/// A (region, day, shard) partition key.
type RegionPartition = (RegionCode, NaiveDate, i32);

/// The region each meter of a write is filed under (`None`: unregistered or in no region).
pub type Regions = HashMap<MeterId, Option<RegionCode>>;

/// `readings` of meters with a region in `regions`, as rows of `readings_by_region_shard`
/// grouped by partition; `key_only` gives the primary key alone (for a DELETE).
pub fn region_rows(
    readings: &[&Reading],
    regions: &Regions,
    shards: u32,
    key_only: bool,
) -> Vec<Vec<Row>> {
    let mut parts: BTreeMap<RegionPartition, Vec<Row>> = BTreeMap::new();
    for r in readings {
        let Some(Some(region)) = regions.get(&r.meter_id) else {
            continue;
        };
        let (day, shard) = (day_of(r.ts), shard_of(r.meter_id.as_str(), shards));
        let mut row = vec![
            text(region.as_str()),
            date(day),
            CqlValue::Int(shard),
            timestamp(r.ts),
            text(r.meter_id.as_str()),
        ];
        if !key_only {
            row.extend([CqlValue::Double(r.kwh), interval(r)]);
        }
        parts
            .entry((region.clone(), day, shard))
            .or_default()
            .push(row);
    }
    parts.into_values().collect()
}

/// Writes batches of readings; one per store, shared by its clones.
pub struct ReadingWriter {
    regions: RegionCache,
    shards: u32,
}

impl ReadingWriter {
    pub fn new(regions: RegionCache, shards: u32) -> Self {
        Self { regions, shards }
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn cache(&self) -> &RegionCache {
        &self.regions
    }

    /// Writes `readings` (the last of several with one meter and time wins, as in a
    /// sequence of upserts). Answers the meters found to have moved, for the caller to
    /// re-file.
    pub async fn write(
        &self,
        port: &dyn WritePort,
        readings: &[Reading],
    ) -> Result<Vec<Moved>, StoreError> {
        // Inside one batch every write has the same timestamp, so duplicates must not reach
        // it.
        let mut latest: BTreeMap<(&MeterId, DateTime<Utc>), &Reading> = BTreeMap::new();
        for r in readings {
            latest.insert((&r.meter_id, r.ts), r);
        }
        if latest.is_empty() {
            return Ok(Vec::new());
        }
        let meters: BTreeSet<&MeterId> = latest.keys().map(|(m, _)| *m).collect();
        let readings: Vec<&Reading> = latest.into_values().collect();
        let (regions, moved) = self.regions_of(port, &meters).await?;

        let mut by_month: BTreeMap<(&str, NaiveDate), Vec<Row>> = BTreeMap::new();
        let mut newest: BTreeMap<(&str, NaiveDate), DateTime<Utc>> = BTreeMap::new();
        for r in &readings {
            let meter = r.meter_id.as_str();
            let month = month_of(r.ts);
            by_month.entry((meter, month)).or_default().push(vec![
                text(meter),
                date(month),
                timestamp(r.ts),
                CqlValue::Double(r.kwh),
                interval(r),
            ]);
            let at = newest.entry((meter, day_of(r.ts))).or_insert(r.ts);
            *at = (*at).max(r.ts);
        }
        // `meter_data_days` is partitioned by meter: one batch per meter.
        let mut days: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
        for ((meter, day), ts) in newest {
            days.entry(meter).or_default().push(vec![
                text(meter),
                date(day),
                timestamp(ts),
                CqlValue::BigInt(ts.timestamp_micros()),
            ]);
        }
        let mut writes: Vec<_> = by_month
            .into_values()
            .map(|rows| port.write(Write::ByMeter, rows))
            .collect();
        writes.extend(
            region_rows(&readings, &regions, self.shards, false)
                .into_iter()
                .map(|rows| port.write(Write::ByRegion, rows)),
        );
        writes.extend(
            days.into_values()
                .map(|rows| port.write(Write::MeterDay, rows)),
        );
        fan_out(writes).await?;

        // A meter placed while this write ran re-filed its readings without these: look
        // again, now that they are stored where a registration looks for them. Only meters
        // in no region pay this read, and a registered fleet has none.
        let unplaced: Vec<&MeterId> = regions
            .iter()
            .filter(|(_, region)| region.is_none())
            .map(|(id, _)| id)
            .collect();
        if !unplaced.is_empty() {
            let found = fan_out(
                unplaced
                    .into_iter()
                    .map(|m| async move { Ok::<_, StoreError>((m, port.meter_region(m).await?)) })
                    .collect(),
            )
            .await?;
            let placed: Regions = found
                .into_iter()
                .filter(|(_, region)| region.is_some())
                .map(|(m, region)| {
                    self.regions.put(m, region.as_ref());
                    (m.clone(), region)
                })
                .collect();
            if !placed.is_empty() {
                let parts = region_rows(&readings, &placed, self.shards, false);
                write_parts(port, Write::ByRegion, parts).await?;
            }
        }
        Ok(moved)
    }

    /// The regions of `meters` (`None`: unregistered or in no region): fresh cache entries
    /// as they are, the rest looked up once each.
    async fn regions_of(
        &self,
        port: &dyn WritePort,
        meters: &BTreeSet<&MeterId>,
    ) -> Result<(Regions, Vec<Moved>), StoreError> {
        let mut known = HashMap::with_capacity(meters.len());
        let mut lookups = Vec::new();
        for m in meters {
            match self.regions.get(m) {
                Cached::Fresh(region) => {
                    known.insert((*m).clone(), Some(region));
                }
                Cached::Stale(old) => lookups.push((*m, Some(old))),
                Cached::Unknown => lookups.push((*m, None)),
            }
        }
        let found = fan_out(
            lookups
                .into_iter()
                .map(|(m, old)| async move {
                    Ok::<_, StoreError>((m, old, port.meter_region(m).await?))
                })
                .collect(),
        )
        .await?;
        let mut moved = Vec::new();
        for (m, old, region) in found {
            self.regions.put(m, region.as_ref());
            if let Some(old) = old.filter(|old| region.as_ref() != Some(old)) {
                moved.push(Moved {
                    meter: m.clone(),
                    old,
                    new: region.clone(),
                });
            }
            known.insert(m.clone(), region);
        }
        Ok((known, moved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A test double of the session: records every statement and answers region lookups
    /// from a map, counting them.
    #[derive(Default)]
    struct RecordingPort {
        writes: Mutex<Vec<(Write, Vec<Row>)>>,
        lookups: Mutex<Vec<String>>,
        regions: Mutex<HashMap<String, String>>,
    }

    #[async_trait]
    impl WritePort for RecordingPort {
        async fn write(&self, write: Write, rows: Vec<Row>) -> Result<(), StoreError> {
            self.writes.lock().unwrap().push((write, rows));
            Ok(())
        }
        async fn meter_region(&self, meter: &MeterId) -> Result<Option<RegionCode>, StoreError> {
            self.lookups.lock().unwrap().push(meter.to_string());
            let region = self.regions.lock().unwrap().get(meter.as_str()).cloned();
            Ok(region.map(|r| RegionCode::parse(r).unwrap()))
        }
    }

    impl RecordingPort {
        fn take(&self) -> (Vec<(Write, Vec<Row>)>, Vec<String>) {
            (
                std::mem::take(&mut *self.writes.lock().unwrap()),
                std::mem::take(&mut *self.lookups.lock().unwrap()),
            )
        }
    }

    const T0: i64 = 1_767_225_600;

    fn readings(meters: usize, slots: std::ops::Range<i64>, kwh: f64) -> Vec<Reading> {
        (0..meters)
            .flat_map(|m| {
                slots.clone().map(move |s| Reading {
                    meter_id: MeterId::parse(format!("HOME{m:04}")).unwrap(),
                    ts: DateTime::from_timestamp(T0 + s * 1800, 0).unwrap(),
                    kwh,
                    interval_s: 1800,
                })
            })
            .collect()
    }

    fn port_with(meters: usize) -> RecordingPort {
        let port = RecordingPort::default();
        for m in 0..meters {
            port.regions
                .lock()
                .unwrap()
                .insert(format!("HOME{m:04}"), format!("E09000{:03}", m % 3));
        }
        port
    }

    /// The acceptance check: what the sink sends per write is writes only. Regions are read
    /// once per meter per cache lifetime, never again while fresh, and nothing else is read.
    #[tokio::test]
    async fn the_sink_write_path_sends_writes_only() {
        let port = port_with(50);
        let writer = ReadingWriter::new(RegionCache::new(1_000, Duration::from_secs(3600)), 8);
        // Two days of 50 meters, then ten more half-hours, then a re-delivery.
        for (i, batch) in [
            readings(50, 0..96, 0.25),
            readings(50, 96..106, 0.5),
            readings(50, 96..106, 0.5),
        ]
        .iter()
        .enumerate()
        {
            let moved = writer.write(&port, batch).await.unwrap();
            assert!(moved.is_empty());
            let (writes, lookups) = port.take();
            assert_eq!(
                lookups.len(),
                if i == 0 { 50 } else { 0 },
                "one region lookup per meter, on the first write only"
            );
            for (cql, _) in &writes {
                assert!(
                    cql.cql().starts_with("INSERT INTO "),
                    "not a write: {}",
                    cql.cql()
                );
                assert!(
                    !cql.cql().to_lowercase().contains("select"),
                    "no read-before-write: {}",
                    cql.cql()
                );
            }
            let rows = |table: &str| -> usize {
                writes
                    .iter()
                    .filter(|(cql, _)| cql.cql().starts_with(&format!("INSERT INTO {table} ")))
                    .map(|(_, rows)| rows.len())
                    .sum()
            };
            let n = batch.len();
            assert_eq!(rows("readings_by_meter_month"), n);
            assert_eq!(rows("readings_by_region_shard"), n);
            // One row per meter-day: 2 days on the first batch, then the third day.
            assert_eq!(rows("meter_data_days"), if i == 0 { 100 } else { 50 });
        }
    }

    #[tokio::test]
    async fn a_partition_gets_its_rows_and_the_newest_reading_times_its_day() {
        let port = port_with(1);
        let writer = ReadingWriter::new(RegionCache::new(10, Duration::from_secs(60)), 4);
        // Out of order, across a UTC midnight and a month's end (2026-01-31 → 02-01).
        let base = T0 + 30 * 86_400;
        let mut batch = readings(1, 40..56, 0.1);
        for r in &mut batch {
            r.ts = DateTime::from_timestamp(base + (r.ts.timestamp() - T0), 0).unwrap();
        }
        batch.reverse();
        writer.write(&port, &batch).await.unwrap();
        let (writes, _) = port.take();
        let months: Vec<&Vec<Row>> = writes
            .iter()
            .filter(|(c, _)| *c == Write::ByMeter)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(months.len(), 2, "January and February partitions");
        let days: Vec<&Row> = writes
            .iter()
            .filter(|(c, _)| *c == Write::MeterDay)
            .flat_map(|(_, r)| r)
            .collect();
        let mut latest = Vec::new();
        for row in days {
            // The write's timestamp is the day's newest reading's time.
            let (CqlValue::Timestamp(at), CqlValue::BigInt(micros)) = (&row[2], &row[3]) else {
                panic!("{row:?}")
            };
            assert_eq!(at.0 * 1000, *micros);
            latest.push(at.0 / 1000);
        }
        latest.sort();
        // 23:30 on January 31st and 03:30 on February 1st.
        assert_eq!(latest, vec![base + 47 * 1800, base + 55 * 1800]);
        let region_parts: Vec<&Vec<Row>> = writes
            .iter()
            .filter(|(c, _)| *c == Write::ByRegion)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(region_parts.len(), 2, "one shard, two days");
        let shard = shard_of("HOME0000", 4);
        for part in region_parts {
            assert!(part.iter().all(|row| row[2] == CqlValue::Int(shard)));
        }
    }

    #[tokio::test]
    async fn a_stale_region_that_changed_is_reported_as_a_move() {
        let port = port_with(2);
        let writer = ReadingWriter::new(RegionCache::new(10, Duration::from_millis(20)), 4);
        writer.write(&port, &readings(2, 0..2, 0.1)).await.unwrap();
        port.regions
            .lock()
            .unwrap()
            .insert("HOME0000".into(), "E09000033".into());
        tokio::time::sleep(Duration::from_millis(30)).await;
        let moved = writer.write(&port, &readings(2, 2..4, 0.1)).await.unwrap();
        assert_eq!(
            moved,
            vec![Moved {
                meter: MeterId::parse("HOME0000").unwrap(),
                old: RegionCode::parse("E09000000").unwrap(),
                new: Some(RegionCode::parse("E09000033").unwrap())
            }]
        );
    }

    #[tokio::test]
    async fn a_meter_in_no_region_is_looked_up_again_after_its_write() {
        let port = RecordingPort::default();
        let writer = ReadingWriter::new(RegionCache::new(10, Duration::from_secs(60)), 4);
        writer.write(&port, &readings(1, 0..3, 0.1)).await.unwrap();
        let (writes, lookups) = port.take();
        assert_eq!(lookups.len(), 2, "before and after the write");
        assert!(
            writes.iter().all(|(c, _)| *c != Write::ByRegion),
            "no region, no region rows"
        );
    }
}
