//! Cluster -> [`Cluster`]: discovery type, connect timeout, load balancing, HTTP/2 upstreams.

use std::time::Duration;

use xds_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use xds_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    RoundRobin,
    LeastRequest { choice_count: u32 },
    Random,
}

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
    let lb = match LbPolicy::try_from(c.lb_policy) {
        Ok(LbPolicy::RoundRobin) => LbKind::RoundRobin,
        Ok(LbPolicy::Random) => LbKind::Random,
        Ok(LbPolicy::LeastRequest) => LbKind::LeastRequest {
            choice_count: c
                .lb_config
                .as_ref()
                .and_then(|l| match l {
                    xds_types::pb::envoy::config::cluster::v3::cluster::LbConfig::LeastRequestLbConfig(l) => l.choice_count.as_ref(),
                    _ => None,
                })
                .map_or(2, |n| n.value),
        },
        Ok(other) => return Err(FieldError::new("lb_policy", format!("{} is not supported yet", other.as_str_name()))),
        Err(_) => return Err(FieldError::new("lb_policy", "unknown policy")),
    };
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
