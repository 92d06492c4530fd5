//! Envoy's local replies: what the proxy answers itself (an error's status and text body, or
//! a direct response), with the route's response headers and `server`.

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::{BodyExt, Full};

use super::Downstream;
use super::error::ProxyError;
use super::headers;
use super::router::Log;
use crate::config::listener::HttpManager;
use crate::upstream::pool::Body;

/// A whole body, as the proxy path's body type.
pub(super) fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// `server: <server_name>` when the connection manager sets one.
pub(super) fn set_server(headers: &mut http::HeaderMap, hcm: &HttpManager) {
    if let Some(v) = &hcm.server_name {
        headers.insert(http::header::SERVER, v.clone());
    }
}

/// The local reply for an error, its flag and details noted for the access log.
pub(super) fn fail(
    hcm: &HttpManager,
    e: &ProxyError,
    levels: &[&crate::config::route::HeaderRules],
    conn: &Downstream,
    log: &mut Log,
) -> Response<Body> {
    if let Some(entry) = log {
        entry.flags.insert(e.flag());
        entry.details = Some(e.details());
        entry.transport_failure = e.transport_failure();
        entry.unsent_body_received();
    }
    local_reply(hcm, e, levels, conn)
}

/// Envoy's local reply for an error: its status, a text body, `server`.
fn local_reply(
    hcm: &HttpManager,
    e: &ProxyError,
    levels: &[&crate::config::route::HeaderRules],
    conn: &Downstream,
) -> Response<Body> {
    let body = e.body();
    let mut r = Response::new(full(Bytes::from(body.clone())));
    *r.status_mut() = e.status();
    if !body.is_empty() {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    if *e == ProxyError::Overflow {
        r.headers_mut().insert(
            headers::X_ENVOY_OVERLOADED,
            HeaderValue::from_static("true"),
        );
    }
    headers::apply_response(r.headers_mut(), levels, conn);
    set_server(r.headers_mut(), hcm);
    tracing::debug!(flag = e.flag(), status = %e.status(), "local reply");
    r
}
