//! The schema check's own tests: what it accepts, and each mistake it must catch.

use super::*;
use crate::migrate::{render, split_statements};
use crate::statements::{ALL, BOOTSTRAP};

/// The schema the migrations and the migrator's own tables create.
fn schema() -> Schema {
    let mut s = Schema::default();
    for m in iot_migrations::CQL {
        let text = render(
            m.sql,
            "iot_demo",
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        );
        s.add(&split_statements(&text))
            .unwrap_or_else(|e| panic!("{}: {e}", m.name));
    }
    let bootstrap: Vec<String> = BOOTSTRAP.iter().map(|s| s.to_string()).collect();
    s.add(&bootstrap)
        .unwrap_or_else(|e| panic!("bootstrap: {e}"));
    s
}

#[test]
fn migrations_create_the_tables_of_every_query_pattern() {
    let s = schema();
    let key = |t: &str| {
        let t = &s.tables[t];
        (t.partition_key.clone(), t.clustering_key.clone())
    };
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        key("readings_by_meter"),
        (v(&["meter_id", "day"]), v(&["ts"]))
    );
    assert_eq!(
        key("readings_by_region"),
        (v(&["region", "day"]), v(&["ts", "meter_id"]))
    );
    // Migration 6: bounded partitions for a national fleet.
    assert_eq!(
        key("readings_by_meter_month"),
        (v(&["meter_id", "month"]), v(&["ts"]))
    );
    assert_eq!(
        key("readings_by_region_shard"),
        (v(&["region", "day", "shard"]), v(&["ts", "meter_id"]))
    );
    assert!(s.tables["readings_by_region_shard"].has("interval_s"));
    assert_eq!(key("meter_data_days"), (v(&["meter_id"]), v(&["day"])));
    assert_eq!(key("store_settings"), (v(&["name"]), v(&[])));
    assert_eq!(key("regional_profiles"), (v(&["region"]), v(&[])));
    assert_eq!(key("runs"), (v(&["run_id"]), v(&[])));
    assert!(s.tables["runs"].has("published"), "added by ALTER TABLE");
    assert_eq!(key("profiles_by_run"), (v(&["run_id"]), v(&["region"])));
    assert_eq!(
        key("profile_history"),
        (v(&["region"]), v(&["computed_at", "run_id"]))
    );
    assert_eq!(key("meters"), (v(&["meter_id"]), v(&[])));
    assert_eq!(key("schema_migrations"), (v(&["version"]), v(&[])));
}

#[test]
fn every_statement_the_adapter_runs_fits_the_migrated_schema() {
    let s = schema();
    for st in ALL {
        if let Err(e) = s.check(st) {
            panic!("statement does not fit the schema: {e}\n  {st}");
        }
    }
}

#[test]
fn the_check_catches_what_breaks_a_query() {
    let s = schema();
    let bad = [
        // A column that does not exist.
        (
            "SELECT ts, kwhh FROM readings_by_meter WHERE meter_id = ? AND day = ?",
            "kwhh",
        ),
        // A table that does not exist.
        ("SELECT ts FROM readings WHERE meter_id = ?", "no table"),
        // Part of the partition key missing.
        (
            "SELECT ts FROM readings_by_meter WHERE meter_id = ?",
            "partition key",
        ),
        // A range on the second clustering column without the first.
        (
            "SELECT ts FROM readings_by_region WHERE region = ? AND day = ? AND meter_id > ?",
            "earlier",
        ),
        // A regular column in WHERE.
        (
            "SELECT ts FROM readings_by_meter WHERE meter_id = ? AND day = ? AND kwh > ?",
            "ALLOW FILTERING",
        ),
        // An insert without its clustering key.
        (
            "INSERT INTO readings_by_meter (meter_id, day, kwh) VALUES (?, ?, ?)",
            "`ts`",
        ),
        ("INSERT INTO meters (meter_id, region) VALUES (?)", "values"),
        // A shard left out of a scan or a write of the sharded table.
        (
            "SELECT ts FROM readings_by_region_shard WHERE region = ? AND day = ? AND ts >= ?",
            "`shard`",
        ),
        (
            "INSERT INTO readings_by_region_shard (region, day, ts, meter_id, kwh) VALUES (?, ?, ?, ?, ?)",
            "`shard`",
        ),
        (
            "INSERT INTO meter_data_days (meter_id, day, latest) VALUES (?, ?, ?) USING WRITETIME ?",
            "TTL or TIMESTAMP",
        ),
        // An update that sets a key column, or one without the whole key.
        (
            "UPDATE leases SET name = ? WHERE name = ? IF holder = ?",
            "not a regular column",
        ),
        (
            "UPDATE leases SET holder = ? WHERE holder = ?",
            "partition key",
        ),
    ];
    for (st, why) in bad {
        let e = s.check(st).expect_err(st);
        assert!(e.contains(why), "{st}: {e}");
    }
}

#[test]
fn a_schema_edit_that_reorders_a_key_breaks_the_scan() {
    let mut s = Schema::default();
    s.add(&["CREATE TABLE readings_by_region_shard (region text, day date, shard int, ts timestamp, meter_id text, kwh double, interval_s int, PRIMARY KEY ((region, day, shard), meter_id, ts))".to_owned()]).unwrap();
    let e = s.check(crate::statements::REGION_DAY_SCAN).unwrap_err();
    assert!(e.contains("earlier"), "{e}");
    let e = Schema::default()
        .add(&["CREATE TABLE t (a int, b int, c int, PRIMARY KEY (a, b, c)) WITH CLUSTERING ORDER BY (c ASC, b ASC)".to_owned()])
        .unwrap_err();
    assert!(e.contains("CLUSTERING ORDER"), "{e}");
}
