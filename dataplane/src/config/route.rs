//! RouteConfiguration -> [`RouteTable`]: virtual hosts, routes, matchers and actions.
//!
//! Semantics follow Envoy's route docs (api-v3/config/route/v3/route_components.proto);
//! matching itself lives in `http/route.rs`. Regexes are compiled here, once (`regex` has RE2's
//! linear-time guarantee, which is why Envoy uses RE2).

use std::time::Duration;

use regex::Regex;
use xds_types::pb::envoy::config::core::v3::{
    HeaderValueOption, header_value_option::HeaderAppendAction,
};
use xds_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RedirectAction, Route as XdsRoute, RouteAction,
    RouteConfiguration as XdsRouteConfiguration, RouteMatch, VirtualHost as XdsVirtualHost,
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    redirect_action, route, route_action, route_match,
};
use xds_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};

use super::hash_policy::HashPolicy;
use super::{ConfigError, FieldError, FieldResult, duration, only_fields, validate};

/// Envoy's default route timeout (route_components.proto, RouteAction.timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct RouteTable {
    pub name: String,
    pub ignore_port_in_host_matching: bool,
    pub vhosts: Vec<VirtualHost>,
    pub headers: HeaderRules,
}

/// Headers added to and removed from requests and responses at one level (route, virtual
/// host, route configuration).
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    pub request_add: Vec<HeaderAdd>,
    pub request_remove: Vec<http::HeaderName>,
    pub response_add: Vec<HeaderAdd>,
    pub response_remove: Vec<http::HeaderName>,
}

#[derive(Debug, Clone)]
pub struct HeaderAdd {
    pub name: http::HeaderName,
    pub value: http::HeaderValue,
    /// The value's command operators (`%DOWNSTREAM_PEER_URI_SAN%`...), when it has any:
    /// then it is rendered per request and `value` is unused.
    pub format: Option<Vec<super::format::Piece>>,
    /// Append to existing values (true) or overwrite them.
    pub append: bool,
    /// Only add when the header is absent (ADD_IF_ABSENT).
    pub if_absent: bool,
}

#[derive(Debug, Clone)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    pub headers: HeaderRules,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: Matcher,
    pub action: Action,
    pub headers: HeaderRules,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    /// Only gRPC requests (content-type application/grpc...).
    pub grpc: bool,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// `path_separated_prefix`: the prefix, then end of path, `?` or `/`.
    Separated(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: http::HeaderName,
    pub kind: HeaderMatchKind,
    pub invert: bool,
    pub missing_as_empty: bool,
}

#[derive(Debug, Clone)]
pub enum HeaderMatchKind {
    Present(bool),
    String(StringMatch),
    Range { start: i64, end: i64 },
}

#[derive(Debug, Clone)]
pub enum StringMatch {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Contains(String, bool),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub name: String,
    /// `None`: present is enough.
    pub value: Option<StringMatch>,
}

// Forward is the large variant and the common one: a route table is made once per config and
// read on every request, so it stays inline (boxed, it would be one more pointer to follow
// per request for a few hundred bytes per route).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Action {
    Forward(Forward),
    Direct {
        status: http::StatusCode,
        body: bytes::Bytes,
    },
    Redirect(Redirect),
}

#[derive(Debug, Clone)]
pub struct Forward {
    pub target: ClusterTarget,
    pub prefix_rewrite: Option<String>,
    pub regex_rewrite: Option<(Regex, String)>,
    pub host_rewrite: Option<String>,
    pub auto_host_rewrite: bool,
    pub timeout: Option<Duration>,
    /// `x-envoy-expected-rq-timeout-ms`'s value for `timeout`, made once, not per request.
    pub timeout_header: Option<http::HeaderValue>,
    /// The route's stream idle timeout: no bytes either way for this long ends the request
    /// (`idle_timeout`; 0 disables; unset leaves the connection manager's).
    pub idle_timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    /// What RING_HASH and MAGLEV clusters hash on; empty means a random hash.
    pub hash_policy: Vec<HashPolicy>,
}

#[derive(Debug, Clone)]
pub enum ClusterTarget {
    Name(String),
    /// (cluster, weight); the pick is `random % total`.
    Weighted(Vec<(String, u32)>),
    Header(http::HeaderName),
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub on_5xx: bool,
    pub on_gateway_error: bool,
    pub on_connect_failure: bool,
    pub on_reset: bool,
    pub on_retriable_4xx: bool,
    pub retriable_status_codes: Vec<u16>,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub base_interval: Duration,
    pub max_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: Option<String>,
    pub prefix_rewrite: Option<String>,
    pub status: http::StatusCode,
    pub strip_query: bool,
}

