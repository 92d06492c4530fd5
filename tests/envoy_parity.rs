//! The same resources, served by our controlplane to real Envoy 1.40 and to our dataplane
//! (two node groups, identical but for the listener port), and the same requests sent to both:
//! status, the backend that answered, and the headers that matter must agree (issue 4).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use support::backend::Backend;
use support::config::{config_dir, envoy_bootstrap, write};
use support::{Api, Controlplane, Dataplane, Envoy, eventually, free_port, http};

/// The resources, for one proxy's listener port.
fn resources(port: u16, ports: &BTreeMap<&str, u16>) -> String {
    // An EDS cluster with `lb` (lb_policy and its config, or nothing) and one endpoint per port.
    let lb_eds = |name: &str, lb: &str, hosts: &[u16]| {
        let endpoints: String = hosts
            .iter()
            .map(|p| format!("{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }} }},"))
            .collect();
        format!(
            r#"
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  type: EDS
  connect_timeout: 0.5s
  {lb}
  eds_cluster_config: {{ eds_config: {{ ads: {{}}, resource_api_version: V3 }} }}
- "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  cluster_name: {name}
  endpoints: [ {{ lb_endpoints: [ {endpoints} ] }} ]
"#
        )
    };
    let eds = |name: &str, hosts: &[u16]| lb_eds(name, "", hosts);
    let p = |n: &str| ports[n];
    // Endpoints with EDS health and priorities: (priority, port, health_status).
    let health = |name: &str, extra: &str, hosts: &[(u32, u16, &str)]| {
        let localities: String = hosts
            .iter()
            .map(|(prio, port, status)| format!("{{ priority: {prio}, lb_endpoints: [ {{ health_status: {status}, endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }} ] }},"))
            .collect();
        format!(
            r#"
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  type: EDS
  connect_timeout: 0.5s
  {extra}
  eds_cluster_config: {{ eds_config: {{ ads: {{}}, resource_api_version: V3 }} }}
- "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  cluster_name: {name}
  endpoints: [ {localities} ]
"#
        )
    };
    let dns = |name: &str, kind: &str, port: u16| {
        format!(
            r#"
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  type: {kind}
  dns_lookup_family: V4_ONLY
  connect_timeout: 0.5s
  load_assignment:
    cluster_name: {name}
    endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: {port} }} }} }} }} ] }} ]
