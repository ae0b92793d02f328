//! The regional profile as a DataFusion plan that a cluster can split: any readings input,
//! shuffled by region (`ProfileExec` asks for its input hash-partitioned on `region_id`, so
//! every reading of a region reaches the same task), then one [`ProfileAccumulator`] per
//! partition folding its regions exactly as the job always has. The plan's output is a row per
//! region: its code, the last local day its partition saw, and the figures as JSON.
//!
//! In one process DataFusion runs the plan with an in-memory repartition; on a Ballista
//! cluster the repartition is a shuffle between stages and each executor runs `ProfileExec`
//! for its partitions. Either way the figures come from the same code.
//!
//! One figure depends on more than a region's own readings: a meter's days run to the last
//! day *any* meter has a reading (so a meter gone silent counts its silent days as excluded).
//! A partition only knows its own last day, so [`collect_profiles`] extends each region's
//! days to the latest of all partitions afterwards ([`extend_to`]).

use std::cmp::Ordering as CmpOrdering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono_tz::Tz;
use datafusion::arrow::array::{AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use iot_common::ProfileFigures;
use iot_common::local_time::{LocalClock, LocalDay};

use crate::aggregate::ProfileAccumulator;
use crate::schema::REGION_COL;

/// The plan's output columns.
const LAST_DAY_COL: &str = "last_day";
const FIGURES_COL: &str = "figures";

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(REGION_COL, DataType::Utf8, false),
        Field::new(LAST_DAY_COL, DataType::Int32, false),
        Field::new(FIGURES_COL, DataType::Utf8, false),
    ]))
}

/// Counts the rows a plan folds in, for a run's progress. Shared only within one process: a
/// node decoded on another process counts there, into a counter of its own.
#[derive(Debug, Clone, Default)]
pub struct Scanned(pub Arc<AtomicU64>);

/// The logical node: the profile of its input's readings in the regions' time zone `tz`.
#[derive(Debug, Clone)]
pub struct ProfileNode {
    pub input: LogicalPlan,
    pub tz: Tz,
    pub scanned: Scanned,
    schema: DFSchemaRef,
}

impl ProfileNode {
    pub fn new(input: LogicalPlan, tz: Tz, scanned: Scanned) -> Result<Self, DataFusionError> {
        let schema = Arc::new(DFSchema::try_from(output_schema().as_ref().clone())?);
        Ok(Self {
            input,
            tz,
            scanned,
            schema,
        })
    }
}

// The counter is not part of what the node means.
impl PartialEq for ProfileNode {
    fn eq(&self, other: &Self) -> bool {
        self.input == other.input && self.tz == other.tz
    }
}

impl Eq for ProfileNode {}

impl Hash for ProfileNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.tz.name().hash(state);
    }
}

impl PartialOrd for ProfileNode {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        match self.input.partial_cmp(&other.input) {
            Some(CmpOrdering::Equal) => Some(self.tz.name().cmp(other.tz.name())),
            other => other,
        }
    }
}

impl UserDefinedLogicalNodeCore for ProfileNode {
    fn name(&self) -> &str {
        "RegionProfile"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<datafusion::logical_expr::Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "RegionProfile: tz={}", self.tz.name())
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<datafusion::logical_expr::Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self, DataFusionError> {
        let input = inputs
            .pop()
            .ok_or_else(|| DataFusionError::Internal("RegionProfile has one input".into()))?;
        Ok(Self {
            input,
            ..self.clone()
        })
    }
}

/// The physical node: folds each partition of its region-partitioned input.
#[derive(Debug)]
pub struct ProfileExec {
    input: Arc<dyn ExecutionPlan>,
    /// The input's region column: what the input is partitioned on.
    region: Arc<dyn PhysicalExpr>,
    tz: Tz,
    scanned: Scanned,
    properties: Arc<PlanProperties>,
}

impl ProfileExec {
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        tz: Tz,
        scanned: Scanned,
    ) -> Result<Self, DataFusionError> {
        let region = Arc::new(Column::new_with_schema(REGION_COL, &input.schema())?);
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            input,
            region,
            tz,
            scanned,
            properties,
        })
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }
}

impl DisplayAs for ProfileExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ProfileExec: tz={}", self.tz.name())
    }
}

