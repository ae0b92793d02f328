//! Settings of the Cassandra adapter and the migrator, as flags and `IOT_CASSANDRA_*`
//! variables, shared by every binary that talks to Cassandra.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use scylla::frame::types::Consistency;

/// Cassandra settings. `IOT_CASSANDRA_NODES` empty means "no Cassandra": binaries that can
/// run on the embedded store then do.
#[derive(Debug, Clone, Args)]
pub struct CassandraArgs {
    /// Contact points, comma-separated host or host:port (port 9042 when left out).
    #[arg(long, env = "IOT_CASSANDRA_NODES")]
    pub cassandra_nodes: Option<String>,
    /// Keyspace holding the platform's tables.
    #[arg(long, env = "IOT_CASSANDRA_KEYSPACE", default_value = "iot_demo")]
    pub cassandra_keyspace: String,
    /// Consistency of reads and writes: LOCAL_QUORUM, QUORUM, LOCAL_ONE, ONE, ALL, ...
    #[arg(long, env = "IOT_CASSANDRA_CONSISTENCY", default_value = "LOCAL_QUORUM", value_parser = parse_consistency)]
    pub cassandra_consistency: Consistency,
    /// The local datacenter: requests go to its replicas first. Unset: no preference.
    #[arg(long, env = "IOT_CASSANDRA_DATACENTER")]
    pub cassandra_datacenter: Option<String>,
    /// Most requests in flight from this process at once.
    #[arg(long, env = "IOT_CASSANDRA_CONCURRENCY", default_value_t = 64)]
    pub cassandra_concurrency: usize,
    /// Client-side deadline of one request attempt, in milliseconds.
    #[arg(long, env = "IOT_CASSANDRA_TIMEOUT_MS", default_value_t = 10_000)]
    pub cassandra_timeout_ms: u64,
    /// Attempts of a request that timed out or found too few replicas, with backoff between.
    #[arg(long, env = "IOT_CASSANDRA_ATTEMPTS", default_value_t = 4)]
    pub cassandra_attempts: u32,
    /// Shards of a region-day in `readings_by_region_shard`. Fixed when `migrate` first
    /// creates the tables (default 64); a service given a different value than its keyspace
    /// has refuses to start.
    #[arg(long, env = "IOT_CASSANDRA_REGION_SHARDS")]
    pub cassandra_region_shards: Option<u32>,
    /// How long the sink trusts a meter's region before looking it up again, in seconds:
    /// longer than the posting interval, or every post is a lookup.
    #[arg(
        long,
        env = "IOT_CASSANDRA_REGION_CACHE_TTL_S",
        default_value_t = 14_400
    )]
    pub cassandra_region_cache_ttl_s: u64,
    /// Most meters' regions the sink keeps (least recently used go first).
    #[arg(
        long,
        env = "IOT_CASSANDRA_REGION_CACHE_ENTRIES",
        default_value_t = 1_000_000
    )]
    pub cassandra_region_cache_entries: usize,
    /// User name for Cassandra's password authentication (with IOT_CASSANDRA_PASSWORD).
    #[arg(long, env = "IOT_CASSANDRA_USERNAME")]
    pub cassandra_username: Option<String>,
    #[arg(long, env = "IOT_CASSANDRA_PASSWORD", hide_env_values = true)]
    pub cassandra_password: Option<String>,
    /// PEM file of the certificate authority that signed the nodes' certificates: connect
    /// over TLS and verify them (the node's address must match its certificate).
    #[arg(long, env = "IOT_CASSANDRA_TLS_CA")]
    pub cassandra_tls_ca: Option<PathBuf>,
}

/// Replication of the keyspace, used only when `migrate` creates it.
#[derive(Debug, Clone, Args)]
pub struct ReplicationArgs {
    /// `SimpleStrategy` (one datacenter) or `NetworkTopologyStrategy`.
    #[arg(
        long,
        env = "IOT_CASSANDRA_REPLICATION_STRATEGY",
        default_value = "SimpleStrategy"
    )]
    pub replication_strategy: String,
    /// Replicas of each row (per datacenter with NetworkTopologyStrategy).
    #[arg(long, env = "IOT_CASSANDRA_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: u32,
    /// Datacenters for NetworkTopologyStrategy, comma-separated; default the one named by
    /// IOT_CASSANDRA_DATACENTER, else `datacenter1` (the official image's name).
    #[arg(long, env = "IOT_CASSANDRA_REPLICATION_DATACENTERS")]
    pub replication_datacenters: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("IOT_CASSANDRA_NODES (or --cassandra-nodes) is required for this command")]
    NoNodes,
    #[error(
        "keyspace `{0}` is not a valid name: 1 to 48 characters of a-z, 0-9 and '_', starting with a letter"
    )]
    Keyspace(String),
    #[error("{0} must be at least 1")]
    NotPositive(&'static str),
    #[error(
        "consistency ANY cannot read: the same level serves reads and writes, so use ONE, LOCAL_ONE, LOCAL_QUORUM, QUORUM or ALL"
    )]
    AnyForReads,
    #[error("IOT_CASSANDRA_REGION_SHARDS must be from 1 to {max}, not {0}", max = crate::layout::MAX_REGION_SHARDS)]
    Shards(u32),
    #[error("IOT_CASSANDRA_USERNAME and IOT_CASSANDRA_PASSWORD go together: set both or neither")]
    HalfCredentials,
    #[error(
        "replication strategy `{0}` is not supported: use SimpleStrategy or NetworkTopologyStrategy"
    )]
    Strategy(String),
}

