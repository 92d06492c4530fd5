//! One access log entry: what a request (or a tcp_proxy connection) did, filled in by the
//! router and the tcp proxy as it happens (Envoy's `StreamInfo`), rendered once at its end.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, Method, Version};

use crate::http::Downstream;

/// Envoy's response flags in the order `%RESPONSE_FLAGS%` lists them
/// (`ResponseFlagUtils::ALL_RESPONSE_STRINGS_FLAGS`): the index is the bit.
pub const FLAG_NAMES: [&str; 30] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// A set of response flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(pub u32);

impl Flags {
    /// The flag of that short name (`UF`), if Envoy has it.
    pub fn named(name: &str) -> Option<Flags> {
        FLAG_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Flags(1 << i))
    }

    pub fn insert(&mut self, name: &str) {
        if let Some(f) = Flags::named(name) {
            self.0 |= f.0;
        }
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// `UF,URX`; `-` when none (Envoy renders "-" for no flag in text and JSON alike, even
    /// with omit_empty_values: it is the value, not a missing one).
    pub fn write(self, out: &mut String) {
        if self.is_empty() {
            out.push('-');
            return;
        }
        let mut first = true;
        for (i, name) in FLAG_NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    out.push(',');
                }
                out.push_str(name);
                first = false;
            }
        }
    }
}

/// Where an upstream connection's local address can be read from.
pub struct Probe(pub Box<dyn Fn() -> Option<SocketAddr> + Send + Sync>);

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

/// The request body's size and when it ended, counted as it streams upstream.
#[derive(Debug, Default)]
pub struct BodyCount {
    pub bytes: AtomicU64,
    /// Microseconds from the request's start to its last byte; `u64::MAX` until then.
    pub end_us: AtomicU64,
}

impl BodyCount {
    pub fn new() -> Arc<Self> {
        Arc::new(BodyCount {
            bytes: AtomicU64::new(0),
            end_us: AtomicU64::new(u64::MAX),
        })
    }

    /// The body's last byte went through.
    pub fn has_ended(&self) -> bool {
        self.end_us.load(Ordering::Relaxed) != u64::MAX
    }

    pub fn ended(&self, at: Duration) {
        self.end_us.store(
            at.as_micros().min(u64::MAX as u128 - 1) as u64,
            Ordering::Relaxed,
        );
    }
}

/// The request headers as the router saw them: the pseudo-headers and the headers some
/// format or filter of the connection manager names (and only those).
#[derive(Debug, Default)]
pub struct RequestHead {
    pub method: Option<Method>,
    pub path: Option<http::uri::PathAndQuery>,
    pub authority: Option<String>,
    pub version: Option<Version>,
    pub headers: HeaderMap,
}

#[derive(Debug)]
pub struct Entry {
    pub start: SystemTime,
    pub started: Instant,
    pub downstream: Downstream,
    pub request: RequestHead,
    pub response_headers: HeaderMap,
    /// `None`: no response (tcp_proxy).
    pub status: Option<u16>,
    pub details: Option<Cow<'static, str>>,
    pub flags: Flags,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<String>,
    pub upstream_local: Option<SocketAddr>,
    /// Asks the upstream connection of the last try for its local address (known once it
    /// is connected, even if no response came).
    pub upstream_local_probe: Option<Probe>,
    pub transport_failure: Option<Cow<'static, str>>,
    pub route_name: Option<String>,
    pub attempts: u32,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Counts the request body while it streams; read at the end.
    pub request_body: Option<Arc<BodyCount>>,
    pub request_end: Option<Duration>,
    /// The request body's length when known in advance (Content-Length).
    pub request_length: Option<u64>,
    pub response_start: Option<Duration>,
    pub duration: Option<Duration>,
}

impl Entry {
    pub fn new(downstream: Downstream) -> Entry {
        Entry {
            start: SystemTime::now(),
            started: Instant::now(),
            downstream,
            request: RequestHead::default(),
            response_headers: HeaderMap::new(),
            status: None,
            details: None,
            flags: Flags::default(),
            upstream_host: None,
            upstream_cluster: None,
            upstream_local: None,
            upstream_local_probe: None,
            transport_failure: None,
            route_name: None,
            attempts: 0,
            bytes_received: 0,
            bytes_sent: 0,
            request_body: None,
            request_end: None,
            request_length: None,
            response_start: None,
            duration: None,
        }
    }

    /// Keeps what the formats need of the request: its pseudo-headers and the `wanted`
    /// headers (values are shared `Bytes`, not copied).
    pub fn capture_request(&mut self, parts: &http::request::Parts, wanted: &[HeaderName]) {
        let r = &mut self.request;
        r.method = Some(parts.method.clone());
        r.path = parts.uri.path_and_query().cloned();
        r.authority = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        r.version = Some(parts.version);
        for name in wanted {
            for v in parts.headers.get_all(name) {
                r.headers.append(name.clone(), v.clone());
            }
        }
    }

    /// Keeps the `wanted` response headers.
    pub fn capture_response(&mut self, headers: &HeaderMap, wanted: &[HeaderName]) {
        for name in wanted {
            for v in headers.get_all(name) {
                self.response_headers.append(name.clone(), v.clone());
            }
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A local reply came before the request body was sent upstream (a connect failure):
    /// Envoy has read the body by then and counts it, and the server side drains it, so its
    /// announced length is what was received.
    pub fn unsent_body_received(&mut self) {
        let Some(count) = &self.request_body else {
            return;
        };
        if count.end_us.load(Ordering::Relaxed) == u64::MAX
            && let Some(n) = self.request_length
        {
            count.bytes.fetch_max(n, Ordering::Relaxed);
            count.ended(self.elapsed());
        }
    }

    /// The HTTP/1 codec answered the request itself (Envoy's downstream protocol error), or
    /// the client cut its head off (a downstream disconnect).
    pub fn refused(&mut self, r: crate::http1::server::Refusal) {
        match r.status {
            Some(status) => {
                self.status = Some(status.as_u16());
                self.flags.insert("DPE");
            }
            None => self.flags.insert("DC"),
        }
        self.details = Some(r.details.into());
        self.bytes_sent = r.body_bytes;
    }

    /// The end of the stream: the duration, and the request body's count if it streamed.
    pub fn finish(&mut self) {
        self.duration = Some(self.elapsed());
        if let Some(probe) = &self.upstream_local_probe {
            self.upstream_local = self.upstream_local.or_else(|| (probe.0)());
        }
        if let Some(count) = &self.request_body {
            self.bytes_received = count.bytes.load(Ordering::Relaxed);
            let end = count.end_us.load(Ordering::Relaxed);
            if end != u64::MAX {
                self.request_end = Some(Duration::from_micros(end));
            }
        }
    }
}
