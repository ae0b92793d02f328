//! What the embedded adapters (store and bus) share about SQLite: opening a file in WAL mode
//! with full fsync, applying versioned migrations, and running calls off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};

use iot_migrations::Migration;
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Schema(String),
    #[error("{0}")]
    Io(String),
}

/// Opens `path`, creating its directory, and applies the migrations not yet applied.
/// `synchronous=FULL` makes each commit durable on disk before it returns: a 2xx for a
/// reading is only sent after such a commit.
pub fn open(path: &Path, migrations: &[Migration]) -> Result<Connection, SqliteError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| SqliteError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    if !migrations.is_empty() {
        migrate(&mut conn, migrations)?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), SqliteError> {
    // IMMEDIATE takes the write lock first, so two processes opening one file at once
    // apply each migration exactly once.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,
            applied_at INTEGER NOT NULL)",
    )?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let newest: Option<u32> =
        tx.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })?;
    if let Some(newest) = newest.filter(|n| *n > known) {
        return Err(SqliteError::Schema(format!(
            "database is at schema version {newest}, newer than this binary's {known}"
        )));
    }
    for m in migrations {
        let sum = iot_migrations::checksum(m.sql);
        let applied: Option<String> = tx
            .query_row(
                "SELECT checksum FROM schema_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()?;
        match applied {
            Some(s) if s == sum => {}
            Some(_) => {
                return Err(SqliteError::Schema(format!(
                    "migration {} ({}) was edited after it was applied",
                    m.version, m.name
                )));
            }
            None => {
                tx.execute_batch(m.sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at)
                     VALUES (?1, ?2, ?3, strftime('%s','now'))",
                    params![m.version, m.name, sum],
                )?;
                tracing::info!(version = m.version, name = m.name, "applied migration");
            }
        }
    }
    tx.commit()?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    #[error("a previous call panicked while holding the connection")]
    Poisoned,
    #[error("the blocking task failed: {0}")]
    Join(String),
}

/// Runs `f` with the connection on tokio's blocking pool.
pub async fn blocking<R, E, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<R, E>
where
    R: Send + 'static,
    E: From<BlockingError> + Send + 'static,
    F: FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().map_err(|_| E::from(BlockingError::Poisoned))?;
        f(&mut guard)
    })
    .await
    .map_err(|e| E::from(BlockingError::Join(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: Migration = Migration {
        version: 1,
        name: "t",
        sql: "CREATE TABLE t (x INTEGER)",
    };

    #[test]
    fn migrations_apply_once_and_refuse_edits() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db.sqlite");
        assert!(open(&path, &[V1]).is_ok());
        assert!(open(&path, &[V1]).is_ok(), "second open is idempotent");
        let edited = Migration {
            sql: "CREATE TABLE t (x TEXT)",
            ..V1
        };
        let err = open(&path, &[edited]).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("edited")));
        let err = open(&path, &[]).map(|_| ()).err();
        assert!(err.is_none(), "readers open without migrating");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db.sqlite");
        let v2 = Migration {
            version: 2,
            name: "u",
            sql: "CREATE TABLE u (x INTEGER)",
        };
        assert!(open(&path, &[V1, v2]).is_ok());
        let err = open(&path, &[V1]).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("newer")));
    }
}

/// Identifiers go into SQLite as text and come out parsed: a row that breaks the rules reads
/// as a conversion error (the store's `Corrupt`), never as an id that is not one.
macro_rules! sql_text {
    ($($name:ty),*) => {$(
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(AsRef::<str>::as_ref(self).into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                s.parse().map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    )*};
}

sql_text!(
    crate::domain::MeterId,
    crate::domain::RegionCode,
    crate::domain::Dwelling,
    crate::domain::RunStatus,
    crate::domain::Trigger
);
