//! protoc-gen-validate rules, read from the descriptors and checked on a message.
//!
//! Envoy checks every resource it receives against the `(validate.rules)` annotations of the
//! API (`MessageUtil::validate`); a resource that fails is rejected. Checking the same rules here
//! lets the controlplane refuse what Envoy would NACK, and the dataplane NACK what Envoy would.
//! The rules come from the descriptors ([`crate::descriptors`]), so every message of the API is
//! covered, including the typed configs inside `Any` fields, which are decoded and checked too.
//!
//! Covered: message `required`/`skip`, oneof `(validate.required)`, message
//! `(validate.disabled)`/`(validate.ignored)`, numeric `const/lt/lte/gt/gte/in/not_in` (also on
//! wrapper types), string `const/len/min_len/max_len/min_bytes/max_bytes/prefix/suffix/contains/
//! not_contains/in/not_in` and the HTTP header name/value well-known rules, bytes lengths, enum
//! `defined_only/in/not_in`, repeated `min_items/max_items/items`, map `min_pairs/max_pairs`,
//! duration/timestamp and `any` `required` and bounds, `ignore_empty`, message `skip`, map
//! `keys`/`values`, the hostname/ip/ipv4/ipv6/address string formats. string `pattern`
//! (RE2 via the regex crate). Not covered (no Envoy resource field relies on them):
//! email/uri/uuid formats, timestamp `lt_now/gt_now/within`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use prost::{Message, Name};
use prost_reflect::{
    DynamicMessage, ExtensionDescriptor, FieldDescriptor, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};

use crate::{Any, descriptors};

/// A message that breaks one of the API's validation rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ValidationError {
    /// Path from the message's root to the field at fault.
    pub path: String,
    pub reason: String,
}

struct Extensions {
    field_rules: Option<ExtensionDescriptor>,
    oneof_required: Option<ExtensionDescriptor>,
    disabled: Option<ExtensionDescriptor>,
    ignored: Option<ExtensionDescriptor>,
}

static EXT: LazyLock<Extensions> = LazyLock::new(|| {
    let pool = descriptors::pool();
    Extensions {
        field_rules: pool.get_extension_by_name("validate.rules"),
        oneof_required: pool.get_extension_by_name("validate.required"),
        disabled: pool.get_extension_by_name("validate.disabled"),
        ignored: pool.get_extension_by_name("validate.ignored"),
    }
});

/// Deep `Any` nesting beyond this is refused rather than followed (a peer controls it).
const MAX_DEPTH: usize = 64;

/// Checks a prost message of the Envoy API.
pub fn validate_message<T: Message + Name>(message: &T) -> Result<(), ValidationError> {
    validate_bytes(&T::full_name(), &message.encode_to_vec())
}

/// Checks the message held in an `Any` (its type URL names the message).
pub fn validate_any(any: &Any) -> Result<(), ValidationError> {
    validate_bytes(crate::type_url::message_name(&any.type_url), &any.value)
}

fn validate_bytes(full_name: &str, bytes: &[u8]) -> Result<(), ValidationError> {
    let desc = descriptors::message(full_name).ok_or_else(|| ValidationError {
        path: String::new(),
        reason: format!("unknown message type {full_name}"),
    })?;
    let msg = DynamicMessage::decode(desc, bytes).map_err(|e| ValidationError {
        path: String::new(),
        reason: format!("undecodable {full_name}: {e}"),
    })?;
    validate(&msg)
}

/// Checks a dynamic message against the validation rules of its descriptor, recursively.
pub fn validate(msg: &DynamicMessage) -> Result<(), ValidationError> {
    Checker {
        path: Vec::new(),
        depth: 0,
    }
    .message(msg)
}

struct Checker {
    path: Vec<String>,
    depth: usize,
}

fn bool_option(options: &DynamicMessage, ext: &Option<ExtensionDescriptor>) -> bool {
    ext.as_ref().is_some_and(|e| {
        options.has_extension(e) && options.get_extension(e).as_bool() == Some(true)
    })
}

impl Checker {
    fn fail(&self, reason: impl Into<String>) -> ValidationError {
        ValidationError {
            path: self.path.join("").trim_start_matches('.').to_string(),
            reason: reason.into(),
        }
    }