impl TryFrom<&XdsRouteConfiguration> for RouteTable {
    type Error = ConfigError;

    fn try_from(rc: &XdsRouteConfiguration) -> Result<Self, ConfigError> {
        let table = (|| {
            validate(rc)?;
            only_fields(
                rc,
                &[
                    "name",
                    "virtual_hosts",
                    "response_headers_to_add",
                    "response_headers_to_remove",
                    "request_headers_to_add",
                    "request_headers_to_remove",
                    // Envoy: validate_clusters only decides whether unknown clusters are
                    // refused at load; we answer 503 for them either way, as Envoy does by default.
                    "validate_clusters",
                    "ignore_port_in_host_matching",
                ],
            )?;
            let vhosts = rc
                .virtual_hosts
                .iter()
                .enumerate()
                .map(|(i, v)| vhost(v).map_err(|e| e.within(&format!("virtual_hosts[{i}]"))))
                .collect::<FieldResult<_>>()?;
            let headers = header_rules(
                &rc.request_headers_to_add,
                &rc.request_headers_to_remove,
                &rc.response_headers_to_add,
                &rc.response_headers_to_remove,
            )?;
            Ok(RouteTable {
                name: rc.name.clone(),
                ignore_port_in_host_matching: rc.ignore_port_in_host_matching,
                vhosts,
                headers,
            })
        })();
        table.map_err(|e: FieldError| e.of("route configuration", &rc.name))
    }
}

fn vhost(v: &XdsVirtualHost) -> FieldResult<VirtualHost> {
    only_fields(
        v,
        &[
            "name",
            "domains",
            "routes",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
        ],
    )?;
    let routes = v
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(r).map_err(|e| e.within(&format!("routes[{i}]"))))
        .collect::<FieldResult<_>>()?;
    Ok(VirtualHost {
        name: v.name.clone(),
        domains: v.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        routes,
        headers: header_rules(
            &v.request_headers_to_add,
            &v.request_headers_to_remove,
            &v.response_headers_to_add,
            &v.response_headers_to_remove,
        )?,
    })
}

fn route(r: &XdsRoute) -> FieldResult<Route> {
    only_fields(
        r,
        &[
            "name",
            "match",
            "route",
            "redirect",
            "direct_response",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
        ],
    )?;
    let matcher = matcher(
        r.r#match
            .as_ref()
            .ok_or_else(|| FieldError::new("match", "required"))?,
    )
    .map_err(|e| e.within("match"))?;
    let action = match &r.action {
        Some(route::Action::Route(a)) => {
            Action::Forward(forward(a).map_err(|e| e.within("route"))?)
        }
        Some(route::Action::Redirect(a)) => {
            Action::Redirect(redirect(a).map_err(|e| e.within("redirect"))?)
        }
        Some(route::Action::DirectResponse(d)) => {
            let status = http::StatusCode::from_u16(d.status as u16).map_err(|_| {
                FieldError::new(
                    "direct_response.status",
                    format!("{} is not an HTTP status", d.status),
                )
            })?;
            use xds_types::pb::envoy::config::core::v3::data_source::Specifier;
            let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
                None => bytes::Bytes::new(),
                Some(Specifier::InlineString(s)) => bytes::Bytes::from(s.clone()),
                Some(Specifier::InlineBytes(b)) => bytes::Bytes::from(b.clone()),
                Some(_) => {
                    return Err(FieldError::new(
                        "direct_response.body",
                        "only inline_string and inline_bytes are supported",
                    ));
                }
            };
            Action::Direct { status, body }
        }
        _ => {
            return Err(FieldError::new(
                "action",
                "one of route, redirect, direct_response is required",
            ));
        }
    };
    Ok(Route {
        name: r.name.clone(),
        matcher,
        action,
        headers: header_rules(
            &r.request_headers_to_add,
            &r.request_headers_to_remove,
            &r.response_headers_to_add,
            &r.response_headers_to_remove,
        )?,
    })
}

