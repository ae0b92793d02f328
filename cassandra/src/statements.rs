//! Every CQL statement this crate runs, in one place, so a test can check each against the
//! tables the migrations create (`schema_check`). Tables are unqualified: the session uses
//! the configured keyspace.

/// The migrator's own tables, created before any numbered file runs (they must exist to
/// record the first one). Not a numbered file: the numbered files are what they track.
pub const BOOTSTRAP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_migrations (
        version    int PRIMARY KEY,
        name       text,
        checksum   text,
        applied_at timestamp,
        applied_by text
    )",
    "CREATE TABLE IF NOT EXISTS schema_migration_lock (
        name  text PRIMARY KEY,
        owner text,
        since timestamp
    )",
];

/// Cassandra's own catalogue, not the migrations' (so not in [`ALL`]).
pub const BOOTSTRAPPED: &str =
    "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?";
pub const MIGRATIONS_APPLIED: &str = "SELECT version, name, checksum FROM schema_migrations";
pub const MIGRATION_RECORD: &str = "INSERT INTO schema_migrations (version, name, checksum, applied_at, applied_by) VALUES (?, ?, ?, ?, ?)";
/// The lock expires by itself if its holder dies.
pub const LOCK_TAKE: &str =
    "INSERT INTO schema_migration_lock (name, owner) VALUES (?, ?) IF NOT EXISTS USING TTL ?";
/// The holder keeps its lock alive while a long migration runs.
pub const LOCK_RENEW: &str =
    "UPDATE schema_migration_lock USING TTL ? SET owner = ? WHERE name = ? IF owner = ?";
pub const LOCK_OWNER: &str = "SELECT owner FROM schema_migration_lock WHERE name = ?";
pub const LOCK_RELEASE: &str = "DELETE FROM schema_migration_lock WHERE name = ? IF owner = ?";

pub const PING: &str = "SELECT version FROM schema_migrations LIMIT 1";

pub const METER_UPSERT: &str = "INSERT INTO meters (meter_id, region, lat, lon, household_size, dwelling, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?)";
pub const METER_GET: &str = "SELECT meter_id, region, lat, lon, household_size, dwelling, registered_at FROM meters WHERE meter_id = ?";
pub const METERS_ALL: &str =
    "SELECT meter_id, region, lat, lon, household_size, dwelling, registered_at FROM meters";
pub const METER_REGION: &str = "SELECT region FROM meters WHERE meter_id = ?";

/// A reading in its meter's month partition (`month`: the first day of its UTC month).
pub const READING_BY_METER_UPSERT: &str = "INSERT INTO readings_by_meter_month (meter_id, month, ts, kwh, interval_s) VALUES (?, ?, ?, ?, ?)";
/// A reading in its meter's region's (region, day, shard) partition.
pub const READING_BY_REGION_UPSERT: &str = "INSERT INTO readings_by_region_shard (region, day, shard, ts, meter_id, kwh, interval_s) VALUES (?, ?, ?, ?, ?, ?, ?)";
/// A meter's reading leaving the region it was filed under, when the meter moves.
pub const READING_BY_REGION_DELETE: &str = "DELETE FROM readings_by_region_shard WHERE region = ? AND day = ? AND shard = ? AND ts = ? AND meter_id = ?";
/// "This meter has readings that day, the newest at `latest`", written with the reading's
/// time as the write's timestamp: the newest reading wins, with no read first.
pub const METER_DAY_PUT: &str =
    "INSERT INTO meter_data_days (meter_id, day, latest) VALUES (?, ?, ?) USING TIMESTAMP ?";
pub const METER_DAYS_ALL: &str = "SELECT meter_id, day, latest FROM meter_data_days";
/// Every day a meter has readings, to re-file them when the meter is placed or moves.
pub const METER_DAYS_OF: &str = "SELECT day FROM meter_data_days WHERE meter_id = ?";
/// The readings of one meter-month partition: counted where a count is asked for (the
/// operators' summary), never per write.
pub const METER_MONTH_COUNT: &str =
    "SELECT count(ts) FROM readings_by_meter_month WHERE meter_id = ? AND month = ?";
