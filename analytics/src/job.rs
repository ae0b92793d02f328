//! Recompute runs: each is recorded in the store (queued, running, succeeded or failed, with
//! timings, rows scanned, regions written and the error), at most one runs at a time, and a
//! failed run leaves the previous profiles in place (they are replaced in one write at the end).
//! "One at a time" holds across replicas too: a run holds a lease in the store (renewed while
//! it runs, released when it ends, expiring if its process dies), so of several `analytics
//! serve` processes on one store only one recomputes; the others answer busy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use iot_common::domain::Trigger;
use iot_common::domain::from_epoch;
use iot_common::store::{Lease, Store, StoreError};
use iot_common::{RegionProfile, Run, RunStatus};
use tokio_util::sync::CancellationToken;

use crate::aggregate::ProfileFigures;
use crate::local_time::{LocalClock, LocalDay};
use crate::plan::Scanned;
use crate::source::{Cluster, aggregate, context, register_store};

#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The regions' time zone: days and hours are local to it.
    pub tz: Tz,
    /// DataFusion partitions (and so aggregation tasks).
    pub threads: usize,
    /// Whole local days before today that a run covers.
    pub window_days: u32,
    /// Where runs compute: a cluster, or (`None`) this process.
    pub cluster: Option<Arc<dyn Cluster>>,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            tz: chrono_tz::Europe::London,
            threads: 2,
            window_days: 28,
            cluster: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("run {0} is in progress")]
    Busy(String),
    /// The window asked for cannot be computed; `field` is `from` or `to`.
    #[error("{field}: {reason}")]
    Window { field: &'static str, reason: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("computation: {0}")]
    Compute(#[from] datafusion::error::DataFusionError),
    /// Another replica holds the run lease now (this one's expired while it ran): its
    /// profiles are not written, so two runs never publish over each other.
    #[error("the run lease was lost to {0}; nothing was written")]
    LeaseLost(String),
}

/// A recompute as asked: whole local days `from` up to (not including) `to`, or the default
/// window; and whether its profiles replace the map's. A run over the default window always
/// does; one over a chosen window only with `publish`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunRequest {
    pub days: Option<(NaiveDate, NaiveDate)>,
    pub publish: bool,
}

impl RunRequest {
    /// The default window, published.
    pub fn default_window() -> Self {
        Self::default()
    }
}

/// `[from, to)` in UTC.
pub type Window = (DateTime<Utc>, DateTime<Utc>);

/// How far back a window may start: raw readings are kept this long.
const OLDEST_DAY: i64 = iot_common::domain::DEFAULT_MAX_READING_AGE_DAYS as i64;

fn local_day(d: NaiveDate) -> LocalDay {
    (d - NaiveDate::default()).num_days() as LocalDay
}

/// `[start of local day from, start of local day to)` in UTC.
pub fn days_window(from: NaiveDate, to: NaiveDate, tz: Tz) -> Window {
    let mut clock = LocalClock::new(tz);
    let (a, b) = (local_day(from), local_day(to));
    clock.cover((i64::from(a) - 2) * 86_400, (i64::from(b) + 2) * 86_400);
    (
        from_epoch(clock.day_start_utc(a)),
        from_epoch(clock.day_start_utc(b)),
    )
}

/// The UTC window and publish flag of `request` at `now`; a window that is not whole past
/// days within the retention is refused naming the field.
pub fn resolve(
    request: RunRequest,
    now: DateTime<Utc>,
    config: &JobConfig,
) -> Result<(Window, bool), JobError> {
    let default = window(now, config.window_days, config.tz);
    let Some((from, to)) = request.days else {
        return Ok((default, true));
    };
    let today = now.with_timezone(&config.tz).date_naive();
    let bad = |field, reason: String| JobError::Window { field, reason };
    if to > today {
        return Err(bad(
            "to",
            format!(
                "{to} is after today ({today}): a window is of whole past days, `to` not included"
            ),
        ));
    }
    if from >= to {
        return Err(bad("to", format!("{to} must be after `from` ({from})")));
    }
    let oldest = today - chrono::Days::new(OLDEST_DAY as u64);
    if from < oldest {
        return Err(bad(
            "from",
            format!("{from} is before {oldest}: readings are kept {OLDEST_DAY} days"),
        ));
    }
    let window = days_window(from, to, config.tz);
    Ok((window, request.publish || window == default))
}

/// The job and its single-flight guard.
pub struct Analytics {
    store: Arc<dyn Store>,
    config: JobConfig,
    current: Arc<Mutex<Option<String>>>,
}

/// Releases the single-flight slot however a run ends.
struct SingleFlightGuard {
    slot: Arc<Mutex<Option<String>>>,
    run_id: String,
}

impl Drop for SingleFlightGuard {
    fn drop(&mut self) {
        free_slot(&self.slot, &self.run_id);
    }
}

/// Frees the slot if `run_id` still holds it (a later run may hold it by then).
fn free_slot(slot: &Mutex<Option<String>>, run_id: &str) {
    if let Ok(mut c) = slot.lock()
        && c.as_deref() == Some(run_id)
    {
        *c = None;
    }
}

