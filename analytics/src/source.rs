//! Where readings come from, as DataFusion tables: a Parquet file (the bench format:
//! `meter_id`, `region_id`, `ts` timestamp[ms, UTC], `kwh`), or the store port scanned page
//! by page into a stream of Arrow batches with the window pushed into the store's query.
//! Either way the job runs one aggregation task per DataFusion partition.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext, col, lit};
use futures::StreamExt;
use iot_common::store::{RegionReading, Store};

use crate::aggregate::{KWH_COL, METER_COL, ProfileAccumulator, REGION_COL, TS_COL};
use crate::local_time::LocalClock;

/// The table name readings are registered under.
pub const TABLE: &str = "readings";

/// The schema readings have as Arrow batches.
pub fn readings_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(METER_COL, DataType::Utf8, false),
        Field::new(REGION_COL, DataType::Utf8, false),
        Field::new(
            TS_COL,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(KWH_COL, DataType::Float64, false),
    ]))
}

/// A session with `threads` partitions.
pub fn session(threads: usize) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(threads.max(1))
        .with_batch_size(64 * 1024);
    SessionContext::new_with_config(config)
}

pub async fn register_parquet(ctx: &SessionContext, path: &str) -> Result<(), DataFusionError> {
    ctx.register_parquet(TABLE, path, ParquetReadOptions::default())
        .await
}

/// Rows per store page, and so per Arrow batch.
const PAGE: usize = 50_000;

/// The store's readings of one window as a single-partition stream of Arrow batches.
pub struct StoreScan {
    store: Arc<dyn Store>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    schema: SchemaRef,
}

impl fmt::Debug for StoreScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreScan({}..{})", self.from, self.to)
    }
}

/// Store rows as one Arrow batch of [`readings_schema`].
pub fn rows_to_batch(
    schema: &SchemaRef,
    rows: &[RegionReading],
) -> Result<RecordBatch, DataFusionError> {
    let meters = StringArray::from_iter_values(rows.iter().map(|r| r.meter_id.as_str()));
    let regions = StringArray::from_iter_values(rows.iter().map(|r| r.region.as_str()));
    let ts =
        TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.ts.timestamp_millis()))
            .with_timezone("UTC");
    let kwh = Float64Array::from_iter_values(rows.iter().map(|r| r.kwh));
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(meters),
            Arc::new(regions),
            Arc::new(ts),
            Arc::new(kwh),
        ],
    )?)
}

impl PartitionStream for StoreScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        struct State {
            store: Arc<dyn Store>,
            cursor: Option<String>,
            done: bool,
        }
        let (from, to, schema) = (self.from, self.to, self.schema.clone());
        let start = State {
            store: self.store.clone(),
            cursor: None,
            done: false,
        };
        let batch_schema = schema.clone();
        let pages = futures::stream::unfold(start, move |mut s| {
            let schema = batch_schema.clone();
            async move {
                if s.done {
                    return None;
                }
                let page = match s
                    .store
                    .scan_readings(from, to, s.cursor.as_deref(), PAGE)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        s.done = true;
                        return Some((Err(DataFusionError::External(Box::new(e))), s));
                    }
                };
                s.done = page.next.is_none();
                s.cursor = page.next;
                Some((rows_to_batch(&schema, &page.rows), s))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, pages))
    }
}

pub fn register_store(
    ctx: &SessionContext,
    store: Arc<dyn Store>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), DataFusionError> {
    let schema = readings_schema();
    let scan = StoreScan {
        store,
        from,
        to,
        schema: schema.clone(),
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(scan)])?;
    ctx.register_table(TABLE, Arc::new(table))?;
    Ok(())
}

/// Aggregates the registered readings with `from <= ts < to` (all of them without a window),
/// one task per partition; `scanned` counts rows as they are folded in, for progress.
pub async fn aggregate(
    ctx: &SessionContext,
    clock: LocalClock,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    scanned: Arc<AtomicU64>,
) -> Result<ProfileAccumulator, DataFusionError> {
    let mut df = ctx
        .table(TABLE)
        .await?
        .select_columns(&[REGION_COL, METER_COL, TS_COL, KWH_COL])?;
    if let Some((from, to)) = window {
        let at = |t: DateTime<Utc>| {
            lit(ScalarValue::TimestampMillisecond(
                Some(t.timestamp_millis()),
                Some("UTC".into()),
            ))
        };
        df = df.filter(col(TS_COL).gt_eq(at(from)).and(col(TS_COL).lt(at(to))))?;
    }
    let streams = df.execute_stream_partitioned().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for mut stream in streams {
        let mut acc = ProfileAccumulator::new(clock.clone());
        let scanned = scanned.clone();
        tasks.spawn(async move {
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                acc.update(&batch)?;
                scanned.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
            Ok::<_, DataFusionError>(acc)
        });
    }
    let mut total = ProfileAccumulator::new(clock);
    while let Some(done) = tasks.join_next().await {
        let part = done.map_err(|e| DataFusionError::External(Box::new(e)))??;
        total.merge(part);
    }
    Ok(total)
}
