//! Run lifecycle against the real SQLite store, with a test double in front of it to hold
//! a run open or make it fail.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use iot_analytics::job::window;
use iot_analytics::{Analytics, JobConfig, JobError};
use iot_common::domain::Trigger;
use iot_common::store::Store;
use iot_common::store::double::FaultyStoreDouble;
use iot_common::store::sqlite::SqliteStore;
use iot_common::{Meter, Reading, RunStatus};
use tokio::sync::Semaphore;

/// The UTC start of three consecutive 24-hour local days inside the job's window (a 28-day
/// window holds at most one DST change), so the expectations hold whatever today is.
fn three_plain_days() -> DateTime<Utc> {
    use chrono::TimeZone;
    let tz = chrono_tz::Europe::London;
    let (from, _) = window(Utc::now(), 28, tz);
    let midnight = |d: chrono::NaiveDate| {
        tz.from_local_datetime(&d.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(from)
    };
    let first = from.with_timezone(&tz).date_naive();
    (0..25)
        .map(|k| first + chrono::Duration::days(k))
        .find(|d| {
            (0..3).all(|i| {
                let day = *d + chrono::Duration::days(i);
                midnight(day + chrono::Duration::days(1)) - midnight(day)
                    == chrono::Duration::hours(24)
            })
        })
        .map_or(from, midnight)
}

/// A store with two meters in two regions and three days of readings in the job's window.
async fn seeded(dir: &tempfile::TempDir) -> SqliteStore {
    let store =
        SqliteStore::open(&dir.path().join("store.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let from = three_plain_days();
    let meters: Vec<Meter> = [("m1", "A"), ("m2", "B")]
        .iter()
        .map(|(id, region)| Meter {
            meter_id: (*id).parse().unwrap(),
            region: Some((*region).parse().unwrap()),
            lat: None,
            lon: None,
            household_size: None,
            dwelling: None,
            registered_at: from,
        })
        .collect();
    store
        .upsert_meters(&meters)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let readings: Vec<Reading> = (0..3 * 48)
        .flat_map(|s| {
            ["m1", "m2"].map(|m| Reading {
                meter_id: m.parse().unwrap(),
                ts: from + chrono::Duration::minutes(30 * s),
                kwh: 0.25,
                interval_s: 1800,
            })
        })
        .collect();
    store
        .write_readings(&readings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
}

#[tokio::test]
async fn a_run_writes_every_region_and_records_itself() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inner = seeded(&dir).await;
    let analytics = Analytics::new(
        Arc::new(FaultyStoreDouble::new(inner.clone())),
        JobConfig::default(),
    );
    let run = analytics
        .run_now(Trigger::Cli)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!((run.rows_scanned, run.regions_written), (288, 2));
    assert!(run.started_at.is_some() && run.finished_at.is_some() && run.window_from.is_some());
    let profiles = inner.profiles().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profiles.len(), 2);
    for p in &profiles {
        assert_eq!(p.run_id, run.run_id);
        assert_eq!(p.figures.avg_daily_kwh, 12.0, "48 half hours of 0.25 kWh");
        assert_eq!(p.figures.hourly_kwh, [0.5; 24]);
    }
    assert_eq!(inner.run(&run.run_id).await.ok().flatten(), Some(run));
}

#[tokio::test]
async fn a_second_trigger_while_one_runs_does_not_start_another() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inner = seeded(&dir).await;
    let gate = Arc::new(Semaphore::new(0));
    let analytics = Analytics::new(
        Arc::new(FaultyStoreDouble {
            scan_gate: Some(gate.clone()),
            ..FaultyStoreDouble::new(inner.clone())
        }),
        JobConfig::default(),
    );
    let first = analytics
        .trigger(Trigger::Api)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match analytics.trigger(Trigger::Api).await {
        Err(JobError::Busy(id)) => assert_eq!(id, first.run_id),
        other => panic!("second trigger should be refused, got {other:?}"),
    }
    assert!(matches!(
        analytics.run_now(Trigger::Schedule).await,
        Err(JobError::Busy(_))
    ));
    gate.add_permits(1_000);
    let mut done = None;
    for _ in 0..200 {
        done = inner
            .run(&first.run_id)
            .await
            .ok()
            .flatten()
            .filter(|r| r.status == RunStatus::Succeeded);
        if done.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(done.is_some(), "the first run finishes");
    assert_eq!(
        inner.runs(10).await.map(|r| r.len()).unwrap_or(0),
        1,
        "only one run was recorded"
    );
    // Free again once it finished.
    assert!(analytics.run_now(Trigger::Cli).await.is_ok());
}

#[tokio::test]
async fn a_failed_run_keeps_the_previous_profiles_and_says_why() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inner = seeded(&dir).await;
    let good = Analytics::new(
        Arc::new(FaultyStoreDouble::new(inner.clone())),
        JobConfig::default(),
    );
    let ok = good
        .run_now(Trigger::Cli)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = inner.profiles().await.unwrap_or_else(|e| panic!("{e}"));
    let bad = Analytics::new(
        {
            let d = FaultyStoreDouble::new(inner.clone());
            d.failing_scans
                .store(true, std::sync::atomic::Ordering::SeqCst);
            Arc::new(d)
        },
        JobConfig::default(),
    );
    let failed = bad
        .run_now(Trigger::Cli)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(failed.status, RunStatus::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("injected outage")),
        "{failed:?}"
    );
    assert_eq!(inner.run(&failed.run_id).await.ok().flatten(), Some(failed));
    let after = inner.profiles().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after, before);
    assert!(after.iter().all(|p| p.run_id == ok.run_id));
}

#[tokio::test]
async fn a_scan_cut_into_many_slices_gives_the_same_profiles() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inner = seeded(&dir).await;
    let whole = Analytics::new(Arc::new(inner.clone()), JobConfig::default());
    let run = whole
        .run_now(Trigger::Cli)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = inner.profiles().await.unwrap_or_else(|e| panic!("{e}"));
    // 5-hour slices over a 28-day window: 135 slices dealt over 8 partitions.
    let sliced = Analytics::new(
        Arc::new(FaultyStoreDouble {
            slice_hours: Some(5),
            ..FaultyStoreDouble::new(inner.clone())
        }),
        JobConfig::default(),
    );
    let again = sliced
        .run_now(Trigger::Cli)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.status, RunStatus::Succeeded, "{again:?}");
    assert_eq!(again.rows_scanned, run.rows_scanned, "every reading once");
    let got = inner.profiles().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.run_id, again.run_id);
        assert_eq!(g.figures, e.figures, "{}", e.figures.region);
    }
}
