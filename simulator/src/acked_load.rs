//! [`AckedLoad`]: meters posting batches to the meter API as fast as it takes them, keeping
//! every reading it answered 202 for, so a test can stop processes under load ([`terminate`])
//! and then check that each of those readings is stored with its value
//! ([`assert_all_stored`]). A refused or unanswered batch is posted again, as a real meter
//! would. Built with the `test-support` feature.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use iot_common::Reading;
use iot_common::auth::MeterTokens;
use iot_common::domain::MeterId;
use iot_common::store::{Store, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where the load posts: a base URL that may change while it runs (a restarted process on
/// another port).
#[derive(Clone, Default)]
pub struct Target(Arc<RwLock<String>>);

impl Target {
    pub fn new(base_url: &str) -> Self {
        let t = Self::default();
        t.set(base_url);
        t
    }

    pub fn set(&self, base_url: &str) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = base_url.to_owned();
    }

    /// The ingest URL at the current base.
    pub fn url(&self) -> String {
        format!(
            "{}/api/v1/readings",
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        )
    }
}

pub struct AckedLoad {
    accepted: Arc<Mutex<Vec<Reading>>>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// The value meter `m` reports for slot `slot`: distinct enough that a mixed-up reading shows.
fn kwh(m: usize, slot: i64) -> f64 {
    ((m as i64 * 7_919 + slot * 104_729) % 10_000) as f64 / 1_000.0
}

impl AckedLoad {
    /// Starts `meters` meters (`{prefix}000`, ...) posting `batch` half-hourly readings per
    /// request, from 700 days ago onwards (inside the meter's accepted window), with tokens
    /// issued by `tokens`.
    pub fn start(
        target: Target,
        tokens: &MeterTokens,
        prefix: &str,
        meters: usize,
        batch: usize,
    ) -> Self {
        let start = (Utc::now() - TimeDelta::days(700))
            .duration_trunc(TimeDelta::minutes(30))
            .unwrap_or_else(|_| Utc::now() - TimeDelta::days(700));
        let (accepted, stop) = (Arc::new(Mutex::new(Vec::new())), CancellationToken::new());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        let mut tasks = JoinSet::new();
        for m in 0..meters {
            let id = MeterId::parse(format!("{prefix}{m:03}"))
                .unwrap_or_else(|e| panic!("test meter prefix `{prefix}`: {e}"));
            let token = tokens.issue(&id);
            let (target, client) = (target.clone(), client.clone());
            let (accepted, stop) = (accepted.clone(), stop.clone());
            tasks.spawn(async move {
                let mut slot = 0i64;
                while !stop.is_cancelled() {
                    let readings = meter_batch(&id, m, start, slot, batch);
                    if readings.last().is_none_or(|r| r.ts > Utc::now()) {
                        break;
                    }
                    let posted = client
                        .post(target.url())
                        .bearer_auth(&token)
                        .json(&readings)
                        .send()
                        .await;
                    match posted {
                        Ok(res) if res.status().as_u16() == 202 => {
                            accepted
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .extend(readings);
                            slot += batch as i64;
                        }
                        // Refused (503 while the bus is away) or no answer (the process
                        // stopped): post the same batch again shortly.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            });
        }
        Self {
            accepted,
            stop,
            tasks,
        }
    }

    /// How many readings the meter has answered 202 for so far.
    pub fn accepted(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Stops posting (a request in flight is abandoned: not counted) and returns every
    /// reading answered 202.
    pub async fn stop(mut self) -> Vec<Reading> {
        self.stop.cancel();
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        std::mem::take(&mut *self.accepted.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn meter_batch(id: &MeterId, m: usize, start: DateTime<Utc>, from: i64, n: usize) -> Vec<Reading> {
    (from..from + n as i64)
        .map(|slot| Reading {
            meter_id: id.clone(),
            ts: start + TimeDelta::minutes(30 * slot),
            kwh: kwh(m, slot),
            interval_s: 1800,
        })
        .collect()
}

/// How many readings `store` holds (0 while it cannot say): for tests.
pub async fn stored(store: &dyn Store) -> u64 {
    store.summary().await.map_or(0, |s| s.readings)
}

/// Polls the number of stored readings until `done` accepts it, and panics after
/// `patience` naming `what`: for tests.
pub async fn wait_stored(
    store: &dyn Store,
    what: &str,
    patience: Duration,
    done: impl Fn(u64) -> bool,
) -> u64 {
    let until = tokio::time::Instant::now() + patience;
    loop {
        let n = stored(store).await;
        if done(n) {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: only {n} readings stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `store` to hold every reading of `accepted` with its value, for as long as the
/// sink catches up (a backlog after an outage can take minutes on a loaded machine), and
/// panics naming what it lacks once `patience` passes with no missing reading arriving: a
/// reading that is lost never arrives, however long the wait. For tests.
pub async fn assert_all_stored(store: &dyn Store, accepted: &[Reading], patience: Duration) {
    let mut fewest = usize::MAX;
    let mut progress_at = tokio::time::Instant::now();
    loop {
        let missing = missing_from(store, accepted)
            .await
            .unwrap_or_else(|e| panic!("read the store: {e}"));
        if missing.is_empty() {
            return;
        }
        if missing.len() < fewest {
            fewest = missing.len();
            progress_at = tokio::time::Instant::now();
        }
        assert!(
            progress_at.elapsed() < patience,
            "{} of {} readings answered 202 are not stored with their value, and none \
             arrived for {patience:?}, e.g. {:?}",
            missing.len(),
            accepted.len(),
            missing.first()
        );
        // Each check reads every accepted meter's readings back: leave the sink the time.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The readings of `accepted` that `store` lacks or holds with another value.
async fn missing_from(store: &dyn Store, accepted: &[Reading]) -> Result<Vec<Reading>, StoreError> {
    let meters: BTreeSet<&MeterId> = accepted.iter().map(|r| &r.meter_id).collect();
    let (Some(from), Some(to)) = (
        accepted.iter().map(|r| r.ts).min(),
        accepted.iter().map(|r| r.ts).max(),
    ) else {
        return Ok(Vec::new());
    };
    let mut stored: HashMap<(MeterId, DateTime<Utc>), f64> = HashMap::new();
    for meter in meters {
        let readings = store
            .meter_readings(meter, from, to + TimeDelta::seconds(1), usize::MAX)
            .await?;
        stored.extend(readings.into_iter().map(|r| ((r.meter_id, r.ts), r.kwh)));
    }
    Ok(accepted
        .iter()
        .filter(|r| stored.get(&(r.meter_id.clone(), r.ts)) != Some(&r.kwh))
        .cloned()
        .collect())
}

/// Sends SIGTERM, the normal stop, and waits up to `patience` for a clean exit; panics if the
/// process does not exit, or exits with a failure: for tests.
pub async fn terminate(child: &mut std::process::Child, patience: Duration) {
    // The shell's builtin `kill`: no dependency on procps.
    let killed = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap_or_else(|e| panic!("kill -TERM: {e}"));
    assert!(killed.success());
    let until = tokio::time::Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "still running {patience:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
