//! The regional profile as a streaming aggregation over Arrow record batches.
//!
//! Definition (docs/analytics.md), in the regions' local time:
//! - per (region, meter, local day): the day goes through validation and estimation
//!   ([`crate::quality`]); a day it keeps has daily kWh = the sum of its accepted readings and
//!   estimates (for a complete, unflagged day: the sum of its readings), an excluded day
//!   counts nowhere;
//! - per region: meters, readings, mean / median / p90 of daily kWh, mean daily kWh on
//!   weekdays and on weekends, and how many meter-days were complete, estimated, excluded;
//! - `hourly_kwh[h]` = mean over the kept (meter, local day) of the kWh in local hour h — that
//!   is, the region's kWh in hour h divided by the number of kept (meter, day) pairs with
//!   readings or estimates in h; `peak_hour` its first argmax, hours within
//!   [`PEAK_TIE`] of the highest counting as tied.
//!
//! Each partition of the scan feeds its own [`ProfileAccumulator`]; accumulators merge. The
//! state is one record per (region, meter, local day) holding the day's half-hour slots,
//! never the readings themselves.

use std::collections::HashMap;

use datafusion::arrow::array::{
    Array, AsArray, LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, TimeUnit};
use datafusion::arrow::error::ArrowError;

pub use iot_common::ProfileFigures;

use iot_common::domain::{MeterDayCounts, RegionCode};

use crate::local_time::{LocalClock, LocalDay, iso_weekday};
use crate::quality::{DaySlots, Rules, SLOT_S, Verdict, validate};
use crate::schema::{KWH_COL, METER_COL, REGION_COL, TS_COL};

#[derive(Debug, Clone, Default)]
struct DayAcc {
    /// The readings' sum in scan order: a clean day's daily kWh, exactly as it always was.
    kwh: f64,
    n: u32,
    /// Bit h set: the day has readings in local hour h.
    hours: u32,
    slots: DaySlots,
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
    rules: Rules,
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
        Self::with_rules(clock, Rules::default())
    }

    pub fn with_rules(clock: LocalClock, rules: Rules) -> Self {
        Self {
            clock,
            rules,
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

    /// The local day of the latest reading seen.
    pub fn last_day(&self) -> Option<LocalDay> {
        self.ts_range.map(|(_, hi)| self.clock.day_hour(hi).0)
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
        // And by day: the start of the last day seen.
        let mut day_start: Option<(LocalDay, i64)> = None;
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
            let start = match day_start {
                Some((d, start)) if d == day => start,
                _ => {
                    let start = self.clock.day_start_utc(day);
                    day_start = Some((day, start));
                    start
                }
            };
            let acc = self.series[series as usize].day_mut(day);
            acc.kwh += v;
            acc.n += 1;
            acc.hours |= 1 << hour;
            acc.slots.add(((ts - start) / SLOT_S) as usize, v);
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
            // Validation reads local hours of the merged days.
            self.clock.cover(lo, hi);
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
                acc.slots.merge(&d.slots);
            }
        }
    }

    /// The profile of every region seen, ordered by region code.
    pub fn finish(&self) -> Vec<ProfileFigures> {
        self.finish_until(None)
    }

    /// [`Self::finish`] with the meters' days run to `until` if that is later than the last
    /// day seen (as when other partitions saw later readings).
    pub fn finish_until(&self, until: Option<LocalDay>) -> Vec<ProfileFigures> {
        #[derive(Default)]
        struct RegionTotals {
            meters: u64,
            readings: u64,
            daily: Vec<f64>,
            /// Each meter's mean over the days it keeps.
            meter_means: Vec<f64>,
            weekday: (f64, u64),
            weekend: (f64, u64),
            hour_days: [u64; 24],
            /// What estimates add to and exclusions take from the readings' hourly sums:
            /// all zero on clean data, so its figures are the readings' own.
            hour_adjust: [f64; 24],
            counts: MeterDayCounts,
        }
        let mut work: Vec<RegionTotals> = (0..self.regions.len())
            .map(|_| RegionTotals::default())
            .collect();
        let mut shapes = DayShapes::new(&self.clock);
        // A meter's days run from its first reading to the last day any meter has one, so
        // a meter gone silent counts its silent days.
        let last_day = match (self.last_day(), until) {
            (Some(seen), Some(until)) => Some(seen.max(until)),
            (seen, _) => seen,
        };
        for s in &self.series {
            let w = &mut work[s.region as usize];
            w.meters += 1;
            let seen = s.days.len() as LocalDay;
            let span = last_day.map_or(seen, |last| seen.max(last - s.base + 1)) as usize;
            let day_of = |k: usize| s.base + k as LocalDay;
            let read = |k: usize| s.days.get(k).filter(|d| d.n > 0);
            let slots: Vec<Option<&DaySlots>> =
                (0..span).map(|k| read(k).map(|d| &d.slots)).collect();
            let expected: Vec<u8> = (0..span).map(|k| shapes.slots(day_of(k))).collect();
            let raw: Vec<f64> = (0..span).map(|k| read(k).map_or(0.0, |d| d.kwh)).collect();
            let verdicts = validate(&slots, &expected, &raw, &self.rules);
            let (mut kwh, mut kept) = (0.0, 0u32);
            for (k, v) in verdicts.iter().enumerate() {
                let (day, acc) = (day_of(k), read(k));
                w.readings += acc.map_or(0, |d| u64::from(d.n));
                let Some(day_kwh) = v.kwh else {
                    w.counts.excluded += 1;
                    if let Some(d) = acc {
                        for slot in (0..d.slots.kwh.len()).filter(|k| d.slots.has(*k)) {
                            w.hour_adjust[shapes.hour(day, slot)] -= d.slots.kwh[slot];
                        }
                    }
                    continue;
                };
                let hours = match acc {
                    Some(d) if v.estimates.is_empty() && v.questionable.is_none() => {
                        w.counts.complete += 1;
                        d.hours
                    }
                    _ => {
                        w.counts.estimated += 1;
                        edited_hours(
                            &mut shapes,
                            day,
                            acc.map(|d| &d.slots),
                            v,
                            &mut w.hour_adjust,
                        )
                    }
                };
                kwh += day_kwh;
                kept += 1;
                w.daily.push(day_kwh);
                let part = if iso_weekday(day) <= 5 {
                    &mut w.weekday
                } else {
                    &mut w.weekend
                };
                part.0 += day_kwh;
                part.1 += 1;
                for (h, n) in w.hour_days.iter_mut().enumerate() {
                    *n += u64::from(hours >> h & 1);
                }
            }
            if kept > 0 {
                w.meter_means.push(kwh / f64::from(kept));
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
                for (h, out) in hourly.iter_mut().enumerate() {
                    if w.hour_days[h] > 0 {
                        *out = (r.hour_kwh[h] + w.hour_adjust[h]) / w.hour_days[h] as f64;
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
                    meter_days: w.counts,
                }
            })
            .collect();
        out.sort_by(|a, b| a.region.cmp(&b.region));
        out
    }
}

