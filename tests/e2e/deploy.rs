//! The deployment files: `docker-compose.yml` is accepted by docker-compose, the edge's
//! `deploy/haproxy.cfg` by haproxy, and the edge routes only external paths to external
//! listeners. The routing checks read the HAProxy config and evaluate its rules for sample
//! requests, so they need no Docker engine. The Kubernetes manifests (`deploy/k8s`) render
//! with `kubectl kustomize`, validate against the Kubernetes schemas (`kubernetes-validate
//! --strict`, offline), and their Ingress routes exactly the edge's external allowlist.

use std::collections::HashMap;

use serde::Deserialize as _;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs a validator, or says loudly that it is missing (a failure under CI).
fn validate(program: &str, args: &[&str], package: &str) {
    let out = match Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .env("IOT_METER_SECRET", "ci-meter-secret-of-at-least-32-bytes")
        .env("IOT_ANALYST_TOKEN", "ci-analyst-token")
        .output()
    {
        Ok(out) => out,
        Err(e) => return validate_missing(program, e, package),
    };
    assert!(
        out.status.success(),
        "{program} {args:?} refused the file:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A validator that cannot run: a failure under CI, a loud skip elsewhere.
fn validate_missing(program: &str, e: std::io::Error, package: &str) {
    iot_common::test_services::missing(
        &format!("{program} validation"),
        &format!("`{program}` cannot run ({e}); install Debian's `{package}`"),
        None,
    );
}

#[test]
fn docker_compose_accepts_the_compose_file() {
    validate(
        "docker-compose",
        &["-f", "docker-compose.yml", "config", "-q"],
        "docker-compose",
    );
}

#[test]
fn docker_compose_accepts_the_test_cassandra_file_without_secrets() {
    let out = Command::new("docker-compose")
        .args(["-f", "compose.test.yml", "config", "-q"])
        .current_dir(ROOT)
        .env_remove("IOT_METER_SECRET")
        .env_remove("IOT_ANALYST_TOKEN")
        .output();
    match out {
        Ok(out) => assert!(
            out.status.success(),
            "compose.test.yml needs more than it should:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => validate_missing("docker-compose", e, "docker-compose"),
    }
}

#[test]
fn haproxy_accepts_the_edge_config() {
    validate(
        "haproxy",
        &["-c", "-q", "-f", "deploy/haproxy.cfg"],
        "haproxy",
    );
}

/// One `frontend` or `backend` section: its lines, without comments.
fn sections(cfg: &str) -> HashMap<String, Vec<Vec<String>>> {
    let mut out: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in cfg.lines() {
        let line = line.split('#').next().unwrap_or("");
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if words.is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            current = match words[0].as_str() {
                "frontend" | "backend" => Some(format!("{} {}", words[0], words[1])),
                _ => None,
            };
            if let Some(c) = &current {
                out.entry(c.clone()).or_default();
            }
            continue;
        }
        if let Some(c) = &current {
            out.entry(c.clone()).or_default().push(words);
        }
    }
    out
}

struct Frontend {
    acls: HashMap<String, Vec<(String, Vec<String>)>>,
    rules: Vec<Vec<String>>,
}

fn frontend(cfg: &HashMap<String, Vec<Vec<String>>>, name: &str) -> Frontend {
    let lines = cfg
        .get(&format!("frontend {name}"))
        .unwrap_or_else(|| panic!("no frontend {name}"));
    let mut acls: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    let mut rules = Vec::new();
    for l in lines {
        match l[0].as_str() {
            "acl" => acls
                .entry(l[1].clone())
                .or_default()
                .push((l[2].clone(), l[3..].to_vec())),
            "use_backend" | "default_backend" | "http-request" => rules.push(l.clone()),
            "bind" | "monitor-uri" => {}
            other => panic!("frontend {name}: the test does not know `{other}`; teach it"),
        }
    }
    Frontend { acls, rules }
}

impl Frontend {
    fn acl(&self, name: &str, method: &str, path: &str) -> bool {
        let defs = self
            .acls
            .get(name)
            .unwrap_or_else(|| panic!("undefined acl {name}"));
        defs.iter()
            .any(|(criterion, values)| match criterion.as_str() {
                "path" => values.iter().any(|v| v == path),
                "path_beg" => values.iter().any(|v| path.starts_with(v.as_str())),
                "method" => values.iter().any(|v| v == method),
                other => panic!("the test does not know acl criterion `{other}`; teach it"),
            })
    }

    /// `if a !b c`: every term holds.
    fn holds(&self, cond: &[String], method: &str, path: &str) -> bool {
        cond.iter().all(|term| {
            assert!(term != "||" && term != "or", "the test handles AND only");
            match term.strip_prefix('!') {
                Some(name) => !self.acl(name, method, path),
                None => self.acl(term, method, path),
            }
        })
    }

    /// Where a request goes: a backend name, or `deny <status>`.
    fn route(&self, method: &str, path: &str) -> String {
        // HAProxy runs http-request rules before choosing a backend.
        for r in self.rules.iter().filter(|r| r[0] == "http-request") {
            if r[1] == "deny" {
                let cond = r
                    .iter()
                    .position(|w| w == "if")
                    .map_or(&r[0..0], |i| &r[i + 1..]);
                if self.holds(cond, method, path) {
                    let status = r
                        .iter()
                        .position(|w| w == "deny_status")
                        .map_or("403", |i| &r[i + 1]);
                    return format!("deny {status}");
                }
            }
        }
        for r in self.rules.iter().filter(|r| r[0] == "use_backend") {
            assert_eq!(r[2], "if", "use_backend without a condition: {r:?}");
            if self.holds(&r[3..], method, path) {
                return r[1].clone();
            }
        }
        self.rules
            .iter()
            .find(|r| r[0] == "default_backend")
            .map(|r| r[1].clone())
            .unwrap_or_else(|| "deny 503".into())
    }

    /// Every path value the frontend's ACLs name.
    fn paths(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .acls
            .values()
            .flatten()
            .filter(|(c, _)| c.starts_with("path"))
            .flat_map(|(_, v)| v.clone())
            .collect();
        out.sort();
        out
    }
}

/// The `host:port` each server of a backend sends requests to.
fn targets(cfg: &HashMap<String, Vec<Vec<String>>>, backend: &str) -> Vec<String> {
    cfg.get(&format!("backend {backend}"))
        .unwrap_or_else(|| panic!("no backend {backend}"))
        .iter()
        .filter_map(|l| match l[0].as_str() {
            "server" => Some(l[2].clone()),
            "server-template" => Some(l[3].clone()),
            _ => None,
        })
        .collect()
}

const INTERNAL_SAMPLES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/internal/console",
    "/internal/console/login",
    "/internal/console/recompute",
    "/internal/static/app.css",
    "/internal/v1/meters",
    "/internal/v1/runs",
    "/internal/v1/runs/run-1",
    "/admin",
    "//internal/console",
];

#[test]
fn the_external_frontend_routes_external_paths_only() {
    let cfg = sections(&read("deploy/haproxy.cfg"));
    let ext = frontend(&cfg, "external");
    for path in INTERNAL_SAMPLES {
        for method in ["GET", "POST", "HEAD", "DELETE"] {
            let to = ext.route(method, path);
            assert!(
                to == "not_found" || to.starts_with("deny"),
                "{method} {path} reaches {to} through the edge"
            );
        }
    }
    let expect = [
        ("POST", "/api/v1/readings", "meter_external"),
        ("GET", "/api/v1/readings", "deny 405"),
        ("GET", "/", "web_external"),
        ("GET", "/regions/E09000001", "web_external"),
        ("GET", "/estimate", "web_external"),
        ("GET", "/status", "web_external"),
        ("GET", "/static/app.css", "web_external"),
        ("GET", "/api/v1/regions", "web_external"),
        ("GET", "/api/v1/regions/E09000001", "web_external"),
        ("GET", "/api/v1/meters/MAC000001/readings", "web_external"),
        ("GET", "/api/v1/openapi.json", "web_external"),
        ("GET", "/api/v1/live", "web_external"),
        ("GET", "/api/v1/live/E09000001", "web_external"),
        ("GET", "/me", "web_external"),
        ("POST", "/me/login", "web_external"),
        ("POST", "/me/logout", "web_external"),
        ("POST", "/me/tariff", "web_external"),
        ("GET", "/me/readings.csv", "web_external"),
        ("GET", "/me/daily.csv", "web_external"),
        ("GET", "/api/v1/meters/MAC000001/daily", "web_external"),
        ("GET", "/me/other", "not_found"),
        ("POST", "/", "not_found"),
        ("GET", "/nowhere", "not_found"),
    ];
    for (method, path, backend) in expect {
        assert_eq!(ext.route(method, path), backend, "{method} {path}");
    }
    // The allowlist itself: a new routed path must be added here on purpose.
    assert_eq!(
        ext.paths(),
        vec![
            "/",
            "/api/v1/live",
            "/api/v1/live/",
            "/api/v1/meters/",
            "/api/v1/openapi.json",
            "/api/v1/readings",
            "/api/v1/regions",
            "/api/v1/regions/",
            "/estimate",
            "/me",
            "/me/daily.csv",
            "/me/login",
            "/me/logout",
            "/me/readings.csv",
            "/me/tariff",
            "/regions/",
            "/static/",
            "/status",
        ]
    );
    // Whatever the external frontend reaches, it reaches external listeners only.
    let mut reachable: Vec<&str> = ext
        .rules
        .iter()
        .filter(|r| r[0] == "use_backend" || r[0] == "default_backend")
        .map(|r| r[1].as_str())
        .collect();
    reachable.sort();
    reachable.dedup();
    for backend in reachable.into_iter().filter(|b| *b != "not_found") {
        for target in targets(&cfg, backend) {
            assert!(
                target.ends_with(":8080") || target.ends_with(":8081"),
                "backend {backend} sends external traffic to {target}, not an external listener"
            );
        }
    }
    assert!(targets(&cfg, "not_found").is_empty());
}

#[test]
fn the_analyst_frontend_reaches_the_console_runs_and_queries_only() {
    let cfg = sections(&read("deploy/haproxy.cfg"));
    let analyst = frontend(&cfg, "analyst");
    assert_eq!(analyst.route("GET", "/internal/console"), "web_internal");
    assert_eq!(
        analyst.route("POST", "/internal/console/recompute"),
        "web_internal"
    );
    assert_eq!(
        analyst.route("GET", "/internal/v1/runs"),
        "analytics_internal"
    );
    assert_eq!(
        analyst.route("POST", "/internal/v1/query"),
        "analytics_internal"
    );
    assert_eq!(
        analyst.route("POST", "/internal/console/query"),
        "web_internal"
    );
    assert_eq!(analyst.route("GET", "/internal/v1/meters"), "web_internal");
    for path in [
        "/internal/v1/openapi.json",
        "/internal/v1/quality/meters",
        "/internal/v1/quality/silent-meters",
    ] {
        assert_eq!(analyst.route("GET", path), "web_internal", "{path}");
    }
    for path in ["/metrics", "/healthz", "/", "/api/v1/readings"] {
        assert_eq!(analyst.route("GET", path), "not_found", "{path}");
    }
    assert_eq!(targets(&cfg, "analytics_internal"), vec!["analytics:9083"]);
}

#[test]
fn only_the_edge_publishes_ports_and_the_analyst_port_is_loopback_only() {
    let compose = read("docker-compose.yml");
    let mut service = String::new();
    let mut published = Vec::new();
    let mut in_ports = false;
    for line in compose.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':') {
            service = line.trim().trim_end_matches(':').to_owned();
            in_ports = false;
            continue;
        }
        let t = line.trim();
        if t == "ports:" || t.starts_with("expose:") {
            in_ports = true;
            continue;
        }
        if in_ports {
            if let Some(item) = t.strip_prefix("- ") {
                published.push((service.clone(), item.trim_matches('"').to_owned()));
                continue;
            }
            in_ports = false;
        }
    }
    assert_eq!(
        published,
        vec![
            ("edge".to_owned(), "8080:8080".to_owned()),
            ("edge".to_owned(), "127.0.0.1:9090:9090".to_owned()),
        ]
    );
}

