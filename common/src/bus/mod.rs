//! The bus port: the meter publishes readings, the sink consumes them in a consumer group.
//! Adapters: [`sqlite_log::SqliteLog`] (embedded, in-process) and, in its own crate, Kafka.
//! Delivery is at least once: a consumer sees again what it polled but did not commit.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::Reading;

pub mod sqlite_log;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot take or give messages right now; retry later.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The bus did not confirm in time; the publish may or may not have happened.
    #[error("bus timed out after {0:?}")]
    Timeout(Duration),
    #[error("bus misconfigured: {0}")]
    Config(String),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Returns only once every reading is durable on the bus. All or nothing per call where
    /// the adapter can give that; otherwise a retry re-publishes, and the store's upsert by
    /// `(meter_id, ts)` absorbs the duplicates.
    async fn publish(&self, readings: &[Reading]) -> Result<(), BusError>;
    /// Joins consumer group `group`, resuming after its last committed position.
    async fn subscribe(&self, group: &str) -> Result<Box<dyn Consumer>, BusError>;
    /// Cheap check, for readiness.
    async fn ping(&self) -> Result<(), BusError>;
}

#[async_trait]
pub trait Consumer: Send {
    /// Up to `max` readings after the last polled one; waits up to `wait` when none are ready
    /// and then returns an empty batch.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Reading>, BusError>;
    /// Marks everything polled so far as processed: it will not be delivered to the group
    /// again.
    async fn commit(&mut self) -> Result<(), BusError>;
}