fn matcher(m: &RouteMatch) -> FieldResult<Matcher> {
    only_fields(
        m,
        &[
            "prefix",
            "path",
            "safe_regex",
            "path_separated_prefix",
            "case_sensitive",
            "headers",
            "query_parameters",
            "grpc",
        ],
    )?;
    let case_sensitive = m.case_sensitive.as_ref().is_none_or(|b| b.value);
    let path = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(route_match::PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(route_match::PathSpecifier::PathSeparatedPrefix(p)) => PathMatch::Separated(p.clone()),
        Some(route_match::PathSpecifier::SafeRegex(r)) => {
            PathMatch::Regex(anchored(&r.regex).map_err(|e| e.within("safe_regex.regex"))?)
        }
        _ => {
            return Err(FieldError::new(
                "path_specifier",
                "one of prefix, path, safe_regex, path_separated_prefix is required",
            ));
        }
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| header_match(h).map_err(|e| e.within(&format!("headers[{i}]"))))
        .collect::<FieldResult<_>>()?;
    let query = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| query_match(q).map_err(|e| e.within(&format!("query_parameters[{i}]"))))
        .collect::<FieldResult<_>>()?;
    Ok(Matcher {
        path,
        case_sensitive,
        headers,
        query,
        grpc: m.grpc.is_some(),
    })
}

/// Envoy's safe_regex matches the whole value (RE2 FullMatch).
fn anchored(pattern: &str) -> FieldResult<Regex> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| FieldError::new("", format!("invalid regex: {e}")))
}

fn header_name(name: &str) -> FieldResult<http::HeaderName> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| FieldError::new("name", format!("\"{name}\" is not a header name")))
}

pub(crate) fn string_match(m: &StringMatcher) -> FieldResult<StringMatch> {
    let ic = m.ignore_case;
    Ok(match &m.match_pattern {
        Some(MatchPattern::Exact(s)) => StringMatch::Exact(s.clone(), ic),
        Some(MatchPattern::Prefix(s)) => StringMatch::Prefix(s.clone(), ic),
        Some(MatchPattern::Suffix(s)) => StringMatch::Suffix(s.clone(), ic),
        Some(MatchPattern::Contains(s)) => StringMatch::Contains(s.clone(), ic),
        Some(MatchPattern::SafeRegex(r)) => {
            StringMatch::Regex(anchored(&r.regex).map_err(|e| e.within("safe_regex.regex"))?)
        }
        _ => {
            return Err(FieldError::new(
                "match_pattern",
                "custom matchers are not supported",
            ));
        }
    })
}

// The deprecated exact/prefix/... variants are still accepted by Envoy 1.40 and still written.
#[allow(deprecated)]
pub(crate) fn header_match(h: &HeaderMatcher) -> FieldResult<HeaderMatch> {
    let kind = match &h.header_match_specifier {
        None => HeaderMatchKind::Present(true),
        Some(HeaderMatchSpecifier::ExactMatch(s)) => {
            HeaderMatchKind::String(StringMatch::Exact(s.clone(), false))
        }
        Some(HeaderMatchSpecifier::PrefixMatch(s)) => {
            HeaderMatchKind::String(StringMatch::Prefix(s.clone(), false))
        }
        Some(HeaderMatchSpecifier::SuffixMatch(s)) => {
            HeaderMatchKind::String(StringMatch::Suffix(s.clone(), false))
        }
        Some(HeaderMatchSpecifier::ContainsMatch(s)) => {
            HeaderMatchKind::String(StringMatch::Contains(s.clone(), false))
        }
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => HeaderMatchKind::String(
            StringMatch::Regex(anchored(&r.regex).map_err(|e| e.within("safe_regex_match.regex"))?),
        ),
        Some(HeaderMatchSpecifier::StringMatch(m)) => {
            HeaderMatchKind::String(string_match(m).map_err(|e| e.within("string_match"))?)
        }
        Some(HeaderMatchSpecifier::PresentMatch(p)) => HeaderMatchKind::Present(*p),
        Some(HeaderMatchSpecifier::RangeMatch(r)) => HeaderMatchKind::Range {
            start: r.start,
            end: r.end,
        },
    };
    Ok(HeaderMatch {
        name: header_name(&h.name)?,
        kind,
        invert: h.invert_match,
        missing_as_empty: h.treat_missing_header_as_empty,
    })
}

fn query_match(q: &QueryParameterMatcher) -> FieldResult<QueryMatch> {
    let value = match &q.query_parameter_match_specifier {
        Some(QueryParameterMatchSpecifier::StringMatch(m)) => {
            Some(string_match(m).map_err(|e| e.within("string_match"))?)
        }
        Some(QueryParameterMatchSpecifier::PresentMatch(_)) | None => None,
    };
    Ok(QueryMatch {
        name: q.name.clone(),
        value,
    })
}

