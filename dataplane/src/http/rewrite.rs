//! Where a routed request goes by path: a redirect's `Location`, and the path sent upstream
//! after `prefix_rewrite` / `regex_rewrite`.

use bytes::Bytes;
use http::{HeaderValue, Response};

use super::Downstream;
use super::error::ProxyError;
use super::reply::full;
use crate::config::route::{Forward, Redirect, Route};
use crate::upstream::pool::Body;

/// The redirect's answer: its status and `Location`, built from the request as Envoy does.
pub(super) fn redirect_reply(
    r: &Redirect,
    parts: &http::request::Parts,
    host: &str,
    route: &Route,
    conn: &Downstream,
) -> Response<Body> {
    let downstream_scheme = if conn.tls.is_some() { "https" } else { "http" };
    let scheme = r.scheme.clone().unwrap_or_else(|| downstream_scheme.into());
    let (orig_host, orig_port) = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_string(), Some(p.to_string()))
        }
        _ => (host.to_string(), None),
    };
    let host = r.host.clone().unwrap_or(orig_host);
    // The port: an explicit port_redirect; else the original one unless the scheme changed
    // to one whose default port applies.
    // A new host or scheme drops the original port (Envoy: host_redirect replaces the authority).
    let port = match (r.port, &r.scheme, &r.host) {
        (Some(p), _, _) => Some(p.to_string()),
        (None, None, None) => orig_port,
        _ => None,
    };
    let path = parts.uri.path();
    let path = match (&r.path, &r.prefix_rewrite) {
        (Some(p), _) => p.clone(),
        (None, Some(prefix)) => prefix_rewrite(path, matched_len(route, path), prefix),
        _ => path.to_string(),
    };
    let query = match parts.uri.query() {
        Some(q) if !r.strip_query && !path.contains('?') => format!("?{q}"),
        _ => String::new(),
    };
    let location = match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}{query}"),
        None => format!("{scheme}://{host}{path}{query}"),
    };
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = r.status;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// How much of `path` the route's path matcher matched (what a prefix rewrite replaces).
fn matched_len(route: &Route, path: &str) -> usize {
    use crate::config::route::PathMatch;
    match &route.matcher.path {
        PathMatch::Prefix(p) | PathMatch::Separated(p) | PathMatch::Exact(p) => p.len(),
        PathMatch::Regex(_) => path.len(),
    }
}

/// `path` with its first `matched` bytes replaced.
fn prefix_rewrite(path: &str, matched: usize, replacement: &str) -> String {
    format!("{replacement}{}", path.get(matched..).unwrap_or(""))
}

/// The path (and query) sent upstream, after prefix_rewrite / regex_rewrite.
pub(super) fn rewritten_path(
    parts: &http::request::Parts,
    route: &Route,
    fwd: &Forward,
) -> Result<http::uri::PathAndQuery, ProxyError> {
    let path = parts.uri.path();
    let rewritten = if let Some(prefix) = &fwd.prefix_rewrite {
        prefix_rewrite(path, matched_len(route, path), prefix)
    } else if let Some((re, sub)) = &fwd.regex_rewrite {
        re.replace_all(path, sub.as_str()).into_owned()
    } else {
        // No rewrite: the request's own path and query, shared, not copied.
        return Ok(parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
    };
    let full = match parts.uri.query() {
        Some(q) => format!("{rewritten}?{q}"),
        None => rewritten,
    };
    http::uri::PathAndQuery::try_from(full).map_err(|e| ProxyError::BadRequest(e.to_string()))
}
