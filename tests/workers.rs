//! Our dataplane with two workers (dataplane/src/workers.rs): each listener is bound once per
//! worker with SO_REUSEPORT, connections are served whichever socket takes them, and a changed
//! listener closes every old socket before its replacements bind, so no connection reaches
//! the old config. A listener with `enable_reuse_port: false` has one socket for both.

#![allow(clippy::unwrap_used)]

mod support;

use support::backend::Backend;
use support::config::{cluster, config_dir, envoy_bootstrap, file, listener, routes, write};
use support::{Controlplane, Dataplane, eventually, free_port, http};

/// Sockets listening on 127.0.0.1:`port` (/proc/net/tcp: state 0A is LISTEN).
fn listening_sockets(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
        .count()
}

/// `n` requests, each on a connection of its own: every one is answered by `backend`.
async fn all_answered_by(addr: &str, backend: &str, n: usize) {
    for i in 0..n {
        let reply = http::get(addr, "/hello", &[])
            .await
            .unwrap_or_else(|| panic!("request {i} to {addr} got no reply"));
        assert_eq!(reply.status, 200, "request {i}");
        assert_eq!(reply.header("x-backend"), Some(backend), "request {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_listener_and_replace_it_whole() {
    let work = tempfile::tempdir().unwrap();
    let dir = config_dir(work.path());
    let (b1, b2) = (Backend::start("b1").await, Backend::start("b2").await);
    let port = free_port();
    write(
        &dir,
        "routes.yaml",
        &file(
            None,
            &[
                routes("r1", &[("/", "b1")], None),
                routes("r2", &[("/", "b2")], None),
            ],
        ),
    );
    write(
        &dir,
        "clusters.yaml",
        &file(
            None,
            &[
                cluster("b1", b1.port().into()),
                cluster("b2", b2.port().into()),
            ],
        ),
    );
    let shared_port = free_port();
    // Envoy's `enable_reuse_port: false`: all workers accept on one socket.
    let shared = listener("shared", shared_port, "r1").replace(
        "  filter_chains:",
        "  enable_reuse_port: false\n  filter_chains:",
    );
    assert!(shared.contains("enable_reuse_port"), "{shared}");
    write(
        &dir,
        "listener.yaml",
        &file(None, &[listener("http", port, "r1"), shared.clone()]),
    );
    let cp = Controlplane::start(&dir, work.path());
    let (host, xds_port) = cp.xds.rsplit_once(':').unwrap();
    let _dp = Dataplane::start_workers(
        &envoy_bootstrap("dp-1", host, xds_port, "GRPC"),
        "dataplane",
        work.path(),
        2,
    );
    let addr = format!("127.0.0.1:{port}");
    eventually("a request through the proxy answered by b1", || async {
        http::get(&addr, "/hello", &[])
            .await
            .filter(|r| r.header("x-backend") == Some("b1"))
    })
    .await;
    assert_eq!(listening_sockets(port), 2, "one socket per worker");
    all_answered_by(&addr, "b1", 40).await;
    let shared_addr = format!("127.0.0.1:{shared_port}");
    eventually("the shared listener to answer", || async {
        http::get(&shared_addr, "/hello", &[]).await
    })
    .await;
    assert_eq!(listening_sockets(shared_port), 1, "one socket for both");
    all_answered_by(&shared_addr, "b1", 40).await;

    // The listener changes (another route configuration): it is replaced on both workers.
    write(
        &dir,
        "listener.yaml",
        &file(None, &[listener("http", port, "r2"), shared]),
    );
    eventually("a request through the proxy answered by b2", || async {
        http::get(&addr, "/hello", &[])
            .await
            .filter(|r| r.header("x-backend") == Some("b2"))
    })
    .await;
    // The old sockets closed before the new ones bound: none is left to take a connection
    // to the old config.
    assert_eq!(listening_sockets(port), 2, "one socket per worker");
    all_answered_by(&addr, "b2", 40).await;
}
