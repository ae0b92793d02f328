//! Starts the compose file's services as processes, in the order `depends_on` gives, each
//! with exactly the file's command and environment (host names mapped to loopback
//! addresses), and runs each service's own healthcheck until it passes.
//!
//! The one substitution is container → process, said in the log: the `kafka` and
//! `cassandra` services are the real Apache Kafka and Apache Cassandra at the images'
//! versions, started by `tests/nodes/run` on their own loopback addresses with the file's
//! settings (the Kafka image's `KAFKA_*` variables become the broker's properties; the
//! Cassandra image's cluster name, data centre and heap), and their healthchecks run as the
//! file writes them (`cqlsh`; the Kafka image's `bin/` tool from the same jars). HAProxy runs
//! from `deploy/haproxy.cfg` with its binds and its DNS server mapped.
//!
//! Here: supervision (start order, spawning, healthchecks, stopping). Beside it: `nodes` (the
//! real Kafka and Cassandra), `edge` (HAProxy and its DNS), `preflight` (each command and
//! variable checked against the binaries before anything starts).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::StackError;
use crate::addresses::Addresses;
use crate::compose::{Condition, Healthcheck, Service};
use crate::dns::Dns;

mod edge;
mod nodes;
mod preflight;

pub use edge::map_haproxy;
pub use nodes::kafka_properties;
use preflight::check_command;
pub(crate) use preflight::env_names;
pub use preflight::{image_binaries, image_env};

/// What a run needs: the project's files, the binaries and the Compose variables.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The project root: `Dockerfile` and `deploy/haproxy.cfg` are read from it.
    pub root: PathBuf,
    /// The Compose file (default `root/docker-compose.yml`).
    pub compose_file: PathBuf,
    /// Where `meter`, `simulator`, ... are built (`target/debug` or `target/release`).
    pub bin_dir: PathBuf,
    /// The Compose variables: what `.env` and the shell would give `docker compose`.
    pub vars: HashMap<String, String>,
    /// Logs, the shared data directory and the edge's mapped config go here.
    pub work_dir: PathBuf,
    /// The second octet of the run's loopback addresses.
    pub prefix: u8,
    /// The Compose profiles to run (`--profile`), beside the services that have none.
    pub profiles: Vec<String>,
}

enum Kind {
    Kafka,
    Cassandra,
    Edge,
    Platform,
}

fn kind(s: &Service) -> Result<Kind, StackError> {
    let image = s.image.as_deref().unwrap_or("");
    if s.built_here {
        Ok(Kind::Platform)
    } else if image.starts_with("apache/kafka") {
        Ok(Kind::Kafka)
    } else if image.starts_with("cassandra") {
        Ok(Kind::Cassandra)
    } else if image.starts_with("haproxy") {
        Ok(Kind::Edge)
    } else {
        Err(StackError::service(
            &s.name,
            format!("image `{image}`: this harness does not know how to run it; teach it"),
        ))
    }
}

/// One running container: a process and its log.
pub struct Proc {
    pub name: String,
    pub service: String,
    pub ip: Ipv4Addr,
    pub env: BTreeMap<String, String>,
    child: Child,
    log: PathBuf,
    /// A one-shot service (`service_completed_successfully`) may exit.
    one_shot: bool,
    /// For a Kafka or Cassandra node: the file holding the JVM's pid (the child is the
    /// node runner, which stops the JVM cleanly on SIGTERM).
    node_pid: Option<PathBuf>,
}

impl Proc {
    /// The process whose memory is the service's: the JVM of a node, else the child.
    fn pid(&self) -> Option<u32> {
        match &self.node_pid {
            Some(file) => std::fs::read_to_string(file).ok()?.trim().parse().ok(),
            None => Some(self.child.id()),
        }
    }
}