"#
        )
    };
    let three = [ports["b1"], ports["b2"], ports["b3"]];
    let hashed = |name: &str, lb: &str| lb_eds(name, lb, &three);
    let clusters = [
        eds("b1", &[p("b1")]),
        eds("b2", &[p("b2")]),
        eds("b3", &[p("b3")]),
        eds("dead", &[p("dead")]),
        eds("flaky", &[p("bad"), p("b1")]),
        // The hashing policies: Envoy's ring and Maglev table are rebuilt exactly, so the same
        // key must reach the same backend through both proxies.
        hashed("ring", "lb_policy: RING_HASH"),
        hashed("maglev", "lb_policy: MAGLEV"),
        hashed(
            "murmur",
            "lb_policy: RING_HASH\n  ring_hash_lb_config: { minimum_ring_size: 64, hash_function: MURMUR_HASH_2 }",
        ),
        health("all-unhealthy", "", &[(0, p("b1"), "UNHEALTHY")]),
        health(
            "no-panic",
            "common_lb_config: { healthy_panic_threshold: { value: 0 } }",
            &[(0, p("b1"), "UNHEALTHY")],
        ),
        health(
            "failover",
            "",
            &[(0, p("b1"), "UNHEALTHY"), (1, p("b2"), "HEALTHY")],
        ),
        dns("strict", "STRICT_DNS", p("b3")),
        dns("logical", "LOGICAL_DNS", p("b2")),
        r#"
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: empty
  type: EDS
  connect_timeout: 0.5s
  eds_cluster_config: { eds_config: { ads: {}, resource_api_version: V3 } }
- "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  cluster_name: empty
"#
        .to_string(),
    ]
    .concat();
    format!(
        r#"{clusters}
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: http
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: http
        rds: {{ route_config_name: parity, config_source: {{ ads: {{}}, resource_api_version: V3 }} }}
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: parity
  response_headers_to_add: [ {{ header: {{ key: x-level, value: config }}, append_action: OVERWRITE_IF_EXISTS_OR_ADD }} ]
  virtual_hosts:
  - name: exact
    domains: ["api.example.com"]
    routes: [ {{ match: {{ prefix: "/" }}, route: {{ cluster: b1 }} }} ]
  - name: suffix
    domains: ["*.example.com"]
    routes: [ {{ match: {{ prefix: "/" }}, route: {{ cluster: b2 }} }} ]
  - name: prefix
    domains: ["api.*"]
    routes: [ {{ match: {{ prefix: "/" }}, route: {{ cluster: b3 }} }} ]
  - name: main
    domains: ["*"]
    response_headers_to_add: [ {{ header: {{ key: x-vhost, value: main }} }} ]
    routes:
    - {{ match: {{ path: "/exact" }}, route: {{ cluster: b1 }} }}
    - {{ match: {{ prefix: "/ci/", case_sensitive: false }}, route: {{ cluster: b2 }} }}
    - {{ match: {{ safe_regex: {{ regex: "/re/[0-9]+" }} }}, route: {{ cluster: b3 }} }}
    - {{ match: {{ path_separated_prefix: "/sep" }}, route: {{ cluster: b2 }} }}
    - {{ match: {{ prefix: "/hdr", headers: [ {{ name: x-h, string_match: {{ exact: a }} }} ] }}, route: {{ cluster: b2 }} }}
    - {{ match: {{ prefix: "/hdr", headers: [ {{ name: x-p, present_match: true }} ] }}, route: {{ cluster: b3 }} }}
    - {{ match: {{ prefix: "/hdr", headers: [ {{ name: x-s, string_match: {{ suffix: z }} }} ] }}, route: {{ cluster: b1 }} }}
    - {{ match: {{ prefix: "/inv", headers: [ {{ name: x-no, string_match: {{ exact: "no" }}, invert_match: true }} ] }}, route: {{ cluster: b2 }} }}
    - {{ match: {{ prefix: "/q", query_parameters: [ {{ name: debug, string_match: {{ exact: "1" }} }} ] }}, route: {{ cluster: b3 }} }}
    - {{ match: {{ prefix: "/weighted" }}, route: {{ weighted_clusters: {{ clusters: [ {{ name: b2, weight: 100 }}, {{ name: b1, weight: 0 }} ] }} }} }}
    - {{ match: {{ prefix: "/by-header" }}, route: {{ cluster_header: x-cluster }} }}
    - {{ match: {{ prefix: "/rewrite/" }}, route: {{ cluster: b1, prefix_rewrite: "/new/" }} }}
    - {{ match: {{ prefix: "/rx/" }}, route: {{ cluster: b1, regex_rewrite: {{ pattern: {{ regex: "^/rx/([0-9]+)$" }}, substitution: "/num/\\1" }} }} }}
    - {{ match: {{ prefix: "/host" }}, route: {{ cluster: b1, host_rewrite_literal: rewritten.example }} }}
    - match: {{ prefix: "/headers" }}
      route: {{ cluster: b1 }}
      request_headers_to_add: [ {{ header: {{ key: x-added, value: "yes" }} }} ]
      response_headers_to_add: [ {{ header: {{ key: x-level, value: route }} }}, {{ header: {{ key: x-route, value: "1" }} }} ]
      response_headers_to_remove: [ x-remove-me ]
    - {{ match: {{ prefix: "/direct" }}, direct_response: {{ status: 418, body: {{ inline_string: teapot }} }} }}
    - {{ match: {{ prefix: "/to-https" }}, redirect: {{ https_redirect: true }} }}
    - {{ match: {{ prefix: "/moved" }}, redirect: {{ path_redirect: "/new-place", response_code: FOUND }} }}
    - {{ match: {{ prefix: "/old/" }}, redirect: {{ prefix_rewrite: "/fresh/", host_redirect: "new.example", strip_query: true }} }}
    - {{ match: {{ prefix: "/unknown-cluster" }}, route: {{ cluster: nope }} }}
    - {{ match: {{ prefix: "/empty" }}, route: {{ cluster: empty }} }}
    - {{ match: {{ prefix: "/dead" }}, route: {{ cluster: dead }} }}
    - {{ match: {{ prefix: "/slowidle" }}, route: {{ cluster: b1, idle_timeout: 0.3s }} }}
    - {{ match: {{ prefix: "/slow" }}, route: {{ cluster: b1, timeout: 0.3s }} }}
    - {{ match: {{ prefix: "/retry" }}, route: {{ cluster: flaky, retry_policy: {{ retry_on: 5xx, num_retries: 3 }} }} }}
    - {{ match: {{ prefix: "/ring" }}, route: {{ cluster: ring, hash_policy: [ {{ header: {{ header_name: x-user }} }}, {{ query_parameter: {{ name: user }} }} ] }} }}
    - {{ match: {{ prefix: "/maglev" }}, route: {{ cluster: maglev, hash_policy: [ {{ cookie: {{ name: sticky }} }}, {{ header: {{ header_name: x-user }} }} ] }} }}
    - {{ match: {{ prefix: "/murmur" }}, route: {{ cluster: murmur, hash_policy: [ {{ header: {{ header_name: x-user }}, terminal: true }}, {{ connection_properties: {{ source_ip: true }} }} ] }} }}
    - {{ match: {{ prefix: "/all-unhealthy" }}, route: {{ cluster: all-unhealthy }} }}
    - {{ match: {{ prefix: "/no-panic" }}, route: {{ cluster: no-panic }} }}
    - {{ match: {{ prefix: "/failover" }}, route: {{ cluster: failover }} }}
    - {{ match: {{ prefix: "/dns-strict" }}, route: {{ cluster: strict }} }}
    - {{ match: {{ prefix: "/dns-logical" }}, route: {{ cluster: logical }} }}
    - {{ match: {{ prefix: "/b" }}, route: {{ cluster: b1 }} }}
"#
    )
}

