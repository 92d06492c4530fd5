//! Access logs, real Envoy 1.40 against our dataplane: the same listeners, routes, clusters
//! and `access_log` (static bootstraps identical but for ports and log paths), the same
//! requests to both, and the log lines compared field by field. Values that legitimately
//! differ (times, durations, ports, request ids, connection ids) are compared by shape:
//! both present with the same form, or both missing.
//!
//! Cases: a forwarded GET with headers, a POST with a body, a direct response, no route
//! (404 NR), a refused connection (503 UF), a cluster without hosts (503 UH), mTLS with the
//! client's URI and DNS SANs, a tcp_proxy connection, requests the HTTP/1 codec refuses
//! (malformed heads, a bad chunk after routing); the default text format; a filter.
//! Then over xDS: a format with an unknown operator is NACKed by both with the same reason
//! and the previous listener keeps serving and logging.

#![allow(clippy::unwrap_used)]

mod support;

#[path = "../dataplane/tests/support/pki.rs"]
mod pki;
#[path = "../dataplane/tests/support/tls.rs"]
mod tls;
#[path = "../dataplane/tests/support/tls_yaml.rs"]
mod tls_yaml;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use pki::Ca;
use support::backend::Backend;
use support::config::{config_dir, envoy_bootstrap, write};
use support::{Api, Controlplane, DEADLINE, Dataplane, Envoy, eventually, free_port, http};
use tls::{Client, Session, install_provider};