/// Workspace members and the binaries they declare, from the manifests.
fn members_and_bins() -> (Vec<String>, Vec<String>) {
    let root = read("Cargo.toml");
    let members_line = root
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .unwrap_or_else(|| panic!("no members in Cargo.toml"));
    let members: Vec<String> = members_line
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    let mut bins = Vec::new();
    for manifest in std::iter::once("Cargo.toml".to_owned())
        .chain(members.iter().map(|m| format!("{m}/Cargo.toml")))
    {
        let text = read(&manifest);
        let mut in_bin = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                in_bin = t == "[[bin]]";
            } else if in_bin && t.starts_with("name") {
                bins.push(t.split('"').nth(1).unwrap_or_default().to_owned());
            }
        }
    }
    (members, bins)
}

#[test]
fn the_image_builds_every_crate_and_ships_every_binary_compose_runs() {
    let dockerfile = read("Dockerfile");
    let (members, bins) = members_and_bins();
    for m in &members {
        assert!(
            dockerfile.contains(&format!("COPY {m}/Cargo.toml {m}/")),
            "the Dockerfile's dependency layer misses {m}/Cargo.toml"
        );
    }
    let stub_line = dockerfile
        .lines()
        .find(|l| l.contains("for crate in . common"))
        .unwrap_or_else(|| panic!("no stub loop in the Dockerfile"));
    for m in &members {
        assert!(
            stub_line
                .split_whitespace()
                .any(|w| w.trim_end_matches(';') == m),
            "the stub loop misses {m}"
        );
    }
    // Developers' tools, outside any image: the compose file run as processes, and the
    // configuration document written from the binaries' `--help` (`stack/src/bin/`).
    let not_shipped = ["compose-as-processes", "config-doc"];
    for b in bins.iter().filter(|b| !not_shipped.contains(&b.as_str())) {
        assert!(
            dockerfile.contains(&format!("target/release/{b} ")),
            "the image does not ship the `{b}` binary"
        );
    }
    // Every compose service built from the image runs one of those binaries.
    for line in read("docker-compose.yml").lines() {
        if let Some(cmd) = line.trim().strip_prefix("command: [\"") {
            let program = cmd.split('"').next().unwrap_or_default();
            assert!(
                bins.iter().any(|b| b == program),
                "compose runs `{program}`, which the image lacks"
            );
        }
    }
}

