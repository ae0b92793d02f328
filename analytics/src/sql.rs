//! Analysts' ad-hoc SQL on DataFusion, over the store's tables ([`crate::sql_tables`]) or a
//! Parquet file of readings. One read-only statement per request, refused before planning
//! otherwise; a query runs under a row limit on what it returns, a wall-clock limit and a
//! memory pool without spilling, so a query that would need more fails with a clear error
//! instead of taking the process's memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;
use iot_common::store::{Store, StoreError};

use crate::source::Cluster;
use crate::sql_tables::{NoTimeBound, register_store_tables};

/// What one query may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SqlLimits {
    /// Most rows an answer holds; more are cut off and the answer says "truncated".
    pub max_rows: usize,
    /// Longest a query may take, planning included.
    pub timeout: Duration,
    /// DataFusion's memory pool for the query's sorts, joins and aggregations.
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            max_rows: 10_000,
            // Under the HTTP request timeout (30 s), so the analyst hears why.
            timeout: Duration::from_secs(20),
            memory_bytes: 512 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Not a query: DDL, DML, COPY, SET and the like.
    #[error("only read-only queries run here (SELECT, WITH … SELECT, EXPLAIN); this is {0}")]
    Refused(String),
    #[error("send one statement at a time; this text holds {0}")]
    Several(usize),
    #[error("send a query: the text holds no statement")]
    Empty,
    /// The analyst's to fix: it does not parse, names what does not exist, has no time bound.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "the query needs more memory than its limit of {limit_mib} MiB ({detail}); narrow the \
         time window or the regions, or aggregate before sorting or joining"
    )]
    Memory { limit_mib: usize, detail: String },
    #[error(
        "the query ran past its limit of {0} s and was stopped; narrow the time window or the \
         regions"
    )]
    Timeout(u64),
    #[error("{0} queries are running already; try again when one has finished")]
    Busy(usize),
    #[error("store: {0}")]
    Store(String),
    #[error("the query failed: {0}")]
    Internal(String),
}

impl SqlError {
    /// The analyst's to change (the query, or when to ask), not a fault of the service.
    pub fn is_analysts(&self) -> bool {
        !matches!(self, SqlError::Store(_) | SqlError::Internal(_))
    }
}

/// The kind of statement, as an analyst would name it (`INSERT`, `CREATE TABLE`, `COPY`).
fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    let mut words = text.split_whitespace().map(str::to_uppercase);
    let first = words.next().unwrap_or_default();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" => match words.next() {
            Some(second) => format!("{first} {second}"),
            None => first,
        },
        _ => first,
    }
}

