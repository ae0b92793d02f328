//! The `kafka` and `cassandra` services as the real Apache Kafka and Apache Cassandra at the
//! images' versions, started by the project's node runner on their own loopback addresses
//! with the file's settings.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use iot_common::test_services::node_runner;

use super::{Stack, StackConfig, path_str};
use crate::StackError;
use crate::compose::Service;

impl Stack {
    /// The `kafka` service as a real broker on its own address, configured the way the
    /// apache/kafka image turns the file's `KAFKA_*` variables into server properties.
    pub(super) fn start_kafka(
        &mut self,
        s: &Service,
        config: &StackConfig,
    ) -> Result<(), StackError> {
        let ip = self.addresses.of(&s.name)[0];
        let dir = self.data_dir.join(&s.name);
        let env: BTreeMap<String, String> = s
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), self.addresses.map(v, ip)))
            .chain(runner_env())
            .collect();
        let props = kafka_properties(&env, ip, &dir.join("data"));
        let file = config.work_dir.join(format!("{}.properties", s.name));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&file, props))
            .map_err(|e| StackError::Setup(format!("{}: {e}", file.display())))?;
        let heap = java_heap(env.get("KAFKA_OPTS").map_or("", String::as_str)).unwrap_or("512m");
        let mut cmd = Command::new(node_runner());
        cmd.args([
            "kafka",
            "--addr",
            &ip.to_string(),
            "--port",
            "9092",
            "--heap",
            heap,
        ])
        .args(["--config", &path_str(&file)?, "--dir", &path_str(&dir)?]);
        if let Some(id) = env.get("CLUSTER_ID") {
            cmd.args(["--cluster-id", id]);
        }
        // The image's tools, for its healthcheck: the same classes from the broker's jars.
        let lib = node_lib("kafka")?;
        let bin = config.work_dir.join("opt-kafka/bin");
        let tool = bin.join("kafka-broker-api-versions.sh");
        std::fs::create_dir_all(&bin)
            .and_then(|()| {
                std::fs::write(
                    &tool,
                    format!(
                        "#!/bin/sh\n# The apache/kafka image's tool of this name: its class, from the broker's jars.\n\
                         exec java ${{KAFKA_HEAP_OPTS:--Xmx256m}} $KAFKA_OPTS -cp '{lib}/*' \
                         org.apache.kafka.tools.BrokerApiVersionsCommand \"$@\"\n"
                    ),
                )
            })
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| StackError::Setup(format!("{}: {e}", tool.display())))?;
        self.image_paths.push((
            "/opt/kafka/".into(),
            format!("{}/", path_str(&bin.join(".."))?),
        ));
        self.spawn(s, s.name.clone(), ip, env, cmd, config)?;
        if let Some(p) = self.procs.last_mut() {
            p.node_pid = Some(dir.join("pid"));
        }
        Ok(())
    }

    /// The `cassandra` service as a real node on its own address, with the cassandra
    /// image's settings the file gives (cluster name, data centre, heap).
    pub(super) fn start_cassandra(
        &mut self,
        s: &Service,
        config: &StackConfig,
    ) -> Result<(), StackError> {
        let ip = self.addresses.of(&s.name)[0];
        let dir = self.data_dir.join(&s.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StackError::Setup(format!("{}: {e}", dir.display())))?;
        let var = |k: &str| s.environment.get(k).cloned();
        let mut cmd = Command::new(node_runner());
        cmd.args(["cassandra", "--addr", &ip.to_string(), "--port", "9042"])
            .args(["--dir", &path_str(&dir)?]);
        if let Some(heap) = var("MAX_HEAP_SIZE") {
            cmd.args(["--heap", &heap]);
        }
        if let Some(name) = var("CASSANDRA_CLUSTER_NAME") {
            cmd.args(["--cluster-name", &name]);
        }
        if let Some(dc) = var("CASSANDRA_DC") {
            cmd.args(["--dc", &dc]);
        }
        // cqlsh in the container asks the container's own address; here that is `ip`.
        let env = runner_env()
            .chain([("CQLSH_HOST".to_owned(), ip.to_string())])
            .collect();
        self.spawn(s, s.name.clone(), ip, env, cmd, config)?;
        if let Some(p) = self.procs.last_mut() {
            p.node_pid = Some(dir.join("pid"));
        }
        Ok(())
    }
}

/// The broker's server properties from the apache/kafka image's rules: each `KAFKA_X_Y`
/// variable is property `x.y` (`__` is `_`, `___` is `-`), except the launcher's own
/// variables. Listeners without a host bind the container's address; the data goes to `data`.
pub fn kafka_properties(env: &BTreeMap<String, String>, ip: Ipv4Addr, data: &Path) -> String {
    const LAUNCHER: &[&str] = &[
        "KAFKA_OPTS",
        "KAFKA_HEAP_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_VERSION",
    ];
    let mut out = String::new();
    for (k, v) in env {
        let Some(name) = k.strip_prefix("KAFKA_") else {
            continue;
        };
        if LAUNCHER.contains(&k.as_str()) {
            continue;
        }
        let key = name
            .to_lowercase()
            .replace("___", "-")
            .replace("__", "\u{0}")
            .replace('_', ".")
            .replace('\u{0}', "_");
        let value = match key.as_str() {
            "log.dirs" => data.display().to_string(),
            _ => v.replace("://:", &format!("://{ip}:")),
        };
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

/// What the node runner needs of this machine's environment: where the jars are cached and
/// which Java runs them (the image's own variables are the file's).
fn runner_env() -> impl Iterator<Item = (String, String)> {
    ["HOME", "IOT_NODES_CACHE", "JAVA_HOME", "TMPDIR"]
        .into_iter()
        .filter_map(|k| Some((k.to_owned(), std::env::var(k).ok()?)))
}

/// The `-Xmx` of a JVM options string, as the node runner's `--heap` takes it.
fn java_heap(opts: &str) -> Option<&str> {
    opts.split_whitespace().find_map(|o| o.strip_prefix("-Xmx"))
}

/// The folder of a node's jars (fetched once by the node runner).
fn node_lib(kind: &str) -> Result<String, StackError> {
    let out = Command::new(node_runner())
        .args(["fetch", kind])
        .output()
        .map_err(|e| StackError::Setup(format!("tests/nodes/run: {e}")))?;
    if !out.status.success() {
        return Err(StackError::Setup(format!(
            "tests/nodes/run fetch {kind}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_variables_become_the_image_s_properties() {
        let env = BTreeMap::from(
            [
                ("CLUSTER_ID", "abc"),
                ("KAFKA_NODE_ID", "1"),
                ("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@127.3.1.1:9093"),
                ("KAFKA_LOG_DIRS", "/var/lib/kafka/data"),
                ("KAFKA_OPTS", "-Xms512m -Xmx512m"),
                ("KAFKA_SOME__ODD___NAME", "x"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let props = kafka_properties(&env, Ipv4Addr::new(127, 3, 1, 1), Path::new("/d"));
        let lines: Vec<&str> = props.lines().collect();
        assert_eq!(
            lines,
            [
                "controller.quorum.voters=1@127.3.1.1:9093",
                "listeners=PLAINTEXT://127.3.1.1:9092,CONTROLLER://127.3.1.1:9093",
                "log.dirs=/d",
                "node.id=1",
                "some_odd-name=x",
            ]
        );
        assert_eq!(java_heap("-Xms512m -Xmx512m"), Some("512m"));
    }
}
