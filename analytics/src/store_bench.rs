//! `analytics bench-store`: the store's half of the pipeline timed on a real store. It
//! writes readings the way the sink does (`Store::write_readings`, one batch after another,
//! batches of the sink's size) and then makes one profile run over them, the way the
//! scheduled job does; it prints what each managed per second.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use iot_common::domain::{MeterId, RegionCode, Trigger};
use iot_common::store::{Store, StoreError};
use iot_common::{Meter, Reading};

use crate::job::{Analytics, JobConfig, JobError, RunRequest, window};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("{0}")]
    Setup(String),
}

/// What to write: `meters` meters' half-hourly readings over the `days` before today, in
/// store writes of `batch` readings.
#[derive(Debug, Clone, Copy)]
pub struct BenchSize {
    pub meters: usize,
    pub days: u32,
    pub batch: usize,
}

/// The value meter `m` reports in slot `slot`: varied by meter and hour, never negative.
fn kwh(m: usize, slot: i64) -> f64 {
    let hour = slot.rem_euclid(48) / 2;
    let base = 0.05 + (m % 17) as f64 * 0.01;
    let evening = if (17..21).contains(&hour) { 0.3 } else { 0.0 };
    ((base + evening + (slot % 7) as f64 * 0.005) * 1000.0).round() / 1000.0
}

fn meters(count: usize, registered: DateTime<Utc>) -> Result<Vec<Meter>, BenchError> {
    let regions = iot_common::regions::Regions::london()
        .map_err(|e| BenchError::Setup(format!("the London boroughs: {e}")))?;
    let codes: Vec<RegionCode> = regions.iter().map(|r| r.code.clone()).collect();
    (0..count)
        .map(|m| {
            let meter_id = MeterId::parse(format!("BENCH{m:06}"))
                .map_err(|e| BenchError::Setup(e.to_string()))?;
            Ok(Meter {
                meter_id,
                region: codes.get(m % codes.len().max(1)).cloned(),
                lat: None,
                lon: None,
                household_size: None,
                dwelling: None,
                registered_at: registered,
            })
        })
        .collect()
}

/// Writes, then runs, on `store` (named `label` in the output), and prints both rates.
pub async fn bench_store(
    store: Arc<dyn Store>,
    config: JobConfig,
    label: &str,
    size: BenchSize,
) -> Result<(), BenchError> {
    let BenchSize {
        meters: meter_count,
        days,
        batch,
    } = size;
    let (from, to) = window(Utc::now(), days, config.tz);
    let fleet = meters(meter_count, from)?;
    store.upsert_meters(&fleet).await?;
    let slots = (to - from).num_minutes() / 30;
    let total = slots as usize * fleet.len();
    eprintln!(
        "writing {total} readings ({} meters × {days} days) in batches of {batch}",
        fleet.len()
    );

    // Time order across meters, as the sink receives a fleet's posts.
    let started = Instant::now();
    let mut pending: Vec<Reading> = Vec::with_capacity(batch);
    let mut written = 0usize;
    let mut last_report = Instant::now();
    for slot in 0..slots {
        for (m, meter) in fleet.iter().enumerate() {
            pending.push(Reading {
                meter_id: meter.meter_id.clone(),
                ts: from + TimeDelta::minutes(30 * slot),
                kwh: kwh(m, slot),
                interval_s: 1800,
            });
            if pending.len() >= batch {
                store.write_readings(&pending).await?;
                written += pending.len();
                pending.clear();
                if last_report.elapsed().as_secs() >= 10 {
                    eprintln!("  {written} of {total} written");
                    last_report = Instant::now();
                }
            }
        }
    }
    store.write_readings(&pending).await?;
    written += pending.len();
    let write_s = started.elapsed().as_secs_f64();

    let analytics = Analytics::new(store.clone(), config);
    let started = Instant::now();
    let run = analytics
        .run_now(Trigger::Cli, RunRequest::default_window())
        .await?;
    let run_s = started.elapsed().as_secs_f64();

    println!("store: {label}");
    println!(
        "sink writes: {written} readings in {write_s:.1} s = {:.0} readings/s (batches of {batch})",
        written as f64 / write_s
    );
    println!(
        "profile run {}: {:?}, {} rows scanned, {} regions in {run_s:.2} s = {:.0} rows/s",
        run.run_id,
        run.status,
        run.rows_scanned,
        run.regions_written,
        run.rows_scanned as f64 / run_s
    );
    Ok(())
}