fn is_query(s: &Statement) -> bool {
    match s {
        Statement::Statement(s) => is_sql_query(s),
        Statement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

fn is_sql_query(s: &SqlStatement) -> bool {
    match s {
        SqlStatement::Query(_) => true,
        SqlStatement::Explain { statement, .. } => is_sql_query(statement),
        _ => false,
    }
}

/// Refuses anything but one read-only query, naming what it is.
pub fn check_read_only(sql: &str) -> Result<(), SqlError> {
    let statements = DFParser::parse_sql(sql).map_err(|e| SqlError::Invalid(e.to_string()))?;
    match statements.len() {
        0 => return Err(SqlError::Empty),
        1 => {}
        n => return Err(SqlError::Several(n)),
    }
    match &statements[0] {
        s if is_query(s) => Ok(()),
        other => Err(SqlError::Refused(statement_kind(other))),
    }
}

fn classify(e: DataFusionError, limits: &SqlLimits) -> SqlError {
    let root = e.find_root();
    match root {
        DataFusionError::ResourcesExhausted(detail) => SqlError::Memory {
            limit_mib: limits.memory_bytes >> 20,
            detail: detail.clone(),
        },
        DataFusionError::External(inner) => {
            if let Some(e) = inner.downcast_ref::<NoTimeBound>() {
                SqlError::Invalid(e.to_string())
            } else if let Some(e) = inner.downcast_ref::<StoreError>() {
                SqlError::Store(e.to_string())
            } else {
                SqlError::Internal(root.to_string())
            }
        }
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Execution(_)
        | DataFusionError::ArrowError(..) => SqlError::Invalid(root.to_string()),
        _ => SqlError::Internal(root.to_string()),
    }
}

/// A query's answer: at most the row limit of rows.
#[derive(Debug)]
pub struct SqlAnswer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// More rows were there than the limit let through.
    pub truncated: bool,
    pub row_limit: usize,
    pub elapsed: Duration,
}

/// What one analyst's SQL query may use (the `sql` command and `POST /internal/v1/query`).
#[derive(Debug, Clone, clap::Args)]
pub struct SqlArgs {
    /// Most rows a query answers with; the answer says when it was cut.
    #[arg(long, env = "IOT_SQL_MAX_ROWS", default_value_t = 10_000)]
    pub sql_max_rows: usize,
    /// Seconds a query may run (keep it under the HTTP request timeout when serving).
    #[arg(long, env = "IOT_SQL_TIMEOUT_S", default_value_t = 20)]
    pub sql_timeout_s: u64,
    /// MiB of memory a query's sorts, joins and aggregations may take (no spilling: over
    /// it, the query fails and says so).
    #[arg(long, env = "IOT_SQL_MEMORY_MIB", default_value_t = 512)]
    pub sql_memory_mib: usize,
}

impl SqlArgs {
    pub fn limits(&self) -> SqlLimits {
        SqlLimits {
            max_rows: self.sql_max_rows.max(1),
            timeout: Duration::from_secs(self.sql_timeout_s.max(1)),
            memory_bytes: self.sql_memory_mib.max(1) << 20,
        }
    }
}

/// Where the tables come from.
#[derive(Clone)]
pub enum SqlSource {
    /// `readings` (pushed-down scans), `meters`, `profiles`, `runs`.
    Store(Arc<dyn Store>),
    /// `readings` from a Parquet file of the export's columns (`region_id` read as `region`).
    Parquet(PathBuf),
}

/// Queries that run at once; each has its own memory pool, so this bounds the memory all
/// queries together may take.
const CONCURRENT: usize = 2;
/// How long a query waits for another to finish before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The query runtime's threads: CPU-bound query work runs there, so a heavy query neither
/// starves the service's own tasks nor keeps its wall-clock limit from firing.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // A query still going is dropped with the runtime, wherever the engine is dropped.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub struct SqlEngine {
    planner: Arc<Planner>,
    /// Held by a query until its work has stopped, not just until it was answered.
    running: Arc<tokio::sync::Semaphore>,
    runtime: QueryRuntime,
}

impl SqlEngine {
    pub fn new(source: SqlSource, limits: SqlLimits, threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sql")
            .enable_all()
            .build()?;
        Ok(Self {
            planner: Arc::new(Planner {
                source,
                limits,
                threads,
                cluster: None,
            }),
            running: Arc::new(tokio::sync::Semaphore::new(CONCURRENT)),
            runtime: QueryRuntime(Some(runtime)),
        })
    }

    /// The engine with its queries run on `cluster` (when there is one): the checks, the
    /// queue and the row limit stay here; memory is each executor's.
    pub fn on_cluster(mut self, cluster: Option<Arc<dyn Cluster>>) -> Self {
        if let Some(planner) = Arc::get_mut(&mut self.planner) {
            planner.cluster = cluster;
        }
        self
    }

    /// Runs one read-only query under the limits.
    pub async fn run(&self, sql: &str) -> Result<SqlAnswer, SqlError> {
        check_read_only(sql)?;
        let busy = |_| SqlError::Busy(CONCURRENT);
        let permit = tokio::time::timeout(QUEUE_WAIT, self.running.clone().acquire_owned())
            .await
            .map_err(|_| SqlError::Busy(CONCURRENT))?
            .map_err(busy)?;
        let Some(runtime) = self.runtime.0.as_ref() else {
            return Err(SqlError::Internal("the query runtime has stopped".into()));
        };
        let limits = self.planner.limits;
        let started = Instant::now();
        let planner = self.planner.clone();
        let sql = sql.to_owned();
        let query = runtime.spawn(async move {
            let _permit = permit;
            planner.execute(&sql).await
        });
        let abort = query.abort_handle();
        match tokio::time::timeout(limits.timeout, query).await {
            Err(_) => {
                // Lands at the query's next yield; its permit is held until then.
                abort.abort();
                Err(SqlError::Timeout(limits.timeout.as_secs()))
            }
            Ok(Err(e)) => Err(SqlError::Internal(format!("the query's task ended: {e}"))),
            Ok(Ok(Err(e))) => Err(classify(e, &limits)),
            Ok(Ok(Ok((schema, batches, rows, truncated)))) => Ok(SqlAnswer {
                schema,
                batches,
                rows,
                truncated,
                row_limit: limits.max_rows,
                elapsed: started.elapsed(),
            }),
        }
    }
}

