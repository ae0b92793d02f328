//! Run lifecycle against the real SQLite store, with a test double in front of it to hold
//! a run open or make it fail.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use iot_analytics::job::{RUN_LEASE, RunRequest, window};
use iot_analytics::{Analytics, JobConfig, JobError};
use iot_common::domain::Trigger;
use iot_common::store::double::FaultyStoreDouble;
use iot_common::store::sqlite::SqliteStore;
use iot_common::store::{Lease, Store};
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
        .run_now(Trigger::Cli, RunRequest::default_window())
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

/// The run's record once `done` accepts it, polling for up to 5 s.
async fn until_run(
    store: &SqliteStore,
    run_id: &str,
    done: impl Fn(&iot_common::Run) -> bool,
) -> Option<iot_common::Run> {
    let check = || async { store.run(run_id).await.ok().flatten().filter(|r| done(r)) };
    iot_testkit::poll(Duration::from_secs(5), Duration::from_millis(25), check).await
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
        .trigger(Trigger::Api, RunRequest::default_window())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match analytics
        .trigger(Trigger::Api, RunRequest::default_window())
        .await
    {
        Err(JobError::Busy(id)) => assert_eq!(id, first.run_id),
        other => panic!("second trigger should be refused, got {other:?}"),
    }
    assert!(matches!(
        analytics
            .run_now(Trigger::Schedule, RunRequest::default_window())
            .await,
        Err(JobError::Busy(_))
    ));
    gate.add_permits(1_000);
    let done = until_run(&inner, &first.run_id, |r| r.status == RunStatus::Succeeded).await;
    assert!(done.is_some(), "the first run finishes");
    assert_eq!(
        inner.runs(10).await.map(|r| r.len()).unwrap_or(0),
        1,
        "only one run was recorded"
    );
    // Free again once it finished.
    assert!(
        analytics
            .run_now(Trigger::Cli, RunRequest::default_window())
            .await
            .is_ok()
    );
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
        .run_now(Trigger::Cli, RunRequest::default_window())
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
        .run_now(Trigger::Cli, RunRequest::default_window())
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
async fn a_run_whose_lease_another_replica_took_writes_nothing() {
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
    let run = analytics
        .trigger(Trigger::Api, RunRequest::default_window())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // While it scans, its lease ends (as one expires over a long pause) and another
    // replica takes it.
    inner
        .release_lease(RUN_LEASE, &run.run_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let taken = inner
        .acquire_lease(RUN_LEASE, "run-of-another-replica", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken, Lease::Acquired, "the other replica gets the lease");
    gate.add_permits(1_000);
    let done = until_run(&inner, &run.run_id, |r| {
        matches!(r.status, RunStatus::Succeeded | RunStatus::Failed)
    })
    .await;
    let done = done.unwrap_or_else(|| panic!("the run ends"));
    assert_eq!(done.status, RunStatus::Failed, "{done:?}");
    assert!(
        done.error
            .as_deref()
            .is_some_and(|e| e.contains("lease was lost to run-of-another-replica")),
        "{done:?}"
    );
    assert!(
        inner
            .profiles()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    assert!(
        inner
            .run_profiles(&run.run_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty(),
        "nothing reached the history either"
    );
    // It did not release the other replica's lease on its way out.
    assert_eq!(
        inner
            .acquire_lease(RUN_LEASE, "a-third-replica", Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Lease::HeldBy("run-of-another-replica".to_owned())
    );
}

#[tokio::test]
async fn a_scan_cut_into_many_slices_gives_the_same_profiles() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inner = seeded(&dir).await;
    let whole = Analytics::new(Arc::new(inner.clone()), JobConfig::default());
    let run = whole
        .run_now(Trigger::Cli, RunRequest::default_window())
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
        .run_now(Trigger::Cli, RunRequest::default_window())
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

/// Four meters in two regions, half-hourly over the 40 days before today, with kWh that vary
/// by meter, day and hour.
async fn forty_days(dir: &std::path::Path) -> Arc<dyn Store> {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&SqliteStore::path_in(dir)).unwrap_or_else(|e| panic!("{e}")));
    let now = Utc::now().timestamp();
    let start = now - now.rem_euclid(1800) - 40 * 86_400;
    let meters: Vec<Meter> = (0..4)
        .map(|i| Meter {
            meter_id: format!("W{i}").parse().unwrap(),
            region: Some(
                if i < 2 { "E09000001" } else { "E09000002" }
                    .parse()
                    .unwrap(),
            ),
            lat: None,
            lon: None,
            household_size: None,
            dwelling: None,
            registered_at: Utc::now(),
        })
        .collect();
    store
        .upsert_meters(&meters)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let readings: Vec<Reading> = (0..40 * 48)
        .flat_map(|s: i64| {
            (0..4).map(move |i: i64| Reading {
                meter_id: format!("W{i}").parse().unwrap(),
                ts: DateTime::from_timestamp(start + s * 1800, 0).unwrap_or_default(),
                kwh: ((s * 7 + i * 31) % 53) as f64 / 50.0,
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

fn analytics_cli(args: &[&str], data: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_analytics"))
        .args(args)
        .env("IOT_DATA_DIR", data)
        .env_remove("IOT_CASSANDRA_NODES")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("analytics {args:?}: {e}"));
    assert!(
        out.status.success(),
        "analytics {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A run over days an analyst chose computes what `analytics run --input` computes on an
/// export of those days, is kept in the history, and leaves the map's profiles alone.
#[tokio::test]
async fn a_chosen_window_equals_the_job_on_an_export_of_it_and_is_not_published() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = forty_days(dir.path()).await;
    let tz = chrono_tz::Europe::London;
    let today = Utc::now().with_timezone(&tz).date_naive();
    let (from, to) = (today - chrono::Days::new(30), today - chrono::Days::new(9));
    let analytics = Analytics::new(store.clone(), JobConfig::default());
    let request = RunRequest {
        days: Some((from, to)),
        publish: false,
    };
    let run = analytics
        .run_now(Trigger::Api, request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(!run.published);
    let window = iot_analytics::job::days_window(from, to, tz);
    assert_eq!(
        (run.window_from, run.window_to),
        (Some(window.0), Some(window.1))
    );
    assert!(
        store.profiles().await.unwrap_or_default().is_empty(),
        "an unpublished run leaves the map alone"
    );
    let kept = store
        .run_profiles(&run.run_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kept.len(), 2, "both regions kept in the history");

    let parquet = dir.path().join("window.parquet");
    let csv = dir.path().join("profiles.csv");
    let (a, b) = (window.0.to_rfc3339(), window.1.to_rfc3339());
    let p = parquet.display().to_string();
    analytics_cli(
        &["export", "--from", &a, "--to", &b, "--output", &p],
        dir.path(),
    );
    analytics_cli(
        &["run", "--input", &p, "--output", &csv.display().to_string()],
        dir.path(),
    );
    let text = std::fs::read_to_string(&csv).unwrap_or_else(|e| panic!("{e}"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), kept.len(), "{text}");
    for (row, profile) in rows.iter().zip(&kept) {
        let f = &profile.figures;
        let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap_or(0)];
        let num = |name: &str| col(name).parse::<f64>().unwrap_or(f64::NAN);
        assert_eq!(col("region_id"), f.region.as_str());
        assert_eq!(num("meters") as u64, f.meters);
        assert_eq!(num("readings") as u64, f.readings);
        for (name, ours) in [
            ("avg_daily_kwh", f.avg_daily_kwh),
            ("p50_daily_kwh", f.p50_daily_kwh),
            ("p90_daily_kwh", f.p90_daily_kwh),
        ] {
            assert!(
                (num(name) - ours).abs() <= 1e-9 * ours.abs().max(1.0),
                "{name}: {} against {ours}",
                num(name)
            );
        }
        assert_eq!(num("peak_hour") as u8, f.peak_hour);
    }

    // Published on request, the same window replaces the map's profiles.
    let published = analytics
        .run_now(
            Trigger::Api,
            RunRequest {
                days: Some((from, to)),
                publish: true,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let current = store.profiles().await.unwrap_or_default();
    assert_eq!(current.len(), 2);
    assert!(current.iter().all(|p| p.run_id == published.run_id));
}

#[tokio::test]
async fn a_window_that_is_not_whole_past_days_in_the_retention_is_refused_by_field() {
    let config = JobConfig::default();
    let now = Utc::now();
    let today = now.with_timezone(&config.tz).date_naive();
    let day = |ago: i64| today - chrono::Duration::days(ago);
    for ((from, to), field) in [
        ((day(3), day(-1)), "to"),
        ((day(3), day(3)), "to"),
        ((day(2), day(5)), "to"),
        ((day(800), day(5)), "from"),
    ] {
        let request = RunRequest {
            days: Some((from, to)),
            publish: false,
        };
        match iot_analytics::job::resolve(request, now, &config) {
            Err(JobError::Window { field: f, .. }) => assert_eq!(f, field, "{from}..{to}"),
            other => panic!("{from}..{to}: {other:?}"),
        }
    }
    // The default window, asked for by its days, is the default run: published.
    let (default, _) = iot_analytics::job::resolve(RunRequest::default(), now, &config)
        .unwrap_or_else(|e| panic!("{e}"));
    let request = RunRequest {
        days: Some((day(28), today)),
        publish: false,
    };
    let (w, publish) =
        iot_analytics::job::resolve(request, now, &config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((w, publish), (default, true));
}
