//! `access_log` of the HTTP connection manager and of tcp_proxy -> [`AccessLogs`]: the
//! loggers Envoy users use (`envoy.access_loggers.file`, `.stdout`, `.stderr`), their formats
//! (Envoy's default, text, JSON) compiled into operators, and their filters. A logger, an
//! operator or a filter we do not have is refused with its path, so the resource is NACKed.

use std::sync::Arc;

use xds_types::pb::envoy::config::accesslog::v3::{
    AccessLog as XdsAccessLog, AccessLogFilter, ComparisonFilter, access_log,
    access_log_filter::FilterSpecifier, comparison_filter,
};
use xds_types::pb::envoy::config::core::v3::{
    SubstitutionFormatString, data_source, substitution_format_string,
};
use xds_types::pb::envoy::extensions::access_loggers::file::v3::{FileAccessLog, file_access_log};
use xds_types::pb::envoy::extensions::access_loggers::stream::v3::{
    StderrAccessLog, StdoutAccessLog, stderr_access_log, stdout_access_log,
};
use xds_types::pb::google::protobuf::{Struct, Value, value::Kind as ValueKind};

use super::{FieldError, FieldResult, only_fields, unpack};
use crate::observe::access_log::filter::{Cmp, Filter};
use crate::observe::access_log::format::{self, Body, Format, JsonValue};
use crate::observe::access_log::writer::{Sink, Target};
use crate::observe::access_log::{AccessLog, AccessLogs, Flags};

const FILE: &str = "envoy.extensions.access_loggers.file.v3.FileAccessLog";
const STDOUT: &str = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR: &str = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

/// The loggers of a listener's filter (`None` when there are none, the common case: nothing
/// is recorded on the request path then).
pub fn access_logs(list: &[XdsAccessLog]) -> FieldResult<Option<Arc<AccessLogs>>> {
    if list.is_empty() {
        return Ok(None);
    }
    let logs = list
        .iter()
        .enumerate()
        .map(|(i, l)| logger(l).map_err(|e| e.within(&format!("access_log[{i}]"))))
        .collect::<FieldResult<Vec<_>>>()?;
    Ok(Some(Arc::new(AccessLogs::new(logs))))
}

fn logger(l: &XdsAccessLog) -> FieldResult<AccessLog> {
    only_fields(l, &["name", "filter", "typed_config"])?;
    let filter = l
        .filter
        .as_ref()
        .map(filter)
        .transpose()
        .map_err(|e| e.within("filter"))?;
    let Some(access_log::ConfigType::TypedConfig(any)) = &l.config_type else {
        return Err(FieldError::new("typed_config", "required"));
    };
    let at = "typed_config";
    let (target, format) = match xds_types::type_url::message_name(&any.type_url) {
        FILE => file(&unpack(any).map_err(|e| e.within(at))?).map_err(|e| e.within(at))?,
        STDOUT => (
            Target::Stdout,
            stream(any, |s: &StdoutAccessLog| match &s.access_log_format {
                Some(stdout_access_log::AccessLogFormat::LogFormat(f)) => Some(f),
                None => None,
            })
            .map_err(|e| e.within(at))?,
        ),
        STDERR => (
            Target::Stderr,
            stream(any, |s: &StderrAccessLog| match &s.access_log_format {
                Some(stderr_access_log::AccessLogFormat::LogFormat(f)) => Some(f),
                None => None,
            })
            .map_err(|e| e.within(at))?,
        ),
        other => {
            return Err(FieldError::new(
                at,
                format!("access logger \"{}\" ({other}) is not supported", l.name),
            ));
        }
    };
    let sink = Sink::open(target).map_err(|e| FieldError::new(at, e))?;
    Ok(AccessLog {
        filter,
        format,
        sink,
    })
}

