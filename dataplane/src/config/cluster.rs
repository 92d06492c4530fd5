//! Cluster -> [`Cluster`]: discovery type, connect timeout, load balancing, HTTP/2 upstreams,
//! TLS to the endpoints, circuit breakers.

use std::sync::Arc;
use std::time::Duration;

use xds_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use xds_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbConfig, LbPolicy, ring_hash_lb_config,
};
use xds_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use xds_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
};

use super::tls::ClientTls;
use super::{
    ConfigError, FieldError, FieldResult, LoadAssignment, duration, endpoint, only_fields, unpack,
    validate,
};

/// Envoy's default connect timeout (cluster.proto, connect_timeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default `common_lb_config.update_merge_window`.
pub const DEFAULT_UPDATE_MERGE_WINDOW: Duration = Duration::from_secs(1);
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub discovery: Discovery,
    pub connect_timeout: Duration,
    pub lb: LbKind,
    /// Speak HTTP/2 (prior knowledge) to the endpoints.
    pub http2: bool,
    /// Below this percent of healthy hosts a priority balances over all its hosts
    /// (`common_lb_config.healthy_panic_threshold`, 50 by default; 0 disables panic).
    pub healthy_panic_threshold: u32,
    /// Health changes (active checks, outlier ejections) within this time of the last one
    /// applied are applied together at its end (`common_lb_config.update_merge_window`, 1 s
    /// by default; 0: at once). Membership changes apply at once.
    pub update_merge_window: Duration,
    /// TLS to the endpoints (`transport_socket` envoy.transport_sockets.tls).
    pub tls: Option<Arc<ClientTls>>,
    pub breakers: CircuitBreakers,
    /// `outlier_detection`: passive health checking (upstream/outlier.rs).
    pub outlier: Option<super::outlier::OutlierDetection>,
    /// `health_checks`: active health checking (upstream/health.rs).
    pub health_check: Option<super::health_check::HealthCheck>,
}

/// `circuit_breakers`: the limits of the DEFAULT priority, the one every route here has
/// (routes with a `priority` are refused), so HIGH thresholds are read and never apply.
///
/// Envoy's `max_connections` and `max_pending_requests` make a request wait for a connection;
/// our pools open one per request that finds none idle and have no such queue, so only the
/// "no limit" value (4294967295, what Istio sets) is accepted for them, and without
/// `circuit_breakers` there is no connection limit (Envoy's is 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// Requests in flight to the cluster at once; one more gets 503 (Envoy's overflow).
    pub max_requests: u32,
    /// Retries in flight to the cluster at once; a retry past it is not made.
    pub max_retries: u32,
}

