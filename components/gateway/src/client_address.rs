//! Which client a request came from, for the per-client rate limit of anonymous callers (and the
//! audit trail). The host tells the gateway the IP of the connection a request came on in
//! `x-pm-peer-addr` (it overwrites any a client sent: local/xtask/src/patches.rs,
//! `peer_addr_header`). When that peer is a proxy the gateway trusts (a load balancer in front),
//! the client is the address that proxy saw: the rightmost `X-Forwarded-For` entry that is not
//! itself a trusted proxy. The entries to its left are whatever the client chose to send, so
//! they never count.
use std::net::IpAddr;

use http::HeaderMap;

pub const PEER_HEADER: &str = "x-pm-peer-addr";
/// Config key: the proxies whose `X-Forwarded-For` is believed, comma separated IPs.
pub const TRUSTED_PROXIES_KEY: &str = "trusted_proxies";
/// Loopback only: on one machine a local reverse proxy (or the tests' client, which gives each
/// simulated caller its own `X-Forwarded-For`) is the only thing in front of the gateway.
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.1,::1";

/// Requests from a host that does not say the peer (an unpatched host) share one bucket.
const UNKNOWN: &str = "unknown";

pub struct TrustedProxies(Vec<IpAddr>);

impl TrustedProxies {
    /// From the config value; an entry that is not an IP is an error naming it.
    pub fn parse(value: &str) -> Result<Self, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse()
                    .map_err(|_| format!("{TRUSTED_PROXIES_KEY}: `{entry}` is not an IP address"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn none() -> Self {
        Self(Vec::new())
    }

    fn trusts(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }
}

/// The client's address as the gateway can best know it.
pub fn client_address(headers: &HeaderMap, trusted: &TrustedProxies) -> String {
    let Some(peer) = ip_in(headers.get(PEER_HEADER).and_then(|v| v.to_str().ok())) else {
        return UNKNOWN.to_string();
    };
    if !trusted.trusts(&peer) {
        return peer.to_string();
    }
    // Every X-Forwarded-For header, in order, as one list; walked from the right (the entry the
    // nearest proxy appended) past the proxies the gateway trusts.
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in forwarded.iter().rev() {
        match ip_in(Some(entry)) {
            Some(ip) if trusted.trusts(&ip) => continue,
            Some(ip) => return ip.to_string(),
            // Not an address: the proxies we trust write addresses, so the client wrote this.
            None => break,
        }
    }
    peer.to_string()
}

fn ip_in(value: Option<&str>) -> Option<IpAddr> {
    value?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(peer: Option<&str>, forwarded: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(peer) = peer {
            map.insert(PEER_HEADER, HeaderValue::from_str(peer).unwrap());
        }
        for value in forwarded {
            map.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn loopback() -> TrustedProxies {
        TrustedProxies::parse(DEFAULT_TRUSTED_PROXIES).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = headers(Some("203.0.113.7"), &["198.51.100.1"]);
        assert_eq!(client_address(&h, &loopback()), "203.0.113.7");
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_entry_counts() {
        let h = headers(Some("127.0.0.1"), &["6.6.6.6, 198.51.100.1"]);
        assert_eq!(client_address(&h, &loopback()), "198.51.100.1");
        let chain = TrustedProxies::parse("127.0.0.1, 10.0.0.2").unwrap();
        let h = headers(Some("127.0.0.1"), &["6.6.6.6", "198.51.100.1, 10.0.0.2"]);
        assert_eq!(client_address(&h, &chain), "198.51.100.1");
    }

    #[test]
    fn a_trusted_peer_without_forwarding_or_with_garbage_is_itself() {
        assert_eq!(
            client_address(&headers(Some("127.0.0.1"), &[]), &loopback()),
            "127.0.0.1"
        );
        let h = headers(Some("127.0.0.1"), &["6.6.6.6, not-an-ip"]);
        assert_eq!(client_address(&h, &loopback()), "127.0.0.1");
    }

    #[test]
    fn no_peer_header_is_one_shared_unknown_client() {
        let h = headers(None, &["198.51.100.1"]);
        assert_eq!(client_address(&h, &loopback()), "unknown");
    }

    #[test]
    fn the_config_names_a_bad_entry() {
        let e = TrustedProxies::parse("127.0.0.1, proxy.local")
            .err()
            .unwrap();
        assert!(e.contains("`proxy.local`"), "{e}");
    }
}
