use std::time::Duration;

use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use xds_mesh::management::v1::management_client::ManagementClient;
use xds_types::Resource;
use xds_types::format::from_yaml_str;
use xds_types::pb::envoy::config::cluster::v3::Cluster;
use xds_types::pb::envoy::config::listener::v3::Listener;

use super::*;

fn cluster(name: &str) -> xds_types::Any {
    let yaml = format!(
        "name: {name}\ntype: STATIC\nconnect_timeout: 1s\nload_assignment:\n  cluster_name: {name}\n  endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 8080 }} }} }} }} ] }} ]\n"
    );
    from_yaml_str::<Cluster>(&yaml).unwrap().to_any()
}

/// A listener whose HTTP connection manager names the route configuration `missing`.
fn listener_with_dangling_rds() -> xds_types::Any {
    from_yaml_str::<Listener>(
        r#"
name: http
address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: http
      rds: { route_config_name: missing, config_source: { ads: {} } }
      http_filters: [ { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } } ]
"#,
    )
    .unwrap()
    .to_any()
}

fn request(group: &str, resources: Vec<xds_types::Any>, skip_checks: bool) -> SetGroupRequest {
    SetGroupRequest {
        group: group.into(),
        selector: Some(Selector {
            node_ids: vec!["edge-*".into()],
            node_clusters: vec![],
        }),
        resources,
        skip_checks,
    }
}

#[test]
fn set_then_get_and_same_content_keeps_the_version() {
    let cache = SnapshotCache::new();
    let api = ManagementApi::new(cache.clone(), false);
    let v1 = api
        .set(request("edge", vec![cluster("a")], false))
        .unwrap()
        .version;
    assert!(v1.starts_with("api-1-"), "{v1}");
    let got = api.get("edge").unwrap();
    assert_eq!(
        (
            got.version.as_str(),
            got.origin.as_str(),
            got.resources.len()
        ),
        (v1.as_str(), "api", 1)
    );
    assert_eq!(got.selector.unwrap().node_ids, vec!["edge-*"]);
    assert_eq!(
        api.set(request("edge", vec![cluster("a")], false))
            .unwrap()
            .version,
        v1
    );
    let v2 = api
        .set(request("edge", vec![cluster("a"), cluster("b")], false))
        .unwrap()
        .version;
    assert!(v2.starts_with("api-2-"), "{v2}");
    assert_eq!(cache.group("edge").unwrap().snapshot.version, v2);
    assert!(api.get("nope").is_none());
    // Delete: the group goes, a file group of the same name is not the API's to delete.
    assert_eq!(api.delete("edge"), Some(v2));
    assert!(cache.group("edge").is_none());
    assert_eq!(api.delete("edge"), None);
}

#[test]
fn checks_refuse_and_skip_checks_lets_through_but_not_garbage() {
    let cache = SnapshotCache::new();
    let api = ManagementApi::new(cache.clone(), false);
    let err = api
        .set(request("edge", vec![listener_with_dangling_rds()], false))
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "SetGroup(\"edge\"): resources[0] LDS \"http\": filter_chains[0].filters[0].typed_config.rds.route_config_name: route configuration \"missing\" does not exist"
    );
    assert!(
        cache.group("edge").is_none(),
        "a refused SetGroup changes nothing"
    );
    api.set(request("edge", vec![listener_with_dangling_rds()], true))
        .unwrap();
    assert!(cache.group("edge").is_some());
    let garbage = xds_types::Any {
        type_url: xds_types::type_url::CLUSTER.into(),
        value: vec![0xff, 0xff],
    };
    let err = api.set(request("edge", vec![garbage], true)).unwrap_err();
    assert!(
        err.message().contains("resources[0]") || err.message().contains("resource 0"),
        "{}",
        err.message()
    );
    let other = xds_types::Any {
        type_url: "type.googleapis.com/google.protobuf.Empty".into(),
        value: vec![],
    };
    let err = api.set(request("edge", vec![other], true)).unwrap_err();
    assert!(
        err.message().contains("is not an xDS resource type"),
        "{}",
        err.message()
    );
}

#[test]
fn strict_turns_warnings_into_errors() {
    let route = from_yaml_str::<xds_types::pb::envoy::config::route::v3::RouteConfiguration>(
        "name: r\nvirtual_hosts: [ { name: v, domains: ['*'], routes: [ { match: { prefix: / }, route: { cluster: nowhere } } ] } ]\n",
    )
    .unwrap()
    .to_any();
    let lenient = ManagementApi::new(SnapshotCache::new(), false);
    let response = lenient
        .set(request("g", vec![route.clone()], false))
        .unwrap();
    assert_eq!(response.warnings.len(), 1, "{:?}", response.warnings);
    assert!(response.warnings[0].contains("cluster \"nowhere\" does not exist"));
    let strict = ManagementApi::new(SnapshotCache::new(), true);
    let err = strict.set(request("g", vec![route], false)).unwrap_err();
    assert!(err.message().ends_with("[--strict]"), "{}", err.message());
}

#[tokio::test]
async fn watch_group_over_grpc_sends_each_new_version() {
    let cache = SnapshotCache::new();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let api = ManagementApi::new(cache.clone(), false).with_shutdown(shutdown);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(api.into_service())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = ManagementClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let v1 = client
        .set_group(request("edge", vec![cluster("a")], false))
        .await
        .unwrap()
        .into_inner()
        .version;
    let mut watch = client
        .watch_group(GetGroupRequest {
            group: "edge".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.version, v1);
    let v2 = client
        .set_group(request("edge", vec![cluster("b")], false))
        .await
        .unwrap()
        .into_inner()
        .version;
    let second = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.version, v2);
    assert_eq!(Cluster::from_any(&second.resources[0]).unwrap().name, "b");
    let got = client
        .get_group(GetGroupRequest {
            group: "edge".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.version, v2);
    let missing = client
        .get_group(GetGroupRequest {
            group: "none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // Shutdown ends the watch stream cleanly.
    stop.send(true).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
    server.abort();
}
