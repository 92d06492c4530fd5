//! String rules: lengths, affixes, lists, patterns and the well-known formats.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use prost_reflect::DynamicMessage;

use super::values::get_bool;
use super::{Checker, ValidationError};

impl Checker {
    pub(super) fn string(&self, sub: &DynamicMessage, s: &str) -> Result<(), ValidationError> {
        let chars = s.chars().count() as u64;
        let u = |name: &str| {
            sub.has_field_by_name(name)
                .then(|| sub.get_field_by_name(name).and_then(|v| v.as_u64()))
                .flatten()
        };
        let text = |name: &str| {
            sub.has_field_by_name(name)
                .then(|| {
                    sub.get_field_by_name(name)
                        .and_then(|v| v.as_str().map(str::to_string))
                })
                .flatten()
        };
        let checks: [LengthCheck; 5] = [
            (u("len"), |a, b| a == b, "characters long: exactly", chars),
            (
                u("min_len"),
                |a, b| a >= b,
                "characters long: at least",
                chars,
            ),
            (
                u("max_len"),
                |a, b| a <= b,
                "characters long: at most",
                chars,
            ),
            (
                u("min_bytes"),
                |a, b| a >= b,
                "bytes long: at least",
                s.len() as u64,
            ),
            (
                u("max_bytes"),
                |a, b| a <= b,
                "bytes long: at most",
                s.len() as u64,
            ),
        ];
        for (limit, pass, what, actual) in checks {
            if let Some(limit) = limit
                && !pass(actual, limit)
            {
                let (unit, bound) = what.split_once(": ").unwrap_or((what, ""));
                return Err(self.fail(format!(
                    "value must be {bound} {limit} {unit}, got {actual}"
                )));
            }
        }
        if let Some(c) = text("const").filter(|c| c != s) {
            return Err(self.fail(format!("value must equal {c:?}")));
        }
        if let Some(p) = text("pattern")
            && !pattern_matches(&p, s)
        {
            return Err(self.fail(format!("value must match the pattern {p:?}, got {s:?}")));
        }
        if let Some(p) = text("prefix").filter(|p| !s.starts_with(p.as_str())) {
            return Err(self.fail(format!("value must start with {p:?}")));
        }
        if let Some(p) = text("suffix").filter(|p| !s.ends_with(p.as_str())) {
            return Err(self.fail(format!("value must end with {p:?}")));
        }
        if let Some(p) = text("contains").filter(|p| !s.contains(p.as_str())) {
            return Err(self.fail(format!("value must contain {p:?}")));
        }
        if let Some(p) = text("not_contains").filter(|p| s.contains(p.as_str())) {
            return Err(self.fail(format!("value must not contain {p:?}")));
        }
        let strings = |name: &str| -> Vec<String> {
            sub.get_field_by_name(name)
                .and_then(|v| {
                    v.as_list().map(|l| {
                        l.iter()
                            .filter_map(|i| i.as_str().map(str::to_string))
                            .collect()
                    })
                })
                .unwrap_or_default()
        };
        let allowed = strings("in");
        if !allowed.is_empty() && !allowed.iter().any(|a| a == s) {
            return Err(self.fail(format!("value must be one of {allowed:?}, got {s:?}")));
        }
        if strings("not_in").iter().any(|a| a == s) {
            return Err(self.fail(format!("value must not be {s:?}")));
        }
        let format = [
            (
                "hostname",
                "a valid hostname",
                valid_hostname as fn(&str) -> bool,
            ),
            ("ip", "a valid IP address", |s| {
                s.parse::<std::net::IpAddr>().is_ok()
            }),
            ("ipv4", "a valid IPv4 address", |s| {
                s.parse::<std::net::Ipv4Addr>().is_ok()
            }),
            ("ipv6", "a valid IPv6 address", |s| {
                s.parse::<std::net::Ipv6Addr>().is_ok()
            }),
            ("address", "a valid hostname or IP address", |s| {
                valid_hostname(s) || s.parse::<std::net::IpAddr>().is_ok()
            }),
        ];
        for (rule, what, ok) in format {
            if get_bool(sub, rule) && !ok(s) {
                return Err(self.fail(format!("value must be {what}, got {s:?}")));
            }
        }
        // well_known_regex: 1 = HTTP_HEADER_NAME, 2 = HTTP_HEADER_VALUE; `strict` defaults to true.
        if sub.has_field_by_name("well_known_regex") {
            let strict = !sub.has_field_by_name("strict") || get_bool(sub, "strict");
            let which = sub
                .get_field_by_name("well_known_regex")
                .and_then(|v| v.as_enum_number())
                .unwrap_or(0);
            let bad = match (which, strict) {
                (1, true) => !valid_header_name(s),
                (2, true) => s.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f),
                (_, false) => s.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n'),
                _ => false,
            };
            if bad {
                let what = if which == 1 {
                    "a valid HTTP header name"
                } else {
                    "a valid HTTP header value"
                };
                return Err(self.fail(format!("value must be {what}, got {s:?}")));
            }
        }
        Ok(())
    }
}

/// A length rule: its limit (when set), the comparison, what is counted, the actual count.
type LengthCheck<'a> = (Option<u64>, fn(u64, u64) -> bool, &'a str, u64);

/// Whether `s` matches a rule's `pattern` (RE2 syntax, which the regex crate follows). The
/// patterns come from the API's descriptors, so the cache holds at most one entry per pattern
/// the API has; a pattern that does not compile here fails open (it is the API's, not a peer's).
fn pattern_matches(pattern: &str, s: &str) -> bool {
    static CACHE: LazyLock<Mutex<HashMap<String, Option<regex::Regex>>>> =
        LazyLock::new(Mutex::default);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).ok());
    re.as_ref().is_none_or(|re| re.is_match(s))
}

/// RFC 1034 hostname as PGV checks it: at most 253 characters, labels of 1 to 63 letters,
/// digits and hyphens, not starting or ending with a hyphen; one trailing dot allowed.
pub(super) fn valid_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// RFC 7230 token, optionally with a leading `:` for HTTP/2 pseudo-headers (PGV's rule).
fn valid_header_name(s: &str) -> bool {
    let s = s.strip_prefix(':').unwrap_or(s);
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
