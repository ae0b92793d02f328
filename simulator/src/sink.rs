//! The sink: consumes readings from the bus in a consumer group and writes them to the store
//! in batches. Offsets are committed only after the store write succeeded; a store outage
//! pauses consumption and retries with backoff, so nothing is lost and nothing skipped.

use std::sync::Arc;
use std::time::Duration;

use iot_common::bus::{Bus, BusError, Consumer};
use iot_common::metrics::Metrics;
use iot_common::store::Store;
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

const MAX_BACKOFF: Duration = Duration::from_secs(10);

async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Runs until `shutdown`: what was written is committed before it returns.
pub async fn run_sink(
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    config: SinkConfig,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let mut backoff = Duration::from_millis(100);
    let mut consumer = loop {
        match bus.subscribe(&config.group).await {
            Ok(c) => break c,
            Err(e @ BusError::Config(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "sink cannot subscribe, retrying");
                if !pause(&shutdown, backoff).await {
                    return Ok(());
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    tracing::info!(group = %config.group, "sink consuming");
    while !shutdown.is_cancelled() {
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            b = fill_batch(consumer.as_mut(), &config) => b,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "sink poll failed, retrying");
                if !pause(&shutdown, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        // Write until it sticks. On shutdown the batch stays uncommitted and comes back on
        // the next start.
        let mut backoff = Duration::from_millis(100);
        loop {
            match store.write_readings(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    metrics.sink_errors.inc();
                    tracing::warn!(error = %e, readings = batch.len(), retry_in = ?backoff, "sink store write failed");
                    if !pause(&shutdown, backoff).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        metrics.sink_written.inc_by(batch.len() as u64);
        if let Err(e) = consumer.commit().await {
            // The batch is stored; it will be delivered again and the upsert absorbs it.
            tracing::warn!(error = %e, "sink commit failed");
        }
        tracing::debug!(readings = batch.len(), "sink wrote batch");
    }
    if let Err(e) = consumer.commit().await {
        tracing::warn!(error = %e, "sink final commit failed");
    }
    tracing::info!("sink stopped");
    Ok(())
}

/// Waits up to `max_wait` for the first readings, then takes what is ready up to `max_batch`.
async fn fill_batch(
    consumer: &mut dyn Consumer,
    config: &SinkConfig,
) -> Result<Vec<iot_common::Reading>, BusError> {
    let mut batch = consumer.poll(config.max_batch, config.max_wait).await?;
    while !batch.is_empty() && batch.len() < config.max_batch {
        let more = consumer
            .poll(config.max_batch - batch.len(), Duration::ZERO)
            .await?;
        if more.is_empty() {
            break;
        }
        batch.extend(more);
    }
    Ok(batch)
}
