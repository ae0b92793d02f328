//! The fleet: N virtual households placed at random points inside the regions, registered in
//! the store, posting their readings to the meter over HTTP with their own tokens. It
//! backfills history as fast as the meter takes it, then posts live: each interval once it
//! has ended, optionally replaying the last days at an accelerated clock first.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use chrono_tz::Tz;
use iot_common::Reading;
use iot_common::auth::MeterTokens;
use iot_common::domain::{DEFAULT_INTERVAL_S, IdError, Meter, MeterId, RegionCode, from_epoch};
use iot_common::metrics::Metrics;
use iot_common::regions::Regions;
use iot_common::retry::{Backoff, sleep_unless};
use iot_common::store::{Store, StoreError};
use rand::rngs::Xoshiro256PlusPlus as SeededRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backfill::{Backfill, BackfillStatus};
use crate::faults::{Fate, FaultRates, Faults};
use crate::household::{Household, draw_household};

const DAY_S: i64 = 86_400;
/// Most intervals one request carries when catching up (a week of half hours).
const MAX_SLOTS_PER_POST: usize = 336;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub meters: usize,
    /// Days of history posted as fast as the meter takes them.
    pub backfill_days: u32,
    /// The last days before now, replayed at `speed` times real time after the backfill.
    pub replay_days: u32,
    pub speed: f64,
    pub seed: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Meter ids are this prefix and a six-digit number.
    pub id_prefix: String,
    /// Base URL of the meter's external listener, e.g. `http://127.0.0.1:8080`.
    pub meter_url: String,
    pub tz: Tz,
    /// How the meters fail ([`FaultRates::OFF`]: never).
    pub faults: FaultRates,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            meters: 300,
            backfill_days: 21,
            replay_days: 0,
            speed: 1.0,
            seed: 42,
            concurrency: 8,
            id_prefix: "MAC".into(),
            meter_url: "http://127.0.0.1:8080".into(),
            tz: chrono_tz::Europe::London,
            faults: FaultRates::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("region {0} has no point that can be sampled")]
    Placement(RegionCode),
    #[error("fleet meter id (check IOT_FLEET_PREFIX): {0}")]
    MeterId(#[from] IdError),
    #[error("cannot register meters: {0}")]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("the meter refused readings of {meter} with {status}: {body}")]
    Refused {
        meter: MeterId,
        status: u16,
        body: String,
    },
    #[error("stopped")]
    Cancelled,
}

pub struct Fleet {
    households: Arc<Vec<Household>>,
    config: FleetConfig,
    faults: Faults,
    /// How far the backfill has come, for `GET /backfill` and the status page.
    status: BackfillStatus,
}

impl Fleet {
    /// Places households round-robin over the regions (so every region has meters), each at
    /// a random point inside its region.
    pub fn build(regions: &Regions, config: FleetConfig) -> Result<Self, FleetError> {
        let mut rng = SeededRng::seed_from_u64(config.seed);
        let all: Vec<_> = regions.iter().collect();
        let mut households = Vec::with_capacity(config.meters);
        for i in 0..config.meters {
            let region = all[i % all.len()];
            let (lat, lon) = regions
                .sample_point(region, &mut rng)
                .ok_or_else(|| FleetError::Placement(region.code.clone()))?;
            let id = MeterId::parse(format!("{}{:06}", config.id_prefix, i + 1))?;
            households.push(draw_household(&mut rng, id, &region.code, lat, lon));
        }
        Ok(Self {
            status: BackfillStatus::new(households.len()),
            households: Arc::new(households),
            faults: Faults::new(config.faults),
            config,
        })
    }

    pub fn households(&self) -> &[Household] {
        &self.households
    }

    /// The backfill's progress, updated as the fleet posts (and, where the fleet checks the
    /// store, as the sink stores it).
    pub fn backfill_status(&self) -> BackfillStatus {
        self.status.clone()
    }

