//! The capacity plan's arithmetic (`docs/capacity.md`, printed by `cargo run -p iot-cassandra
//! --example capacity`): the bytes of each readings row, computed from the values the write
//! path actually binds (`write_path`) and the storage format's per-row and per-cell framing,
//! and from them the partitions, bytes, writes and scan of a fleet.

use chrono::DateTime;
use iot_common::domain::{MeterId, Reading};
use scylla::value::CqlValue;

use crate::write_path::{Row, region_rows};

/// Bytes of one value as Cassandra's storage engine keeps it: fixed-size types as they are,
/// variable ones after an unsigned-vint length.
pub fn value_bytes(v: &CqlValue) -> usize {
    match v {
        CqlValue::Int(_) | CqlValue::Date(_) => 4,
        CqlValue::BigInt(_) | CqlValue::Double(_) | CqlValue::Timestamp(_) => 8,
        CqlValue::Text(s) => vint_bytes(s.len() as u64) + s.len(),
        // Not in a readings row.
        _ => 8,
    }
}

/// Length of an unsigned vint (Cassandra's `VIntCoding`): 1 byte up to 127, one more per 7
/// bits after.
pub fn vint_bytes(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.saturating_sub(1) / 7 + 1
}

/// The framing of one row of a table with a default TTL whose cells share the row's
/// timestamp and TTL (Cassandra's `UnfilteredSerializer`): flags (1), row size and previous
/// row size (vints, 2 each for rows under 16 KB), the row's timestamp as a delta from the
/// SSTable's oldest (6: a 14-day time window is 1.2e12 µs), its TTL (4: 63,072,000 s) and
/// local deletion time delta (4), the clustering header (1); then per cell a flags byte.
pub const ROW_FRAMING: usize = 1 + 2 + 2 + 6 + 4 + 4 + 1;
pub const CELL_FRAMING: usize = 1;

/// Bytes of a row whose first `clustering` values are its clustering key and the rest its
/// cells (the partition key is stored once per partition, not per row).
pub fn row_bytes(clustering: &[CqlValue], cells: &[CqlValue]) -> usize {
    ROW_FRAMING
        + clustering.iter().map(value_bytes).sum::<usize>()
        + cells
            .iter()
            .map(|v| CELL_FRAMING + value_bytes(v))
            .sum::<usize>()
}

/// Bytes per row of the readings tables, for a meter id of `id_len` characters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowSizes {
    /// `readings_by_region_shard`: clustering (ts, meter_id), cells kwh, interval_s.
    pub by_region: usize,
    /// `readings_by_meter_month`: clustering ts, cells kwh, interval_s.
    pub by_meter: usize,
    /// `meter_data_days`: clustering day, cell latest; one per meter-day.
    pub meter_day: usize,
}

/// The row sizes of the rows the write path binds for one reading of a meter whose id has
/// `id_len` characters.
pub fn row_sizes(id_len: usize) -> RowSizes {
    let id = "M".repeat(id_len.clamp(1, MeterId::MAX_LEN));
    let reading = Reading {
        // Clamped into MeterId's bounds above, and all letters: always valid.
        meter_id: MeterId::parse(id.clone()).expect("a valid meter id"),
        ts: DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(),
        kwh: 0.25,
        interval_s: 1800,
    };
    let region = iot_common::domain::RegionCode::parse("E09000007").expect("a valid region code");
    let regions = crate::write_path::Regions::from([(reading.meter_id.clone(), Some(region))]);
    let region_row: Row = region_rows(&[&reading], &regions, 64, false)
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_default();
    // (region, day, shard | ts, meter_id | kwh, interval_s)
    let by_region = row_bytes(
        region_row.get(3..5).unwrap_or_default(),
        region_row.get(5..).unwrap_or_default(),
    );
    let ts = CqlValue::Timestamp(reading.ts.into());
    let by_meter = row_bytes(
        std::slice::from_ref(&ts),
        &[CqlValue::Double(reading.kwh), CqlValue::Int(1800)],
    );
    let meter_day = row_bytes(&[CqlValue::Date(reading.ts.date_naive().into())], &[ts]);
    RowSizes {
        by_region,
        by_meter,
        meter_day,
    }
}

