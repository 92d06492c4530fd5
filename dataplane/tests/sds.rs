//! Certificates through SDS from our controlplane: the listener's certificate comes as a
//! Secret over ADS; a new version is used by new handshakes while a long-lived connection
//! made with the old one stays up; a Secret whose key does not match its certificate is
//! NACKed with the reason and the last good certificate keeps serving.

mod support;

use std::sync::Arc;

use xds_types::pb::envoy::config::core::v3::Node;

use dataplane::bootstrap::Ads;
use dataplane::runtime::Runtime;
use dataplane::xds::client::XdsClient;
use dataplane::xds::store::Store;
use support::free_port;
use support::pki::{Ca, Leaf, yaml};
use support::tls::{Client, Session, install_provider, presented};
use support::xds::{controlplane, eventually, last_nack};

fn listener(port: u16) -> String {
    format!(
        r#""@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: tls
address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificate_sds_secret_configs:
        - name: server-cert
          sds_config: {{ ads: {{}}, resource_api_version: V3 }}
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: tls
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [ {{ match: {{ prefix: "/" }}, direct_response: {{ status: 200, body: {{ inline_string: hello }} }} }} ]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

fn secret(cert: &str, key: &str) -> String {
    format!(
        r#""@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
name: server-cert
tls_certificate:
  certificate_chain: {{ inline_string: {} }}
  private_key: {{ inline_string: {} }}
"#,
        yaml(cert),
        yaml(key)
    )
}

/// A fresh connection presents `leaf` and serves.
async fn serves_with(port: u16, client: &Client, leaf: &Leaf) -> Option<()> {
    let stream = client.connect(port).await.ok()?;
    if !presented(&stream, leaf) {
        return None;
    }
    let resp = Session::start(stream)
        .await
        .ok()?
        .get("sds.example", "/")
        .await
        .ok()?;
    (resp.body().as_ref() == b"hello").then_some(())
}

async fn rotation(delta: bool) -> anyhow::Result<()> {
    install_provider();
    let ca = Ca::new("sds ca");
    let first = ca.leaf("first", &["sds.example"], &[], false);
    let second = ca.leaf("second", &["sds.example"], &[], false);
    let stranger = ca.leaf("stranger", &["sds.example"], &[], false);
    let dir = tempfile::tempdir()?;
    let port = free_port().await?;
    std::fs::write(dir.path().join("listener.yaml"), listener(port))?;
    std::fs::write(
        dir.path().join("secret.yaml"),
        secret(&first.cert, &first.key),
    )?;
    let (_cp, xds, admin) = controlplane(dir.path()).await?;

    let node_id = if delta { "sds-delta" } else { "sds-sotw" };
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

    let client = Client::new(&ca.pem, "sds.example");
    eventually("the listener serves with the first certificate", || {
        serves_with(port, &client, &first)
    })
    .await?;
    // A long-lived connection made with the first certificate.
    let mut long = Session::start(client.connect(port).await?).await?;
    assert_eq!(long.get("sds.example", "/").await?.status(), 200);

    std::fs::write(
        dir.path().join("secret.yaml"),
        secret(&second.cert, &second.key),
    )?;
    eventually("new handshakes get the second certificate", || {
        serves_with(port, &client, &second)
    })
    .await?;
    let resp = long.get("sds.example", "/again").await?;
    assert_eq!(resp.status(), 200, "the old connection stays up");

    // A key that does not belong to the certificate: NACKed, the second one keeps serving.
    // Our controlplane refuses such a Secret itself when it holds the PEM; files named by
    // absolute path are the proxy's and are sent unchanged, so the proxy has to judge them.
    let files = tempfile::tempdir()?;
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&cert, &second.cert)?;
    std::fs::write(&key, &stranger.key)?;
    std::fs::write(
        dir.path().join("secret.yaml"),
        format!(
            "\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\nname: server-cert\ntls_certificate: {{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}\n",
            cert.display(),
            key.display()
        ),
    )?;
    let nack = eventually("the NACK reaches the controlplane", || {
        last_nack(&admin, node_id, xds_types::type_url::SECRET)
    })
    .await?;
    assert!(
        nack.contains("secret \"server-cert\"")
            && nack.contains("tls_certificate.private_key")
            && nack.contains("does not match"),
        "{nack}"
    );
    assert!(serves_with(port, &client, &second).await.is_some());
    assert_eq!(long.get("sds.example", "/still").await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn sotw_rotation_keeps_connections_and_nacks_a_bad_key() -> anyhow::Result<()> {
    rotation(false).await
}

#[tokio::test]
async fn delta_rotation_keeps_connections_and_nacks_a_bad_key() -> anyhow::Result<()> {
    rotation(true).await
}

/// A resource as ADS would carry it, from its YAML (with `"@type"`).
fn any(yaml: &str) -> anyhow::Result<xds_types::Any> {
    let json = xds_types::format::yaml_to_json_value(yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    xds_types::format::any_from_json_value(&json).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A listener whose certificate comes over SDS is not started before the secret arrives
/// (Envoy's warming), and serves as soon as it does.
#[tokio::test]
async fn listener_warms_until_its_secret_arrives() -> anyhow::Result<()> {
    use xds_types::type_url::{LISTENER, SECRET};
    install_provider();
    let ca = Ca::new("ca");
    let leaf = ca.leaf("warm", &["sds.example"], &[], false);
    let port = free_port().await?;
    let runtime = Arc::new(Runtime::default());
    tokio::spawn(dataplane::listener::run(runtime.clone()));
    let mut store = Store::default();
    store
        .accept(LISTENER, &any(&listener(port))?, "1")
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        store.sds_names().into_iter().collect::<Vec<_>>(),
        ["server-cert"],
        "the xDS client subscribes to the secret the listener names"
    );
    runtime.publish(store.config());
    let snapshot = runtime.load();
    let l = &snapshot.config.listeners["tls"];
    assert!(
        !dataplane::listener::warm(l, &snapshot),
        "warming without its secret"
    );
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "a warming listener does not accept"
    );
    store
        .accept(SECRET, &any(&secret(&leaf.cert, &leaf.key))?, "1")
        .map_err(anyhow::Error::msg)?;
    runtime.publish(store.config());
    let client = Client::new(&ca.pem, "sds.example");
    eventually("the listener serves once its secret is there", || {
        serves_with(port, &client, &leaf)
    })
    .await?;
    Ok(())
}

/// A static listener on `port` whose certificate `file-cert` comes from the SDS file `path`;
/// `more` adds to its path_config_source.
fn file_sds_bootstrap(port: u16, path: &str, more: &str) -> String {
    use support::tls_yaml::{bootstrap, chain, hcm, listener};
    let tls = format!(
        r#"{{ name: envoy.transport_sockets.tls, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, common_tls_context: {{ tls_certificate_sds_secret_configs: [ {{ name: file-cert, sds_config: {{ path_config_source: {{ path: "{path}" {more} }}, resource_api_version: V3 }} }} ] }} }} }}"#
    );
    bootstrap(
        &[listener(
            "file",
            port,
            &[chain("c", &[], "", Some(&tls), &hcm("hello", ""))],
            "",
        )],
        &[],
    )
}

/// An SDS file whose secret `file-cert` names the certificate and key files.
fn file_sds(cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: file-cert\n  tls_certificate: {{ certificate_chain: {{ filename: {} }}, private_key: {{ filename: {} }} }}\n",
        cert.display(),
        key.display()
    )
}

/// File-based SDS: the listener's certificate comes from a Secret in a file whose
/// certificate and key are files too; rewriting them rotates the certificate for new
/// handshakes while an open connection stays up. A missing SDS file refuses the bootstrap.
#[tokio::test]
async fn certificate_files_rotate_through_file_sds() -> anyhow::Result<()> {
    install_provider();
    let ca = Ca::new("file ca");
    let first = ca.leaf("first", &["sds.example"], &[], false);
    let second = ca.leaf("second", &["sds.example"], &[], false);
    let dir = tempfile::tempdir()?;
    let (cert, key, sds) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("sds.yaml"),
    );
    std::fs::write(&cert, &first.cert)?;
    std::fs::write(&key, &first.key)?;
    std::fs::write(&sds, file_sds(&cert, &key))?;
    let port = free_port().await?;
    let with = |path: &str| file_sds_bootstrap(port, path, "");
    let missing = dir.path().join("missing.yaml");
    let proto = xds_types::format::from_yaml_str(&with(&missing.display().to_string()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let err = dataplane::bootstrap::translate(&proto)
        .err()
        .map(|e| format!("{e:#}"));
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("path_config_source.path") && e.contains("missing.yaml")),
        "{err:?}"
    );

    let runtime = support::dataplane(&with(&sds.display().to_string())).await?;
    tokio::spawn(dataplane::tls::files::run(runtime));
    let client = Client::new(&ca.pem, "sds.example");
    eventually("serves with the first certificate", || {
        serves_with(port, &client, &first)
    })
    .await?;
    let mut long = Session::start(client.connect(port).await?).await?;
    assert_eq!(long.get("sds.example", "/").await?.status(), 200);

    std::fs::write(&cert, &second.cert)?;
    std::fs::write(&key, &second.key)?;
    eventually("new handshakes get the rewritten certificate", || {
        serves_with(port, &client, &second)
    })
    .await?;
    assert_eq!(long.get("sds.example", "/again").await?.status(), 200);
    Ok(())
}

/// Envoy's cluster warming for SDS, end to end from our controlplane: a cluster whose CA
/// secret has not arrived is not used, and at startup the listeners wait for it (Envoy starts
/// LDS once its clusters are warm), so no request ever sees a 503 for it. A replaced cluster
/// keeps serving its previous version while the new one warms, and a version whose secret
/// never comes is used without it after initial_fetch_timeout (503 then, as in Envoy).
#[tokio::test]
async fn clusters_warm_until_their_secrets_arrive() -> anyhow::Result<()> {
    use support::tls_yaml::{ca_secret, warming_resources};
    use support::{get, send};
    install_provider();
    let ca = Ca::new("backend ca");
    let leaf = ca.leaf("backend", &["backend.test"], &[], false);
    let (backend, _) = support::tls::backend(&leaf, None).await?;
    let dir = tempfile::tempdir()?;
    let port = free_port().await?;
    let write = |file: &str, text: String| std::fs::write(dir.path().join(file), text);
    let resources =
        |secret: &str, fetch: &str| warming_resources(port, backend.port(), secret, fetch);
    let [cluster, listener] = resources("backend-ca", "");
    write("cluster.yaml", cluster)?;
    write("listener.yaml", listener)?;
    let (_cp, xds, _admin) = controlplane(dir.path()).await?;
    let runtime = Arc::new(Runtime::default());
    let ads = Ads {
        delta: false,
        server: xds.parse()?,
        tls: None,
    };
    let node = Node {
        id: "warming".into(),
        ..Default::default()
    };
    // Made first, as the binary does: the listener manager must know clusters are coming.
    let client = XdsClient::new(node, ads, runtime.clone(), Store::default());
    tokio::spawn(dataplane::listener::run(runtime.clone()));
    tokio::spawn(client.run());

    let cluster_warming = |runtime: &Arc<Runtime>| {
        let s = runtime.load();
        (s.config.listeners.contains_key("front") && s.warming.contains_key("secure")).then_some(())
    };
    eventually(
        "the cluster and listener arrive; the cluster warms",
        || async { cluster_warming(&runtime) },
    )
    .await?;
    assert!(!runtime.load().clusters.contains_key("secure"));
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "listeners wait for the initial clusters to warm"
    );
    write("secret.yaml", ca_secret("backend-ca", &ca.pem))?;
    let first = eventually("the listener answers", || async {
        Some(send(get(port, "/").ok()?).await.ok()?.status())
    })
    .await?;
    assert_eq!(first, 200, "the first answer the listener gives is a 200");

    // A new version naming a secret not there yet: the previous version keeps serving.
    let active_is_latest = |runtime: &Arc<Runtime>| {
        let s = runtime.load();
        Arc::ptr_eq(&s.clusters["secure"].config, &s.config.clusters["secure"])
    };
    let [cluster, _] = resources("backend-ca-next", "");
    write("cluster.yaml", cluster)?;
    eventually("the new version warms", || async {
        cluster_warming(&runtime)
    })
    .await?;
    assert!(!active_is_latest(&runtime), "the previous version serves");
    assert_eq!(send(get(port, "/")?).await?.status(), 200);
    write("next.yaml", ca_secret("backend-ca-next", &ca.pem))?;
    eventually(
        "the new version is active once its secret is there",
        || async {
            let s = runtime.load();
            (s.warming.is_empty() && active_is_latest(&runtime)).then_some(())
        },
    )
    .await?;
    let r = send(get(port, "/")?).await?;
    assert_eq!(r.status(), 200, "{:?}", r.body());

    // A secret that never comes: served by the previous version until initial_fetch_timeout,
    // then the new version is used without it and its requests fail.
    let [cluster, _] = resources("never", ", initial_fetch_timeout: 1s");
    write("cluster.yaml", cluster)?;
    eventually("the third version warms", || async {
        cluster_warming(&runtime)
    })
    .await?;
    assert_eq!(send(get(port, "/")?).await?.status(), 200);
    eventually(
        "past initial_fetch_timeout the new version is used",
        || async {
            (runtime.load().warming.is_empty() && active_is_latest(&runtime)).then_some(())
        },
    )
    .await?;
    assert_eq!(send(get(port, "/")?).await?.status(), 503);
    Ok(())
}