    /// Registers every household's meter with its region, location and attributes.
    pub async fn register(&self, store: &dyn Store) -> Result<(), FleetError> {
        let now = Utc::now();
        let meters: Vec<Meter> = self
            .households
            .iter()
            .map(|h| Meter {
                meter_id: h.meter_id.clone(),
                region: Some(h.region.clone()),
                lat: Some(h.lat),
                lon: Some(h.lon),
                household_size: Some(h.size),
                dwelling: Some(h.dwelling),
                registered_at: now,
            })
            .collect();
        for chunk in meters.chunks(1000) {
            store.upsert_meters(chunk).await?;
        }
        Ok(())
    }

    /// Backfills, then posts live until `shutdown`; `backfilled` hears when the backfill has
    /// been acknowledged by the meter.
    pub async fn run(
        &self,
        tokens: MeterTokens,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        backfilled: Option<tokio::sync::oneshot::Sender<Backfill>>,
    ) -> Result<(), FleetError> {
        let poster = Arc::new(Poster::new(
            &self.config.meter_url,
            tokens,
            metrics.clone(),
        )?);
        metrics.fleet_meters.set(self.households.len() as i64);
        let interval = i64::from(DEFAULT_INTERVAL_S);
        let now = Utc::now().timestamp();
        let frontier = now - now.rem_euclid(interval);
        let replay_start = frontier - i64::from(self.config.replay_days) * DAY_S;
        let backfill_start = replay_start - i64::from(self.config.backfill_days) * DAY_S;

        let days = self.config.backfill_days;
        let per_meter = self.backfill_expected(backfill_start, replay_start);
        let expected: usize = per_meter.iter().map(|(_, n)| n).sum();
        tracing::info!(
            meters = self.households.len(),
            days,
            readings = expected,
            faults = %self.faults.rates(),
            "fleet backfill starting"
        );
        self.status.posting(expected);
        let started = std::time::Instant::now();
        let mut posted = 0usize;
        for day in 0..i64::from(days) {
            let from = backfill_start + day * DAY_S;
            let to = (from + DAY_S).min(replay_start);
            posted += self
                .post_slots(&poster, from, to, backfill_start, &shutdown)
                .await?;
            self.status.posted(posted);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                day = day + 1,
                of = days,
                readings = posted,
                per_second = (posted as f64 / secs).round(),
                "fleet backfill progress"
            );
        }
        if days > 0 {
            tracing::info!(
                readings = posted,
                seconds = started.elapsed().as_secs_f64(),
                "fleet backfill done"
            );
        }
        if let Some(tx) = backfilled {
            let _ = tx.send(Backfill {
                from: from_epoch(backfill_start),
                to: from_epoch(replay_start),
                readings: posted,
                per_meter,
            });
        }

