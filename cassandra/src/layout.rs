//! Where a reading's rows live: the partitions of `readings_by_meter_month` (meter, month)
//! and `readings_by_region_shard` (region, day, shard), and the scan slices over the latter.
//! Pure, so the bounds are tested without a cluster.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use iot_common::domain::RegionCode;
use iot_common::store::StoreError;

/// Shards of a region-day when `migrate` creates the keyspace and none is named: at the
/// planned 100,000 meters in a region posting half-hourly (4.8 M readings a region-day), 64
/// shards keep a partition near 75,000 rows, under the ~100,000 a partition comfortably
/// holds (docs/capacity.md), with room for 15-minute meters in smaller regions.
pub const DEFAULT_REGION_SHARDS: u32 = 64;
/// The setting in `store_settings` that fixes a keyspace's shards per region-day.
pub const REGION_SHARDS: &str = "region_shards";
/// Most shards a keyspace may have: a scan reads one partition per (region, day, shard).
pub const MAX_REGION_SHARDS: u32 = 4096;

/// A meter's shard: FNV-1a (64-bit) of its id, mixed by MurmurHash3's 64-bit finalizer,
/// modulo `shards`. Fixed by definition, not by a library's hasher, so every process and
/// every version files a meter in the same shard. The finalizer matters: FNV-1a's low bits
/// alone spread ids that differ only in their last digits unevenly (a 37 % over-full shard in
/// the test below).
pub fn shard_of(meter_id: &str, shards: u32) -> i32 {
    // Below MAX_REGION_SHARDS, so it fits.
    (fmix64(fnv1a(meter_id.as_bytes())) % u64::from(shards.max(1))) as i32
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

pub fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// The first day of `t`'s UTC month: the `month` of `readings_by_meter_month`.
pub fn month_of(t: DateTime<Utc>) -> NaiveDate {
    let d = day_of(t);
    d.with_day(1).unwrap_or(d)
}

pub fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The day of the last instant before `to`: a window ending at midnight ends the day before.
pub fn last_day(to: DateTime<Utc>) -> NaiveDate {
    day_of(to - TimeDelta::milliseconds(1))
}

/// The days from the day of `from` to the day of the last instant before `to`.
pub fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDate> {
    if from >= to {
        return Vec::new();
    }
    let last = last_day(to);
    day_of(from)
        .iter_days()
        .take_while(|d| *d <= last)
        .collect()
}

/// The months (their first days) that `[from, to)` touches, in order.
pub fn months(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDate> {
    let mut out: Vec<NaiveDate> = Vec::new();
    for d in days(from, to) {
        let m = d.with_day(1).unwrap_or(d);
        if out.last() != Some(&m) {
            out.push(m);
        }
    }
    out
}

/// A scan slice's part: one `readings_by_region_shard` partition, as `<day>/<region>/<shard>`.
pub fn slice_part(region: &str, day: NaiveDate, shard: i32) -> String {
    format!("{day}/{region}/{shard}")
}

pub fn parse_part(part: &str) -> Result<(RegionCode, NaiveDate, i32), StoreError> {
    let bad = || StoreError::Corrupt(format!("bad scan slice `{part}`").into());
    let (day, rest) = part.split_once('/').ok_or_else(bad)?;
    let (region, shard) = rest.rsplit_once('/').ok_or_else(bad)?;
    let day = day.parse::<NaiveDate>().map_err(|_| bad())?;
    let shard = shard
        .parse::<i32>()
        .ok()
        .filter(|s| (0..MAX_REGION_SHARDS as i32).contains(s))
        .ok_or_else(bad)?;
    Ok((RegionCode::parse(region).map_err(|_| bad())?, day, shard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn days_cover_the_half_open_window() {
        assert_eq!(
            days(at("2026-03-28T23:00:00Z"), at("2026-03-30T23:00:00Z")),
            vec![d("2026-03-28"), d("2026-03-29"), d("2026-03-30")]
        );
        // `to` at midnight does not reach into the next day.
        assert_eq!(
            days(at("2026-03-29T00:00:00Z"), at("2026-03-30T00:00:00Z")),
            vec![d("2026-03-29")]
        );
        assert!(days(at("2026-03-29T00:00:00Z"), at("2026-03-29T00:00:00Z")).is_empty());
        assert_eq!(
            day_start(d("2026-03-29")),
            Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn a_year_of_read_back_touches_at_most_13_months() {
        let m = months(at("2025-11-21T10:00:00Z"), at("2026-11-21T10:00:00Z"));
        assert_eq!(m.len(), 13);
        assert_eq!(m[0], d("2025-11-01"));
        assert_eq!(m[12], d("2026-11-01"));
        // A year starting on the first of a month and ending at midnight: 12.
        let m = months(at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"));
        assert_eq!(m.len(), 12);
        assert_eq!(month_of(at("2026-02-28T23:59:59Z")), d("2026-02-01"));
    }

    #[test]
    fn slice_parts_round_trip_and_bad_ones_are_refused() {
        let day = d("2026-11-21");
        let part = slice_part("E09000001", day, 17);
        assert_eq!(
            parse_part(&part).unwrap(),
            (RegionCode::parse("E09000001").unwrap(), day, 17)
        );
        for bad in [
            "",
            "E09000001",
            "2026-11-21/E09000001",
            "2026-13-01/E0900/1",
            "2026-11-21/E09000001/-1",
            "2026-11-21/E09000001/99999",
            "x/y/z",
        ] {
            assert!(
                matches!(parse_part(bad), Err(StoreError::Corrupt(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn shards_are_fixed_by_definition() {
        // FNV-1a's published test vectors (the empty string is the offset basis) and
        // MurmurHash3's fmix64, whose only fixed point near zero is zero.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fmix64(0), 0);
        // Pinned: a change here moves every stored reading to another shard.
        assert_eq!(fmix64(fnv1a(b"a")), 9_413_272_369_427_828_315);
        assert_eq!(
            (shard_of("HOME0001", 64), shard_of("HOME0002", 64)),
            (18, 9)
        );
        assert_eq!(shard_of("HOME0001", 1), 0);
        assert!((0..64).contains(&shard_of("HOME0001", 64)));
    }

    /// The acceptance bound: a 100,000-meter region's day, half-hourly, in the default
    /// shards, leaves no partition over 100,000 rows (and none far from the mean: the hash
    /// spreads the fleet's real id shapes).
    #[test]
    fn a_100k_meter_region_day_stays_under_the_partition_bound() {
        const BOUND: u64 = 100_000;
        let per_meter_day = 48u64;
        for ids in [
            (0..100_000)
                .map(|i| format!("HOME{i:07}"))
                .collect::<Vec<_>>(),
            (0..100_000)
                .map(|i| format!("MTR-E09000{:03}-{i:06}", i % 33))
                .collect(),
        ] {
            let mut rows = vec![0u64; DEFAULT_REGION_SHARDS as usize];
            for id in &ids {
                rows[shard_of(id, DEFAULT_REGION_SHARDS) as usize] += per_meter_day;
            }
            let max = rows.iter().copied().max().unwrap_or(0);
            let mean = 100_000 * per_meter_day / u64::from(DEFAULT_REGION_SHARDS);
            assert!(max < BOUND, "largest partition {max} rows");
            assert!(max < mean * 11 / 10, "largest {max} vs mean {mean}");
            assert!(rows.iter().all(|n| *n > 0), "every shard used");
        }
    }
}
