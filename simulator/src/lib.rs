//! The simulator: (1) the fleet, virtual households that post realistic half-hourly readings
//! to the meter over HTTP, as real meters would; (2) the sink, a bus consumer group that
//! writes readings into the store in batches and commits only after the write succeeded.

pub mod fleet;
pub mod household;
pub mod sink;

pub use fleet::{Fleet, FleetConfig};
pub use sink::{SinkConfig, run_sink};
