//! The live aggregator (docs/live.md): a consumer group of its own on the readings topic that
//! keeps, per region and half-hour slot of the last 48 hours, the exact sum of the readings,
//! the distinct meters and the readings behind it ([`state`]). Every few seconds it upserts
//! what changed (the entries and the slots' figures) into the store, and only then commits
//! its positions; a restarted aggregator rebuilds each part's state from the store's entries
//! and reads the bus on from the committed position, where a repeat changes nothing. State is
//! kept per bus part, so members of the group share the topic's partitions as the sinks do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use iot_common::bus::{Bus, BusError, Consumer};
use iot_common::domain::{MAX_FUTURE_SKEW_S, MeterId, RegionCode};
use iot_common::live::{slot_of, window_start};
use iot_common::retry::sleep_unless;
use iot_common::store::{Store, StoreError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sink::{REJOIN_AFTER, backoff, subscribe};

pub mod state;

use state::PartState;

#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub group: String,
    /// How often what changed is written to the store (and the positions committed).
    pub flush_every: Duration,
    /// Most readings taken from the bus at once.
    pub max_batch: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            group: "live".into(),
            flush_every: Duration::from_secs(2),
            max_batch: 5_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(
        "the store refuses the live aggregator's writes, which no retry changes; its positions stay uncommitted: {0}"
    )]
    StoreRefused(StoreError),
}

/// How long an unregistered meter is taken as having no region before the store is asked
/// again.
const UNKNOWN_METER_RECHECK: Duration = Duration::from_secs(60);

/// Most unregistered meters remembered: tokens are per meter, so many strangers means a
/// leaked secret, and forgetting them costs only lookups.
const UNKNOWN_METERS_KEPT: usize = 100_000;

/// Each meter's region, read from the store once and kept: readings of a meter in no region
/// are left out, as the batch profile leaves them out.
struct MeterRegions {
    known: HashMap<MeterId, RegionCode>,
    unknown: HashMap<MeterId, Instant>,
}

impl MeterRegions {
    async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let known = store
            .meters()
            .await?
            .into_iter()
            .filter_map(|m| Some((m.meter_id, m.region?)))
            .collect();
        Ok(Self {
            known,
            unknown: HashMap::new(),
        })
    }

    async fn region_of(
        &mut self,
        store: &dyn Store,
        meter: &MeterId,
    ) -> Result<Option<RegionCode>, StoreError> {
        if let Some(region) = self.known.get(meter) {
            return Ok(Some(region.clone()));
        }
        if let Some(since) = self.unknown.get(meter)
            && since.elapsed() < UNKNOWN_METER_RECHECK
        {
            return Ok(None);
        }
        match store.meter(meter).await?.and_then(|m| m.region) {
            Some(region) => {
                self.unknown.remove(meter);
                self.known.insert(meter.clone(), region.clone());
                Ok(Some(region))
            }
            None => {
                if self.unknown.len() >= UNKNOWN_METERS_KEPT {
                    self.unknown.clear();
                }
                self.unknown.insert(meter.clone(), Instant::now());
                Ok(None)
            }
        }
    }
}

/// What one member of the group holds.
struct Aggregator {
    store: Arc<dyn Store>,
    regions: MeterRegions,
    parts: HashMap<u32, PartState>,
}

/// How a store step ended.
enum Step {
    Done,
    /// The shutdown came before the store answered.
    Stopped,
}

