//! The simulator: (1) the fleet, virtual households that post realistic half-hourly readings
//! to the meter over HTTP, as real meters would, failing as real meters do ([`faults`]); (2) the sink, a bus consumer group that
//! writes readings into the store in batches and commits only after the write succeeded.
//! (3) the live aggregator ([`live`]), a second consumer group that keeps each region's
//! half-hour figures of the last 48 hours for the map's "now". [`service`] runs the sink and the live
//! aggregator on Kafka as processes of their own (`simulator sink`, `simulator live`).

#[cfg(feature = "test-support")]
pub mod acked_load;
pub mod backfill;
#[cfg(feature = "distributed")]
pub mod cli;
pub mod faults;
pub mod fleet;
pub mod fleet_flags;
pub mod household;
pub mod live;
#[cfg(feature = "test-support")]
pub mod live_check;
#[cfg(feature = "distributed")]
pub mod service;
pub mod sink;

pub use fleet::{Fleet, FleetConfig};
pub use fleet_flags::FleetFlags;
pub use live::{LiveConfig, run_live};
pub use sink::{SinkConfig, run_sink};
