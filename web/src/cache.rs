//! The current profiles, read from the store at most once a second however many requests
//! ask: they change only when a recompute finishes, and every page and API answer needs them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iot_common::RegionProfile;
use iot_common::store::{Store, StoreError};
use tokio::sync::Mutex;

pub type Profiles = Arc<HashMap<String, RegionProfile>>;

const FRESH_FOR: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct ProfileCache {
    slot: Mutex<Option<(Instant, Profiles)>>,
}

impl ProfileCache {
    /// Profiles by region code, at most a second old.
    pub async fn get(&self, store: &dyn Store) -> Result<Profiles, StoreError> {
        // Holding the lock across the read makes concurrent misses wait for one store call.
        let mut slot = self.slot.lock().await;
        if let Some((at, p)) = slot.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return Ok(p.clone());
        }
        let fresh: Profiles = Arc::new(
            store
                .profiles()
                .await?
                .into_iter()
                .map(|p| (p.figures.region.clone(), p))
                .collect(),
        );
        *slot = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}