/// The format of a stdout / stderr logger (`log_format`, taken out by `format`).
fn stream<T: prost::Message + prost::Name + Default>(
    any: &xds_types::Any,
    format: impl Fn(&T) -> Option<&SubstitutionFormatString>,
) -> FieldResult<Format> {
    log_format(format(&unpack(any)?))
}

// `format`, `json_format` and `typed_json_format` are deprecated but still honoured by Envoy.
#[allow(deprecated)]
fn file(f: &FileAccessLog) -> FieldResult<(Target, Format)> {
    only_fields(
        f,
        &[
            "path",
            "format",
            "json_format",
            "typed_json_format",
            "log_format",
        ],
    )?;
    if f.path.is_empty() {
        return Err(FieldError::new("path", "required"));
    }
    use file_access_log::AccessLogFormat as F;
    let format = match &f.access_log_format {
        None => Format::default_text(),
        Some(F::Format(s)) => text(s, false).map_err(|e| e.within("format"))?,
        Some(F::JsonFormat(s) | F::TypedJsonFormat(s)) => Format {
            body: Body::Json(json(s).map_err(|e| e.within("json_format"))?),
            omit_empty: false,
        },
        Some(F::LogFormat(s)) => log_format(Some(s))?,
    };
    Ok((Target::File(f.path.clone()), format))
}

/// A `SubstitutionFormatString` (`log_format`); Envoy's default format when absent.
#[allow(deprecated)]
fn log_format(f: Option<&SubstitutionFormatString>) -> FieldResult<Format> {
    let Some(f) = f else {
        return Ok(Format::default_text());
    };
    let wrap = |e: FieldError| e.within("log_format");
    only_fields(
        f,
        &[
            "text_format",
            "json_format",
            "text_format_source",
            "omit_empty_values",
            // Only for local replies: an access log has no content type.
            "content_type",
        ],
    )
    .map_err(wrap)?;
    use substitution_format_string::Format as F;
    let omit = f.omit_empty_values;
    match &f.format {
        Some(F::TextFormat(s)) => text(s, omit).map_err(|e| wrap(e.within("text_format"))),
        Some(F::JsonFormat(s)) => Ok(Format {
            body: Body::Json(json(s).map_err(|e| wrap(e.within("json_format")))?),
            omit_empty: omit,
        }),
        Some(F::TextFormatSource(ds)) => {
            let at = "text_format_source";
            only_fields(ds, &["inline_string", "inline_bytes"]).map_err(|e| wrap(e.within(at)))?;
            let s = match &ds.specifier {
                Some(data_source::Specifier::InlineString(s)) => s.clone(),
                Some(data_source::Specifier::InlineBytes(b)) => String::from_utf8(b.clone())
                    .map_err(|_| wrap(FieldError::new(at, "inline_bytes is not UTF-8")))?,
                _ => {
                    return Err(wrap(FieldError::new(
                        at,
                        "only inline_string and inline_bytes are supported",
                    )));
                }
            };
            text(&s, omit).map_err(|e| wrap(e.within(&format!("{at}.inline_string"))))
        }
        None => Err(wrap(FieldError::new("format", "required"))),
    }
}

fn text(s: &str, omit_empty: bool) -> FieldResult<Format> {
    Ok(Format {
        body: Body::Text(format::parse(s).map_err(|e| FieldError::new("", e))?),
        omit_empty,
    })
}

/// A JSON format: keys sorted as Envoy writes them, each value compiled.
fn json(s: &Struct) -> FieldResult<Vec<(String, JsonValue)>> {
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let v = json_value(&s.fields[k]).map_err(|e| e.within(k))?;
            Ok((k.clone(), v))
        })
        .collect()
}

