//! Access log filters (`envoy.config.accesslog.v3.AccessLogFilter`): which entries a logger
//! writes. Runtime keys are not followed: a comparison uses its `default_value`.

use super::entry::{Entry, Flags};
use crate::config::route::HeaderMatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ge,
    Le,
    Ne,
}

impl Cmp {
    fn holds(self, a: u64, b: u64) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ge => a >= b,
            Cmp::Le => a <= b,
            Cmp::Ne => a != b,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Filter {
    /// `status_code_filter`: the response code (0 without a response) against the value.
    Status(Cmp, u64),
    /// `duration_filter`: the total duration in milliseconds against the value.
    Duration(Cmp, u64),
    /// `not_health_check_filter`: we have no health check filter, so no request is one.
    NotHealthCheck,
    /// `response_flag_filter`: any of these flags, or any flag at all when empty.
    Flags(Flags),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    /// `header_filter`: on the request headers.
    Header(HeaderMatch),
}

impl Filter {
    pub fn allows(&self, e: &Entry) -> bool {
        match self {
            Filter::Status(cmp, v) => cmp.holds(u64::from(e.status.unwrap_or(0)), *v),
            Filter::Duration(cmp, v) => cmp.holds(
                e.duration.unwrap_or_else(|| e.elapsed()).as_millis() as u64,
                *v,
            ),
            Filter::NotHealthCheck => true,
            Filter::Flags(f) if f.is_empty() => !e.flags.is_empty(),
            Filter::Flags(f) => e.flags.intersects(*f),
            Filter::And(all) => all.iter().all(|f| f.allows(e)),
            Filter::Or(any) => any.iter().any(|f| f.allows(e)),
            Filter::Header(m) => m.matches_headers(&e.request.headers),
        }
    }

    /// The request headers a header filter reads (they must be captured).
    pub fn headers(&self, out: &mut Vec<http::HeaderName>) {
        match self {
            Filter::Header(m) => out.push(m.name.clone()),
            Filter::And(list) | Filter::Or(list) => list.iter().for_each(|f| f.headers(out)),
            _ => {}
        }
    }
}
