use std::path::PathBuf;

use xds_types::format::{any_from_json_value, yaml_to_json_value};

use super::*;

/// Resources as if read from `f.yaml`, one per YAML document.
fn load(yaml: &str) -> Vec<SourcedResource> {
    yaml.split("\n---\n")
        .enumerate()
        .map(|(i, doc)| SourcedResource {
            file: PathBuf::from("f.yaml"),
            location: format!("document {i}"),
            any: any_from_json_value(&yaml_to_json_value(doc).unwrap()).unwrap(),
        })
        .collect()
}

const EDS_CLUSTER: &str = r#"
"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
name: backend
type: EDS
connect_timeout: 1s
eds_cluster_config: { eds_config: { ads: {} } }
"#;

const ASSIGNMENT: &str = r#"
"@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
cluster_name: backend
endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } } } ] } ]
"#;

const LISTENER: &str = r#"
"@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: http
address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: http
      rds: { route_config_name: local_routes, config_source: { ads: {} } }
      http_filters: [ { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } } ]
"#;

const ROUTES: &str = r#"
"@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
name: local_routes
virtual_hosts: [ { name: all, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ] } ]
"#;

fn docs(parts: &[&str]) -> String {
    parts.join("\n---\n")
}

#[test]
fn a_consistent_group_passes() {
    let f = check(
        "default",
        &load(&docs(&[EDS_CLUSTER, ASSIGNMENT, LISTENER, ROUTES])),
    );
    assert!(f.errors.is_empty() && f.warnings.is_empty(), "{f:?}");
}

#[test]
fn eds_cluster_without_assignment() {
    let f = check("default", &load(&docs(&[EDS_CLUSTER, LISTENER, ROUTES])));
    assert_eq!(
        f.errors,
        vec![
            "f.yaml: document 0 CDS \"backend\": type EDS, but group \"default\" has no ClusterLoadAssignment with cluster_name \"backend\""
        ]
    );
    // eds_cluster_config.service_name is the assignment's name when given.
    let named = EDS_CLUSTER.replace("ads: {} }", "ads: {} }, service_name: svc");
    let f = check("g", &load(&docs(&[&named, ASSIGNMENT])));
    assert_eq!(f.errors.len(), 1, "{f:?}");
    assert!(f.errors[0].ends_with("has no ClusterLoadAssignment with cluster_name \"svc\""));
}

#[test]
fn listener_naming_a_missing_route_configuration() {
    let f = check(
        "default",
        &load(&docs(&[EDS_CLUSTER, ASSIGNMENT, LISTENER])),
    );
    assert_eq!(
        f.errors,
        vec![
            "f.yaml: document 2 LDS \"http\": filter_chains[0].filters[0].typed_config.rds.route_config_name: route configuration \"local_routes\" does not exist"
        ]
    );
}

#[test]
fn duplicate_names_per_type() {
    // The same name in two types is fine; twice in one type is not.
    let also_cluster = ASSIGNMENT.replace("backend", "local_routes");
    let f = check("default", &load(&docs(&[ROUTES, ROUTES, &also_cluster])));
    assert_eq!(
        f.errors,
        vec![
            "f.yaml: document 1 RDS \"local_routes\": duplicate name (first in f.yaml document 0)"
        ]
    );
}

#[test]
fn route_to_a_missing_cluster_is_a_warning() {
    let f = check("default", &load(&docs(&[LISTENER, ROUTES])));
    assert!(f.errors.is_empty(), "{f:?}");
    assert_eq!(
        f.warnings,
        vec![
            "f.yaml: document 1 RDS \"local_routes\": virtual_hosts[0].routes[0].route.cluster: cluster \"backend\" does not exist (Envoy answers 503)"
        ]
    );
}

#[test]
fn validation_rules_and_nested_any() {
    let bad_port = ASSIGNMENT.replace("8080", "70000");
    let f = check("default", &load(&docs(&[EDS_CLUSTER, &bad_port])));
    assert_eq!(
        f.errors,
        vec![
            "f.yaml: document 1 EDS \"backend\": endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: value must be <= 65535, got 70000"
        ]
    );
    // An Any inside a typed_config is decoded and checked too.
    let bad_router = LISTENER.replace("stat_prefix: http", "stat_prefix: \"\"");
    let f = check(
        "default",
        &load(&docs(&[&bad_router, ROUTES, EDS_CLUSTER, ASSIGNMENT])),
    );
    assert_eq!(f.errors.len(), 1, "{f:?}");
    assert!(
        f.errors[0].starts_with("f.yaml: document 0 LDS \"http\": filter_chains[0].filters[0].typed_config.stat_prefix: value must be at least 1 characters long"),
        "{}",
        f.errors[0]
    );
}

#[test]
fn an_undecodable_any_inside_a_resource_is_an_error() {
    use prost::Message;
    use xds_types::pb::envoy::config::listener::v3::{Filter, FilterChain, filter};
    let mut listener: Listener = Listener::from_any(&load(LISTENER)[0].any).unwrap();
    listener.filter_chains = vec![FilterChain {
        filters: vec![Filter {
            name: "broken".into(),
            config_type: Some(filter::ConfigType::TypedConfig(xds_types::Any {
                type_url: HCM.into(),
                value: vec![0x0a, 0xff],
            })),
        }],
        ..Default::default()
    }];
    let resource = SourcedResource {
        file: PathBuf::from("f.yaml"),
        location: "resource".into(),
        any: xds_types::Any {
            type_url: type_url::LISTENER.into(),
            value: listener.encode_to_vec(),
        },
    };
    let f = check("default", &[resource]);
    assert_eq!(f.errors.len(), 1, "{f:?}");
    assert!(
        f.errors[0].starts_with(
            "f.yaml: resource LDS \"http\": filter_chains[0].filters[0].typed_config: undecodable"
        ),
        "{}",
        f.errors[0]
    );
}

#[test]
fn sds_secret_references_must_exist() {
    let tls_cluster = r#"
"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
name: tls
type: STATIC
connect_timeout: 1s
load_assignment: { cluster_name: tls }
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    common_tls_context:
      tls_certificate_sds_secret_configs: [ { name: client-cert, sds_config: { ads: {} } } ]
      validation_context_sds_secret_config: { name: ca }
"#;
    let f = check("default", &load(tls_cluster));
    assert!(f.errors.is_empty(), "{f:?}");
    // `ca` has no sds_config: a static secret of the bootstrap, not the group's business.
    assert_eq!(
        f.warnings,
        vec![
            "f.yaml: document 0 CDS \"tls\": transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0]: secret \"client-cert\" does not exist (Envoy keeps it warming until it arrives)"
        ]
    );
    let secret = r#"
"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
name: client-cert
tls_certificate: { certificate_chain: { inline_string: CERT }, private_key: { inline_string: KEY } }
"#;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let json = |s: String| serde_json::Value::String(s).to_string();
    let secret = secret
        .replace("CERT", &json(cert.pem()))
        .replace("KEY", &json(key.serialize_pem()));
    let f = check("default", &load(&docs(&[tls_cluster, &secret])));
    assert!(f.errors.is_empty() && f.warnings.is_empty(), "{f:?}");
}
