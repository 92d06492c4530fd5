//! The `controlplane` binary as a user runs it: `validate` exit codes and messages, `serve`
//! printing its addresses, `/ready`, a clean exit on SIGTERM, and `--stream-window`.

// A test's helpers fail the test by panicking; clippy only exempts `#[test]` functions.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_controlplane"))
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config")
}

/// A copy of the example config to break.
fn copy_of_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn validate_passes_the_example_and_names_the_broken_file() {
    let out = bin().arg("validate").arg(example()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("group \"default\": 4 resources OK"));

    let dir = copy_of_example();
    let listener = dir.path().join("listener.yaml");
    let text = std::fs::read_to_string(&listener).unwrap();
    std::fs::write(
        &listener,
        text.replace("route_config_name: local_routes", "route_config_name: nope"),
    )
    .unwrap();
    let out = bin().arg("validate").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: {}: resource LDS \"http\": filter_chains[0].filters[0].typed_config.rds.route_config_name: route configuration \"nope\" does not exist",
            listener.display()
        )),
        "{stderr}"
    );

    std::fs::write(&listener, "resources: [ {name: x\n").unwrap();
    let out = bin().arg("validate").arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: invalid YAML", listener.display())),
        "{stderr}"
    );
}

#[test]
fn validate_strict_turns_the_dangling_cluster_warning_into_an_error() {
    let dir = copy_of_example();
    let routes = dir.path().join("routes.yaml");
    let text = std::fs::read_to_string(&routes).unwrap();
    std::fs::write(
        &routes,
        text.replace("cluster: backend", "cluster: nowhere"),
    )
    .unwrap();
    let out = bin().arg("validate").arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: "));
    let out = bin()
        .args(["validate", "--strict"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster \"nowhere\" does not exist"));
}

/// Kills the server if the test fails half-way, so no process outlives it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serve_prints_its_addresses_is_ready_and_exits_0_on_sigterm() {
    let (mut child, line) = serve(&[]);
    let child = &mut child.0;
    let fields: Vec<&str> = line.trim().split(' ').collect();
    assert_eq!(fields[..2], ["controlplane", "listening"], "{line}");
    let xds = fields[2].strip_prefix("xds=").unwrap();
    let admin = fields[3].strip_prefix("admin=").unwrap();
    assert!(xds.parse::<std::net::SocketAddr>().unwrap().port() != 0);
    assert!(http_get(admin, "/ready").starts_with("HTTP/1.1 200"));
    let status = http_get(admin, "/status");
    assert!(status.contains("\"version\""), "{status}");
    let out = bin().args(["status", "--admin", admin]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("group default (files)"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
}

/// Starts `controlplane serve` on the example config with `extra` arguments; returns the
/// process and the line it printed with its addresses.
fn serve(extra: &[&str]) -> (KillOnDrop, String) {
    let child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(extra)
        .arg("--config")
        .arg(example())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// `--stream-window`: a request many times the window (Envoy sends its ~16 KB node in every
/// request) comes in over several window updates and is answered.
#[tokio::test]
async fn a_small_stream_window_still_takes_requests_bigger_than_it() {
    use xds_types::pb::envoy::config::core::v3::Node;
    use xds_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
    use xds_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;

    let (_server, line) = serve(&["--stream-window", "1024"]);
    let xds = line
        .split(' ')
        .find_map(|f| f.strip_prefix("xds="))
        .unwrap();
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .unwrap();
    let request = DeltaDiscoveryRequest {
        node: Some(Node {
            id: "big-node".into(),
            cluster: "demo".into(),
            user_agent_name: "x".repeat(20_000),
            ..Default::default()
        }),
        type_url: xds_types::type_url::CLUSTER.into(),
        ..Default::default()
    };
    // The stream stays open after the request (a closed side would end it).
    let requests =
        futures::StreamExt::chain(futures::stream::iter([request]), futures::stream::pending());
    let mut responses = client
        .delta_aggregated_resources(requests)
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .expect("a response within 10 s")
        .unwrap()
        .expect("a response, not the end of the stream");
    assert_eq!(first.type_url, xds_types::type_url::CLUSTER);
    assert!(!first.resources.is_empty(), "{first:?}");
}

#[test]
fn a_stream_window_under_1024_is_refused_naming_the_flag() {
    let out = bin()
        .args(["serve", "--stream-window", "10", "--config"])
        .arg(example())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--stream-window"), "{stderr}");
}
