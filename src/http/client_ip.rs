//! The client's address, and how far to believe `X-Forwarded-For`: only
//! when the connection comes from a configured proxy, and then the
//! right-most address that is not itself a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;

/// An IP address or a CIDR range (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Self { net: addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client's address, resolved once per request by the envelope layer
/// and kept in the request's extensions for whoever needs it after.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The client's address as far as it can be trusted.
pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        if headers.contains_key("x-forwarded-for") {
            warn_untrusted_forwarder(peer);
        }
        return peer;
    }
    let mut client = peer;
    // Walk from the nearest hop outwards; stop at the first address that is
    // not one of our proxies (anything further out is the client's to forge).
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

/// The client address of a request.
/// Says once per process that a proxy seems to stand in front of the
/// server unbelieved: then every client behind it shares its address, and
/// a burst of failed logins from one of them locks all of them out.
fn warn_untrusted_forwarder(peer: IpAddr) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            peer = %peer,
            "a request came with X-Forwarded-For from an address not in trusted_proxies: \
             the header is ignored, so if that address is your proxy every client behind it \
             shares one address for rate limits; add it to trusted_proxies (ROSTER_TRUSTED_PROXIES)"
        );
    });
}

pub fn of_parts(parts: &Parts, trusted: &[Cidr]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    resolve(peer, &parts.headers, trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = [Cidr::parse("10.0.0.0/8").unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let h = xff("198.51.100.1, 10.0.0.7");
        assert_eq!(
            resolve(Some(proxy), &h, &proxies),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve(Some(stranger), &h, &proxies), stranger);
        // A forged left-most entry does not win over the first untrusted hop.
        let h = xff("1.1.1.1, 198.51.100.1");
        assert_eq!(
            resolve(Some(proxy), &h, &proxies),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve(Some(proxy), &xff("nonsense"), &proxies), proxy);
    }

    #[test]
    fn cidrs_parse_and_match() {
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            !Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains("11.0.0.1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
    }
}
