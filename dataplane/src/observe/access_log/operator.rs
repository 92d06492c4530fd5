//! Envoy's command operators (`%RESPONSE_CODE%`, `%REQ(X?Y):N%`...), parsed once from a format
//! string at translation and rendered from an [`Entry`] at the end of a stream.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::HeaderName;

use super::entry::Entry;
use super::time::{self, TimeFormat};
use crate::config::format::Operator as ConnOp;

/// A request or response header an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    Method,
    Path,
    Authority,
    Scheme,
    Name(HeaderName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    StartTime(Arc<TimeFormat>),
    /// `%REQ(X?Y):N%`: header X, else Y, at most N bytes.
    Req(Header, Option<Header>, Option<usize>),
    Resp(Header, Option<Header>, Option<usize>),
    Protocol,
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    RequestDuration,
    ResponseDuration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    UpstreamTransportFailureReason,
    /// From the downstream connection (shared with header values): addresses, SNI, SANs.
    Conn(ConnOp),
    RouteName,
    Hostname,
    UpstreamRequestAttemptCount,
    ConnectionId,
}

/// How a rendered value is typed in a JSON log (Envoy writes these operators as numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Text,
    Number,
}

/// The host's name for `%HOSTNAME%`, read once.
static HOSTNAME: LazyLock<String> = LazyLock::new(|| {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
});

impl Op {
    /// Parses one command: `name` with its `(args)` and `:max` (Envoy's syntax). The error
    /// is Envoy's own words for an unknown command.
    pub fn parse(name: &str, args: Option<&str>, max: Option<usize>) -> Result<Op, String> {
        let no_args = |op: Op| match args {
            None => Ok(op),
            Some(_) => Err(format!("{name} does not take arguments")),
        };
        match name {
            "START_TIME" => Ok(Op::StartTime(Arc::new(TimeFormat::parse(
                args.filter(|a| !a.is_empty()).unwrap_or(time::DEFAULT),
            )))),
            "REQ" | "RESP" => {
                let args = args.ok_or_else(|| format!("{name} requires a header name"))?;
                let (main, alt) = match args.split_once('?') {
                    Some((a, b)) => (header(a)?, Some(header(b)?)),
                    None => (header(args)?, None),
                };
                Ok(if name == "REQ" {
                    Op::Req(main, alt, max)
                } else {
                    Op::Resp(main, alt, max)
                })
            }
            "PROTOCOL" => no_args(Op::Protocol),
            "RESPONSE_CODE" => no_args(Op::ResponseCode),
            "RESPONSE_CODE_DETAILS" => no_args(Op::ResponseCodeDetails),
            "RESPONSE_FLAGS" => no_args(Op::ResponseFlags),
            "BYTES_RECEIVED" => no_args(Op::BytesReceived),
            "BYTES_SENT" => no_args(Op::BytesSent),
            "DURATION" => no_args(Op::Duration),
            "REQUEST_DURATION" => no_args(Op::RequestDuration),
            "RESPONSE_DURATION" => no_args(Op::ResponseDuration),
            "UPSTREAM_HOST" => no_args(Op::UpstreamHost),
            "UPSTREAM_CLUSTER" => no_args(Op::UpstreamCluster),
            "UPSTREAM_LOCAL_ADDRESS" => no_args(Op::UpstreamLocalAddress),
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => no_args(Op::UpstreamTransportFailureReason),
            "ROUTE_NAME" => no_args(Op::RouteName),
            "HOSTNAME" => no_args(Op::Hostname),
            "UPSTREAM_REQUEST_ATTEMPT_COUNT" => no_args(Op::UpstreamRequestAttemptCount),
            "CONNECTION_ID" => no_args(Op::ConnectionId),
            other => match ConnOp::named(other) {
                Some(op) => no_args(Op::Conn(op)),
                None => Err(format!("Not supported field in StreamInfo: {other}")),
            },
        }
    }

    /// The request headers (by name) this operator reads.
    pub fn request_header(&self) -> impl Iterator<Item = &HeaderName> {
        let (a, b) = match self {
            Op::Req(a, b, _) => (Some(a), b.as_ref()),
            _ => (None, None),
        };
        names(a, b)
    }

    pub fn response_header(&self) -> impl Iterator<Item = &HeaderName> {
        let (a, b) = match self {
            Op::Resp(a, b, _) => (Some(a), b.as_ref()),
            _ => (None, None),
        };
        names(a, b)
    }

