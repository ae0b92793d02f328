//! Where readings come from, as DataFusion tables: a Parquet file (the bench format:
//! `meter_id`, `region_id`, `ts` timestamp[ms, UTC], `kwh`), or the store port scanned page
//! by page into a stream of Arrow batches with the window pushed into the store's query
//! (`StoreScanExec`, a plan leaf whose partitions are the store's slices). Either way the
//! profile is the plan of `crate::plan` over that table.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext, col, lit};
use futures::{StreamExt, TryStreamExt};
use iot_common::ProfileFigures;
use iot_common::store::{RegionReading, ScanSlice, Store, StoreError};

use crate::plan::{ProfileQueryPlanner, Scanned, collect_profiles};
use crate::schema::{
    KWH_COL, METER_COL, REGION_COL, TS_COL, readings_schema, rows_to_batch, sql_readings_schema,
    sql_rows_to_batch,
};

/// The table name readings are registered under.
pub const TABLE: &str = "readings";

/// Where plans run when not in this process: a cluster, reached through a context whose plans
/// it runs. The all-in-one has none; the `analytics` binary's is a Ballista scheduler's
/// client (the `cluster` module, built with the `distributed` feature).
#[async_trait::async_trait]
pub trait Cluster: Send + Sync + fmt::Debug {
    /// A context on the cluster with `config`'s settings.
    async fn context(&self, config: SessionConfig) -> Result<SessionContext, DataFusionError>;
    /// For logs and errors.
    fn describe(&self) -> String;
}

/// A context on `cluster`, or in this process without one.
pub async fn context(
    cluster: Option<&Arc<dyn Cluster>>,
    threads: usize,
) -> Result<SessionContext, DataFusionError> {
    match cluster {
        Some(c) => c.context(session_config(threads)).await,
        None => Ok(session(threads)),
    }
}

/// The configuration every session that runs the profile plan starts from.
pub fn session_config(threads: usize) -> SessionConfig {
    SessionConfig::new()
        .with_target_partitions(threads.max(1))
        .with_batch_size(64 * 1024)
}

/// A session state that plans the profile node, from `config`.
pub fn profile_state(config: SessionConfig) -> SessionState {
    SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_query_planner(Arc::new(ProfileQueryPlanner))
        .build()
}

/// An in-process session with `threads` partitions.
pub fn session(threads: usize) -> SessionContext {
    SessionContext::new_with_state(profile_state(session_config(threads)))
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

/// Which table's rows a store scan produces: the job's readings or the SQL `readings` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RowShape {
    Profile,
    Sql,
}

impl RowShape {
    pub fn schema(self) -> SchemaRef {
        match self {
            RowShape::Profile => readings_schema(),
            RowShape::Sql => sql_readings_schema(),
        }
    }

    fn batch(
        self,
        schema: &SchemaRef,
        rows: &[RegionReading],
    ) -> Result<RecordBatch, DataFusionError> {
        match self {
            RowShape::Profile => rows_to_batch(schema, rows),
            RowShape::Sql => sql_rows_to_batch(schema, rows),
        }
    }
}

/// The columns of a scan's work table: one row per store slice.
fn slices_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("from_ms", DataType::Int64, false),
        Field::new("to_ms", DataType::Int64, false),
        Field::new("part", DataType::Utf8, false),
    ]))
}

/// `parts` as a work table in memory, partition `i` holding the slices of `parts[i]`. A
/// cluster hands each task only its partitions of a memory source, so each task reads its own
/// slices and no other's.
fn slices_table(parts: &[Vec<ScanSlice>]) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    let schema = slices_schema();
    let partitions = parts
        .iter()
        .map(|slices| {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        slices.iter().map(|s| s.from.timestamp_millis()),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        slices.iter().map(|s| s.to.timestamp_millis()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        slices.iter().map(|s| s.part.as_str()),
                    )),
                ],
            )?;
            Ok(vec![batch])
        })
        .collect::<Result<Vec<_>, DataFusionError>>()?;
    Ok(MemorySourceConfig::try_new_exec(&partitions, schema, None)?)
}

/// The slices a batch of the work table names.
fn slices_of(batch: &RecordBatch) -> Result<Vec<ScanSlice>, DataFusionError> {
    let bad = || DataFusionError::Internal("a scan's work table lost its columns".into());
    let ints = |i: usize| {
        batch
            .column(i)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)
    };
    let (from, to) = (ints(0)?, ints(1)?);
    let part = batch.column(2).as_string_opt::<i32>().ok_or_else(bad)?;
    let at = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| DataFusionError::Internal(format!("slice time {ms} out of range")))
    };
    (0..batch.num_rows())
        .map(|i| {
            Ok(ScanSlice {
                from: at(from.value(i))?,
                to: at(to.value(i))?,
                part: part.value(i).to_owned(),
            })
        })
        .collect()
}