/// `kubectl kustomize deploy/k8s`, or `None` (a failure under CI) without kubectl.
fn rendered_k8s() -> Option<String> {
    let out = match Command::new("kubectl")
        .args(["kustomize", "deploy/k8s"])
        .current_dir(ROOT)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            validate_missing("kubectl", e, "kubectl");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/k8s failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_kubernetes_manifests_render_and_validate_against_the_schemas() {
    let Some(yaml) = rendered_k8s() else { return };
    let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(file.path(), &yaml).unwrap_or_else(|e| panic!("{e}"));
    let path = file.path().to_string_lossy().into_owned();
    // Strict: a misspelt field is an error, not ignored.
    validate(
        "kubernetes-validate",
        &["--strict", "--quiet", "-k", "1.33.0", &path],
        "kubernetes-validate (pip)",
    );
    for kind in [
        "Namespace",
        "ConfigMap",
        "Secret",
        "Job",
        "Deployment",
        "HorizontalPodAutoscaler",
        "CronJob",
        "Service",
        "Ingress",
        "NetworkPolicy",
    ] {
        assert!(yaml.contains(&format!("kind: {kind}\n")), "no {kind}");
    }
    // The analytics cluster: a scheduler with its Service, executors, and policies that let
    // only the cluster's own pods and its clients reach them.
    let objects = k8s_objects(&yaml);
    let named = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    for deployment in ["analytics-scheduler", "analytics-executor"] {
        let d = named("Deployment", deployment);
        let command = &d["spec"]["template"]["spec"]["containers"][0]["command"];
        assert_eq!(command[0], "analytics", "{deployment}");
        assert_eq!(command[1], deployment.trim_start_matches("analytics-"));
    }
    named("Service", "analytics-scheduler");
    for (policy, pods) in [
        (
            "analytics-scheduler-from-its-clients",
            "analytics-scheduler",
        ),
        (
            "analytics-executors-within-the-cluster",
            "analytics-executor",
        ),
    ] {
        let p = named("NetworkPolicy", policy);
        assert_eq!(
            p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], pods,
            "{policy}"
        );
    }
}

