//! Our own small, validated types, and the only place that reads Envoy protos.
//!
//! Each resource kind has its file (`listener.rs`, `route.rs`, `cluster.rs`, `endpoint.rs`,
//! `secret.rs`; `tls.rs` for the TLS transport sockets of listeners and clusters)
//! with a `TryFrom<XdsX>`. Everything after translation (listeners, the HTTP path, upstreams)
//! works on these types: the hot path never unpacks an `Any` or compiles a regex.
//!
//! Accept only what we honour: [`only_fields`] refuses a resource that sets any field outside
//! the list a translator handles, naming it. DESIGN.md asks for whole-proto destructuring with
//! no `..` (a new field is a compile error); we check the same thing at translation time from
//! the descriptors instead, because it also covers every typed config inside an `Any` and costs
//! a fraction of the code. A new Envoy field is therefore refused, never silently ignored.

pub mod access_log;
pub mod cluster;
pub mod endpoint;
pub mod error;
pub mod format;
pub mod hash_policy;
pub mod health_check;
pub mod listener;
pub mod outlier;
pub mod route;
pub mod secret;
pub mod tls;
pub mod xds_tls;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prost::{Message, Name};
use prost_reflect::{DynamicMessage, ReflectMessage};
use xds_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use xds_types::pb::google::protobuf::Duration as XdsDuration;

pub use cluster::Cluster;
pub use endpoint::LoadAssignment;
pub use error::{ConfigError, FieldError, FieldResult};
pub use listener::Listener;
pub use route::RouteTable;
pub use secret::Secret;

/// A map looked up by resource name on the request path (FxHash: names come from config).
pub type NameMap<V> = HashMap<String, V, rustc_hash::FxBuildHasher>;

/// The whole applied configuration: built to the side, then published with one swap.
#[derive(Debug, Default, Clone)]
pub struct Config {
    pub listeners: BTreeMap<String, Arc<Listener>>,
    pub routes: NameMap<Arc<RouteTable>>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    pub endpoints: HashMap<String, Arc<LoadAssignment>>,
    /// SDS secrets (and the bootstrap's static ones), by name.
    pub secrets: HashMap<String, Arc<Secret>>,
}

/// Refuses `msg` if it sets a field not in `honoured` (proto field names).
pub fn only_fields<T: Message + Name>(msg: &T, honoured: &[&str]) -> FieldResult<()> {
    let Some(desc) = xds_types::descriptors::message(&T::full_name()) else {
        return Ok(());
    };
    let Ok(dynamic) = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()) else {
        return Ok(());
    };
    let mut refused: Vec<String> = dynamic
        .descriptor()
        .fields()
        .filter(|f| dynamic.has_field(f) && !honoured.contains(&f.name()))
        .map(|f| f.name().to_string())
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort();
    let path = refused[0].clone();
    Err(FieldError::new(
        path,
        format!(
            "not supported by this dataplane (set: {})",
            refused.join(", ")
        ),
    ))
}

/// Runs the API's validation rules (protoc-gen-validate), as Envoy does on every resource.
pub fn validate<T: Message + Name>(msg: &T) -> FieldResult<()> {
    xds_types::validate::validate_message(msg).map_err(|e| FieldError::new(e.path, e.reason))
}

pub fn duration(d: &XdsDuration) -> Duration {
    Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
}

/// A TCP socket address (`socket_address` with `port_value`).
pub fn socket_addr(a: Option<&Address>) -> FieldResult<SocketAddr> {
    let Some(Address {
        address: Some(address::Address::SocketAddress(sa)),
    }) = a
    else {
        return Err(FieldError::new("", "a socket_address is required"));
    };
    let SocketAddress {
        protocol,
        address,
        port_specifier,
        resolver_name,
        ipv4_compat,
        network_namespace_filepath: _,
    } = sa;
    if *protocol != 0 {
        return Err(FieldError::new(
            "socket_address.protocol",
            "only TCP is supported",
        ));
    }
    if !resolver_name.is_empty() || *ipv4_compat {
        return Err(FieldError::new(
            "socket_address",
            "resolver_name and ipv4_compat are not supported",
        ));
    }
    let ip: IpAddr = address.parse().map_err(|_| {
        FieldError::new(
            "socket_address.address",
            format!("\"{address}\" is not an IP address"),
        )
    })?;
    let port = match port_specifier {
        Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(*p).map_err(|_| {
            FieldError::new("socket_address.port_value", format!("{p} is out of range"))
        })?,
        _ => {
            return Err(FieldError::new(
                "socket_address.port_value",
                "a port_value is required",
            ));
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// A TCP socket address whose `address` may be a DNS name (DNS clusters): (name, port).
pub fn named_addr(a: Option<&Address>) -> FieldResult<(String, u16)> {
    let Some(Address {
        address: Some(address::Address::SocketAddress(sa)),
    }) = a
    else {
        return Err(FieldError::new("", "a socket_address is required"));
    };
    if sa.protocol != 0 {
        return Err(FieldError::new(
            "socket_address.protocol",
            "only TCP is supported",
        ));
    }
    if !sa.resolver_name.is_empty() {
        return Err(FieldError::new(
            "socket_address.resolver_name",
            "custom resolvers are not supported",
        ));
    }
    let port = match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(p)) => u16::try_from(p).map_err(|_| {
            FieldError::new("socket_address.port_value", format!("{p} is out of range"))
        })?,
        _ => {
            return Err(FieldError::new(
                "socket_address.port_value",
                "a port_value is required",
            ));
        }
    };
    if sa.address.is_empty() {
        return Err(FieldError::new("socket_address.address", "required"));
    }
    Ok((sa.address.clone(), port))
}

/// Envoy's default `initial_fetch_timeout` (config_source.proto).
pub const DEFAULT_INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// A config source this dataplane can follow: `ads: {}` (the one ADS stream). Returns how
/// long a resource from it is waited for before warming gives up (`initial_fetch_timeout`,
/// 15 s by default; 0 means wait forever: `None`).
pub fn ads_config_source(
    s: &xds_types::pb::envoy::config::core::v3::ConfigSource,
) -> FieldResult<Option<Duration>> {
    use xds_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
    only_fields(
        s,
        &[
            "ads",
            "resource_api_version",
            "initial_fetch_timeout",
            "authorities",
        ],
    )?;
    if !matches!(
        s.config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_))
    ) {
        return Err(FieldError::new(
            "config_source_specifier",
            "only `ads: {}` is supported (every resource comes over the one ADS stream)",
        ));
    }
    Ok(initial_fetch_timeout(s))
}

/// A config source's `initial_fetch_timeout`: 15 s by default, `None` (wait forever) for 0.
pub fn initial_fetch_timeout(
    s: &xds_types::pb::envoy::config::core::v3::ConfigSource,
) -> Option<Duration> {
    match &s.initial_fetch_timeout {
        None => Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
        Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
    }
}

/// Decodes a typed config of the given message out of an `Any`.
pub fn unpack<T: Message + Name + Default>(any: &xds_types::Any) -> FieldResult<T> {
    if xds_types::type_url::message_name(&any.type_url) != T::full_name() {
        return Err(FieldError::new(
            "",
            format!("expected {}, got {}", T::full_name(), any.type_url),
        ));
    }
    T::decode(any.value.as_slice())
        .map_err(|e| FieldError::new("", format!("undecodable {}: {e}", T::full_name())))
}