/// Every operator we have, as `key: "%OPERATOR%"` (Envoy writes the keys sorted).
const FIELDS: &[(&str, &str)] = &[
    ("case", "%REQ(X-CASE)%"),
    ("start", "%START_TIME%"),
    ("start_s", "%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("protocol", "%PROTOCOL%"),
    ("code", "%RESPONSE_CODE%"),
    ("details", "%RESPONSE_CODE_DETAILS%"),
    ("flags", "%RESPONSE_FLAGS%"),
    ("rx", "%BYTES_RECEIVED%"),
    ("tx", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("rq_duration", "%REQUEST_DURATION%"),
    ("rs_duration", "%RESPONSE_DURATION%"),
    ("ua", "%REQ(USER-AGENT)%"),
    ("ua_cut", "%REQ(USER-AGENT):6%"),
    ("xff", "%REQ(X-FORWARDED-FOR)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("backend", "%RESP(X-BACKEND)%"),
    ("service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_local", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("failure", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
    ("remote", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("remote_ip", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
    ("local", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("uri_san", "%DOWNSTREAM_PEER_URI_SAN%"),
    ("dns_san", "%DOWNSTREAM_PEER_DNS_SAN%"),
    ("sni", "%REQUESTED_SERVER_NAME%"),
    ("route", "%ROUTE_NAME%"),
    ("hostname", "%HOSTNAME%"),
    ("attempts", "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"),
    ("connection", "%CONNECTION_ID%"),
    (
        "mixed",
        "code=%RESPONSE_CODE% flags=%RESPONSE_FLAGS% none=%REQ(X-NONE)%",
    ),
];

/// Compared by form only: times, durations, ports, ids.
const SHAPE_ONLY: &[&str] = &[
    "start",
    "start_s",
    "duration",
    "rq_duration",
    "rs_duration",
    "request_id",
    "service_time",
    "upstream_local",
    "remote",
    "local",
    "connection",
];

/// (line, field) pairs known to differ. The request with a bad chunk is refused while its
/// upstream connection is being made: Envoy knows that connection's local address as soon
/// as it starts connecting, we only once it is connected (not yet, then).
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[("http/\"bad-chunk\"", "upstream_local")];

/// Ports and paths of one proxy's bootstrap.
struct Proxy {
    http: u16,
    tls: u16,
    tcp: u16,
    json_log: String,
    text_log: String,
    errors_log: String,
}

impl Proxy {
    fn new(dir: &Path, name: &str) -> Proxy {
        let log = |kind: &str| dir.join(format!("{name}-{kind}.log")).display().to_string();
        Proxy {
            http: free_port(),
            tls: free_port(),
            tcp: free_port(),
            json_log: log("json"),
            text_log: log("text"),
            errors_log: log("errors"),
        }
    }
}

/// A file logger with a JSON format of [`FIELDS`] and a `listener` literal.
fn json_logger(path: &str, listener: &str) -> String {
    let fields: Vec<String> = FIELDS
        .iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .chain([format!("listener: {listener}")])
        .collect();
    format!(
        r#"{{ name: envoy.access_loggers.file, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: {path:?}, log_format: {{ json_format: {{ {} }} }} }} }}"#,
        fields.join(", ")
    )
}

/// The default format (no log_format), and one that writes only errors and no-route replies.
fn text_loggers(p: &Proxy) -> String {
    format!(
        r#"{{ name: envoy.access_loggers.file, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: {:?} }} }},
           {{ name: envoy.access_loggers.file, filter: {{ or_filter: {{ filters: [ {{ status_code_filter: {{ comparison: {{ op: GE, value: {{ default_value: 500, runtime_key: errors }} }} }} }}, {{ response_flag_filter: {{ flags: [NR] }} }} ] }} }},
             typed_config: {{ "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: {:?}, log_format: {{ text_format_source: {{ inline_string: "%REQ(X-CASE)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n" }} }} }} }}"#,
        p.text_log, p.errors_log
    )
}

fn hcm(routes: &str, loggers: &str) -> String {
    format!(
        r#"{{ name: envoy.filters.network.http_connection_manager, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, access_log: [ {loggers} ], route_config: {{ virtual_hosts: [ {{ name: v, domains: ["*"], routes: [ {routes} ] }} ] }}, http_filters: [ {{ name: envoy.filters.http.router, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }} }} ] }} }}"#
    )
}

fn listener(name: &str, port: u16, chain: &str) -> String {
    format!(
        r#"{{ name: {name}, address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}, filter_chains: [ {chain} ] }}"#
    )
}

/// One proxy's bootstrap: the HTTP, mTLS and tcp_proxy listeners, all logging.
fn bootstrap(p: &Proxy, backend: u16, dead: u16, ca: &Ca, server: &pki::Leaf) -> String {
    let routes = r#"{ name: ok, match: { prefix: "/ok" }, route: { cluster: backend } },
        { name: slow, match: { prefix: "/slow" }, route: { cluster: backend } },
        { match: { prefix: "/dead" }, route: { cluster: dead } },
        { name: empty, match: { prefix: "/empty" }, route: { cluster: empty } },
        { name: direct, match: { prefix: "/direct" }, direct_response: { status: 200, body: { inline_string: hello } } }"#;
    let loggers = format!("{}, {}", json_logger(&p.json_log, "http"), text_loggers(p));
    let http = listener(
        "http",
        p.http,
        &format!("{{ filters: [ {} ] }}", hcm(routes, &loggers)),
    );
    let common = format!(
        r#", validation_context: {{ trusted_ca: {{ inline_string: {} }} }}"#,
        pki::yaml(&ca.pem)
    );
    let tls_socket = tls_yaml::downstream(&[server], &common, ", require_client_certificate: true");
    let tls_routes = r#"{ name: tls, match: { prefix: "/" }, route: { cluster: backend } }"#;
    // With the TLS inspector: Envoy knows the SNI (%REQUESTED_SERVER_NAME%) only from it.
    let tls = tls_yaml::listener(
        "mtls",
        p.tls,
        &[format!(
            "{{ transport_socket: {tls_socket}, filters: [ {} ] }}",
            hcm(tls_routes, &json_logger(&p.json_log, "mtls"))
        )],
        "",
    );
    let tcp = listener(
        "tcp",
        p.tcp,
        &format!(
            r#"{{ filters: [ {{ name: envoy.filters.network.tcp_proxy, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend, access_log: [ {} ] }} }} ] }}"#,
            json_logger(&p.json_log, "tcp")
        ),
    );
    let empty = r#"{ name: empty, type: STATIC, connect_timeout: 1s, load_assignment: { cluster_name: empty, endpoints: [] } }"#;
    tls_yaml::bootstrap(
        &[http, tls, tcp],
        &[
            tls_yaml::cluster("backend", backend, ""),
            tls_yaml::cluster("dead", dead, ""),
            empty.to_string(),
        ],
    )
}

/// The HTTP requests: (case, method, path, body).
const REQUESTS: &[(&str, &str, &str, &str)] = &[
    ("get", "GET", "/ok/x?q=1", ""),
    ("post", "POST", "/ok/form", "hello world"),
    ("direct", "GET", "/direct", ""),
    ("no-route", "GET", "/nothing", ""),
    ("refused", "GET", "/dead", ""),
    ("refused-post", "POST", "/dead", "hello"),
    ("no-host", "GET", "/empty", ""),
];

/// Requests the HTTP/1 codec refuses (Envoy logs each with its status, details and DPE):
/// the case (for our keys; a refused head has no headers in the log), the bytes.
fn refused_requests() -> Vec<(&'static str, Vec<u8>)> {
    let head = |lines: &str| {
        format!("GET /ok/x HTTP/1.1\r\nHost: parity.test\r\n{lines}\r\n").into_bytes()
    };
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    vec![
        (
            "te-and-cl",
            head("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
        ),
        ("gzip", head("Transfer-Encoding: gzip\r\n")),
        ("two-cl", head("Content-Length: 0\r\nContent-Length: 0\r\n")),
        ("control-byte", head("x-bad: a\u{1}b\r\n")),
        ("bad-name", head("x(y: 1\r\n")),
        ("too-large", head(&format!("x-big: {}\r\n", "a".repeat(70 * 1024)))),
        ("too-many", head(&many)),
        (
            "http-1.2",
            b"GET /ok/x HTTP/1.2\r\nHost: parity.test\r\n\r\n".to_vec(),
        ),
        (
            "bad-line",
            b"GET /ok/a b HTTP/1.1\r\nHost: parity.test\r\n\r\n".to_vec(),
        ),
        // Routed before its body turns out malformed.
        (
            "bad-chunk",
            b"POST /ok/chunk HTTP/1.1\r\nHost: parity.test\r\nx-case: bad-chunk\r\nuser-agent: parity-agent/1.0\r\nx-forwarded-for: 10.1.2.3\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        ),
    ]
}

/// Sends every case to one proxy.
async fn drive(p: &Proxy, ca: &Ca, client: &pki::Leaf) {
    let addr = format!("127.0.0.1:{}", p.http);
    for (case, method, path, body) in REQUESTS {
        let headers = [
            ("host", "parity.test"),
            ("x-case", *case),
            ("user-agent", "parity-agent/1.0"),
            ("x-forwarded-for", "10.1.2.3"),
        ];
        http::send(&addr, method, path, &headers, body.as_bytes())
            .await
            .unwrap_or_else(|| panic!("{case}: no answer from {addr}"));
    }
    for (case, bytes) in refused_requests() {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let mut reply = Vec::new();
        // Read to the close (a reset when the proxy closed with bytes unread).
        let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut reply)).await;
        assert!(
            reply.starts_with(b"HTTP/1.1 4") || reply.starts_with(b"HTTP/1.1 5"),
            "{case}: {reply:?}"
        );
    }
    // A head the client cuts off: Envoy logs a disconnect.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /ok/cut HTTP/1.1\r\nHost: parity.test\r\n")
        .await
        .unwrap();
    drop(s);
    // A client that gives up before the (2 s) answer comes: Envoy logs a downstream
    // disconnect.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: parity.test\r\nx-case: gone\r\nuser-agent: parity-agent/1.0\r\nx-forwarded-for: 10.1.2.3\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(s);
    // mTLS, HTTP/1.1, a client certificate with a URI and a DNS SAN.
    let mut c = Client::new(&ca.pem, "parity.test");
    c.cert = Some(client.clone());
    let stream = c.connect(p.tls).await.unwrap();
    let mut session = Session::start(stream).await.unwrap();
    let r = session.get("parity.test", "/tls").await.unwrap();
    assert_eq!(r.status(), 200);
    drop(session);
    // tcp_proxy: one HTTP exchange through it, read to the backend's close.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.tcp))
        .await
        .unwrap();
    s.write_all(b"GET /tcp HTTP/1.1\r\nHost: parity.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200"), "{reply:?}");
}

/// The JSON lines of a log once `count` of them (with a case, refused by the codec, or from
/// mTLS/tcp) are there, by `listener/case` (`http/refused-<n>` for the n-th refused head).
async fn json_lines(path: &str, count: usize) -> BTreeMap<String, Value> {
    eventually(&format!("{count} log lines in {path}"), || async move {
        let text = std::fs::read_to_string(path).ok()?;
        // The writer may be in the middle of a line: only whole lines are read.
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        let mut cut = 0;
        let lines: BTreeMap<String, Value> = whole
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .filter(|v| v["listener"] != "http" || !v["case"].is_null() || refused(v))
            .map(|v| {
                let case = if v["case"].is_null() && refused(&v) {
                    cut += 1;
                    format!("refused-{cut}")
                } else {
                    v["case"].to_string()
                };
                (format!("{}/{case}", v["listener"].as_str().unwrap()), v)
            })
            .collect();
        (lines.len() >= count).then_some(lines)
    })
    .await
}

/// A line of a request the codec refused, or whose head was cut off.
fn refused(v: &Value) -> bool {
    v["flags"] == "DPE" || v["flags"] == "DC"
}

/// The form of a value whose content legitimately differs between two proxies.
fn shape(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Number(_) => "number".into(),
        Value::String(s) => s
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { 'x' } else { c })
            .collect::<String>()
            // Ports and ids vary in length.
            .split(|c: char| c != 'x')
            .map(|run| if run.is_empty() { "" } else { "x" })
            .collect::<Vec<_>>()
            .join("."),
        other => other.to_string(),
    }
}

/// Envoy's default line with times, durations and the request id masked.
fn masked(line: &str) -> String {
    let mut tokens: Vec<String> = line.split(' ').map(str::to_string).collect();
    for i in [0, 8, 9] {
        if let Some(t) = tokens.get_mut(i)
            && t != "-"
        {
            *t = "*".into();
        }
    }
    // `"<x-request-id>"` is the 13th token.
    if let Some(t) = tokens.get_mut(12) {
        *t = shape(&Value::String(t.clone()));
    }
    tokens.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_match_envoys() {
    install_provider();
    let work = tempfile::tempdir().unwrap();
    let backend = Backend::start("b1").await;
    let dead = free_port();
    let ca = Ca::new("parity-ca");
    let server = ca.leaf("parity.test", &["parity.test"], &[], false);
    let client = ca.leaf(
        "client",
        &["client.parity.test"],
        &["spiffe://parity/client"],
        false,
    );
    let envoy_p = Proxy::new(work.path(), "envoy");
    let ours_p = Proxy::new(work.path(), "ours");
    let _envoy = Envoy::start_static(
        &bootstrap(&envoy_p, backend.port(), dead, &ca, &server),
        "envoy",
        work.path(),
    )
    .await;
    let _ours = Dataplane::start(
        &bootstrap(&ours_p, backend.port(), dead, &ca, &server),
        "dataplane",
        work.path(),
    );
    for p in [&envoy_p, &ours_p] {
        let addr = format!("127.0.0.1:{}", p.http);
        eventually(&format!("{addr} to answer"), || {
            let addr = addr.clone();
            async move { http::get(&addr, "/direct", &[]).await }
        })
        .await;
        drive(p, &ca, &client).await;
    }
    let expected = REQUESTS.len() + 4 + refused_requests().len();
    let envoy = json_lines(&envoy_p.json_log, expected).await;
    let ours = json_lines(&ours_p.json_log, expected).await;
    assert_eq!(
        envoy.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    let mut disagreements = Vec::new();
    for (key, e) in &envoy {
        let o = &ours[key];
        let names = e.as_object().unwrap().keys();
        assert_eq!(
            names.clone().collect::<Vec<_>>(),
            o.as_object().unwrap().keys().collect::<Vec<_>>(),
            "{key}"
        );
        for name in names {
            if KNOWN_DIFFERENCES.contains(&(key.as_str(), name.as_str())) {
                continue;
            }
            let (ev, ov) = (&e[name], &o[name]);
            let (ev, ov) = if SHAPE_ONLY.contains(&name.as_str()) {
                (Value::String(shape(ev)), Value::String(shape(ov)))
            } else {
                (ev.clone(), ov.clone())
            };
            if ev != ov {
                disagreements.push(format!("{key} {name}: Envoy {ev}, ours {ov}"));
            }
        }
    }
    println!("Envoy's lines:");
    for v in envoy.values() {
        println!("{v}");
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // The peer identity is the client certificate's, in both.
    assert_eq!(ours["mtls/null"]["uri_san"], "spiffe://parity/client");
    assert_eq!(ours["mtls/null"]["dns_san"], "client.parity.test");

    // The default format, masked where values differ, and the filtered log.
    for (what, envoy_path, our_path) in [
        ("default format", &envoy_p.text_log, &ours_p.text_log),
        ("filtered", &envoy_p.errors_log, &ours_p.errors_log),
    ] {
        let read = |path: &str| {
            let path = path.to_string();
            async move {
                let text = std::fs::read_to_string(&path).ok()?;
                let lines: Vec<String> = text
                    .lines()
                    // The warm-up requests (no headers) are not cases.
                    .filter(|l| what == "filtered" || l.contains("parity"))
                    .map(|l| {
                        if what == "filtered" {
                            l.to_string()
                        } else {
                            masked(l)
                        }
                    })
                    .collect();
                (!lines.is_empty()).then_some(lines)
            }
        };
        // The routed request with a bad chunk has a host; the refused 501 is an error.
        let want = if what == "filtered" {
            5
        } else {
            REQUESTS.len() + 2
        };
        let e = eventually(what, || async {
            read(envoy_path).await.filter(|l| l.len() >= want)
        })
        .await;
        let o = eventually(what, || async {
            read(our_path).await.filter(|l| l.len() >= want)
        })
        .await;
        assert_eq!(e, o, "{what}");
        if what == "filtered" {
            assert_eq!(
                e,
                [
                    "no-route 404 NR",
                    "refused 503 UF",
                    "refused-post 503 UF",
                    "no-host 503 UH",
                    "- 501 DPE"
                ]
            );
        }
    }
}

/// A listener over xDS whose HTTP access log has `format` (a text format).
fn xds_listener(port: u16, log: &str, format: &str) -> String {
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: logged
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: logged
        access_log:
        - name: envoy.access_loggers.file
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
            path: {log:?}
            log_format: {{ text_format_source: {{ inline_string: {format:?} }} }}
        route_config:
          virtual_hosts: [ {{ name: v, domains: ["*"], routes: [ {{ match: {{ prefix: "/" }}, direct_response: {{ status: 200, body: {{ inline_string: ok }} }} }} ] }} ]
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_operator_is_nacked_like_envoy_and_the_old_log_stays() {
    let work = tempfile::tempdir().unwrap();
    let dir = config_dir(work.path());
    let proxies = [("envoy", free_port()), ("ours", free_port())];
    let log = |name: &str| {
        work.path()
            .join(format!("{name}.log"))
            .display()
            .to_string()
    };
    let group = |name: &str, port: u16, format: &str| {
        format!(
            "node_group: {{ name: {name}, node_ids: [\"{name}-*\"] }}\nresources:{}",
            xds_listener(port, &log(name), format)
        )
    };
    for (name, port) in proxies {
        write(
            &dir,
            &format!("{name}.yaml"),
            &group(name, port, "v1 %REQ(X-CASE)% %RESPONSE_CODE%\n"),
        );
    }
    let cp = Controlplane::start(&dir, work.path());
    let _envoy = Envoy::start("envoy-1", &cp.xds, Api::Sotw, work.path()).await;
    let (host, port) = cp.xds.rsplit_once(':').unwrap();
    let _ours = Dataplane::start(
        &envoy_bootstrap("ours-1", host, port, "GRPC"),
        "dataplane",
        work.path(),
    );
    for (_, port) in proxies {
        let addr = format!("127.0.0.1:{port}");
        eventually(&format!("{addr} to answer"), || {
            let addr = addr.clone();
            async move { http::get(&addr, "/", &[]).await.filter(|r| r.status == 200) }
        })
        .await;
    }
    for (name, port) in proxies {
        write(
            &dir,
            &format!("{name}.yaml"),
            &group(name, port, "v2 %BOGUS_OP% %RESPONSE_CODE%\n"),
        );
    }
    let mut details = Vec::new();
    for node in ["envoy-1", "ours-1"] {
        let nack = eventually(&format!("{node}'s NACK of the listener"), || async {
            let lds = cp.proxy_type(node, "LDS").await?;
            (!lds["last_nack"].is_null()).then_some(lds)
        })
        .await;
        let detail = nack["last_nack"]["error_detail"]
            .as_str()
            .unwrap()
            .to_string();
        println!("{node} NACKed: {detail}");
        assert!(
            detail.contains("Not supported field in StreamInfo: BOGUS_OP"),
            "{node}: {detail}"
        );
        details.push(detail);
    }
    // Ours also names the listener and the field.
    assert!(
        details[1].contains("listener \"logged\"")
            && details[1].contains("access_log[0].typed_config.log_format.text_format_source"),
        "{}",
        details[1]
    );
    // Both keep serving and logging with the format they had.
    for (name, port) in proxies {
        let r = http::get(&format!("127.0.0.1:{port}"), "/", &[("x-case", "after")])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let path = log(name);
        eventually(
            &format!("{name}'s line for the request after the NACK"),
            || {
                let path = path.clone();
                async move {
                    std::fs::read_to_string(&path)
                        .ok()
                        .filter(|t| t.contains("v1 after 200\n"))
                }
            },
        )
        .await;
    }
}
