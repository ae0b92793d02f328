//! The store contract: behaviour every [`Store`] adapter must show, written once. Each check
//! uses ids of its own, so the suite also runs against a shared, non-empty store (a Cassandra
//! node). Adapters run it with [`store_contract_tests!`](crate::store_contract_tests).

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{Lease, MAX_READBACK, RegionReading, Store};
use crate::domain::{
    Dwelling, Meter, MeterId, ProfileFigures, Reading, RegionCode, RegionProfile, Run, RunStatus,
    Trigger,
};
use crate::live::{self, LiveEntry, LiveSlot};

/// Generates one `#[tokio::test]` per contract check; `$make` is an async expression giving
/// something that derefs to a fresh store (a `Box`, an `Arc`, or a guard that also holds its
/// temporary files); it may `panic!` with a reason when it cannot make one.
#[macro_export]
macro_rules! store_contract_tests {
    // `$make` gives an `Option`: `None` (a store that is not configured here) ends the check
    // early; the maker says so loudly.
    (optional $make:expr) => {
        $crate::store_contract_tests!(@each $make;
            meters_round_trip, readings_upsert_once_per_meter_and_ts,
            readings_window_is_half_open_ordered_and_limited, profiles_replace_per_region,
            runs_round_trip_newest_first, summary_counts_what_was_written,
            run_profiles_are_kept_per_run_and_listed_per_region,
            window_scan_pages_through_region_readings_once,
            readings_from_before_registration_are_scanned_after_it,
            a_meter_that_moves_is_scanned_in_its_new_region_only,
            the_newest_write_wins_in_every_table,
            a_scan_of_some_regions_gives_their_readings_only,
            revocations_are_listed_and_a_later_one_moves_the_instant,
            a_lease_has_one_holder_until_released_or_expired,
            of_many_asking_at_once_one_gets_the_lease,
            live_state_is_kept_per_part_and_summed_over_parts,
            empty_writes_are_harmless);
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let Some(store) = $make.await else { return };
                $crate::store::contract::$check(&*store).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::store_contract_tests!(optional async { Some($make.await) });
    };
}

/// A fresh id, so checks on a shared store see only their own rows.
fn unique(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}-{n:016x}")
}

fn meter_id(s: &str) -> MeterId {
    ok(MeterId::parse(s), "meter id")
}

fn unique_meter(prefix: &str) -> MeterId {
    meter_id(&unique(prefix))
}

