//! ClusterLoadAssignment -> [`LoadAssignment`]: endpoints by priority, with weights and health.

use std::net::SocketAddr;

use xds_types::pb::envoy::config::core::v3::HealthStatus;
use xds_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;

use super::cluster::DnsEndpoint;
use super::{ConfigError, FieldError, FieldResult, named_addr, socket_addr, validate};

#[derive(Debug, Clone, Default)]
pub struct LoadAssignment {
    /// Hosts by priority (index 0 first).
    pub priorities: Vec<Vec<Host>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub addr: SocketAddr,
    /// `endpoint.hostname`: hashed instead of the address with `use_hostname_for_hashing`.
    pub hostname: String,
    pub weight: u32,
    /// EDS said it is healthy (HEALTHY or UNKNOWN).
    pub healthy: bool,
}

impl TryFrom<&ClusterLoadAssignment> for LoadAssignment {
    type Error = ConfigError;

    fn try_from(cla: &ClusterLoadAssignment) -> Result<Self, ConfigError> {
        validate(cla)
            .and_then(|()| LoadAssignment::translate(cla))
            .map_err(|e| e.of("load assignment", &cla.cluster_name))
    }
}

impl LoadAssignment {
    pub fn translate(cla: &ClusterLoadAssignment) -> FieldResult<Self> {
        let mut priorities: Vec<Vec<Host>> = Vec::new();
        for (l, locality) in cla.endpoints.iter().enumerate() {
            let p = locality.priority as usize;
            if p > 128 {
                return Err(FieldError::new(
                    format!("endpoints[{l}].priority"),
                    "too large",
                ));
            }
            if priorities.len() <= p {
                priorities.resize(p + 1, Vec::new());
            }
            // Locality weights only matter with locality-weighted balancing, which we do not
            // offer: endpoints of every locality of a priority are balanced together, as Envoy
            // does without locality_weighted_lb_config.
            for (e, lb) in locality.lb_endpoints.iter().enumerate() {
                let at = format!("endpoints[{l}].lb_endpoints[{e}]");
                let Some(HostIdentifier::Endpoint(endpoint)) = &lb.host_identifier else {
                    return Err(FieldError::new(at, "an endpoint is required"));
                };
                let addr = socket_addr(endpoint.address.as_ref())
                    .map_err(|e| e.within(&format!("{at}.endpoint.address")))?;
                let healthy = matches!(
                    HealthStatus::try_from(lb.health_status),
                    Ok(HealthStatus::Unknown | HealthStatus::Healthy)
                );
                let weight = lb
                    .load_balancing_weight
                    .as_ref()
                    .map_or(1, |w| w.value.max(1));
                priorities[p].push(Host {
                    addr,
                    hostname: endpoint.hostname.clone(),
                    weight,
                    healthy,
                });
            }
        }
        Ok(LoadAssignment { priorities })
    }
}

/// The endpoints of a DNS cluster's inline assignment: names (or IPs) and ports, by priority.
pub fn dns_endpoints(cla: &ClusterLoadAssignment) -> FieldResult<Vec<Vec<DnsEndpoint>>> {
    let mut priorities: Vec<Vec<DnsEndpoint>> = Vec::new();
    for (l, locality) in cla.endpoints.iter().enumerate() {
        let p = locality.priority as usize;
        if p > 128 {
            return Err(FieldError::new(
                format!("endpoints[{l}].priority"),
                "too large",
            ));
        }
        if priorities.len() <= p {
            priorities.resize(p + 1, Vec::new());
        }
        for (e, lb) in locality.lb_endpoints.iter().enumerate() {
            let at = format!("endpoints[{l}].lb_endpoints[{e}]");
            let Some(HostIdentifier::Endpoint(endpoint)) = &lb.host_identifier else {
                return Err(FieldError::new(at, "an endpoint is required"));
            };
            let (name, port) = named_addr(endpoint.address.as_ref())
                .map_err(|e| e.within(&format!("{at}.endpoint.address")))?;
            priorities[p].push(DnsEndpoint {
                name,
                port,
                weight: lb
                    .load_balancing_weight
                    .as_ref()
                    .map_or(1, |w| w.value.max(1)),
                healthy: matches!(
                    HealthStatus::try_from(lb.health_status),
                    Ok(HealthStatus::Unknown | HealthStatus::Healthy)
                ),
            });
        }
    }
    Ok(priorities)
}