/// The store lease a run holds; its holder is the run id.
pub const RUN_LEASE: &str = "analytics-run";
/// How long a lease outlives its last renewal: a dead replica's lease frees this soon.
const LEASE_TTL: Duration = Duration::from_secs(60);
/// A running job renews its lease this often.
const LEASE_RENEW: Duration = Duration::from_secs(15);

/// Now, to the millisecond: what the store keeps of run times.
fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Sortable by time; the sub-second part tells apart runs created in the same second, and a
/// random tail those of replicas created in the same millisecond (the id is also the holder
/// of the run lease, so it must be unique across processes).
fn new_run_id(now: DateTime<Utc>) -> String {
    format!(
        "run-{}-{:06}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        now.timestamp_subsec_micros(),
        rand::random::<u16>()
    )
}

/// `[start of local day (today - days), start of local today)` in UTC.
pub fn window(now: DateTime<Utc>, days: u32, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let mut clock = LocalClock::new(tz);
    let t = now.timestamp();
    clock.cover(t - (i64::from(days) + 2) * 86_400, t + 86_400);
    let (today, _) = clock.day_hour(t);
    let from = clock.day_start_utc(today - days as i32);
    let to = clock.day_start_utc(today);
    (from_epoch(from), from_epoch(to))
}

pub fn to_profile(
    figures: ProfileFigures,
    run_id: &str,
    window: Window,
    computed_at: DateTime<Utc>,
    published: bool,
) -> RegionProfile {
    RegionProfile {
        run_id: run_id.to_owned(),
        window_from: window.0,
        window_to: window.1,
        computed_at,
        published,
        figures,
    }
}