/// The store's readings of some slices: partition `i` reads the slices its input (the work
/// table of [`slices_table`]) gives it, one after another, page by page, straight from the
/// store of the process that runs it (on a cluster, each executor's own connection).
pub struct StoreScanExec {
    input: Arc<dyn ExecutionPlan>,
    store: Arc<dyn Store>,
    shape: RowShape,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for StoreScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreScanExec({:?})", self.shape)
    }
}

impl StoreScanExec {
    /// Reads the slices `input` names.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        store: Arc<dyn Store>,
        shape: RowShape,
        projection: Option<Vec<usize>>,
    ) -> Result<Self, DataFusionError> {
        let full = shape.schema();
        let schema = match &projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            input,
            store,
            shape,
            projection,
            properties,
        })
    }

    /// `slices` dealt round-robin over at most `partitions` partitions, so that many slices
    /// (Cassandra's region-day-shards) are read `partitions` at a time.
    pub fn dealt(
        store: Arc<dyn Store>,
        slices: Vec<ScanSlice>,
        partitions: usize,
        shape: RowShape,
        projection: Option<Vec<usize>>,
    ) -> Result<Self, DataFusionError> {
        let n = partitions.clamp(1, slices.len().max(1));
        let mut parts: Vec<Vec<ScanSlice>> = vec![Vec::new(); n];
        for (i, slice) in slices.into_iter().enumerate() {
            parts[i % n].push(slice);
        }
        Self::try_new(slices_table(&parts)?, store, shape, projection)
    }

    pub fn shape(&self) -> RowShape {
        self.shape
    }

    pub fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }
}

impl DisplayAs for StoreScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StoreScanExec: shape={:?}, partitions={}",
            self.shape,
            self.properties.output_partitioning().partition_count()
        )
    }
}

impl ExecutionPlan for StoreScanExec {
    fn name(&self) -> &str {
        "StoreScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::common::Result<TreeNodeRecursion>,
    ) -> datafusion::common::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("StoreScanExec has one input".into()))?;
        Ok(Arc::new(Self::try_new(
            input,
            self.store.clone(),
            self.shape,
            self.projection.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        let mut work = self.input.execute(partition, context)?;
        let (store, shape, projection) = (self.store.clone(), self.shape, self.projection.clone());
        let full = shape.schema();
        let slices = async move {
            let mut slices = Vec::new();
            while let Some(batch) = work.next().await {
                slices.extend(slices_of(&batch?)?);
            }
            Ok::<_, DataFusionError>(slices)
        };
        let batches = futures::stream::once(slices)
            .map_ok(move |slices| {
                let (full, projection) = (full.clone(), projection.clone());
                read_ahead(scan_pages(store.clone(), slices, PAGE)).map(move |page| {
                    let rows = page.map_err(|e| DataFusionError::External(Box::new(e)))?;
                    let batch = shape.batch(&full, &rows)?;
                    match &projection {
                        Some(p) => Ok(batch.project(p)?),
                        None => Ok(batch),
                    }
                })
            })
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }
}

/// The store's readings of one window as the job's `readings` table; its scan asks the store
/// for the window's slices when planned (on a cluster, on the scheduler).
pub struct StoreReadings {
    pub store: Arc<dyn Store>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub partitions: usize,
}

impl fmt::Debug for StoreReadings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreReadings({} to {})", self.from, self.to)
    }
}

#[async_trait::async_trait]
impl TableProvider for StoreReadings {
    fn schema(&self) -> SchemaRef {
        readings_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let slices = self
            .store
            .scan_slices(self.from, self.to, None)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Arc::new(StoreScanExec::dealt(
            self.store.clone(),
            slices,
            self.partitions,
            RowShape::Profile,
            projection.cloned(),
        )?))
    }
}

/// Registers the store's readings of `from <= ts < to` as the readings table, its scan slices
/// read `partitions` at a time.
pub fn register_store(
    ctx: &SessionContext,
    store: Arc<dyn Store>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    partitions: usize,
) -> Result<(), DataFusionError> {
    ctx.register_table(
        TABLE,
        Arc::new(StoreReadings {
            store,
            from,
            to,
            partitions,
        }),
    )?;
    Ok(())
}

/// The profile of the registered readings with `from <= ts < to` (all of them without a
/// window), as a plan run on `ctx` (in process, or on the cluster `ctx` submits to); `scanned`
/// counts rows as this process folds them in, for progress.
pub async fn aggregate(
    ctx: &SessionContext,
    tz: Tz,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    scanned: Scanned,
) -> Result<Vec<ProfileFigures>, DataFusionError> {
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
    collect_profiles(df, tz, scanned).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_ahead_gives_every_item_in_order_and_fetches_while_the_reader_works() {
        use std::sync::atomic::{AtomicUsize, Ordering};
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
