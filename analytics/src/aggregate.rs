//! The regional profile as a streaming aggregation over Arrow record batches.
//!
//! Definition (docs/analytics.md), in the regions' local time:
//! - per (region, meter, local day): daily kWh = sum of kWh;
//! - per region: meters, readings, mean / median / p90 of daily kWh, mean daily kWh on
//!   weekdays and on weekends;
//! - `hourly_kwh[h]` = mean over (meter, local day) of the kWh in local hour h — that is, the
//!   region's kWh in hour h divided by the number of (meter, day) pairs with readings in h;
//!   `peak_hour` its first argmax.
//!
//! Each partition of the scan feeds its own [`ProfileAccumulator`]; accumulators merge. The
//! state is one small record per (region, meter, local day), never the readings themselves.

use std::collections::HashMap;

use datafusion::arrow::array::{
    Array, AsArray, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, TimeUnit};
use datafusion::arrow::error::ArrowError;

pub use iot_common::ProfileFigures;

use iot_common::domain::RegionCode;

use crate::local_time::{LocalClock, LocalDay, iso_weekday};
use crate::schema::{KWH_COL, METER_COL, REGION_COL, TS_COL};

#[derive(Debug, Clone, Copy, Default)]
struct DayAcc {
    kwh: f64,
    n: u32,
    /// Bit h set: the day has readings in local hour h.
    hours: u32,
}

#[derive(Debug, Clone)]
struct Series {
    region: u32,
    meter: String,
    base: LocalDay,
    days: Vec<DayAcc>,
}

impl Series {
    fn day_mut(&mut self, day: LocalDay) -> &mut DayAcc {
        if self.days.is_empty() {
            self.base = day;
        }
        if day < self.base {
            let grow = (self.base - day) as usize;
            self.days
                .splice(0..0, std::iter::repeat_n(DayAcc::default(), grow));
            self.base = day;
        }
        let i = (day - self.base) as usize;
        if i >= self.days.len() {
            self.days.resize(i + 1, DayAcc::default());
        }
        &mut self.days[i]
    }
}

#[derive(Debug, Clone)]
struct RegionAcc {
    code: RegionCode,
    hour_kwh: [f64; 24],
}

/// The series and region a row's (meter, region) was last looked up as, and that row.
#[derive(Debug, Clone, Copy)]
struct Lookup {
    row: usize,
    series: u32,
    region: u32,
}

#[derive(Debug, Clone)]
pub struct ProfileAccumulator {
    clock: LocalClock,
    regions: Vec<RegionAcc>,
    region_index: HashMap<String, u32>,
    series: Vec<Series>,
    series_index: HashMap<(u32, String), u32>,
    rows: u64,
    skipped: u64,
    ts_range: Option<(i64, i64)>,
}

enum StringColumn<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl StringColumn<'_> {
    #[inline]
    fn value(&self, i: usize) -> &str {
        match self {
            StringColumn::Utf8(a) => a.value(i),
            StringColumn::Large(a) => a.value(i),
            StringColumn::View(a) => a.value(i),
        }
    }
}

fn column(batch: &RecordBatch, name: &str) -> Result<std::sync::Arc<dyn Array>, ArrowError> {
    batch
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| ArrowError::SchemaError(format!("readings have no `{name}` column")))
}

fn strings<'a>(a: &'a dyn Array, name: &str) -> Result<StringColumn<'a>, ArrowError> {
    match a.data_type() {
        DataType::Utf8 => Ok(StringColumn::Utf8(a.as_string::<i32>())),
        DataType::LargeUtf8 => Ok(StringColumn::Large(a.as_string::<i64>())),
        DataType::Utf8View => Ok(StringColumn::View(a.as_string_view())),
        other => Err(ArrowError::SchemaError(format!(
            "`{name}` must be a string column, not {other}"
        ))),
    }
}

/// A string column as plain/large/view strings (dictionaries are unpacked).
fn string_column(batch: &RecordBatch, name: &str) -> Result<std::sync::Arc<dyn Array>, ArrowError> {
    let a = column(batch, name)?;
    match a.data_type() {
        DataType::Dictionary(_, _) => cast(&a, &DataType::Utf8),
        _ => Ok(a),
    }
}