/// The local hours an edited day has use in (accepted readings and estimates), with what
/// its edits change in the region's hourly sums: the questionable interval taken out, the
/// estimates added.
fn edited_hours(
    shapes: &mut DayShapes<'_>,
    day: LocalDay,
    slots: Option<&DaySlots>,
    verdict: &Verdict,
    hour_adjust: &mut [f64; 24],
) -> u32 {
    let mut hours = 0u32;
    if let Some(d) = slots {
        for slot in (0..d.kwh.len()).filter(|k| d.has(*k)) {
            let h = shapes.hour(day, slot);
            if verdict.questionable == Some(slot as u8) {
                hour_adjust[h] -= d.kwh[slot];
            } else {
                hours |= 1 << h;
            }
        }
    }
    for e in &verdict.estimates {
        let h = shapes.hour(day, usize::from(e.slot));
        hours |= 1 << h;
        hour_adjust[h] += e.kwh;
    }
    hours
}

/// Local days' starts and lengths in slots, found once per day.
struct DayShapes<'a> {
    clock: &'a LocalClock,
    starts: HashMap<LocalDay, i64>,
}

impl<'a> DayShapes<'a> {
    fn new(clock: &'a LocalClock) -> Self {
        Self {
            clock,
            starts: HashMap::new(),
        }
    }

    fn start(&mut self, day: LocalDay) -> i64 {
        *self
            .starts
            .entry(day)
            .or_insert_with(|| self.clock.day_start_utc(day))
    }

    /// Half-hour slots in the day: 46, 48 or 50 across DST.
    fn slots(&mut self, day: LocalDay) -> u8 {
        ((self.start(day + 1) - self.start(day)) / SLOT_S) as u8
    }

    /// The local hour slot `slot` of `day` falls in.
    fn hour(&mut self, day: LocalDay, slot: usize) -> usize {
        let t = self.start(day) + slot as i64 * SLOT_S;
        usize::from(self.clock.day_hour(t).1)
    }
}