impl Analytics {
    pub fn new(store: Arc<dyn Store>, config: JobConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            config,
            current: Arc::new(Mutex::new(None)),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Takes the single-flight slot and records a queued run over the window asked for.
    async fn claim(
        &self,
        trigger: Trigger,
        request: RunRequest,
    ) -> Result<(Run, SingleFlightGuard), JobError> {
        let now = now_ms();
        let (window, published) = resolve(request, now, &self.config)?;
        let run_id = new_run_id(now);
        {
            let mut current = self
                .current
                .lock()
                .map_err(|_| JobError::Busy("unknown (guard poisoned)".into()))?;
            if let Some(id) = current.as_ref() {
                return Err(JobError::Busy(id.clone()));
            }
            *current = Some(run_id.clone());
        }
        let slot = SingleFlightGuard {
            slot: self.current.clone(),
            run_id: run_id.clone(),
        };
        // Across replicas: the store's lease. Refused, the local slot is freed on return.
        if let Lease::HeldBy(holder) = self
            .store
            .acquire_lease(RUN_LEASE, &run_id, LEASE_TTL)
            .await?
        {
            return Err(JobError::Busy(holder));
        }
        let run = Run {
            window_from: Some(window.0),
            window_to: Some(window.1),
            published,
            ..Run::queued(run_id, trigger, now)
        };
        if let Err(e) = self.store.put_run(&run).await {
            self.release(&run.run_id).await;
            return Err(e.into());
        }
        Ok((run, slot))
    }

    /// Runs now and waits for the outcome (CLI, start-up, schedule).
    pub async fn run_now(&self, trigger: Trigger, request: RunRequest) -> Result<Run, JobError> {
        let (run, _slot) = self.claim(trigger, request).await?;
        self.execute(run).await
    }

    /// Starts a run in the background and returns its queued record at once (HTTP API).
    pub async fn trigger(
        self: &Arc<Self>,
        trigger: Trigger,
        request: RunRequest,
    ) -> Result<Run, JobError> {
        let (run, slot) = self.claim(trigger, request).await?;
        let this = self.clone();
        let queued = run.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = this.execute(run).await {
                tracing::error!(error = %e, "run could not be recorded");
            }
        });
        Ok(queued)
    }

    async fn execute(&self, mut run: Run) -> Result<Run, JobError> {
        let started = std::time::Instant::now();
        let window = match (run.window_from, run.window_to) {
            (Some(from), Some(to)) => (from, to),
            _ => window(Utc::now(), self.config.window_days, self.config.tz),
        };
        run.status = RunStatus::Running;
        run.started_at = Some(now_ms());
        run.window_from = Some(window.0);
        run.window_to = Some(window.1);
        if let Err(e) = self.store.put_run(&run).await {
            self.release(&run.run_id).await;
            return Err(e.into());
        }
        tracing::info!(run = %run.run_id, trigger = %run.trigger, from = %window.0, to = %window.1, "run started");

        let scanned = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let progress = self.report_progress(run.clone(), scanned.clone(), stop.clone());
        let lost = CancellationToken::new();
        let lease = self.keep_lease(run.run_id.clone(), stop.clone(), lost.clone());
        let outcome = self
            .compute(&run.run_id, window, run.published, scanned.clone(), &lost)
            .await;
        stop.cancel();
        // Its last write must not land after the final record.
        let _ = progress.await;
        let _ = lease.await;

        run.finished_at = Some(now_ms());
        run.rows_scanned = scanned.load(Ordering::Relaxed);
        match outcome {
            Ok(profiles) => {
                run.regions_written = profiles.len() as u64;
                run.status = RunStatus::Succeeded;
                tracing::info!(
                    run = %run.run_id,
                    rows = run.rows_scanned,
                    regions = run.regions_written,
                    seconds = started.elapsed().as_secs_f64(),
                    "run succeeded"
                );
            }
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_string());
                tracing::error!(run = %run.run_id, error = %e, "run failed; previous profiles kept");
            }
        }
        // Free before the final record: whoever sees the run finished may start the next.
        free_slot(&self.current, &run.run_id);
        self.release(&run.run_id).await;
        self.store.put_run(&run).await?;
        Ok(run)
    }

    /// Gives the lease up; if that fails it expires by itself.
    async fn release(&self, run_id: &str) {
        if let Err(e) = self.store.release_lease(RUN_LEASE, run_id).await {
            tracing::warn!(error = %e, "cannot release the run lease; it expires in {} s", LEASE_TTL.as_secs());
        }
    }

    /// Renews the run's lease until `stop`, so a long run keeps it. Cancels `lost` when
    /// another replica holds it, or when no renewal got through for a whole TTL (the lease
    /// may have expired and been taken): the run then stops without writing.
    fn keep_lease(
        &self,
        run_id: String,
        stop: CancellationToken,
        lost: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(LEASE_RENEW) => {}
                }
                match store.acquire_lease(RUN_LEASE, &run_id, LEASE_TTL).await {
                    Ok(Lease::Acquired) => renewed = tokio::time::Instant::now(),
                    Ok(Lease::HeldBy(other)) => {
                        tracing::error!(run = %run_id, holder = %other, "the run lease was lost to another replica; stopping the run");
                        lost.cancel();
                        return;
                    }
                    Err(e) if renewed.elapsed() >= LEASE_TTL => {
                        tracing::error!(run = %run_id, error = %e, "the run lease could not be renewed for its whole TTL; stopping the run");
                        lost.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the run lease"),
                }
            }
        })
    }

    /// Renews the lease once more right before a run writes: the proof that no other
    /// replica took it while this one computed (a renewal every 15 s leaves a gap).
    async fn confirm_lease(&self, run_id: &str, lost: &CancellationToken) -> Result<(), JobError> {
        if lost.is_cancelled() {
            return Err(JobError::LeaseLost("another replica".into()));
        }
        match self
            .store
            .acquire_lease(RUN_LEASE, run_id, LEASE_TTL)
            .await?
        {
            Lease::Acquired => Ok(()),
            Lease::HeldBy(other) => Err(JobError::LeaseLost(other)),
        }
    }

    async fn compute(
        &self,
        run_id: &str,
        window: (DateTime<Utc>, DateTime<Utc>),
        publish: bool,
        scanned: Arc<AtomicU64>,
        lost: &CancellationToken,
    ) -> Result<Vec<RegionProfile>, JobError> {
        let cluster = self.config.cluster.as_ref();
        let ctx = context(cluster, self.config.threads).await?;
        // Store reads wait on the network more than on the CPU, so more partitions than
        // threads keep both busy.
        let parts = self.config.threads.max(1) * 4;
        register_store(&ctx, self.store.clone(), window.0, window.1, parts)?;
        let figures = tokio::select! {
            figures = aggregate(&ctx, self.config.tz, None, Scanned(scanned.clone())) => figures?,
            () = lost.cancelled() => return Err(JobError::LeaseLost("another replica".into())),
        };
        if cluster.is_some() {
            // The executors counted what they read; this process saw only the answers.
            scanned.store(figures.iter().map(|f| f.readings).sum(), Ordering::Relaxed);
        }
        let computed_at = Utc::now();
        let profiles: Vec<RegionProfile> = figures
            .into_iter()
            .map(|f| to_profile(f, run_id, window, computed_at, publish))
            .collect();
        self.confirm_lease(run_id, lost).await?;
        // History first: a published run is always in it.
        self.store.put_run_profiles(&profiles).await?;
        if publish {
            self.store.put_profiles(&profiles).await?;
        }
        Ok(profiles)
    }

    /// Every two seconds, logs and records how many rows the run has scanned.
    fn report_progress(
        &self,
        mut run: Run,
        scanned: Arc<AtomicU64>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                run.rows_scanned = scanned.load(Ordering::Relaxed);
                tracing::info!(run = %run.run_id, rows = run.rows_scanned, "run in progress");
                if let Err(e) = store.put_run(&run).await {
                    tracing::warn!(error = %e, "cannot record run progress");
                }
            }
        })
    }

    /// Runs every `every` until `shutdown`; a run still going when the next is due is
    /// left to finish (the due one is skipped).
    pub async fn schedule(
        self: Arc<Self>,
        first: Duration,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut wait = first;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = every;
            match self
                .run_now(Trigger::Schedule, RunRequest::default_window())
                .await
            {
                Ok(_) | Err(JobError::Busy(_)) => {}
                Err(e) => tracing::error!(error = %e, "scheduled run could not be recorded"),
            }
        }
    }
}
