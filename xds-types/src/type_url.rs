//! Type URLs of the resources carried over xDS.
//!
//! See <https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-types>.

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The prefix every type URL in the Envoy API carries.
pub const PREFIX: &str = "type.googleapis.com/";

/// All resource types, in the order ADS should deliver them: CDS, EDS, LDS, RDS, SDS
/// (xDS protocol, "eventual consistency considerations").
pub const ALL: [&str; 5] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET];

/// Short name used in logs and status tables ("CDS", "LDS", ...).
pub fn short_name(type_url: &str) -> &'static str {
    match type_url {
        LISTENER => "LDS",
        ROUTE => "RDS",
        CLUSTER => "CDS",
        ENDPOINT => "EDS",
        SECRET => "SDS",
        _ => "unknown",
    }
}

/// Whether a SotW response for this type carries the full set (LDS, CDS) rather than only
/// the names asked for (RDS, EDS, SDS).
pub fn is_full_state(type_url: &str) -> bool {
    matches!(type_url, LISTENER | CLUSTER)
}

/// The protobuf message name in a type URL (`type.googleapis.com/a.b.C` -> `a.b.C`).
pub fn message_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}