fn forward(a: &RouteAction) -> FieldResult<Forward> {
    only_fields(
        a,
        &[
            "cluster",
            "weighted_clusters",
            "cluster_header",
            "prefix_rewrite",
            "regex_rewrite",
            "host_rewrite_literal",
            "auto_host_rewrite",
            "timeout",
            "idle_timeout",
            "retry_policy",
            "hash_policy",
        ],
    )?;
    let target = match &a.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(c)) => ClusterTarget::Name(c.clone()),
        Some(route_action::ClusterSpecifier::ClusterHeader(h)) => {
            ClusterTarget::Header(header_name(h).map_err(|e| e.within("cluster_header"))?)
        }
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
            let clusters: Vec<(String, u32)> = w
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
                .collect();
            if clusters.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() == 0 {
                return Err(FieldError::new(
                    "weighted_clusters",
                    "the weights sum to zero",
                ));
            }
            ClusterTarget::Weighted(clusters)
        }
        _ => {
            return Err(FieldError::new(
                "cluster_specifier",
                "one of cluster, weighted_clusters, cluster_header is required",
            ));
        }
    };
    let regex_rewrite = match &a.regex_rewrite {
        Some(r) => {
            let pattern = r
                .pattern
                .as_ref()
                .map(|p| p.regex.as_str())
                .unwrap_or_default();
            let re = Regex::new(pattern).map_err(|e| {
                FieldError::new("regex_rewrite.pattern.regex", format!("invalid regex: {e}"))
            })?;
            Some((re, re2_substitution(&r.substitution)))
        }
        None => None,
    };
    let (host_rewrite, auto_host_rewrite) = match &a.host_rewrite_specifier {
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(h)) => (Some(h.clone()), false),
        Some(route_action::HostRewriteSpecifier::AutoHostRewrite(b)) => (None, b.value),
        None => (None, false),
        Some(_) => {
            return Err(FieldError::new(
                "host_rewrite_specifier",
                "only host_rewrite_literal and auto_host_rewrite are supported",
            ));
        }
    };
    let timeout = match &a.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(d) if d.seconds == 0 && d.nanos == 0 => None, // 0 disables the timeout
        Some(d) => Some(duration(d)),
    };
    let retry = a
        .retry_policy
        .as_ref()
        .map(retry_policy)
        .transpose()
        .map_err(|e| e.within("retry_policy"))?;
    Ok(Forward {
        target,
        prefix_rewrite: (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone()),
        regex_rewrite,
        host_rewrite,
        auto_host_rewrite,
        timeout,
        timeout_header: timeout.map(|t| http::HeaderValue::from(t.as_millis() as u64)),
        idle_timeout: a
            .idle_timeout
            .as_ref()
            .map(duration)
            .filter(|d| !d.is_zero()),
        retry,
        hash_policy: super::hash_policy::translate(&a.hash_policy)?,
    })
}

/// RE2 writes groups as `\1`; the regex crate as `${1}`.
pub(super) fn re2_substitution(substitution: &str) -> String {
    Regex::new(r"\\(\d)")
        .map(|d| d.replace_all(substitution, "$${$1}").into_owned())
        .unwrap_or_default()
}

fn retry_policy(
    p: &xds_types::pb::envoy::config::route::v3::RetryPolicy,
) -> FieldResult<RetryPolicy> {
    only_fields(
        p,
        &[
            "retry_on",
            "num_retries",
            "per_try_timeout",
            "retry_back_off",
            "retriable_status_codes",
        ],
    )?;
    let mut policy = RetryPolicy {
        on_5xx: false,
        on_gateway_error: false,
        on_connect_failure: false,
        on_reset: false,
        on_retriable_4xx: false,
        retriable_status_codes: p
            .retriable_status_codes
            .iter()
            .filter_map(|c| u16::try_from(*c).ok())
            .collect(),
        num_retries: p.num_retries.as_ref().map_or(1, |n| n.value),
        per_try_timeout: p.per_try_timeout.as_ref().map(duration),
        base_interval: p
            .retry_back_off
            .as_ref()
            .and_then(|b| b.base_interval.as_ref())
            .map_or(Duration::from_millis(25), duration),
        max_interval: Duration::ZERO,
    };
    policy.max_interval = p
        .retry_back_off
        .as_ref()
        .and_then(|b| b.max_interval.as_ref())
        .map_or(policy.base_interval * 10, duration);
    for on in p
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match on {
            "5xx" => policy.on_5xx = true,
            "gateway-error" => policy.on_gateway_error = true,
            "connect-failure" => policy.on_connect_failure = true,
            "reset" => policy.on_reset = true,
            "retriable-4xx" => policy.on_retriable_4xx = true,
            "retriable-status-codes" => {}
            other => {
                return Err(FieldError::new(
                    "retry_on",
                    format!("\"{other}\" is not supported"),
                ));
            }
        }
    }
    Ok(policy)
}

