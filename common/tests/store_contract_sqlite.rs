//! The store contract suite against the embedded SQLite adapter, every run.

use iot_common::store::sqlite::SqliteStore;

struct TempStore {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TempStore {
    type Target = SqliteStore;
    fn deref(&self) -> &SqliteStore {
        &self.store
    }
}

async fn fresh() -> TempStore {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = SqliteStore::open(&dir.path().join("store.sqlite"))
        .unwrap_or_else(|e| panic!("open store: {e}"));
    TempStore { store, _dir: dir }
}

iot_common::store_contract_tests!(fresh());
