//! The meter service: the platform's front door for smart meters. It authenticates each
//! meter by its bearer token, validates every reading, publishes accepted readings to the
//! bus and answers 202 only once the bus has them durably. It keeps no state of its own.
//! [`service`] runs it on Kafka as its own process; the all-in-one `iot-demo` mounts
//! [`router`] on the embedded bus.

#[cfg(feature = "distributed")]
pub mod bench;
#[cfg(feature = "distributed")]
pub mod cli;
pub mod ingest;
#[cfg(feature = "distributed")]
pub mod service;

pub use ingest::{IngestConfig, MAX_BATCH, MAX_BODY_BYTES, MeterState, router};
