//! The consumer contract: behaviour every [`Bus`] adapter's consumers must show (the rules on
//! [`Consumer`]), written once. Adapters run it with
//! [`bus_contract_tests!`](crate::bus_contract_tests); each check gets a fresh, empty bus.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::{Bus, Consumer};
use crate::domain::{MeterId, Reading};

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
                meter_id: MeterId::parse(format!("C{m:03}")).unwrap_or_else(|e| panic!("{e}")),
                ts: start + chrono::Duration::minutes(30 * i as i64),
                kwh: (m * 1000 + i) as f64 / 10_000.0,
                interval_s: 1800,
            })
        })
        .collect()
}

fn key(r: &Reading) -> (MeterId, i64) {
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

/// What is still to come, when `expected` are: polls until each of them came at least once
/// (or [`PATIENCE`] passed), then until nothing came for a while, to catch any beyond. Delivery
/// is at least once: a rebalance may hand a reading out again, so repeats are kept.
async fn drain(consumer: &mut dyn Consumer, expected: &[Reading]) -> Vec<Reading> {
    let mut pending: HashSet<(MeterId, i64)> = expected.iter().map(key).collect();
    let until = tokio::time::Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while !pending.is_empty() && tokio::time::Instant::now() < until {
        let more = ok(
            consumer.poll(1000, Duration::from_millis(200)).await,
            "poll",
        );
        for r in &more {
            pending.remove(&key(r));
        }
        got.extend(more);
    }
    // Nothing more for a while (a new member may take seconds to be given its partitions).
    let quiet = if expected.is_empty() {
        QUIET
    } else {
        Duration::from_millis(500)
    };
    loop {
        let more = ok(consumer.poll(1000, quiet).await, "poll");
        if more.is_empty() {
            return got;
        }
        got.extend(more);
    }
}

/// Checks that `got` holds every reading of `expected`, with its value, and nothing else
/// (repeats allowed: delivery is at least once), naming what differs.
fn covers(got: &[Reading], expected: &[Reading], what: &str) {
    let want: HashMap<(MeterId, i64), f64> = expected.iter().map(|r| (key(r), r.kwh)).collect();
    for r in got {
        assert_eq!(
            want.get(&key(r)),
            Some(&r.kwh),
            "{what}: a reading that should not come: {r:?}"
        );
    }
    let seen: HashSet<(MeterId, i64)> = got.iter().map(key).collect();
    let missing: Vec<&(MeterId, i64)> = want.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} readings never came, e.g. {:?}",
        missing.len(),
        want.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
}

fn without(all: &[Reading], taken: &[Reading]) -> Vec<Reading> {
    let taken: HashSet<(MeterId, i64)> = taken.iter().map(key).collect();
    all.iter()
        .filter(|r| !taken.contains(&key(r)))
        .cloned()
        .collect()
}

/// A commit covers what was handed out before it and nothing else: the next member of the
/// group gets all the rest, including what was handed out after the commit, and nothing that
/// was committed.
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
    let rest = drain(next.as_mut(), &expected).await;
    covers(&rest, &expected, "the next member after a commit of 30");
    ok(next.commit().await, "commit the rest");
    drop(next);
    let mut last = ok(bus.subscribe("contract").await, "subscribe once more");
    let again = drain(last.as_mut(), &[]).await;
    assert!(
        again.is_empty(),
        "all committed: {} came again",
        again.len()
    );
}

/// Polls dropped at every point a shutdown might cut them (a race against a timer) lose
/// nothing: a commit made meanwhile covers only what was handed out, so the next member gets
/// everything else.
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
    let rest = drain(next.as_mut(), &expected).await;
    covers(&rest, &expected, "after cut polls, the next member");
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
    got.extend(drain(next.as_mut(), &without(&all, &got)).await);
    covers(&got, &all, "everything");
    // A repeat (after a rebalance) starts over from a commit; first sightings keep the order.
    let mut first = HashSet::new();
    got.retain(|r| first.insert(key(r)));
    for meter in ["C000", "C001", "C002"] {
        let ts: Vec<i64> = got
            .iter()
            .filter(|r| r.meter_id == meter)
            .map(|r| r.ts.timestamp())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{meter} out of order");
    }
}
