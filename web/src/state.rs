//! What every web handler shares: the store, the regions and their map geometry, meter
//! authentication, the analyst token and sessions, the caches, and the [`Recompute`] port
//! through which the console starts the analytics job (in process or remote).

use std::sync::Arc;

use iot_common::Run;
use iot_common::auth::{MeterAuth, StaticToken};
use iot_common::regions::Regions;
use iot_common::store::Store;

use crate::cache::{ProfileCache, Profiles, SummaryCache};
use crate::geometry::MapGeometry;
use crate::sessions::Sessions;

/// Why a recompute did not start.
#[derive(Debug, thiserror::Error)]
pub enum RecomputeError {
    /// One is running already (or the job refused for another reason of its own).
    #[error("{0}")]
    Refused(String),
    /// The job or its store does not answer (or the analytics service is unreachable).
    #[error("{0}")]
    Unavailable(String),
}

/// Starts a recompute of the regional profiles (the analytics job, in process or remote).
#[async_trait::async_trait]
pub trait Recompute: Send + Sync {
    async fn recompute(&self) -> Result<Run, RecomputeError>;
}

#[derive(Clone)]
pub struct WebState {
    pub store: Arc<dyn Store>,
    pub regions: Arc<Regions>,
    pub geometry: Arc<MapGeometry>,
    /// Meter tokens and the revocations this process knows.
    pub auth: MeterAuth,
    /// Operators and analysts present this on internal routes that change state.
    pub operator_token: StaticToken,
    /// Electricity unit price for the estimator, pence per kWh.
    pub unit_price_pence: f64,
    pub recompute: Option<Arc<dyn Recompute>>,
    pub profiles: Arc<ProfileCache>,
    pub summary: Arc<SummaryCache>,
    /// Signed-in analysts' console sessions.
    pub sessions: Arc<Sessions>,
}

impl WebState {
    pub fn new(
        store: Arc<dyn Store>,
        regions: Arc<Regions>,
        auth: MeterAuth,
        operator_token: StaticToken,
        unit_price_pence: f64,
        recompute: Option<Arc<dyn Recompute>>,
    ) -> Self {
        Self {
            store,
            geometry: Arc::new(MapGeometry::new(&regions)),
            regions,
            auth,
            operator_token,
            unit_price_pence,
            recompute,
            profiles: Arc::default(),
            summary: Arc::default(),
            sessions: Arc::new(Sessions::new(false)),
        }
    }

    /// Marks the console cookie `Secure` (for a deployment behind TLS).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.sessions = Arc::new(Sessions::new(secure));
        self
    }

    /// The current profiles by region code, at most a second old.
    #[tracing::instrument(skip_all)]
    pub async fn current_profiles(&self) -> Result<Profiles, iot_common::store::StoreError> {
        self.profiles.get(self.store.as_ref()).await
    }

    /// The region file's attribution, as pages print it.
    pub fn attribution(&self) -> &str {
        self.regions.attribution().unwrap_or("see the region file")
    }
}
