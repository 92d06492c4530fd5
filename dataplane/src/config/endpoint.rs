//! ClusterLoadAssignment -> [`LoadAssignment`]: endpoints by priority, with weights and health.

use std::net::SocketAddr;

use xds_types::pb::envoy::config::core::v3::HealthStatus;
use xds_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use xds_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, Endpoint};

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
        let priorities = by_priority(cla, |endpoint, weight, healthy| {
            Ok(Host {
                addr: socket_addr(endpoint.address.as_ref())?,
                hostname: endpoint.hostname.clone(),
                weight,
                healthy,
            })
        })?;
        Ok(LoadAssignment { priorities })
    }
}

/// The endpoints of a DNS cluster's inline assignment: names (or IPs) and ports, by priority.
pub fn dns_endpoints(cla: &ClusterLoadAssignment) -> FieldResult<Vec<Vec<DnsEndpoint>>> {
    by_priority(cla, |endpoint, weight, healthy| {
        let (name, port) = named_addr(endpoint.address.as_ref())?;
        Ok(DnsEndpoint {
            name,
            port,
            weight,
            healthy,
        })
    })
}

/// Walks an assignment's endpoints into one list per priority (index 0 first), each made by
/// `host` from the endpoint, its weight (at least 1) and whether EDS says it is healthy
/// (HEALTHY or UNKNOWN); an error from `host` is placed at the endpoint's address.
fn by_priority<T: Clone>(
    cla: &ClusterLoadAssignment,
    mut host: impl FnMut(&Endpoint, u32, bool) -> FieldResult<T>,
) -> FieldResult<Vec<Vec<T>>> {
    let mut priorities: Vec<Vec<T>> = Vec::new();
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
            let healthy = matches!(
                HealthStatus::try_from(lb.health_status),
                Ok(HealthStatus::Unknown | HealthStatus::Healthy)
            );
            let weight = lb
                .load_balancing_weight
                .as_ref()
                .map_or(1, |w| w.value.max(1));
            let made = host(endpoint, weight, healthy)
                .map_err(|e| e.within(&format!("{at}.endpoint.address")))?;
            priorities[p].push(made);
        }
    }
    Ok(priorities)
}
