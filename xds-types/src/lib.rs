//! Envoy v3 API types shared by the controlplane and the dataplane.
//!
//! * [`pb`]: the prost structs and tonic services of the whole Envoy v3 API (from `envoy-types`).
//! * [`type_url`]: the type URLs of the resources xDS carries.
//! * [`Resource`]: name, type URL and `Any` packing for the five xDS resource kinds.
//! * [`format`]: Envoy-format JSON/YAML (proto3 JSON mapping, `"@type"` on every `Any`)
//!   to and from protobuf, driven by the API's descriptors so every Envoy type works.
//! * [`validate`]: the protoc-gen-validate rules Envoy enforces on every resource, read from
//!   the same descriptors.

pub mod descriptors;
pub mod format;
pub mod heap;
pub mod resource;
pub mod type_url;
pub mod validate;

pub use envoy_types::pb;
pub use format::{FormatError, from_json_value, from_yaml_str, to_json_value};
pub use resource::{Resource, ResourceError};

/// `google.protobuf.Any` as envoy-types defines it.
pub type Any = pb::google::protobuf::Any;
