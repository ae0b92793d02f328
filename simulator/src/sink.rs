//! The sink: consumes readings from the bus in a consumer group and writes them to the store
//! in batches. Offsets are committed only after the store write succeeded; a store outage
//! pauses consumption and retries with backoff, so nothing is lost and nothing skipped. A
//! store that refuses the writes (no permission, an invalid request) is not an outage: the
//! sink stops with that error, leaving the batch uncommitted for the sink that replaces it.

use std::sync::Arc;
use std::time::Duration;

use iot_common::bus::{Bus, BusError, Consumer};
use iot_common::metrics::Metrics;
use iot_common::retry::{Backoff, sleep_unless};
use iot_common::store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub group: String,
    /// Most readings in one store write.
    pub max_batch: usize,
    /// Longest a reading waits for its batch to fill.
    pub max_wait: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            group: "sink".into(),
            max_batch: 5_000,
            max_wait: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(
        "the store refuses the sink's writes, which no retry changes; the batch stays uncommitted in the bus: {0}"
    )]
    StoreRefused(StoreError),
}

/// How long every poll may fail before the sink drops its consumer and joins the group
/// again. Seen on Apache Kafka 4.1 with librdkafka: after the broker restarted under load, a
/// consumer's polls went on failing with "all brokers down" while a new consumer of the same
/// group read at once. Nothing is lost by rejoining: everything handed out is stored, and an
/// uncommitted position is read again (the upsert absorbs the repeat).
pub(crate) const REJOIN_AFTER: Duration = Duration::from_secs(30);

/// How the sink waits between attempts at the bus or the store.
pub(crate) fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
}

/// Runs until `shutdown`. Never loses what it was handed: a poll error keeps what earlier
/// polls gave; on shutdown it stops polling, writes what it holds, commits exactly what it
/// wrote (and what the bus dead-lettered before it), and returns. A shutdown during a store
/// outage leaves the held batch uncommitted, to be delivered again.
pub async fn run_sink(
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    config: SinkConfig,
    shutdown: CancellationToken,
) -> Result<(), SinkError> {
    let Some(mut consumer) = subscribe(bus.as_ref(), &config.group, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(group = %config.group, "sink consuming");
    loop {
        let Filled { batch, stopping } = match next_batch(consumer.as_mut(), &config, &shutdown)
            .await
        {
            Next::Batch(filled) => filled,
            Next::Stopped => break,
            Next::Rejoin => {
                tracing::warn!(
                    group = %config.group,
                    seconds = REJOIN_AFTER.as_secs(),
                    "every poll failed for a while; leaving the group and joining it again"
                );
                drop(consumer);
                let Some(fresh) = subscribe(bus.as_ref(), &config.group, &shutdown).await? else {
                    return Ok(());
                };
                consumer = fresh;
                continue;
            }
        };
        let stored = store_and_commit(
            consumer.as_mut(),
            store.as_ref(),
            &batch,
            &metrics,
            &shutdown,
        );
        match stored.await {
            Written::Stored => {}
            Written::Stopped => {
                tracing::info!(
                    readings = batch.len(),
                    "sink stopped during a store outage; the batch stays uncommitted"
                );
                return Ok(());
            }
            Written::Refused(e) => return Err(SinkError::StoreRefused(e)),
        }
        if stopping || shutdown.is_cancelled() {
            break;
        }
    }
    // Everything handed out is written by now; this retries a commit that failed.
    if let Err(e) = consumer.commit().await {
        tracing::warn!(error = %e, "sink final commit failed");
    }
    tracing::info!("sink stopped");
    Ok(())
}

/// One batch, and whether a shutdown ended its filling.
struct Filled {
    batch: Vec<iot_common::Reading>,
    stopping: bool,
}

/// Waits up to `max_wait` for the first readings, then takes what is ready up to
/// `max_batch`. Keeps what it has when a later poll fails or a shutdown comes; a poll cut
/// short by the shutdown loses nothing (polls are cancel-safe: the `Consumer` contract).
async fn fill_batch(
    consumer: &mut dyn Consumer,
    config: &SinkConfig,
    shutdown: &CancellationToken,
) -> Result<Filled, BusError> {
    let mut batch = Vec::new();
    while batch.len() < config.max_batch {
        let wait = if batch.is_empty() {
            config.max_wait
        } else {
            Duration::ZERO
        };
        let polled = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(Filled { batch, stopping: true }),
            polled = consumer.poll(config.max_batch - batch.len(), wait) => polled,
        };
        match polled {
            Ok(more) if more.is_empty() => break,
            Ok(more) => batch.extend(more),
            Err(e) if batch.is_empty() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, readings = batch.len(), "sink poll failed; writing what it has");
                break;
            }
        }
    }
    Ok(Filled {
        batch,
        stopping: false,
    })
}

