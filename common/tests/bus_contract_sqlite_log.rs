//! The consumer contract suite against the embedded bus (the SQLite log), every run.

use iot_common::bus::sqlite_log::SqliteLog;

struct TempLog {
    log: SqliteLog,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TempLog {
    type Target = SqliteLog;
    fn deref(&self) -> &SqliteLog {
        &self.log
    }
}

async fn fresh() -> Option<TempLog> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let log =
        SqliteLog::open(&dir.path().join("bus.sqlite")).unwrap_or_else(|e| panic!("open log: {e}"));
    Some(TempLog { log, _dir: dir })
}

iot_common::bus_contract_tests!(fresh());