impl ExecutionPlan for ProfileExec {
    fn name(&self) -> &str {
        "ProfileExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::KeyPartitioned(vec![self.region.clone()])]
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
            .ok_or_else(|| DataFusionError::Internal("ProfileExec has one input".into()))?;
        Ok(Arc::new(Self::try_new(
            input,
            self.tz,
            self.scanned.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let clock = LocalClock::new(self.tz);
        let scanned = self.scanned.0.clone();
        let schema = output_schema();
        let out = schema.clone();
        let folded = futures::stream::once(async move {
            let mut acc = ProfileAccumulator::new(clock);
            while let Some(batch) = input.next().await {
                let batch = batch?;
                acc.update(&batch)?;
                scanned.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
            figures_batch(&out, &acc)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, folded)))
    }
}

fn figures_batch(
    schema: &SchemaRef,
    acc: &ProfileAccumulator,
) -> Result<RecordBatch, DataFusionError> {
    let figures = acc.finish();
    let last = acc.last_day().unwrap_or_default();
    let json = figures
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                figures.iter().map(|f| f.region.as_str()),
            )),
            Arc::new(Int32Array::from(vec![last; figures.len()])),
            Arc::new(StringArray::from(json)),
        ],
    )?)
}

/// Plans [`ProfileNode`]s as [`ProfileExec`]s.
#[derive(Debug, Default)]
pub struct ProfilePlanner;

#[async_trait]
impl ExtensionPlanner for ProfilePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> datafusion::common::Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(profile) = node.as_any().downcast_ref::<ProfileNode>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return Err(DataFusionError::Internal(
                "RegionProfile has one input".into(),
            ));
        };
        Ok(Some(Arc::new(ProfileExec::try_new(
            input.clone(),
            profile.tz,
            profile.scanned.clone(),
        )?)))
    }
}

/// DataFusion's planner with [`ProfilePlanner`] beside its own: what a session that runs the
/// profile plan (in process, or a cluster's scheduler) plans with.
#[derive(Debug, Default)]
pub struct ProfileQueryPlanner;

#[async_trait]
impl QueryPlanner for ProfileQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ProfilePlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

/// The profile of `readings` (columns `region_id`, `meter_id`, `ts`, `kwh`), run on whatever
/// `readings`' session runs plans on, ordered by region code.
pub async fn collect_profiles(
    readings: DataFrame,
    tz: Tz,
    scanned: Scanned,
) -> Result<Vec<ProfileFigures>, DataFusionError> {
    let (state, input) = readings.into_parts();
    let node = ProfileNode::new(input, tz, scanned)?;
    let plan = LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    });
    let batches = DataFrame::new(state, plan).collect().await?;
    let mut rows: Vec<(LocalDay, ProfileFigures)> = Vec::new();
    for batch in &batches {
        let last = batch
            .column_by_name(LAST_DAY_COL)
            .map(|c| c.as_primitive::<Int32Type>().clone());
        let figures = batch
            .column_by_name(FIGURES_COL)
            .map(|c| c.as_string::<i32>().clone());
        let (Some(last), Some(figures)) = (last, figures) else {
            return Err(DataFusionError::Internal(
                "the profile plan's output lost its columns".into(),
            ));
        };
        for i in 0..batch.num_rows() {
            let f: ProfileFigures = serde_json::from_str(figures.value(i))
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            rows.push((last.value(i), f));
        }
    }
    let latest = rows.iter().map(|(last, _)| *last).max();
    let mut out: Vec<ProfileFigures> = rows
        .into_iter()
        .map(|(last, f)| match latest {
            Some(latest) => extend_to(f, last, latest),
            None => f,
        })
        .collect();
    out.sort_by(|a, b| a.region.cmp(&b.region));
    Ok(out)
}

/// A region's figures with its meters' days run on from `last` to `latest`: each of those days
/// is a day without readings for every meter, which validation always excludes (every slot
/// would be estimated, beyond any share it allows) and which changes nothing else (no later
/// reading to interpolate towards, and excluded days count in no figure but the exclusions).
pub fn extend_to(mut figures: ProfileFigures, last: LocalDay, latest: LocalDay) -> ProfileFigures {
    let more = u64::try_from(i64::from(latest) - i64::from(last)).unwrap_or(0);
    figures.meter_days.excluded += figures.meters * more;
    figures
}