/// One request and what must agree.
struct Case {
    name: &'static str,
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// The status Envoy must give (proves the case tests what it says).
    status: u16,
}

const COMPARED: [&str; 10] = [
    "x-backend",
    "x-path",
    "location",
    "x-req-host",
    "x-req-x-added",
    "x-level",
    "x-vhost",
    "x-route",
    "x-remove-me",
    "content-type",
];

const CASES: &[Case] = &[
    Case {
        name: "exact domain",
        host: "api.example.com",
        path: "/x",
        headers: &[],
        status: 200,
    },
    Case {
        name: "suffix wildcard domain",
        host: "www.example.com",
        path: "/x",
        headers: &[],
        status: 200,
    },
    Case {
        name: "prefix wildcard domain",
        host: "api.other.org",
        path: "/x",
        headers: &[],
        status: 200,
    },
    Case {
        name: "host with port: not the exact domain",
        host: "api.example.com:8080",
        path: "/x",
        headers: &[],
        status: 200,
    },
    Case {
        name: "catch-all domain",
        host: "other.org",
        path: "/exact",
        headers: &[],
        status: 200,
    },
    Case {
        name: "path: exact only",
        host: "other.org",
        path: "/exact/more",
        headers: &[],
        status: 404,
    },
    Case {
        name: "prefix, case-insensitive",
        host: "other.org",
        path: "/CI/thing",
        headers: &[],
        status: 200,
    },
    Case {
        name: "safe_regex, whole path",
        host: "other.org",
        path: "/re/123",
        headers: &[],
        status: 200,
    },
    Case {
        name: "safe_regex, partial does not match",
        host: "other.org",
        path: "/re/12a",
        headers: &[],
        status: 404,
    },
    Case {
        name: "path_separated_prefix",
        host: "other.org",
        path: "/sep/x",
        headers: &[],
        status: 200,
    },
    Case {
        name: "header exact",
        host: "other.org",
        path: "/hdr",
        headers: &[("x-h", "a")],
        status: 200,
    },
    Case {
        name: "header present",
        host: "other.org",
        path: "/hdr",
        headers: &[("x-p", "")],
        status: 200,
    },
    Case {
        name: "header suffix",
        host: "other.org",
        path: "/hdr",
        headers: &[("x-s", "xyz")],
        status: 200,
    },
    Case {
        name: "header invert, header missing",
        host: "other.org",
        path: "/inv",
        headers: &[],
        status: 404,
    },
    Case {
        name: "header invert, other value",
        host: "other.org",
        path: "/inv",
        headers: &[("x-no", "yes")],
        status: 200,
    },
    Case {
        name: "header invert, header matching",
        host: "other.org",
        path: "/inv",
        headers: &[("x-no", "no")],
        status: 404,
    },
    Case {
        name: "query parameter",
        host: "other.org",
        path: "/q?a=b&debug=1",
        headers: &[],
        status: 200,
    },
    Case {
        name: "weighted clusters",
        host: "other.org",
        path: "/weighted",
        headers: &[],
        status: 200,
    },
    Case {
        name: "cluster_header",
        host: "other.org",
        path: "/by-header",
        headers: &[("x-cluster", "b3")],
        status: 200,
    },
    Case {
        name: "prefix_rewrite",
        host: "other.org",
        path: "/rewrite/a/b?k=v",
        headers: &[],
        status: 200,
    },
    Case {
        name: "regex_rewrite",
        host: "other.org",
        path: "/rx/42",
        headers: &[],
        status: 200,
    },
    Case {
        name: "host_rewrite_literal",
        host: "other.org",
        path: "/host",
        headers: &[],
        status: 200,
    },
    Case {
        name: "header add/remove at three levels",
        host: "other.org",
        path: "/headers",
        headers: &[],
        status: 200,
    },
    Case {
        name: "direct_response",
        host: "other.org",
        path: "/direct",
        headers: &[],
        status: 418,
    },
    Case {
        name: "https redirect",
        host: "other.org",
        path: "/to-https?x=1",
        headers: &[],
        status: 301,
    },
    Case {
        name: "path redirect, 302",
        host: "other.org",
        path: "/moved",
        headers: &[],
        status: 302,
    },
    Case {
        name: "prefix + host redirect, strip query",
        host: "other.org:8080",
        path: "/old/a?x=1",
        headers: &[],
        status: 301,
    },
    Case {
        name: "no route: 404",
        host: "other.org",
        path: "/nothing-here",
        headers: &[],
        status: 404,
    },
    Case {
        name: "unknown cluster: 503",
        host: "other.org",
        path: "/unknown-cluster",
        headers: &[],
        status: 503,
    },
    Case {
        name: "no healthy upstream: 503",
        host: "other.org",
        path: "/empty",
        headers: &[],
        status: 503,
    },
    Case {
        name: "connect failure: 503",
        host: "other.org",
        path: "/dead",
        headers: &[],
        status: 503,
    },
    Case {
        name: "route timeout: 504",
        host: "other.org",
        path: "/slow",
        headers: &[],
        status: 504,
    },
    Case {
        name: "route idle_timeout before the response",
        host: "other.org",
        path: "/slowidle",
        headers: &[],
        status: 504,
    },
    Case {
        name: "retry on 5xx reaches the good host",
        host: "other.org",
        path: "/retry",
        headers: &[],
        status: 200,
    },
    Case {
        name: "ring hash: header alice",
        host: "other.org",
        path: "/ring",
        headers: &[("x-user", "alice")],
        status: 200,
    },
    Case {
        name: "ring hash: header bob",
        host: "other.org",
        path: "/ring",
        headers: &[("x-user", "bob")],
        status: 200,
    },
    Case {
        name: "ring hash: header carol",
        host: "other.org",
        path: "/ring",
        headers: &[("x-user", "carol")],
        status: 200,
    },
    Case {
        name: "ring hash: header dave",
        host: "other.org",
        path: "/ring",
        headers: &[("x-user", "dave")],
        status: 200,
    },
    Case {
        name: "ring hash: query parameter erin",
        host: "other.org",
        path: "/ring?user=erin",
        headers: &[],
        status: 200,
    },
    Case {
        name: "ring hash: query parameter frank",
        host: "other.org",
        path: "/ring?user=frank",
        headers: &[],
        status: 200,
    },
    Case {
        name: "ring hash: header and query folded",
        host: "other.org",
        path: "/ring?user=erin",
        headers: &[("x-user", "alice")],
        status: 200,
    },
    Case {
        name: "maglev: cookie abc",
        host: "other.org",
        path: "/maglev",
        headers: &[("cookie", "a=1; sticky=abc")],
        status: 200,
    },
    Case {
        name: "maglev: cookie def",
        host: "other.org",
        path: "/maglev",
        headers: &[("cookie", "sticky=def")],
        status: 200,
    },
    Case {
        name: "maglev: header alice",
        host: "other.org",
        path: "/maglev",
        headers: &[("x-user", "alice")],
        status: 200,
    },
    Case {
        name: "maglev: header grace",
        host: "other.org",
        path: "/maglev",
        headers: &[("x-user", "grace")],
        status: 200,
    },
    Case {
        name: "ring hash murmur2: terminal header",
        host: "other.org",
        path: "/murmur",
        headers: &[("x-user", "zed")],
        status: 200,
    },
    Case {
        name: "ring hash murmur2: source ip",
        host: "other.org",
        path: "/murmur",
        headers: &[],
        status: 200,
    },
    Case {
        name: "STRICT_DNS cluster (localhost)",
        host: "other.org",
        path: "/dns-strict",
        headers: &[],
        status: 200,
    },
    Case {
        name: "LOGICAL_DNS cluster (localhost)",
        host: "other.org",
        path: "/dns-logical",
        headers: &[],
        status: 200,
    },
    Case {
        name: "panic: the only host unhealthy still gets the request",
        host: "other.org",
        path: "/all-unhealthy",
        headers: &[],
        status: 200,
    },
    Case {
        name: "panic disabled (threshold 0): 503",
        host: "other.org",
        path: "/no-panic",
        headers: &[],
        status: 503,
    },
    // Refused by the HTTP/1 codec before routing (a request smuggling vector and malformed
    // heads): Envoy's status and its "Bad Request"-style body, then a close.
    Case {
        name: "codec: Transfer-Encoding with Content-Length is 400",
        host: "other.org",
        path: "/exact",
        headers: &[("transfer-encoding", "chunked"), ("content-length", "3")],
        status: 400,
    },
    Case {
        name: "codec: a transfer coding other than chunked is 501",
        host: "other.org",
        path: "/exact",
        headers: &[("transfer-encoding", "gzip")],
        status: 501,
    },
    Case {
        name: "codec: a control byte in a header value is 400",
        host: "other.org",
        path: "/exact",
        headers: &[("x-bad", "a\u{1}b")],
        status: 400,
    },
    Case {
        name: "codec: two Content-Length headers are 400",
        host: "other.org",
        path: "/exact",
        headers: &[("content-length", "0"), ("content-length", "0")],
        status: 400,
    },
    Case {
        name: "priority failover: P0 unhealthy, P1 answers",
        host: "other.org",
        path: "/failover",
        headers: &[],
        status: 200,
    },
];