fn code(s: &str) -> RegionCode {
    ok(RegionCode::parse(s), "region code")
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

fn reading(meter: &str, slot: i64, kwh: f64) -> Reading {
    Reading {
        meter_id: meter_id(meter),
        ts: at(T0 + slot * 1800),
        kwh,
        interval_s: 1800,
    }
}

/// A meter registered in `region`, with no location or household details.
fn placed_meter(meter: &str, region: &str) -> Meter {
    Meter {
        meter_id: meter_id(meter),
        region: Some(code(region)),
        lat: None,
        lon: None,
        household_size: None,
        dwelling: None,
        registered_at: at(T0),
    }
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub async fn meters_round_trip(store: &dyn Store) {
    let id = unique_meter("m");
    let mut m = Meter {
        meter_id: id.clone(),
        region: Some(code("E09000001")),
        lat: Some(51.5138),
        lon: Some(-0.0984),
        household_size: Some(3),
        dwelling: Some(Dwelling::Terraced),
        registered_at: at(T0),
    };
    ok(
        store.upsert_meters(std::slice::from_ref(&m)).await,
        "upsert meter",
    );
    assert_eq!(ok(store.meter(&id).await, "get meter"), Some(m.clone()));
    m.region = None;
    m.dwelling = None;
    ok(
        store.upsert_meters(std::slice::from_ref(&m)).await,
        "re-register meter",
    );
    assert_eq!(
        ok(store.meter(&id).await, "get meter"),
        Some(m.clone()),
        "upsert replaces"
    );
    assert_eq!(
        ok(store.meter(&unique_meter("absent")).await, "get absent"),
        None
    );
    let all = ok(store.meters().await, "list meters");
    assert_eq!(all.iter().filter(|x| x.meter_id == id).count(), 1);
    assert!(
        all.windows(2).all(|w| w[0].meter_id < w[1].meter_id),
        "ordered by id"
    );
}

pub async fn readings_upsert_once_per_meter_and_ts(store: &dyn Store) {
    let id = unique_meter("m");
    let batch: Vec<Reading> = (0..48)
        .map(|s| reading(&id, s, 0.1 + s as f64 / 100.0))
        .collect();
    ok(store.write_readings(&batch).await, "write");
    ok(store.write_readings(&batch).await, "write again");
    let got = ok(
        store
            .meter_readings(&id, at(T0), at(T0 + 86_400), MAX_READBACK)
            .await,
        "read back",
    );
    assert_eq!(got, batch, "the same reading written twice is stored once");
    let corrected = reading(&id, 5, 0.999);
    ok(
        store.write_readings(std::slice::from_ref(&corrected)).await,
        "rewrite",
    );
    let got = ok(
        store
            .meter_readings(&id, at(T0), at(T0 + 86_400), 100)
            .await,
        "read",
    );
    assert_eq!(got.len(), 48);
    assert_eq!(got[5], corrected, "the later write wins");
    let other = ok(
        store
            .meter_readings(&unique_meter("m"), at(T0), at(T0 + 86_400), 100)
            .await,
        "read",
    );
    assert!(other.is_empty(), "readings belong to their meter only");
}

pub async fn readings_window_is_half_open_ordered_and_limited(store: &dyn Store) {
    let id = unique_meter("m");
    let mut batch: Vec<Reading> = (0..10).map(|s| reading(&id, s, 0.5)).collect();
    batch.reverse();
    ok(store.write_readings(&batch).await, "write");
    let got = ok(
        store
            .meter_readings(&id, at(T0 + 2 * 1800), at(T0 + 6 * 1800), 100)
            .await,
        "window",
    );
    let slots: Vec<i64> = got.iter().map(|r| (r.ts.timestamp() - T0) / 1800).collect();
    assert_eq!(
        slots,
        vec![2, 3, 4, 5],
        "from is inclusive, to exclusive, oldest first"
    );
    let got = ok(
        store.meter_readings(&id, at(T0), at(T0 + 86_400), 3).await,
        "limit",
    );
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].ts, at(T0));
    let empty = ok(
        store
            .meter_readings(&id, at(T0 + 100), at(T0 + 100), 10)
            .await,
        "empty",
    );
    assert!(empty.is_empty());
}

fn profile(region: &str, run: &str, avg: f64) -> RegionProfile {
    let mut hourly = [0.1; 24];
    hourly[18] = 0.9;
    RegionProfile {
        run_id: run.to_owned(),
        window_from: at(T0),
        window_to: at(T0 + 7 * 86_400),
        computed_at: at(T0 + 8 * 86_400),
        published: true,
        figures: ProfileFigures {
            region: code(region),
            meters: 12,
            readings: 12 * 7 * 48,
            avg_daily_kwh: avg,
            p50_daily_kwh: avg * 0.9,
            p90_daily_kwh: avg * 1.6,
            weekday_avg_daily_kwh: Some(avg * 0.95),
            weekend_avg_daily_kwh: None,
            hourly_kwh: hourly,
            peak_hour: 18,
            meter_daily_percentiles: vec![avg * 0.5, avg, avg * 2.0],
            meter_days: crate::domain::MeterDayCounts {
                complete: 40,
                estimated: 3,
                excluded: 1,
            },
        },
    }
}