fn redirect(r: &RedirectAction) -> FieldResult<Redirect> {
    let scheme = match &r.scheme_rewrite_specifier {
        Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true)) => {
            Some("https".to_string())
        }
        Some(redirect_action::SchemeRewriteSpecifier::SchemeRedirect(s)) => Some(s.clone()),
        _ => None,
    };
    let (path, prefix_rewrite) = match &r.path_rewrite_specifier {
        Some(redirect_action::PathRewriteSpecifier::PathRedirect(p)) => (Some(p.clone()), None),
        Some(redirect_action::PathRewriteSpecifier::PrefixRewrite(p)) => (None, Some(p.clone())),
        None => (None, None),
        Some(_) => return Err(FieldError::new("regex_rewrite", "not supported")),
    };
    // RedirectResponseCode: MOVED_PERMANENTLY(0)=301, FOUND=302, SEE_OTHER=303, TEMPORARY=307, PERMANENT=308.
    let status = match r.response_code {
        0 => 301,
        1 => 302,
        2 => 303,
        3 => 307,
        4 => 308,
        other => {
            return Err(FieldError::new(
                "response_code",
                format!("{other} is not a redirect code"),
            ));
        }
    };
    Ok(Redirect {
        scheme,
        host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
        port: (r.port_redirect != 0).then_some(r.port_redirect),
        path,
        prefix_rewrite,
        status: http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::MOVED_PERMANENTLY),
        strip_query: r.strip_query,
    })
}

// `append` is deprecated in favour of append_action, but Envoy 1.40 still honours it.
#[allow(deprecated)]
fn header_adds(list: &[HeaderValueOption], field: &str) -> FieldResult<Vec<HeaderAdd>> {
    list.iter()
        .enumerate()
        .map(|(i, o)| {
            let at = format!("{field}[{i}]");
            let h = o
                .header
                .as_ref()
                .ok_or_else(|| FieldError::new(format!("{at}.header"), "required"))?;
            let name = header_name(&h.key).map_err(|e| e.within(&at))?;
            let raw = if h.raw_value.is_empty() {
                h.value.as_bytes().to_vec()
            } else {
                h.raw_value.clone()
            };
            let value = http::HeaderValue::from_bytes(&raw)
                .map_err(|_| FieldError::new(format!("{at}.header.value"), "not a header value"))?;
            let format = if h.raw_value.is_empty() {
                super::format::parse(&h.value).map_err(|e| e.within(&at))?
            } else {
                None
            };
            // append_action wins over the deprecated append (default APPEND_IF_EXISTS_OR_ADD).
            let (append, if_absent) = match o.append.as_ref().map(|a| a.value) {
                Some(false) => (false, false),
                _ => match HeaderAppendAction::try_from(o.append_action) {
                    Ok(HeaderAppendAction::AppendIfExistsOrAdd) => (true, false),
                    Ok(HeaderAppendAction::AddIfAbsent) => (false, true),
                    Ok(HeaderAppendAction::OverwriteIfExistsOrAdd) => (false, false),
                    Ok(HeaderAppendAction::OverwriteIfExists) => {
                        return Err(FieldError::new(
                            format!("{at}.append_action"),
                            "OVERWRITE_IF_EXISTS is not supported",
                        ));
                    }
                    Err(_) => {
                        return Err(FieldError::new(
                            format!("{at}.append_action"),
                            "unknown action",
                        ));
                    }
                },
            };
            Ok(HeaderAdd {
                name,
                value,
                format,
                append,
                if_absent,
            })
        })
        .collect()
}

fn header_rules(
    request_add: &[HeaderValueOption],
    request_remove: &[String],
    response_add: &[HeaderValueOption],
    response_remove: &[String],
) -> FieldResult<HeaderRules> {
    let names = |list: &[String], field: &str| -> FieldResult<Vec<http::HeaderName>> {
        list.iter()
            .enumerate()
            .map(|(i, n)| header_name(n).map_err(|e| e.within(&format!("{field}[{i}]"))))
            .collect()
    };
    Ok(HeaderRules {
        request_add: header_adds(request_add, "request_headers_to_add")?,
        request_remove: names(request_remove, "request_headers_to_remove")?,
        response_add: header_adds(response_add, "response_headers_to_add")?,
        response_remove: names(response_remove, "response_headers_to_remove")?,
    })
}