/// A fleet and how it is run.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    pub meters: u64,
    /// Meters in the largest region.
    pub largest_region: u64,
    pub regions: u64,
    pub interval_s: u64,
    pub id_len: usize,
    pub shards: u64,
    pub window_days: u64,
    pub retention_days: u64,
    pub replication: u64,
}

/// What a fleet asks of the cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub readings_per_day: u64,
    pub sink_readings_per_s: f64,
    /// Rows written per second (by meter, by region, and a meter-day row per reading, since
    /// a half-hourly meter's readings each come in a batch of their own).
    pub sink_rows_per_s: f64,
    pub bytes_per_day: u64,
    /// Bytes on disk over the retention, all replicas, before compression.
    pub bytes_retained: u64,
    pub region_day_partition_rows: u64,
    pub region_day_partition_bytes: u64,
    pub meter_month_partition_rows: u64,
    pub rows_scanned_per_run: u64,
    pub partitions_per_run: u64,
    /// Rows a run would scan from per-meter-day rollups (a day's total and its 24 local
    /// hours per meter, kept by the sink) instead of readings.
    pub rollup_rows_per_run: u64,
}

pub fn plan(f: &Fleet) -> Plan {
    let sizes = row_sizes(f.id_len);
    let per_meter_day = 86_400 / f.interval_s.max(1);
    let readings_per_day = f.meters * per_meter_day;
    let meter_days = f.meters;
    let bytes_per_day = readings_per_day * (sizes.by_region + sizes.by_meter) as u64
        + meter_days * sizes.meter_day as u64;
    let sink_readings_per_s = f.meters as f64 / f.interval_s.max(1) as f64;
    let shards_used = f.shards.min(f.largest_region).max(1);
    let region_day_partition_rows = (f.largest_region * per_meter_day).div_ceil(shards_used);
    let occupied = (f.regions * f.shards).min(f.meters).max(1);
    Plan {
        readings_per_day,
        sink_readings_per_s,
        sink_rows_per_s: sink_readings_per_s * 3.0,
        bytes_per_day,
        bytes_retained: bytes_per_day * f.retention_days * f.replication,
        region_day_partition_rows,
        region_day_partition_bytes: region_day_partition_rows * sizes.by_region as u64,
        meter_month_partition_rows: per_meter_day * 31,
        rows_scanned_per_run: readings_per_day * f.window_days,
        partitions_per_run: occupied * f.window_days,
        rollup_rows_per_run: f.meters * f.window_days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints_and_values_are_sized_as_the_format_writes_them() {
        assert_eq!(vint_bytes(0), 1);
        assert_eq!(vint_bytes(127), 1);
        assert_eq!(vint_bytes(128), 2);
        assert_eq!(vint_bytes(63_072_000), 4);
        assert_eq!(value_bytes(&CqlValue::Text("HOME000001".into())), 11);
        assert_eq!(value_bytes(&CqlValue::Double(0.5)), 8);
    }

    #[test]
    fn a_region_row_is_its_clustering_key_and_two_cells() {
        let s = row_sizes(12);
        // ts 8, meter id 1 + 12; kwh 1 + 8, interval 1 + 4.
        assert_eq!(s.by_region, ROW_FRAMING + 8 + 13 + 9 + 5);
        assert_eq!(s.by_meter, ROW_FRAMING + 8 + 9 + 5);
        assert_eq!(s.meter_day, ROW_FRAMING + 4 + 9);
    }

    #[test]
    fn the_national_fleet_keeps_region_partitions_under_the_bound() {
        let p = plan(&Fleet {
            meters: 30_000_000,
            largest_region: 100_000,
            regions: 300,
            interval_s: 1800,
            id_len: 12,
            shards: 64,
            window_days: 28,
            retention_days: 730,
            replication: 3,
        });
        assert_eq!(p.readings_per_day, 1_440_000_000);
        assert_eq!(p.region_day_partition_rows, 75_000);
        assert!(p.region_day_partition_bytes < 10_000_000);
        assert_eq!(p.rows_scanned_per_run, 40_320_000_000);
    }
}