pub async fn profiles_replace_per_region(store: &dyn Store) {
    let (a, b) = (unique("RA"), unique("RB"));
    ok(
        store
            .put_profiles(&[profile(&a, "run1", 7.0), profile(&b, "run1", 8.0)])
            .await,
        "put",
    );
    ok(
        store.put_profiles(&[profile(&a, "run2", 9.5)]).await,
        "put again",
    );
    let all = ok(store.profiles().await, "profiles");
    let mine: Vec<&RegionProfile> = all
        .iter()
        .filter(|p| p.figures.region == a || p.figures.region == b)
        .collect();
    assert_eq!(mine.len(), 2, "one current profile per region");
    let pa = mine
        .iter()
        .find(|p| p.figures.region == a)
        .map(|p| (*p).clone());
    assert_eq!(
        pa,
        Some(profile(&a, "run2", 9.5)),
        "the newer profile replaced the older"
    );
    let pb = mine
        .iter()
        .find(|p| p.figures.region == b)
        .map(|p| (*p).clone());
    assert_eq!(
        pb,
        Some(profile(&b, "run1", 8.0)),
        "a region not in the put keeps its own"
    );
    assert!(
        all.windows(2)
            .all(|w| w[0].figures.region < w[1].figures.region),
        "ordered by region"
    );
}

pub async fn run_profiles_are_kept_per_run_and_listed_per_region(store: &dyn Store) {
    let (a, b) = (unique("RA"), unique("RB"));
    let (older, newer) = (unique("run"), unique("run"));
    // Recent, so the retention keeps them.
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_default();
    let made = |region: &str, run: &str, avg: f64, ago_min: i64| RegionProfile {
        computed_at: now - Duration::minutes(ago_min),
        published: ago_min > 30,
        ..profile(region, run, avg)
    };
    ok(
        store
            .put_run_profiles(&[made(&a, &older, 7.0, 60), made(&b, &older, 8.0, 60)])
            .await,
        "put older run",
    );
    ok(
        store.put_run_profiles(&[made(&a, &newer, 9.0, 5)]).await,
        "put newer run",
    );
    assert_eq!(
        ok(store.run_profiles(&older).await, "run profiles"),
        vec![made(&a, &older, 7.0, 60), made(&b, &older, 8.0, 60)],
        "a run's profiles, ordered by region"
    );
    assert_eq!(
        ok(store.region_history(&code(&a), 10).await, "history"),
        vec![made(&a, &newer, 9.0, 5), made(&a, &older, 7.0, 60)],
        "a region's profiles, newest first"
    );
    assert_eq!(
        ok(store.region_history(&code(&a), 1).await, "history").len(),
        1,
        "at most the limit"
    );
    assert!(ok(store.run_profiles(&unique("run")).await, "unknown run").is_empty());
    let current = ok(store.profiles().await, "profiles");
    assert!(
        !current
            .iter()
            .any(|p| p.figures.region == a || p.figures.region == b),
        "the map's profiles are untouched"
    );
}

pub async fn runs_round_trip_newest_first(store: &dyn Store) {
    // Far in the future, so these are the newest runs even in a shared store, and later for
    // each later run of the suite; with milliseconds, which run timings need.
    let base = at(T0 + 400 * 365 * 86_400) + (Utc::now() - at(T0)) + Duration::milliseconds(123);
    let base = DateTime::from_timestamp_millis(base.timestamp_millis()).unwrap_or(base);
    let ids: Vec<String> = (0..3).map(|_| unique("run")).collect();
    for (i, id) in ids.iter().enumerate() {
        let run = Run::queued(
            id.to_string(),
            Trigger::Api,
            base + Duration::seconds(i as i64),
        );
        ok(store.put_run(&run).await, "put run");
    }
    let mut done = ok(store.run(&ids[1]).await, "get run").unwrap_or_else(|| panic!("run lost"));
    done.status = RunStatus::Failed;
    done.started_at = Some(base + Duration::seconds(10));
    done.finished_at = Some(base + Duration::milliseconds(10_250));
    done.window_from = Some(at(T0));
    done.window_to = Some(at(T0 + 86_400));
    done.rows_scanned = 123_456;
    done.regions_written = 0;
    done.error = Some("store unavailable: <boom> \"quoted\"".into());
    done.published = false;
    ok(store.put_run(&done).await, "update run");
    assert_eq!(ok(store.run(&ids[1]).await, "get run"), Some(done));
    let newest = ok(store.runs(2).await, "list runs");
    let got: Vec<&str> = newest.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(
        got,
        vec![ids[2].as_str(), ids[1].as_str()],
        "newest first, limited"
    );
    assert_eq!(ok(store.run(&unique("run")).await, "absent run"), None);
}

