//! `migrate --copy-legacy-readings` against a real Cassandra node (IOT_TEST_CASSANDRA): rows
//! in the tables before migration 6 come out of the current ones, by meter and in a scan.

use chrono::{DateTime, Utc};
use iot_cassandra::client::Client;
use iot_cassandra::test_node;
use iot_common::domain::{Meter, MeterId, RegionCode};
use iot_common::store::Store;

#[tokio::test]
async fn legacy_readings_are_copied_into_the_current_tables() {
    let Some(store) = test_node::store("legacy copy").await else {
        return;
    };
    let config = test_node::config("legacy copy").expect("configured");
    let client = Client::connect(&config).await.expect("connect");
    client
        .use_keyspace(&config.keyspace)
        .await
        .expect("keyspace");
    let meter = MeterId::parse(format!("legacy-{:08x}", rand::random::<u32>())).unwrap();
    let region = RegionCode::parse("E09000007").unwrap();
    store
        .upsert_meters(&[Meter {
            meter_id: meter.clone(),
            region: Some(region.clone()),
            lat: None,
            lon: None,
            household_size: None,
            dwelling: None,
            registered_at: Utc::now(),
        }])
        .await
        .expect("register");
    // 2026-01-31 23:00 to 2026-02-01 01:00 UTC: two days, two months.
    let base = 1_769_900_400;
    let mut expected = Vec::new();
    for s in 0..5i64 {
        let ts = DateTime::<Utc>::from_timestamp(base + s * 1800, 0).unwrap();
        let kwh = 0.1 * (s + 1) as f64;
        client
            .query(
                "legacy reading",
                "INSERT INTO readings_by_meter (meter_id, day, ts, kwh, interval_s) VALUES (?, ?, ?, ?, ?)",
                (meter.as_str(), ts.date_naive(), ts, kwh, 1800),
            )
            .await
            .expect("legacy reading");
        client
            .query(
                "legacy day",
                "INSERT INTO meter_days (meter_id, day, readings, latest) VALUES (?, ?, ?, ?)",
                (meter.as_str(), ts.date_naive(), 1, ts),
            )
            .await
            .expect("legacy day");
        expected.push((ts, kwh));
    }
    let copied = store.copy_legacy_readings().await.expect("copy");
    assert!(copied >= 5, "copied {copied}");
    // Again: nothing changes.
    store.copy_legacy_readings().await.expect("copy again");
    let from = DateTime::<Utc>::from_timestamp(base, 0).unwrap();
    let to = DateTime::<Utc>::from_timestamp(base + 86_400, 0).unwrap();
    let got: Vec<(DateTime<Utc>, f64)> = store
        .meter_readings(&meter, from, to, 100)
        .await
        .expect("read back")
        .into_iter()
        .map(|r| (r.ts, r.kwh))
        .collect();
    assert_eq!(got, expected, "by meter, across the month's end");
    let mut scanned = Vec::new();
    for slice in store
        .scan_slices(from, to, Some(std::slice::from_ref(&region)))
        .await
        .expect("slices")
    {
        let mut cursor = None;
        loop {
            let page = store
                .scan_readings(&slice, cursor.as_deref(), 1000)
                .await
                .expect("scan");
            scanned.extend(
                page.rows
                    .into_iter()
                    .filter(|r| r.meter_id == meter)
                    .map(|r| (r.ts, r.kwh, r.interval_s)),
            );
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
    }
    scanned.sort_by_key(|r| r.0);
    let want: Vec<_> = expected
        .iter()
        .map(|(ts, kwh)| (*ts, *kwh, Some(1800)))
        .collect();
    assert_eq!(scanned, want, "in the region scan, with the interval");
}
