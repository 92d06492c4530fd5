//! A request's hash for RING_HASH and MAGLEV clusters, from the route's `hash_policy`
//! (see config/hash_policy.rs for the folding rules), and the cookie a cookie policy with a TTL
//! generates when the request has none.

use std::net::SocketAddr;

use http::HeaderMap;

use crate::config::hash_policy::{CookieHash, HashKind, HashPolicy};
use crate::upstream::lb::hash;

/// What hashing a request produced: the hash (none: the balancer draws one) and the
/// `set-cookie` value to add to the response for a generated cookie.
#[derive(Debug, Default)]
pub struct RequestHash {
    pub hash: Option<u64>,
    pub set_cookie: Option<String>,
}

pub fn compute(
    policies: &[HashPolicy],
    headers: &HeaderMap,
    path_and_query: &str,
    peer: SocketAddr,
    local: SocketAddr,
) -> RequestHash {
    let mut out = RequestHash::default();
    for p in policies {
        let value = match &p.kind {
            HashKind::Header { name, rewrite } => {
                let mut values: Vec<String> = headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                if values.is_empty() {
                    None
                } else {
                    if let Some((re, sub)) = rewrite {
                        for v in &mut values {
                            *v = re.replace_all(v, sub.as_str()).into_owned();
                        }
                    }
                    // Sorted so "a, b" and "b, a" hash alike (Envoy's HeaderHashMethod).
                    values.sort();
                    Some(hash::xx_chain(values.iter().map(|v| v.as_bytes())))
                }
            }
            HashKind::Cookie(c) => cookie(c, headers, peer, local, &mut out.set_cookie),
            HashKind::SourceIp => Some(hash::xx(peer.ip().to_string().as_bytes())),
            HashKind::QueryParameter(name) => {
                query_value(path_and_query, name).map(|v| hash::xx(v.as_bytes()))
            }
        };
        if let Some(v) = value {
            // The old hash rotated left by one, so two equal policies do not cancel out.
            out.hash = Some(out.hash.map_or(0, |h| h.rotate_left(1)) ^ v);
        }
        if p.terminal && out.hash.is_some() {
            break;
        }
    }
    out
}