/// Exact on the check's own rows (its region's meters); the totals only grow by at least
/// what it wrote, since other checks may write to a shared store at the same time.
pub async fn summary_counts_what_was_written(store: &dyn Store) {
    let before = ok(store.summary().await, "summary");
    let region = unique("R");
    let (m1, m2) = (unique_meter("m"), unique_meter("m"));
    let meters: Vec<Meter> = [&m1, &m2]
        .iter()
        .map(|id| placed_meter(id, &region))
        .collect();
    ok(store.upsert_meters(&meters).await, "meters");
    let readings: Vec<Reading> = (0..5).map(|s| reading(&m1, s, 0.2)).collect();
    ok(store.write_readings(&readings).await, "readings");
    // Written again: counted once.
    ok(store.write_readings(&readings).await, "readings again");
    let after = ok(store.summary().await, "summary");
    assert!(after.meters >= before.meters + 2);
    assert!(after.readings >= before.readings + 5);
    assert!(after.meters_with_readings > before.meters_with_readings);
    let in_region = after
        .meters_by_region
        .iter()
        .find(|(r, _)| r.as_deref() == Some(region.as_str()))
        .map(|(_, n)| *n);
    assert_eq!(in_region, Some(2));
    assert!(after.latest_reading.is_some_and(|t| t >= at(T0 + 4 * 1800)));
    let last = |meter: &str| {
        after
            .last_reading_by_meter
            .iter()
            .find(|(m, _)| m.as_str() == meter)
            .map(|(_, t)| *t)
    };
    assert_eq!(last(&m1), Some(at(T0 + 4 * 1800)), "m1's newest reading");
    assert_eq!(last(&m2), None, "m2 has none");
    assert!(
        after
            .last_reading_by_meter
            .windows(2)
            .all(|w| w[0].0 < w[1].0),
        "ordered by meter, each once"
    );
}

/// Corrections of one reading, written one after another as fast as they come: the last
/// one is what every read gives, by meter and in a region scan. On Cassandra each write
/// carries the client's monotonic timestamp, so this holds whichever coordinator takes
/// each write.
pub async fn the_newest_write_wins_in_every_table(store: &dyn Store) {
    let base = T0 + 3_300 * 86_400;
    let (meter, region) = (unique_meter("m"), unique("R"));
    ok(
        store.upsert_meters(&[placed_meter(&meter, &region)]).await,
        "register",
    );
    let slot = |kwh: f64| Reading {
        meter_id: meter.clone(),
        ts: at(base + 1800),
        kwh,
        interval_s: 1800,
    };
    for i in 1..=20 {
        ok(
            store.write_readings(&[slot(f64::from(i) / 100.0)]).await,
            "correction",
        );
    }
    let got = ok(
        store
            .meter_readings(&meter, at(base), at(base + 86_400), 10)
            .await,
        "read back",
    );
    assert_eq!(got, vec![slot(0.2)], "the last correction, once");
    let only = [code(&region)];
    let scanned: Vec<f64> = scan(store, at(base), at(base + 86_400), Some(&only))
        .await
        .into_iter()
        .map(|r| r.kwh)
        .collect();
    assert_eq!(scanned, vec![0.2], "the scan gives the last correction too");
}

pub async fn empty_writes_are_harmless(store: &dyn Store) {
    ok(store.write_readings(&[]).await, "empty readings");
    ok(store.upsert_meters(&[]).await, "empty meters");
    ok(store.put_profiles(&[]).await, "empty profiles");
    ok(store.ping().await, "ping");
}