/// Timestamps as UTC epoch seconds (floored).
fn epoch_seconds(batch: &RecordBatch) -> Result<(Vec<i64>, Option<Vec<bool>>), ArrowError> {
    let a = column(batch, TS_COL)?;
    let (a, per_s) = match a.data_type() {
        DataType::Timestamp(unit, _) => {
            let per_s: i64 = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            (cast(&a, &DataType::Int64)?, per_s)
        }
        DataType::Int64 => (a, 1),
        other => {
            return Err(ArrowError::SchemaError(format!(
                "`{TS_COL}` must be a timestamp, not {other}"
            )));
        }
    };
    let ints = a.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let secs = ints.values().iter().map(|v| v.div_euclid(per_s)).collect();
    let valid = ints
        .nulls()
        .map(|n| (0..ints.len()).map(|i| n.is_valid(i)).collect());
    Ok((secs, valid))
}

impl ProfileAccumulator {
    pub fn new(clock: LocalClock) -> Self {
        Self {
            clock,
            regions: Vec::new(),
            region_index: HashMap::new(),
            series: Vec::new(),
            series_index: HashMap::new(),
            rows: 0,
            skipped: 0,
            ts_range: None,
        }
    }

    /// Readings folded in so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows left out because a column was null.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Earliest and latest reading seen, UTC epoch seconds.
    pub fn ts_range(&self) -> Option<(i64, i64)> {
        self.ts_range
    }

    /// The index of a region, added when first seen; a code that is not one is refused.
    fn region_idx(&mut self, code: &str) -> Result<u32, ArrowError> {
        if let Some(i) = self.region_index.get(code) {
            return Ok(*i);
        }
        let parsed = RegionCode::parse(code)
            .map_err(|e| ArrowError::InvalidArgumentError(format!("{REGION_COL} `{code}`: {e}")))?;
        Ok(self.region_index_of(&parsed))
    }

    /// The index of a parsed region, added when first seen.
    fn region_index_of(&mut self, code: &RegionCode) -> u32 {
        if let Some(i) = self.region_index.get(code.as_str()) {
            return *i;
        }
        let i = self.regions.len() as u32;
        self.regions.push(RegionAcc {
            code: code.clone(),
            hour_kwh: [0.0; 24],
        });
        self.region_index.insert(code.to_string(), i);
        i
    }

    fn series_idx(&mut self, region: u32, meter: &str) -> u32 {
        // Borrowing the key as (u32, &str) is not possible with a (u32, String) key; the
        // lookup runs only when the meter changes between rows, so the allocation is rare.
        let key = (region, meter.to_owned());
        if let Some(i) = self.series_index.get(&key) {
            return *i;
        }
        let i = self.series.len() as u32;
        self.series.push(Series {
            region,
            meter: meter.to_owned(),
            base: 0,
            days: Vec::new(),
        });
        self.series_index.insert(key, i);
        i
    }

    /// Folds one batch of readings in.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let region_arr = string_column(batch, REGION_COL)?;
        let meter_arr = string_column(batch, METER_COL)?;
        let kwh_arr = cast(&column(batch, KWH_COL)?, &DataType::Float64)?;
        let regions = strings(region_arr.as_ref(), REGION_COL)?;
        let meters = strings(meter_arr.as_ref(), METER_COL)?;
        let kwh = kwh_arr.as_primitive::<Float64Type>();
        let (secs, ts_valid) = epoch_seconds(batch)?;
        let any_nulls = ts_valid.is_some()
            || region_arr.null_count() > 0
            || meter_arr.null_count() > 0
            || kwh.null_count() > 0;

        if let (Some(lo), Some(hi)) = (secs.iter().min(), secs.iter().max()) {
            self.clock.cover(*lo, *hi);
            self.ts_range = Some(match self.ts_range {
                None => (*lo, *hi),
                Some((a, b)) => (a.min(*lo), b.max(*hi)),
            });
        }

