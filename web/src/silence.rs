//! Silent meters: registered meters with no reading for a stated time (default 6 hours),
//! found from the store summary's newest reading per meter. A watch task refreshes the
//! summary and the list together on the summary's cadence and sets the `iot_meters_silent`
//! gauge, so `/status`, `/metrics`, the console and the JSON route agree within one refresh.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use iot_common::domain::{Meter, MeterId, RegionCode};
use iot_common::store::StoreError;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use iot_common::metrics::Metrics;
use iot_common::store::Store;

use crate::cache::SummaryCache;

/// A meter is silent after this long without a reading.
pub const DEFAULT_SILENT_AFTER: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SilentMeter {
    pub meter_id: MeterId,
    pub region: Option<RegionCode>,
    /// Its newest reading's start; `None` for a meter that never reported.
    pub last_reading: Option<DateTime<Utc>>,
}

/// The silent meters as of the last refresh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SilenceReport {
    /// When the list was made; `None` before the first refresh.
    pub as_of: Option<DateTime<Utc>>,
    pub silent_after_hours: f64,
    /// Longest silent first.
    pub meters: Vec<SilentMeter>,
}

/// The registered meters silent at `now`: no reading since `now - after`, or none at all and
/// registered before then (a meter registered a minute ago is not silent yet).
pub fn silent_meters(
    meters: &[Meter],
    last_reading: &[(MeterId, DateTime<Utc>)],
    now: DateTime<Utc>,
    after: Duration,
) -> Vec<SilentMeter> {
    let since = now - chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let last: std::collections::HashMap<&MeterId, DateTime<Utc>> =
        last_reading.iter().map(|(m, t)| (m, *t)).collect();
    let mut silent: Vec<SilentMeter> = meters
        .iter()
        .filter_map(|m| {
            let newest = last.get(&m.meter_id).copied();
            let quiet = match newest {
                Some(t) => t < since,
                None => m.registered_at < since,
            };
            quiet.then(|| SilentMeter {
                meter_id: m.meter_id.clone(),
                region: m.region.clone(),
                last_reading: newest,
            })
        })
        .collect();
    silent.sort_by(|a, b| {
        a.last_reading
            .cmp(&b.last_reading)
            .then_with(|| a.meter_id.cmp(&b.meter_id))
    });
    silent
}

/// The current report, shared by the pages and the watch that refreshes it.
#[derive(Debug)]
pub struct SilenceWatch {
    report: RwLock<Arc<SilenceReport>>,
    pub after: Duration,
}

impl Default for SilenceWatch {
    fn default() -> Self {
        Self::new(DEFAULT_SILENT_AFTER)
    }
}

impl SilenceWatch {
    pub fn new(after: Duration) -> Self {
        Self {
            report: RwLock::new(Arc::new(SilenceReport {
                silent_after_hours: after.as_secs_f64() / 3600.0,
                ..SilenceReport::default()
            })),
            after,
        }
    }

    pub fn report(&self) -> Arc<SilenceReport> {
        match self.report.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn put(&self, report: SilenceReport) {
        match self.report.write() {
            Ok(mut r) => *r = Arc::new(report),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(report),
        }
    }
}

/// What the watch reads and where it writes: the web state's store, summary cache, metrics
/// and report.
#[derive(Clone)]
pub struct Watched {
    pub store: Arc<dyn Store>,
    pub summary: Arc<SummaryCache>,
    pub metrics: Arc<Metrics>,
    pub silence: Arc<SilenceWatch>,
}

/// Takes a fresh summary (which the status page then shows too), finds the silent meters
/// and sets the gauge.
pub async fn refresh(w: &Watched) -> Result<Arc<SilenceReport>, StoreError> {
    let summary = w.summary.refresh(&w.store).await?;
    let meters = w.store.meters().await?;
    let now = Utc::now();
    let after = w.silence.after;
    let report = SilenceReport {
        as_of: Some(now),
        silent_after_hours: after.as_secs_f64() / 3600.0,
        meters: silent_meters(&meters, &summary.last_reading_by_meter, now, after),
    };
    w.metrics.meters_silent.set(report.meters.len() as i64);
    w.silence.put(report);
    Ok(w.silence.report())
}

/// Refreshes the report every summary period until `shutdown`; a store error keeps the
/// last report and is tried again next period.
pub async fn watch(
    w: Watched,
    shutdown: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    loop {
        if let Err(e) = refresh(&w).await {
            tracing::warn!(error = %e, "cannot refresh the silent meters");
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(w.summary.refresh_every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(id: &str, registered: DateTime<Utc>) -> Meter {
        Meter {
            meter_id: id.parse().unwrap_or_else(|e| panic!("{e}")),
            region: Some("E09000001".parse().unwrap_or_else(|e| panic!("{e}"))),
            lat: None,
            lon: None,
            household_size: None,
            dwelling: None,
            registered_at: registered,
        }
    }

    #[test]
    fn silent_is_no_reading_for_the_stated_time_or_none_since_registering_long_ago() {
        let now = Utc::now();
        let h = |n: i64| now - chrono::Duration::hours(n);
        let meters = [
            meter("quiet", h(100)),
            meter("fresh", h(100)),
            meter("never", h(100)),
            meter("new", h(1)),
        ];
        let last = [
            ("quiet".parse().unwrap_or_else(|e| panic!("{e}")), h(7)),
            ("fresh".parse().unwrap_or_else(|e| panic!("{e}")), h(5)),
        ];
        let silent = silent_meters(&meters, &last, now, DEFAULT_SILENT_AFTER);
        let ids: Vec<&str> = silent.iter().map(|s| s.meter_id.as_str()).collect();
        assert_eq!(ids, ["never", "quiet"], "longest silent first");
        assert_eq!(silent[1].last_reading, Some(h(7)));
    }
}