pub async fn window_scan_pages_through_region_readings_once(store: &dyn Store) {
    // A window of its own, far from the other checks', so a shared store does not interfere.
    let base = T0 + 3_000 * 86_400;
    let region = unique("R");
    let placed: Vec<MeterId> = (0..3).map(|_| unique_meter("m")).collect();
    let stray = unique_meter("m");
    let meters: Vec<Meter> = placed.iter().map(|id| placed_meter(id, &region)).collect();
    ok(store.upsert_meters(&meters).await, "meters");
    let mut readings = Vec::new();
    for id in placed.iter().chain(std::iter::once(&stray)) {
        for s in 0..10 {
            readings.push(Reading {
                meter_id: id.clone(),
                ts: at(base + s * 1800),
                kwh: 0.01 * s as f64,
                interval_s: 1800,
            });
        }
    }
    ok(store.write_readings(&readings).await, "readings");
    // [slot 2, slot 8): six readings per placed meter.
    let (from, to) = (at(base + 2 * 1800), at(base + 8 * 1800));
    let seen = scan(store, from, to, None).await;
    let mut mine: Vec<RegionReading> = seen.into_iter().filter(|r| r.region == region).collect();
    mine.sort_by(|a, b| (&a.meter_id, a.ts).cmp(&(&b.meter_id, b.ts)));
    for r in &mut mine {
        // A store that keeps the interval next to the region gives the reading's own.
        assert!(r.interval_s.is_none_or(|i| i == 1800), "{r:?}");
        r.interval_s = None;
    }
    let mut expected: Vec<RegionReading> = placed
        .iter()
        .flat_map(|id| {
            (2..8).map(|s| RegionReading {
                region: code(&region),
                meter_id: id.clone(),
                ts: at(base + s * 1800),
                kwh: 0.01 * s as f64,
                interval_s: None,
            })
        })
        .collect();
    expected.sort_by(|a, b| (&a.meter_id, a.ts).cmp(&(&b.meter_id, b.ts)));
    assert_eq!(
        mine, expected,
        "each reading in the window once, tagged with its region"
    );
}

pub async fn a_scan_of_some_regions_gives_their_readings_only(store: &dyn Store) {
    let base = T0 + 3_100 * 86_400;
    let (asked, other) = (unique("R"), unique("R"));
    let (a, b) = (unique_meter("m"), unique_meter("m"));
    let meters = [placed_meter(&a, &asked), placed_meter(&b, &other)];
    ok(store.upsert_meters(&meters).await, "meters");
    let readings: Vec<Reading> = [&a, &b]
        .iter()
        .flat_map(|id| two_days(id.as_str(), base, 0..4))
        .collect();
    ok(store.write_readings(&readings).await, "readings");
    let only = [code(&asked)];
    let seen = scan(store, at(base), at(base + 2 * 86_400), Some(&only)).await;
    assert_eq!(
        seen.len(),
        4,
        "the asked region's readings, each once: {seen:?}"
    );
    assert!(
        seen.iter().all(|r| r.region == asked && r.meter_id == a),
        "nothing of another region: {seen:?}"
    );
}

/// Every reading a scan of `[from, to)` gives, through all its slices and pages (of 4).
async fn scan(
    store: &dyn Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    regions: Option<&[RegionCode]>,
) -> Vec<RegionReading> {
    let mut seen: Vec<RegionReading> = Vec::new();
    let slices = ok(store.scan_slices(from, to, regions).await, "slices");
    assert!(
        !slices.is_empty() || regions.is_some_and(<[_]>::is_empty),
        "a window has at least one slice"
    );
    for slice in &slices {
        assert!(
            slice.from >= from && slice.to <= to,
            "a slice stays in the window"
        );
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let page = ok(
                store.scan_readings(slice, cursor.as_deref(), 4).await,
                "scan",
            );
            assert!(page.rows.len() <= 4, "a page holds at most `limit` rows");
            seen.extend(page.rows);
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert!(cursor.is_none(), "the scan of a slice ends");
    }
    seen
}

/// The (region, slot) of each of `meter`'s readings a scan of two days from `base` gives.
async fn scanned_as(store: &dyn Store, meter: &str, base: i64) -> Vec<(String, i64, f64)> {
    let mut mine: Vec<(String, i64, f64)> = scan(store, at(base), at(base + 2 * 86_400), None)
        .await
        .into_iter()
        .filter(|r| r.meter_id == meter)
        .map(|r| {
            (
                r.region.to_string(),
                (r.ts.timestamp() - base) / 1800,
                r.kwh,
            )
        })
        .collect();
    mine.sort_by_key(|r| r.1);
    mine
}

