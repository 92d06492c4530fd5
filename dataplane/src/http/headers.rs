//! Header handling as Envoy does it: hop-by-hop headers stripped, x-forwarded-*, x-request-id,
//! and the configured additions and removals.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::Downstream;
use crate::config::format::{Operator, Piece};
use crate::config::listener::HttpManager;
use crate::config::route::HeaderRules;

// The names the connection manager and the router read and write on every request, made at
// compile time: a `&str` name is parsed (and checked) again on every get and insert.
pub const TE: HeaderName = HeaderName::from_static("te");
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");
pub const X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");
pub const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
pub const X_ENVOY_OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");
pub const X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");

/// Connection-specific headers never forwarded (RFC 9110 7.6.1; Envoy strips the same).
pub const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    TE,
];

/// A decimal header value; under 100 (an upstream service time on a fast path) without
/// allocating: a slice of a static string.
pub fn number(n: u64) -> HeaderValue {
    /// "0" to "99", one after the other.
    static SMALL: [u8; 190] = {
        let mut out = [0u8; 190];
        let (mut n, mut at) = (0, 0);
        while n < 100 {
            if n >= 10 {
                out[at] = b'0' + (n / 10) as u8;
                at += 1;
            }
            out[at] = b'0' + (n % 10) as u8;
            at += 1;
            n += 1;
        }
        out
    };
    let (at, len) = match n {
        0..10 => (n as usize, 1),
        10..100 => (10 + 2 * (n as usize - 10), 2),
        _ => return HeaderValue::from(n),
    };
    match std::str::from_utf8(&SMALL[at..at + len]) {
        Ok(digits) => HeaderValue::from_static(digits),
        Err(_) => HeaderValue::from(n),
    }
}

pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the (few) names costs less than hashing each
    // hop-by-hop name for a remove.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let te_trailers = headers
        .get(TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("trailers"));
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        if keep_upgrade && (name == header::UPGRADE || name == header::CONNECTION) {
            continue;
        }
        headers.remove(name);
    }
    // gRPC needs `te: trailers` to reach the upstream.
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// The client's address as Envoy's connection manager sees it (`%DOWNSTREAM_REMOTE_ADDRESS%`):
/// with `use_remote_address`, the peer; otherwise the x-forwarded-for entry
/// `xff_num_trusted_hops` + 1 from the right, with port 0 (checked against Envoy 1.40), and
/// the peer when there is none.
pub fn client_address(headers: &HeaderMap, conn: &Downstream, hcm: &HttpManager) -> SocketAddr {
    if hcm.use_remote_address {
        return conn.peer;
    }
    let from_xff = headers
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').nth(hcm.xff_num_trusted_hops as usize))
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    match from_xff {
        Some(ip) => SocketAddr::new(ip, 0),
        None => conn.peer,
    }
}

/// x-forwarded-for, x-forwarded-proto and x-request-id on a request going upstream.
pub fn forwarded(headers: &mut HeaderMap, conn: &Downstream, hcm: &HttpManager) {
    let peer = conn.peer;
    if hcm.use_remote_address && !hcm.skip_xff_append {
        let ip = peer.ip().to_string();
        let value = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(existing) => format!("{existing},{ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    if hcm.use_remote_address {
        // The downstream is the trusted client. Envoy 1.40 treats no address as internal
        // unless `internal_address_config` says so (which we do not accept), so a request is
        // never internal: a client's `x-envoy-internal` is dropped and the peer is recorded as
        // the external address (checked against Envoy 1.40).
        headers.remove(X_ENVOY_INTERNAL);
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            headers.insert(X_ENVOY_EXTERNAL_ADDRESS, v);
        }
    }
    // The scheme of the downstream connection: https when TLS was terminated. A client's
    // own value stays unless the downstream is trusted (one lookup either way: `entry`).
    let proto = HeaderValue::from_static(if conn.tls.is_some() { "https" } else { "http" });
    if hcm.use_remote_address {
        headers.insert(X_FORWARDED_PROTO, proto);
    } else {
        headers.entry(X_FORWARDED_PROTO).or_insert(proto);
    }
    if hcm.generate_request_id {
        headers.entry(X_REQUEST_ID).or_insert_with(request_id);
    }
}

