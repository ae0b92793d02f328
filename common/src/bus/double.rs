//! [`FaultyBusDouble`]: a test double that wraps a real bus and makes its consumers fail or
//! hang on cue, for what a real bus cannot be made to do on demand (an error on the second
//! poll of a batch, a poll still waiting when a shutdown comes).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{Bus, BusError, Consumer};
use crate::domain::Reading;

/// What the consumers of a [`FaultyBusDouble`] do; shared, so a test can change it while a
/// consumer runs.
#[derive(Debug)]
pub struct Faults {
    /// Most readings one poll takes from the real consumer.
    pub chunk: AtomicUsize,
    /// Every n-th poll fails without touching the real consumer (0: never).
    pub fail_every: AtomicUsize,
    /// Polls from the n-th on (counting from 1) wait until they are dropped.
    pub hang_from: AtomicUsize,
    /// Polls so far, of every consumer.
    pub polls: AtomicUsize,
}

pub struct FaultyBusDouble<B> {
    inner: B,
    pub faults: Arc<Faults>,
}

impl<B: Bus> FaultyBusDouble<B> {
    /// Behaves like `inner` until told otherwise.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            faults: Arc::new(Faults {
                chunk: AtomicUsize::new(usize::MAX),
                fail_every: AtomicUsize::new(0),
                hang_from: AtomicUsize::new(usize::MAX),
                polls: AtomicUsize::new(0),
            }),
        }
    }
}

#[async_trait]
impl<B: Bus> Bus for FaultyBusDouble<B> {
    async fn publish(&self, readings: &[Reading]) -> Result<(), BusError> {
        self.inner.publish(readings).await
    }

    async fn subscribe(&self, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        Ok(Box::new(FaultyConsumer {
            inner: self.inner.subscribe(group).await?,
            faults: self.faults.clone(),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.inner.ping().await
    }
}

struct FaultyConsumer {
    inner: Box<dyn Consumer>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Consumer for FaultyConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Reading>, BusError> {
        let n = self.faults.polls.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.faults.hang_from.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let every = self.faults.fail_every.load(Ordering::SeqCst);
        if every > 0 && n.is_multiple_of(every) {
            return Err(BusError::Unavailable(format!(
                "poll {n} fails (test double)"
            )));
        }
        let max = max.min(self.faults.chunk.load(Ordering::SeqCst));
        self.inner.poll(max, wait).await
    }

    async fn commit(&mut self) -> Result<(), BusError> {
        self.inner.commit().await
    }
}
