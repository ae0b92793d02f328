//! The analysts' `meter_days` table: what validation and estimation made of each meter's
//! local days, by the rules the profile job applies (`iot_common::quality`), so a query over
//! it counts what a run over the same days counts. It covers the days its `day` filters
//! name (`day >= DATE '2026-10-12' AND day < DATE '2026-11-09'`, `BETWEEN`, `=`), else the
//! default profile window; a `region` filter narrows the read as on `readings`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Days, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray, UInt8Array,
    UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use iot_common::domain::{MeterId, Reading, RegionCode};
use iot_common::quality::{MeterDay, Rules, meter_days};
use iot_common::store::Store;

use crate::job::days_window;
use crate::sql_filters::Pushed;

/// Most readings one query's `meter_days` reads: they are held while each meter's days are
/// validated (about 100 bytes each). Beyond it the query is refused with what to narrow.
pub const MAX_METER_DAY_READINGS: usize = 5_000_000;
/// Most days one query's `meter_days` covers: the readings' retention.
const MAX_DAYS: u64 = iot_common::domain::DEFAULT_MAX_READING_AGE_DAYS as u64;
const PAGE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum MeterDaysError {
    #[error(
        "`meter_days` would read more than {MAX_METER_DAY_READINGS} readings: narrow it with \
         fewer days (WHERE day >= DATE '...') or a region (AND region = 'E09000007')"
    )]
    TooManyReadings,
    #[error("`meter_days` covers at most {MAX_DAYS} days at once (the readings' retention)")]
    TooManyDays,
}

pub fn meter_days_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
        Field::new("readings", DataType::UInt32, false),
        Field::new("expected", DataType::UInt8, false),
        Field::new("estimated", DataType::UInt8, false),
        Field::new("excluded", DataType::Boolean, false),
        Field::new("kwh", DataType::Float64, true),
        Field::new("flags", DataType::Utf8, false),
    ]))
}

pub struct MeterDaysTable {
    store: Arc<dyn Store>,
    tz: Tz,
    default_days: u32,
    schema: SchemaRef,
}

impl fmt::Debug for MeterDaysTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MeterDaysTable")
    }
}

impl MeterDaysTable {
    /// Days in `tz`; with no `day` filter, the `default_days` before today.
    pub fn new(store: Arc<dyn Store>, tz: Tz, default_days: u32) -> Self {
        Self {
            store,
            tz,
            default_days,
            schema: meter_days_schema(),
        }
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    pub fn default_days(&self) -> u32 {
        self.default_days
    }

    /// The local days `[first, last]` the filters name.
    fn days(&self, pushed: &Pushed) -> (NaiveDate, NaiveDate) {
        let today = Utc::now().with_timezone(&self.tz).date_naive();
        let first = pushed.from.map_or_else(
            || today - Days::new(u64::from(self.default_days)),
            |t| t.date_naive(),
        );
        let last = pushed.to.map_or_else(
            || today - Days::new(1),
            |t| (t - TimeDelta::milliseconds(1)).date_naive(),
        );
        (first, last)
    }

    /// Each meter's readings of the days, with its region.
    async fn readings(
        &self,
        first: NaiveDate,
        last: NaiveDate,
        regions: Option<&[RegionCode]>,
    ) -> Result<HashMap<MeterId, (RegionCode, Vec<Reading>)>, DataFusionError> {
        let external = |e: iot_common::store::StoreError| DataFusionError::External(Box::new(e));
        let (from, to) = days_window(first, last + Days::new(1), self.tz);
        let mut meters: HashMap<MeterId, (RegionCode, Vec<Reading>)> = HashMap::new();
        let mut held = 0usize;
        for slice in self
            .store
            .scan_slices(from, to, regions)
            .await
            .map_err(external)?
        {
            let mut cursor: Option<String> = None;
            loop {
                let page = self
                    .store
                    .scan_readings(&slice, cursor.as_deref(), PAGE)
                    .await
                    .map_err(external)?;
                held += page.rows.len();
                if held > MAX_METER_DAY_READINGS {
                    return Err(DataFusionError::External(Box::new(
                        MeterDaysError::TooManyReadings,
                    )));
                }
                for r in page.rows {
                    let (_, mine) = meters
                        .entry(r.meter_id.clone())
                        .or_insert_with(|| (r.region.clone(), Vec::new()));
                    mine.push(Reading {
                        meter_id: r.meter_id,
                        ts: r.ts,
                        kwh: r.kwh,
                        interval_s: r.interval_s.unwrap_or(1800),
                    });
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(meters)
    }
}

/// One row per meter-day.
fn batch(
    schema: &SchemaRef,
    rows: &[(MeterId, RegionCode, MeterDay)],
) -> Result<RecordBatch, DataFusionError> {
    let epoch = NaiveDate::default();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.1.as_str()),
        )),
        Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| (r.2.day - epoch).num_days() as i32),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.2.readings),
        )),
        Arc::new(UInt8Array::from_iter_values(
            rows.iter().map(|r| r.2.expected),
        )),
        Arc::new(UInt8Array::from_iter_values(
            rows.iter().map(|r| r.2.verdict.estimates.len() as u8),
        )),
        Arc::new(BooleanArray::from(
            rows.iter()
                .map(|r| r.2.verdict.excluded())
                .collect::<Vec<_>>(),
        )),
        Arc::new(Float64Array::from(
            rows.iter().map(|r| r.2.verdict.kwh).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| {
            r.2.verdict.flags.names().collect::<Vec<_>>().join(",")
        }))),
    ];
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

#[async_trait]
impl TableProvider for MeterDaysTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        Ok(Pushed::pushdown("day", filters))
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let pushed = Pushed::of("day", filters);
        let (first, last) = self.days(&pushed);
        if last.signed_duration_since(first).num_days() >= MAX_DAYS as i64 {
            return Err(DataFusionError::External(Box::new(
                MeterDaysError::TooManyDays,
            )));
        }
        let mut rows = Vec::new();
        if first <= last {
            let regions = pushed.region_codes();
            let meters = self.readings(first, last, regions.as_deref()).await?;
            // A meter's days run to the last day any meter has a reading, as in a run.
            let newest = meters
                .values()
                .flat_map(|(_, rs)| rs.iter().map(|r| r.ts))
                .max()
                .map(|t| t.with_timezone(&self.tz).date_naive());
            let until = newest.map_or(last, |n| n.min(last));
            let mut ids: Vec<&MeterId> = meters.keys().collect();
            ids.sort();
            for id in ids {
                let (region, readings) = &meters[id];
                for d in meter_days(readings, first, until, self.tz, &Rules::default()) {
                    rows.push((id.clone(), region.clone(), d));
                }
            }
        }
        let table =
            MemTable::try_new(self.schema.clone(), vec![vec![batch(&self.schema, &rows)?]])?;
        table.scan(state, projection, &[], limit).await
    }
}