/// Hours whose means are this close (relative) to the highest tie with it. Sums taken in
/// another order (partitions, a cluster's shuffle) differ in the last bits, so a plain argmax
/// of hours equal in exact arithmetic would pick the peak by rounding noise.
pub const PEAK_TIE: f64 = 1e-12;

/// The first hour whose mean ties with the highest.
fn peak(hourly: &[f64; 24]) -> u8 {
    let max = hourly.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let first = hourly.iter().position(|&v| v >= max - PEAK_TIE * max.abs());
    first.unwrap_or(0) as u8
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
    use std::collections::BTreeMap;

    use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
    use iot_common::store::RegionReading;

    use super::*;
    use crate::schema::{readings_schema, rows_to_batch};

    const LONDON: chrono_tz::Tz = chrono_tz::Europe::London;

    type Row = (&'static str, &'static str, DateTime<Utc>, f64);

    fn batch(rows: &[Row]) -> RecordBatch {
        let rows: Vec<RegionReading> = rows
            .iter()
            .map(|(region, meter, ts, kwh)| RegionReading {
                region: region.parse().unwrap_or_else(|e| panic!("{e}")),
                meter_id: meter.parse().unwrap_or_else(|e| panic!("{e}")),
                ts: *ts,
                kwh: *kwh,
                interval_s: None,
            })
            .collect();
        rows_to_batch(&readings_schema(), &rows).unwrap_or_else(|e| panic!("{e}"))
    }

    fn profile(rows: &[Row]) -> Vec<ProfileFigures> {
        let mut acc = ProfileAccumulator::new(LocalClock::new(LONDON));
        acc.update(&batch(rows)).unwrap_or_else(|e| panic!("{e}"));
        acc.finish()
    }

    /// Every half hour of the London days `from` to `to` (inclusive) for one meter, with a
    /// use that varies by slot but has no spike.
    fn full_days(
        region: &'static str,
        meter: &'static str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<Row> {
        let start = |d: NaiveDate| {
            LONDON
                .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        let (mut t, end) = (start(from), start(to + chrono::Days::new(1)));
        let mut rows = Vec::new();
        let mut k = 0u32;
        while t < end {
            rows.push((
                region,
                meter,
                t,
                0.2 + 0.01 * f64::from(k % 7) + f64::from(meter.len() as u32) * 0.05,
            ));
            t += chrono::Duration::minutes(30);
            k += 1;
        }
        rows
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap_or_default()
    }

    /// The definition computed the plain way, reading by reading with chrono-tz, for one
    /// region of complete days: daily sums, and the hourly means over (meter, day).
    fn naive(rows: &[Row]) -> (Vec<f64>, [f64; 24], usize, usize) {
        let mut days: BTreeMap<(&str, NaiveDate), f64> = BTreeMap::new();
        let mut hours: BTreeMap<(&str, NaiveDate, u32), f64> = BTreeMap::new();
        for (_, m, ts, kwh) in rows {
            let local = ts.with_timezone(&LONDON);
            *days.entry((m, local.date_naive())).or_default() += kwh;
            *hours
                .entry((m, local.date_naive(), local.hour()))
                .or_default() += kwh;
        }
        let mut hourly = [0.0; 24];
        let mut n = [0u32; 24];
        for ((_, _, h), kwh) in &hours {
            hourly[*h as usize] += kwh;
            n[*h as usize] += 1;
        }
        for (v, n) in hourly.iter_mut().zip(n) {
            *v /= f64::from(n.max(1));
        }
        let weekend = days
            .keys()
            .filter(|(_, d)| d.weekday().number_from_monday() > 5)
            .count();
        let mut daily: Vec<f64> = days.values().copied().collect();
        daily.sort_by(f64::total_cmp);
        (daily, hourly, weekend, days.len())
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(1.0)
    }

    fn matches_naive(p: &ProfileFigures, rows: &[Row]) {
        let (daily, hourly, _, days) = naive(rows);
        assert_eq!(p.readings as usize, rows.len());
        assert_eq!(p.meter_days.complete as usize, days);
        assert_eq!((p.meter_days.estimated, p.meter_days.excluded), (0, 0));
        assert!(close(
            p.avg_daily_kwh,
            daily.iter().sum::<f64>() / days as f64
        ));
        assert!(close(p.p50_daily_kwh, quantile_cont(&daily, 0.5)));
        assert!(close(p.p90_daily_kwh, quantile_cont(&daily, 0.9)));
        for (h, (ours, theirs)) in p.hourly_kwh.iter().zip(hourly).enumerate() {
            assert!(close(*ours, theirs), "hour {h}: {ours} vs {theirs}");
        }
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
    fn spring_forward_day_has_46_slots_and_23_local_hours() {
        // 2026-03-29 (Sunday): local 01:00 GMT jumps to 02:00 BST.
        let rows = full_days("R", "m", date("2026-03-28"), date("2026-03-30"));
        assert_eq!(rows.len(), 48 + 46 + 48);
        let p = &profile(&rows)[0];
        matches_naive(p, &rows);
        // Local hour 1 exists on Saturday and Monday only.
        assert_eq!(p.weekend_avg_daily_kwh.map(|_| ()), Some(()));
    }

    #[test]
    fn fall_back_day_has_50_slots_and_25_local_hours() {
        // 2026-10-25 (Sunday): local 01:00 to 02:00 happens twice, both in local hour 1.
        let rows = full_days("R", "m", date("2026-10-24"), date("2026-10-26"));
        assert_eq!(rows.len(), 48 + 50 + 48);
        let p = &profile(&rows)[0];
        matches_naive(p, &rows);
        assert_eq!(p.weekday_avg_daily_kwh.map(|_| ()), Some(()));
    }

    #[test]
    fn regions_meters_and_partitions() {
        let mut rows = full_days("A", "m1", date("2026-01-05"), date("2026-01-06"));
        rows.extend(full_days(
            "A",
            "m22",
            date("2026-01-05"),
            date("2026-01-06"),
        ));
        rows.extend(full_days("B", "m3", date("2026-01-06"), date("2026-01-06")));
        let whole = profile(&rows);
        let mut a = ProfileAccumulator::new(LocalClock::new(LONDON));
        let mut b = a.clone();
        // Partitions split meter-days: each holds every other reading.
        let (even, odd): (Vec<Row>, Vec<Row>) =
            rows.iter()
                .enumerate()
                .fold((Vec::new(), Vec::new()), |(mut e, mut o), (i, r)| {
                    if i % 2 == 0 {
                        e.push(*r)
                    } else {
                        o.push(*r)
                    }
                    (e, o)
                });
        a.update(&batch(&even)).unwrap_or_else(|e| panic!("{e}"));
        b.update(&batch(&odd)).unwrap_or_else(|e| panic!("{e}"));
        a.merge(b);
        let merged = a.finish();
        assert_eq!(merged.len(), 2);
        for (m, w) in merged.iter().zip(&whole) {
            assert_eq!(
                (m.meters, m.readings, m.meter_days),
                (w.meters, w.readings, w.meter_days)
            );
            assert!(close(m.avg_daily_kwh, w.avg_daily_kwh));
        }
        let ra = &whole[0];
        assert_eq!(
            (ra.region.as_str(), ra.meters, ra.readings),
            ("A", 2, 4 * 48)
        );
        matches_naive(ra, &rows[..4 * 48]);
        assert_eq!(whole[1].meter_days.complete, 1);
    }

    #[test]
    fn gaps_are_estimated_and_a_silent_meter_counts_its_silent_days() {
        let mut rows = full_days("A", "m1", date("2026-01-05"), date("2026-01-07"));
        // m1 misses two half hours on the 5th: interpolated.
        rows.retain(|r| {
            !(r.2
                >= "2026-01-05T10:00:00Z"
                    .parse::<DateTime<Utc>>()
                    .unwrap_or_default()
                && r.2
                    < "2026-01-05T11:00:00Z"
                        .parse::<DateTime<Utc>>()
                        .unwrap_or_default())
        });
        // m22 stops after the 5th: the 6th and 7th are excluded.
        rows.extend(full_days(
            "A",
            "m22",
            date("2026-01-05"),
            date("2026-01-05"),
        ));
        let p = &profile(&rows)[0];
        assert_eq!(
            p.meter_days,
            MeterDayCounts {
                complete: 3,
                estimated: 1,
                excluded: 2
            }
        );
        assert_eq!(p.readings as usize, rows.len());
        // The interpolated day sums as if complete (its use is linear across the gap only
        // approximately, so within what the interpolation changes).
        let clean: f64 = full_days("A", "m1", date("2026-01-05"), date("2026-01-05"))
            .iter()
            .map(|r| r.3)
            .sum();
        assert!(p.avg_daily_kwh > 0.0 && (clean - p.p50_daily_kwh).abs() < 1.0);
    }

    #[test]
    fn a_spike_is_left_out_of_the_profile() {
        let clean = full_days("A", "m1", date("2026-01-05"), date("2026-01-05"));
        let mut spiked = clean.clone();
        spiked[20].3 = 50.0 * 0.25;
        let (p, q) = (&profile(&clean)[0], &profile(&spiked)[0]);
        assert_eq!(
            q.meter_days,
            MeterDayCounts {
                complete: 0,
                estimated: 1,
                excluded: 0
            }
        );
        // Slot 20 is replaced by the mean of its neighbours.
        let fill = (clean[19].3 + clean[21].3) / 2.0;
        assert!(close(q.avg_daily_kwh, p.avg_daily_kwh - clean[20].3 + fill));
        assert!(close(
            q.hourly_kwh[10],
            p.hourly_kwh[10] - clean[20].3 + fill
        ));
    }

    #[test]
    fn a_spike_of_fifty_times_is_flagged_and_leaves_the_borough_p90_where_it_was() {
        let mut clean = Vec::new();
        for m in ["m1", "m22", "m333", "m4444", "m55555"] {
            clean.extend(full_days("A", m, date("2026-01-05"), date("2026-01-14")));
        }
        let p = &profile(&clean)[0];
        // Into the busiest household's day, at a slot its neighbours interpolate exactly
        // (the use rises by the same step either side).
        let at = clean
            .iter()
            .rposition(|r| r.1 == "m55555" && r.2.with_timezone(&LONDON).hour() == 12)
            .unwrap_or_else(|| panic!("no noon reading"));
        let first = clean.iter().position(|r| r.1 == "m55555").unwrap_or(0);
        let i = (at - 2..=at)
            .find(|&i| (1..=5).contains(&((i - first) % 7)))
            .unwrap_or(at);
        let mut spiked = clean.clone();
        spiked[i].3 *= 50.0;
        let q = &profile(&spiked)[0];
        assert_eq!(q.meter_days.estimated, 1, "{:?}", q.meter_days);
        assert!(
            (q.p90_daily_kwh - p.p90_daily_kwh).abs() < 1e-12,
            "p90 {} against {} without the spike",
            q.p90_daily_kwh,
            p.p90_daily_kwh
        );
        // Taken as read, the spike alone would have made that day the borough's top one.
        assert!(clean[i].3 * 49.0 > p.p90_daily_kwh * 0.5);
    }

    #[test]
    fn one_meter_through_meter_days_counts_as_the_job_counts() {
        let (from, to) = (date("2026-03-16"), date("2026-04-05"));
        let mut rows = Vec::new();
        for (n, m) in ["m1", "m22", "m333"].into_iter().enumerate() {
            let mut mine = full_days("A", m, from, to);
            let len = mine.len();
            // A two-slot gap, a day-long outage and a spike, at places that differ by meter.
            mine.drain(100 + n * 9..102 + n * 9);
            mine.drain(300 + n * 48..348 + n * 48);
            mine[700 + n].3 *= 40.0;
            mine.truncate(len - 60 - n * 100);
            rows.extend(mine);
        }
        let job = &profile(&rows)[0];
        let mut counts = MeterDayCounts::default();
        let mut kept_kwh = 0.0;
        for m in ["m1", "m22", "m333"] {
            let readings: Vec<iot_common::Reading> = rows
                .iter()
                .filter(|r| r.1 == m)
                .map(|r| iot_common::Reading {
                    meter_id: m.parse().unwrap_or_else(|e| panic!("{e}")),
                    ts: r.2,
                    kwh: r.3,
                    interval_s: 1800,
                })
                .collect();
            for d in iot_common::quality::meter_days(&readings, from, to, LONDON, &Rules::default())
            {
                match d.verdict.kwh {
                    None => counts.excluded += 1,
                    Some(kwh) => {
                        kept_kwh += kwh;
                        if d.verdict.estimates.is_empty() && d.verdict.questionable.is_none() {
                            counts.complete += 1;
                        } else {
                            counts.estimated += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(counts, job.meter_days);
        assert!(job.meter_days.estimated > 0 && job.meter_days.excluded > 0);
        let job_kwh = job.avg_daily_kwh * job.meter_days.kept() as f64;
        assert!(close(kept_kwh, job_kwh), "{kept_kwh} against {job_kwh}");
    }

    #[test]
    fn the_peak_is_the_first_hour_of_a_tie_whatever_the_rounding() {
        let mut hourly = [0.1; 24];
        for (h, noise) in [(17, 0.0), (18, 4e-16), (19, -2e-16), (20, 6e-16)] {
            hourly[h] = 0.45 + noise;
        }
        assert_eq!(super::peak(&hourly), 17);
        hourly[19] = 0.46;
        assert_eq!(super::peak(&hourly), 19);
        assert_eq!(super::peak(&[0.0; 24]), 0);
    }
}