/// The rendered objects, as YAML values.
fn k8s_objects(yaml: &str) -> Vec<serde_norway::Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| {
            serde_norway::Value::deserialize(doc).unwrap_or_else(|e| panic!("rendered YAML: {e}"))
        })
        .collect()
}

#[test]
fn the_ingress_routes_exactly_the_edges_external_allowlist() {
    let Some(yaml) = rendered_k8s() else { return };
    let objects = k8s_objects(&yaml);
    let cfg = sections(&read("deploy/haproxy.cfg"));
    let edge = frontend(&cfg, "external");
    let ingress = objects
        .iter()
        .find(|o| o["kind"] == "Ingress")
        .unwrap_or_else(|| panic!("no Ingress"));
    let mut paths = Vec::new();
    for rule in ingress["spec"]["rules"]
        .as_sequence()
        .unwrap_or_else(|| panic!("no rules"))
    {
        for p in rule["http"]["paths"]
            .as_sequence()
            .unwrap_or_else(|| panic!("no paths"))
        {
            let path = p["path"].as_str().unwrap_or_default().to_owned();
            let service = p["backend"]["service"]["name"].as_str().unwrap_or_default();
            let port = p["backend"]["service"]["port"]["name"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(port, "external", "{path} goes to {service}'s {port} port");
            let exact = p["pathType"] == "Exact";
            assert_eq!(
                exact,
                !path.ends_with('/') || path == "/",
                "{path}: pathType"
            );
            // The edge's own routing of the same path names the same service.
            let method = if path == "/api/v1/readings" {
                "POST"
            } else {
                "GET"
            };
            let probe = if exact {
                path.clone()
            } else {
                format!("{path}x")
            };
            assert_eq!(
                edge.route(method, &probe),
                format!("{service}_external"),
                "{method} {probe}"
            );
            paths.push(path);
        }
    }
    paths.sort();
    assert_eq!(paths, edge.paths());
}

#[test]
fn the_example_overlay_fills_the_secrets() {
    // A copy of the layout, so the secrets file never lands in the source tree.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let copy = |from: &str, to: &Path| {
        std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
        for entry in std::fs::read_dir(Path::new(ROOT).join(from)).unwrap_or_else(|e| panic!("{e}"))
        {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_file() {
                let name = path.file_name().unwrap_or_default();
                std::fs::copy(&path, to.join(name)).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    };
    copy("deploy/k8s/base", &dir.path().join("base"));
    let overlay = dir.path().join("overlays/example");
    copy("deploy/k8s/overlays/example", &overlay);
    std::fs::write(
        overlay.join("secrets.env"),
        "IOT_METER_SECRET=0123456789abcdef0123456789abcdef\nIOT_ANALYST_TOKEN=analyst\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = match Command::new("kubectl")
        .args(["kustomize", &overlay.to_string_lossy()])
        .output()
    {
        Ok(out) => out,
        Err(e) => return validate_missing("kubectl", e, "kubectl"),
    };
    assert!(
        out.status.success(),
        "the example overlay does not render:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = k8s_objects(&String::from_utf8_lossy(&out.stdout));
    let secrets: Vec<_> = objects.iter().filter(|o| o["kind"] == "Secret").collect();
    assert_eq!(secrets.len(), 1, "one Secret, replaced, not a second one");
    let s = secrets[0];
    assert_eq!(s["metadata"]["name"], "iot-secrets");
    for key in ["IOT_METER_SECRET", "IOT_ANALYST_TOKEN"] {
        let v = s["data"][key].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "{key} is empty in the overlay's Secret");
    }
}

/// The version pinned in a test node's Maven project (`tests/nodes/<kind>/pom.xml`).
fn node_version(kind: &str) -> String {
    let pom = std::fs::read_to_string(format!("{ROOT}/tests/nodes/{kind}/pom.xml"))
        .unwrap_or_else(|e| panic!("tests/nodes/{kind}/pom.xml: {e}"));
    let open = format!("<{kind}.version>");
    pom.split_once(&open)
        .and_then(|(_, rest)| rest.split_once('<'))
        .map(|(v, _)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {open} in tests/nodes/{kind}/pom.xml"))
}

/// Every `image: <name>:<tag>` of a compose file, by name.
fn image_tags(file: &str) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(format!("{ROOT}/{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("image:"))
        .filter_map(|image| image.trim().rsplit_once(':'))
        .map(|(name, tag)| (name.to_owned(), tag.to_owned()))
        .collect()
}

#[test]
fn the_test_nodes_run_the_versions_of_the_compose_images() {
    let pins = [
        (
            "cassandra",
            "cassandra",
            ["docker-compose.yml", "compose.test.yml"].as_slice(),
        ),
        ("apache/kafka", "kafka", ["docker-compose.yml"].as_slice()),
    ];
    for (image, kind, files) in pins {
        let version = node_version(kind);
        for file in files {
            let tags: Vec<String> = image_tags(file)
                .into_iter()
                .filter(|(name, _)| name == image)
                .map(|(_, tag)| tag)
                .collect();
            assert!(!tags.is_empty(), "{file} has no {image} image");
            for tag in tags {
                assert_eq!(
                    tag, version,
                    "{file} runs {image}:{tag} but tests/nodes/{kind}/pom.xml pins {version}: \
                     the tests would meet another server than the stack's"
                );
            }
        }
    }
}