/// Where two runs' figures for the same regions differ: counts must be equal, and every
/// figure equal within `rel` relative (sums of floats taken in another order differ in the last
/// bits). Empty when they agree.
pub fn differences(a: &[ProfileFigures], b: &[ProfileFigures], rel: f64) -> Vec<String> {
    let mut out = Vec::new();
    if a.len() != b.len() {
        out.push(format!("{} regions against {}", a.len(), b.len()));
    }
    let close = |x: f64, y: f64| x == y || (x - y).abs() <= rel * x.abs().max(y.abs());
    for (x, y) in a.iter().zip(b) {
        let r = x.region.as_str();
        if (
            x.region.as_str(),
            x.meters,
            x.readings,
            x.peak_hour,
            x.meter_days,
        ) != (
            y.region.as_str(),
            y.meters,
            y.readings,
            y.peak_hour,
            y.meter_days,
        ) {
            out.push(format!("{r}: counts {x:?} against {y:?}"));
            continue;
        }
        let floats = |f: &ProfileFigures| {
            let mut v = vec![
                f.avg_daily_kwh,
                f.p50_daily_kwh,
                f.p90_daily_kwh,
                f.weekday_avg_daily_kwh.unwrap_or(f64::NAN),
                f.weekend_avg_daily_kwh.unwrap_or(f64::NAN),
            ];
            v.extend(f.hourly_kwh);
            v.extend(&f.meter_daily_percentiles);
            v
        };
        let (fx, fy) = (floats(x), floats(y));
        if fx.len() != fy.len() {
            out.push(format!("{r}: {} figures against {}", fx.len(), fy.len()));
        }
        for (k, (p, q)) in fx.iter().zip(&fy).enumerate() {
            if !(close(*p, *q) || p.is_nan() && q.is_nan()) {
                out.push(format!("{r}: figure {k}: {p} against {q}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use datafusion::datasource::MemTable;
    use iot_common::store::RegionReading;

    use super::*;
    use crate::schema::{readings_schema, rows_to_batch};

    const LONDON: Tz = chrono_tz::Europe::London;

    /// Half-hourly readings of `meters` meters of `region` for `days` days from 2026-03-20
    /// (across the spring clock change), with a gap and a spike here and there.
    fn rows(region: &str, meters: usize, days: i64) -> Vec<RegionReading> {
        let start: DateTime<Utc> = "2026-03-20T00:00:00Z".parse().unwrap_or_default();
        let mut out = Vec::new();
        for m in 0..meters {
            for k in 0..days * 48 {
                if (k + m as i64) % 97 == 0 {
                    continue;
                }
                let spike = if k == 300 + m as i64 { 40.0 } else { 0.0 };
                out.push(RegionReading {
                    region: region.parse().unwrap_or_else(|e| panic!("{e}")),
                    meter_id: format!("MAC{region}{m:03}")
                        .parse()
                        .unwrap_or_else(|e| panic!("{e}")),
                    ts: start + Duration::minutes(30 * k),
                    kwh: 0.1 + 0.013 * ((k * 7 + m as i64) % 11) as f64 + spike,
                    interval_s: None,
                });
            }
        }
        out
    }

    #[tokio::test]
    async fn the_plan_over_many_partitions_equals_one_accumulator_over_everything() {
        // E09000002's readings end five days before E09000001's: its meters' last days are
        // silent, which only a view of every region's readings can tell.
        let mut all = rows("E09000001", 6, 14);
        all.extend(rows("E09000002", 4, 9));
        all.extend(rows("E09000003", 3, 14));
        let schema = readings_schema();
        let batches: Vec<RecordBatch> = all
            .chunks(1000)
            .map(|c| rows_to_batch(&schema, c).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let mut one = ProfileAccumulator::new(LocalClock::new(LONDON));
        for b in &batches {
            one.update(b).unwrap_or_else(|e| panic!("{e}"));
        }
        let expected = one.finish();
        assert_eq!(expected.len(), 3);
        assert!(
            expected[1].meter_days.excluded >= 4 * 5,
            "{:?}",
            expected[1]
        );

        let parts: Vec<Vec<RecordBatch>> = batches.chunks(7).map(<[_]>::to_vec).collect();
        let ctx = crate::source::session(4);
        let table = MemTable::try_new(schema, parts).unwrap_or_else(|e| panic!("{e}"));
        ctx.register_table("readings", Arc::new(table))
            .unwrap_or_else(|e| panic!("{e}"));
        let scanned = Scanned::default();
        let df = ctx
            .table("readings")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = collect_profiles(df, LONDON, scanned.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(scanned.0.load(Ordering::Relaxed), all.len() as u64);
        assert_eq!(got.len(), expected.len());
        // Each meter-day is summed in reading order either way; sums across meters may add
        // them in another order.
        assert_eq!(differences(&got, &expected, 1e-12), Vec::<String>::new());
    }

    #[test]
    fn extending_a_regions_days_counts_each_meters_silent_days_as_excluded() {
        let schema = readings_schema();
        let batch =
            rows_to_batch(&schema, &rows("E09000002", 4, 9)).unwrap_or_else(|e| panic!("{e}"));
        let mut acc = ProfileAccumulator::new(LocalClock::new(LONDON));
        acc.update(&batch).unwrap_or_else(|e| panic!("{e}"));
        let last = acc.last_day().unwrap_or_else(|| panic!("no readings"));
        for more in [0, 1, 5, 30] {
            let direct = acc.finish_until(Some(last + more));
            let extended = extend_to(acc.finish()[0].clone(), last, last + more);
            assert_eq!(direct, vec![extended], "{more} more days");
        }
    }
}
