//! The bus port: the meter publishes readings, the sink consumes them in a consumer group.
//! Adapters: [`sqlite_log::SqliteLog`] (embedded, in-process) and, in its own crate, Kafka.
//! Delivery is at least once: a consumer sees again what it polled but did not commit.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::Reading;

pub mod sqlite_log;

#[cfg(any(test, feature = "contract"))]
pub mod contract;
#[cfg(any(test, feature = "contract"))]
pub mod double;

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
    /// Too many publishes are already waiting; nothing of this one was written.
    #[error("bus overloaded: too many publishes waiting")]
    Overloaded,
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

/// A member of a consumer group. What a meter was told 202 for rests on these rules, which
/// every adapter obeys and the contract suite ([`contract`]) checks:
///
/// - **Handed out, then committed.** [`Consumer::poll`] hands readings out in bus order
///   (per meter), each after the last one handed out. [`Consumer::commit`] records as
///   processed exactly what was handed out before it (and what the adapter settled by itself,
///   such as a message it sent to a dead-letter topic), never a reading it has not handed
///   out. The caller commits only once everything handed out is stored.
/// - **A failed poll hands out nothing and skips nothing.** Readings a poll took before an
///   error are returned rather than dropped, or kept for the next poll; whatever made it fail
///   (a dead letter the dead-letter topic refused) is retried first by the next poll.
/// - **Polls are cancel-safe.** A poll whose future is dropped (a shutdown racing it) loses
///   nothing: what it took is handed out by the next poll, and is not committed before.
/// - **Uncommitted means redelivered.** A consumer dropped without committing (a crash, a
///   shutdown mid-write) leaves what it handed out since its last commit to the next member
///   of its group.
#[async_trait]
pub trait Consumer: Send {
    /// Up to `max` readings after the last one handed out; waits up to `wait` when none are
    /// ready and then returns an empty batch.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Reading>, BusError>;
    /// [`Consumer::poll`], with the part of the bus (a Kafka partition) each reading came
    /// from. A meter's readings all travel in one part, and a part has one member of a group
    /// at a time, so state kept per part is the member's alone. The embedded log has one
    /// part, 0.
    async fn poll_parts(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(u32, Reading)>, BusError> {
        Ok(self
            .poll(max, wait)
            .await?
            .into_iter()
            .map(|r| (0, r))
            .collect())
    }
    /// The parts this member holds now; `None` when it holds every part there is.
    fn parts(&self) -> Result<Option<Vec<u32>>, BusError> {
        Ok(None)
    }
    /// Marks everything handed out so far as processed: it will not be delivered to the group
    /// again.
    async fn commit(&mut self) -> Result<(), BusError>;
}
