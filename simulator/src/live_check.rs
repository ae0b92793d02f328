//! What the live aggregator's tests share (the `test-support` feature): a load of readings
//! in the live window with repeats and corrections, the slots computed again from the store's
//! own readings, and a wait until the aggregator's figures equal them exactly.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use iot_common::Reading;
use iot_common::domain::{Meter, MeterId, RegionCode};
use iot_common::live::{LiveSlot, SLOT, slot_of, slots_of, window_start};
use iot_common::store::Store;

/// `n` meters `{prefix}{i:03}`, spread over `regions` in turn.
pub fn meters(prefix: &str, n: usize, regions: &[&str]) -> Vec<Meter> {
    (0..n)
        .map(|i| Meter {
            meter_id: MeterId::parse(format!("{prefix}{i:03}"))
                .unwrap_or_else(|e| panic!("test meter prefix `{prefix}`: {e}")),
            region: Some(
                RegionCode::parse(regions[i % regions.len()])
                    .unwrap_or_else(|e| panic!("test region: {e}")),
            ),
            lat: None,
            lon: None,
            household_size: None,
            dwelling: None,
            registered_at: Utc::now() - TimeDelta::days(1),
        })
        .collect()
}

/// The first slot the load writes: well inside the window however long the test runs.
fn first_slot(now: DateTime<Utc>) -> DateTime<Utc> {
    window_start(now) + TimeDelta::hours(2)
}

/// How many rounds fit between the first slot and the last complete one.
pub fn rounds_available(now: DateTime<Utc>) -> usize {
    let span = slot_of(now) - SLOT - first_slot(now);
    usize::try_from(span.num_minutes() / 30).unwrap_or(0)
}

/// One meter's request in round `round`: the slot's new reading (two 15-minute readings for
/// odd meters), the previous round's readings again (a repeat: the meter did not hear its
/// 202) and, every third round, a corrected value for the round before that.
pub fn batch(meter: &Meter, index: usize, round: usize, now: DateTime<Utc>) -> Vec<Reading> {
    let start = first_slot(now);
    let kwh = |r: usize, part: usize, version: usize| {
        ((index * 7_919 + r * 104_729 + part * 31 + version * 1_013) % 900) as f64 / 1_000.0 + 0.001
    };
    let readings_of = |r: usize, version: usize| -> Vec<Reading> {
        let slot = start + SLOT * i32::try_from(r).unwrap_or(0);
        if index.is_multiple_of(2) {
            vec![Reading {
                meter_id: meter.meter_id.clone(),
                ts: slot,
                kwh: kwh(r, 0, version),
                interval_s: 1800,
            }]
        } else {
            (0..2)
                .map(|part| Reading {
                    meter_id: meter.meter_id.clone(),
                    ts: slot + TimeDelta::minutes(15 * part as i64),
                    kwh: kwh(r, part, version),
                    interval_s: 900,
                })
                .collect()
        }
    };
    let mut out = readings_of(round, 0);
    if round >= 1 {
        // A slot is corrected only two rounds on, so the last round's values are its first.
        out.extend(readings_of(round - 1, 0));
    }
    if round >= 2 && round.is_multiple_of(3) {
        out.extend(readings_of(round - 2, 1));
    }
    out
}

/// Each registered meter's readings of the window, as the store holds them (after the sink),
/// summed per (region, slot) directly ([`slots_of`]): what the aggregator's figures must equal.
pub async fn expected_from_readings(store: &dyn Store, meters: &[Meter]) -> Vec<LiveSlot> {
    let now = Utc::now();
    let mut all = Vec::new();
    for m in meters {
        let Some(region) = &m.region else { continue };
        let readings = store
            .meter_readings(
                &m.meter_id,
                window_start(now),
                now + TimeDelta::hours(1),
                100_000,
            )
            .await
            .unwrap_or_else(|e| panic!("read {}'s readings: {e}", m.meter_id));
        all.extend(readings.into_iter().map(|r| (region.clone(), r)));
    }
    slots_of(all.iter().map(|(region, r)| (region.clone(), r)))
}

