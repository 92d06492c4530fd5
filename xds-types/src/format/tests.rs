use super::*;
use crate::pb::envoy::config::cluster::v3::Cluster;
use crate::pb::envoy::config::listener::v3::Listener;

const LISTENER: &str = r#"
name: http
address:
  socket_address: { address: 127.0.0.1, port_value: 10000 }
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: ingress
      codec_type: AUTO
      common_http_protocol_options: { idle_timeout: 1.5s }
      rds:
        route_config_name: local
        config_source: { ads: {}, resource_api_version: V3 }
      http_filters:
      - name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          stat_prefix: rl
          token_bucket: { max_tokens: 10, tokens_per_fill: 10, fill_interval: 1s }
      - name: envoy.filters.http.router
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#;

#[test]
fn decodes_a_listener_with_nested_any() {
    let listener: Listener = from_yaml_str(LISTENER).unwrap();
    assert_eq!(listener.name, "http");
    let hcm = &listener.filter_chains[0].filters[0];
    assert_eq!(hcm.name, "envoy.filters.network.http_connection_manager");
    let back = to_json_value(&listener).unwrap();
    assert_eq!(back["address"]["socket_address"]["port_value"], 10000);
    assert_eq!(
        back["filter_chains"][0]["filters"][0]["typed_config"]["common_http_protocol_options"]["idle_timeout"],
        "1.500s"
    );
}

#[test]
fn wrapper_types_enums_and_durations() {
    let cluster: Cluster = from_yaml_str(
        "name: web\nconnect_timeout: 0.25s\ntype: STRICT_DNS\nlb_policy: LEAST_REQUEST\n\
         per_connection_buffer_limit_bytes: 32768\n",
    )
    .unwrap();
    assert_eq!(cluster.connect_timeout.unwrap().nanos, 250_000_000);
    assert_eq!(
        cluster.per_connection_buffer_limit_bytes.unwrap().value,
        32768
    );
}

#[test]
fn unknown_field_names_the_path() {
    let err = from_yaml_str::<Listener>(
        "name: x\nfilter_chains:\n- filters:\n  - name: f\n    typed_config:\n      \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n      bogus: 1\n",
    )
    .unwrap_err();
    assert!(
        err.path
            .starts_with("filter_chains[0].filters[0].typed_config"),
        "{err}"
    );
    assert!(err.reason.contains("bogus"), "{err}");
}

#[test]
fn bad_value_names_the_path() {
    let err = from_yaml_str::<Cluster>("name: x\nconnect_timeout: soon\n").unwrap_err();
    assert_eq!(err.path, "connect_timeout", "{err}");
}

#[test]
fn any_round_trip() {
    let value = yaml_to_json_value(
        "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: web\nconnect_timeout: 1s\n",
    )
    .unwrap();
    let any = any_from_json_value(&value).unwrap();
    assert_eq!(any.type_url, crate::type_url::CLUSTER);
    let json = any_to_json_value(&any).unwrap();
    assert_eq!(json["name"], "web");
    assert_eq!(json["@type"], crate::type_url::CLUSTER);
}

#[test]
fn decodes_a_bootstrap() {
    use crate::pb::envoy::config::bootstrap::v3::Bootstrap;
    let b: Bootstrap = from_yaml_str(
        r#"
node: { id: n1, cluster: c1 }
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 9901 } } }
dynamic_resources:
  ads_config: { api_type: DELTA_GRPC, transport_api_version: V3, grpc_services: [ { envoy_grpc: { cluster_name: xds } } ] }
  cds_config: { ads: {}, resource_api_version: V3 }
  lds_config: { ads: {}, resource_api_version: V3 }
static_resources:
  clusters:
  - name: xds
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: xds
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18000 } } } } ] } ]
"#,
    )
    .unwrap();
    assert_eq!(b.node.unwrap().id, "n1");
}
