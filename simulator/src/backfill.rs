//! Whether the fleet's backfill is in the store yet. The meter's 202 only says a reading is
//! on the bus; a batch job that must profile the whole history waits until the sink has
//! written it. The fleet checks its own meters' readings in the store and says what it found
//! on `GET /backfill` (200 once stored, 503 before), which `analytics serve` can wait on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use iot_common::domain::MeterId;
use iot_common::store::{MAX_READBACK, Store, StoreError};

use tokio_util::sync::CancellationToken;

/// The history the fleet posted before going live: `[from, to)` for every one of its meters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Readings acknowledged by the meter.
    pub readings: usize,
    /// How many readings of the window each meter posted: all its half hours, less what its
    /// faults dropped or still hold.
    pub per_meter: Vec<(MeterId, usize)>,
}

pub use iot_common::wire::{BackfillPhase, BackfillReport};

/// Shared between the fleet's tasks and its internal listener.
#[derive(Clone)]
pub struct BackfillStatus(Arc<Mutex<BackfillReport>>);

impl BackfillStatus {
    pub fn new(meters: usize) -> Self {
        Self(Arc::new(Mutex::new(BackfillReport {
            meters: meters as u64,
            ..BackfillReport::default()
        })))
    }

    pub fn report(&self) -> BackfillReport {
        match self.0.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The fleet starts posting `expected` readings.
    pub(crate) fn posting(&self, expected: usize) {
        self.update(|r| {
            r.readings_expected = expected as u64;
            r.started_at = Some(Utc::now());
        });
    }

    /// Everything the meter acknowledged is in the store (the all-in-one knows it from its
    /// bus log, with no need to read the readings back).
    pub fn stored(&self, backfill: &Backfill) {
        self.update(|r| {
            r.phase = BackfillPhase::Stored;
            r.meters_stored = r.meters;
            r.readings_posted = backfill.readings as u64;
            r.from = Some(backfill.from);
            r.to = Some(backfill.to);
        });
    }

    /// The meter has acknowledged `posted` readings so far.
    pub(crate) fn posted(&self, posted: usize) {
        self.update(|r| r.readings_posted = posted as u64);
    }

    fn update(&self, f: impl FnOnce(&mut BackfillReport)) {
        match self.0.lock() {
            Ok(mut r) => f(&mut r),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// `GET /backfill`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/backfill", get(report))
            .with_state(self.clone())
    }
}

async fn report(State(status): State<BackfillStatus>) -> Response {
    let report = status.report();
    let code = if report.phase == BackfillPhase::Stored {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report)).into_response()
}

/// Polls the store until every meter holds all the backfill readings it posted, or
/// `shutdown`. A store error is logged and the check tried again: it says nothing about the
/// readings.
pub async fn wait_until_stored(
    store: &dyn Store,
    backfill: Backfill,
    status: &BackfillStatus,
    shutdown: &CancellationToken,
) {
    status.update(|r| {
        r.phase = BackfillPhase::Storing;
        r.readings_posted = backfill.readings as u64;
        r.from = Some(backfill.from);
        r.to = Some(backfill.to);
    });
    let mut pending = backfill.per_meter.clone();
    loop {
        match still_missing(store, &pending, &backfill).await {
            Ok(still) => pending = still,
            Err(e) => tracing::warn!(error = %e, "cannot check the fleet backfill in the store"),
        }
        let left = pending.len();
        status.update(|r| r.meters_stored = r.meters.saturating_sub(left as u64));
        if pending.is_empty() {
            status.update(|r| r.phase = BackfillPhase::Stored);
            tracing::info!(readings = backfill.readings, "fleet backfill stored");
            return;
        }
        tracing::info!(meters_waiting = left, "fleet backfill not all stored yet");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// The meters that do not hold the readings they posted in the backfill window yet.
async fn still_missing(
    store: &dyn Store,
    meters: &[(MeterId, usize)],
    backfill: &Backfill,
) -> Result<Vec<(MeterId, usize)>, StoreError> {
    let mut still = Vec::new();
    for (meter, posted) in meters {
        let held = store
            .meter_readings(meter, backfill.from, backfill.to, MAX_READBACK)
            .await?
            .len();
        if held < (*posted).min(MAX_READBACK) {
            still.push((meter.clone(), *posted));
        }
    }
    Ok(still)
}
