//! HTTP edge cases, real Envoy 1.40 against our dataplane on the same static bootstrap (but
//! for the listener port), the same bytes sent to both and what comes back compared:
//!
//! - an upstream that answers before it read the request body (and may close): its answer
//!   is forwarded, with `connection: close`, and the downstream connection is closed;
//! - request trailers, HTTP/1 chunked and HTTP/2, to HTTP/1 and HTTP/2 upstreams, and the
//!   response trailers an HTTP/2 client gets (as gRPC's `grpc-status`);
//! - obs-fold (a header line continued by one starting with whitespace), in a request and in
//!   an upstream's response.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::backend::Backend;
use support::config::{static_cluster, static_http_bootstrap};
use support::{DEADLINE, SideBySide, http};

/// Upstream HTTP/2 (prior knowledge), as a cluster's fields.
const H2: &str = r#"typed_extension_protocol_options: { envoy.extensions.upstreams.http.v3.HttpProtocolOptions: { "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: { http2_protocol_options: {} } } },"#;

/// Ports of the upstreams.
struct Upstreams {
    h1: u16,
    h2: u16,
    early_close: u16,
    early_open: u16,
    folding: u16,
}

fn bootstrap(port: u16, u: &Upstreams) -> String {
    let routes = r#"{ match: { prefix: "/early-close" }, route: { cluster: early_close } },
        { match: { prefix: "/fold-up" }, route: { cluster: folding } },
        { match: { prefix: "/early-open" }, route: { cluster: early_open } },
        { match: { prefix: "/h2/retry/" }, route: { cluster: h2, retry_policy: { retry_on: 5xx, num_retries: 1 } } },
        { match: { prefix: "/h2/" }, route: { cluster: h2 } },
        { match: { prefix: "/" }, route: { cluster: h1 } }"#;
    let clusters = [
        static_cluster("h1", &[u.h1], ""),
        static_cluster("h2", &[u.h2], H2),
        static_cluster("early_close", &[u.early_close], ""),
        static_cluster("early_open", &[u.early_open], ""),
        static_cluster("folding", &[u.folding], ""),
    ];
    static_http_bootstrap("edge", port, "s", routes, &clusters)
}

/// An HTTP/1 upstream that answers `200 early` as soon as it has a request head, without
/// reading the body; then closes at once (`close`), or keeps reading what comes.
async fn early_upstream(close: bool) -> u16 {
    if close {
        raw_upstream(
            "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 5\r\n\r\nearly",
            false,
        )
        .await
    } else {
        raw_upstream("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly", true).await
    }
}

/// An HTTP/1 upstream that writes `reply` as soon as it has a request head; then keeps
/// reading what comes (`keep_reading`) or closes.
async fn raw_upstream(reply: &'static str, keep_reading: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                if s.write_all(reply.as_bytes()).await.is_err() || !keep_reading {
                    return;
                }
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// A response header folded over two lines (obs-fold), from the upstream.
const FOLDED_RESPONSE: &str =
    "HTTP/1.1 200 OK\r\nx-up: a\r\n  b\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

/// What a client saw of an early answer: the response, and whether the proxy closed the
/// connection after it (while the client was still sending its body).
#[derive(Debug, PartialEq)]
struct Early {
    status: u16,
    body: String,
    connection: Option<String>,
    /// Envoy measures it from the end of the request: none here.
    service_time: bool,
    closed: bool,
}

/// A POST announcing 100,000 bytes, sent 1,000 at a time while reading what comes back.
async fn early(addr: &str, path: &str) -> Early {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: edge\r\ncontent-length: 100000\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(&[b'x'; 1000]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Kept open: only the proxy closing ends the read below.
        tokio::time::sleep(DEADLINE).await;
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    let mut closed = false;
    while Instant::now() < end {
        match tokio::time::timeout_at(end.into(), rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
            // EOF, or a reset because the proxy closed with our body unread.
            Ok(_) => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    writer.abort();
    let reply = http::parse(&raw).unwrap_or_else(|| panic!("{addr}: no response in {raw:?}"));
    Early {
        status: reply.status,
        body: reply.text(),
        connection: reply.header("connection").map(str::to_string),
        service_time: reply.header("x-envoy-upstream-service-time").is_some(),
        closed,
    }
}

/// What is compared of a trailers case: status, body, what the backend said it got of the
/// request (its trailers, its length), and the response's trailers.
type Seen = BTreeMap<String, String>;

fn seen<'a>(
    status: u16,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    body: &[u8],
    trailers: Option<&::http::HeaderMap>,
) -> Seen {
    let mut s: Seen = headers
        .filter(|(k, _)| k.starts_with("x-trailer-") || *k == "x-body-len" || *k == "x-backend")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.insert("status".into(), status.to_string());
    s.insert("body".into(), String::from_utf8_lossy(body).into_owned());
    for (k, v) in trailers.into_iter().flatten() {
        s.insert(
            format!("trailer {k}"),
            v.to_str().unwrap_or("?").to_string(),
        );
    }
    s
}

/// Bytes sent on a new connection, the response read to the close.
async fn raw(addr: &str, request: &str) -> http::Reply {
    let run = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| panic!("{addr}: no close within 10 s"));
    http::parse(&raw).unwrap_or_else(|| panic!("{addr}: no response in {raw:?}"))
}

/// A chunked HTTP/1.1 POST of `hello` with request trailers.
async fn h1_trailers(addr: &str, path: &str) -> Seen {
    let r = raw(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nhost: edge\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: one\r\nx-u: two\r\n\r\n"
        ),
    )
    .await;
    seen(
        r.status,
        r.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &r.body,
        None,
    )
}