/// A meter's readings over two days from `base` (48 a day, across the UTC midnight).
fn two_days(meter: &str, base: i64, slots: std::ops::Range<i64>) -> Vec<Reading> {
    slots
        .map(|s| Reading {
            meter_id: meter_id(meter),
            ts: at(base + s * 1800),
            kwh: 0.001 * s as f64,
            interval_s: 1800,
        })
        .collect()
}

/// Readings posted before their meter was registered count for its region once it is, as
/// they would had they come after: the same history gives the same profiles on every store.
pub async fn readings_from_before_registration_are_scanned_after_it(store: &dyn Store) {
    let base = T0 + 3_100 * 86_400;
    let (meter, region) = (unique_meter("m"), unique("R"));
    ok(
        store.write_readings(&two_days(&meter, base, 0..60)).await,
        "readings of a meter not registered yet",
    );
    assert!(
        scanned_as(store, &meter, base).await.is_empty(),
        "a meter in no region is in no scan"
    );
    ok(
        store.upsert_meters(&[placed_meter(&meter, &region)]).await,
        "register",
    );
    ok(
        store.write_readings(&two_days(&meter, base, 60..96)).await,
        "readings after registration",
    );
    let expected: Vec<(String, i64, f64)> = (0..96)
        .map(|s| (region.clone(), s, 0.001 * s as f64))
        .collect();
    assert_eq!(
        scanned_as(store, &meter, base).await,
        expected,
        "every reading, before and after registration, in the meter's region"
    );
}

/// A meter that moves takes its readings along: the scan files them under its new region
/// only, as a join with the meter's current region does.
pub async fn a_meter_that_moves_is_scanned_in_its_new_region_only(store: &dyn Store) {
    let base = T0 + 3_200 * 86_400;
    let (meter, from, to) = (unique_meter("m"), unique("RA"), unique("RB"));
    ok(
        store.upsert_meters(&[placed_meter(&meter, &from)]).await,
        "register",
    );
    ok(
        store.write_readings(&two_days(&meter, base, 10..70)).await,
        "readings",
    );
    ok(
        store.upsert_meters(&[placed_meter(&meter, &to)]).await,
        "move",
    );
    let expected: Vec<(String, i64, f64)> = (10..70)
        .map(|s| (to.clone(), s, 0.001 * s as f64))
        .collect();
    assert_eq!(
        scanned_as(store, &meter, base).await,
        expected,
        "all of the meter's readings in its new region, none in the old"
    );
}

/// Any meter id may be revoked, registered or not; revoking again moves the instant.
pub async fn revocations_are_listed_and_a_later_one_moves_the_instant(store: &dyn Store) {
    let (a, b) = (unique_meter("revoked"), unique_meter("never-registered"));
    store
        .upsert_meters(&[placed_meter(&a, "E09000001")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let instant = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    store
        .revoke_meter(&a, instant(1_700_000_000_123))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .revoke_meter(&b, instant(1_700_000_000_456))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .revoke_meter(&a, instant(1_700_000_009_789))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = store.revocations().await.unwrap_or_else(|e| panic!("{e}"));
    let of = |id: &str| {
        listed
            .iter()
            .find(|(m, _)| m == id)
            .map(|(_, at)| at.timestamp_millis())
    };
    assert_eq!(of(&a), Some(1_700_000_009_789));
    assert_eq!(of(&b), Some(1_700_000_000_456));
    assert!(
        store
            .meter(&a)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some(),
        "revoking keeps the registration"
    );
}

/// A lease name no other check (or earlier run on a shared node) uses.
fn unique_lease(tag: &str) -> String {
    format!("{tag}-{}", unique_meter("lease").as_str())
}

fn held_by(holder: &str) -> Lease {
    Lease::HeldBy(holder.to_owned())
}

pub async fn a_lease_has_one_holder_until_released_or_expired(store: &dyn Store) {
    let name = unique_lease("single");
    let long = std::time::Duration::from_secs(60);
    let take = |holder: &'static str, ttl| {
        let name = name.clone();
        async move {
            store
                .acquire_lease(&name, holder, ttl)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    assert_eq!(
        take("a", long).await,
        Lease::Acquired,
        "a free lease is taken"
    );
    assert_eq!(take("b", long).await, held_by("a"), "held: refused");
    assert_eq!(
        take("a", long).await,
        Lease::Acquired,
        "the holder renews it"
    );
    store
        .release_lease(&name, "b")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        take("b", long).await,
        held_by("a"),
        "only the holder releases it"
    );
    store
        .release_lease(&name, "a")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        take("b", std::time::Duration::from_secs(1)).await,
        Lease::Acquired
    );
    // A holder that dies frees the lease when its time runs out.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(
        take("c", long).await,
        Lease::Acquired,
        "an expired lease is free"
    );
}

