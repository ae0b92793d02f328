//! `docker-compose.yml` read as Compose reads it: YAML merge keys (`<<: *anchor`) applied,
//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` interpolated from the given variables,
//! and each service's command, environment, healthcheck, replicas and dependencies taken out.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use crate::StackError;

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    /// Built from the project's Dockerfile (`build:`), so its commands are our binaries.
    pub built_here: bool,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub healthcheck: Option<Healthcheck>,
    pub depends_on: Vec<(String, Condition)>,
    pub replicas: usize,
    /// Compose profiles it belongs to; none: it always runs.
    pub profiles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone)]
pub struct Healthcheck {
    /// The argv to run; `CMD-SHELL` becomes `sh -c`.
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Healthcheck {
    /// How long Compose lets a service stay unhealthy before it gives up on it.
    pub fn patience(&self) -> Duration {
        self.start_period + (self.interval + self.timeout) * self.retries.max(1)
    }
}

#[derive(Deserialize)]
struct RawFile {
    services: BTreeMap<String, RawService>,
}

#[derive(Deserialize)]
struct RawService {
    image: Option<String>,
    build: Option<Value>,
    command: Option<StringOrList>,
    #[serde(default)]
    environment: Option<Environment>,
    healthcheck: Option<RawHealthcheck>,
    depends_on: Option<DependsOn>,
    deploy: Option<RawDeploy>,
    #[serde(default)]
    profiles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    String(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Environment {
    Map(BTreeMap<String, Option<Value>>),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, RawDependency>),
}

#[derive(Deserialize)]
struct RawDependency {
    condition: Option<Condition>,
}

#[derive(Deserialize)]
struct RawHealthcheck {
    test: StringOrList,
    interval: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    start_period: Option<String>,
}

#[derive(Deserialize)]
struct RawDeploy {
    replicas: Option<usize>,
}

fn compose_error(why: impl Into<String>) -> StackError {
    StackError::Compose(why.into())
}

/// Whether `service` runs with `active` profiles (`docker compose --profile P`): services
/// without profiles always do.
pub fn runs_with(service: &Service, active: &[String]) -> bool {
    service.profiles.is_empty() || service.profiles.iter().any(|p| active.contains(p))
}

/// Parses a Compose file with `vars` standing for the shell environment and `.env`.
pub fn parse(text: &str, vars: &HashMap<String, String>) -> Result<Vec<Service>, StackError> {
    let mut value: Value =
        serde_norway::from_str(text).map_err(|e| compose_error(format!("not YAML: {e}")))?;
    value
        .apply_merge()
        .map_err(|e| compose_error(format!("merge keys: {e}")))?;
    interpolate_all(&mut value, vars)?;
    let raw: RawFile = serde_norway::from_value(value)
        .map_err(|e| compose_error(format!("unexpected shape: {e}")))?;
    raw.services
        .into_iter()
        .map(|(name, s)| service(name, s))
        .collect()
}

fn service(name: String, s: RawService) -> Result<Service, StackError> {
    let command = match s.command {
        None => Vec::new(),
        Some(StringOrList::List(l)) => l,
        Some(StringOrList::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
    };
    let environment = match s.environment {
        None => BTreeMap::new(),
        Some(Environment::Map(m)) => m
            .into_iter()
            .map(|(k, v)| (k, v.map(scalar).unwrap_or_default()))
            .collect(),
        Some(Environment::List(l)) => l
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv, String::new()),
            })
            .collect(),
    };
    let healthcheck = s.healthcheck.map(|h| healthcheck(&name, h)).transpose()?;
    let depends_on = match s.depends_on {
        None => Vec::new(),
        Some(DependsOn::List(l)) => l
            .into_iter()
            .map(|d| (d, Condition::ServiceStarted))
            .collect(),
        Some(DependsOn::Map(m)) => m
            .into_iter()
            .map(|(d, c)| (d, c.condition.unwrap_or(Condition::ServiceStarted)))
            .collect(),
    };
    Ok(Service {
        image: s.image,
        built_here: s.build.is_some(),
        command,
        environment,
        healthcheck,
        depends_on,
        replicas: s.deploy.and_then(|d| d.replicas).unwrap_or(1),
        profiles: s.profiles,
        name,
    })
}

fn scalar(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => serde_norway::to_string(&other).unwrap_or_default(),
    }
}