impl Default for CircuitBreakers {
    /// Envoy's defaults (circuit_breaker.proto).
    fn default() -> Self {
        CircuitBreakers {
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Discovery {
    /// Endpoints given inline.
    Static(LoadAssignment),
    /// Endpoints from EDS.
    Eds(Eds),
    /// Endpoints named by DNS names, resolved in the background (upstream/dns.rs).
    Dns(DnsDiscovery),
}

/// An EDS cluster's endpoints: which assignment, and how long a new version of the cluster
/// waits for it (upstream/warming.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct Eds {
    /// The ClusterLoadAssignment's name (`service_name`, else the cluster's name).
    pub service: String,
    /// `eds_config.initial_fetch_timeout` (15 s by default; `None`: wait forever).
    pub fetch_timeout: Option<Duration>,
}

/// STRICT_DNS and LOGICAL_DNS: what to resolve and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsDiscovery {
    /// LOGICAL_DNS: one host, the first address of the (single) name. STRICT_DNS: every
    /// address of every name is a host.
    pub logical: bool,
    /// By priority, as a load assignment's.
    pub priorities: Vec<Vec<DnsEndpoint>>,
    pub refresh_rate: Duration,
    pub family: DnsFamily,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEndpoint {
    pub name: String,
    pub port: u16,
    pub weight: u32,
    pub healthy: bool,
}

/// `dns_lookup_family`: which answers are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    /// AUTO: IPv6 if there is any, else IPv4.
    Auto,
    V4Only,
    V6Only,
    /// IPv4 if there is any, else IPv6.
    V4Preferred,
    All,
}

/// Envoy's default `dns_refresh_rate`.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);

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
            "dns_refresh_rate",
            "dns_lookup_family",
            "transport_socket",
            "circuit_breakers",
            "outlier_detection",
            "health_checks",
            // Only changes statistics names (cluster.proto, alt_stat_name).
            "alt_stat_name",
        ],
    )?;
    let breakers = match &c.circuit_breakers {
        Some(b) => circuit_breakers(b).map_err(|e| e.within("circuit_breakers"))?,
        None => CircuitBreakers::default(),
    };
    let outlier = match &c.outlier_detection {
        Some(o) => Some(super::outlier::translate(o).map_err(|e| e.within("outlier_detection"))?),
        None => None,
    };
    let health_check =
        super::health_check::translate(&c.health_checks).map_err(|e| e.within("health_checks"))?;
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
            // Endpoints come over the ADS stream. A new version of the cluster warms until
            // they arrive or the source's initial_fetch_timeout passes; then it serves with
            // what it has (none: "no healthy upstream"), as Envoy's does.
            let fetch_timeout = match c
                .eds_cluster_config
                .as_ref()
                .and_then(|e| e.eds_config.as_ref())
            {
                Some(source) => super::ads_config_source(source)
                    .map_err(|e| e.within("eds_cluster_config.eds_config"))?,
                None => Some(super::DEFAULT_INITIAL_FETCH_TIMEOUT),
            };
            Discovery::Eds(Eds {
                service: xds_types::resource::eds_service_name(c)
                    .unwrap_or(&c.name)
                    .to_string(),
                fetch_timeout,
            })
        }
        Some(ClusterDiscoveryType::Type(t))
            if t == DiscoveryType::StrictDns as i32 || t == DiscoveryType::LogicalDns as i32 =>
        {
            Discovery::Dns(dns(c, t == DiscoveryType::LogicalDns as i32)?)
        }
        Some(ClusterDiscoveryType::Type(t)) => {
            let name = DiscoveryType::try_from(t)
                .map(|d| d.as_str_name())
                .unwrap_or("unknown");
            return Err(FieldError::new(
                "type",
                format!(
                    "{name} clusters are not supported (STATIC, EDS, STRICT_DNS and LOGICAL_DNS are)"
                ),
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
    let (mut auto_sni, mut auto_san) = (false, false);
    for (key, any) in &c.typed_extension_protocol_options {
        let at = format!("typed_extension_protocol_options[{key}]");
        if key != HTTP_OPTIONS {
            return Err(FieldError::new(
                at,
                "only envoy.extensions.upstreams.http.v3.HttpProtocolOptions is supported",
            ));
        }
        let options: HttpProtocolOptions = unpack(any).map_err(|e| e.within(&at))?;
        only_fields(
            &options,
            &["explicit_http_config", "upstream_http_protocol_options"],
        )
        .map_err(|e| e.within(&at))?;
        if let Some(u) = &options.upstream_http_protocol_options {
            only_fields(u, &["auto_sni", "auto_san_validation"])
                .map_err(|e| e.within(&format!("{at}.upstream_http_protocol_options")))?;
            auto_sni = u.auto_sni;
            auto_san = u.auto_san_validation;
        }
        if let Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) =
            &options.upstream_protocol_options
        {
            http2 = matches!(
                e.protocol_config,
                Some(ProtocolConfig::Http2ProtocolOptions(_))
            );
        }
    }
    let tls = match &c.transport_socket {
        Some(ts) => {
            // auto_sni / auto_san_validation live in the protocol options but act on the
            // TLS context; without TLS they change nothing, as in Envoy.
            super::tls::upstream(ts, http2, (auto_sni, auto_san))
                .map_err(|e| e.within("transport_socket"))?
        }
        None => None,
    };
    Ok(Cluster {
        name: c.name.clone(),
        discovery,
        connect_timeout: c
            .connect_timeout
            .as_ref()
            .map_or(DEFAULT_CONNECT_TIMEOUT, duration),
        lb,
        http2,
        healthy_panic_threshold: c
            .common_lb_config
            .as_ref()
            .and_then(|l| l.healthy_panic_threshold.as_ref())
            .map_or(50, |p| p.value.clamp(0.0, 100.0).round() as u32),
        update_merge_window: c
            .common_lb_config
            .as_ref()
            .and_then(|l| l.update_merge_window.as_ref())
            .map_or(DEFAULT_UPDATE_MERGE_WINDOW, duration),
        tls,
        breakers,
        outlier,
        health_check,
    })
}

/// The DEFAULT priority's limits: the first thresholds of that priority, as in Envoy, and
/// Envoy's defaults for what they leave out.
fn circuit_breakers(
    b: &xds_types::pb::envoy::config::cluster::v3::CircuitBreakers,
) -> FieldResult<CircuitBreakers> {
    only_fields(b, &["thresholds"])?;
    for (i, t) in b.thresholds.iter().enumerate() {
        let at = format!("thresholds[{i}]");
        only_fields(
            t,
            &[
                "priority",
                "max_connections",
                "max_pending_requests",
                "max_requests",
                "max_retries",
                "max_connection_pools",
                // Only adds `remaining_*` gauges to the stats.
                "track_remaining",
            ],
        )
        .map_err(|e| e.within(&at))?;
        for (field, value) in [
            ("max_connections", &t.max_connections),
            ("max_pending_requests", &t.max_pending_requests),
            ("max_connection_pools", &t.max_connection_pools),
        ] {
            if let Some(v) = value
                && v.value != u32::MAX
            {
                return Err(FieldError::new(
                    format!("{at}.{field}"),
                    format!(
                        "only 4294967295 (no limit) is supported, not {}: requests do not wait \
                         for a connection here",
                        v.value
                    ),
                ));
            }
        }
    }
    // RoutingPriority DEFAULT is 0; the first thresholds of a priority are used.
    let mut limits = CircuitBreakers::default();
    if let Some(t) = b.thresholds.iter().find(|t| t.priority == 0) {
        if let Some(v) = &t.max_requests {
            limits.max_requests = v.value;
        }
        if let Some(v) = &t.max_retries {
            limits.max_retries = v.value;
        }
    }
    Ok(limits)
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
    only_fields(
        common,
        &[
            "consistent_hashing_lb_config",
            "healthy_panic_threshold",
            "update_merge_window",
        ],
    )
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

// `dns_refresh_rate` is deprecated in favour of the DnsCluster extension, but Envoy 1.40 still
// honours it, and most configs in the wild set it here.
#[allow(deprecated)]
fn dns(c: &XdsCluster, logical: bool) -> FieldResult<DnsDiscovery> {
    let kind = if logical { "LOGICAL_DNS" } else { "STRICT_DNS" };
    let la = c.load_assignment.as_ref().ok_or_else(|| {
        FieldError::new("load_assignment", format!("required for a {kind} cluster"))
    })?;
    let priorities = endpoint::dns_endpoints(la).map_err(|e| e.within("load_assignment"))?;
    if logical && priorities.iter().flatten().count() != 1 {
        // Envoy's own rule (logical_dns_cluster.cc).
        return Err(FieldError::new(
            "load_assignment",
            "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
        ));
    }
    let family = match DnsLookupFamily::try_from(c.dns_lookup_family) {
        Ok(DnsLookupFamily::Auto) => DnsFamily::Auto,
        Ok(DnsLookupFamily::V4Only) => DnsFamily::V4Only,
        Ok(DnsLookupFamily::V6Only) => DnsFamily::V6Only,
        Ok(DnsLookupFamily::V4Preferred) => DnsFamily::V4Preferred,
        Ok(DnsLookupFamily::All) => DnsFamily::All,
        Err(_) => return Err(FieldError::new("dns_lookup_family", "unknown family")),
    };
    Ok(DnsDiscovery {
        logical,
        priorities,
        refresh_rate: c
            .dns_refresh_rate
            .as_ref()
            .map(duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_DNS_REFRESH),
        family,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> Result<Cluster, ConfigError> {
        let c: XdsCluster = xds_types::format::from_yaml_str(yaml).expect("a cluster");
        Cluster::try_from(&c)
    }

    const TWO_NAMES: &str = "load_assignment: { cluster_name: c, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: a.example, port_value: 80 } } } }, { endpoint: { address: { socket_address: { address: b.example, port_value: 81 } } } } ] } ] }";

    #[test]
    fn circuit_breakers_default_priority_and_what_is_refused() {
        let la = "load_assignment: { cluster_name: c }";
        assert_eq!(
            cluster(&format!("name: c\n{la}")).expect("valid").breakers,
            CircuitBreakers {
                max_requests: 1024,
                max_retries: 3
            }
        );
        // The first DEFAULT thresholds; HIGH ones and later duplicates do not apply.
        let c = cluster(&format!(
            "name: c\ncircuit_breakers: {{ thresholds: [ {{ priority: HIGH, max_requests: 7 }}, {{ max_requests: 10 }}, {{ max_requests: 20, max_retries: 1 }} ] }}\n{la}"
        ))
        .expect("valid");
        assert_eq!(
            c.breakers,
            CircuitBreakers {
                max_requests: 10,
                max_retries: 3
            }
        );
        // Istio's thresholds.
        cluster(&format!("name: c\ncircuit_breakers: {{ thresholds: [ {{ max_connections: 4294967295, max_pending_requests: 4294967295, max_requests: 4294967295, max_retries: 4294967295, track_remaining: true }} ] }}\n{la}")).expect("valid");
        for (field, value) in [
            (
                "thresholds: [ { max_connections: 100 } ]",
                "cluster \"c\": circuit_breakers.thresholds[0].max_connections: only 4294967295 (no limit) is supported, not 100",
            ),
            (
                "thresholds: [ {}, { max_pending_requests: 5 } ]",
                "circuit_breakers.thresholds[1].max_pending_requests",
            ),
            (
                "thresholds: [ { retry_budget: {} } ]",
                "circuit_breakers.thresholds[0].retry_budget",
            ),
            (
                "per_host_thresholds: [ { max_connections: 1 } ]",
                "circuit_breakers.per_host_thresholds",
            ),
        ] {
            let e = cluster(&format!("name: c\ncircuit_breakers: {{ {field} }}\n{la}"))
                .expect_err(field)
                .to_string();
            assert!(e.contains(value), "{field}: {e}");
        }
    }

    #[test]
    fn dns_clusters_keep_names_family_and_refresh() {
        let c = cluster(&format!(
            "name: c\ntype: STRICT_DNS\ndns_lookup_family: V4_ONLY\ndns_refresh_rate: 2s\n{TWO_NAMES}"
        ))
        .expect("valid");
        let Discovery::Dns(d) = c.discovery else {
            panic!("not DNS: {:?}", c.discovery)
        };
        assert!(!d.logical);
        assert_eq!(d.family, DnsFamily::V4Only);
        assert_eq!(d.refresh_rate, Duration::from_secs(2));
        assert_eq!(d.priorities[0][1].name, "b.example");
        assert_eq!(d.priorities[0][1].port, 81);
        let e = cluster(&format!("name: c\ntype: LOGICAL_DNS\n{TWO_NAMES}"))
            .expect_err("two endpoints")
            .to_string();
        assert!(e.contains("a single lb_endpoint"), "{e}");
        let e = cluster("name: c\ntype: STRICT_DNS\n")
            .expect_err("no assignment")
            .to_string();
        assert!(
            e.contains("load_assignment: required for a STRICT_DNS cluster"),
            "{e}"
        );
    }

    #[test]
    fn hashing_policies_and_their_limits() {
        let c = cluster("name: c\nlb_policy: RING_HASH\nring_hash_lb_config: { minimum_ring_size: 8, maximum_ring_size: 16 }\ncommon_lb_config: { consistent_hashing_lb_config: { hash_balance_factor: 150 } }\nload_assignment: { cluster_name: c }").expect("valid");
        assert!(matches!(
            c.lb,
            LbKind::RingHash {
                min_ring_size: 8,
                max_ring_size: 16,
                consistent: ConsistentHashing {
                    hash_balance_factor: 150,
                    ..
                },
                ..
            }
        ));
        let e = cluster("name: c\nlb_policy: RING_HASH\nring_hash_lb_config: { minimum_ring_size: 32, maximum_ring_size: 16 }\nload_assignment: { cluster_name: c }").expect_err("min > max").to_string();
        assert!(
            e.contains("minimum_ring_size (32) > maximum_ring_size (16)"),
            "{e}"
        );
        let e = cluster("name: c\nlb_policy: MAGLEV\nmaglev_lb_config: { table_size: 100 }\nload_assignment: { cluster_name: c }").expect_err("not prime").to_string();
        assert!(e.contains("maglev_lb_config.table_size"), "{e}");
        let c = cluster("name: c\nlb_policy: MAGLEV\nload_assignment: { cluster_name: c }")
            .expect("valid");
        assert!(matches!(
            c.lb,
            LbKind::Maglev {
                table_size: 65537,
                ..
            }
        ));
    }
}
