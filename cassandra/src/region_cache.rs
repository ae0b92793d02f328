//! The regions of meters the sink writes for, so that filing a reading under its region does
//! not read `meters` once per reading. Bounded (least recently used entries go first) and
//! with a time to live longer than the posting interval: a half-hourly meter is looked up
//! once per TTL, not once per post. Only known regions are kept: a meter in no region may be
//! placed any moment, and its readings must see that at once.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use iot_common::domain::{MeterId, RegionCode};
use lru::LruCache;

/// Defaults: four hours is eight posts of a half-hourly meter per lookup; 1,000,000 entries
/// (about 100 MB) hold the meters of a sink's share of a national fleet's partitions.
pub const DEFAULT_TTL: Duration = Duration::from_secs(4 * 3600);
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// What the cache says of one meter.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    /// Known and fresh.
    Fresh(RegionCode),
    /// Known once, but older than the TTL: look it up again; if the region changed, this
    /// process may have filed readings under the old one since the meter moved.
    Stale(RegionCode),
    Unknown,
}

pub struct RegionCache {
    entries: Mutex<LruCache<MeterId, (RegionCode, Instant)>>,
    ttl: Duration,
}

impl RegionCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
            ttl,
        }
    }

    pub fn get(&self, meter: &MeterId) -> Cached {
        let Ok(mut entries) = self.entries.lock() else {
            return Cached::Unknown;
        };
        match entries.get(meter) {
            Some((region, at)) if at.elapsed() < self.ttl => Cached::Fresh(region.clone()),
            Some((region, _)) => Cached::Stale(region.clone()),
            None => Cached::Unknown,
        }
    }

    /// Records what was looked up or written: a region, or none (forgets the meter).
    pub fn put(&self, meter: &MeterId, region: Option<&RegionCode>) {
        if let Ok(mut entries) = self.entries.lock() {
            match region {
                Some(r) => {
                    entries.put(meter.clone(), (r.clone(), Instant::now()));
                }
                None => {
                    entries.pop(meter);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_into_stale_and_the_least_recent_goes_first() {
        let m = |s: &str| MeterId::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let r = |s: &str| RegionCode::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let cache = RegionCache::new(2, Duration::from_millis(30));
        cache.put(&m("a"), Some(&r("R1")));
        cache.put(&m("b"), Some(&r("R2")));
        assert_eq!(cache.get(&m("a")), Cached::Fresh(r("R1")));
        cache.put(&m("c"), Some(&r("R3")));
        // "b" was used least recently.
        assert_eq!(cache.get(&m("b")), Cached::Unknown);
        assert_eq!(cache.entries.lock().unwrap().len(), 2);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&m("a")), Cached::Stale(r("R1")));
        cache.put(&m("a"), None);
        assert_eq!(cache.get(&m("a")), Cached::Unknown);
    }
}