fn cookie(
    c: &CookieHash,
    headers: &HeaderMap,
    peer: SocketAddr,
    local: SocketAddr,
    set_cookie: &mut Option<String>,
) -> Option<u64> {
    if let Some(v) = cookie_value(headers, &c.name).filter(|v| !v.is_empty()) {
        return Some(hash::xx(v.as_bytes()));
    }
    let ttl = c.ttl?;
    // Envoy derives the value from the connection's two addresses, so concurrent requests on
    // one connection get the same cookie; it hashes the hex string it sends.
    let value = format!("{:016x}", hash::xx(format!("{peer}{local}").as_bytes()));
    let mut header = format!("{}=\"{value}\"", c.name);
    if !ttl.is_zero() {
        header.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if !c.path.is_empty() {
        header.push_str(&format!("; Path={}", c.path));
    }
    for (name, v) in &c.attributes {
        if v.is_empty() {
            header.push_str(&format!("; {name}"));
        } else {
            header.push_str(&format!("; {name}={v}"));
        }
    }
    header.push_str("; HttpOnly");
    *set_cookie = Some(header);
    Some(hash::xx(value.as_bytes()))
}

/// The value of cookie `name` in the request's `cookie` headers (surrounding quotes removed).
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    for h in headers.get_all(http::header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The first value of query parameter `name`, as sent (not percent-decoded, as Envoy).
fn query_value<'a>(path_and_query: &'a str, name: &str) -> Option<&'a str> {
    let query = path_and_query.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hash_policy::HashKind;

    fn policy(kind: HashKind, terminal: bool) -> HashPolicy {
        HashPolicy { kind, terminal }
    }

    fn header(name: &'static str) -> HashKind {
        HashKind::Header {
            name: http::HeaderName::from_static(name),
            rewrite: None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn header_values_in_any_order_hash_alike() {
        let p = [policy(header("x-user"), false)];
        let mut a = HeaderMap::new();
        a.append("x-user", "alice".parse().expect("value"));
        a.append("x-user", "bob".parse().expect("value"));
        let mut b = HeaderMap::new();
        b.append("x-user", "bob".parse().expect("value"));
        b.append("x-user", "alice".parse().expect("value"));
        let peer = addr("10.0.0.1:5000");
        let h = compute(&p, &a, "/", peer, peer).hash;
        assert!(h.is_some());
        assert_eq!(h, compute(&p, &b, "/", peer, peer).hash);
        let mut one = HeaderMap::new();
        one.insert("x-user", "alice".parse().expect("value"));
        assert_eq!(
            compute(&p, &one, "/", peer, peer).hash,
            Some(hash::xx(b"alice"))
        );
        assert_eq!(compute(&p, &HeaderMap::new(), "/", peer, peer).hash, None);
    }

    #[test]
    fn policies_fold_and_terminal_stops() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "1".parse().expect("value"));
        h.insert("x-b", "2".parse().expect("value"));
        let peer = addr("10.0.0.1:5000");
        let both = [policy(header("x-a"), false), policy(header("x-b"), false)];
        let expected = hash::xx(b"1").rotate_left(1) ^ hash::xx(b"2");
        assert_eq!(compute(&both, &h, "/", peer, peer).hash, Some(expected));
        let terminal = [policy(header("x-a"), true), policy(header("x-b"), false)];
        assert_eq!(
            compute(&terminal, &h, "/", peer, peer).hash,
            Some(hash::xx(b"1"))
        );
        // A terminal policy that found nothing does not stop the walk.
        let missing = [policy(header("x-none"), true), policy(header("x-b"), false)];
        assert_eq!(
            compute(&missing, &h, "/", peer, peer).hash,
            Some(hash::xx(b"2"))
        );
    }

    #[test]
    fn source_ip_and_query_parameter() {
        let peer = addr("10.1.2.3:4444");
        let ip = [policy(HashKind::SourceIp, false)];
        assert_eq!(
            compute(&ip, &HeaderMap::new(), "/", peer, peer).hash,
            Some(hash::xx(b"10.1.2.3"))
        );
        let q = [policy(HashKind::QueryParameter("user".into()), false)];
        assert_eq!(
            compute(
                &q,
                &HeaderMap::new(),
                "/p?a=1&user=bob&user=eve",
                peer,
                peer
            )
            .hash,
            Some(hash::xx(b"bob"))
        );
        assert_eq!(
            compute(&q, &HeaderMap::new(), "/p?a=1", peer, peer).hash,
            None
        );
    }

    #[test]
    fn cookie_is_read_or_generated_with_its_ttl() {
        let c = CookieHash {
            name: "sticky".into(),
            path: "/".into(),
            ttl: Some(std::time::Duration::from_secs(60)),
            attributes: vec![("SameSite".into(), "Lax".into())],
        };
        let p = [policy(HashKind::Cookie(c.clone()), false)];
        let peer = addr("10.0.0.1:5000");
        let local = addr("10.0.0.2:80");
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=b; sticky=\"abc\"".parse().expect("value"));
        let read = compute(&p, &h, "/", peer, local);
        assert_eq!(read.hash, Some(hash::xx(b"abc")));
        assert!(read.set_cookie.is_none());
        let made = compute(&p, &HeaderMap::new(), "/", peer, local);
        let header = made.set_cookie.expect("a generated cookie");
        let value = format!("{:016x}", hash::xx(b"10.0.0.1:500010.0.0.2:80"));
        assert_eq!(
            header,
            format!("sticky=\"{value}\"; Max-Age=60; Path=/; SameSite=Lax; HttpOnly")
        );
        assert_eq!(made.hash, Some(hash::xx(value.as_bytes())));
        // Without a TTL nothing is generated.
        let no_ttl = [policy(
            HashKind::Cookie(CookieHash { ttl: None, ..c }),
            false,
        )];
        assert!(
            compute(&no_ttl, &HeaderMap::new(), "/", peer, local)
                .hash
                .is_none()
        );
    }
}
