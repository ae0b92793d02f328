//! The analytics batch job: turns raw readings into regional energy profiles. Readings come
//! from the store (streamed page by page as Arrow batches) or from a Parquet file, are
//! scanned by DataFusion in parallel partitions, repartitioned by region and folded by a
//! streaming aggregation in the regions' local time (one plan, run in the process or on an
//! Apache DataFusion Ballista cluster of our own scheduler and executors); profiles go back to
//! the store as the current profile per region.
//! Runs are recorded, single-flight, and triggered by CLI, schedule or the internal API.

pub mod aggregate;
pub mod api;
#[cfg(feature = "distributed")]
pub mod cli;
#[cfg(feature = "distributed")]
pub mod cluster;
#[cfg(feature = "distributed")]
pub mod first_run;
pub mod job;
pub mod output;
pub mod plan;
pub mod schema;
pub mod source;
pub mod sql;
mod sql_filters;
pub mod sql_meter_days;
pub mod sql_output;
pub mod sql_tables;
#[cfg(feature = "distributed")]
pub mod store_bench;

pub use iot_common::{local_time, quality};
pub use job::{Analytics, JobConfig, JobError};
