//! A DNS responder standing in for Docker's embedded one (127.0.0.11): it answers the
//! edge's A queries for service names with every replica's loopback address, so HAProxy's
//! `resolvers` section finds however many meter replicas run, as in Compose.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Dns {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Dns {
    pub fn start(names: BTreeMap<String, Vec<Ipv4Addr>>) -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::SeqCst) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..n], &names) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        Ok(Self { addr, stop })
    }
}

/// The reply to one query: A records for a known name, an empty answer for its other types,
/// NXDOMAIN for an unknown name. `None` for what is not a one-question query.
pub fn answer(query: &[u8], names: &BTreeMap<String, Vec<Ipv4Addr>>) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = query.get(12..i + 4)?;
    let name = labels.join(".");
    let ips = names.get(&name);
    let records: &[Ipv4Addr] = match (ips, qtype) {
        (Some(ips), 1) => ips,
        _ => &[],
    };
    let rcode: u8 = if ips.is_some() { 0 } else { 3 };
    let mut out = Vec::with_capacity(12 + question.len() + records.len() * 16);
    out.extend_from_slice(&query[0..2]);
    // QR, authoritative, recursion desired as asked, recursion available.
    out.push(0x84 | (query[2] & 0x01));
    out.push(0x80 | rcode);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::try_from(records.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in records {
        // A pointer to the name in the question, type A, class IN, TTL 5 s, four bytes.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn every_replica_is_answered() {
        let names = BTreeMap::from([(
            "meter".to_owned(),
            vec![Ipv4Addr::new(127, 1, 2, 1), Ipv4Addr::new(127, 1, 2, 2)],
        )]);
        let r = answer(&query("METER", 1), &names).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 2);
        assert_eq!(&r[r.len() - 4..], &[127, 1, 2, 2]);
        let none = answer(&query("meter", 28), &names).unwrap();
        assert_eq!((none[3] & 0x0f, none[7]), (0, 0));
        let nx = answer(&query("nowhere", 1), &names).unwrap();
        assert_eq!(nx[3] & 0x0f, 3);
    }
}