/// What the sink does next.
enum Next {
    Batch(Filled),
    /// The shutdown came during a pause after a failed poll.
    Stopped,
    /// Every poll failed for [`REJOIN_AFTER`]: replace the consumer.
    Rejoin,
}

/// The next batch, polling again a second after a failed poll.
async fn next_batch(
    consumer: &mut dyn Consumer,
    config: &SinkConfig,
    shutdown: &CancellationToken,
) -> Next {
    let mut failing_since = None;
    loop {
        match fill_batch(consumer, config, shutdown).await {
            Ok(filled) => return Next::Batch(filled),
            Err(e) => {
                tracing::warn!(error = %e, "sink poll failed, retrying");
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= REJOIN_AFTER {
                    return Next::Rejoin;
                }
                if !sleep_unless(shutdown, Duration::from_secs(1)).await {
                    return Next::Stopped;
                }
            }
        }
    }
}

/// How a batch's write ended.
enum Written {
    Stored,
    /// The shutdown came before the write stuck.
    Stopped,
    Refused(StoreError),
}

/// Writes a batch and then commits it.
async fn store_and_commit(
    consumer: &mut dyn Consumer,
    store: &dyn Store,
    batch: &[iot_common::Reading],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Written {
    if batch.is_empty() {
        return Written::Stored;
    }
    match write_batch(store, batch, metrics, shutdown).await {
        Written::Stored => {}
        other => return other,
    }
    if let Err(e) = consumer.commit().await {
        // The batch is stored; it will be delivered again and the upsert absorbs it.
        tracing::warn!(error = %e, "sink commit failed");
    }
    tracing::debug!(readings = batch.len(), "sink wrote batch");
    Written::Stored
}

/// Joins the consumer group, retrying while the bus is away; `None` if the shutdown came
/// first. A configuration error is final.
pub(crate) async fn subscribe(
    bus: &dyn Bus,
    group: &str,
    shutdown: &CancellationToken,
) -> Result<Option<Box<dyn Consumer>>, BusError> {
    let mut backoff = backoff();
    loop {
        match bus.subscribe(group).await {
            Ok(c) => return Ok(Some(c)),
            Err(e @ BusError::Config(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, group, "cannot subscribe, retrying");
                if !backoff.pause(shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Writes `batch` until it sticks, with backoff, unless the shutdown comes first or the
/// store refuses it.
#[tracing::instrument(skip_all, fields(readings = batch.len()))]
async fn write_batch(
    store: &dyn Store,
    batch: &[iot_common::Reading],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Written {
    let mut backoff = backoff();
    loop {
        match store.write_readings(batch).await {
            Ok(()) => {
                metrics.sink_written.inc_by(batch.len() as u64);
                return Written::Stored;
            }
            Err(e @ StoreError::Refused(_)) => {
                metrics.sink_errors.inc();
                tracing::error!(error = %e, readings = batch.len(), "the store refuses the sink's writes; stopping");
                return Written::Refused(e);
            }
            Err(e) => {
                metrics.sink_errors.inc();
                tracing::warn!(error = %e, readings = batch.len(), "sink store write failed; retrying");
                if !backoff.pause(shutdown).await {
                    return Written::Stopped;
                }
            }
        }
    }
}
