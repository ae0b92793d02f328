//! The tables analysts query by SQL: `readings` served from the store with the time range
//! and regions of the query's filters pushed into the store's scan, `meter_days`
//! (`sql_meter_days`) likewise, and the small tables (`meters`, `profiles`, `runs`) read
//! whole from the store for each query.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt8Array,
    UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use iot_common::store::Store;
use iot_common::{RegionProfile, Run};

use crate::schema::sql_readings_schema;
use crate::source::{RowShape, StoreScanExec};
use crate::sql_filters::Pushed;

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// A query over `readings` that does not say from when: refused, since on Cassandra it would
/// read every region-day the store keeps.
#[derive(Debug, thiserror::Error)]
#[error(
    "the query reads `readings` without a lower bound on `ts`: add one, e.g. \
     WHERE ts >= TIMESTAMP '2026-11-01T00:00:00Z' AND ts < TIMESTAMP '2026-11-08T00:00:00Z'"
)]
pub struct NoTimeBound;

/// The store's readings as a table whose scans read only the window and regions the query's
/// filters name. The filters stay in the plan too (pushed down as inexact), so the answer
/// never depends on how finely the store can cut.
pub struct ReadingsTable {
    store: Arc<dyn Store>,
    schema: SchemaRef,
    partitions: usize,
}

impl fmt::Debug for ReadingsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadingsTable")
    }
}

impl ReadingsTable {
    pub fn new(store: Arc<dyn Store>, partitions: usize) -> Self {
        Self {
            store,
            schema: sql_readings_schema(),
            partitions,
        }
    }

    /// How many partitions its scans read the store's slices in.
    pub fn partitions(&self) -> usize {
        self.partitions
    }
}

#[async_trait]
impl TableProvider for ReadingsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        Ok(Pushed::pushdown("ts", filters))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let pushed = Pushed::of("ts", filters);
        let from = pushed
            .from
            .ok_or_else(|| DataFusionError::External(Box::new(NoTimeBound)))?;
        // Nothing is dated much after now (the meter refuses it), so an open end is now.
        let to = pushed.to.unwrap_or_else(|| Utc::now() + TimeDelta::days(1));
        let regions = pushed.region_codes();
        let slices = if from < to {
            self.store
                .scan_slices(from, to, regions.as_deref())
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
        } else {
            Vec::new()
        };
        let scan = StoreScanExec::dealt(
            self.store.clone(),
            slices,
            self.partitions,
            RowShape::Sql,
            projection.cloned(),
        )?;
        Ok(Arc::new(scan))
    }
}

fn meters_batch(meters: &[iot_common::Meter]) -> Result<RecordBatch, DataFusionError> {
    let schema = Schema::new(vec![
        Field::new("meter_id", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, true),
        Field::new("lat", DataType::Float64, true),
        Field::new("lon", DataType::Float64, true),
        Field::new("household_size", DataType::UInt8, true),
        Field::new("dwelling", DataType::Utf8, true),
        Field::new("registered_at", utc_ms(), false),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            meters.iter().map(|m| m.meter_id.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            meters.iter().map(|m| m.region.as_ref().map(|r| r.as_str())),
        )),
        Arc::new(Float64Array::from_iter(meters.iter().map(|m| m.lat))),
        Arc::new(Float64Array::from_iter(meters.iter().map(|m| m.lon))),
        Arc::new(UInt8Array::from_iter(
            meters.iter().map(|m| m.household_size),
        )),
        Arc::new(StringArray::from_iter(
            meters
                .iter()
                .map(|m| m.dwelling.map(|d| d.as_ref().to_owned())),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(
                meters.iter().map(|m| m.registered_at.timestamp_millis()),
            )
            .with_timezone("UTC"),
        ),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), cols)?)
}

fn times<'a>(values: impl Iterator<Item = Option<DateTime<Utc>>> + 'a) -> ArrayRef {
    Arc::new(
        TimestampMillisecondArray::from_iter(values.map(|t| t.map(|t| t.timestamp_millis())))
            .with_timezone("UTC"),
    )
}