    /// Appends the value to `out`; nothing is written for a missing value.
    pub fn write(&self, e: &Entry, out: &mut String) -> Kind {
        let num = |out: &mut String, n: u64| {
            let _ = write!(out, "{n}");
            Kind::Number
        };
        let ms = |out: &mut String, d: Option<Duration>| match d {
            Some(d) => num(out, d.as_millis() as u64),
            None => Kind::Missing,
        };
        let text = |out: &mut String, s: Option<&str>| match s {
            Some(s) => {
                out.push_str(s);
                Kind::Text
            }
            None => Kind::Missing,
        };
        let addr = |out: &mut String, a: Option<std::net::SocketAddr>| match a {
            Some(a) => {
                let _ = write!(out, "{a}");
                Kind::Text
            }
            None => Kind::Missing,
        };
        match self {
            Op::StartTime(f) => {
                f.write(e.start, out);
                Kind::Text
            }
            Op::Req(a, b, max) => header_value(e, a, b.as_ref(), *max, true, out),
            Op::Resp(a, b, max) => header_value(e, a, b.as_ref(), *max, false, out),
            Op::Protocol => text(out, e.request.version.map(protocol)),
            // No response (tcp_proxy): 0, as Envoy.
            Op::ResponseCode => num(out, u64::from(e.status.unwrap_or(0))),
            Op::ResponseCodeDetails => text(out, e.details.as_deref()),
            Op::ResponseFlags => {
                e.flags.write(out);
                Kind::Text
            }
            Op::BytesReceived => num(out, e.bytes_received),
            Op::BytesSent => num(out, e.bytes_sent),
            Op::Duration => ms(out, e.duration),
            Op::RequestDuration => ms(out, e.request_end),
            Op::ResponseDuration => ms(out, e.response_start),
            Op::UpstreamHost => addr(out, e.upstream_host),
            Op::UpstreamCluster => text(out, e.upstream_cluster.as_deref()),
            Op::UpstreamLocalAddress => addr(out, e.upstream_local),
            Op::UpstreamTransportFailureReason => text(out, e.transport_failure.as_deref()),
            Op::Conn(op) => {
                if crate::http::headers::connection_value(*op, &e.downstream, out) {
                    Kind::Text
                } else {
                    Kind::Missing
                }
            }
            Op::RouteName => text(out, e.route_name.as_deref()),
            Op::Hostname => text(out, Some(HOSTNAME.as_str())),
            Op::UpstreamRequestAttemptCount => num(out, u64::from(e.attempts)),
            Op::ConnectionId => num(out, e.downstream.id),
        }
    }
}

fn names<'a>(a: Option<&'a Header>, b: Option<&'a Header>) -> impl Iterator<Item = &'a HeaderName> {
    [a, b].into_iter().flatten().filter_map(|h| match h {
        Header::Name(n) => Some(n),
        _ => None,
    })
}

fn header(name: &str) -> Result<Header, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        ":method" => Header::Method,
        ":path" => Header::Path,
        ":authority" | "host" => Header::Authority,
        ":scheme" => Header::Scheme,
        other => Header::Name(
            HeaderName::from_bytes(other.as_bytes())
                .map_err(|_| format!("\"{name}\" is not a header name"))?,
        ),
    })
}

pub fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// `%REQ(a?b):max%` / `%RESP(..)%`: the first header present, cut at `max` bytes (on a
/// character boundary). Several values of one header are joined by "," as Envoy does.
fn header_value(
    e: &Entry,
    a: &Header,
    b: Option<&Header>,
    max: Option<usize>,
    request: bool,
    out: &mut String,
) -> Kind {
    let start = out.len();
    let found =
        write_header(e, a, request, out) || b.is_some_and(|b| write_header(e, b, request, out));
    if !found {
        return Kind::Missing;
    }
    if let Some(max) = max {
        let mut end = (start + max).min(out.len());
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    Kind::Text
}

fn write_header(e: &Entry, h: &Header, request: bool, out: &mut String) -> bool {
    let r = &e.request;
    let push = |out: &mut String, s: Option<&str>| s.map(|s| out.push_str(s)).is_some();
    match (h, request) {
        (Header::Method, true) => push(out, r.method.as_ref().map(|m| m.as_str())),
        (Header::Path, true) => push(out, r.path.as_ref().map(|p| p.as_str())),
        (Header::Authority, true) => push(out, r.authority.as_deref()),
        (Header::Scheme, true) if r.method.is_some() => push(
            out,
            Some(if e.downstream.tls.is_some() {
                "https"
            } else {
                "http"
            }),
        ),
        (Header::Name(n), _) => {
            let map = if request {
                &r.headers
            } else {
                &e.response_headers
            };
            let mut values = map.get_all(n).iter().filter_map(|v| v.to_str().ok());
            let Some(first) = values.next() else {
                return false;
            };
            out.push_str(first);
            for v in values {
                out.push(',');
                out.push_str(v);
            }
            true
        }
        _ => false,
    }
}
