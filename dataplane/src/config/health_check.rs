//! Cluster `health_checks` -> [`HealthCheck`]: Envoy's active health checking
//! (health_check.proto), HTTP (HTTP/1.1 or HTTP/2) and TCP, with Envoy's defaults.
//!
//! One health check per cluster (Envoy runs several side by side; none of the control planes
//! we know sends more than one). gRPC, Redis and custom checkers, event logs, `alt_port`,
//! `tls_options`, `transport_socket_match_criteria`, HTTP `send`/`receive` payloads and
//! `service_name_matcher` are refused with the field named.

use std::ops::Range;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use xds_types::pb::envoy::config::core::v3::HealthCheck as XdsHealthCheck;
use xds_types::pb::envoy::config::core::v3::health_check::{
    HealthChecker, HttpHealthCheck, Payload, TcpHealthCheck, payload,
};

use super::{FieldError, FieldResult, duration, only_fields};

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// A check that has not finished in this time failed (a network timeout).
    pub timeout: Duration,
    /// The time between checks of a healthy host with traffic.
    pub interval: Duration,
    /// Before a host's first check, a random wait up to this.
    pub initial_jitter: Duration,
    /// Added to every interval: a random part up to this, and up to this percent of it.
    pub interval_jitter: Duration,
    pub interval_jitter_percent: u32,
    /// Failed network checks in a row that make a host unhealthy (a wrong HTTP status does
    /// it at once, as in Envoy), and passed checks that make it healthy again.
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    /// Envoy's other intervals: while the cluster has had no traffic (60 s), for a healthy
    /// host then (the same), for an unhealthy host, and while a change is pending.
    pub no_traffic_interval: Duration,
    pub no_traffic_healthy_interval: Duration,
    pub unhealthy_interval: Duration,
    pub unhealthy_edge_interval: Duration,
    pub healthy_edge_interval: Duration,
    /// Keep an HTTP check's connection for the next check (true).
    pub reuse_connection: bool,
    pub kind: Checker,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Checker {
    Http(HttpCheck),
    /// Connects; with `send`, writes it; with `receive`, reads until each block has been seen
    /// in order (Envoy's fuzzy match). Without either, a connection made is a pass.
    Tcp {
        send: Vec<u8>,
        receive: Vec<Vec<u8>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub path: String,
    /// The `:authority` (default: the cluster's name, as Envoy).
    pub host: Option<String>,
    pub method: http::Method,
    pub http2: bool,
    /// Statuses that pass (default 200 only); `retriable` ones fail against the threshold,
    /// every other status fails the host at once.
    pub expected: Vec<Range<u16>>,
    pub retriable: Vec<Range<u16>>,
    pub headers_to_add: Vec<(HeaderName, HeaderValue)>,
    pub headers_to_remove: Vec<HeaderName>,
}

/// Envoy's default intervals (health_check.proto).
const NO_TRAFFIC_INTERVAL: Duration = Duration::from_secs(60);

pub fn translate(list: &[XdsHealthCheck]) -> FieldResult<Option<HealthCheck>> {
    match list {
        [] => Ok(None),
        [one] => health_check(one).map(Some).map_err(|e| e.within("[0]")),
        _ => Err(FieldError::new(
            "",
            "only one health check per cluster is supported",
        )),
    }
}

fn health_check(h: &XdsHealthCheck) -> FieldResult<HealthCheck> {
    only_fields(
        h,
        &[
            "timeout",
            "interval",
            "initial_jitter",
            "interval_jitter",
            "interval_jitter_percent",
            "unhealthy_threshold",
            "healthy_threshold",
            "reuse_connection",
            "http_health_check",
            "tcp_health_check",
            "no_traffic_interval",
            "no_traffic_healthy_interval",
            "unhealthy_interval",
            "unhealthy_edge_interval",
            "healthy_edge_interval",
            // What is logged of each check; ours logs transitions (tracing) either way.
            "always_log_health_check_failures",
            "always_log_health_check_success",
        ],
    )?;
    let required = |d: &Option<xds_types::pb::google::protobuf::Duration>, field: &str| {
        d.as_ref()
            .map(duration)
            .ok_or_else(|| FieldError::new(field, "required"))
    };
    let threshold = |v: &Option<xds_types::pb::google::protobuf::UInt32Value>, field: &str| {
        v.as_ref()
            .map(|v| v.value)
            .ok_or_else(|| FieldError::new(field, "required"))
    };
    let timeout = required(&h.timeout, "timeout")?;
    let interval = required(&h.interval, "interval")?;
    let or = |d: &Option<xds_types::pb::google::protobuf::Duration>, default: Duration| {
        d.as_ref().map_or(default, duration)
    };
    let no_traffic_interval = or(&h.no_traffic_interval, NO_TRAFFIC_INTERVAL);
    let unhealthy_interval = or(&h.unhealthy_interval, interval);
    let kind = match &h.health_checker {
        Some(HealthChecker::HttpHealthCheck(http)) => {
            Checker::Http(http_check(http).map_err(|e| e.within("http_health_check"))?)
        }
        Some(HealthChecker::TcpHealthCheck(tcp)) => {
            tcp_check(tcp).map_err(|e| e.within("tcp_health_check"))?
        }
        _ => {
            return Err(FieldError::new(
                "health_checker",
                "an http_health_check or a tcp_health_check is required",
            ));
        }
    };
    Ok(HealthCheck {
        timeout,
        interval,
        initial_jitter: or(&h.initial_jitter, Duration::ZERO),
        interval_jitter: or(&h.interval_jitter, Duration::ZERO),
        interval_jitter_percent: h.interval_jitter_percent,
        unhealthy_threshold: threshold(&h.unhealthy_threshold, "unhealthy_threshold")?,
        healthy_threshold: threshold(&h.healthy_threshold, "healthy_threshold")?,
        no_traffic_interval,
        no_traffic_healthy_interval: or(&h.no_traffic_healthy_interval, no_traffic_interval),
        unhealthy_interval,
        unhealthy_edge_interval: or(&h.unhealthy_edge_interval, unhealthy_interval),
        healthy_edge_interval: or(&h.healthy_edge_interval, interval),
        reuse_connection: h.reuse_connection.as_ref().is_none_or(|b| b.value),
        kind,
    })
}

fn http_check(h: &HttpHealthCheck) -> FieldResult<HttpCheck> {
    only_fields(
        h,
        &[
            "host",
            "path",
            "request_headers_to_add",
            "request_headers_to_remove",
            "expected_statuses",
            "retriable_statuses",
            "codec_client_type",
            "method",
        ],
    )?;
    let ranges = |list: &[xds_types::pb::envoy::r#type::v3::Int64Range], field: &str| {
        list.iter()
            .enumerate()
            .map(|(i, r)| {
                // Envoy's bounds: [start, end) within 100..=599 (health_checker_impl.cc).
                if r.start < 100 || r.end > 600 || r.start >= r.end {
                    return Err(FieldError::new(
                        format!("{field}[{i}]"),
                        format!(
                            "[{}, {}) is not a range of HTTP statuses within [100, 600)",
                            r.start, r.end
                        ),
                    ));
                }
                Ok(r.start as u16..r.end as u16)
            })
            .collect::<FieldResult<Vec<_>>>()
    };
    let mut expected = ranges(&h.expected_statuses, "expected_statuses")?;
    if expected.is_empty() {
        expected.push(200..201);
    }
    let mut headers_to_add = Vec::new();
    for (i, o) in h.request_headers_to_add.iter().enumerate() {
        let at = format!("request_headers_to_add[{i}]");
        let Some(header) = &o.header else {
            return Err(FieldError::new(at, "header is required"));
        };
        let name = HeaderName::from_bytes(header.key.as_bytes())
            .map_err(|_| FieldError::new(format!("{at}.header.key"), "not a header name"))?;
        if header.value.contains('%') {
            return Err(FieldError::new(
                format!("{at}.header.value"),
                "formatters are not supported in health check headers",
            ));
        }
        let value = HeaderValue::from_str(&header.value)
            .map_err(|_| FieldError::new(format!("{at}.header.value"), "not a header value"))?;
        headers_to_add.push((name, value));
    }
    let headers_to_remove = h
        .request_headers_to_remove
        .iter()
        .enumerate()
        .map(|(i, n)| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                FieldError::new(
                    format!("request_headers_to_remove[{i}]"),
                    "not a header name",
                )
            })
        })
        .collect::<FieldResult<Vec<_>>>()?;
    use xds_types::pb::envoy::config::core::v3::RequestMethod;
    let method = match RequestMethod::try_from(h.method).unwrap_or(RequestMethod::MethodUnspecified)
    {
        RequestMethod::MethodUnspecified | RequestMethod::Get => http::Method::GET,
        RequestMethod::Head => http::Method::HEAD,
        RequestMethod::Post => http::Method::POST,
        RequestMethod::Put => http::Method::PUT,
        RequestMethod::Delete => http::Method::DELETE,
        RequestMethod::Options => http::Method::OPTIONS,
        RequestMethod::Trace => http::Method::TRACE,
        RequestMethod::Patch => http::Method::PATCH,
        RequestMethod::Connect => {
            return Err(FieldError::new("method", "CONNECT is not a health check"));
        }
    };
    // type.v3.CodecClientType: HTTP1 = 0, HTTP2 = 1, HTTP3 = 2.
    let http2 = match h.codec_client_type {
        0 => false,
        1 => true,
        _ => {
            return Err(FieldError::new(
                "codec_client_type",
                "only HTTP1 and HTTP2 are supported",
            ));
        }
    };
    Ok(HttpCheck {
        path: h.path.clone(),
        host: (!h.host.is_empty()).then(|| h.host.clone()),
        method,
        http2,
        expected,
        retriable: ranges(&h.retriable_statuses, "retriable_statuses")?,
        headers_to_add,
        headers_to_remove,
    })
}

