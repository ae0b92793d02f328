//! The meter service: the platform's front door for smart meters. It authenticates each
//! meter by its bearer token, validates every reading, publishes accepted readings to the
//! bus and answers 202 only once the bus has them durably. It keeps no state of its own.

pub mod ingest;

pub use ingest::{IngestConfig, MAX_BATCH, MAX_BODY_BYTES, MeterState, router};
