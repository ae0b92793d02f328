//! A test double for the store port: a real store with faults injected in front of it, for
//! tests of what callers do when the store fails or stalls. Never used outside tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::{Lease, ScanPage, ScanSlice, Store, StoreError, StoreSummary};
use crate::domain::RegionCode;
use crate::domain::{Meter, MeterId, Reading, RegionProfile, Run};
use crate::live::{LiveEntry, LiveSlot};

pub struct FaultyStoreDouble<S> {
    pub inner: S,
    /// This many `write_readings` calls fail before writes go through.
    pub failing_writes: AtomicUsize,
    /// Every `write_readings` call is refused (a permanent error) while set.
    pub refusing_writes: AtomicBool,
    /// Every `scan_readings` call fails while set.
    pub failing_scans: AtomicBool,
    /// When set, each `scan_readings` call first waits for a permit.
    pub scan_gate: Option<Arc<Semaphore>>,
    /// When set, a window scan is cut into slices of this many hours (as Cassandra cuts it
    /// into days), each read through the inner store as a whole window of its own.
    pub slice_hours: Option<i64>,
    /// How many times `summary` was asked.
    pub summaries: AtomicUsize,
}

impl<S: Store> FaultyStoreDouble<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            failing_writes: AtomicUsize::new(0),
            refusing_writes: AtomicBool::new(false),
            failing_scans: AtomicBool::new(false),
            scan_gate: None,
            slice_hours: None,
            summaries: AtomicUsize::new(0),
        }
    }
}

fn outage() -> StoreError {
    StoreError::Unavailable("test double: injected outage".into())
}

#[async_trait]
impl<S: Store> Store for FaultyStoreDouble<S> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn upsert_meters(&self, m: &[Meter]) -> Result<(), StoreError> {
        self.inner.upsert_meters(m).await
    }
    async fn meter(&self, id: &MeterId) -> Result<Option<Meter>, StoreError> {
        self.inner.meter(id).await
    }
    async fn meters(&self) -> Result<Vec<Meter>, StoreError> {
        self.inner.meters().await
    }
    async fn write_readings(&self, r: &[Reading]) -> Result<(), StoreError> {
        if self.refusing_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Refused(
                "test double: the store refuses this user's writes".into(),
            ));
        }
        let failing = self
            .failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(outage());
        }
        self.inner.write_readings(r).await
    }
    async fn meter_readings(
        &self,
        id: &MeterId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        self.inner.meter_readings(id, from, to, limit).await
    }
    async fn scan_slices(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        regions: Option<&[RegionCode]>,
    ) -> Result<Vec<ScanSlice>, StoreError> {
        let Some(hours) = self.slice_hours.filter(|h| *h > 0 && regions.is_none()) else {
            return self.inner.scan_slices(from, to, regions).await;
        };
        let mut slices = Vec::new();
        let mut start = from;
        while start < to {
            let end = (start + chrono::Duration::hours(hours)).min(to);
            slices.push(ScanSlice::whole(start, end));
            start = end;
        }
        Ok(slices)
    }
    async fn scan_readings(
        &self,
        slice: &ScanSlice,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ScanPage, StoreError> {
        if let Some(gate) = &self.scan_gate {
            let _permit = gate.acquire().await.map_err(|_| outage())?;
        }
        if self.failing_scans.load(Ordering::SeqCst) {
            return Err(outage());
        }
        self.inner.scan_readings(slice, cursor, limit).await
    }
    async fn put_profiles(&self, p: &[RegionProfile]) -> Result<(), StoreError> {
        self.inner.put_profiles(p).await
    }
    async fn put_run_profiles(&self, p: &[RegionProfile]) -> Result<(), StoreError> {
        self.inner.put_run_profiles(p).await
    }
    async fn run_profiles(&self, run_id: &str) -> Result<Vec<RegionProfile>, StoreError> {
        self.inner.run_profiles(run_id).await
    }
    async fn region_history(
        &self,
        region: &RegionCode,
        limit: usize,
    ) -> Result<Vec<RegionProfile>, StoreError> {
        self.inner.region_history(region, limit).await
    }
    async fn profiles(&self) -> Result<Vec<RegionProfile>, StoreError> {
        self.inner.profiles().await
    }
    async fn put_run(&self, r: &Run) -> Result<(), StoreError> {
        self.inner.put_run(r).await
    }
    async fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        self.inner.run(id).await
    }
    async fn runs(&self, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.inner.runs(limit).await
    }
    async fn summary(&self) -> Result<StoreSummary, StoreError> {
        self.summaries.fetch_add(1, Ordering::SeqCst);
        self.inner.summary().await
    }

    async fn revoke_meter(&self, meter_id: &MeterId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.revoke_meter(meter_id, at).await
    }

    async fn revocations(&self) -> Result<Vec<(MeterId, DateTime<Utc>)>, StoreError> {
        self.inner.revocations().await
    }
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Lease, StoreError> {
        self.inner.acquire_lease(name, holder, ttl).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.inner.release_lease(name, holder).await
    }
    async fn put_live(
        &self,
        part: u32,
        entries: &[LiveEntry],
        slots: &[LiveSlot],
    ) -> Result<(), StoreError> {
        self.inner.put_live(part, entries, slots).await
    }
    async fn live_entries(
        &self,
        part: u32,
        from: DateTime<Utc>,
    ) -> Result<Vec<LiveEntry>, StoreError> {
        self.inner.live_entries(part, from).await
    }
    async fn live_slots(&self, from: DateTime<Utc>) -> Result<Vec<LiveSlot>, StoreError> {
        self.inner.live_slots(from).await
    }
}