fn parse_consistency(s: &str) -> Result<Consistency, String> {
    Ok(
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "ANY" => Consistency::Any,
            "ONE" => Consistency::One,
            "TWO" => Consistency::Two,
            "THREE" => Consistency::Three,
            "QUORUM" => Consistency::Quorum,
            "ALL" => Consistency::All,
            "LOCAL_QUORUM" => Consistency::LocalQuorum,
            "EACH_QUORUM" => Consistency::EachQuorum,
            "LOCAL_ONE" => Consistency::LocalOne,
            other => return Err(format!("unknown consistency level `{other}`")),
        },
    )
}

/// A keyspace name as CQL accepts it unquoted; it is spliced into statements, so nothing
/// else may pass.
pub fn check_keyspace(name: &str) -> Result<(), ConfigError> {
    let ok = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Keyspace(name.to_owned()))
    }
}

/// Resolved settings of a connection.
#[derive(Debug, Clone)]
pub struct CassandraConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub consistency: Consistency,
    pub datacenter: Option<String>,
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub attempts: u32,
    /// `None`: whatever the keyspace was created with.
    pub region_shards: Option<u32>,
    pub region_cache_ttl: Duration,
    pub region_cache_entries: usize,
    pub credentials: Option<(String, String)>,
    pub tls_ca: Option<PathBuf>,
}

impl CassandraConfig {
    /// Defaults for `nodes` and `keyspace`, as the flags have them.
    pub fn new(nodes: &str, keyspace: &str) -> Result<Self, ConfigError> {
        let nodes = split_nodes(nodes);
        if nodes.is_empty() {
            return Err(ConfigError::NoNodes);
        }
        check_keyspace(keyspace)?;
        Ok(Self {
            nodes,
            keyspace: keyspace.to_owned(),
            consistency: Consistency::LocalQuorum,
            datacenter: None,
            concurrency: 64,
            request_timeout: Duration::from_secs(10),
            attempts: 4,
            region_shards: None,
            region_cache_ttl: crate::region_cache::DEFAULT_TTL,
            region_cache_entries: crate::region_cache::DEFAULT_CAPACITY,
            credentials: None,
            tls_ca: None,
        })
    }
}

fn split_nodes(nodes: &str) -> Vec<String> {
    nodes
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n.contains(':') {
                n.to_owned()
            } else {
                format!("{n}:9042")
            }
        })
        .collect()
}

impl CassandraArgs {
    /// `None` when no nodes are named.
    pub fn resolve(&self) -> Result<Option<CassandraConfig>, ConfigError> {
        let Some(nodes) = self
            .cassandra_nodes
            .as_deref()
            .filter(|n| !n.trim().is_empty())
        else {
            return Ok(None);
        };
        if self.cassandra_concurrency == 0 {
            return Err(ConfigError::NotPositive("IOT_CASSANDRA_CONCURRENCY"));
        }
        if self.cassandra_attempts == 0 {
            return Err(ConfigError::NotPositive("IOT_CASSANDRA_ATTEMPTS"));
        }
        if self.cassandra_consistency == Consistency::Any {
            return Err(ConfigError::AnyForReads);
        }
        if let Some(n) = self
            .cassandra_region_shards
            .filter(|n| !(1..=crate::layout::MAX_REGION_SHARDS).contains(n))
        {
            return Err(ConfigError::Shards(n));
        }
        let credentials = match (&self.cassandra_username, &self.cassandra_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => return Err(ConfigError::HalfCredentials),
        };
        let mut config = CassandraConfig::new(nodes, &self.cassandra_keyspace)?;
        config.consistency = self.cassandra_consistency;
        config.region_shards = self.cassandra_region_shards;
        config.region_cache_ttl = Duration::from_secs(self.cassandra_region_cache_ttl_s.max(1));
        config.region_cache_entries = self.cassandra_region_cache_entries.max(1);
        config.credentials = credentials;
        config.tls_ca = self.cassandra_tls_ca.clone();
        config.datacenter = self.cassandra_datacenter.clone();
        config.concurrency = self.cassandra_concurrency;
        config.request_timeout = Duration::from_millis(self.cassandra_timeout_ms.max(1));
        config.attempts = self.cassandra_attempts;
        Ok(Some(config))
    }
}

