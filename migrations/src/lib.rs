//! Versioned schema files for the stores, embedded at build time so every binary carries
//! exactly the schema it was built against. Files are applied in version order and never
//! edited once released: a change is a new file.

/// One schema step: a version number, a short name and its statements.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The embedded SQLite store's schema (`migrations/sqlite/*.sql`).
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "revocations",
        sql: include_str!("../sqlite/0002_revocations.sql"),
    },
    Migration {
        version: 3,
        name: "leases",
        sql: include_str!("../sqlite/0003_leases.sql"),
    },
    Migration {
        version: 4,
        name: "profile_history",
        sql: include_str!("../sqlite/0004_profile_history.sql"),
    },
    Migration {
        version: 5,
        name: "live",
        sql: include_str!("../sqlite/0005_live.sql"),
    },
];

/// The embedded bus log's schema (`migrations/sqlite_bus/*.sql`).
pub const SQLITE_BUS: &[Migration] = &[Migration {
    version: 1,
    name: "init",
    sql: include_str!("../sqlite_bus/0001_init.sql"),
}];

/// The Cassandra keyspace's schema (`migrations/cql/*.cql`), applied by the `migrate`
/// command. `${keyspace}` and `${replication}` in a file are filled in when it is applied;
/// the checksum is of the file as written.
pub const CQL: &[Migration] = &[
    Migration {
        version: 1,
        name: "keyspace",
        sql: include_str!("../cql/0001_keyspace.cql"),
    },
    Migration {
        version: 2,
        name: "tables",
        sql: include_str!("../cql/0002_tables.cql"),
    },
    Migration {
        version: 3,
        name: "revocations",
        sql: include_str!("../cql/0003_revocations.cql"),
    },
    Migration {
        version: 4,
        name: "leases",
        sql: include_str!("../cql/0004_leases.cql"),
    },
    Migration {
        version: 5,
        name: "profile_history",
        sql: include_str!("../cql/0005_profile_history.cql"),
    },
    Migration {
        version: 6,
        name: "national_fleet",
        sql: include_str!("../cql/0006_national_fleet.cql"),
    },
    Migration {
        version: 7,
        name: "live",
        sql: include_str!("../cql/0007_live.cql"),
    },
];

/// FNV-1a of a file's text: recorded when a file is applied so an edited file is caught.
pub fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing() {
        for set in [SQLITE, SQLITE_BUS, CQL] {
            for pair in set.windows(2) {
                assert!(pair[0].version < pair[1].version);
            }
            assert_eq!(set[0].version, 1);
        }
    }

    #[test]
    fn checksum_changes_with_text() {
        assert_ne!(checksum("a"), checksum("b"));
        assert_eq!(checksum("create table"), checksum("create table"));
    }
}
