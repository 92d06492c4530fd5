use super::*;
use crate::format::from_yaml_str;
use crate::pb::envoy::config::cluster::v3::Cluster;
use crate::pb::envoy::config::listener::v3::Listener;
use crate::pb::envoy::config::route::v3::RouteConfiguration;

fn cluster(yaml: &str) -> Result<(), ValidationError> {
    validate_message(&from_yaml_str::<Cluster>(yaml).unwrap())
}

#[test]
fn a_good_cluster_passes() {
    cluster(
        "name: web\nconnect_timeout: 1s\ntype: STATIC\nload_assignment:\n  cluster_name: web\n  endpoints:\n  - lb_endpoints:\n    - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 80 } } }\n",
    )
    .unwrap();
}

#[test]
fn port_out_of_range_names_the_path() {
    let err = cluster(
        "name: web\nload_assignment:\n  cluster_name: web\n  endpoints:\n  - lb_endpoints:\n    - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 70000 } } }\n",
    )
    .unwrap_err();
    assert_eq!(
        err.path,
        "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value"
    );
    assert!(
        err.reason.contains("<= 65535") && err.reason.contains("70000"),
        "{err}"
    );
}

#[test]
fn string_min_len_and_required_message() {
    // ClusterLoadAssignment.cluster_name has min_len 1.
    let err = cluster("name: web\nload_assignment: { cluster_name: \"\" }\n").unwrap_err();
    assert_eq!(err.path, "load_assignment.cluster_name");
    assert!(err.reason.contains("at least 1"), "{err}");
    // A route's match is required.
    let rc: RouteConfiguration =
        from_yaml_str("name: r\nvirtual_hosts: [ { name: v, domains: ['*'], routes: [ { route: { cluster: c } } ] } ]\n").unwrap();
    let err = validate_message(&rc).unwrap_err();
    assert_eq!(err.path, "virtual_hosts[0].routes[0].match", "{err}");
}

#[test]
fn repeated_min_items_duration_bounds_and_enums() {
    // VirtualHost.domains has min_items 1.
    let rc: RouteConfiguration =
        from_yaml_str("name: r\nvirtual_hosts: [ { name: v, domains: [] } ]\n").unwrap();
    assert_eq!(
        validate_message(&rc).unwrap_err().path,
        "virtual_hosts[0].domains"
    );
    // connect_timeout must be > 0.
    let err = cluster("name: web\nconnect_timeout: 0s\n").unwrap_err();
    assert_eq!(err.path, "connect_timeout", "{err}");
    // lb_policy defined_only.
    let mut c = Cluster {
        name: "web".into(),
        lb_policy: 99,
        ..Default::default()
    };
    assert_eq!(validate_message(&c).unwrap_err().path, "lb_policy");
    c.lb_policy = 0;
    validate_message(&c).unwrap();
}

#[test]
fn nested_any_is_checked_and_header_names_too() {
    let l: Listener = from_yaml_str(
        r#"
name: l
address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
filter_chains:
- filters:
  - name: hcm
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: ""
      route_config: { name: r }
"#,
    )
    .unwrap();
    let err = validate_message(&l).unwrap_err();
    assert_eq!(
        err.path, "filter_chains[0].filters[0].typed_config.stat_prefix",
        "{err}"
    );
    let rc: RouteConfiguration =
        from_yaml_str("name: r\nresponse_headers_to_remove: [\"bad\\nheader\"]\n").unwrap();
    assert_eq!(
        validate_message(&rc).unwrap_err().path,
        "response_headers_to_remove[0]"
    );
}

#[test]
fn unknown_any_type_is_refused() {
    let any = Any {
        type_url: "type.googleapis.com/no.such.Type".into(),
        value: vec![],
    };
    assert!(
        validate_any(&any)
            .unwrap_err()
            .reason
            .contains("unknown message type")
    );
}

fn dynamic(full_name: &str, yaml: &str) -> DynamicMessage {
    let value = crate::format::yaml_to_json_value(yaml).unwrap();
    crate::format::dynamic_from_json_value(full_name, &value).unwrap()
}

#[test]
fn repeated_unique_and_item_rules_on_doubles() {
    let h = "envoy.config.metrics.v3.HistogramBucketSettings";
    validate(&dynamic(h, "match: { exact: x }\nbuckets: [0.5, 1, 10]\n")).unwrap();
    let err = validate(&dynamic(h, "match: { exact: x }\nbuckets: [1, 2, 1]\n")).unwrap_err();
    assert_eq!(err.path, "buckets");
    assert!(err.reason.contains("unique"), "{err}");
    let err = validate(&dynamic(h, "match: { exact: x }\nbuckets: [1, 0]\n")).unwrap_err();
    assert_eq!(err.to_string(), "buckets[1]: value must be > 0, got 0");
    let err = validate(&dynamic(h, "buckets: [1]\n")).unwrap_err();
    assert_eq!(err.to_string(), "match: value is required");
}