pub const METER_READINGS: &str = "SELECT ts, kwh, interval_s FROM readings_by_meter_month WHERE meter_id = ? AND month = ? AND ts >= ? AND ts < ? LIMIT ?";

/// The batch job's scan of one (region, day, shard) partition: only the columns it uses, and
/// the window's bounds as a range on the clustering column.
pub const REGION_DAY_SCAN: &str = "SELECT ts, meter_id, kwh, interval_s FROM readings_by_region_shard WHERE region = ? AND day = ? AND shard = ? AND ts >= ? AND ts < ?";

/// Settings fixed at keyspace creation (`region_shards`): written once by `migrate`, read by
/// every store at connect.
pub const SETTING_PUT: &str =
    "INSERT INTO store_settings (name, value) VALUES (?, ?) IF NOT EXISTS";
pub const SETTING_GET: &str = "SELECT value FROM store_settings WHERE name = ?";

/// The tables before migration 6, read only by `migrate --copy-legacy-readings`.
pub const LEGACY_METER_DAYS: &str = "SELECT meter_id, day FROM meter_days";
pub const LEGACY_READINGS: &str =
    "SELECT ts, kwh, interval_s FROM readings_by_meter WHERE meter_id = ? AND day = ?";

pub const PROFILE_PUT: &str = "INSERT INTO regional_profiles (region, run_id, window_from, window_to, computed_at, profile_json) VALUES (?, ?, ?, ?, ?, ?)";
pub const PROFILES_ALL: &str = "SELECT profile_json FROM regional_profiles";

pub const RUN_PUT: &str = "INSERT INTO runs (run_id, status, run_trigger, created_at, started_at, finished_at, window_from, window_to, rows_scanned, regions_written, error, published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub const RUN_GET: &str = "SELECT run_id, status, run_trigger, created_at, started_at, finished_at, window_from, window_to, rows_scanned, regions_written, error, published FROM runs WHERE run_id = ?";

/// A run's profiles are written to both history tables: by run (to compare runs) and by
/// region (a region's trend).
pub const RUN_PROFILE_PUT: &str = "INSERT INTO profiles_by_run (run_id, region, window_from, window_to, computed_at, profile_json) VALUES (?, ?, ?, ?, ?, ?)";
pub const RUN_PROFILES: &str = "SELECT profile_json FROM profiles_by_run WHERE run_id = ?";
pub const HISTORY_PUT: &str = "INSERT INTO profile_history (region, computed_at, run_id, window_from, window_to, profile_json) VALUES (?, ?, ?, ?, ?, ?)";
pub const HISTORY_NEWEST: &str =
    "SELECT profile_json FROM profile_history WHERE region = ? LIMIT ?";
pub const RUN_INDEX_PUT: &str =
    "INSERT INTO runs_by_created (bucket, created_at, run_id) VALUES (?, ?, ?)";
pub const RUN_INDEX_NEWEST: &str = "SELECT run_id FROM runs_by_created WHERE bucket = ? LIMIT ?";

/// Revocations live in one partition (`shard` 0) that meter replicas read whole.
pub const REVOCATION_PUT: &str =
    "INSERT INTO meter_revocations (shard, meter_id, revoked_at) VALUES (?, ?, ?)";
pub const REVOCATIONS_ALL: &str =
    "SELECT meter_id, revoked_at FROM meter_revocations WHERE shard = ?";

/// Named leases (`leases`): taken with `IF NOT EXISTS`, renewed and released only by their
/// holder, kept alive by a TTL so a dead holder's lease runs out.
pub const LEASE_TAKE: &str =
    "INSERT INTO leases (name, holder) VALUES (?, ?) IF NOT EXISTS USING TTL ?";