impl ReplicationArgs {
    /// The CQL map literal of `WITH replication = ...`.
    pub fn cql(&self, local_dc: Option<&str>) -> Result<String, ConfigError> {
        if self.replication_factor == 0 {
            return Err(ConfigError::NotPositive("IOT_CASSANDRA_REPLICATION_FACTOR"));
        }
        let rf = self.replication_factor;
        match self.replication_strategy.as_str() {
            "SimpleStrategy" => Ok(format!(
                "{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
            )),
            "NetworkTopologyStrategy" => {
                let dcs = self
                    .replication_datacenters
                    .as_deref()
                    .or(local_dc)
                    .unwrap_or("datacenter1");
                let mut out = String::from("{'class': 'NetworkTopologyStrategy'");
                for dc in dcs.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                    // A datacenter name is a string literal here; quotes would end it.
                    if dc.contains('\'') {
                        return Err(ConfigError::Strategy(dc.to_owned()));
                    }
                    out.push_str(&format!(", '{dc}': {rf}"));
                }
                out.push('}');
                Ok(out)
            }
            other => Err(ConfigError::Strategy(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_the_default_port() {
        let c = CassandraConfig::new(" cassandra , 10.0.0.2:9142,", "iot_demo").unwrap();
        assert_eq!(c.nodes, vec!["cassandra:9042", "10.0.0.2:9142"]);
        assert!(matches!(
            CassandraConfig::new(" , ", "iot_demo"),
            Err(ConfigError::NoNodes)
        ));
    }

    #[test]
    fn keyspace_names_that_could_inject_cql_are_refused() {
        for bad in ["", "Iot", "1iot", "iot;drop", "iot demo", &"a".repeat(49)] {
            assert!(check_keyspace(bad).is_err(), "{bad:?}");
        }
        check_keyspace("iot_demo").unwrap();
    }

    #[test]
    fn consistency_names_parse() {
        assert_eq!(
            parse_consistency("local_quorum"),
            Ok(Consistency::LocalQuorum)
        );
        assert_eq!(parse_consistency("ONE"), Ok(Consistency::One));
        assert!(parse_consistency("MOST").is_err());
    }

    fn args(extra: &[&str]) -> CassandraArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            c: CassandraArgs,
        }
        let mut argv = vec!["x", "--cassandra-nodes", "db"];
        argv.extend_from_slice(extra);
        <Cli as clap::Parser>::parse_from(argv).c
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_start_up() {
        assert!(matches!(
            args(&["--cassandra-consistency", "ANY"]).resolve(),
            Err(ConfigError::AnyForReads)
        ));
        assert!(matches!(
            args(&["--cassandra-region-shards", "0"]).resolve(),
            Err(ConfigError::Shards(0))
        ));
        assert!(matches!(
            args(&["--cassandra-username", "iot"]).resolve(),
            Err(ConfigError::HalfCredentials)
        ));
        let c = args(&["--cassandra-username", "iot", "--cassandra-password", "pw"])
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(c.credentials, Some(("iot".into(), "pw".into())));
        assert_eq!(c.region_shards, None, "the keyspace's unless named");
        assert_eq!(c.region_cache_ttl, Duration::from_secs(14_400));
    }

    #[test]
    fn replication_literals() {
        let mut r = ReplicationArgs {
            replication_strategy: "SimpleStrategy".into(),
            replication_factor: 1,
            replication_datacenters: None,
        };
        assert_eq!(
            r.cql(None).unwrap(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        r.replication_strategy = "NetworkTopologyStrategy".into();
        r.replication_factor = 3;
        assert_eq!(
            r.cql(Some("eu-west")).unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'eu-west': 3}"
        );
        r.replication_datacenters = Some("dc1, dc2".into());
        assert_eq!(
            r.cql(None).unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}"
        );
        r.replication_datacenters = Some("x'}".into());
        assert!(r.cql(None).is_err());
        r.replication_strategy = "LocalStrategy".into();
        assert!(r.cql(None).is_err());
    }
}