/// Plans and runs queries over one source.
struct Planner {
    source: SqlSource,
    limits: SqlLimits,
    threads: usize,
    cluster: Option<Arc<dyn Cluster>>,
}

impl Planner {
    async fn session(&self) -> Result<SessionContext, DataFusionError> {
        if let Some(cluster) = &self.cluster {
            let config = SessionConfig::new()
                .with_target_partitions(self.threads)
                .with_information_schema(true);
            return cluster.context(config).await;
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        let config = SessionConfig::new()
            .with_target_partitions(self.threads)
            .with_information_schema(true);
        Ok(SessionContext::new_with_config_rt(config, runtime))
    }

    async fn register(&self, ctx: &SessionContext, sql: &str) -> Result<(), DataFusionError> {
        match &self.source {
            SqlSource::Store(store) => {
                let state = ctx.state();
                let statement =
                    state.sql_to_statement(sql, &state.config().options().sql_parser.dialect)?;
                let named = state.resolve_table_references(&statement)?;
                // A look at information_schema lists every table: register them all then.
                let all = named
                    .iter()
                    .any(|t| t.schema() == Some("information_schema"));
                let wanted = |table: &str| all || named.iter().any(|t| t.table() == table);
                // Store reads wait on the network more than on the CPU.
                register_store_tables(ctx, store.clone(), self.threads * 4, wanted).await
            }
            SqlSource::Parquet(path) => {
                let path = path.to_str().ok_or_else(|| {
                    DataFusionError::Plan(format!("{} is not a UTF-8 path", path.display()))
                })?;
                ctx.register_parquet("readings_file", path, ParquetReadOptions::default())
                    .await?;
                ctx.sql(
                    "CREATE VIEW readings AS SELECT meter_id, region_id AS region, ts, kwh \
                     FROM readings_file",
                )
                .await?;
                Ok(())
            }
        }
    }

    async fn execute(
        &self,
        sql: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, usize, bool), DataFusionError> {
        let ctx = self.session().await?;
        self.register(&ctx, sql).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await?;
        let mut stream = df.execute_stream().await?;
        let schema = stream.schema();
        let (mut batches, mut rows) = (Vec::new(), 0usize);
        let limit = self.limits.max_rows;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let room = limit - rows;
            if batch.num_rows() > room {
                if room > 0 {
                    batches.push(batch.slice(0, room));
                }
                return Ok((schema, batches, limit, true));
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok((schema, batches, rows, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        match check_read_only(sql) {
            Err(SqlError::Refused(kind)) => kind,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn queries_pass_and_everything_else_is_named() {
        for sql in [
            "SELECT 1",
            "WITH d AS (SELECT 1 AS x) SELECT x FROM d",
            "EXPLAIN SELECT * FROM readings",
            "select count(*) from readings where ts >= now() - interval '1 day';",
        ] {
            check_read_only(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        assert_eq!(refused("INSERT INTO runs VALUES (1)"), "INSERT");
        assert_eq!(refused("delete from readings"), "DELETE");
        assert_eq!(refused("UPDATE meters SET region = 'x'"), "UPDATE");
        assert_eq!(refused("CREATE TABLE t (a INT)"), "CREATE TABLE");
        assert_eq!(refused("DROP TABLE readings"), "DROP TABLE");
        assert_eq!(refused("COPY readings TO '/tmp/x.csv'"), "COPY");
        assert_eq!(refused("SET datafusion.execution.batch_size = 1"), "SET");
        assert_eq!(
            refused("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'"),
            "CREATE EXTERNAL"
        );
        assert_eq!(refused("EXPLAIN INSERT INTO runs VALUES (1)"), "EXPLAIN");
    }

    #[test]
    fn one_statement_at_a_time() {
        assert!(matches!(
            check_read_only("SELECT 1; DROP TABLE readings"),
            Err(SqlError::Several(2))
        ));
        assert!(matches!(check_read_only("  ;  "), Err(SqlError::Empty)));
        assert!(matches!(
            check_read_only("SELEC 1"),
            Err(SqlError::Invalid(_))
        ));
    }
}
