//! The `dataplane` binary: boots from a bootstrap file, prints its admin address, serves the
//! admin endpoints, proxies, and exits 0 on SIGTERM; a bootstrap it cannot honour is refused
//! with the field named and a non-zero exit.

mod support;

use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use support::{DEADLINE, backend, free_port, get, send, wait_listening};

fn bootstrap(listen: u16, backend: u16) -> String {
    format!(
        r#"
node: {{ id: bin-node, cluster: bin }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }} }}
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            virtual_hosts: [ {{ name: all, domains: ["*"], routes: [ {{ match: {{ prefix: / }}, route: {{ cluster: web }} }} ] }} ]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: web
    type: STATIC
    load_assignment:
      cluster_name: web
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }} }} ] }} ]
"#
    )
}

/// The binary on a bootstrap file, and the first line it prints (its admin address).
async fn start(bootstrap: &std::path::Path, args: &[&str]) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dataplane"))
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut line)).await??;
    Ok((child, line))
}

#[tokio::test]
async fn boots_serves_admin_and_proxies_then_exits_on_sigterm() -> anyhow::Result<()> {
    let web = backend("web").await?;
    let listen = free_port().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(&path, bootstrap(listen, web.port()))?;
    let (mut child, line) = start(&path, &["--concurrency", "1"]).await?;
    let Some(admin) = line.trim().strip_prefix("dataplane admin=") else {
        bail!("first line: {line:?}")
    };
    let admin_port: u16 = admin
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .context("admin port")?;
    assert_ne!(admin_port, 0, "the printed port is the bound one");

    let ready = send(get(admin_port, "/ready")?).await?;
    assert_eq!(ready.status(), 200, "a static bootstrap is ready at once");
    let info: serde_json::Value =
        serde_json::from_slice(send(get(admin_port, "/server_info")?).await?.body())?;
    assert_eq!(info["node"]["id"], "bin-node");

    wait_listening(([127, 0, 0, 1], listen).into()).await?;
    let resp = send(get(listen, "/via-binary")?).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-seen-path"], "/via-binary");

    // Envoy's layout: the static resources as written, under static_clusters/static_listeners.
    let dump: serde_json::Value =
        serde_json::from_slice(send(get(admin_port, "/config_dump")?).await?.body())?;
    let configs = dump["configs"].as_array().context("configs")?;
    let of = |ty: &str| {
        configs
            .iter()
            .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(ty)))
            .cloned()
    };
    let clusters = of("ClustersConfigDump").context("ClustersConfigDump")?;
    assert_eq!(
        clusters["static_clusters"][0]["cluster"]["name"], "web",
        "{clusters}"
    );
    let listeners = of("ListenersConfigDump").context("ListenersConfigDump")?;
    assert_eq!(
        listeners["static_listeners"][0]["listener"]["name"], "http",
        "{listeners}"
    );

    let clusters = send(get(admin_port, "/clusters")?).await?;
    let text = String::from_utf8_lossy(clusters.body());
    let host = format!("web::127.0.0.1:{}::", web.port());
    assert!(
        text.contains(&format!("{host}health_flags::healthy")),
        "{text}"
    );
    assert!(text.contains(&format!("{host}rq_total::1")), "{text}");

    let pid = child.id().context("pid")?;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(killed.success());
    let status = tokio::time::timeout(DEADLINE, child.wait()).await??;
    assert!(status.success(), "exit status on SIGTERM: {status}");
    Ok(())
}

#[tokio::test]
async fn refuses_a_bootstrap_field_it_cannot_honour() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bootstrap.yaml");
    let text = bootstrap(free_port().await?, 1).replace(
        "    type: STATIC\n",
        "    type: STATIC\n    lb_policy: CLUSTER_PROVIDED\n",
    );
    std::fs::write(&path, text)?;
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(env!("CARGO_BIN_EXE_dataplane"))
            .arg("--bootstrap")
            .arg(&path)
            .output(),
    )
    .await??;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster \"web\"") && stderr.contains("lb_policy"),
        "{stderr}"
    );
    Ok(())
}

/// No xDS server answers: as Envoy, the listener stops warming for its routes after the RDS
/// source's `initial_fetch_timeout` (then answers 404: no route configuration), and the proxy
/// calls itself ready after the LDS/CDS sources' timeout.
#[tokio::test]
async fn initial_fetch_timeout_ends_warming_without_an_xds_server() -> anyhow::Result<()> {
    let (listen, dead_xds) = (free_port().await?, free_port().await?);
    let text = format!(
        r#"
node: {{ id: warm-node, cluster: bin }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }} }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [ {{ envoy_grpc: {{ cluster_name: xds }} }} ]
  cds_config: {{ ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 1s }}
  lds_config: {{ ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 0.5s }}
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          rds: {{ route_config_name: never, config_source: {{ ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 1s }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: xds
    type: STATIC
    load_assignment:
      cluster_name: xds
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {dead_xds} }} }} }} }} ] }} ]
"#
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(&path, text)?;
    let started = std::time::Instant::now();
    let (_child, line) = start(&path, &[]).await?;
    let admin_port: u16 = line
        .trim()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .context("admin port")?;
    let ready = send(get(admin_port, "/ready")?).await?;
    assert_eq!(
        ready.status(),
        503,
        "not ready before the initial fetch timeout"
    );
    wait_listening(([127, 0, 0, 1], listen).into()).await?;
    let warmed = started.elapsed();
    assert!(
        warmed >= std::time::Duration::from_millis(900),
        "the listener warmed for its routes: {warmed:?}"
    );
    let resp = send(get(listen, "/x")?).await?;
    assert_eq!(resp.status(), 404);
    let end = std::time::Instant::now() + DEADLINE;
    while send(get(admin_port, "/ready")?).await?.status() != 200 {
        assert!(std::time::Instant::now() < end, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Polls until `path` holds a line containing `want`, or fails after [`DEADLINE`].
async fn log_line(path: &std::path::Path, want: &str) -> anyhow::Result<()> {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l.contains(want))) {
            return Ok(());
        }
        if tokio::time::Instant::now() > end {
            bail!("no line with {want:?} in {}", path.display());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn access_log_file_is_reopened_on_sigusr1() -> anyhow::Result<()> {
    let web = backend("web").await?;
    let listen = free_port().await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("access.log");
    let logger = format!(
        r#"stat_prefix: http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {:?}
              log_format: {{ text_format_source: {{ inline_string: "%REQ(:PATH)% %RESPONSE_CODE%\n" }} }}"#,
        log.display().to_string()
    );
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(
        &path,
        bootstrap(listen, web.port()).replace("stat_prefix: http", &logger),
    )?;
    let (child, _banner) = start(&path, &["--concurrency", "1"]).await?;
    wait_listening(([127, 0, 0, 1], listen).into()).await?;
    assert_eq!(send(get(listen, "/before")?).await?.status(), 200);
    log_line(&log, "/before 200").await?;
    // Rotation: the file is moved away, then SIGUSR1 makes the writer open the path again.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated)?;
    let pid = child.id().context("pid")?.to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()?;
    assert!(signalled.success());
    // Lines written before the writer reopened still go to the rotated file; ask until one
    // reaches the new file.
    let end = tokio::time::Instant::now() + DEADLINE;
    let mut n = 0;
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/after")) {
        n += 1;
        assert_eq!(
            send(get(listen, &format!("/after{n}"))?).await?.status(),
            200
        );
        if tokio::time::Instant::now() > end {
            bail!("no line reached the reopened file");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(std::fs::read_to_string(&rotated)?.contains("/before 200"));
    Ok(())
}
