//! Where readings come from, as DataFusion tables: a Parquet file (the bench format:
//! `meter_id`, `region_id`, `ts` timestamp[ms, UTC], `kwh`), or the store port scanned page
//! by page into a stream of Arrow batches with the window pushed into the store's query.
//! Either way the job runs one aggregation task per DataFusion partition.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext, col, lit};
use futures::StreamExt;
use iot_common::store::{RegionReading, ScanSlice, Store, StoreError};

use crate::aggregate::ProfileAccumulator;
use crate::local_time::LocalClock;
use crate::schema::{KWH_COL, METER_COL, REGION_COL, TS_COL, readings_schema, rows_to_batch};

/// The table name readings are registered under.
pub const TABLE: &str = "readings";

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

/// The readings of `slices`, one slice after another, as a stream of store pages; empty
/// pages are passed over.
pub fn scan_pages(
    store: Arc<dyn Store>,
    slices: Vec<ScanSlice>,
    page: usize,
) -> impl futures::Stream<Item = Result<Vec<RegionReading>, StoreError>> + Send + 'static {
    struct State {
        store: Arc<dyn Store>,
        slices: std::vec::IntoIter<ScanSlice>,
        current: Option<ScanSlice>,
        cursor: Option<String>,
        failed: bool,
    }
    let mut slices = slices.into_iter();
    let start = State {
        store,
        current: slices.next(),
        slices,
        cursor: None,
        failed: false,
    };
    futures::stream::unfold(start, move |mut s| async move {
        loop {
            if s.failed {
                return None;
            }
            let slice = s.current.clone()?;
            match s
                .store
                .scan_readings(&slice, s.cursor.as_deref(), page)
                .await
            {
                Err(e) => {
                    s.failed = true;
                    return Some((Err(e), s));
                }
                Ok(p) => {
                    s.cursor = p.next;
                    if s.cursor.is_none() {
                        s.current = s.slices.next();
                    }
                    if !p.rows.is_empty() {
                        return Some((Ok(p.rows), s));
                    }
                }
            }
        }
    })
}

/// `stream` driven by a task of its own, one item ahead of its reader: the store fetches the
/// next page (a network round trip on Cassandra) while the reader aggregates this one. The
/// task starts at the first poll and ends when the stream does or the reader drops it.
pub fn read_ahead<S, T>(stream: S) -> impl futures::Stream<Item = T> + Send + 'static
where
    S: futures::Stream<Item = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    futures::stream::unfold((rx, Some((stream, tx))), |(mut rx, start)| async move {
        if let Some((stream, tx)) = start {
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    if tx.send(item).await.is_err() {
                        break;
                    }
                }
            });
        }
        rx.recv().await.map(|item| (item, (rx, None)))
    })
}

/// Store rows as one Arrow batch of a table's schema.
pub type ToBatch = fn(&SchemaRef, &[RegionReading]) -> Result<RecordBatch, DataFusionError>;

/// Some slices of the store's readings of one window, as one partition's stream of Arrow
/// batches.
pub struct StoreScan {
    store: Arc<dyn Store>,
    slices: Vec<ScanSlice>,
    schema: SchemaRef,
    to_batch: ToBatch,
}

impl fmt::Debug for StoreScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreScan({} slices)", self.slices.len())
    }
}

impl PartitionStream for StoreScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let batch_schema = schema.clone();
        let to_batch = self.to_batch;
        let pages = read_ahead(scan_pages(self.store.clone(), self.slices.clone(), PAGE));
        let batches = pages.map(move |page| {
            page.map_err(|e| DataFusionError::External(Box::new(e)))
                .and_then(|rows| to_batch(&batch_schema, &rows))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}

/// Registers the store's readings of `from <= ts < to` as the readings table, its scan slices
/// read `partitions` at a time.
pub async fn register_store(
    ctx: &SessionContext,
    store: Arc<dyn Store>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    partitions: usize,
) -> Result<usize, DataFusionError> {
    let slices = store
        .scan_slices(from, to, None)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let schema = readings_schema();
    let parts = deal_slices(&store, slices, partitions, &schema, rows_to_batch);
    let n = parts.len();
    let table = StreamingTable::try_new(schema, parts)?;
    ctx.register_table(TABLE, Arc::new(table))?;
    Ok(n)
}

/// `slices` dealt round-robin over at most `partitions` partitions, each reading its slices in
/// turn, so that many slices (Cassandra's region-days) are read `partitions` at a time.
pub fn deal_slices(
    store: &Arc<dyn Store>,
    slices: Vec<ScanSlice>,
    partitions: usize,
    schema: &SchemaRef,
    to_batch: ToBatch,
) -> Vec<Arc<dyn PartitionStream>> {
    let n = partitions.clamp(1, slices.len().max(1));
    let mut dealt: Vec<Vec<ScanSlice>> = vec![Vec::new(); n];
    for (i, slice) in slices.into_iter().enumerate() {
        dealt[i % n].push(slice);
    }
    dealt
        .into_iter()
        .map(|slices| {
            Arc::new(StoreScan {
                store: store.clone(),
                slices,
                schema: schema.clone(),
                to_batch,
            }) as Arc<dyn PartitionStream>
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_ahead_gives_every_item_in_order_and_fetches_while_the_reader_works() {
        use std::sync::atomic::AtomicUsize;
        let fetched = Arc::new(AtomicUsize::new(0));
        let counter = fetched.clone();
        let source = futures::stream::iter(0..5).map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            i
        });
        let mut ahead = std::pin::pin!(read_ahead(source));
        assert_eq!(ahead.next().await, Some(0));
        // While the reader holds item 0, the task has fetched the next ones: one in the
        // channel, one waiting to be sent.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(fetched.load(Ordering::SeqCst) >= 3, "{fetched:?}");
        let rest: Vec<i32> = ahead.collect().await;
        assert_eq!(rest, vec![1, 2, 3, 4]);
    }
}