/// A random UUID v4, as Envoy's default request id extension makes (written in place: this
/// runs for every request).
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let mut out = [0u8; 36];
    let mut at = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

/// Applies the rules of each level, most specific first (route, virtual host, route
/// configuration): Envoy's order, so the route configuration's values win on overwrite.
pub fn apply_request(headers: &mut HeaderMap, levels: &[&HeaderRules], conn: &Downstream) {
    for rules in levels {
        apply(headers, &rules.request_add, &rules.request_remove, conn);
    }
}

pub fn apply_response(headers: &mut HeaderMap, levels: &[&HeaderRules], conn: &Downstream) {
    for rules in levels {
        apply(headers, &rules.response_add, &rules.response_remove, conn);
    }
}

fn apply(
    headers: &mut HeaderMap,
    add: &[crate::config::route::HeaderAdd],
    remove: &[HeaderName],
    conn: &Downstream,
) {
    for name in remove {
        headers.remove(name);
    }
    for a in add {
        let value = match &a.format {
            None => a.value.clone(),
            // Envoy adds nothing for a value that renders empty (keep_empty_value: false),
            // e.g. %DOWNSTREAM_PEER_URI_SAN% without a client certificate.
            Some(pieces) => match render(pieces, conn) {
                Some(v) => v,
                None => continue,
            },
        };
        if a.if_absent {
            if !headers.contains_key(&a.name) {
                headers.insert(a.name.clone(), value);
            }
        } else if a.append {
            headers.append(a.name.clone(), value);
        } else {
            headers.insert(a.name.clone(), value);
        }
    }
}

/// A header value with command operators, for this connection; `None` when empty.
fn render(pieces: &[Piece], conn: &Downstream) -> Option<HeaderValue> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Op(op) => {
                connection_value(*op, conn, &mut out);
            }
        }
    }
    if out.is_empty() {
        return None;
    }
    HeaderValue::from_str(&out).ok()
}

/// Appends the value of a connection operator (header values and access logs share it);
/// `false` when the connection has none (no TLS, no client certificate, no such SAN).
pub fn connection_value(op: Operator, conn: &Downstream, out: &mut String) -> bool {
    use std::fmt::Write as _;
    let tls = conn.tls.as_deref();
    let list = |out: &mut String, items: &[String]| {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(item);
        }
        !items.is_empty()
    };
    match op {
        Operator::DownstreamPeerUriSan => list(out, tls.map_or(&[], |t| &t.peer_uri_sans)),
        Operator::DownstreamPeerDnsSan => list(out, tls.map_or(&[], |t| &t.peer_dns_sans)),
        Operator::RequestedServerName => match tls.and_then(|t| t.sni.as_deref()) {
            Some(sni) => {
                out.push_str(sni);
                true
            }
            None => false,
        },
        Operator::DownstreamRemoteAddress => write!(out, "{}", conn.peer).is_ok(),
        Operator::DownstreamRemoteAddressWithoutPort => write!(out, "{}", conn.peer.ip()).is_ok(),
        Operator::DownstreamLocalAddress => write!(out, "{}", conn.local).is_ok(),
        Operator::DownstreamLocalAddressWithoutPort => write!(out, "{}", conn.local.ip()).is_ok(),
    }
}

#[cfg(test)]
mod request_id_tests {
    #[test]
    fn request_ids_are_uuid_v4() {
        let a = super::request_id();
        let s = a.to_str().expect("ascii");
        assert_eq!(s.len(), 36);
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{s}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{s}");
        assert_ne!(a, super::request_id());
    }

    #[test]
    fn numbers_are_decimal() {
        for n in [0, 1, 9, 10, 11, 42, 99, 100, 101, 15000, u64::MAX] {
            assert_eq!(super::number(n), n.to_string().as_str(), "{n}");
        }
    }
}
