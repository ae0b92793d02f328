//! The consumer contract: behaviour every [`Bus`] adapter's consumers must show (the rules on
//! [`Consumer`]), written once. Adapters run it with
//! [`bus_contract_tests!`](crate::bus_contract_tests); each check gets a fresh, empty bus.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::{Bus, Consumer};
use crate::domain::Reading;

/// Generates one `#[tokio::test]` per contract check; `$make` is an async expression giving
/// something that derefs to a fresh, empty bus (a guard may also hold its broker or files),
/// or `None` when that bus cannot be had here (the maker says so loudly).
#[macro_export]
macro_rules! bus_contract_tests {
    ($make:expr) => {
        $crate::bus_contract_tests!(@each $make;
            commit_never_passes_a_reading_not_handed_out,
            polls_cut_short_by_shutdown_lose_nothing,
            one_meters_readings_come_in_order);
    };
    (@each $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(bus) = $make.await else { return };
                $crate::bus::contract::$check(&*bus).await;
            }
        )*
    };
}

/// How long a check waits for readings it knows are on the bus.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long nothing must come for a check to conclude that nothing will.
const QUIET: Duration = Duration::from_secs(3);

fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `per_meter` readings of each of `meters` meters, interleaved by time, each with a value of
/// its own.
fn readings(meters: usize, per_meter: usize) -> Vec<Reading> {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (0..per_meter)
        .flat_map(|i| {
            (0..meters).map(move |m| Reading {
                meter_id: format!("C{m:03}"),
                ts: start + chrono::Duration::minutes(30 * i as i64),
                kwh: (m * 1000 + i) as f64 / 10_000.0,
                interval_s: 1800,
            })
        })
        .collect()
}

fn key(r: &Reading) -> (String, i64) {
    (r.meter_id.clone(), r.ts.timestamp())
}

/// Polls until `n` readings came or [`PATIENCE`] passed.
async fn take(consumer: &mut dyn Consumer, n: usize) -> Vec<Reading> {
    let until = tokio::time::Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < until {
        got.extend(ok(
            consumer
                .poll(n - got.len(), Duration::from_millis(200))
                .await,
            "poll",
        ));
    }
    got
}

/// What is still to come, when `expected` readings are: polls until that many came (or
/// [`PATIENCE`] passed), then once more to catch any beyond. A new group member may take
/// seconds to be given its partitions, so "nothing more" is a quiet [`QUIET`].
async fn drain(consumer: &mut dyn Consumer, expected: usize) -> Vec<Reading> {
    let mut got = take(consumer, expected).await;
    let until = tokio::time::Instant::now() + QUIET;
    while tokio::time::Instant::now() < until {
        let more = ok(consumer.poll(1000, Duration::from_millis(200)).await, "poll");
        if more.is_empty() && !got.is_empty() && expected > 0 {
            break;
        }
        got.extend(more);
    }
    got
}

/// Checks that `got` is exactly `expected`, whatever the order, naming what differs.
fn same_readings(got: &[Reading], expected: &[Reading], what: &str) {
    let mut count: HashMap<(String, i64), (i64, Option<f64>)> = HashMap::new();
    for r in expected {
        let e = count.entry(key(r)).or_insert((0, Some(r.kwh)));
        e.0 += 1;
    }
    for r in got {
        let e = count.entry(key(r)).or_insert((0, None));
        assert_eq!(e.1, Some(r.kwh), "{what}: unexpected reading {r:?}");
        e.0 -= 1;
    }
    let off: Vec<_> = count.into_iter().filter(|(_, (n, _))| *n != 0).collect();
    assert!(
        off.is_empty(),
        "{what}: {} readings missing (+) or repeated (-), e.g. {:?}",
        off.len(),
        off.iter().take(3).collect::<Vec<_>>()
    );
}

fn without(all: &[Reading], taken: &[Reading]) -> Vec<Reading> {
    let taken: std::collections::HashSet<(String, i64)> = taken.iter().map(key).collect();
    all.iter()
        .filter(|r| !taken.contains(&key(r)))
        .cloned()
        .collect()
}

/// A commit covers what was handed out before it and nothing else: the next member of the
/// group gets exactly the rest, including what was handed out after the commit.
pub async fn commit_never_passes_a_reading_not_handed_out(bus: &dyn Bus) {
    let all = readings(4, 25);
    ok(bus.publish(&all).await, "publish");
    let mut first = ok(bus.subscribe("contract").await, "subscribe");
    let handed = take(first.as_mut(), 30).await;
    assert_eq!(handed.len(), 30, "the first 30 readings");
    ok(first.commit().await, "commit");
    // Handed out after the commit and never committed: the next member must see them.
    let uncommitted = take(first.as_mut(), 20).await;
    assert_eq!(uncommitted.len(), 20);
    drop(first);
    let mut next = ok(bus.subscribe("contract").await, "subscribe again");
    let expected = without(&all, &handed);
    let rest = drain(next.as_mut(), expected.len()).await;
    same_readings(&rest, &expected, "the next member after a commit of 30");
    ok(next.commit().await, "commit the rest");
    drop(next);
    let mut last = ok(bus.subscribe("contract").await, "subscribe once more");
    let again = drain(last.as_mut(), 0).await;
    assert!(again.is_empty(), "all committed: {} came again", again.len());
}

/// Polls dropped at every point a shutdown might cut them (a race against a timer) lose
/// nothing: each reading is handed out by a later poll, and a commit made meanwhile covers
/// only what was handed out; a consumer dropped then leaves the rest to the next member.
pub async fn polls_cut_short_by_shutdown_lose_nothing(bus: &dyn Bus) {
    let all = readings(4, 50);
    ok(bus.publish(&all).await, "publish");
    let mut consumer = ok(bus.subscribe("contract").await, "subscribe");
    let mut handed = take(consumer.as_mut(), 5).await;
    for i in 0..40u64 {
        let cut = Duration::from_micros(50 + 97 * i);
        let poll = consumer.poll(7, Duration::from_millis(20));
        if let Ok(polled) = tokio::time::timeout(cut, poll).await {
            handed.extend(ok(polled, "poll"));
        }
        if i % 10 == 0 {
            ok(consumer.commit().await, "commit between cut polls");
        }
    }
    // A shutdown now: what was handed out is committed, the consumer dropped.
    ok(consumer.commit().await, "commit");
    drop(consumer);
    let mut next = ok(bus.subscribe("contract").await, "subscribe again");
    let expected = without(&all, &handed);
    let rest = drain(next.as_mut(), expected.len()).await;
    same_readings(&rest, &expected, "after cut polls, the next member");
    let mut seen = handed;
    seen.extend(rest);
    same_readings(&seen, &all, "handed out before and after the cut polls");
}

/// One meter's readings are handed out in the order they were published, across polls and
/// a change of member.
pub async fn one_meters_readings_come_in_order(bus: &dyn Bus) {
    let all = readings(3, 40);
    for chunk in all.chunks(13) {
        ok(bus.publish(chunk).await, "publish");
    }
    let mut consumer = ok(bus.subscribe("contract").await, "subscribe");
    let mut got = take(consumer.as_mut(), 50).await;
    ok(consumer.commit().await, "commit");
    drop(consumer);
    let mut next = ok(bus.subscribe("contract").await, "subscribe again");
    got.extend(drain(next.as_mut(), all.len() - got.len()).await);
    same_readings(&got, &all, "everything once");
    for meter in ["C000", "C001", "C002"] {
        let ts: Vec<i64> = got
            .iter()
            .filter(|r| r.meter_id == meter)
            .map(|r| r.ts.timestamp())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{meter} out of order");
    }
}
