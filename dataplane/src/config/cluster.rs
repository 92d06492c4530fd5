//! Cluster -> [`Cluster`]: discovery type, connect timeout, load balancing, HTTP/2 upstreams.

use std::time::Duration;

use xds_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use xds_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy, ring_hash_lb_config,
};
use xds_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use xds_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
};

use super::{
    ConfigError, FieldError, FieldResult, LoadAssignment, duration, only_fields, unpack, validate,
};

/// Envoy's default connect timeout (cluster.proto, connect_timeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub discovery: Discovery,
    pub connect_timeout: Duration,
    pub lb: LbKind,
    /// Speak HTTP/2 (prior knowledge) to the endpoints.
    pub http2: bool,
}

#[derive(Debug, Clone)]
pub enum Discovery {
    /// Endpoints given inline.
    Static(LoadAssignment),
    /// Endpoints from EDS, under this service name.
    Eds(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LbKind {
    RoundRobin,
    LeastRequest {
        choice_count: u32,
        /// Envoy's `active_request_bias`: with unequal weights a host's weight is divided by
        /// (active requests + 1)^bias.
        active_request_bias: f64,
    },
    Random,
    RingHash {
        min_ring_size: u64,
        max_ring_size: u64,
        hash: RingHashFunction,
        consistent: ConsistentHashing,
    },
    Maglev {
        table_size: u64,
        consistent: ConsistentHashing,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingHashFunction {
    XxHash,
    MurmurHash2,
}

/// `common_lb_config.consistent_hashing_lb_config`, shared by RING_HASH and MAGLEV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsistentHashing {
    /// Hash hosts by their EDS hostname instead of their address.
    pub use_hostname: bool,
    /// Bounded load: no host takes more than factor/100 times the average active requests
    /// (0: unbounded).
    pub hash_balance_factor: u32,
}

/// Envoy's ring bounds (cluster.proto, RingHashLbConfig) and Maglev table size (a prime).
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
pub const DEFAULT_MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;

impl TryFrom<&XdsCluster> for Cluster {
    type Error = ConfigError;

    fn try_from(c: &XdsCluster) -> Result<Self, ConfigError> {
        translate(c).map_err(|e| e.of("cluster", &c.name))
    }
}

fn translate(c: &XdsCluster) -> FieldResult<Cluster> {
    validate(c)?;
    only_fields(
        c,
        &[
            "name",
            "type",
            "connect_timeout",
            "lb_policy",
            "least_request_lb_config",
            "ring_hash_lb_config",
            "maglev_lb_config",
            "common_lb_config",
            "load_assignment",
            "eds_cluster_config",
            "typed_extension_protocol_options",
            // Only changes statistics names (cluster.proto, alt_stat_name).
            "alt_stat_name",
        ],
    )?;
    let discovery = match c.cluster_discovery_type {
        None | Some(ClusterDiscoveryType::Type(0)) => {
            let la = c.load_assignment.as_ref().ok_or_else(|| {
                FieldError::new("load_assignment", "required for a STATIC cluster")
            })?;
            Discovery::Static(
                LoadAssignment::translate(la).map_err(|e| e.within("load_assignment"))?,
            )
        }
        Some(ClusterDiscoveryType::Type(t)) if t == DiscoveryType::Eds as i32 => {
            let service = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .filter(|s| !s.is_empty());
            Discovery::Eds(service.unwrap_or_else(|| c.name.clone()))
        }
        Some(ClusterDiscoveryType::Type(t)) => {
            let name = DiscoveryType::try_from(t)
                .map(|d| d.as_str_name())
                .unwrap_or("unknown");
            return Err(FieldError::new(
                "type",
                format!("{name} clusters are not supported yet (STATIC and EDS are)"),
            ));
        }
        Some(ClusterDiscoveryType::ClusterType(_)) => {
            return Err(FieldError::new(
                "cluster_type",
                "custom cluster types are not supported",
            ));
        }
    };
    let lb = lb_kind(c)?;
    let mut http2 = false;
    for (key, any) in &c.typed_extension_protocol_options {
        let at = format!("typed_extension_protocol_options[{key}]");
        if key != HTTP_OPTIONS {
            return Err(FieldError::new(
                at,
                "only envoy.extensions.upstreams.http.v3.HttpProtocolOptions is supported",
            ));
        }
        let options: HttpProtocolOptions = unpack(any).map_err(|e| e.within(&at))?;
        only_fields(&options, &["explicit_http_config"]).map_err(|e| e.within(&at))?;
        if let Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) =
            &options.upstream_protocol_options
        {
            http2 = matches!(
                e.protocol_config,
                Some(ProtocolConfig::Http2ProtocolOptions(_))
            );
        }
    }
    Ok(Cluster {
        name: c.name.clone(),
        discovery,
        connect_timeout: c
            .connect_timeout
            .as_ref()
            .map_or(DEFAULT_CONNECT_TIMEOUT, duration),
        lb,
        http2,
    })
}

fn lb_kind(c: &XdsCluster) -> FieldResult<LbKind> {
    let consistent = consistent_hashing(c)?;
    let config = c.lb_config.as_ref();
    Ok(match LbPolicy::try_from(c.lb_policy) {
        Ok(LbPolicy::RoundRobin) => LbKind::RoundRobin,
        Ok(LbPolicy::Random) => LbKind::Random,
        Ok(LbPolicy::LeastRequest) => {
            let l = match config {
                Some(LbConfig::LeastRequestLbConfig(l)) => Some(l),
                _ => None,
            };
            if let Some(l) = l {
                only_fields(l, &["choice_count", "active_request_bias"])
                    .map_err(|e| e.within("least_request_lb_config"))?;
            }
            let bias = l
                .and_then(|l| l.active_request_bias.as_ref())
                .map_or(1.0, |b| b.default_value);
            if !(bias.is_finite() && bias >= 0.0) {
                return Err(FieldError::new(
                    "least_request_lb_config.active_request_bias",
                    "must be a non-negative number",
                ));
            }
            LbKind::LeastRequest {
                choice_count: l
                    .and_then(|l| l.choice_count.as_ref())
                    .map_or(2, |n| n.value),
                active_request_bias: bias,
            }
        }
        Ok(LbPolicy::RingHash) => {
            let r = match config {
                Some(LbConfig::RingHashLbConfig(r)) => Some(r),
                _ => None,
            };
            if let Some(r) = r {
                only_fields(
                    r,
                    &["minimum_ring_size", "maximum_ring_size", "hash_function"],
                )
                .map_err(|e| e.within("ring_hash_lb_config"))?;
            }
            let min = r
                .and_then(|r| r.minimum_ring_size.as_ref())
                .map_or(DEFAULT_MIN_RING_SIZE, |v| v.value);
            let max = r
                .and_then(|r| r.maximum_ring_size.as_ref())
                .map_or(DEFAULT_MAX_RING_SIZE, |v| v.value);
            if min > max {
                // Envoy's own words (ring_hash_lb.cc).
                return Err(FieldError::new(
                    "ring_hash_lb_config",
                    format!("ring hash: minimum_ring_size ({min}) > maximum_ring_size ({max})"),
                ));
            }
            let hash = match r.map(|r| r.hash_function) {
                Some(f) if f == ring_hash_lb_config::HashFunction::MurmurHash2 as i32 => {
                    RingHashFunction::MurmurHash2
                }
                _ => RingHashFunction::XxHash,
            };
            LbKind::RingHash {
                min_ring_size: min,
                max_ring_size: max,
                hash,
                consistent,
            }
        }
        Ok(LbPolicy::Maglev) => {
            let table_size = match config {
                Some(LbConfig::MaglevLbConfig(m)) => {
                    only_fields(m, &["table_size"]).map_err(|e| e.within("maglev_lb_config"))?;
                    m.table_size
                        .as_ref()
                        .map_or(DEFAULT_MAGLEV_TABLE_SIZE, |v| v.value)
                }
                _ => DEFAULT_MAGLEV_TABLE_SIZE,
            };
            if !is_prime(table_size) {
                return Err(FieldError::new(
                    "maglev_lb_config.table_size",
                    "The table size of maglev must be prime number",
                ));
            }
            LbKind::Maglev {
                table_size,
                consistent,
            }
        }
        Ok(other) => {
            return Err(FieldError::new(
                "lb_policy",
                format!("{} is not supported", other.as_str_name()),
            ));
        }
        Err(_) => return Err(FieldError::new("lb_policy", "unknown policy")),
    })
}

fn consistent_hashing(c: &XdsCluster) -> FieldResult<ConsistentHashing> {
    let Some(common) = &c.common_lb_config else {
        return Ok(ConsistentHashing::default());
    };
    only_fields(common, &["consistent_hashing_lb_config"])
        .map_err(|e| e.within("common_lb_config"))?;
    let Some(h) = &common.consistent_hashing_lb_config else {
        return Ok(ConsistentHashing::default());
    };
    only_fields(h, &["use_hostname_for_hashing", "hash_balance_factor"])
        .map_err(|e| e.within("common_lb_config.consistent_hashing_lb_config"))?;
    Ok(ConsistentHashing {
        use_hostname: h.use_hostname_for_hashing,
        hash_balance_factor: h.hash_balance_factor.as_ref().map_or(0, |v| v.value),
    })
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}