/// A Kubernetes secret volume: the names are symlinks through `..data`, itself a symlink to a
/// timestamped directory that an update replaces by a rename and then deletes. With
/// `watched_directory` on the volume, each swap rotates the certificate (the watch follows
/// the new directory, so a second swap is seen too).
#[tokio::test]
async fn a_kubernetes_style_symlink_swap_rotates_file_sds() -> anyhow::Result<()> {
    use std::os::unix::fs::symlink;
    install_provider();
    let ca = Ca::new("volume ca");
    let leaves = [
        ca.leaf("first", &["sds.example"], &[], false),
        ca.leaf("second", &["sds.example"], &[], false),
        ca.leaf("third", &["sds.example"], &[], false),
    ];
    let tmp = tempfile::tempdir()?;
    let volume = tmp.path().to_path_buf();
    let (cert, key, sds) = (
        volume.join("tls.crt"),
        volume.join("tls.key"),
        volume.join("sds.yaml"),
    );
    // What the kubelet does for each version: a new directory, `..data` swapped onto it by
    // a rename, the old directory removed.
    let publish = |version: usize, leaf: &support::pki::Leaf| -> anyhow::Result<()> {
        let dir = volume.join(format!("..2026_{version}"));
        std::fs::create_dir(&dir)?;
        std::fs::write(dir.join("tls.crt"), &leaf.cert)?;
        std::fs::write(dir.join("tls.key"), &leaf.key)?;
        std::fs::write(dir.join("sds.yaml"), file_sds(&cert, &key))?;
        symlink(&dir, volume.join("..data_tmp"))?;
        std::fs::rename(volume.join("..data_tmp"), volume.join("..data"))?;
        if version > 0 {
            std::fs::remove_dir_all(volume.join(format!("..2026_{}", version - 1)))?;
        }
        Ok(())
    };
    publish(0, &leaves[0])?;
    for name in ["tls.crt", "tls.key", "sds.yaml"] {
        symlink(format!("..data/{name}"), volume.join(name))?;
    }
    let port = free_port().await?;
    let more = format!(", watched_directory: {{ path: \"{}\" }}", volume.display());
    let runtime =
        support::dataplane(&file_sds_bootstrap(port, &sds.display().to_string(), &more)).await?;
    tokio::spawn(dataplane::tls::files::run(runtime));
    let client = Client::new(&ca.pem, "sds.example");
    eventually("serves with the first certificate", || {
        serves_with(port, &client, &leaves[0])
    })
    .await?;
    for (version, leaf) in leaves.iter().enumerate().skip(1) {
        publish(version, leaf)?;
        eventually("the swapped-in certificate serves", || {
            serves_with(port, &client, leaf)
        })
        .await?;
    }
    Ok(())
}
