//! What Envoy's HTTP/1 codec and connection manager refuse before a request is routed, with
//! the same answers (checked against Envoy 1.40 on the wire):
//!
//! - HTTP/1.0: 426 "Upgrade Required" (`http_protocol_options.accept_http_10` defaults to
//!   false, and we do not accept setting it).
//! - HTTP/1.1 without `Host`: 400 with an empty body (RFC 9112 section 3.2 makes it required).
//! - an `Upgrade` the connection manager has no `upgrade_configs` entry for: 403, empty body.
//!
//! Each closes the connection (`connection: close`), as Envoy does after these replies.
//!
//! Malformed requests (bad bytes, `Transfer-Encoding` with `Content-Length`, headers over
//! the limits...) are refused by the codec itself, before this: `crate::http1::codec`.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Full};

use crate::config::listener::HttpManager;
use crate::upstream::pool::Body;

/// The local reply for a request Envoy refuses before routing, or `None` to route it.
pub fn reject<B>(req: &Request<B>, hcm: &HttpManager) -> Option<Response<Body>> {
    let h = req.headers();
    if req.version() == Version::HTTP_10 || req.version() == Version::HTTP_09 {
        return Some(reply(StatusCode::UPGRADE_REQUIRED, "Upgrade Required", hcm));
    }
    if req.version() == Version::HTTP_11
        && !h.contains_key(header::HOST)
        && req.uri().authority().is_none()
    {
        return Some(reply(StatusCode::BAD_REQUEST, "", hcm));
    }
    if req.version() == Version::HTTP_11 && upgrade_refused(h, hcm) {
        return Some(reply(StatusCode::FORBIDDEN, "", hcm));
    }
    None
}

/// An upgrade request (`Connection: upgrade` and an `Upgrade` header) for a protocol the
/// connection manager does not allow. `h2c` is not an upgrade Envoy serves: its HTTP/1 codec
/// drops that header and proxies the request as plain HTTP/1.1.
fn upgrade_refused(h: &http::HeaderMap, hcm: &HttpManager) -> bool {
    let Some(upgrade) = h.get(header::UPGRADE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let asks = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks || upgrade.eq_ignore_ascii_case("h2c") {
        return false;
    }
    !(hcm.websocket && upgrade.eq_ignore_ascii_case("websocket"))
}

fn reply(status: StatusCode, body: &'static str, hcm: &HttpManager) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    let headers = r.headers_mut();
    if !body.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    if let Some(v) = &hcm.server_name {
        headers.insert(header::SERVER, v.clone());
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