#[test]
fn ignore_empty_skips_the_zero_value_only() {
    // UpstreamHttpProtocolOptions.override_auto_sni_header: HTTP_HEADER_NAME, ignore_empty.
    let c = "name: web\nupstream_http_protocol_options: { override_auto_sni_header: \"\" }\n";
    cluster(c).unwrap();
    let c =
        "name: web\nupstream_http_protocol_options: { override_auto_sni_header: \"bad name\" }\n";
    let err = cluster(c).unwrap_err();
    assert_eq!(
        err.path,
        "upstream_http_protocol_options.override_auto_sni_header"
    );
    assert!(err.reason.contains("valid HTTP header name"), "{err}");
}

#[test]
fn map_key_rules_name_the_key() {
    cluster("name: web\nmetadata: { filter_metadata: { envoy.lb: { a: 1 } } }\n").unwrap();
    let err =
        cluster("name: web\nmetadata: { filter_metadata: { \"\": { a: 1 } } }\n").unwrap_err();
    assert_eq!(err.path, "metadata.filter_metadata[]");
    assert!(err.reason.contains("at least 1 characters"), "{err}");
}

#[test]
fn numeric_bounds_on_wrapper_types_and_oneof_required() {
    // HealthCheck.healthy_threshold is a UInt32Value with `message.required`.
    let err = cluster("name: web\nhealth_checks: [ { timeout: 1s, interval: 1s } ]\n").unwrap_err();
    assert!(err.path.starts_with("health_checks[0]."), "{err}");
    // HealthCheck.health_checker is a required oneof.
    let err = cluster(
        "name: web\nhealth_checks: [ { timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1 } ]\n",
    )
    .unwrap_err();
    assert_eq!(err.path, "health_checks[0].health_checker", "{err}");
    assert!(err.reason.starts_with("one of "), "{err}");
}

#[test]
fn hostnames() {
    assert!(string::valid_hostname("example.com"));
    assert!(string::valid_hostname("a-b.example.com."));
    assert!(!string::valid_hostname("-a.example.com"));
    assert!(!string::valid_hostname("a..b"));
    assert!(!string::valid_hostname("under_score.com"));
    assert!(!string::valid_hostname(&"a".repeat(64)));
}

#[test]
fn integer_bounds_are_exact_and_in_lists_are_shown() {
    // CommonLbConfig.healthy_panic_threshold is a Percent: a double in [0, 100].
    let err =
        cluster("name: web\ncommon_lb_config: { healthy_panic_threshold: { value: 100.5 } }\n")
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "common_lb_config.healthy_panic_threshold.value: value must be <= 100, got 100.5"
    );
    // A uint32 bound compared exactly.
    let err = cluster(
        "name: web\nload_assignment: { cluster_name: web, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 65536 } } } } ] } ] }\n",
    )
    .unwrap_err();
    assert!(err.reason.ends_with("got 65536"), "{err}");
}

#[test]
fn string_patterns() {
    // RouteMatch.path_separated_prefix: pattern "^[^?#]+[^?#/]$".
    let route = |prefix: &str| {
        let yaml = format!(
            "name: r\nvirtual_hosts: [ {{ name: v, domains: ['*'], routes: [ {{ match: {{ path_separated_prefix: \"{prefix}\" }}, route: {{ cluster: c }} }} ] }} ]\n"
        );
        validate_message(&from_yaml_str::<RouteConfiguration>(&yaml).unwrap())
    };
    route("/api").unwrap();
    let err = route("/api/").unwrap_err();
    assert_eq!(
        err.path,
        "virtual_hosts[0].routes[0].match.path_separated_prefix"
    );
    assert!(
        err.reason.starts_with("value must match the pattern"),
        "{err}"
    );
}

#[test]
fn every_pattern_of_the_api_compiles() {
    let pool = descriptors::pool();
    let Some(ext) = Extensions::of(&pool).field_rules else {
        panic!("validate.rules is not in the pool");
    };
    let mut patterns = 0;
    for message in pool.all_messages() {
        for field in message.fields() {
            let options = field.options();
            if !options.has_extension(&ext) {
                continue;
            }
            let rules = options.get_extension(&ext);
            let pattern = rules
                .as_message()
                .and_then(|r| r.get_field_by_name("string"))
                .and_then(|s| s.as_message().cloned())
                .filter(|s| s.has_field_by_name("pattern"))
                .and_then(|s| {
                    s.get_field_by_name("pattern")
                        .and_then(|p| p.as_str().map(str::to_string))
                });
            if let Some(p) = pattern {
                patterns += 1;
                assert!(regex::Regex::new(&p).is_ok(), "{}: {p}", field.full_name());
            }
        }
    }
    assert!(patterns > 10, "only {patterns} patterns found");
}
