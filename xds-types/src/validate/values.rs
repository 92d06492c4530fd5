//! Reading rule values and field values: numbers, durations, counts, map keys.

use prost_reflect::{DynamicMessage, MapKey, MessageDescriptor, Value};

/// Whether a value is its field's zero value (for `ignore_empty`).
pub(super) fn is_empty(value: &Value, present: bool) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::List(l) => l.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Message(_) => !present,
        v => matches!(as_num(v), Some(Num::Int(0))) || as_num(v) == Some(Num::Float(0.0)),
    }
}

pub(super) fn is_wrapper(m: &MessageDescriptor) -> bool {
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

pub(super) fn get_bool(m: &DynamicMessage, name: &str) -> bool {
    m.get_field_by_name(name)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

pub(super) fn check_count(
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
pub(super) enum Num {
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

pub(super) fn as_num(v: &Value) -> Option<Num> {
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

pub(super) fn op(bound: &str) -> &'static str {
    match bound {
        "const" => "=",
        "lt" => "<",
        "lte" => "<=",
        "gt" => ">",
        _ => ">=",
    }
}

pub(super) fn duration_nanos(m: &DynamicMessage) -> i128 {
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

pub(super) fn fmt_nanos(n: i128) -> String {
    format!("{}s", n as f64 / 1e9)
}

pub(super) fn map_key(k: &MapKey) -> String {
    match k {
        MapKey::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}
