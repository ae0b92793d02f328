//! Leases by lightweight transaction: one named row that a holder takes with
//! `IF NOT EXISTS` and a TTL, renews with `IF holder = ?` (which also extends the TTL), and
//! releases with `IF holder = ?`; a holder that dies loses it when the TTL runs out. Both
//! the store's leases (the analytics run lease, table `leases`) and the migrator's lock
//! (`schema_migration_lock`, which exists before any numbered migration) are one.

use std::time::Duration;

use iot_common::store::Lease;
use scylla::frame::types::{Consistency, SerialConsistency};
use scylla::response::query_result::QueryResult;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlValue, Row};

use crate::client::{Client, ClientError, rows};
use crate::statements as cql;

/// A table of leases: its four statements and how far its transactions agree.
pub struct LeaseTable {
    /// Binds (name, holder, ttl).
    take: &'static str,
    /// Binds (ttl, holder, name, holder).
    renew: &'static str,
    /// Binds (name).
    holder: &'static str,
    /// Binds (name, holder).
    release: &'static str,
    /// SERIAL is Paxos across every datacenter; LOCAL_SERIAL agrees within one.
    serial: SerialConsistency,
}

/// The store's leases (one datacenter agrees: a run lease is about this cluster's replicas).
pub const LEASES: LeaseTable = LeaseTable {
    take: cql::LEASE_TAKE,
    renew: cql::LEASE_RENEW,
    holder: cql::LEASE_HOLDER,
    release: cql::LEASE_RELEASE,
    serial: SerialConsistency::LocalSerial,
};

/// The migrator's lock: at SERIAL, so migrators in two datacenters cannot both take it.
pub const MIGRATION_LOCK: LeaseTable = LeaseTable {
    take: cql::LOCK_TAKE,
    renew: cql::LOCK_RENEW,
    holder: cql::LOCK_OWNER,
    release: cql::LOCK_RELEASE,
    serial: SerialConsistency::Serial,
};

fn ttl_secs(ttl: Duration) -> i32 {
    i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX)
}

impl LeaseTable {
    fn statement(&self, text: &'static str) -> Statement {
        let mut st = Statement::new(text);
        st.set_serial_consistency(Some(self.serial));
        st
    }

    /// Takes lease `name` for `holder`, or renews it when `holder` has it already (a
    /// renewal, or a retried insert whose first attempt landed and so reads "not applied").
    pub async fn acquire(
        &self,
        client: &Client,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, ClientError> {
        let taken = client
            .query_with(
                "take lease",
                self.statement(self.take),
                (name, holder, ttl_secs(ttl)),
            )
            .await?;
        if lwt_applied(taken)? || self.renew(client, name, holder, ttl).await? {
            return Ok(Lease::Acquired);
        }
        // Expired between the two statements: say so as held; the caller asks again later.
        let current = self.holder(client, name).await?;
        Ok(Lease::HeldBy(
            current.unwrap_or_else(|| "(just released)".into()),
        ))
    }

    /// Extends the lease when `holder` has it; `false` when it does not (any more).
    pub async fn renew(
        &self,
        client: &Client,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, ClientError> {
        let renewed = client
            .query_with(
                "renew lease",
                self.statement(self.renew),
                (ttl_secs(ttl), holder, name, holder),
            )
            .await?;
        lwt_applied(renewed)
    }

    /// Who holds lease `name` now, read at serial consistency so that a transaction still
    /// in flight is seen.
    pub async fn holder(&self, client: &Client, name: &str) -> Result<Option<String>, ClientError> {
        let mut st = Statement::new(self.holder);
        st.set_consistency(match self.serial {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        });
        let result = client.query_with("lease holder", st, (name,)).await?;
        Ok(rows::<(Option<String>,)>(result)?
            .into_iter()
            .next()
            .and_then(|r| r.0))
    }

    /// Gives lease `name` up if `holder` has it; a lease someone else holds is left alone.
    pub async fn release(
        &self,
        client: &Client,
        name: &str,
        holder: &str,
    ) -> Result<(), ClientError> {
        client
            .query_with(
                "release lease",
                self.statement(self.release),
                (name, holder),
            )
            .await
            .map(|_| ())
    }
}

/// Whether a lightweight transaction applied (its first column, `[applied]`).
pub fn lwt_applied(result: QueryResult) -> Result<bool, ClientError> {
    let first = rows::<Row>(result)?.into_iter().next();
    Ok(matches!(
        first.and_then(|r| r.columns.into_iter().next().flatten()),
        Some(CqlValue::Boolean(true))
    ))
}