/// Runs `f` until it succeeds, with backoff, unless the shutdown comes first or the store
/// refuses.
async fn until_stored<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut f: F,
) -> Result<Option<T>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = backoff();
    loop {
        match f().await {
            Ok(v) => return Ok(Some(v)),
            Err(e @ StoreError::Refused(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, what, "live aggregator store step failed; retrying");
                if !backoff.pause(shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

impl Aggregator {
    /// Takes in a polled batch: a part seen for the first time is rebuilt from the store
    /// before its readings count.
    async fn take(
        &mut self,
        batch: Vec<(u32, iot_common::Reading)>,
        shutdown: &CancellationToken,
    ) -> Result<Step, StoreError> {
        let now = Utc::now();
        let start = window_start(now);
        // The meter refuses readings that start more than a few minutes ahead; anything
        // further ahead came from elsewhere and would sit in the state past any window.
        let newest = slot_of(now + chrono::TimeDelta::seconds(MAX_FUTURE_SKEW_S));
        for (part, reading) in batch {
            let slot = slot_of(reading.ts);
            if slot < start || slot > newest {
                continue;
            }
            if !self.parts.contains_key(&part) {
                let store = self.store.clone();
                let Some(entries) =
                    until_stored("rebuild part", shutdown, || store.live_entries(part, start))
                        .await?
                else {
                    return Ok(Step::Stopped);
                };
                tracing::info!(
                    part,
                    entries = entries.len(),
                    "live part rebuilt from the store"
                );
                self.parts.insert(part, PartState::rebuilt(entries, start));
            }
            let store = self.store.clone();
            let regions = &mut self.regions;
            let mut backoff = backoff();
            let region = loop {
                match regions.region_of(store.as_ref(), &reading.meter_id).await {
                    Ok(r) => break r,
                    Err(e @ StoreError::Refused(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "live aggregator cannot read a meter's region; retrying");
                        if !backoff.pause(shutdown).await {
                            return Ok(Step::Stopped);
                        }
                    }
                }
            };
            if let (Some(region), Some(state)) = (region, self.parts.get_mut(&part)) {
                state.apply(region, &reading, start);
            }
        }
        Ok(Step::Done)
    }

    /// Writes what changed in the parts this member still holds and forgets the others
    /// (their new owner rebuilds them from the store, and what this member had not written
    /// is delivered to it again). Then commits. Parts move only inside a poll, so the parts
    /// it writes are the parts the commit covers.
    async fn flush(
        &mut self,
        consumer: &mut dyn Consumer,
        shutdown: &CancellationToken,
    ) -> Result<Step, StoreError> {
        match consumer.parts() {
            Ok(Some(held)) => self.parts.retain(|part, _| held.contains(part)),
            Ok(None) => {}
            // Without knowing what it holds, it writes nothing now and tries again later.
            Err(e) => {
                tracing::warn!(error = %e, "live aggregator cannot tell its parts; flushing later");
                return Ok(Step::Done);
            }
        }
        let start = window_start(Utc::now());
        for (&part, state) in &mut self.parts {
            state.prune(start);
            if state.is_clean() {
                continue;
            }
            let (entries, slots) = state.pending();
            let store = self.store.clone();
            let written = until_stored("write live state", shutdown, || {
                store.put_live(part, &entries, &slots)
            })
            .await?;
            if written.is_none() {
                return Ok(Step::Stopped);
            }
            tracing::debug!(
                part,
                entries = entries.len(),
                slots = slots.len(),
                "live state written"
            );
            state.flushed();
        }
        if let Err(e) = consumer.commit().await {
            // Written already: what comes again changes nothing.
            tracing::warn!(error = %e, "live aggregator commit failed");
        }
        Ok(Step::Done)
    }
}

/// Runs until `shutdown`: on shutdown it writes what changed and commits, unless the store is
/// away, in which case its positions stay uncommitted and the next member reads them again.
pub async fn run_live(
    bus: Arc<dyn Bus>,
    store: Arc<dyn Store>,
    config: LiveConfig,
    shutdown: CancellationToken,
) -> Result<(), LiveError> {
    let regions = match until_stored("read meters", &shutdown, || {
        MeterRegions::load(store.as_ref())
    })
    .await
    {
        Ok(Some(regions)) => regions,
        Ok(None) => return Ok(()),
        Err(e) => return Err(LiveError::StoreRefused(e)),
    };
    let mut aggregator = Aggregator {
        store,
        regions,
        parts: HashMap::new(),
    };
    let Some(mut consumer) = subscribe(bus.as_ref(), &config.group, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(group = %config.group, "live aggregator consuming");
    let mut last_flush = Instant::now();
    let mut failing_since: Option<Instant> = None;
    loop {
        let polled = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            polled = consumer.poll_parts(config.max_batch, config.flush_every / 4) => polled,
        };
        match polled {
            Ok(batch) => {
                failing_since = None;
                match aggregator.take(batch, &shutdown).await {
                    Ok(Step::Done) => {}
                    Ok(Step::Stopped) => return Ok(()),
                    Err(e) => return Err(LiveError::StoreRefused(e)),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "live aggregator poll failed, retrying");
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= REJOIN_AFTER {
                    drop(consumer);
                    aggregator.parts.clear();
                    let Some(fresh) = subscribe(bus.as_ref(), &config.group, &shutdown).await?
                    else {
                        return Ok(());
                    };
                    consumer = fresh;
                    failing_since = None;
                } else if !sleep_unless(&shutdown, Duration::from_secs(1)).await {
                    break;
                }
            }
        }
        if last_flush.elapsed() >= config.flush_every {
            match aggregator.flush(consumer.as_mut(), &shutdown).await {
                Ok(Step::Done) => last_flush = Instant::now(),
                Ok(Step::Stopped) => return Ok(()),
                Err(e) => return Err(LiveError::StoreRefused(e)),
            }
        }
    }
    // Everything handed out is in the state: write it and commit, or leave it uncommitted.
    let stopped = CancellationToken::new();
    stopped.cancel();
    match aggregator.flush(consumer.as_mut(), &stopped).await {
        Ok(Step::Done) => tracing::info!("live aggregator stopped"),
        Ok(Step::Stopped) => {
            tracing::info!("live aggregator stopped with its last changes uncommitted")
        }
        Err(e) => return Err(LiveError::StoreRefused(e)),
    }
    Ok(())
}
