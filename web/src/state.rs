//! What every web handler shares: the store, the regions and their map geometry, meter
//! authentication, the analyst token and sessions, the caches, and the [`AnalyticsPort`]
//! through which the console starts the analytics job and asks it SQL (in process or remote).

use std::sync::Arc;

use iot_common::Run;
use iot_common::auth::{MeterAuth, StaticToken};
use iot_common::problem::{ApiError, ErrorCode};
use iot_common::regions::Regions;
use iot_common::store::Store;
use iot_common::wire::{AnswerFormat, BackfillReport};

use crate::cache::{ProfileCache, Profiles, SummaryCache};
use crate::geometry::MapGeometry;
use crate::sessions::{RESIDENT_COOKIE, Sessions};

/// Why a recompute did not start or a query has no answer, as the analytics job said it:
/// the same code (and so the same status) whether the job runs in process or remote.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.words())]
pub struct AnalyticsError {
    pub code: ErrorCode,
    /// The request field at fault (a window's `from`, the `sql`), when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl AnalyticsError {
    /// The job or its store does not answer (or the analytics service is unreachable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            field: None,
            message: message.into(),
        }
    }

    /// Whether it is about what the analyst sent (or a run going already), not an outage.
    pub fn is_analysts(&self) -> bool {
        self.code.status().is_client_error()
    }

    /// The message as a page shows it: `field: message`.
    pub fn words(&self) -> String {
        match &self.field {
            Some(field) => format!("{field}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl From<ApiError> for AnalyticsError {
    fn from(e: ApiError) -> Self {
        Self {
            code: e.code,
            field: e.field,
            message: e.message,
        }
    }
}

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> Self {
        let error = ApiError::new(e.code, e.message);
        match e.field {
            Some(field) => error.field(field),
            None => error,
        }
    }
}

/// A SQL query's answer as the analytics job encodes it.
#[derive(Debug, Clone)]
pub struct QueryAnswer {
    pub content_type: String,
    pub body: Vec<u8>,
    /// Cut at the row limit.
    pub truncated: bool,
}

/// The analytics job, in process or remote: recomputes the regional profiles and answers
/// analysts' SQL.
/// A recompute as the console asks for it: a window of whole local days (`YYYY-MM-DD`, `to`
/// not included; both empty for the default window) and whether it replaces the map's
/// profiles. The analytics job validates it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecomputeRequest {
    pub from: Option<String>,
    pub to: Option<String>,
    pub publish: bool,
}

#[async_trait::async_trait]
pub trait AnalyticsPort: Send + Sync {
    async fn recompute(&self, request: &RecomputeRequest) -> Result<Run, AnalyticsError>;
    /// One read-only query, answered in `format`.
    async fn query(&self, sql: &str, format: AnswerFormat) -> Result<QueryAnswer, AnalyticsError>;
}

/// The simulated fleet, in process or remote: its backfill's progress (`None`: no fleet, or
/// it does not answer).
#[async_trait::async_trait]
pub trait FleetProgress: Send + Sync {
    async fn backfill(&self) -> Option<BackfillReport>;
}

#[derive(Clone)]
pub struct WebState {
    pub store: Arc<dyn Store>,
    pub regions: Arc<Regions>,
    pub geometry: Arc<MapGeometry>,
    /// Meter tokens and the revocations this process knows.
    pub auth: MeterAuth,
    /// The analyst token (`IOT_ANALYST_TOKEN`): operators and analysts present it on
    /// internal routes, or sign in to the console with it.
    pub analyst_token: StaticToken,
    /// The tariffs the estimator and a household's page price energy on.
    pub tariffs: Arc<crate::tariffs::Tariffs>,
    pub analytics: Option<Arc<dyn AnalyticsPort>>,
    /// The fleet whose backfill the status page follows, when there is one.
    pub fleet: Option<Arc<dyn FleetProgress>>,
    pub profiles: Arc<ProfileCache>,
    pub live: Arc<crate::cache::LiveCache>,
    pub summary: Arc<SummaryCache>,
    /// Signed-in analysts' console sessions.
    pub sessions: Arc<Sessions>,
    /// Signed-in residents' sessions, each holding its meter token's claims.
    pub residents: Arc<Sessions<crate::sessions::ResidentSession>>,
    /// The silent meters, as the watch task last found them.
    pub silence: Arc<crate::silence::SilenceWatch>,
    /// The metrics the internal listener serves (the silent-meters gauge is set here).
    pub metrics: Arc<iot_common::metrics::Metrics>,
    /// The OpenAPI documents web serves (none until [`WebState::with_api_docs`]).
    pub api_docs: Arc<ApiDocs>,
}

