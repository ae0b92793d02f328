//! The one change to the file's wiring: every container gets its own loopback address
//! (`127.P.S.R`: a prefix per run, one number per service and per replica), so each process
//! binds the very ports the file names. Host names in values become those addresses,
//! `0.0.0.0` (and, in a healthcheck, the container's own `127.0.0.1`/`localhost`) become the
//! container's own address. A value that is a service name alone, or a comma-separated list
//! of them (`IOT_CASSANDRA_NODES: cassandra`), becomes their addresses.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone)]
pub struct Addresses {
    /// Each service's replicas, in order.
    pub hosts: BTreeMap<String, Vec<Ipv4Addr>>,
}

impl Addresses {
    /// Addresses for `services` (name, replicas) under a loopback prefix `127.prefix.*.*`.
    pub fn assign(prefix: u8, services: &[(String, usize)]) -> Self {
        let hosts = services
            .iter()
            .enumerate()
            .map(|(i, (name, replicas))| {
                let s = u8::try_from(i + 1).unwrap_or(u8::MAX);
                let ips = (1..=*replicas)
                    .map(|r| Ipv4Addr::new(127, prefix, s, u8::try_from(r).unwrap_or(u8::MAX)))
                    .collect();
                (name.clone(), ips)
            })
            .collect();
        Self { hosts }
    }

    pub fn of(&self, service: &str) -> &[Ipv4Addr] {
        self.hosts.get(service).map_or(&[], Vec::as_slice)
    }

    /// `value` as seen from a container at `own`.
    pub fn map(&self, value: &str, own: Ipv4Addr) -> String {
        let first = |name: &str| self.hosts.get(name).and_then(|ips| ips.first());
        if !value.is_empty() && value.split(',').all(|h| first(h.trim()).is_some()) {
            return value
                .split(',')
                .filter_map(|h| first(h.trim()))
                .map(Ipv4Addr::to_string)
                .collect::<Vec<_>>()
                .join(",");
        }
        let mut out = value.replace("0.0.0.0", &own.to_string());
        for (name, ips) in &self.hosts {
            if let Some(ip) = ips.first() {
                out = replace_host(&out, &format!("{name}:"), &format!("{ip}:"));
            }
        }
        out
    }

    /// A healthcheck's argument: as [`Addresses::map`], and its own loopback is `own`.
    pub fn map_local(&self, value: &str, own: Ipv4Addr) -> String {
        let own_s = own.to_string();
        let out = self.map(value, own);
        let out = replace_host(&out, "127.0.0.1", &own_s);
        replace_host(&out, "localhost", &own_s)
    }
}

/// Replaces `from` where it starts a host name (at the start, or after `/`, `@`, `,`, `=`
/// or a space), so `meter:` never matches inside `iot-meter:`.
fn replace_host(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let before = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        let boundary = before.is_none_or(|c| matches!(c, '/' | '@' | ',' | '=' | ' '));
        out.push_str(&rest[..i]);
        out.push_str(if boundary { to } else { from });
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_wildcards_become_loopback_addresses() {
        let a = Addresses::assign(
            9,
            &[("edge".into(), 1), ("meter".into(), 2), ("web".into(), 1)],
        );
        let own = Ipv4Addr::new(127, 9, 2, 2);
        assert_eq!(a.of("meter"), [Ipv4Addr::new(127, 9, 2, 1), own]);
        assert_eq!(a.map("0.0.0.0:8081", own), "127.9.2.2:8081");
        assert_eq!(a.map("http://edge:8080", own), "http://127.9.1.1:8080");
        assert_eq!(a.map("cassandra", own), "cassandra");
        assert_eq!(a.map("web", own), "127.9.3.1");
        assert_eq!(a.map("edge, web", own), "127.9.1.1,127.9.3.1");
        assert_eq!(a.map("web and more", own), "web and more");
        assert_eq!(a.map("http://fakeedge:8080", own), "http://fakeedge:8080");
        assert_eq!(
            a.map_local("http://127.0.0.1:9081/readyz", own),
            "http://127.9.2.2:9081/readyz"
        );
    }
}