fn healthcheck(service: &str, h: RawHealthcheck) -> Result<Healthcheck, StackError> {
    let bad = |why: String| compose_error(format!("service {service}: healthcheck {why}"));
    let argv = match h.test {
        StringOrList::String(s) => vec!["sh".into(), "-c".into(), s],
        StringOrList::List(l) => match l.split_first() {
            Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
            Some((kind, rest)) if kind == "CMD-SHELL" => {
                vec!["sh".into(), "-c".into(), rest.join(" ")]
            }
            _ => return Err(bad(format!("test {l:?} is neither CMD nor CMD-SHELL"))),
        },
    };
    let duration = |v: Option<String>, default: u64| -> Result<Duration, StackError> {
        v.map_or(Ok(Duration::from_secs(default)), |s| {
            parse_duration(&s).ok_or_else(|| bad(format!("duration `{s}` is not one")))
        })
    };
    Ok(Healthcheck {
        argv,
        interval: duration(h.interval, 30)?,
        timeout: duration(h.timeout, 30)?,
        retries: h.retries.unwrap_or(3),
        start_period: duration(h.start_period, 0)?,
    })
}

/// Compose durations: `1m30s`, `10s`, `500ms`, `2h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return None,
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn interpolate_all(v: &mut Value, vars: &HashMap<String, String>) -> Result<(), StackError> {
    match v {
        Value::String(s) => *s = interpolate(s, vars)?,
        Value::Sequence(items) => {
            for item in items {
                interpolate_all(item, vars)?;
            }
        }
        Value::Mapping(m) => {
            for (_, item) in m.iter_mut() {
                interpolate_all(item, vars)?;
            }
        }
        Value::Tagged(t) => interpolate_all(&mut t.value, vars)?,
        _ => {}
    }
    Ok(())
}

/// One string, as Compose interpolates it.
pub fn interpolate(s: &str, vars: &HashMap<String, String>) -> Result<String, StackError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| compose_error(format!("unclosed `${{` in `{s}`")))?;
            out.push_str(&expand(&r[..end], vars)?);
            rest = &r[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push_str(vars.get(&rest[..end]).map_or("", String::as_str));
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(expr: &str, vars: &HashMap<String, String>) -> Result<String, StackError> {
    let name_end = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, op) = expr.split_at(name_end);
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let pick = |word: &str, use_word: bool| -> String {
        if use_word {
            word.to_owned()
        } else {
            value.cloned().unwrap_or_default()
        }
    };
    Ok(if op.is_empty() {
        pick("", false)
    } else if let Some(word) = op.strip_prefix(":-") {
        pick(word, !set_nonempty)
    } else if let Some(word) = op.strip_prefix('-') {
        pick(word, value.is_none())
    } else if let Some(msg) = op.strip_prefix(":?") {
        if !set_nonempty {
            return Err(compose_error(format!("required variable {name}: {msg}")));
        }
        pick("", false)
    } else if let Some(msg) = op.strip_prefix('?') {
        if value.is_none() {
            return Err(compose_error(format!("required variable {name}: {msg}")));
        }
        pick("", false)
    } else {
        return Err(compose_error(format!("unsupported `${{{expr}}}`")));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn interpolation_follows_compose() {
        let v = vars(&[("A", "1"), ("E", "")]);
        assert_eq!(interpolate("x${A}y$A$$", &v).unwrap(), "x1y1$");
        assert_eq!(interpolate("${E:-d} ${E-d} ${N-d}", &v).unwrap(), "d  d");
        assert!(interpolate("${E:?say}", &v).is_err());
        assert_eq!(interpolate("${E?say}", &v).unwrap(), "");
        assert!(interpolate("${N?say}", &v).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10x"), None);
    }

    #[test]
    fn merge_keys_and_shapes() {
        let text = r#"
x-base: &base
  image: app
  build: .
  environment: &env
    A: a
services:
  one:
    <<: *base
    command: ["bin", "run"]
    environment:
      <<: *env
      B: ${B:-b}
    deploy: {replicas: 2}
    healthcheck:
      test: ["CMD-SHELL", "true"]
      interval: 2s
    depends_on:
      two: {condition: service_healthy}
  two:
    image: other
    environment: ["C=c"]
    depends_on: [one]
"#;
        let s = parse(text, &HashMap::new()).unwrap();
        assert_eq!(s[0].name, "one");
        assert!(s[0].built_here);
        assert_eq!(s[0].replicas, 2);
        assert_eq!(s[0].environment["A"], "a");
        assert_eq!(s[0].environment["B"], "b");
        let h = s[0].healthcheck.as_ref().unwrap();
        assert_eq!(h.argv, ["sh", "-c", "true"]);
        assert_eq!(h.interval, Duration::from_secs(2));
        assert_eq!(s[0].depends_on, [("two".into(), Condition::ServiceHealthy)]);
        assert_eq!(s[1].environment["C"], "c");
        assert_eq!(s[1].depends_on, [("one".into(), Condition::ServiceStarted)]);
    }
}