impl Proc {
    /// Everything it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its output, for an error message.
    pub fn tail(&self) -> String {
        tail(&self.log)
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(15);
    lines[from..].join("\n")
}

/// The running stack; dropping it stops every process (SIGTERM, then SIGKILL).
pub struct Stack {
    pub services: Vec<Service>,
    pub addresses: Addresses,
    /// The nodes' data: a folder per Kafka or Cassandra service, standing for its volume.
    pub data_dir: PathBuf,
    pub procs: Vec<Proc>,
    healthy: BTreeSet<String>,
    /// Image paths a healthcheck names, and what stands for them here.
    image_paths: Vec<(String, String)>,
    _dns: Option<Dns>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for p in self.procs.iter().rev() {
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -TERM {} 2>/dev/null", p.child.id())])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(35);
        for p in self.procs.iter_mut().rev() {
            while Instant::now() < deadline && matches!(p.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = p.child.kill();
            let _ = p.child.wait();
            // A node runner killed before its JVM stopped leaves the JVM running.
            if let Some(pid) = p.node_pid.as_ref().and_then(|_| p.pid()) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

impl Stack {
    /// Reads the file, checks every platform service's command and variables against its
    /// binary, then starts everything and waits until every healthcheck passes.
    pub async fn up(config: &StackConfig) -> Result<Self, StackError> {
        // Each process runs in a directory of its own: relative paths would break.
        let absolute = |p: &Path| {
            std::path::absolute(p).map_err(|e| StackError::Setup(format!("{}: {e}", p.display())))
        };
        let config = &StackConfig {
            root: absolute(&config.root)?,
            compose_file: absolute(&config.compose_file)?,
            bin_dir: absolute(&config.bin_dir)?,
            work_dir: absolute(&config.work_dir)?,
            ..config.clone()
        };
        let text = std::fs::read_to_string(&config.compose_file)
            .map_err(|e| StackError::Setup(format!("{}: {e}", config.compose_file.display())))?;
        let services: Vec<Service> = crate::compose::parse(&text, &config.vars)?
            .into_iter()
            .filter(|s| crate::compose::runs_with(s, &config.profiles))
            .collect();
        let dockerfile = std::fs::read_to_string(config.root.join("Dockerfile"))
            .map_err(|e| StackError::Setup(format!("Dockerfile: {e}")))?;
        let image_env = image_env(&dockerfile);
        let binaries = image_binaries(&dockerfile);
        for s in &services {
            if let Kind::Platform = kind(s)? {
                check_command(s, &config.bin_dir, &binaries)?;
            }
        }
        let order = start_order(&services)?;
        let layout: Vec<(String, usize)> = services
            .iter()
            .map(|s| (s.name.clone(), s.replicas))
            .collect();
        let mut stack = Self {
            addresses: Addresses::assign(config.prefix, &layout),
            data_dir: config.work_dir.join("nodes"),
            services: services.clone(),
            procs: Vec::new(),
            healthy: BTreeSet::new(),
            image_paths: Vec::new(),
            _dns: None,
        };
        std::fs::create_dir_all(config.work_dir.join("logs"))
            .and_then(|()| std::fs::create_dir_all(&stack.data_dir))
            .map_err(|e| StackError::Setup(format!("{}: {e}", config.work_dir.display())))?;
        eprintln!(
            "!!! compose as processes: each container is a process on a loopback address of \
             its own; kafka and cassandra are the real Apache Kafka and Cassandra nodes of \
             tests/nodes/run (data in {}); the edge's DNS is a stand-in; everything else as \
             docker-compose.yml says !!!",
            stack.data_dir.display()
        );
        for name in &order {
            let service = stack.service(name).clone();
            for (dep, condition) in &service.depends_on {
                stack.satisfy(dep, *condition).await?;
            }
            stack.start(&service, config, &image_env).await?;
        }
        for name in &order {
            let service = stack.service(name).clone();
            if service.healthcheck.is_some() {
                stack.satisfy(name, Condition::ServiceHealthy).await?;
            }
        }
        Ok(stack)
    }

    fn service(&self, name: &str) -> &Service {
        self.services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| unreachable!("start_order checked {name}"))
    }

    /// The replicas of a service.
    pub fn replicas(&self, service: &str) -> impl Iterator<Item = &Proc> {
        self.procs.iter().filter(move |p| p.service == service)
    }

    /// A variable of a service's first replica, as the process got it (mapped).
    pub fn env(&self, service: &str, var: &str) -> Result<String, StackError> {
        self.replicas(service)
            .next()
            .and_then(|p| p.env.get(var).cloned())
            .ok_or_else(|| StackError::service(service, format!("has no {var}")))
    }

    /// Each process's peak resident memory so far (`VmHWM`), in MiB: the figures the
    /// Kubernetes requests and limits start from.
    pub fn peak_rss_mib(&self) -> Vec<(String, f64)> {
        self.procs
            .iter()
            .filter_map(|p| {
                let mib = iot_common::proc_status::peak_rss_mib(Some(p.pid()?))?;
                Some((p.name.clone(), mib))
            })
            .collect()
    }

    /// Fails, naming it, if a long-running process has exited.
    pub fn check_alive(&mut self) -> Result<(), StackError> {
        for p in &mut self.procs {
            if p.one_shot {
                continue;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(StackError::service(
                    &p.name,
                    format!("exited ({status}):\n{}", p.tail()),
                ));
            }
        }
        Ok(())
    }

    async fn start(
        &mut self,
        s: &Service,
        config: &StackConfig,
        image_env: &BTreeMap<String, String>,
    ) -> Result<(), StackError> {
        match kind(s)? {
            Kind::Kafka => self.start_kafka(s, config)?,
            Kind::Cassandra => self.start_cassandra(s, config)?,
            Kind::Edge => self.start_edge(s, config)?,
            Kind::Platform => {
                for (i, ip) in self.addresses.of(&s.name).to_vec().into_iter().enumerate() {
                    let mut env = image_env.clone();
                    for (k, v) in &s.environment {
                        env.insert(k.clone(), self.addresses.map(v, ip));
                    }
                    let name = replica_name(s, i);
                    let bin = config.bin_dir.join(&s.command[0]);
                    let mut cmd = Command::new(bin);
                    cmd.args(&s.command[1..]);
                    self.spawn(s, name, ip, env, cmd, config)?;
                }
            }
        }
        Ok(())
    }

    fn spawn(
        &mut self,
        s: &Service,
        name: String,
        ip: Ipv4Addr,
        env: BTreeMap<String, String>,
        mut cmd: Command,
        config: &StackConfig,
    ) -> Result<(), StackError> {
        let log = config.work_dir.join("logs").join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .map_err(|e| StackError::Setup(format!("{}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| StackError::Setup(format!("{}: {e}", log.display())))?;
        // Each container has a working directory of its own, as WORKDIR gives it.
        let cwd = config.work_dir.join("containers").join(&name);
        std::fs::create_dir_all(&cwd)
            .map_err(|e| StackError::Setup(format!("{}: {e}", cwd.display())))?;
        let child = cmd
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&env)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| StackError::service(&name, format!("cannot start: {e}")))?;
        let one_shot = self.services.iter().any(|o| {
            o.depends_on
                .iter()
                .any(|(d, c)| *d == s.name && *c == Condition::ServiceCompletedSuccessfully)
        });
        self.procs.push(Proc {
            name,
            service: s.name.clone(),
            ip,
            env,
            child,
            log,
            one_shot,
            node_pid: None,
        });
        Ok(())
    }

    /// Waits until `dep` meets `condition`.
    async fn satisfy(&mut self, dep: &str, condition: Condition) -> Result<(), StackError> {
        match condition {
            Condition::ServiceStarted => Ok(()),
            Condition::ServiceHealthy => {
                if self.healthy.contains(dep) {
                    return Ok(());
                }
                let check = self.service(dep).healthcheck.clone().ok_or_else(|| {
                    StackError::service(dep, "is depended on as healthy but has no healthcheck")
                })?;
                for i in self.replica_indices(dep) {
                    self.wait_healthy(i, &check).await?;
                }
                self.healthy.insert(dep.to_owned());
                Ok(())
            }
            Condition::ServiceCompletedSuccessfully => {
                for i in self.replica_indices(dep) {
                    self.wait_exit_zero(i).await?;
                }
                Ok(())
            }
        }
    }

    fn replica_indices(&self, service: &str) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|i| self.procs[*i].service == service)
            .collect()
    }

    async fn wait_exit_zero(&mut self, i: usize) -> Result<(), StackError> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let p = &mut self.procs[i];
            match p.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(StackError::service(
                        &p.name,
                        format!("exited with {status}:\n{}", p.tail()),
                    ));
                }
                Ok(None) if Instant::now() > deadline => {
                    return Err(StackError::service(&p.name, "did not complete in 300 s"));
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => return Err(StackError::service(&p.name, e.to_string())),
            }
        }
    }

