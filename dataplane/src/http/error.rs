//! The one error type of the request path, and its mapping to what Envoy answers: the status,
//! the body of its local reply, and its response flag (for logs). This file is the only place
//! that decides them.

use std::borrow::Cow;
use std::time::Duration;

use crate::upstream::pool::UpstreamError;

/// Who is to blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// No virtual host or route matched (Envoy flag NR).
    NoRoute,
    /// The route names a cluster that does not exist (NC).
    NoCluster(String),
    /// The cluster has no healthy host (UH).
    NoHealthyUpstream,
    /// Connecting to the chosen host failed (UF).
    ConnectFailure(String),
    /// The upstream reset or closed before the response headers (UC).
    Reset(String),
    /// The cluster's circuit breaker for requests in flight is open (UO): 503 with
    /// `x-envoy-overloaded: true`.
    Overflow,
    /// The upstream broke the protocol (an unparsable HTTP/1 response, an HTTP/2 frame our
    /// codec refuses, e.g. an HTTP/1 server behind an http2 cluster): 502 (UPE).
    Protocol(String),
    /// The route timeout (or per-try timeout, when no retry is left) passed (UT).
    Timeout(Duration),
    /// Nothing moved on the stream for the route's `idle_timeout` (SI): 504 "stream timeout".
    StreamIdle,
    /// A request we will not forward (bad header, bad URI).
    BadRequest(String),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute | ProxyError::BadRequest(_) => Side::Downstream,
            ProxyError::NoCluster(_) => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// Whether a retry policy may retry it: `connect-failure` for connect failures, `reset` for
    /// resets, `5xx`/`gateway-error` for both (Envoy router docs, x-envoy-retry-on).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::ConnectFailure(_)
                | ProxyError::Reset(_)
                | ProxyError::Protocol(_)
                | ProxyError::Timeout(_)
        )
    }

    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ProxyError::NoRoute => S::NOT_FOUND,
            ProxyError::NoCluster(_)
            | ProxyError::NoHealthyUpstream
            | ProxyError::ConnectFailure(_)
            | ProxyError::Reset(_)
            | ProxyError::Overflow => S::SERVICE_UNAVAILABLE,
            ProxyError::Timeout(_) | ProxyError::StreamIdle => S::GATEWAY_TIMEOUT,
            ProxyError::Protocol(_) => S::BAD_GATEWAY,
            ProxyError::BadRequest(_) => S::BAD_REQUEST,
        }
    }

    /// The body of Envoy's local reply for it.
    pub fn body(&self) -> String {
        match self {
            ProxyError::NoRoute | ProxyError::NoCluster(_) => String::new(),
            ProxyError::NoHealthyUpstream => "no healthy upstream".into(),
            // Envoy 1.40's words for a refused connection and for a connect timeout.
            ProxyError::ConnectFailure(reason) if reason.contains("timed out") => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection timeout".into()
            }
            ProxyError::ConnectFailure(_) => {
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure".into()
            }
            ProxyError::Reset(_) => "upstream connect error or disconnect/reset before headers. reset reason: connection termination".into(),
            ProxyError::Overflow => {
                "upstream connect error or disconnect/reset before headers. reset reason: overflow".into()
            }
            ProxyError::Timeout(_) => "upstream request timeout".into(),
            ProxyError::StreamIdle => "stream timeout".into(),
            ProxyError::Protocol(_) => {
                "upstream connect error or disconnect/reset before headers. reset reason: protocol error".into()
            }
            ProxyError::BadRequest(reason) => reason.clone(),
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for it.
    pub fn details(&self) -> Cow<'static, str> {
        match self {
            ProxyError::NoRoute => "route_not_found".into(),
            ProxyError::NoCluster(_) => "cluster_not_found".into(),
            ProxyError::NoHealthyUpstream => "no_healthy_upstream".into(),
            ProxyError::ConnectFailure(_) => match self.transport_failure() {
                Some(why) => format!(
                    "upstream_reset_before_response_started{{remote_connection_failure|{why}}}"
                )
                .into(),
                None => "upstream_reset_before_response_started{remote_connection_failure}".into(),
            },
            ProxyError::Reset(_) => {
                "upstream_reset_before_response_started{connection_termination}".into()
            }
            ProxyError::Protocol(_) => {
                "upstream_reset_before_response_started{protocol_error}".into()
            }
            ProxyError::Overflow => "upstream_reset_before_response_started{overflow}".into(),
            ProxyError::Timeout(_) => "upstream_response_timeout".into(),
            ProxyError::StreamIdle => "stream_idle_timeout".into(),
            ProxyError::BadRequest(_) => "downstream_local_disconnect".into(),
        }
    }

    /// Envoy's `%UPSTREAM_TRANSPORT_FAILURE_REASON%` (spaces as `_`, as Envoy writes it) for
    /// a connect failure it can name.
    pub fn transport_failure(&self) -> Option<Cow<'static, str>> {
        let ProxyError::ConnectFailure(reason) = self else {
            return None;
        };
        if reason.contains("Connection refused") {
            Some("delayed_connect_error:_Connection_refused".into())
        } else if reason.contains("TLS") || reason.contains("certificate") {
            Some("TLS_error".into())
        } else {
            None
        }
    }

    /// Envoy's response flag, as access logs show it.
    pub fn flag(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "NR",
            ProxyError::NoCluster(_) => "NC",
            ProxyError::NoHealthyUpstream => "UH",
            ProxyError::ConnectFailure(_) => "UF",
            ProxyError::Reset(_) => "UC",
            ProxyError::Overflow => "UO",
            ProxyError::Timeout(_) => "UT",
            ProxyError::StreamIdle => "SI",
            ProxyError::Protocol(_) => "UPE",
            ProxyError::BadRequest(_) => "DPE",
        }
    }
}

/// What an upstream client's failure is, as Envoy classifies it.
pub fn classify(e: UpstreamError) -> ProxyError {
    use crate::http1::client::Error as H1;
    match e {
        UpstreamError::Http1(H1::Connect(reason)) => ProxyError::ConnectFailure(reason),
        UpstreamError::Http1(H1::Reset(reason)) => ProxyError::Reset(reason),
        UpstreamError::Http1(H1::Protocol(reason)) => ProxyError::Protocol(reason),
        UpstreamError::Http2(e) => classify_http2(e),
    }
}

fn classify_http2(e: hyper_util::client::legacy::Error) -> ProxyError {
    // The whole cause chain: "connection refused", "timed out"...
    let reason = crate::causes::with_causes(&e);
    // A protocol violation by the upstream: hyper could not parse its HTTP/1 response, or the
    // HTTP/2 codec detected the error itself ("error detected"; "error received" is the peer's
    // own GOAWAY/RST, a reset). Envoy answers these 502 "protocol error".
    let parse = crate::causes::sources(&e).any(|s| {
        s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_parse() || h.is_parse_status())
    });
    if e.is_connect() {
        ProxyError::ConnectFailure(reason)
    } else if parse || reason.contains("error detected") {
        ProxyError::Protocol(reason)
    } else {
        ProxyError::Reset(reason)
    }
}
