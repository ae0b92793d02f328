//! The batch job on Cassandra (IOT_TEST_CASSANDRA): the same readings give the same
//! profiles as on the embedded store, read through (region, day) slices in parallel.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use iot_analytics::job::{RunRequest, window};
use iot_analytics::{Analytics, JobConfig};
use iot_common::domain::{RegionCode, Trigger};
use iot_common::store::Store;
use iot_common::store::sqlite::SqliteStore;
use iot_common::{Meter, Reading, RegionProfile, RunStatus};

#[tokio::test]
async fn a_run_on_cassandra_matches_the_embedded_store() {
    let Some(cassandra) = iot_cassandra::test_node::store("cassandra batch job").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sqlite =
        SqliteStore::open(&dir.path().join("store.sqlite")).unwrap_or_else(|e| panic!("{e}"));
    let tz = chrono_tz::Europe::London;
    let (from, to) = window(Utc::now(), 28, tz);
    // Regions and meters of this run only: the test keyspace is shared.
    let tag: u32 = rand::random();
    let regions: Vec<RegionCode> = (0..3)
        .map(|i| format!("T{tag:08x}R{i}").parse().unwrap())
        .collect();
    let meters: Vec<Meter> = (0..12)
        .map(|i| Meter {
            meter_id: format!("t{tag:08x}m{i}").parse().unwrap(),
            region: Some(regions[i % 3].clone()),
            lat: None,
            lon: None,
            household_size: Some(2),
            dwelling: None,
            registered_at: Utc.timestamp_opt(0, 0).single().unwrap_or(from),
        })
        .collect();
    // Every half hour of the window, with a daily shape, plus readings just outside it.
    let mut readings = Vec::new();
    let mut ts = from - Duration::hours(2);
    while ts < to + Duration::hours(2) {
        for (i, m) in meters.iter().enumerate() {
            let hour = ts.with_timezone(&tz).format("%H").to_string();
            let h: f64 = hour.parse().unwrap_or(0.0);
            readings.push(Reading {
                meter_id: m.meter_id.clone(),
                ts,
                kwh: 0.05 + 0.01 * i as f64 + 0.02 * (h - 12.0).abs(),
                interval_s: 1800,
            });
        }
        ts += Duration::minutes(30);
    }
    for store in [&cassandra as &dyn Store, &sqlite] {
        store
            .upsert_meters(&meters)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for chunk in readings.chunks(5_000) {
            store
                .write_readings(chunk)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let mine = |profiles: Vec<RegionProfile>| -> BTreeMap<RegionCode, RegionProfile> {
        profiles
            .into_iter()
            .filter(|p| regions.contains(&p.figures.region))
            .map(|p| (p.figures.region.clone(), p))
            .collect()
    };
    let mut results = Vec::new();
    for store in [
        Arc::new(cassandra.clone()) as Arc<dyn Store>,
        Arc::new(sqlite.clone()),
    ] {
        let job = Analytics::new(store.clone(), JobConfig::default());
        let run = job
            .run_now(Trigger::Cli, RunRequest::default_window())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        results.push(mine(
            store.profiles().await.unwrap_or_else(|e| panic!("{e}")),
        ));
    }
    let (on_cassandra, on_sqlite) = (&results[0], &results[1]);
    assert_eq!(
        on_cassandra.len(),
        3,
        "every region of this test has a profile"
    );
    for (region, c) in on_cassandra {
        let s = &on_sqlite[region];
        let (c, s) = (&c.figures, &s.figures);
        assert_eq!((c.meters, c.readings), (s.meters, s.readings), "{region}");
        assert_eq!(c.peak_hour, s.peak_hour, "{region}");
        for (a, b) in [
            (c.avg_daily_kwh, s.avg_daily_kwh),
            (c.p50_daily_kwh, s.p50_daily_kwh),
            (c.p90_daily_kwh, s.p90_daily_kwh),
        ]
        .into_iter()
        .chain(
            c.hourly_kwh
                .iter()
                .copied()
                .zip(s.hourly_kwh.iter().copied()),
        ) {
            assert!(
                (a - b).abs() < 1e-9,
                "{region}: {a} on Cassandra, {b} embedded"
            );
        }
    }
}