fn json_value(v: &Value) -> FieldResult<JsonValue> {
    Ok(match &v.kind {
        Some(ValueKind::StringValue(s)) => {
            JsonValue::Pieces(format::parse(s).map_err(|e| FieldError::new("", e))?)
        }
        Some(ValueKind::NumberValue(n)) => {
            JsonValue::Raw(serde_json::Number::from_f64(*n).map_or("null".into(), |n| {
                // Envoy writes 5, not 5.0, for a whole number.
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
                    _ => n.to_string(),
                }
            }))
        }
        Some(ValueKind::BoolValue(b)) => JsonValue::Raw(b.to_string()),
        Some(ValueKind::NullValue(_)) | None => JsonValue::Raw("null".into()),
        Some(ValueKind::StructValue(s)) => JsonValue::Object(json(s)?),
        Some(ValueKind::ListValue(_)) => {
            return Err(FieldError::new(
                "",
                "lists are not supported in json_format",
            ));
        }
    })
}

fn filter(f: &AccessLogFilter) -> FieldResult<Filter> {
    let Some(spec) = &f.filter_specifier else {
        return Err(FieldError::new("filter_specifier", "required"));
    };
    Ok(match spec {
        FilterSpecifier::StatusCodeFilter(s) => {
            let (cmp, v) = comparison(s.comparison.as_ref())
                .map_err(|e| e.within("status_code_filter.comparison"))?;
            Filter::Status(cmp, v)
        }
        FilterSpecifier::DurationFilter(d) => {
            let (cmp, v) = comparison(d.comparison.as_ref())
                .map_err(|e| e.within("duration_filter.comparison"))?;
            Filter::Duration(cmp, v)
        }
        FilterSpecifier::NotHealthCheckFilter(_) => Filter::NotHealthCheck,
        FilterSpecifier::ResponseFlagFilter(r) => {
            let mut flags = Flags::default();
            for (i, name) in r.flags.iter().enumerate() {
                let flag = Flags::named(name).ok_or_else(|| {
                    FieldError::new(
                        format!("response_flag_filter.flags[{i}]"),
                        format!("unknown response flag \"{name}\""),
                    )
                })?;
                flags.0 |= flag.0;
            }
            Filter::Flags(flags)
        }
        FilterSpecifier::AndFilter(a) => Filter::And(list(&a.filters, "and_filter")?),
        FilterSpecifier::OrFilter(o) => Filter::Or(list(&o.filters, "or_filter")?),
        FilterSpecifier::HeaderFilter(h) => {
            let m = h
                .header
                .as_ref()
                .ok_or_else(|| FieldError::new("header_filter.header", "required"))?;
            Filter::Header(
                super::route::header_match(m).map_err(|e| e.within("header_filter.header"))?,
            )
        }
        other => {
            let name = format!("{other:?}");
            let name = name.split('(').next().unwrap_or("");
            return Err(FieldError::new(
                "filter_specifier",
                format!("access log filter {name} is not supported"),
            ));
        }
    })
}

fn list(filters: &[AccessLogFilter], field: &str) -> FieldResult<Vec<Filter>> {
    filters
        .iter()
        .enumerate()
        .map(|(i, f)| filter(f).map_err(|e| e.within(&format!("{field}.filters[{i}]"))))
        .collect()
}

/// A comparison with its `default_value` (runtime overrides are not followed).
fn comparison(c: Option<&ComparisonFilter>) -> FieldResult<(Cmp, u64)> {
    let c = c.ok_or_else(|| FieldError::new("", "required"))?;
    let cmp = match comparison_filter::Op::try_from(c.op) {
        Ok(comparison_filter::Op::Eq) => Cmp::Eq,
        Ok(comparison_filter::Op::Ge) => Cmp::Ge,
        Ok(comparison_filter::Op::Le) => Cmp::Le,
        Ok(comparison_filter::Op::Ne) => Cmp::Ne,
        Err(_) => return Err(FieldError::new("op", format!("unknown op {}", c.op))),
    };
    let v = c
        .value
        .as_ref()
        .ok_or_else(|| FieldError::new("value", "required"))?;
    Ok((cmp, u64::from(v.default_value)))
}

#[cfg(test)]
mod tests;