pub async fn of_many_asking_at_once_one_gets_the_lease(store: &dyn Store) {
    let name = unique_lease("race");
    let holders: Vec<String> = (0..8).map(|i| format!("holder-{i}")).collect();
    let outcomes = futures::future::join_all(
        holders
            .iter()
            .map(|h| store.acquire_lease(&name, h, std::time::Duration::from_secs(60))),
    )
    .await;
    let winners: Vec<&String> = holders
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Ok(Lease::Acquired)))
        .map(|(h, _)| h)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for (h, o) in holders.iter().zip(&outcomes) {
        if h != winners[0] {
            assert_eq!(o.as_ref().ok(), Some(&held_by(winners[0])));
        }
    }
}

/// The live aggregator's state: entries are upserts per (part, meter, ts) and come back per
/// part from a time on; slot figures are upserts per (slot, region, part), read back summed
/// over parts; what has left the window is not read back.
pub async fn live_state_is_kept_per_part_and_summed_over_parts(store: &dyn Store) {
    let now = Utc::now();
    let slot = live::last_complete_slot(now);
    let region = code(&unique("LIVE"));
    let (p1, p2) = (rand::random::<u32>() >> 1, rand::random::<u32>() >> 1 | 1);
    let (a, b) = (unique_meter("live-a"), unique_meter("live-b"));
    let entry = |m: &MeterId, ts: DateTime<Utc>, micro: i64| LiveEntry {
        meter_id: m.clone(),
        ts,
        region: region.clone(),
        micro_kwh: micro,
    };
    let figures = |slot: DateTime<Utc>, micro: i64, meters: u32| LiveSlot {
        region: region.clone(),
        slot,
        micro_kwh: micro,
        meters,
        readings: meters,
    };
    let old = live::window_start(now) - live::SLOT;
    ok(
        store
            .put_live(
                p1,
                &[entry(&a, slot, 1_000), entry(&a, old, 5)],
                &[figures(slot, 1_000, 1), figures(old, 5, 1)],
            )
            .await,
        "put_live p1",
    );
    // The same state again, then a correction: upserts, not additions.
    ok(
        store
            .put_live(p1, &[entry(&a, slot, 1_000)], &[figures(slot, 1_000, 1)])
            .await,
        "put_live p1 again",
    );
    ok(
        store
            .put_live(p1, &[entry(&a, slot, 1_500)], &[figures(slot, 1_500, 1)])
            .await,
        "put_live p1 corrected",
    );
    ok(
        store
            .put_live(
                p2,
                &[entry(&b, slot + Duration::minutes(15), 700)],
                &[figures(slot, 700, 1)],
            )
            .await,
        "put_live p2",
    );

    let window = live::window_start(now);
    let mut got = ok(store.live_entries(p1, window).await, "live_entries p1");
    got.retain(|e| e.region == region);
    assert_eq!(
        got,
        vec![entry(&a, slot, 1_500)],
        "part 1's entries in the window"
    );
    let got = ok(store.live_entries(p2, slot).await, "live_entries p2");
    assert_eq!(got, vec![entry(&b, slot + Duration::minutes(15), 700)]);

    let slots: Vec<LiveSlot> = ok(store.live_slots(window).await, "live_slots")
        .into_iter()
        .filter(|s| s.region == region)
        .collect();
    assert_eq!(
        slots,
        vec![LiveSlot {
            region: region.clone(),
            slot,
            micro_kwh: 2_200,
            meters: 2,
            readings: 2,
        }],
        "both parts summed; the slot before the window is not read back"
    );
}
