//! Envoy-format JSON and YAML to and from protobuf.
//!
//! Envoy reads its YAML/JSON through the proto3 JSON mapping: field names in snake_case or
//! lowerCamelCase, `"@type"` naming the message inside every `google.protobuf.Any`
//! (`typed_config`...), durations as `"1s"`, enums by name, wrapper types as plain values.
//! prost-reflect implements exactly that mapping over the API's descriptors
//! ([`crate::descriptors`]), so every message of the Envoy API works without per-type code.
//! The decoded `DynamicMessage` is encoded to bytes and decoded again into the prost struct.
//!
//! Errors carry the path to the offending field (`load_assignment.endpoints[0]...`), tracked by
//! `serde_path_to_error` while prost-reflect walks the value.

use prost::{Message, Name};
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

use crate::{Any, descriptors};

/// A value that is not valid Envoy-format JSON/YAML for the message it should hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct FormatError {
    /// Path from the root of the value to the field at fault (empty when the root is at fault).
    pub path: String,
    /// Why the value was refused.
    pub reason: String,
}

impl FormatError {
    fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        FormatError {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The same error with `prefix` put in front of its path.
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = match (prefix.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => prefix.to_string(),
            (false, false) if self.path.starts_with('[') => format!("{prefix}{}", self.path),
            (false, false) => format!("{prefix}.{}", self.path),
        };
        self
    }
}

fn descriptor(full_name: &str) -> Result<MessageDescriptor, FormatError> {
    descriptors::message(full_name)
        .ok_or_else(|| FormatError::at("", format!("unknown message type {full_name}")))
}

/// Decodes a JSON value (already parsed from JSON or YAML) into the dynamic message `full_name`.
pub fn dynamic_from_json_value(
    full_name: &str,
    value: &Value,
) -> Result<DynamicMessage, FormatError> {
    let desc = descriptor(full_name)?;
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(desc, de, &options).map_err(|e| {
        let path = track.path().to_string();
        FormatError::at(
            if path == "." { String::new() } else { path },
            e.to_string(),
        )
    })
}

/// Decodes a JSON value into the prost struct `T`.
pub fn from_json_value<T: Message + Name + Default>(value: &Value) -> Result<T, FormatError> {
    let dynamic = dynamic_from_json_value(&T::full_name(), value)?;
    T::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|e| FormatError::at("", format!("re-encoding {}: {e}", T::full_name())))
}

/// Parses YAML (or JSON, which is YAML) into a JSON value.
pub fn yaml_to_json_value(text: &str) -> Result<Value, FormatError> {
    serde_norway::from_str::<Value>(text)
        .map_err(|e| FormatError::at("", format!("invalid YAML: {e}")))
}

/// Decodes Envoy-format YAML or JSON into the prost struct `T`.
pub fn from_yaml_str<T: Message + Name + Default>(text: &str) -> Result<T, FormatError> {
    from_json_value(&yaml_to_json_value(text)?)
}

/// Decodes a value tagged with `"@type"` (a resource in a file-xDS `resources:` list, or an
/// `Any`) into an `Any` holding the encoded message.
pub fn any_from_json_value(value: &Value) -> Result<Any, FormatError> {
    let type_url = value
        .get("@type")
        .and_then(Value::as_str)
        .ok_or_else(|| FormatError::at("", "missing \"@type\""))?;
    let full_name = crate::type_url::message_name(type_url);
    let mut fields = value.clone();
    if let Some(map) = fields.as_object_mut() {
        map.remove("@type");
    }
    let dynamic = dynamic_from_json_value(full_name, &fields)?;
    Ok(Any {
        type_url: format!("{}{full_name}", crate::type_url::PREFIX),
        value: dynamic.encode_to_vec(),
    })
}

/// Encodes an `Any` as Envoy-format JSON (with `"@type"`), as Envoy's `/config_dump` shows it.
pub fn any_to_json_value(any: &Any) -> Result<Value, FormatError> {
    let full_name = crate::type_url::message_name(&any.type_url);
    let dynamic = DynamicMessage::decode(descriptor(full_name)?, any.value.as_slice())
        .map_err(|e| FormatError::at("", format!("decoding {full_name}: {e}")))?;
    let mut value = dynamic_to_json_value(&dynamic)?;
    if let Value::Object(map) = &mut value {
        map.insert("@type".to_string(), Value::String(any.type_url.clone()));
    }
    Ok(value)
}

/// Encodes a prost struct as Envoy-format JSON.
pub fn to_json_value<T: Message + Name>(message: &T) -> Result<Value, FormatError> {
    let dynamic = DynamicMessage::decode(
        descriptor(&T::full_name())?,
        message.encode_to_vec().as_slice(),
    )
    .map_err(|e| FormatError::at("", format!("decoding {}: {e}", T::full_name())))?;
    dynamic_to_json_value(&dynamic)
}

fn dynamic_to_json_value(dynamic: &DynamicMessage) -> Result<Value, FormatError> {
    // Envoy's config_dump prints snake_case field names and skips defaults.
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| FormatError::at("", format!("encoding JSON: {e}")))
}

#[cfg(test)]
mod tests;
