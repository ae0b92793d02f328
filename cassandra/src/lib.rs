//! The store port's Cassandra adapter (on the `scylla` driver), the CQL migrator behind the
//! `migrate` command, and [`StoreArgs`], which every distributed binary uses to pick its
//! store: Cassandra when `IOT_CASSANDRA_NODES` names nodes, else the embedded SQLite file.

pub mod capacity;
pub mod cli;
pub mod client;
pub mod config;
pub mod layout;
pub mod lease;
pub mod migrate;
pub mod region_cache;
pub mod select;
pub mod statements;
pub mod store;
pub mod write_path;

#[cfg(test)]
mod schema_check;

pub use config::{CassandraArgs, CassandraConfig, ReplicationArgs};
pub use select::StoreArgs;
pub use store::CassandraStore;

#[cfg(feature = "test-node")]
pub mod test_node;