/// What is compared of a reply: status, the headers above, and the body of local replies.
fn summary(r: &http::Reply) -> BTreeMap<String, String> {
    let mut s: BTreeMap<String, String> = COMPARED
        .iter()
        .filter_map(|h| r.header(h).map(|v| (h.to_string(), v.to_string())))
        .collect();
    s.insert("status".into(), r.status.to_string());
    if r.header("x-backend").is_none() {
        s.insert("body".into(), r.text());
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_and_our_dataplane_answer_alike() {
    let work = tempfile::tempdir().unwrap();
    let dir = config_dir(work.path());
    let mut backends = Vec::new();
    let mut ports = BTreeMap::new();
    for name in ["b1", "b2", "b3", "bad"] {
        let b = Backend::start(name).await;
        ports.insert(name, b.port());
        backends.push(b);
    }
    ports.insert("dead", free_port());
    let (envoy_port, our_port) = (free_port(), free_port());
    let group = |name: &str, port: u16| {
        format!(
            "node_group: {{ name: {name}, node_ids: [\"{name}-*\"] }}\nresources:{}",
            resources(port, &ports)
        )
    };
    write(&dir, "envoy.yaml", &group("envoy", envoy_port));
    write(&dir, "ours.yaml", &group("ours", our_port));
    let cp = Controlplane::start(&dir, work.path());
    let _envoy = Envoy::start("envoy-1", &cp.xds, Api::Sotw, work.path()).await;
    let (host, port) = cp.xds.rsplit_once(':').unwrap();
    let _ours = Dataplane::start(
        &envoy_bootstrap("ours-1", host, port, "GRPC"),
        "dataplane",
        work.path(),
    );
    for port in [envoy_port, our_port] {
        let addr = format!("127.0.0.1:{port}");
        eventually(&format!("{addr} to route /exact to b1"), || {
            let addr = addr.clone();
            async move {
                http::get(&addr, "/exact", &[("host", "other.org")])
                    .await
                    .filter(|r| r.header("x-backend") == Some("b1"))
            }
        })
        .await;
    }

    let mut disagreements = Vec::new();
    let mut wrong = Vec::new();
    println!("| case | Envoy | ours | agree |\n|---|---|---|---|");
    for case in CASES {
        let mut headers = vec![("host", case.host)];
        headers.extend_from_slice(case.headers);
        let envoy = http::get(&format!("127.0.0.1:{envoy_port}"), case.path, &headers)
            .await
            .expect("Envoy answers");
        let ours = http::get(&format!("127.0.0.1:{our_port}"), case.path, &headers)
            .await
            .expect("our dataplane answers");
        let (e, o) = (summary(&envoy), summary(&ours));
        let agree = e == o;
        let short = |s: &BTreeMap<String, String>| {
            format!(
                "{} {}",
                s["status"],
                s.get("x-backend")
                    .or(s.get("location"))
                    .or(s.get("body"))
                    .cloned()
                    .unwrap_or_default()
            )
        };
        println!(
            "| {} | {} | {} | {} |",
            case.name,
            short(&e),
            short(&o),
            if agree { "yes" } else { "NO" }
        );
        if envoy.status != case.status {
            wrong.push(format!(
                "{}: Envoy answered {}, the case expects {}",
                case.name, envoy.status, case.status
            ));
        }
        if !agree {
            disagreements.push(format!("{}:\n  envoy {e:?}\n  ours  {o:?}", case.name));
        }
    }
    assert!(
        wrong.is_empty(),
        "cases that do not test what they say:\n{}",
        wrong.join("\n")
    );
    assert!(
        disagreements.is_empty(),
        "our dataplane disagrees with Envoy:\n{}",
        disagreements.join("\n")
    );
    assert!(CASES.len() >= 25);
}