/// Profiles with their run and window, then the figures as the CSV output writes them
/// (`region`, `meters`, …, `h00` … `h23`).
fn profiles_batch(profiles: &[RegionProfile]) -> Result<RecordBatch, DataFusionError> {
    let figures: Vec<_> = profiles.iter().map(|p| p.figures.clone()).collect();
    let figures = crate::output::profiles_batch(&figures)
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let mut fields = vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("window_from", utc_ms(), false),
        Field::new("window_to", utc_ms(), false),
        Field::new("computed_at", utc_ms(), false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            profiles.iter().map(|p| p.run_id.as_str()),
        )),
        times(profiles.iter().map(|p| Some(p.window_from))),
        times(profiles.iter().map(|p| Some(p.window_to))),
        times(profiles.iter().map(|p| Some(p.computed_at))),
    ];
    for (field, col) in figures.schema().fields().iter().zip(figures.columns()) {
        // The files say `region_id` (the reference scripts' column); SQL says `region`.
        let name = match field.name().as_str() {
            "region_id" => "region",
            other => other,
        };
        fields.push(field.as_ref().clone().with_name(name));
        cols.push(col.clone());
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

fn runs_batch(runs: &[Run]) -> Result<RecordBatch, DataFusionError> {
    let schema = Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("created_at", utc_ms(), false),
        Field::new("started_at", utc_ms(), true),
        Field::new("finished_at", utc_ms(), true),
        Field::new("window_from", utc_ms(), true),
        Field::new("window_to", utc_ms(), true),
        Field::new("rows_scanned", DataType::UInt64, false),
        Field::new("regions_written", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, true),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.run_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.status.as_ref()),
        )),
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.trigger.as_ref()),
        )),
        times(runs.iter().map(|r| Some(r.created_at))),
        times(runs.iter().map(|r| r.started_at)),
        times(runs.iter().map(|r| r.finished_at)),
        times(runs.iter().map(|r| r.window_from)),
        times(runs.iter().map(|r| r.window_to)),
        Arc::new(UInt64Array::from_iter_values(
            runs.iter().map(|r| r.rows_scanned),
        )),
        Arc::new(UInt64Array::from_iter_values(
            runs.iter().map(|r| r.regions_written),
        )),
        Arc::new(StringArray::from_iter(
            runs.iter().map(|r| r.error.as_deref()),
        )),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), cols)?)
}

/// Most runs the `runs` table holds (the newest).
const RUNS_TABLE: usize = 1_000;

fn mem_table(batch: RecordBatch) -> Result<Arc<MemTable>, DataFusionError> {
    Ok(Arc::new(MemTable::try_new(
        batch.schema(),
        vec![vec![batch]],
    )?))
}

/// Registers `readings` and, of `meters`, `profiles` and `runs` (read whole from the store),
/// those `wanted` says the query names: every meter is a full read on Cassandra, not paid by
/// a query that never looks at them.
pub async fn register_store_tables(
    ctx: &SessionContext,
    store: Arc<dyn Store>,
    partitions: usize,
    wanted: impl Fn(&str) -> bool,
) -> Result<(), DataFusionError> {
    let external = |e: iot_common::store::StoreError| DataFusionError::External(Box::new(e));
    if wanted("meters") {
        let meters = store.meters().await.map_err(external)?;
        ctx.register_table("meters", mem_table(meters_batch(&meters)?)?)?;
    }
    if wanted("profiles") {
        let profiles = store.profiles().await.map_err(external)?;
        ctx.register_table("profiles", mem_table(profiles_batch(&profiles)?)?)?;
    }
    if wanted("runs") {
        let runs = store.runs(RUNS_TABLE).await.map_err(external)?;
        ctx.register_table("runs", mem_table(runs_batch(&runs)?)?)?;
    }
    if wanted("meter_days") {
        let job = crate::JobConfig::default();
        ctx.register_table(
            "meter_days",
            Arc::new(crate::sql_meter_days::MeterDaysTable::new(
                store.clone(),
                job.tz,
                job.window_days,
            )),
        )?;
    }
    ctx.register_table("readings", Arc::new(ReadingsTable::new(store, partitions)))?;
    Ok(())
}
