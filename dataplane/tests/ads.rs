//! Our dataplane driven over ADS by a real xDS server (our controlplane binary, serving a
//! watched directory), State-of-the-World and Delta: first config through CDS -> EDS -> LDS
//! -> RDS, a bad resource NACKed alone while its good sibling is applied, a route edit.

mod support;

use std::sync::Arc;

use anyhow::Context;

use xds_types::pb::envoy::config::core::v3::Node;

use dataplane::bootstrap::Ads;
use dataplane::runtime::Runtime;
use dataplane::xds::client::XdsClient;
use dataplane::xds::store::Store;
use support::xds::{controlplane, controlplane_on, eventually};
use support::{backend, free_port, get, send};

const CLUSTERS: &str = r#"resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: web
  type: EDS
  connect_timeout: 1s
  eds_cluster_config: { eds_config: { ads: {}, resource_api_version: V3 } }
- "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  cluster_name: web
  endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: BACKEND } } } } ] } ]
"#;

const LISTENER: &str = r#""@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: http
address: { socket_address: { address: 127.0.0.1, port_value: LISTEN } }
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: http
      rds: { route_config_name: routes, config_source: { ads: {}, resource_api_version: V3 } }
      http_filters:
      - name: envoy.filters.http.router
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
"#;

const ROUTES: &str = r#""@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
name: routes
virtual_hosts:
- name: all
  domains: ["*"]
  routes: [ { match: { prefix: "/" }, route: { cluster: web } } ]
  response_headers_to_add: [ { header: { key: x-edition, value: EDITION } } ]
"#;

/// A bad cluster (a policy we refuse) beside a good one, in one push.
const MORE_CLUSTERS: &str = r#"resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: fancy
  type: STATIC
  connect_timeout: 1s
  lb_policy: CLUSTER_PROVIDED
  load_assignment: { cluster_name: fancy }
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: other
  type: STATIC
  connect_timeout: 1s
  load_assignment: { cluster_name: other }
"#;

/// The `last_nack.error_detail` the controlplane recorded for our node's clusters.
async fn cds_nack(admin: &str, node: &str) -> Option<String> {
    let (_, port) = admin.rsplit_once(':')?;
    let resp = send(get(port.parse().ok()?, "/status").ok()?).await.ok()?;
    let status: serde_json::Value = serde_json::from_slice(resp.body()).ok()?;
    let proxy = status["proxies"]
        .as_array()?
        .iter()
        .find(|p| p["node_id"] == node)?;
    proxy["types"][xds_types::type_url::CLUSTER]["last_nack"]["error_detail"]
        .as_str()
        .map(str::to_string)
}