    /// Runs the healthcheck, mapped to the replica's address, until it passes; fails when
    /// the process exits or Compose would have marked it unhealthy. It asks every second,
    /// more often than the file's interval, to keep the run short.
    async fn wait_healthy(&mut self, i: usize, check: &Healthcheck) -> Result<(), StackError> {
        let (ip, env) = (self.procs[i].ip, self.procs[i].env.clone());
        let argv: Vec<String> = check
            .argv
            .iter()
            .map(|a| {
                let a = self.addresses.map_local(a, ip);
                self.image_paths
                    .iter()
                    .fold(a, |a, (from, to)| a.replace(from.as_str(), to))
            })
            .collect();
        let deadline = Instant::now() + check.patience();
        loop {
            self.check_alive()?;
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(&env)
                .stdin(Stdio::null())
                .kill_on_drop(true);
            let last = match tokio::time::timeout(check.timeout, cmd.output()).await {
                Ok(Ok(out)) if out.status.success() => return Ok(()),
                Ok(Ok(out)) => format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Ok(Err(e)) => format!("cannot run `{}`: {e}", argv[0]),
                Err(_) => format!("timed out after {:?}", check.timeout),
            };
            if Instant::now() > deadline {
                let p = &self.procs[i];
                return Err(StackError::service(
                    &p.name,
                    format!(
                        "healthcheck {argv:?} never passed in {} s; last: {}\nits log:\n{}",
                        check.patience().as_secs(),
                        last.trim(),
                        p.tail()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn replica_name(s: &Service, i: usize) -> String {
    if s.replicas > 1 {
        format!("{}-{}", s.name, i + 1)
    } else {
        s.name.clone()
    }
}

fn path_str(p: &Path) -> Result<String, StackError> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| StackError::Setup(format!("{} is not UTF-8", p.display())))
}

/// Services in an order that starts each after what it depends on.
pub fn start_order(services: &[Service]) -> Result<Vec<String>, StackError> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    for s in services {
        for (dep, _) in &s.depends_on {
            if !names.contains(dep.as_str()) {
                return Err(StackError::service(
                    &s.name,
                    format!("depends on `{dep}`, which is no service"),
                ));
            }
        }
    }
    let mut order: Vec<String> = Vec::new();
    while order.len() < services.len() {
        let next = services.iter().find(|s| {
            !order.contains(&s.name) && s.depends_on.iter().all(|(d, _)| order.contains(d))
        });
        match next {
            Some(s) => order.push(s.name.clone()),
            None => {
                return Err(StackError::Compose("depends_on has a cycle".into()));
            }
        }
    }
    Ok(order)
}