/// The aggregator's figures of the regions `meters` live in (slots with no reading left
/// out).
pub async fn live_figures(store: &dyn Store, meters: &[Meter]) -> Vec<LiveSlot> {
    let regions: BTreeSet<&RegionCode> = meters.iter().filter_map(|m| m.region.as_ref()).collect();
    store
        .live_slots(window_start(Utc::now()))
        .await
        .unwrap_or_else(|e| panic!("live slots: {e}"))
        .into_iter()
        .filter(|s| regions.contains(&s.region) && s.readings > 0)
        .collect()
}

/// Waits up to `patience` until the store holds `readings` distinct readings of `meters`
/// and the aggregator's figures equal the slots computed from those readings; panics with
/// both when they do not.
pub async fn assert_live_equals_readings(
    store: &dyn Store,
    meters: &[Meter],
    readings: usize,
    patience: Duration,
) {
    let until = tokio::time::Instant::now() + patience;
    loop {
        let expected = expected_from_readings(store, meters).await;
        let stored: u32 = expected.iter().map(|s| s.readings).sum();
        let got = live_figures(store, meters).await;
        if stored as usize == readings && got == expected {
            return;
        }
        if tokio::time::Instant::now() >= until {
            let differ: Vec<_> = expected
                .iter()
                .filter(|e| !got.contains(e))
                .map(|e| {
                    let live = got
                        .iter()
                        .find(|g| g.region == e.region && g.slot == e.slot);
                    format!("{e:?} live {live:?}")
                })
                .take(10)
                .collect();
            panic!(
                "after {patience:?}: {stored} of {readings} readings stored; {} live slots, {} \
                 from the readings; first differences: {differ:#?}",
                got.len(),
                expected.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How many distinct (meter, ts) `rounds` rounds of [`batch`] write for `meters`.
pub fn distinct_readings(meters: &[Meter], rounds: usize) -> usize {
    let mut keys = BTreeSet::new();
    let now = Utc::now();
    for (i, m) in meters.iter().enumerate() {
        for r in 0..rounds {
            for reading in batch(m, i, r, now) {
                keys.insert((reading.meter_id, reading.ts));
            }
        }
    }
    keys.len()
}

/// Waits until `done` (see [`post_rounds`]) reaches `at_least`; panics after two minutes.
pub async fn wait_rounds(done: &std::sync::atomic::AtomicUsize, at_least: usize) {
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    while done.load(std::sync::atomic::Ordering::SeqCst) < at_least {
        assert!(tokio::time::Instant::now() < until, "the load stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts `rounds` rounds of [`batch`] for each of `meters` (with its token) to `target`, one
/// request per meter and round, each posted again until it is answered 202 (the process behind
/// `target` may be stopping or restarting). `done` counts the finished rounds.
pub async fn post_rounds(
    target: crate::acked_load::Target,
    meters: Vec<(Meter, String)>,
    rounds: usize,
    done: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default();
    let now = Utc::now();
    for round in 0..rounds {
        for (i, (meter, token)) in meters.iter().enumerate() {
            let readings = batch(meter, i, round, now);
            loop {
                let posted = client
                    .post(target.url())
                    .bearer_auth(token)
                    .json(&readings)
                    .send()
                    .await;
                if posted.is_ok_and(|res| res.status().as_u16() == 202) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_repeats_the_last_and_corrects_the_one_before() {
        let now: DateTime<Utc> = "2026-12-06T12:10:00Z".parse().unwrap();
        let m = &meters("LV", 2, &["E09000001"]);
        let b0 = batch(&m[0], 0, 0, now);
        assert_eq!(b0.len(), 1);
        let b1 = batch(&m[0], 0, 1, now);
        assert_eq!(b1[1], b0[0], "round 1 repeats round 0");
        let b3 = batch(&m[0], 0, 3, now);
        assert_eq!(b3.len(), 3);
        let b2 = batch(&m[0], 0, 2, now);
        assert_eq!(b3[1], b2[0], "round 3 repeats round 2");
        assert_eq!(b3[2].ts, b1[0].ts);
        assert_ne!(b3[2].kwh, b1[0].kwh, "round 3 corrects round 1");
        let b4 = batch(&m[0], 0, 4, now);
        assert_eq!(b4[1], b3[0]);
        assert_eq!(
            batch(&m[1], 1, 0, now).len(),
            2,
            "odd meters: 15-minute readings"
        );
        assert!(rounds_available(now) > 80);
    }
}
