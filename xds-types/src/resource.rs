//! The five resource kinds xDS carries, behind one trait.

use prost::{Message, Name};

use crate::Any;
use crate::pb::envoy::config::cluster::v3::Cluster;
use crate::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use crate::pb::envoy::config::listener::v3::Listener;
use crate::pb::envoy::config::route::v3::RouteConfiguration;
use crate::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use crate::type_url;

/// An `Any` that does not hold the resource it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("type URL {found} where {expected} was expected")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("{type_url}: undecodable protobuf: {reason}")]
    Decode {
        type_url: &'static str,
        reason: String,
    },
}

/// An xDS resource: a message with a name, carried in an `Any` under a fixed type URL.
pub trait Resource: Message + Name + Default + Sized {
    /// The type URL it travels under.
    const TYPE_URL: &'static str;

    /// Its name: unique among the resources of its type.
    fn name(&self) -> &str;

    /// Packs it into an `Any`.
    fn to_any(&self) -> Any {
        Any {
            type_url: Self::TYPE_URL.to_string(),
            value: self.encode_to_vec(),
        }
    }

    /// Unpacks it from an `Any`, refusing another type URL.
    fn from_any(any: &Any) -> Result<Self, ResourceError> {
        if any.type_url != Self::TYPE_URL {
            return Err(ResourceError::WrongType {
                expected: Self::TYPE_URL,
                found: any.type_url.clone(),
            });
        }
        Self::decode(any.value.as_slice()).map_err(|e| ResourceError::Decode {
            type_url: Self::TYPE_URL,
            reason: e.to_string(),
        })
    }
}

macro_rules! resource {
    ($ty:ty, $url:expr, |$r:ident| $name:expr) => {
        impl Resource for $ty {
            const TYPE_URL: &'static str = $url;
            fn name(&self) -> &str {
                let $r = self;
                $name
            }
        }
    };
}

resource!(Listener, type_url::LISTENER, |r| &r.name);
resource!(RouteConfiguration, type_url::ROUTE, |r| &r.name);
resource!(Cluster, type_url::CLUSTER, |r| &r.name);
resource!(ClusterLoadAssignment, type_url::ENDPOINT, |r| &r
    .cluster_name);
resource!(Secret, type_url::SECRET, |r| &r.name);

/// The name of a resource held in an `Any`, for any of the five kinds.
pub fn name_of(any: &Any) -> Result<String, ResourceError> {
    fn name<R: Resource>(any: &Any) -> Result<String, ResourceError> {
        R::from_any(any).map(|r| r.name().to_string())
    }
    match any.type_url.as_str() {
        type_url::LISTENER => name::<Listener>(any),
        type_url::ROUTE => name::<RouteConfiguration>(any),
        type_url::CLUSTER => name::<Cluster>(any),
        type_url::ENDPOINT => name::<ClusterLoadAssignment>(any),
        type_url::SECRET => name::<Secret>(any),
        other => Err(ResourceError::WrongType {
            expected: "an xDS resource type",
            found: other.to_string(),
        }),
    }
}

/// The name of the ClusterLoadAssignment an EDS cluster takes its endpoints from
/// (`eds_cluster_config.service_name`, else the cluster's own name); `None` for a cluster of
/// another type. The controlplane and the dataplane must agree on it.
pub fn eds_service_name(c: &Cluster) -> Option<&str> {
    use crate::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
    if c.cluster_discovery_type != Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)) {
        return None;
    }
    let service = c
        .eds_cluster_config
        .as_ref()
        .map(|e| e.service_name.as_str())
        .filter(|s| !s.is_empty());
    Some(service.unwrap_or(&c.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_round_trip_and_wrong_type() {
        let c = Cluster {
            name: "web".into(),
            ..Default::default()
        };
        let any = c.to_any();
        assert_eq!(any.type_url, type_url::CLUSTER);
        assert_eq!(Cluster::from_any(&any).unwrap().name, "web");
        assert_eq!(name_of(&any).unwrap(), "web");
        assert!(matches!(
            Listener::from_any(&any),
            Err(ResourceError::WrongType { .. })
        ));
    }
}