fn tcp_check(t: &TcpHealthCheck) -> FieldResult<Checker> {
    only_fields(t, &["send", "receive"])?;
    let send = match &t.send {
        Some(p) => bytes(p).map_err(|e| e.within("send"))?,
        None => Vec::new(),
    };
    let receive = t
        .receive
        .iter()
        .enumerate()
        .map(|(i, p)| bytes(p).map_err(|e| e.within(&format!("receive[{i}]"))))
        .collect::<FieldResult<Vec<_>>>()?;
    Ok(Checker::Tcp { send, receive })
}

/// A payload's bytes: `text` is hex, as in Envoy.
fn bytes(p: &Payload) -> FieldResult<Vec<u8>> {
    match &p.payload {
        Some(payload::Payload::Binary(b)) => Ok(b.to_vec()),
        Some(payload::Payload::Text(hex)) => {
            let digits = hex.as_bytes();
            if digits.len() % 2 != 0 {
                return Err(FieldError::new("text", "not hex: an odd number of digits"));
            }
            digits
                .chunks(2)
                .map(|pair| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok())
                        .ok_or_else(|| FieldError::new("text", format!("not hex: {hex:?}")))
                })
                .collect()
        }
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> FieldResult<Option<HealthCheck>> {
        let c: xds_types::pb::envoy::config::cluster::v3::Cluster =
            xds_types::format::from_yaml_str(yaml).expect("a cluster");
        translate(&c.health_checks)
    }

    #[test]
    fn envoy_defaults_fill_what_is_left_out() {
        let hc = check(
            "name: c\nhealth_checks: [ { timeout: 1s, interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2, http_health_check: { path: /healthz } } ]",
        )
        .expect("valid")
        .expect("a check");
        assert_eq!(hc.no_traffic_interval, Duration::from_secs(60));
        assert_eq!(hc.no_traffic_healthy_interval, Duration::from_secs(60));
        assert_eq!(hc.unhealthy_interval, Duration::from_secs(5));
        assert_eq!(hc.unhealthy_edge_interval, Duration::from_secs(5));
        assert_eq!(hc.healthy_edge_interval, Duration::from_secs(5));
        assert!(hc.reuse_connection);
        let Checker::Http(http) = hc.kind else {
            panic!("http");
        };
        assert_eq!(http.expected, vec![200..201]);
        assert_eq!(http.method, http::Method::GET);
        assert!(!http.http2);
        assert_eq!(http.host, None);
    }

    #[test]
    fn tcp_payloads_are_hex() {
        let hc = check(
            "name: c\nhealth_checks: [ { timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: { send: { text: '50494e47' }, receive: [ { text: '504f4e47' } ] } } ]",
        )
        .expect("valid")
        .expect("a check");
        assert_eq!(
            hc.kind,
            Checker::Tcp {
                send: b"PING".to_vec(),
                receive: vec![b"PONG".to_vec()]
            }
        );
    }

    #[test]
    fn what_is_refused_is_named() {
        let base = "timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1";
        for (check_yaml, field) in [
            (
                "{ interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1, tcp_health_check: {} }"
                    .to_string(),
                "[0].timeout",
            ),
            (
                "{ timeout: 1s, interval: 1s, healthy_threshold: 1, tcp_health_check: {} }"
                    .to_string(),
                "[0].unhealthy_threshold",
            ),
            (format!("{{ {base} }}"), "[0].health_checker"),
            (
                format!("{{ {base}, grpc_health_check: {{}} }}"),
                "[0].grpc_health_check",
            ),
            (
                format!("{{ {base}, alt_port: 8080, tcp_health_check: {{}} }}"),
                "[0].alt_port",
            ),
            (
                format!("{{ {base}, http_health_check: {{ path: /, codec_client_type: HTTP3 }} }}"),
                "[0].http_health_check.codec_client_type",
            ),
            (
                format!(
                    "{{ {base}, http_health_check: {{ path: /, expected_statuses: [ {{ start: 200, end: 700 }} ] }} }}"
                ),
                "[0].http_health_check.expected_statuses[0]",
            ),
            (
                format!("{{ {base}, tcp_health_check: {{ send: {{ text: 'zz' }} }} }}"),
                "[0].tcp_health_check.send.text",
            ),
        ] {
            let e =
                check(&format!("name: c\nhealth_checks: [ {check_yaml} ]")).expect_err(&check_yaml);
            assert_eq!(e.path, field, "{check_yaml}: {e:?}");
        }
        let two = format!(
            "name: c\nhealth_checks: [ {{ {base}, tcp_health_check: {{}} }}, {{ {base}, tcp_health_check: {{}} }} ]"
        );
        assert!(check(&two).is_err());
    }
}
