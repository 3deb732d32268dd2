//! The client's address, for rate limits and the audit log, when the portal runs behind reverse
//! proxies: `X-Forwarded-For` is honoured only from the proxies the operator named with
//! `--trusted-proxy CIDR`, and only as far back as the chain of trusted proxies goes. Anyone
//! can send the header, so from any other peer it is ignored: otherwise a client could pick a
//! fresh address for every request and never meet a rate limit.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::state::AppState;

/// Most `X-Forwarded-For` hops looked at.
const MAX_HOPS: usize = 32;

/// An address range, `10.0.0.0/8` or one address (`192.0.2.7`, `::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range (10.0.0.0/8)"))?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v4) => u128::from(u32::from(v4)),
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let shift = width - u32::from(self.prefix);
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        (bits(ip) & mask) == (bits(self.net) & mask)
    }
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy; then, walking
/// `forwarded_for` from the right, the first hop that is not a trusted proxy (a malformed hop
/// stops the walk at the proxy that wrote it).
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            return client;
        }
    }
    client
}

/// Replaces the connection's peer address with the client's (see [`client_ip`]) before any
/// handler, rate limit or audit entry reads it.
pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if !state.limits.trusted_proxies.is_empty()
        && let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>()
    {
        let values: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let client = client_ip(peer.ip(), &values, &state.limits.trusted_proxies);
        let client = SocketAddr::new(client, 0);
        request.extensions_mut().insert(ConnectInfo(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().filter_map(|c| c.parse().ok()).collect()
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        for spoofed in ["1.2.3.4", "1.2.3.4, 10.0.0.1", "garbage"] {
            assert_eq!(
                client_ip(ip("203.0.113.9"), &[spoofed], &trusted),
                ip("203.0.113.9")
            );
        }
        // With no trusted proxy configured, nobody's header counts.
        assert_eq!(client_ip(ip("10.0.0.1"), &["1.2.3.4"], &[]), ip("10.0.0.1"));
    }

    #[test]
    fn spoofed_entries_left_of_the_proxies_are_ignored() {
        let trusted = cidrs(&["10.0.0.0/8", "192.0.2.7"]);
        // The client sent "1.1.1.1" itself; the edge proxy appended the real address.
        let chain = ["1.1.1.1, 198.51.100.20", "10.1.2.3"];
        assert_eq!(
            client_ip(ip("192.0.2.7"), &chain, &trusted),
            ip("198.51.100.20")
        );
        // A malformed hop stops at the proxy that wrote it.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["nonsense, 10.0.0.3"], &trusted),
            ip("10.0.0.3")
        );
        // Only proxies all the way: the leftmost.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["10.0.0.4"], &trusted),
            ip("10.0.0.4")
        );
    }

    #[test]
    fn ranges_parse_and_match() {
        let range: Cidr = "10.0.0.0/8".parse().unwrap_or(Cidr {
            net: ip("0.0.0.0"),
            prefix: 32,
        });
        assert!(range.contains(ip("10.255.0.1")));
        assert!(!range.contains(ip("11.0.0.1")));
        assert!(
            range.contains(ip("::ffff:10.0.0.1")),
            "IPv4-mapped addresses count"
        );
        assert!(!range.contains(ip("::1")));
        assert!("::1".parse::<Cidr>().is_ok_and(|c| c.contains(ip("::1"))));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .is_ok_and(|c| c.contains(ip("8.8.8.8")))
        );
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
