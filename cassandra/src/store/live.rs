//! The live layer's tables: the aggregator's entries per (part, slot) partition and its
//! per-part slot figures per UTC-day partition, every row with a TTL that ends an hour after
//! its slot leaves the window, so nothing needs deleting.

use chrono::{DateTime, TimeDelta, Utc};
use iot_common::domain::{MeterId, RegionCode};
use iot_common::live::{self, LiveEntry, LiveSlot};
use iot_common::store::{StoreError, sum_live_parts};

use super::{CassandraStore, decode};
use crate::layout::{day_of, days};
use crate::write_path::fan_out;

/// Seconds a row of `slot` lives from `now`; `None` once it has left the window.
fn ttl(slot: DateTime<Utc>, now: DateTime<Utc>) -> Option<i32> {
    let left = (slot + live::WINDOW + TimeDelta::hours(1) - now).num_seconds();
    (left > 0).then(|| i32::try_from(left).unwrap_or(i32::MAX))
}

fn int(v: impl TryInto<i32>, what: &str) -> Result<i32, StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Refused(format!("{what} does not fit a CQL int").into()))
}

impl CassandraStore {
    pub(super) async fn put_live_rows(
        &self,
        part: u32,
        entries: &[LiveEntry],
        slots: &[LiveSlot],
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let part = int(part, "part")?;
        let mut writes = Vec::with_capacity(entries.len());
        for e in entries {
            let slot = live::slot_of(e.ts);
            let Some(ttl) = ttl(slot, now) else { continue };
            let values = (
                part,
                slot,
                e.meter_id.as_str(),
                e.ts,
                e.region.as_str(),
                e.micro_kwh,
                ttl,
            );
            writes.push(self.client.execute(
                "put live entry",
                &self.statements.live_entry_put,
                values,
            ));
        }
        // The entries first: a crash in between leaves figures a restarted aggregator
        // recomputes from them, never figures ahead of the entries.
        fan_out(writes).await?;
        let mut writes = Vec::with_capacity(slots.len());
        for s in slots {
            let Some(ttl) = ttl(s.slot, now) else {
                continue;
            };
            let values = (
                day_of(s.slot),
                s.slot,
                s.region.as_str(),
                part,
                s.micro_kwh,
                int(s.meters, "meters")?,
                int(s.readings, "readings")?,
                ttl,
            );
            writes.push(self.client.execute(
                "put live slot",
                &self.statements.live_slot_put,
                values,
            ));
        }
        fan_out(writes).await?;
        Ok(())
    }

    pub(super) async fn live_entry_rows(
        &self,
        part: u32,
        from: DateTime<Utc>,
    ) -> Result<Vec<LiveEntry>, StoreError> {
        let part = int(part, "part")?;
        let now = Utc::now();
        let mut slot = live::slot_of(from);
        let mut reads = Vec::new();
        while slot <= now {
            reads.push(self.rows_of::<(String, DateTime<Utc>, String, i64)>(
                &self.statements.live_entries_of,
                (part, slot),
            ));
            slot += live::SLOT;
        }
        let mut out = Vec::new();
        for rows in fan_out(reads).await? {
            for (meter, ts, region, micro_kwh) in rows {
                if ts < from {
                    continue;
                }
                out.push(LiveEntry {
                    meter_id: MeterId::parse(meter).map_err(decode)?,
                    ts,
                    region: RegionCode::parse(region).map_err(decode)?,
                    micro_kwh,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn live_slot_rows(
        &self,
        from: DateTime<Utc>,
    ) -> Result<Vec<LiveSlot>, StoreError> {
        let reads = days(from, Utc::now() + TimeDelta::days(1))
            .into_iter()
            .map(|day| {
                self.rows_of::<(String, DateTime<Utc>, i64, i32, i32)>(
                    &self.statements.live_slots_of_day,
                    (day, from),
                )
            })
            .collect();
        let mut out = Vec::new();
        for rows in fan_out(reads).await? {
            for (region, slot, micro_kwh, meters, readings) in rows {
                out.push(LiveSlot {
                    region: RegionCode::parse(region).map_err(decode)?,
                    slot,
                    micro_kwh,
                    meters: u32::try_from(meters).map_err(decode)?,
                    readings: u32::try_from(readings).map_err(decode)?,
                });
            }
        }
        Ok(sum_live_parts(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_lives_until_an_hour_after_its_slot_leaves_the_window() {
        let now: DateTime<Utc> = "2026-12-06T10:10:00Z".parse().unwrap();
        let slot: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        assert_eq!(ttl(slot, now), Some(49 * 3600 - 600));
        assert_eq!(ttl(slot - TimeDelta::hours(49), now), None);
    }
}