        let clock = Clock::new(replay_start, self.config.speed);
        let mut next = replay_start;
        loop {
            let v = clock.now();
            let due = v - v.rem_euclid(interval);
            if due > next {
                self.post_slots(&poster, next, due, backfill_start, &shutdown)
                    .await?;
                next = due;
            }
            let wait = clock
                .wall_delay_until(next + interval)
                .min(Duration::from_secs(5));
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How many readings of `[from, to)` each meter posts before `to`: what its faults leave
    /// of the window, with the backlogs of outages that end inside it.
    pub fn backfill_expected(&self, from: i64, to: i64) -> Vec<(MeterId, usize)> {
        let interval = i64::from(DEFAULT_INTERVAL_S);
        self.households
            .iter()
            .map(|h| {
                let n = (from..to)
                    .step_by(interval as usize)
                    .filter(|ts| match self.faults.fate(h, *ts) {
                        Fate::Sent => true,
                        Fate::Held { until } => until < to,
                        Fate::Lost => false,
                    })
                    .count();
                (h.meter_id.clone(), n)
            })
            .collect()
    }

    /// The readings household `h` sends for the slots in `[from, to)`: those its faults let
    /// through, with any backlog released then (readings from `history` on), each value
    /// its use or a spike, and whether the day's send is repeated.
    fn readings_of(&self, h: &Household, from: i64, to: i64, history: i64) -> Vec<(Reading, bool)> {
        let interval = i64::from(DEFAULT_INTERVAL_S);
        let live = (from..to)
            .step_by(interval as usize)
            .filter(|ts| self.faults.fate(h, *ts) == Fate::Sent);
        let mut times: Vec<i64> = live
            .chain(self.faults.released(h, from, to, history))
            .collect();
        times.sort_unstable();
        times
            .into_iter()
            .map(|ts| {
                let at = from_epoch(ts);
                let kwh = self
                    .faults
                    .spike(h, ts)
                    .unwrap_or_else(|| h.kwh(at, DEFAULT_INTERVAL_S, self.config.tz));
                let reading = Reading {
                    meter_id: h.meter_id.clone(),
                    ts: at,
                    kwh,
                    interval_s: DEFAULT_INTERVAL_S,
                };
                (reading, self.faults.duplicated(h, ts))
            })
            .collect()
    }

    /// Posts every household's readings for the slots in `[from, to)`; returns how many
    /// (a day sent twice counts once).
    async fn post_slots(
        &self,
        poster: &Arc<Poster>,
        from: i64,
        to: i64,
        history: i64,
        shutdown: &CancellationToken,
    ) -> Result<usize, FleetError> {
        if from >= to {
            return Ok(0);
        }
        let gate = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut total = 0;
        for h in self.households.iter() {
            let readings = self.readings_of(h, from, to, history);
            for chunk in readings.chunks(MAX_SLOTS_PER_POST) {
                let permit = tokio::select! {
                    () = shutdown.cancelled() => return Err(FleetError::Cancelled),
                    p = gate.clone().acquire_owned() => p.map_err(|_| FleetError::Cancelled)?,
                };
                let (poster, shutdown) = (poster.clone(), shutdown.clone());
                let (sent, again): (Vec<Reading>, Vec<Reading>) = (
                    chunk.iter().map(|(r, _)| r.clone()).collect(),
                    chunk
                        .iter()
                        .filter(|(_, twice)| *twice)
                        .map(|(r, _)| r.clone())
                        .collect(),
                );
                tasks.spawn(async move {
                    let _permit = permit;
                    poster.post(&sent, &shutdown).await?;
                    // A modem's retry after a lost answer: the same readings once more.
                    poster.post(&again, &shutdown).await?;
                    Ok(sent.len())
                });
            }
            // Surface a failure early rather than after queueing every request.
            while let Some(done) = tasks.try_join_next() {
                total += flatten(done)?;
            }
        }
        while let Some(done) = tasks.join_next().await {
            total += flatten(done)?;
        }
        Ok(total)
    }
}

fn flatten(
    r: Result<Result<usize, FleetError>, tokio::task::JoinError>,
) -> Result<usize, FleetError> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Err(FleetError::Cancelled),
        Err(e) => Err(FleetError::Client(format!("a post task failed: {e}"))),
    }
}

/// The fleet's virtual clock: starts at `origin` (epoch seconds) and runs `speed` times
/// faster than the wall clock until it catches up with it, then keeps to it.
struct Clock {
    origin: i64,
    speed: f64,
    wall_start: std::time::Instant,
}

impl Clock {
    fn new(origin: i64, speed: f64) -> Self {
        Self {
            origin,
            speed: if speed.is_finite() && speed >= 1.0 {
                speed
            } else {
                1.0
            },
            wall_start: std::time::Instant::now(),
        }
    }

    fn now(&self) -> i64 {
        let run = self.wall_start.elapsed().as_secs_f64() * self.speed;
        (self.origin + run as i64).min(Utc::now().timestamp())
    }

    fn wall_delay_until(&self, virtual_t: i64) -> Duration {
        let v = self.now();
        let ahead = (virtual_t - v).max(0) as f64;
        let rate = if v < Utc::now().timestamp() {
            self.speed
        } else {
            1.0
        };
        Duration::from_secs_f64(ahead / rate).max(Duration::from_millis(50))
    }
}

/// Posts one meter's readings to the meter service, retrying what is worth retrying.
struct Poster {
    client: reqwest::Client,
    url: String,
    tokens: MeterTokens,
    metrics: Arc<Metrics>,
}