async fn drives_the_dataplane(delta: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let web = backend("web").await?;
    let listen = free_port().await?;
    std::fs::write(
        dir.path().join("clusters.yaml"),
        CLUSTERS.replace("BACKEND", &web.port().to_string()),
    )?;
    std::fs::write(
        dir.path().join("listener.yaml"),
        LISTENER.replace("LISTEN", &listen.to_string()),
    )?;
    std::fs::write(
        dir.path().join("routes.yaml"),
        ROUTES.replace("EDITION", "one"),
    )?;
    let (_cp, xds, admin) = controlplane(dir.path()).await?;

    let node_id = if delta { "dp-delta" } else { "dp-sotw" };
    let node = Node {
        id: node_id.into(),
        ..Default::default()
    };
    let runtime = Arc::new(Runtime::default());
    tokio::spawn(dataplane::listener::run(runtime.clone()));
    let ads = Ads {
        delta,
        server: xds.parse()?,
        tls: None,
    };
    tokio::spawn(XdsClient::new(node, ads, runtime.clone(), Store::default()).run());

    // First config: CDS -> EDS -> LDS -> RDS, then the listener serves.
    let edition = |want: &'static str| async move {
        let resp = send(get(listen, "/first").ok()?).await.ok()?;
        (resp.headers().get("x-edition")? == want).then_some(resp)
    };
    let resp = eventually("the first config serves", || edition("one")).await?;
    assert_eq!(resp.headers()["x-backend"], "web");
    assert!(
        runtime.is_ready(),
        "ready once the initial config is applied"
    );
    let dump = runtime
        .dump
        .lock()
        .map(|d| d.clone())
        .map_err(|_| anyhow::anyhow!("dump lock"))?;
    let listeners = dump["configs"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.ListenersConfigDump")
        })
        .context("ListenersConfigDump")?;
    let active = &listeners["dynamic_listeners"][0]["active_state"];
    assert_eq!(active["listener"]["name"], "http", "{listeners}");
    assert!(
        active["version_info"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{listeners}"
    );

    // One bad cluster beside a good one: the bad one is NACKed by name, the good one applied.
    std::fs::write(dir.path().join("more.yaml"), MORE_CLUSTERS)?;
    let nack = eventually("the NACK reaches the controlplane", || {
        cds_nack(&admin, node_id)
    })
    .await?;
    assert!(
        nack.contains("cluster \"fancy\"") && nack.contains("lb_policy"),
        "{nack}"
    );
    eventually("the good sibling is applied", || async {
        runtime.load().clusters.contains_key("other").then_some(())
    })
    .await?;
    assert!(!runtime.load().clusters.contains_key("fancy"));
    assert_eq!(send(get(listen, "/still")?).await?.status(), 200);

    // A route edit reaches the next request.
    std::fs::write(
        dir.path().join("routes.yaml"),
        ROUTES.replace("EDITION", "two"),
    )?;
    eventually("the route edit applies", || edition("two")).await?;
    Ok(())
}

#[tokio::test]
async fn sotw() -> anyhow::Result<()> {
    drives_the_dataplane(false).await
}

#[tokio::test]
async fn delta() -> anyhow::Result<()> {
    drives_the_dataplane(true).await
}

/// The xDS server goes away: the proxy keeps serving its last config, reconnects (backoff),
/// and applies what changed meanwhile.
async fn survives_a_server_restart(delta: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let web = backend("web").await?;
    let listen = free_port().await?;
    std::fs::write(
        dir.path().join("clusters.yaml"),
        CLUSTERS.replace("BACKEND", &web.port().to_string()),
    )?;
    std::fs::write(
        dir.path().join("listener.yaml"),
        LISTENER.replace("LISTEN", &listen.to_string()),
    )?;
    std::fs::write(
        dir.path().join("routes.yaml"),
        ROUTES.replace("EDITION", "one"),
    )?;
    let xds = format!("127.0.0.1:{}", free_port().await?);
    let (mut cp, _, _) = controlplane_on(dir.path(), &xds).await?;

    let node = Node {
        id: "dp-restart".into(),
        ..Default::default()
    };
    let runtime = Arc::new(Runtime::default());
    tokio::spawn(dataplane::listener::run(runtime.clone()));
    tokio::spawn(
        XdsClient::new(
            node,
            Ads {
                delta,
                server: xds.parse()?,
                tls: None,
            },
            runtime.clone(),
            Store::default(),
        )
        .run(),
    );
    let edition = |want: &'static str| async move {
        let resp = send(get(listen, "/").ok()?).await.ok()?;
        (resp.headers().get("x-edition")? == want).then_some(())
    };
    eventually("the first config serves", || edition("one")).await?;

    cp.kill().await?;
    assert_eq!(
        send(get(listen, "/")?).await?.status(),
        200,
        "serves while the server is away"
    );
    std::fs::write(
        dir.path().join("routes.yaml"),
        ROUTES.replace("EDITION", "two"),
    )?;
    let (_cp, _, _) = controlplane_on(dir.path(), &xds).await?;
    eventually(
        "the change made while away applies after the reconnect",
        || edition("two"),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn sotw_survives_a_server_restart() -> anyhow::Result<()> {
    survives_a_server_restart(false).await
}

#[tokio::test]
async fn delta_survives_a_server_restart() -> anyhow::Result<()> {
    survives_a_server_restart(true).await
}
