//! Envoy's access logs (`access_log` on the HTTP connection manager and on tcp_proxy): the
//! loggers (file, stdout, stderr), their formats and filters, compiled at translation
//! (`config/access_log.rs`) into the types here.
//!
//! The request path fills an [`Entry`] as it goes (the router, the tcp proxy); the entry is
//! rendered when the stream ends (the response body's last byte: [`body::Logged`]), into a
//! line handed to a background [`writer`], so no request waits on a file.

pub mod body;
pub mod entry;
pub mod filter;
pub mod format;
pub mod operator;
pub mod time;
pub mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::HeaderName;

pub use entry::{BodyCount, Entry, Flags};
use filter::Filter;
use format::Format;
use writer::Sink;

/// One logger: which entries (`filter`), how (`format`), where (`sink`).
#[derive(Debug)]
pub struct AccessLog {
    pub filter: Option<Filter>,
    pub format: Format,
    pub sink: Arc<Sink>,
}

/// The loggers of one connection manager or tcp_proxy, and the headers they read (only those
/// are kept of a request and its response).
#[derive(Debug)]
pub struct AccessLogs {
    pub logs: Vec<AccessLog>,
    pub request_headers: Vec<HeaderName>,
    pub response_headers: Vec<HeaderName>,
}

impl AccessLogs {
    pub fn new(logs: Vec<AccessLog>) -> AccessLogs {
        let mut request_headers = Vec::new();
        let mut response_headers = Vec::new();
        for log in &logs {
            for op in log.format.ops() {
                request_headers.extend(op.request_header().cloned());
                response_headers.extend(op.response_header().cloned());
            }
            if let Some(f) = &log.filter {
                f.headers(&mut request_headers);
            }
        }
        for list in [&mut request_headers, &mut response_headers] {
            list.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            list.dedup();
        }
        AccessLogs {
            logs,
            request_headers,
            response_headers,
        }
    }

    /// Writes the entry to every logger whose filter lets it through.
    pub fn emit(&self, e: &Entry) {
        for log in &self.logs {
            if log.filter.as_ref().is_some_and(|f| !f.allows(e)) {
                continue;
            }
            let mut line = String::with_capacity(256);
            log.format.render(e, &mut line);
            log.sink.write(line);
        }
    }
}
