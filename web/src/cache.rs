//! What pages read from the store, cached: the current profiles (at most once a second,
//! however many requests ask: they change only when a recompute finishes), the live slots
//! (at most once a second: the aggregator writes every few seconds) and the status page's
//! summary (refreshed in the background).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iot_common::RegionProfile;
use iot_common::domain::RegionCode;
use iot_common::live::LiveSlot;
use iot_common::store::{Store, StoreError, StoreSummary};
use tokio::sync::Mutex;

pub type Profiles = Arc<HashMap<RegionCode, RegionProfile>>;

const FRESH_FOR: Duration = Duration::from_secs(1);

/// A value read from the store at most once a second, however many requests ask.
pub struct FreshCache<T> {
    slot: Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> Default for FreshCache<T> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(None),
        }
    }
}

impl<T> FreshCache<T> {
    async fn get<F>(&self, read: F) -> Result<Arc<T>, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        // Holding the lock across the read makes concurrent misses wait for one store call.
        let mut slot = self.slot.lock().await;
        if let Some((at, v)) = slot.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return Ok(v.clone());
        }
        let fresh = Arc::new(read.await?);
        *slot = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}

pub type ProfileCache = FreshCache<HashMap<RegionCode, RegionProfile>>;

impl ProfileCache {
    /// Profiles by region code, at most a second old.
    pub async fn profiles(&self, store: &dyn Store) -> Result<Profiles, StoreError> {
        self.get(async {
            Ok(store
                .profiles()
                .await?
                .into_iter()
                .map(|p| (p.figures.region.clone(), p))
                .collect())
        })
        .await
    }
}

pub type LiveCache = FreshCache<Vec<LiveSlot>>;

impl LiveCache {
    /// The live slots of the window, at most a second old.
    pub async fn slots(&self, store: &dyn Store) -> Result<Arc<Vec<LiveSlot>>, StoreError> {
        self.get(store.live_slots(iot_common::live::window_start(chrono::Utc::now())))
            .await
    }
}

/// The status page's store summary. Computing it reads every meter (a full scan on
/// Cassandra, counts on SQLite), so a request never does: it gets the last summary, and a
/// stale one starts one refresh in the background. Only the very first request waits.
pub struct SummaryCache {
    slot: std::sync::RwLock<Option<(Instant, Arc<StoreSummary>)>>,
    first: Mutex<()>,
    refreshing: Arc<AtomicBool>,
    pub refresh_every: Duration,
}

impl Default for SummaryCache {
    fn default() -> Self {
        Self {
            slot: std::sync::RwLock::default(),
            first: Mutex::new(()),
            refreshing: Arc::default(),
            refresh_every: Duration::from_secs(30),
        }
    }
}

impl SummaryCache {
    fn current(&self) -> Option<(Instant, Arc<StoreSummary>)> {
        self.slot.read().ok().and_then(|s| s.clone())
    }

    fn put(&self, summary: StoreSummary) -> Arc<StoreSummary> {
        let summary = Arc::new(summary);
        if let Ok(mut s) = self.slot.write() {
            *s = Some((Instant::now(), summary.clone()));
        }
        summary
    }

    /// A summary taken now, which later `get`s answer with. While it is taken a stale `get`
    /// starts no second one (on Cassandra each is a scan of every meter-day).
    pub async fn refresh(&self, store: &Arc<dyn Store>) -> Result<Arc<StoreSummary>, StoreError> {
        let mine = !self.refreshing.swap(true, Ordering::AcqRel);
        let taken = store.summary().await.map(|summary| self.put(summary));
        if mine {
            self.refreshing.store(false, Ordering::Release);
        }
        taken
    }

    /// The summary and when it was taken.
    pub async fn get(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
    ) -> Result<(Instant, Arc<StoreSummary>), StoreError> {
        if let Some((at, summary)) = self.current() {
            if at.elapsed() >= self.refresh_every && !self.refreshing.swap(true, Ordering::AcqRel) {
                let (me, store) = (self.clone(), store.clone());
                tokio::spawn(async move {
                    match store.summary().await {
                        Ok(s) => {
                            me.put(s);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot refresh the status summary"),
                    }
                    me.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok((at, summary));
        }
        let _first = self.first.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let summary = self.put(store.summary().await?);
        Ok((Instant::now(), summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot_common::store::double::FaultyStoreDouble;
    use iot_common::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn many_requests_cost_one_summary_and_a_stale_one_refreshes_in_the_background()
    -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Unavailable(e.into()))?;
        let double = Arc::new(FaultyStoreDouble::new(SqliteStore::open(
            &SqliteStore::path_in(dir.path()),
        )?));
        let store: Arc<dyn Store> = double.clone();
        let cache = Arc::new(SummaryCache {
            refresh_every: Duration::from_millis(200),
            ..SummaryCache::default()
        });
        for _ in 0..100 {
            cache.get(&store).await?;
        }
        assert_eq!(double.summaries.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        for _ in 0..100 {
            cache.get(&store).await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            double.summaries.load(Ordering::SeqCst),
            2,
            "one background refresh"
        );
        Ok(())
    }
}
