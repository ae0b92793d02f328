//! The edge: HAProxy from `deploy/haproxy.cfg`, its binds on the edge's loopback address and
//! Docker's DNS server replaced by a stand-in that answers the services' names.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use super::{Stack, StackConfig, path_str};
use crate::StackError;
use crate::compose::Service;
use crate::dns::Dns;

impl Stack {
    pub(super) fn start_edge(
        &mut self,
        s: &Service,
        config: &StackConfig,
    ) -> Result<(), StackError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_binds_and_dns_are_mapped() {
        let cfg =
            "resolvers docker\n    nameserver dns 127.0.0.11:53\nfrontend x\n    bind :8080\n";
        let out = map_haproxy(cfg, Ipv4Addr::new(127, 3, 1, 1), "127.0.0.1:5353");
        assert!(out.contains("nameserver dns 127.0.0.1:5353"), "{out}");
        assert!(out.contains("bind 127.3.1.1:8080"), "{out}");
    }
}