        // Readings come grouped by meter in practice: look the series up only on a change.
        let mut current: Option<Lookup> = None;
        for (i, &ts) in secs.iter().enumerate() {
            if any_nulls
                && (ts_valid.as_ref().is_some_and(|v| !v[i])
                    || region_arr.is_null(i)
                    || meter_arr.is_null(i)
                    || kwh.is_null(i))
            {
                self.skipped += 1;
                continue;
            }
            let Lookup { series, region, .. } = match current {
                Some(found)
                    if meters.value(found.row) == meters.value(i)
                        && regions.value(found.row) == regions.value(i) =>
                {
                    found
                }
                _ => {
                    let region = self.region_idx(regions.value(i))?;
                    let series = self.series_idx(region, meters.value(i));
                    let found = Lookup {
                        row: i,
                        series,
                        region,
                    };
                    current = Some(found);
                    found
                }
            };
            let v = kwh.value(i);
            let (day, hour) = self.clock.day_hour(ts);
            let acc = self.series[series as usize].day_mut(day);
            acc.kwh += v;
            acc.n += 1;
            acc.hours |= 1 << hour;
            self.regions[region as usize].hour_kwh[hour as usize] += v;
            self.rows += 1;
        }
        Ok(())
    }

    /// Folds another partition's state into this one.
    pub fn merge(&mut self, other: ProfileAccumulator) {
        self.rows += other.rows;
        self.skipped += other.skipped;
        if let Some((lo, hi)) = other.ts_range {
            self.ts_range = Some(match self.ts_range {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        let mut region_map = Vec::with_capacity(other.regions.len());
        for r in &other.regions {
            let mine = self.region_index_of(&r.code);
            for (sum, add) in self.regions[mine as usize]
                .hour_kwh
                .iter_mut()
                .zip(r.hour_kwh)
            {
                *sum += add;
            }
            region_map.push(mine);
        }
        for s in other.series {
            let region = region_map[s.region as usize];
            let mine = self.series_idx(region, &s.meter) as usize;
            for (k, d) in s.days.iter().enumerate() {
                if d.n == 0 {
                    continue;
                }
                let acc = self.series[mine].day_mut(s.base + k as LocalDay);
                acc.kwh += d.kwh;
                acc.n += d.n;
                acc.hours |= d.hours;
            }
        }
    }

    /// The profile of every region seen, ordered by region code.
    pub fn finish(&self) -> Vec<ProfileFigures> {
        struct RegionTotals {
            meters: u64,
            readings: u64,
            daily: Vec<f64>,
            /// Each meter's mean over its days with readings.
            meter_means: Vec<f64>,
            weekday: (f64, u64),
            weekend: (f64, u64),
            hour_days: [u64; 24],
        }
        let mut work: Vec<RegionTotals> = (0..self.regions.len())
            .map(|_| RegionTotals {
                meters: 0,
                readings: 0,
                daily: Vec::new(),
                meter_means: Vec::new(),
                weekday: (0.0, 0),
                weekend: (0.0, 0),
                hour_days: [0; 24],
            })
            .collect();
        for s in &self.series {
            let w = &mut work[s.region as usize];
            w.meters += 1;
            let (mut kwh, mut days) = (0.0, 0u32);
            for (k, d) in s.days.iter().enumerate() {
                if d.n == 0 {
                    continue;
                }
                kwh += d.kwh;
                days += 1;
                w.readings += u64::from(d.n);
                w.daily.push(d.kwh);
                let part = if iso_weekday(s.base + k as LocalDay) <= 5 {
                    &mut w.weekday
                } else {
                    &mut w.weekend
                };
                part.0 += d.kwh;
                part.1 += 1;
                for (h, n) in w.hour_days.iter_mut().enumerate() {
                    *n += u64::from(d.hours >> h & 1);
                }
            }
            if days > 0 {
                w.meter_means.push(kwh / f64::from(days));
            }
        }
        let mut out: Vec<ProfileFigures> = self
            .regions
            .iter()
            .zip(work)
            .filter(|(_, w)| !w.daily.is_empty())
            .map(|(r, mut w)| {
                w.daily.sort_by(f64::total_cmp);
                w.meter_means.sort_by(f64::total_cmp);
                let mut hourly = [0.0; 24];
                for ((out, sum), days) in hourly.iter_mut().zip(r.hour_kwh).zip(w.hour_days) {
                    if days > 0 {
                        *out = sum / days as f64;
                    }
                }
                let mean = |(sum, n): (f64, u64)| (n > 0).then(|| sum / n as f64);
                let total: f64 = w.daily.iter().sum();
                ProfileFigures {
                    region: r.code.clone(),
                    meters: w.meters,
                    readings: w.readings,
                    avg_daily_kwh: total / w.daily.len() as f64,
                    p50_daily_kwh: quantile_cont(&w.daily, 0.5),
                    p90_daily_kwh: quantile_cont(&w.daily, 0.9),
                    weekday_avg_daily_kwh: mean(w.weekday),
                    weekend_avg_daily_kwh: mean(w.weekend),
                    peak_hour: peak(&hourly),
                    hourly_kwh: hourly,
                    meter_daily_percentiles: (0..=100)
                        .map(|p| quantile_cont(&w.meter_means, f64::from(p) / 100.0))
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.region.cmp(&b.region));
        out
    }
}

/// The first hour with the highest value.
fn peak(hourly: &[f64; 24]) -> u8 {
    let mut best = 0;
    for h in 1..24 {
        if hourly[h] > hourly[best] {
            best = h;
        }
    }
    best as u8
}

/// Continuous quantile of sorted values, interpolating linearly between the closest ranks
/// exactly as DuckDB's `quantile_cont` does.
pub fn quantile_cont(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rn = (n - 1) as f64 * q;
            let (frn, crn) = (rn.floor(), rn.ceil());
            let (lo, hi) = (sorted[frn as usize], sorted[crn as usize]);
            if frn == crn {
                lo
            } else {
                lo + (hi - lo) * (rn - frn)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use iot_common::store::RegionReading;

    use super::*;
    use crate::schema::{readings_schema, rows_to_batch};

    fn batch(rows: &[(&str, &str, &str, f64)]) -> RecordBatch {
        let rows: Vec<RegionReading> = rows
            .iter()
            .map(|(region, meter, ts, kwh)| RegionReading {
                region: region.parse().unwrap_or_else(|e| panic!("{e}")),
                meter_id: meter.parse().unwrap_or_else(|e| panic!("{e}")),
                ts: ts.parse().unwrap_or_default(),
                kwh: *kwh,
                interval_s: None,
            })
            .collect();
        rows_to_batch(&readings_schema(), &rows).unwrap_or_else(|e| panic!("{e}"))
    }

    fn profile(rows: &[(&str, &str, &str, f64)]) -> Vec<ProfileFigures> {
        let mut acc = ProfileAccumulator::new(LocalClock::new(chrono_tz::Europe::London));
        acc.update(&batch(rows)).unwrap_or_else(|e| panic!("{e}"));
        acc.finish()
    }

    #[test]
    fn quantiles_interpolate_like_duckdb() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_cont(&v, 0.5), 3.0);
        assert_eq!(quantile_cont(&v, 0.9), 4.0 + 4.0 * (2.7 - 2.0));
        assert_eq!(quantile_cont(&[5.0], 0.9), 5.0);
        assert_eq!(quantile_cont(&[1.0, 3.0, 7.0], 0.5), 3.0);
    }

    #[test]
    fn spring_forward_day_has_23_local_hours() {
        // 2026-03-29 (Sunday): 00:30 UTC is 00:30 GMT; 01:00 UTC is already 02:00 BST.
        // 22:30 UTC on the 28th is 22:30 GMT on Saturday the 28th; 23:30 UTC on the 29th
        // is 00:30 BST on Monday the 30th.
        let p = profile(&[
            ("R", "m", "2026-03-28T22:30:00Z", 1.0),
            ("R", "m", "2026-03-29T00:30:00Z", 2.0),
            ("R", "m", "2026-03-29T01:00:00Z", 4.0),
            ("R", "m", "2026-03-29T22:30:00Z", 8.0),
            ("R", "m", "2026-03-29T23:30:00Z", 16.0),
        ]);
        let p = &p[0];
        assert_eq!(p.readings, 5);
        // Days: Sat 28 = 1, Sun 29 = 2 + 4 + 8 = 14, Mon 30 = 16.
        assert_eq!(p.avg_daily_kwh, (1.0 + 14.0 + 16.0) / 3.0);
        assert_eq!(p.p50_daily_kwh, 14.0);
        assert_eq!(p.weekend_avg_daily_kwh, Some(7.5));
        assert_eq!(p.weekday_avg_daily_kwh, Some(16.0));
        let mut want = [0.0; 24];
        want[22] = 1.0; // Sat 22:xx
        want[0] = (2.0 + 16.0) / 2.0; // Sun 00:30 and Mon 00:30
        want[2] = 4.0; // Sun 02:00 BST
        want[23] = 8.0; // Sun 23:30 BST
        assert_eq!(p.hourly_kwh, want);
        assert_eq!(p.peak_hour, 0);
    }

    #[test]
    fn fall_back_day_has_25_local_hours() {
        // 2026-10-25 (Sunday): 00:30 UTC is 01:30 BST, 01:30 UTC is 01:30 GMT: both local
        // hour 1 of the same day; 23:30 UTC on the 24th is 00:30 BST on the 25th.
        let p = profile(&[
            ("R", "m", "2026-10-24T22:30:00Z", 1.0),
            ("R", "m", "2026-10-24T23:30:00Z", 2.0),
            ("R", "m", "2026-10-25T00:30:00Z", 4.0),
            ("R", "m", "2026-10-25T01:30:00Z", 8.0),
            ("R", "m", "2026-10-25T23:30:00Z", 16.0),
        ]);
        let p = &p[0];
        // Days: Sat 24 = 1 (23:30 BST), Sun 25 = 2 + 4 + 8 + 16 (23:30 GMT) = 30.
        assert_eq!(p.avg_daily_kwh, 15.5);
        let mut want = [0.0; 24];
        want[23] = (1.0 + 16.0) / 2.0;
        want[0] = 2.0;
        want[1] = 12.0; // both 01:30s in one (meter, day, hour)
        assert_eq!(p.hourly_kwh, want);
        assert_eq!(p.peak_hour, 1);
        assert_eq!(p.weekday_avg_daily_kwh, None);
    }

    #[test]
    fn regions_meters_and_partitions() {
        let rows = [
            ("A", "m1", "2026-01-05T10:00:00Z", 1.0),
            ("A", "m1", "2026-01-05T10:30:00Z", 1.0),
            ("A", "m2", "2026-01-05T10:00:00Z", 3.0),
            ("B", "m3", "2026-01-06T18:00:00Z", 2.0),
            ("A", "m1", "2026-01-06T10:00:00Z", 5.0),
        ];
        let whole = profile(&rows);
        let mut a = ProfileAccumulator::new(LocalClock::new(chrono_tz::Europe::London));
        let mut b = a.clone();
        a.update(&batch(&rows[..2]))
            .unwrap_or_else(|e| panic!("{e}"));
        b.update(&batch(&rows[2..]))
            .unwrap_or_else(|e| panic!("{e}"));
        a.merge(b);
        assert_eq!(a.finish(), whole, "merging partitions changes nothing");
        assert_eq!(whole.len(), 2);
        let ra = &whole[0];
        assert_eq!((ra.region.as_str(), ra.meters, ra.readings), ("A", 2, 4));
        // (m1, Jan 5) = 2, (m2, Jan 5) = 3, (m1, Jan 6) = 5.
        assert_eq!(ra.avg_daily_kwh, 10.0 / 3.0);
        assert_eq!(ra.p50_daily_kwh, 3.0);
        assert_eq!(ra.hourly_kwh[10], 10.0 / 3.0);
        assert_eq!(whole[1].peak_hour, 18);
    }
}
