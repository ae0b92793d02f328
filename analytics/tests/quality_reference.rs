//! The profile from validated meter-days equals an independent computation of the stated
//! rules in DuckDB SQL (`bench/quality_duckdb.py`), on readings with gaps, outages, spikes,
//! a zero day, finer readings and meters that start late, across a DST change; and on clean
//! readings it equals the reference profile script (`bench/reference/profile_duckdb.py`),
//! which knows nothing of validation.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use iot_analytics::aggregate::ProfileFigures;
use iot_analytics::output::parquet_writer;
use iot_analytics::schema::{readings_schema, rows_to_batch};
use iot_analytics::source::{aggregate, register_parquet, session};
use iot_common::store::RegionReading;
use rand::rngs::Xoshiro256PlusPlus as SeededRng;
use rand::{RngExt, SeedableRng};

const LONDON: chrono_tz::Tz = chrono_tz::Europe::London;
const REGIONS: [&str; 3] = ["E09000001", "E09000002", "E09000003"];

fn day_start(d: NaiveDate) -> i64 {
    LONDON
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map_or(0, |t| t.timestamp())
}

fn at(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// 36 London days around the autumn DST change (2026-10-25 has 50 half hours), 30 meters.
/// With `faults`, meter-days get gaps of 1 to 6 half hours (8 %), outages of 1 to 5 days
/// (2 % start one), spikes of 10 to 50 times the usual (4 %); meter 0 has a day of zero use,
/// meter 1 reports quarter hours, meters 2 and 3 start at noon of the tenth day.
fn readings(faults: bool) -> Vec<RegionReading> {
    let first: NaiveDate = "2026-10-05".parse().unwrap_or_default();
    let days = 36;
    let mut rng = SeededRng::seed_from_u64(26);
    let mut rows = Vec::new();
    for m in 0..30u32 {
        let meter: iot_common::domain::MeterId = format!("VEE{m:04}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let region: iot_common::domain::RegionCode = REGIONS[m as usize % 3]
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let usual = 0.1 + 0.01 * f64::from(m);
        let mut silent_until = i64::MIN;
        for day in 0..days {
            let d = first + chrono::Days::new(day);
            let (start, end) = (day_start(d), day_start(d + chrono::Days::new(1)));
            let gap = (faults && rng.random::<f64>() < 0.08).then(|| {
                let from = start + rng.random_range(0..46) * 1800;
                (from, from + rng.random_range(1..=6) * 1800)
            });
            if faults && rng.random::<f64>() < 0.02 {
                silent_until =
                    start + rng.random_range(0..48) * 1800 + rng.random_range(1..=5) * 86_400;
            }
            let spike = (faults && rng.random::<f64>() < 0.04).then(|| {
                (
                    start + rng.random_range(0..46) * 1800,
                    rng.random_range(10.0..=50.0),
                )
            });
            let late_start = faults && (m == 2 || m == 3) && day < 9;
            let mut t = start;
            while t < end {
                let hour = f64::from(((t - start) / 3600) as u32);
                let shape = 1.0 + 0.6 * (hour / 24.0 * std::f64::consts::TAU).sin();
                let noise = 0.8 + 0.4 * rng.random::<f64>();
                let mut kwh = (usual * shape * noise * 1000.0).round() / 1000.0;
                if faults && m == 0 && day == 20 {
                    kwh = 0.0;
                }
                if spike.is_some_and(|(s, _)| s == t) {
                    kwh = (usual * spike.map_or(1.0, |(_, x)| x) * 1000.0).round() / 1000.0;
                }
                let skipped = gap.is_some_and(|(a, b)| (a..b).contains(&t))
                    || t < silent_until
                    || (late_start
                        || (faults && (m == 2 || m == 3) && day == 9 && t < start + 12 * 3600));
                if !skipped {
                    if faults && m == 1 {
                        let half = (kwh / 2.0 * 1000.0).round() / 1000.0;
                        for (q, v) in [(0, half), (900, kwh - half)] {
                            rows.push(RegionReading {
                                region: region.clone(),
                                meter_id: meter.clone(),
                                ts: at(t + q),
                                kwh: v,
                                interval_s: Some(900),
                            });
                        }
                    } else {
                        rows.push(RegionReading {
                            region: region.clone(),
                            meter_id: meter.clone(),
                            ts: at(t),
                            kwh,
                            interval_s: Some(1800),
                        });
                    }
                }
                t += 1800;
            }
        }
    }
    rows
}

fn write_parquet(path: &Path, rows: &[RegionReading]) {
    let schema = readings_schema();
    let batch = rows_to_batch(&schema, rows).unwrap_or_else(|e| panic!("{e}"));
    let mut w = parquet_writer(path, schema).unwrap_or_else(|e| panic!("{e}"));
    w.write(&batch).unwrap_or_else(|e| panic!("{e}"));
    w.close().unwrap_or_else(|e| panic!("{e}"));
}

async fn job(path: &Path) -> Vec<ProfileFigures> {
    let ctx = session(2);
    register_parquet(&ctx, &path.to_string_lossy())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    aggregate(&ctx, LONDON, None, Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a reference script; `None` (after saying so, or failing under CI) without Python
/// and DuckDB.
fn reference(
    test: &str,
    script: &str,
    input: &Path,
    out: &Path,
) -> Option<Vec<HashMap<String, String>>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let ran = Command::new("python3")
        .arg(format!("{root}/{script}"))
        .arg(input)
        .arg(out)
        .output();
    match ran {
        Ok(o) if o.status.success() => {}
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'duckdb'") => {
            iot_common::test_services::missing(
                test,
                "Python has no duckdb (pip install duckdb)",
                None,
            );
            return None;
        }
        Ok(o) => panic!("{script}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            iot_common::test_services::missing(test, &format!("python3: {e}"), None);
            return None;
        }
    }
    let text = std::fs::read_to_string(out).unwrap_or_else(|e| panic!("{e}"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    Some(
        lines
            .map(|l| {
                header
                    .iter()
                    .zip(l.split(','))
                    .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
                    .collect()
            })
            .collect(),
    )
}

fn num(row: &HashMap<String, String>, key: &str) -> f64 {
    row.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn close(what: &str, ours: f64, theirs: f64, rel: f64) {
    assert!(
        (ours - theirs).abs() <= rel * theirs.abs().max(1.0),
        "{what}: the job says {ours}, the reference {theirs}"
    );
}

/// Every figure of both, region by region.
fn compare(ours: &[ProfileFigures], theirs: &[HashMap<String, String>], hourly_rel: f64) {
    assert_eq!(ours.len(), theirs.len(), "regions");
    for (p, r) in ours.iter().zip(theirs) {
        let region = p.region.as_str();
        assert_eq!(r.get("region_id").map(String::as_str), Some(region));
        assert_eq!(p.meters as f64, num(r, "meters"), "{region} meters");
        assert_eq!(p.readings as f64, num(r, "readings"), "{region} readings");
        for (what, ours, theirs) in [
            ("avg", p.avg_daily_kwh, num(r, "avg_daily_kwh")),
            ("p50", p.p50_daily_kwh, num(r, "p50_daily_kwh")),
            ("p90", p.p90_daily_kwh, num(r, "p90_daily_kwh")),
            (
                "weekday",
                p.weekday_avg_daily_kwh.unwrap_or(f64::NAN),
                num(r, "weekday_avg_daily_kwh"),
            ),
            (
                "weekend",
                p.weekend_avg_daily_kwh.unwrap_or(f64::NAN),
                num(r, "weekend_avg_daily_kwh"),
            ),
        ] {
            close(&format!("{region} {what}"), ours, theirs, 1e-9);
        }
        for h in 0..24 {
            close(
                &format!("{region} h{h:02}"),
                p.hourly_kwh[h],
                num(r, &format!("h{h:02}")),
                hourly_rel,
            );
        }
        assert_eq!(
            f64::from(p.peak_hour),
            num(r, "peak_hour"),
            "{region} peak hour"
        );
    }
}

#[tokio::test]
async fn validated_profiles_equal_the_duckdb_reference_of_the_stated_rules() {
    let test = "validated_profiles_equal_the_duckdb_reference_of_the_stated_rules";
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = dir.path().join("faulty.parquet");
    write_parquet(&input, &readings(true));
    let Some(theirs) = reference(
        test,
        "bench/quality_duckdb.py",
        &input,
        &dir.path().join("ref.csv"),
    ) else {
        return;
    };
    let ours = job(&input).await;
    compare(&ours, &theirs, 1e-9);
    let mut totals = (0, 0, 0);
    for (p, r) in ours.iter().zip(&theirs) {
        let counts = p.meter_days;
        assert_eq!(
            (
                counts.complete as f64,
                counts.estimated as f64,
                counts.excluded as f64
            ),
            (num(r, "complete"), num(r, "estimated"), num(r, "excluded")),
            "{} meter-days",
            p.region
        );
        totals = (
            totals.0 + counts.complete,
            totals.1 + counts.estimated,
            totals.2 + counts.excluded,
        );
    }
    // The faults reach every rule: some days estimated, some left out.
    assert!(
        totals.1 > 20 && totals.2 > 10,
        "complete, estimated, excluded: {totals:?}"
    );
}

#[tokio::test]
async fn on_clean_readings_the_profiles_are_the_reference_profiles() {
    let test = "on_clean_readings_the_profiles_are_the_reference_profiles";
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = dir.path().join("clean.parquet");
    let rows = readings(false);
    write_parquet(&input, &rows);
    let Some(theirs) = reference(
        test,
        "bench/reference/profile_duckdb.py",
        &input,
        &dir.path().join("ref.csv"),
    ) else {
        return;
    };
    let ours = job(&input).await;
    // The reference prints hours to six decimals.
    compare(&ours, &theirs, 1e-6);
    let days: u64 = ours.iter().map(|p| p.meter_days.complete).sum();
    assert_eq!(days, 30 * 36, "every meter-day complete");
    assert!(
        ours.iter()
            .all(|p| p.meter_days.estimated + p.meter_days.excluded == 0)
    );
}