impl Poster {
    fn new(base: &str, tokens: MeterTokens, metrics: Arc<Metrics>) -> Result<Self, FleetError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| FleetError::Client(e.to_string()))?;
        Ok(Self {
            client,
            url: format!("{}/api/v1/readings", base.trim_end_matches('/')),
            tokens,
            metrics,
        })
    }

    /// Posts one meter's readings until the meter takes them: a busy or unreachable meter
    /// is retried with backoff (or after its `Retry-After`), a refusal is an error.
    async fn post(
        &self,
        readings: &[Reading],
        shutdown: &CancellationToken,
    ) -> Result<(), FleetError> {
        let Some(first) = readings.first() else {
            return Ok(());
        };
        let token = self.tokens.issue(&first.meter_id);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let retry_after = match self.send_once(readings, &token).await? {
                Sent::Taken => {
                    self.metrics.fleet_posted.inc_by(readings.len() as u64);
                    return Ok(());
                }
                Sent::Busy(hinted) => hinted,
            };
            self.metrics.fleet_retries.inc();
            let jitter = 0.8 + 0.4 * rand::rng().random::<f64>();
            let wait = retry_after.unwrap_or(backoff.next_wait()).mul_f64(jitter);
            if !sleep_unless(shutdown, wait).await {
                return Err(FleetError::Cancelled);
            }
        }
    }

    /// One attempt: taken, busy (with the meter's hint of when to retry), or refused.
    async fn send_once(&self, readings: &[Reading], token: &str) -> Result<Sent, FleetError> {
        let meter = &readings[0].meter_id;
        let sent = self
            .client
            .post(&self.url)
            .bearer_auth(token)
            .json(readings)
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => Ok(Sent::Taken),
            Ok(res) if res.status().as_u16() == 429 || res.status().is_server_error() => {
                tracing::debug!(status = %res.status(), meter = %meter, "meter busy, retrying");
                Ok(Sent::Busy(retry_after(&res)))
            }
            Ok(res) => {
                let status = res.status().as_u16();
                let body = res.text().await.unwrap_or_default();
                Err(FleetError::Refused {
                    meter: meter.clone(),
                    status,
                    body,
                })
            }
            Err(e) => {
                tracing::debug!(error = %e, "meter unreachable, retrying");
                Ok(Sent::Busy(None))
            }
        }
    }
}

/// What one post came to, short of a refusal.
enum Sent {
    Taken,
    /// Busy or unreachable; retry, after the `Retry-After` the meter gave if it did.
    Busy(Option<Duration>),
}

fn retry_after(res: &reqwest::Response) -> Option<Duration> {
    res.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_gets_meters_inside_it() {
        let regions = Regions::london().unwrap_or_else(|e| panic!("{e}"));
        let cfg = FleetConfig {
            meters: 66,
            ..FleetConfig::default()
        };
        let fleet = Fleet::build(&regions, cfg).unwrap_or_else(|e| panic!("{e}"));
        for r in regions.iter() {
            let mine: Vec<_> = fleet
                .households()
                .iter()
                .filter(|h| h.region == r.code)
                .collect();
            assert_eq!(mine.len(), 2, "{}", r.code);
            for h in mine {
                assert_eq!(
                    regions.locate(h.lat, h.lon).map(|x| x.code.as_str()),
                    Some(r.code.as_str())
                );
            }
        }
    }

    #[test]
    fn the_same_seed_builds_the_same_fleet() {
        let regions = Regions::london().unwrap_or_else(|e| panic!("{e}"));
        let build = |seed| {
            Fleet::build(
                &regions,
                FleetConfig {
                    meters: 10,
                    seed,
                    ..FleetConfig::default()
                },
            )
            .map(|f| f.households().to_vec())
            .unwrap_or_default()
        };
        assert_eq!(build(1), build(1));
        assert_ne!(build(1), build(2));
    }

    #[test]
    fn the_clock_runs_fast_then_keeps_to_the_wall() {
        let now = Utc::now().timestamp();
        let c = Clock::new(now - 3600, 3600.0);
        assert!(c.now() <= now + 1);
        let c = Clock::new(now - 86_400, 1.0);
        assert!(c.now() < now - 86_000);
    }
}
