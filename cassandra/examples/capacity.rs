//! Prints the capacity plan's figures (docs/capacity.md) for the demo fleet, a city and a
//! national fleet: `cargo run -p iot-cassandra --example capacity`.

use iot_cassandra::capacity::{Fleet, ROW_FRAMING, plan, row_sizes};
use iot_cassandra::layout::DEFAULT_REGION_SHARDS;

/// Rows per second one Cassandra node served the profile job's scan, measured with
/// `bench/stores.sh` (one node and the analytics process sharing 2 cores; docs/capacity.md).
const NODE_SCAN_ROWS_PER_S: f64 = 305_000.0;
/// Rows per second one analytics process scanned from Cassandra in that same measurement:
/// the two were not separated, so the same figure bounds both.
const CLIENT_ROWS_PER_S: f64 = 305_000.0;
/// Data per node before compression that compaction and repair stay comfortable with.
const BYTES_PER_NODE: f64 = 2e12;

fn main() {
    let sizes = row_sizes(12);
    println!(
        "row bytes (12-character meter id; framing {ROW_FRAMING} per row): by region {}, by meter {}, meter-day {}",
        sizes.by_region, sizes.by_meter, sizes.meter_day
    );
    let fleets = [
        ("demo", 300, 33, 20, 10, 3),
        ("city", 100_000, 33, 10_000, 12, 3),
        ("national", 30_000_000, 300, 100_000, 12, 3),
    ];
    println!(
        "\n| fleet | readings/day | sink readings/s | rows written/s | bytes/day (1 replica) | retained, RF 3 | largest region-day partition | meter-month partition | rows scanned per 28-day run | partitions per run | nodes (storage) | run time | run time from rollups |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, meters, regions, largest, id_len, rf) in fleets {
        let f = Fleet {
            meters,
            largest_region: largest,
            regions,
            interval_s: 1800,
            id_len,
            shards: u64::from(DEFAULT_REGION_SHARDS),
            window_days: 28,
            retention_days: 730,
            replication: rf,
        };
        let p = plan(&f);
        let nodes = (p.bytes_retained as f64 / BYTES_PER_NODE)
            .ceil()
            .max(rf as f64);
        let rate = (nodes * NODE_SCAN_ROWS_PER_S).min(CLIENT_ROWS_PER_S);
        let seconds = p.rows_scanned_per_run as f64 / rate;
        let rollup_seconds = p.rollup_rows_per_run as f64 / rate;
        println!(
            "| {name} ({meters} meters) | {} | {:.1} | {:.1} | {} | {} | {} rows, {} | {} rows | {} | {} | {nodes:.0} | {} | {} |",
            p.readings_per_day,
            p.sink_readings_per_s,
            p.sink_rows_per_s,
            human(p.bytes_per_day as f64),
            human(p.bytes_retained as f64),
            p.region_day_partition_rows,
            human(p.region_day_partition_bytes as f64),
            p.meter_month_partition_rows,
            p.rows_scanned_per_run,
            p.partitions_per_run,
            duration(seconds),
            duration(rollup_seconds),
        );
    }
}

fn human(bytes: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

fn duration(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
