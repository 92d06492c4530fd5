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

use prost::{Message, Name};
use prost_reflect::{DynamicMessage, ExtensionDescriptor, FieldDescriptor, ReflectMessage, Value};

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

impl Extensions {
    /// Looked up per validation (four hash lookups), not kept in a static: a static would pin
    /// the descriptor pool in memory forever (see `descriptors::release_if_unused_for`).
    fn of(pool: &prost_reflect::DescriptorPool) -> Self {
        Extensions {
            field_rules: pool.get_extension_by_name("validate.rules"),
            oneof_required: pool.get_extension_by_name("validate.required"),
            disabled: pool.get_extension_by_name("validate.disabled"),
            ignored: pool.get_extension_by_name("validate.ignored"),
        }
    }
}

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
        ext: Extensions::of(msg.descriptor().parent_pool()),
    }
    .message(msg)
}

struct Checker {
    path: Vec<String>,
    depth: usize,
    ext: Extensions,
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
        if bool_option(&options, &self.ext.disabled) || bool_option(&options, &self.ext.ignored) {
            return Ok(());
        }
        for oneof in desc.oneofs().filter(|o| !o.is_synthetic()) {
            if bool_option(&oneof.options(), &self.ext.oneof_required)
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
        let rules = self.ext.field_rules.as_ref().and_then(|ext| {
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
}

mod string;
mod values;

use values::{
    Num, as_num, check_count, duration_nanos, fmt_nanos, get_bool, is_empty, is_wrapper, map_key,
    op,
};

#[cfg(test)]
mod tests;
