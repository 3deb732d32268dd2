//! Requests the portal sends to addresses a vendor chose (webhook endpoints, an identity
//! provider): the URL rules they share, and an HTTP client that reaches only public addresses
//! unless the operator allows private ones, so a vendor cannot aim the portal at its own network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::server::domain::error::{DomainError, DomainResult, Kind};

/// The longest URL a vendor may give.
pub const MAX_URL: usize = 2000;

/// Whether an address is one the public internet routes to: not loopback, private,
/// link-local (the cloud metadata service), shared (CGNAT), multicast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Resolves host names to public addresses only, so that a name that points (or is re-pointed)
/// at a private address after its URL was checked still reaches nothing private.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to private, loopback or link-local addresses"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// A client for vendor-chosen addresses: no redirects, no proxy from the environment, bounded
/// times, and (unless `allow_private`) public addresses only.
pub fn client(
    allow_private: bool,
    timeout: Duration,
    idle_per_host: usize,
    agent: &str,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(idle_per_host)
        .user_agent(agent);
    if !allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    Ok(builder.build()?)
}

/// What a kind of URL is checked for, and how its refusals read.
#[derive(Debug)]
pub struct UrlRules {
    /// The problem code of a malformed URL.
    pub bad_code: &'static str,
    /// The problem code of a URL on a private address.
    pub private_code: &'static str,
    /// What the URLs are, plural (`webhook endpoints`).
    pub what: &'static str,
    /// Why they must be https.
    pub why_https: &'static str,
    /// The operator's flag that allows private addresses.
    pub flag: &'static str,
}

/// Checks a URL a vendor gave: `https` (or `http` where private addresses are allowed), no user
/// or password, and a host that resolves only to public addresses unless those are allowed.
pub async fn check_url(
    text: &str,
    allow_private: bool,
    rules: &UrlRules,
) -> DomainResult<url::Url> {
    let bad = |why: String| DomainError::new(Kind::Invalid, rules.bad_code, why);
    if text.len() > MAX_URL {
        return Err(bad(format!("the URL is over {MAX_URL} characters")));
    }
    let url = url::Url::parse(text).map_err(|e| {
        bad(format!(
            "{text:?} is not a URL ({e}): give https://host/path"
        ))
    })?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        other => {
            return Err(bad(format!(
                "{} must be https URLs, not {other}: {}",
                rules.what, rules.why_https
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "the URL carries a user or password: remove the credentials".into(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad(format!("{text:?} names no host")))?
        .to_owned();
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| bad(format!("the host {host} does not resolve ({e})")))?
            .map(|a| a.ip())
            .collect(),
    };
    if let Some(private) = addresses.iter().find(|ip| !is_public(**ip)) {
        return Err(DomainError::new(
            Kind::Invalid,
            rules.private_code,
            format!(
                "{host} resolves to {private}, a private, loopback or link-local address: {} must be on public addresses (an operator may allow private ones with `serve {}`)",
                rules.what, rules.flag
            ),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use reqwest::dns::Resolve as _;

    use super::*;

    #[tokio::test]
    async fn names_of_private_addresses_resolve_to_nothing() {
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let refused = PublicOnly.resolve(name).await;
        let Err(e) = refused else {
            panic!("localhost resolved through the public-only resolver")
        };
        assert!(e.to_string().contains("private"), "{e}");
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
