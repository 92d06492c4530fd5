//! Matching a request head against a [`RouteTable`]: the virtual host by domain, then the
//! first route whose matcher accepts the request (route_components.proto).

use http::request::Parts;

use crate::config::route::{
    HeaderMatch, HeaderMatchKind, Matcher, PathMatch, QueryMatch, Route, RouteTable, StringMatch,
    VirtualHost,
};

impl RouteTable {
    /// The virtual host for `host` (the Host / :authority value).
    ///
    /// Envoy's precedence: an exact domain, then the longest suffix wildcard (`*.example.com`,
    /// `*-bar.example.com`), then the longest prefix wildcard (`foo.*`), then `*`. The port in
    /// the host is part of the name, unless `ignore_port_in_host_matching` is set.
    pub fn vhost(&self, host: &str) -> Option<&VirtualHost> {
        // Domains are lowercase; a host is lowercased only when it has capitals (a copy).
        let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host.to_ascii_lowercase().into()
        } else {
            host.into()
        };
        if self.ignore_port_in_host_matching
            && let Some((name, port)) = host.rsplit_once(':')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && !name.ends_with(':')
        {
            return self.vhost_for(name);
        }
        self.vhost_for(&host)
    }

    fn vhost_for(&self, host: &str) -> Option<&VirtualHost> {
        let mut best_suffix: Option<(usize, &VirtualHost)> = None;
        let mut best_prefix: Option<(usize, &VirtualHost)> = None;
        let mut any = None;
        for v in &self.vhosts {
            for d in &v.domains {
                if d == host {
                    return Some(v);
                } else if d == "*" {
                    any = any.or(Some(v));
                } else if let Some(suffix) = d.strip_prefix('*') {
                    if host.len() > suffix.len()
                        && host.ends_with(suffix)
                        && best_suffix.is_none_or(|(l, _)| suffix.len() > l)
                    {
                        best_suffix = Some((suffix.len(), v));
                    }
                } else if let Some(prefix) = d.strip_suffix('*')
                    && host.len() > prefix.len()
                    && host.starts_with(prefix)
                    && best_prefix.is_none_or(|(l, _)| prefix.len() > l)
                {
                    best_prefix = Some((prefix.len(), v));
                }
            }
        }
        best_suffix.or(best_prefix).map(|(_, v)| v).or(any)
    }
}

impl VirtualHost {
    /// The first route that matches.
    pub fn route(&self, parts: &Parts) -> Option<&Route> {
        self.routes.iter().find(|r| r.matcher.matches(parts))
    }
}

impl Matcher {
    pub fn matches(&self, parts: &Parts) -> bool {
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        self.path_matches(path)
            && self.headers.iter().all(|h| h.matches(parts))
            && self.query.iter().all(|q| q.matches(query))
            && (!self.grpc || is_grpc(parts))
    }

    fn path_matches(&self, path: &str) -> bool {
        let eq = |a: &str, b: &str| {
            if self.case_sensitive {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            }
        };
        match &self.path {
            PathMatch::Prefix(p) => path.get(..p.len()).is_some_and(|head| eq(head, p)),
            PathMatch::Exact(p) => eq(path, p),
            PathMatch::Separated(p) => {
                path.get(..p.len()).is_some_and(|head| eq(head, p))
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

fn is_grpc(parts: &Parts) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct == "application/grpc" || ct.starts_with("application/grpc+"))
}

impl StringMatch {
    pub fn matches(&self, value: &str) -> bool {
        let fold = |s: &str, ic: bool| {
            if ic {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        match self {
            StringMatch::Exact(s, ic) => {
                if *ic {
                    value.eq_ignore_ascii_case(s)
                } else {
                    value == s
                }
            }
            StringMatch::Prefix(s, ic) => fold(value, *ic).starts_with(&fold(s, *ic)),
            StringMatch::Suffix(s, ic) => fold(value, *ic).ends_with(&fold(s, *ic)),
            StringMatch::Contains(s, ic) => fold(value, *ic).contains(&fold(s, *ic)),
            StringMatch::Regex(re) => re.is_match(value),
        }
    }
}

impl HeaderMatch {
    fn matches(&self, parts: &Parts) -> bool {
        self.matches_headers(&parts.headers)
    }

    /// Also the access log's `header_filter`.
    pub fn matches_headers(&self, headers: &http::HeaderMap) -> bool {
        // Several values of one header are matched joined by "," (Envoy's HeaderUtility).
        let values: Vec<&str> = headers
            .get_all(&self.name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let joined = (!values.is_empty()).then(|| values.join(","));
        let value = joined.as_deref().or(if self.missing_as_empty {
            Some("")
        } else {
            None
        });
        let result = match (&self.kind, value) {
            (HeaderMatchKind::Present(want), v) => v.is_some() == *want,
            // A missing header fails every value matcher, inverted or not (Envoy 1.40 answers
            // 404 to `invert_match` on an absent header: checked in tests/envoy_parity.rs).
            (_, None) => return false,
            (HeaderMatchKind::String(m), Some(v)) => m.matches(v),
            (HeaderMatchKind::Range { start, end }, Some(v)) => {
                v.parse::<i64>().is_ok_and(|n| n >= *start && n < *end)
            }
        };
        result != self.invert
    }
}

impl QueryMatch {
    fn matches(&self, query: &str) -> bool {
        query
            .split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == self.name).then_some(v)
            })
            .next()
            .is_some_and(|v| self.value.as_ref().is_none_or(|m| m.matches(v)))
    }
}

#[cfg(test)]
mod tests;