    fn message(&mut self, msg: &DynamicMessage) -> Result<(), ValidationError> {
        let desc = msg.descriptor();
        if desc.full_name() == "google.protobuf.Any" {
            return self.any(msg);
        }
        let options = desc.options();
        if bool_option(&options, &EXT.disabled) || bool_option(&options, &EXT.ignored) {
            return Ok(());
        }
        for oneof in desc.oneofs().filter(|o| !o.is_synthetic()) {
            if bool_option(&oneof.options(), &EXT.oneof_required)
                && !oneof.fields().any(|f| msg.has_field(&f))
            {
                self.path.push(format!(".{}", oneof.name()));
                let err = self.fail(format!(
                    "one of {} is required",
                    oneof
                        .fields()
                        .map(|f| f.name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                return Err(err);
            }
        }
        for field in desc.fields() {
            self.path.push(format!(".{}", field.name()));
            let result = self.field(msg, &field);
            self.path.pop();
            result?;
        }
        Ok(())
    }

    fn any(&mut self, msg: &DynamicMessage) -> Result<(), ValidationError> {
        let type_url = msg
            .get_field_by_name("type_url")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let bytes = msg
            .get_field_by_name("value")
            .and_then(|v| v.as_bytes().cloned())
            .unwrap_or_default();
        if type_url.is_empty() {
            return Ok(());
        }
        let name = crate::type_url::message_name(&type_url);
        let desc = descriptors::message(name)
            .ok_or_else(|| self.fail(format!("unknown type {type_url}")))?;
        let inner = DynamicMessage::decode(desc, bytes.as_ref())
            .map_err(|e| self.fail(format!("undecodable {type_url}: {e}")))?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.fail("Any nested too deeply"));
        }
        let result = self.message(&inner);
        self.depth -= 1;
        result
    }

    fn field(
        &mut self,
        msg: &DynamicMessage,
        field: &FieldDescriptor,
    ) -> Result<(), ValidationError> {
        let present = msg.has_field(field);
        let rules = EXT.field_rules.as_ref().and_then(|ext| {
            let options = field.options();
            options
                .has_extension(ext)
                .then(|| options.get_extension(ext).as_message().cloned())
                .flatten()
        });
        let value = msg.get_field(field);
        // `message: {skip: true}`: the field's own rules only, nothing inside it.
        let skip = rules.as_ref().is_some_and(|r| {
            r.get_field_by_name("message")
                .and_then(|m| m.as_message().map(|m| get_bool(m, "skip")))
                .unwrap_or(false)
        });
        if let Some(rules) = &rules {
            // In a oneof, rules apply only to the member that is set (PGV semantics).
            if present || field.containing_oneof().is_none() {
                self.rules(field, rules, &value, present)?;
            }
        }
        if !present || skip {
            return Ok(());
        }
        match value.as_ref() {
            Value::Message(m) => self.message(m),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        self.path.push(format!("[{i}]"));
                        let r = self.message(m);
                        self.path.pop();
                        r?;
                    }
                }
                Ok(())
            }
            Value::Map(map) => {
                for (key, item) in map {
                    if let Value::Message(m) = item {
                        self.path.push(format!("[{}]", map_key(key)));
                        let r = self.message(m);
                        self.path.pop();
                        r?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Applies a `FieldRules` to a field's value.
    fn rules(
        &mut self,
        field: &FieldDescriptor,
        rules: &DynamicMessage,
        value: &Value,
        present: bool,
    ) -> Result<(), ValidationError> {
        let Some((kind, sub)) = rules
            .fields()
            .find_map(|(f, v)| v.as_message().map(|m| (f.name().to_string(), m.clone())))
        else {
            return Ok(());
        };
        // `ignore_empty`: the rules hold only for a value that is not the field's zero value.
        if get_bool(&sub, "ignore_empty") && is_empty(value, present) {
            return Ok(());
        }
        match kind.as_str() {
            "message" => {
                if get_bool(&sub, "required") && !present {
                    return Err(self.fail("value is required"));
                }
                Ok(())
            }
            "repeated" => self.repeated(field, &sub, value),
            "map" => self.map(field, &sub, value),
            "duration" | "timestamp" | "any" => self.wkt(&kind, &sub, value, present),
            _ => {
                // Scalar rules; on a wrapper type (UInt32Value...) they apply to its value when set.
                let scalar = match value {
                    Value::Message(m) if field.kind().as_message().is_some_and(is_wrapper) => {
                        if !present {
                            return Ok(());
                        }
                        m.get_field_by_name("value")
                            .map(Cow::into_owned)
                            .unwrap_or(Value::Bool(false))
                    }
                    v => v.clone(),
                };
                self.scalar(field, &kind, &sub, &scalar)
            }
        }
    }

    fn repeated(
        &mut self,
        field: &FieldDescriptor,
        sub: &DynamicMessage,
        value: &Value,
    ) -> Result<(), ValidationError> {
        let items = value.as_list().unwrap_or(&[]);
        check_count(items.len() as u64, sub, "min_items", "max_items", "items")
            .map_err(|e| self.fail(e))?;
        if get_bool(sub, "unique") {
            for (i, a) in items.iter().enumerate() {
                if items[..i].contains(a) {
                    return Err(self.fail(format!(
                        "items must be unique: [{i}] repeats an earlier item"
                    )));
                }
            }
        }
        if let Some(item_rules) = sub
            .get_field_by_name("items")
            .and_then(|v| v.as_message().cloned())
            && sub.has_field_by_name("items")
        {
            for (i, item) in items.iter().enumerate() {
                self.path.push(format!("[{i}]"));
                let r = self.rules(field, &item_rules, item, true);
                self.path.pop();
                r?;
            }
        }
        Ok(())
    }

    fn map(
        &mut self,
        field: &FieldDescriptor,
        sub: &DynamicMessage,
        value: &Value,
    ) -> Result<(), ValidationError> {
        let Some(map) = value.as_map() else {
            return Ok(());
        };
        check_count(map.len() as u64, sub, "min_pairs", "max_pairs", "pairs")
            .map_err(|e| self.fail(e))?;
        let part = |name: &str| {
            sub.has_field_by_name(name)
                .then(|| {
                    sub.get_field_by_name(name)
                        .and_then(|v| v.as_message().cloned())
                })
                .flatten()
        };
        let (keys, values) = (part("keys"), part("values"));
        for (key, item) in map {
            self.path.push(format!("[{}]", map_key(key)));
            let mut r = Ok(());
            if let Some(rules) = &keys {
                r = self.rules(field, rules, &Value::from(key.clone()), true);
            }
            if let (Ok(()), Some(rules)) = (&r, &values) {
                r = self.rules(field, rules, item, true);
            }
            self.path.pop();
            r?;
        }
        Ok(())
    }

    fn wkt(
        &self,
        kind: &str,
        sub: &DynamicMessage,
        value: &Value,
        present: bool,
    ) -> Result<(), ValidationError> {
        if get_bool(sub, "required") && !present {
            return Err(self.fail("value is required"));
        }
        if !present || kind == "any" {
            return Ok(());
        }
        let Some(m) = value.as_message() else {
            return Ok(());
        };
        let nanos = duration_nanos(m);
        for bound in ["lt", "lte", "gt", "gte"] {
            if let Some(limit) = sub
                .get_field_by_name(bound)
                .filter(|_| sub.has_field_by_name(bound))
            {
                let limit = limit.as_message().map(duration_nanos).unwrap_or(0);
                let pass = match bound {
                    "lt" => nanos < limit,
                    "lte" => nanos <= limit,
                    "gt" => nanos > limit,
                    _ => nanos >= limit,
                };
                if !pass {
                    return Err(self.fail(format!(
                        "{kind} must be {} {}, got {}",
                        op(bound),
                        fmt_nanos(limit),
                        fmt_nanos(nanos)
                    )));
                }
            }
        }
        Ok(())
    }

    fn scalar(
        &self,
        field: &FieldDescriptor,
        kind: &str,
        sub: &DynamicMessage,
        value: &Value,
    ) -> Result<(), ValidationError> {
        match (kind, value) {
            ("string", Value::String(s)) => self.string(sub, s),
            ("bytes", Value::Bytes(b)) => {
                check_count(b.len() as u64, sub, "min_len", "max_len", "bytes")
                    .map_err(|e| self.fail(e))
            }
            ("enum", Value::EnumNumber(n)) => {
                if get_bool(sub, "defined_only")
                    && field
                        .kind()
                        .as_enum()
                        .is_some_and(|e| e.get_value(*n).is_none())
                {
                    return Err(self.fail(format!(
                        "value must be one of the defined enum values, got {n}"
                    )));
                }
                self.numeric(sub, Num::Int(i128::from(*n)))
            }
            ("bool", Value::Bool(b)) => match sub.get_field_by_name("const") {
                Some(c) if sub.has_field_by_name("const") && c.as_bool() != Some(*b) => {
                    Err(self.fail(format!("value must equal {}", c.as_bool().unwrap_or(false))))
                }
                _ => Ok(()),
            },
            (_, v) => match as_num(v) {
                Some(x) => self.numeric(sub, x),
                None => Ok(()),
            },
        }
    }

    /// Integers compare exactly (a uint64 near its maximum does not fit an f64).
    fn numeric(&self, sub: &DynamicMessage, x: Num) -> Result<(), ValidationError> {
        for bound in ["const", "lt", "lte", "gt", "gte"] {
            if !sub.has_field_by_name(bound) {
                continue;
            }
            let Some(limit) = sub.get_field_by_name(bound).and_then(|v| as_num(&v)) else {
                continue;
            };
            let pass = match bound {
                "const" => x == limit,
                "lt" => x < limit,
                "lte" => x <= limit,
                "gt" => x > limit,
                _ => x >= limit,
            };
            if !pass {
                return Err(self.fail(format!("value must be {} {limit}, got {x}", op(bound))));
            }
        }
        let list = |name: &str| -> Vec<Num> {
            sub.get_field_by_name(name)
                .and_then(|v| v.as_list().map(|l| l.iter().filter_map(as_num).collect()))
                .unwrap_or_default()
        };
        let allowed = list("in");
        if !allowed.is_empty() && !allowed.contains(&x) {
            let shown: Vec<String> = allowed.iter().map(Num::to_string).collect();
            return Err(self.fail(format!("value must be in [{}], got {x}", shown.join(", "))));
        }
        if list("not_in").contains(&x) {
            return Err(self.fail(format!("value must not be {x}")));
        }
        Ok(())
    }

    fn string(&self, sub: &DynamicMessage, s: &str) -> Result<(), ValidationError> {
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
fn valid_hostname(s: &str) -> bool {
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

/// Whether a value is its field's zero value (for `ignore_empty`).
fn is_empty(value: &Value, present: bool) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Message(_) => !present,
        v => matches!(as_num(v), Some(Num::Int(0))) || as_num(v) == Some(Num::Float(0.0)),
    }
}

/// RFC 7230 token, optionally with a leading `:` for HTTP/2 pseudo-headers (PGV's rule).
fn valid_header_name(s: &str) -> bool {
    let s = s.strip_prefix(':').unwrap_or(s);
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_wrapper(m: &MessageDescriptor) -> bool {
    matches!(
        m.full_name(),
        "google.protobuf.UInt32Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

fn get_bool(m: &DynamicMessage, name: &str) -> bool {
    m.get_field_by_name(name)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

fn check_count(
    n: u64,
    sub: &DynamicMessage,
    min: &str,
    max: &str,
    what: &str,
) -> Result<(), String> {
    let get = |name: &str| {
        sub.has_field_by_name(name)
            .then(|| sub.get_field_by_name(name).and_then(|v| v.as_u64()))
            .flatten()
    };
    if let Some(lo) = get(min).filter(|lo| n < *lo) {
        return Err(format!("must have at least {lo} {what}, has {n}"));
    }
    if let Some(hi) = get(max).filter(|hi| n > *hi) {
        return Err(format!("must have at most {hi} {what}, has {n}"));
    }
    Ok(())
}

/// A numeric field value or rule limit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i128),
    Float(f64),
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.partial_cmp(b),
            (a, b) => a.float().partial_cmp(&b.float()),
        }
    }
}

impl Num {
    fn float(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

fn as_num(v: &Value) -> Option<Num> {
    Some(match v {
        Value::I32(x) => Num::Int(i128::from(*x)),
        Value::I64(x) => Num::Int(i128::from(*x)),
        Value::U32(x) => Num::Int(i128::from(*x)),
        Value::U64(x) => Num::Int(i128::from(*x)),
        Value::EnumNumber(x) => Num::Int(i128::from(*x)),
        Value::F32(x) => Num::Float(f64::from(*x)),
        Value::F64(x) => Num::Float(*x),
        _ => return None,
    })
}

fn op(bound: &str) -> &'static str {
    match bound {
        "const" => "=",
        "lt" => "<",
        "lte" => "<=",
        "gt" => ">",
        _ => ">=",
    }
}

fn duration_nanos(m: &DynamicMessage) -> i128 {
    let seconds = m
        .get_field_by_name("seconds")
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let nanos = m
        .get_field_by_name("nanos")
        .and_then(|v| v.as_i32())
        .unwrap_or(0);
    i128::from(seconds) * 1_000_000_000 + i128::from(nanos)
}

fn fmt_nanos(n: i128) -> String {
    format!("{}s", n as f64 / 1e9)
}

fn map_key(k: &MapKey) -> String {
    match k {
        MapKey::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests;