/// An HTTP/2 (prior knowledge) POST of `hello` with request trailers, with its
/// `content-length` or not; the response's trailers are read too.
async fn h2_trailers(addr: &str, path: &str, length: bool) -> Seen {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut t = ::http::HeaderMap::new();
    t.insert("x-t", ::http::HeaderValue::from_static("one"));
    t.insert("x-u", ::http::HeaderValue::from_static("two"));
    let frames = [
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"hello"))),
        Ok(Frame::trailers(t)),
    ];
    let mut req = ::http::Request::post(format!("http://edge{path}"));
    if length {
        req = req.header("content-length", "5");
    }
    let req = req
        .body(StreamBody::new(tokio_stream::iter(frames)))
        .unwrap();
    let run = async {
        let resp = send.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (parts, collected.to_bytes(), trailers)
    };
    let (parts, body, trailers) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or_else(|_| panic!("{addr}: no HTTP/2 response within 10 s"));
    seen(
        parts.status.as_u16(),
        parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("?"))),
        &body,
        trailers.as_ref(),
    )
}

/// obs-fold cases: (name, the folded header lines of the request).
const FOLDS: &[(&str, &str)] = &[
    ("one space", "x-f: a\r\n b\r\n"),
    ("two spaces", "x-f: a\r\n  b\r\n"),
    ("tab, then trailing space", "x-f: a\r\n\tb c \r\n"),
    ("space before the fold", "x-f: a \r\n b\r\n"),
    ("two continuations", "x-f: a\r\n b\r\n c\r\n"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cases_match_envoy() {
    let work = tempfile::tempdir().unwrap();
    let h1 = Backend::start("h1").await;
    let h2 = Backend::start("h2").await;
    let upstreams = Upstreams {
        h1: h1.port(),
        h2: h2.port(),
        early_close: early_upstream(true).await,
        early_open: early_upstream(false).await,
        folding: raw_upstream(FOLDED_RESPONSE, false).await,
    };
    let proxies = SideBySide::start(|port| bootstrap(port, &upstreams), work.path()).await;
    let [envoy, ours] = &proxies.addrs;
    let mut disagreements = Vec::new();

    // The upstream answers before the body is sent.
    for path in ["/early-close", "/early-open"] {
        let (e, o) = (early(envoy, path).await, early(ours, path).await);
        println!("{path}: Envoy {e:?}, ours {o:?}");
        let want = if path == "/early-close" { 413 } else { 200 };
        assert_eq!(
            (e.status, e.body.as_str(), e.connection.as_deref(), e.closed),
            (want, "early", Some("close"), true),
            "{path}: Envoy does not do what the case says"
        );
        if e != o {
            disagreements.push(format!("{path}: Envoy {e:?}, ours {o:?}"));
        }
    }

    // Trailers, each way.
    let mut envoy_h2_to_h2 = Seen::new();
    for (name, path, h2) in [
        ("h1 -> h1", "/trailers", None),
        ("h1 -> h2", "/h2/trailers", None),
        ("h2 -> h1", "/trailers", Some(false)),
        ("h2 -> h2", "/h2/trailers", Some(false)),
        ("h2 -> h2 with a length", "/h2/trailers", Some(true)),
        // The body is kept for retries, and its trailers with it.
        ("h2 -> h2, retry policy", "/h2/retry/trailers", Some(true)),
    ] {
        let (e, o) = if let Some(length) = h2 {
            (
                h2_trailers(envoy, path, length).await,
                h2_trailers(ours, path, length).await,
            )
        } else {
            (
                h1_trailers(envoy, path).await,
                h1_trailers(ours, path).await,
            )
        };
        println!("trailers {name}: Envoy {e:?}, ours {o:?}");
        if name.starts_with("h2 -> h2") {
            envoy_h2_to_h2 = e.clone();
        }
        if e != o {
            disagreements.push(format!("trailers {name}:\n  Envoy {e:?}\n  ours  {o:?}"));
        }
    }
    // HTTP/2 end to end carries them both ways (the case shows something).
    assert_eq!(
        envoy_h2_to_h2.get("x-trailer-x-t").map(String::as_str),
        Some("one")
    );
    assert_eq!(
        envoy_h2_to_h2
            .get("trailer x-resp-trailer")
            .map(String::as_str),
        Some("done")
    );

    // obs-fold.
    for (name, lines) in FOLDS {
        let request =
            format!("GET /fold HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n{lines}\r\n");
        let (e, o) = (raw(envoy, &request).await, raw(ours, &request).await);
        let fold = |r: &http::Reply| (r.status, r.header("x-req-x-f").map(str::to_string));
        println!("obs-fold {name}: Envoy {:?}, ours {:?}", fold(&e), fold(&o));
        assert_eq!(e.status, 200, "obs-fold {name}: Envoy accepts it");
        if fold(&e) != fold(&o) {
            disagreements.push(format!(
                "obs-fold {name}: Envoy {:?}, ours {:?}",
                fold(&e),
                fold(&o)
            ));
        }
    }
    // obs-fold in the upstream's response head.
    let request = "GET /fold-up HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n\r\n";
    let (e, o) = (raw(envoy, request).await, raw(ours, request).await);
    let fold = |r: &http::Reply| (r.status, r.header("x-up").map(str::to_string));
    println!(
        "upstream obs-fold: Envoy {:?}, ours {:?}",
        fold(&e),
        fold(&o)
    );
    if fold(&e) != fold(&o) {
        disagreements.push(format!(
            "upstream obs-fold: Envoy {:?}, ours {:?}",
            fold(&e),
            fold(&o)
        ));
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
