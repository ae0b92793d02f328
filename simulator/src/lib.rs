//! The simulator: (1) the fleet, virtual households that post realistic half-hourly readings
//! to the meter over HTTP, as real meters would, failing as real meters do ([`faults`]); (2) the sink, a bus consumer group that
//! writes readings into the store in batches and commits only after the write succeeded.
//! [`service`] runs the sink on Kafka as its own process (the `simulator sink` command).

#[cfg(feature = "test-support")]
pub mod acked_load;
pub mod backfill;
#[cfg(feature = "distributed")]
pub mod cli;
pub mod faults;
pub mod fleet;
pub mod fleet_flags;
pub mod household;
#[cfg(feature = "distributed")]
pub mod service;
pub mod sink;

pub use fleet::{Fleet, FleetConfig};
pub use fleet_flags::FleetFlags;
pub use sink::{SinkConfig, run_sink};