pub const LEASE_RENEW: &str =
    "UPDATE leases USING TTL ? SET holder = ? WHERE name = ? IF holder = ?";
pub const LEASE_HOLDER: &str = "SELECT holder FROM leases WHERE name = ?";
pub const LEASE_RELEASE: &str = "DELETE FROM leases WHERE name = ? IF holder = ?";

/// The live aggregator's state (`live_entries`, one partition per bus part and slot) and its
/// per-part figures (`live_slots`, one partition per UTC day), each row living until an hour
/// after its slot leaves the 48-hour window (the TTL, in seconds).
pub const LIVE_ENTRY_PUT: &str = "INSERT INTO live_entries (part, slot, meter_id, ts, region, micro_kwh) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?";
pub const LIVE_ENTRIES_OF: &str =
    "SELECT meter_id, ts, region, micro_kwh FROM live_entries WHERE part = ? AND slot = ?";
pub const LIVE_SLOT_PUT: &str = "INSERT INTO live_slots (day, slot, region, part, micro_kwh, meters, readings) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?";
pub const LIVE_SLOTS_OF_DAY: &str =
    "SELECT region, slot, micro_kwh, meters, readings FROM live_slots WHERE day = ? AND slot >= ?";

/// Every statement above that runs against the numbered files' tables or the bootstrap
/// tables, for the schema check.
pub const ALL: &[&str] = &[
    MIGRATIONS_APPLIED,
    MIGRATION_RECORD,
    LOCK_TAKE,
    LOCK_RENEW,
    LOCK_OWNER,
    LOCK_RELEASE,
    PING,
    METER_UPSERT,
    METER_GET,
    METERS_ALL,
    METER_REGION,
    READING_BY_METER_UPSERT,
    READING_BY_REGION_UPSERT,
    READING_BY_REGION_DELETE,
    METER_DAY_PUT,
    METER_DAYS_ALL,
    METER_DAYS_OF,
    METER_MONTH_COUNT,
    METER_READINGS,
    REGION_DAY_SCAN,
    SETTING_PUT,
    SETTING_GET,
    LEGACY_METER_DAYS,
    LEGACY_READINGS,
    PROFILE_PUT,
    PROFILES_ALL,
    RUN_PUT,
    RUN_GET,
    RUN_INDEX_PUT,
    RUN_INDEX_NEWEST,
    RUN_PROFILE_PUT,
    RUN_PROFILES,
    HISTORY_PUT,
    HISTORY_NEWEST,
    REVOCATION_PUT,
    REVOCATIONS_ALL,
    LEASE_TAKE,
    LEASE_RENEW,
    LEASE_HOLDER,
    LEASE_RELEASE,
    LIVE_ENTRY_PUT,
    LIVE_ENTRIES_OF,
    LIVE_SLOT_PUT,
    LIVE_SLOTS_OF_DAY,
];

#[cfg(test)]
mod tests {
    /// The statements [`super::ALL`] may leave out, and why: they read no table of ours.
    const NOT_SCHEMA_CHECKED: &[&str] = &["BOOTSTRAPPED"];

    #[test]
    fn every_statement_constant_is_in_all_and_so_schema_checked() {
        let source = include_str!("statements.rs");
        let declared: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub const "))
            .filter_map(|l| l.split_once(": &str"))
            .map(|(name, _)| name)
            .collect();
        let (_, listed) = source
            .split_once("pub const ALL: &[&str] = &[")
            .unwrap_or_else(|| panic!("no ALL list"));
        let listed: Vec<&str> = listed
            .split("];")
            .next()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        assert!(declared.len() > 40, "the scan found {declared:?}");
        let missing: Vec<&&str> = declared
            .iter()
            .filter(|n| !listed.contains(n) && !NOT_SCHEMA_CHECKED.contains(n))
            .collect();
        assert!(
            missing.is_empty(),
            "not in statements::ALL, so never schema-checked: {missing:?}"
        );
        assert_eq!(listed.len(), super::ALL.len());
    }
}