/// What [`WebState::live_parts`] reads.
pub struct LiveParts {
    pub slots: Arc<Vec<iot_common::live::LiveSlot>>,
    pub profiles: Profiles,
    pub registered: std::collections::HashMap<iot_common::domain::RegionCode, u64>,
}

impl LiveParts {
    /// The live views' inputs at `now`.
    pub fn inputs<'a>(
        &'a self,
        regions: &'a iot_common::regions::Regions,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::live::LiveInputs<'a> {
        crate::live::LiveInputs {
            regions,
            slots: &self.slots,
            profiles: &self.profiles,
            registered: &self.registered,
            now,
        }
    }
}

/// The platform's two OpenAPI documents as web serves them, pretty JSON made from the
/// services' route descriptions; empty when none was given.
#[derive(Debug, Clone, Default)]
pub struct ApiDocs {
    pub public: String,
    pub internal: String,
}

impl iot_common::http::AnalystSecret for WebState {
    fn analyst_token(&self) -> &StaticToken {
        &self.analyst_token
    }
}

impl WebState {
    pub fn new(
        store: Arc<dyn Store>,
        regions: Arc<Regions>,
        auth: MeterAuth,
        analyst_token: StaticToken,
        tariffs: crate::tariffs::Tariffs,
        analytics: Option<Arc<dyn AnalyticsPort>>,
    ) -> Self {
        Self {
            store,
            geometry: Arc::new(MapGeometry::new(&regions)),
            regions,
            auth,
            analyst_token,
            tariffs: Arc::new(tariffs),
            analytics,
            fleet: None,
            profiles: Arc::default(),
            live: Arc::default(),
            summary: Arc::default(),
            sessions: Arc::new(Sessions::new(false)),
            residents: Arc::new(Sessions::for_cookie(RESIDENT_COOKIE, "/me", false)),
            silence: Arc::default(),
            metrics: Arc::default(),
            api_docs: Arc::default(),
        }
    }

    /// Serves `docs` (made with the other services' parts) as the OpenAPI documents.
    pub fn with_api_docs(mut self, docs: ApiDocs) -> Self {
        self.api_docs = Arc::new(docs);
        self
    }

    /// Sets the silent-meters gauge in `metrics` (those the internal listener serves).
    pub fn with_metrics(mut self, metrics: Arc<iot_common::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// What the silent-meters watch (`silence::watch`) reads and writes.
    pub fn watched(&self) -> crate::silence::Watched {
        crate::silence::Watched {
            store: self.store.clone(),
            summary: self.summary.clone(),
            metrics: self.metrics.clone(),
            silence: self.silence.clone(),
        }
    }

    /// A meter is silent after `after` without a reading.
    pub fn silent_after(mut self, after: std::time::Duration) -> Self {
        self.silence = Arc::new(crate::silence::SilenceWatch::new(after));
        self
    }

    /// Follows `fleet`'s backfill on the status page.
    pub fn with_fleet(mut self, fleet: Arc<dyn FleetProgress>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Marks the console cookie `Secure` (for a deployment behind TLS).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.sessions = Arc::new(Sessions::new(secure));
        self.residents = Arc::new(Sessions::for_cookie(RESIDENT_COOKIE, "/me", secure));
        self
    }

    /// The current profiles by region code, at most a second old.
    #[tracing::instrument(skip_all)]
    pub async fn current_profiles(&self) -> Result<Profiles, iot_common::store::StoreError> {
        self.profiles.profiles(self.store.as_ref()).await
    }

    /// What the live views are made of: the window's live slots (at most a second old), the
    /// current profiles and the registered meters by region (from the status summary).
    pub async fn live_parts(&self) -> Result<LiveParts, iot_common::store::StoreError> {
        let slots = self.live.slots(self.store.as_ref()).await?;
        let profiles = self.current_profiles().await?;
        let (_, summary) = self.summary.get(&self.store).await?;
        Ok(LiveParts {
            slots,
            profiles,
            registered: crate::live::registered_by_region(&summary),
        })
    }

    /// A region's published profiles over past runs, newest first, at most `limit`: what
    /// the map showed, not an analyst's runs over other windows.
    pub async fn published_history(
        &self,
        region: &iot_common::domain::RegionCode,
        limit: usize,
    ) -> Result<Vec<iot_common::RegionProfile>, iot_common::store::StoreError> {
        // Unpublished runs are few; reading a few more than asked leaves room for them.
        let mut history = self.store.region_history(region, limit * 2).await?;
        history.retain(|p| p.published);
        history.truncate(limit);
        Ok(history)
    }

    /// The region file's attribution, as pages print it.
    pub fn attribution(&self) -> &str {
        self.regions.attribution().unwrap_or("see the region file")
    }
}
