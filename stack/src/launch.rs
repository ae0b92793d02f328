//! Starts the compose file's services as processes, in the order `depends_on` gives, each
//! with exactly the file's command and environment (host names mapped to loopback
//! addresses), and runs each service's own healthcheck until it passes.
//!
//! Substitutions, said in the log: Kafka is a tansu broker; Cassandra is the embedded
//! SQLite store (`IOT_CASSANDRA_NODES` dropped, every service sharing one `IOT_DATA_DIR`);
//! HAProxy runs from `deploy/haproxy.cfg` with its binds and its DNS server mapped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iot_kafka::test_broker::TestBroker;

use crate::StackError;
use crate::addresses::Addresses;
use crate::compose::{Condition, Healthcheck, Service};
use crate::dns::Dns;

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
}

/// Variables every binary reads outside its flags.
const READ_BY_EVERY_BINARY: &[&str] = &["RUST_LOG"];

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
}

impl Proc {
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
    /// The shared data directory standing for Cassandra.
    pub data_dir: PathBuf,
    pub procs: Vec<Proc>,
    healthy: BTreeSet<String>,
    _broker: Option<TestBroker>,
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
        let services = crate::compose::parse(&text, &config.vars)?;
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
            data_dir: config.work_dir.join("data"),
            services: services.clone(),
            procs: Vec::new(),
            healthy: BTreeSet::new(),
            _broker: None,
            _dns: None,
        };
        std::fs::create_dir_all(config.work_dir.join("logs"))
            .and_then(|()| std::fs::create_dir_all(&stack.data_dir))
            .map_err(|e| StackError::Setup(format!("{}: {e}", config.work_dir.display())))?;
        eprintln!(
            "!!! compose as processes: Kafka is a tansu broker, Cassandra is the embedded \
             SQLite store in {} (IOT_CASSANDRA_NODES dropped, one IOT_DATA_DIR shared); \
             everything else as docker-compose.yml says !!!",
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
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).ok()?;
                let kib: f64 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                Some((p.name.clone(), kib / 1024.0))
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
            Kind::Kafka => {
                let broker = TestBroker::start(&format!("compose service {}", s.name))
                    .ok_or_else(|| StackError::service(&s.name, "no Kafka broker (tansu)"))?;
                self.addresses
                    .substituted
                    .insert(format!("{}:9092", s.name), broker.brokers());
                self.healthy.insert(s.name.clone());
                self._broker = Some(broker);
            }
            Kind::Cassandra => {
                self.healthy.insert(s.name.clone());
            }
            Kind::Edge => self.start_edge(s, config)?,
            Kind::Platform => {
                for (i, ip) in self.addresses.of(&s.name).to_vec().into_iter().enumerate() {
                    let mut env = image_env.clone();
                    for (k, v) in &s.environment {
                        env.insert(k.clone(), self.addresses.map(v, ip));
                    }
                    env.remove("IOT_CASSANDRA_NODES");
                    env.insert("IOT_DATA_DIR".into(), path_str(&self.data_dir)?);
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

    fn start_edge(&mut self, s: &Service, config: &StackConfig) -> Result<(), StackError> {
        let ip = self.addresses.of(&s.name)[0];
        let cfg = std::fs::read_to_string(config.root.join("deploy/haproxy.cfg"))
            .map_err(|e| StackError::service(&s.name, format!("deploy/haproxy.cfg: {e}")))?;
        let names: BTreeMap<String, Vec<Ipv4Addr>> = self.addresses.hosts.clone();
        let dns = Dns::start(names)
            .map_err(|e| StackError::service(&s.name, format!("cannot start its DNS: {e}")))?;
        let mapped = map_haproxy(&cfg, ip, &dns.addr.to_string());
        let path = config.work_dir.join("haproxy.cfg");
        std::fs::write(&path, mapped)
            .map_err(|e| StackError::Setup(format!("{}: {e}", path.display())))?;
        self._dns = Some(dns);
        let mut cmd = Command::new("haproxy");
        cmd.args(["-db", "-f", &path_str(&path)?]);
        self.spawn(s, s.name.clone(), ip, BTreeMap::new(), cmd, config)
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
            .map(|a| self.addresses.map_local(a, ip))
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

/// The edge's config with its binds on the edge's address and Docker's DNS replaced.
pub fn map_haproxy(cfg: &str, ip: Ipv4Addr, dns: &str) -> String {
    cfg.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if let Some(port) = trimmed.strip_prefix("bind :") {
                format!("    bind {ip}:{port}")
            } else {
                line.replace("127.0.0.11:53", dns)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
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

/// The runtime image's `ENV` (the last stage of the Dockerfile).
pub fn image_env(dockerfile: &str) -> BTreeMap<String, String> {
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap_or("");
    last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The binaries the Dockerfile copies into the image.
pub fn image_binaries(dockerfile: &str) -> BTreeSet<String> {
    dockerfile
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .filter(|w| !w.is_empty() && !w.contains('/') && !w.contains('*'))
        .map(str::to_owned)
        .collect()
}

/// The command names a binary of the image and one of its subcommands, and every variable
/// the file gives the service is one that binary reads (its `--help` lists them).
fn check_command(
    s: &Service,
    bin_dir: &Path,
    binaries: &BTreeSet<String>,
) -> Result<(), StackError> {
    let Some(program) = s.command.first() else {
        return Err(StackError::service(&s.name, "has no command"));
    };
    if !binaries.contains(program) {
        return Err(StackError::service(
            &s.name,
            format!("command `{program}` is not a binary of the image ({binaries:?})"),
        ));
    }
    let bin = bin_dir.join(program);
    if !bin.is_file() {
        return Err(StackError::Setup(format!(
            "{} is not built: cargo build --workspace --bins (or cargo test --workspace) first",
            bin.display()
        )));
    }
    let subcommands: Vec<&String> = s.command[1..]
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .collect();
    // Flags may sit on the binary or on any subcommand on the way: read every level's help.
    let mut read: BTreeSet<String> = READ_BY_EVERY_BINARY
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
    for depth in 0..=subcommands.len() {
        let out = Command::new(&bin)
            .args(&subcommands[..depth])
            .arg("--help")
            .env_clear()
            .output()
            .map_err(|e| StackError::service(&s.name, format!("cannot run {program}: {e}")))?;
        if !out.status.success() {
            return Err(StackError::service(
                &s.name,
                format!(
                    "command {:?} is not a command of `{program}`: {}",
                    s.command,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        read.extend(env_names(&String::from_utf8_lossy(&out.stdout)));
    }
    let unread: Vec<&String> = s
        .environment
        .keys()
        .filter(|k| !read.contains(k.as_str()))
        .collect();
    if !unread.is_empty() {
        return Err(StackError::service(
            &s.name,
            format!(
                "{unread:?} {} read by no flag of `{}`",
                if unread.len() == 1 { "is" } else { "are" },
                s.command.join(" ")
            ),
        ));
    }
    Ok(())
}

/// The variables a clap `--help` text lists (`[env: NAME=...]`).
fn env_names(help: &str) -> Vec<String> {
    // clap wraps long lines; one space between words keeps `[env: NAME` whole.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_texts_name_their_variables() {
        let help = "  --a <A>  x [env:\n   IOT_A=] [default: 1]\n  --s <S> [env: IOT_SECRET]";
        assert_eq!(env_names(help), ["IOT_A", "IOT_SECRET"]);
    }

    #[test]
    fn haproxy_binds_and_dns_are_mapped() {
        let cfg =
            "resolvers docker\n    nameserver dns 127.0.0.11:53\nfrontend x\n    bind :8080\n";
        let out = map_haproxy(cfg, Ipv4Addr::new(127, 3, 1, 1), "127.0.0.1:5353");
        assert!(out.contains("nameserver dns 127.0.0.1:5353"), "{out}");
        assert!(out.contains("bind 127.3.1.1:8080"), "{out}");
    }
}
