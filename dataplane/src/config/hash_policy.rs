//! RouteAction.hash_policy -> [`HashPolicy`]: what a request hashes on for RING_HASH and MAGLEV.
//!
//! Envoy (source/common/http/hash_policy.cc) evaluates the policies in order; each one that
//! yields a value is folded into the hash (the previous hash rotated left by one, XORed with
//! the new one), and a `terminal` policy that produced a hash ends the walk. The evaluation
//! itself lives in `http/hash.rs`.

use std::time::Duration;

use regex::Regex;
use xds_types::pb::envoy::config::route::v3::route_action::{
    HashPolicy as XdsHashPolicy, hash_policy::PolicySpecifier,
};

use super::{FieldError, FieldResult, only_fields};

#[derive(Debug, Clone)]
pub struct HashPolicy {
    pub kind: HashKind,
    /// Stop at this policy when it (or an earlier one) produced a hash.
    pub terminal: bool,
}

#[derive(Debug, Clone)]
pub enum HashKind {
    /// The header's values (sorted, so their order does not matter), optionally rewritten.
    Header {
        name: http::HeaderName,
        rewrite: Option<(Regex, String)>,
    },
    /// A cookie's value. With a `ttl`, a request without the cookie gets one generated (and a
    /// `set-cookie` on its response), so the client sticks to the host from then on.
    Cookie(CookieHash),
    /// The downstream peer's IP address.
    SourceIp,
    /// The first value of a query parameter.
    QueryParameter(String),
}

#[derive(Debug, Clone)]
pub struct CookieHash {
    pub name: String,
    pub path: String,
    pub ttl: Option<Duration>,
    /// Extra `; name=value` attributes on a generated cookie, in order.
    pub attributes: Vec<(String, String)>,
}

pub fn translate(policies: &[XdsHashPolicy]) -> FieldResult<Vec<HashPolicy>> {
    let mut out = Vec::with_capacity(policies.len());
    for (i, p) in policies.iter().enumerate() {
        let at = format!("hash_policy[{i}]");
        let kind = policy(p).map_err(|e| e.within(&at))?;
        // connection_properties with source_ip false hashes nothing: Envoy drops it too.
        if let Some(kind) = kind {
            out.push(HashPolicy {
                kind,
                terminal: p.terminal,
            });
        }
    }
    Ok(out)
}

fn policy(p: &XdsHashPolicy) -> FieldResult<Option<HashKind>> {
    only_fields(
        p,
        &[
            "header",
            "cookie",
            "connection_properties",
            "query_parameter",
            "terminal",
        ],
    )?;
    Ok(match &p.policy_specifier {
        Some(PolicySpecifier::Header(h)) => {
            let name = http::HeaderName::from_bytes(h.header_name.as_bytes()).map_err(|_| {
                FieldError::new(
                    "header.header_name",
                    format!("\"{}\" is not a valid header name", h.header_name),
                )
            })?;
            let rewrite = match &h.regex_rewrite {
                Some(r) => {
                    let pattern = r.pattern.as_ref().map(|p| p.regex.as_str()).unwrap_or("");
                    let re = Regex::new(pattern).map_err(|e| {
                        FieldError::new(
                            "header.regex_rewrite.pattern.regex",
                            format!("invalid regex: {e}"),
                        )
                    })?;
                    Some((re, super::route::re2_substitution(&r.substitution)))
                }
                None => None,
            };
            Some(HashKind::Header { name, rewrite })
        }
        Some(PolicySpecifier::Cookie(c)) => Some(HashKind::Cookie(CookieHash {
            name: c.name.clone(),
            path: c.path.clone(),
            // Envoy keeps whole seconds of the TTL (hash_policy.cc).
            ttl: c
                .ttl
                .as_ref()
                .map(|t| Duration::from_secs(t.seconds.max(0) as u64)),
            attributes: c
                .attributes
                .iter()
                .map(|a| (a.name.clone(), a.value.clone()))
                .collect(),
        })),
        Some(PolicySpecifier::ConnectionProperties(c)) => c.source_ip.then_some(HashKind::SourceIp),
        Some(PolicySpecifier::QueryParameter(q)) => Some(HashKind::QueryParameter(q.name.clone())),
        Some(PolicySpecifier::FilterState(_)) => {
            return Err(FieldError::new(
                "filter_state",
                "hashing on filter state is not supported by this dataplane",
            ));
        }
        None => {
            return Err(FieldError::new(
                "policy_specifier",
                "one of header, cookie, connection_properties, query_parameter is required",
            ));
        }
    })
}
