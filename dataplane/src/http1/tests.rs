//! The codec on real loopback sockets: a server with a small handler, raw clients; the
//! upstream client against raw backends that count connections or close them.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::codec::{self, Framing, HeadError};
use super::server::{self, Options};
use super::{client, pool};
use crate::upstream::pool::Body;

const DEADLINE: Duration = Duration::from_secs(10);

fn full(b: &'static [u8]) -> Body {
    Full::new(Bytes::from_static(b))
        .map_err(|never| match never {})
        .boxed()
}

#[test]
fn request_heads_are_refused_as_envoy_refuses_them() {
    let cases: &[(&[u8], HeadError)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            HeadError::ChunkedAndLength,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            HeadError::NotImplemented,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            HeadError::NotImplemented,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            HeadError::Bad,
        ),
        (b"POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n", HeadError::Bad),
        (b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n", HeadError::Bad),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", HeadError::Version),
        (
            b"GET / HTTP/1.1\r\nX-A: b\x01c\r\n\r\n",
            HeadError::InvalidCharacters,
        ),
        (b"GET / HTTP/1.1\r\nX A: b\r\n\r\n", HeadError::Bad),
        (b"G(T / HTTP/1.1\r\n\r\n", HeadError::Bad),
        (b"HELLO\r\n\r\n", HeadError::Bad),
    ];
    for (raw, want) in cases {
        let got = codec::parse_request(&mut BytesMut::from(*raw)).map(|_| ());
        assert_eq!(got, Err(*want), "{}", String::from_utf8_lossy(raw));
    }
    let many: Vec<u8> = [
        b"GET / HTTP/1.1\r\n".to_vec(),
        (0..101)
            .flat_map(|i| format!("x-{i}: v\r\n").into_bytes())
            .collect(),
        b"\r\n".to_vec(),
    ]
    .concat();
    assert_eq!(
        codec::parse_request(&mut BytesMut::from(&many[..])).map(|_| ()),
        Err(HeadError::TooManyHeaders)
    );
    let mut huge = BytesMut::from(&b"GET / HTTP/1.1\r\nx-a: "[..]);
    huge.extend_from_slice(&[b'a'; 70 * 1024]);
    assert_eq!(
        codec::parse_request(&mut huge).map(|_| ()),
        Err(HeadError::TooLarge)
    );
}

#[test]
fn a_request_head_is_parsed_and_split_off_the_buffer() {
    let mut buf = BytesMut::from(&b"GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-Y: 1\r\nX-Y: 2\r\n"[..]);
    assert!(codec::parse_request(&mut buf).unwrap().is_none(), "partial");
    buf.extend_from_slice(b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\nbodyGET");
    let head = codec::parse_request(&mut buf).unwrap().unwrap();
    assert_eq!(head.parts.uri.path(), "/a");
    assert_eq!(head.parts.uri.query(), Some("b=c"));
    assert_eq!(head.parts.headers.get_all("x-y").iter().count(), 2);
    assert_eq!(head.framing, Framing::Length(4));
    assert!(head.keep_alive && head.expect_continue);
    assert!(
        head.parts.headers.get("expect").is_none(),
        "answered, not forwarded"
    );
    assert_eq!(&buf[..], b"bodyGET");
    let mut close = BytesMut::from(&b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"[..]);
    assert!(
        !codec::parse_request(&mut close)
            .unwrap()
            .unwrap()
            .keep_alive
    );
    let mut old = BytesMut::from(&b"GET / HTTP/1.0\r\n\r\n"[..]);
    assert!(!codec::parse_request(&mut old).unwrap().unwrap().keep_alive);
}

#[test]
fn response_framing_follows_rfc_9112() {
    let parse = |raw: &[u8], head: bool| {
        let r = codec::parse_response(&mut BytesMut::from(raw), head)
            .unwrap()
            .unwrap();
        (r.framing, r.keep_alive)
    };
    assert_eq!(
        parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        (Framing::Length(5), true)
    );
    assert_eq!(
        parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
        (Framing::Empty, true)
    );
    assert_eq!(
        parse(b"HTTP/1.1 204 No Content\r\n\r\n", false),
        (Framing::Empty, true)
    );
    assert_eq!(
        parse(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false
        ),
        (Framing::Empty, true)
    );
    assert_eq!(
        parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        ),
        (Framing::Chunked, true)
    );
    assert_eq!(
        parse(b"HTTP/1.1 200 OK\r\n\r\n", false),
        (Framing::Close, false)
    );
    assert_eq!(
        parse(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
        (Framing::Length(1), false)
    );
    assert_eq!(
        parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            false
        ),
        (Framing::Length(1), false)
    );
    let folded = codec::parse_response(
        &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n"[..]),
        false,
    )
    .unwrap()
    .unwrap();
    // The line break goes, the continuation's whitespace stays: what Envoy 1.40 forwards.
    assert_eq!(folded.parts.headers["x-a"], "b c");
}

#[test]
fn request_obs_fold_is_joined_as_envoy_joins_it() {
    let mut buf = BytesMut::from(
        &b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\td\r\nX-B: e\r\n\r\nGET /next HTTP/1.1\r\n x"[..],
    );
    let head = codec::parse_request(&mut buf).unwrap().unwrap();
    assert_eq!(head.parts.headers["x-a"], "b  c\td");
    assert_eq!(head.parts.headers["x-b"], "e");
    // What follows the head (a pipelined request) is left as it was.
    assert_eq!(&buf[..], b"GET /next HTTP/1.1\r\n x");
    // A head not complete yet: joined so far, more is needed.
    let mut partial = BytesMut::from(&b"GET / HTTP/1.1\r\nX-A: b\r\n c\r\n"[..]);
    assert!(codec::parse_request(&mut partial).unwrap().is_none());
    // A request line cannot be continued.
    let mut first = BytesMut::from(&b"GET / HTTP/1.1\r\n X-A: b\r\n\r\n"[..]);
    assert_eq!(
        codec::parse_request(&mut first).unwrap_err(),
        HeadError::Bad
    );
}

/// A server on a loopback port answering with `handle`; the port.
async fn serve_with<F, Fut>(opts: Options, handle: F) -> (u16, watch::Sender<bool>)
where
    F: Fn(Request<Body>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (drain_tx, drain) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (opts, handle, drain) = (opts.clone(), handle.clone(), drain.clone());
            tokio::spawn(server::serve(s, BytesMut::new(), opts, handle, drain));
        }
    });
    (port, drain_tx)
}

fn options() -> Options {
    Options {
        header_timeout: Duration::from_secs(60),
        idle_timeout: None,
        drain_deadline: Duration::from_secs(600),
        server_name: Some(http::HeaderValue::from_static("envoy")),
        upgrades: false,
        tell_refusals: false,
    }
}

/// Echoes the request body; `/204`, `/len` and `/collect` (reads the whole body first)
/// answer differently.
async fn echo(req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut r = match path.as_str() {
        "/204" => Response::new(full(b"")),
        "/len" => Response::new(full(b"hello")),
        "/collect" => match req.into_body().collect().await {
            Ok(b) => Response::new(
                Full::new(b.to_bytes())
                    .map_err(|never| match never {})
                    .boxed(),
            ),
            Err(_) => Response::new(full(b"body failed")),
        },
        _ => Response::new(req.into_body()),
    };
    if path == "/204" {
        *r.status_mut() = StatusCode::NO_CONTENT;
    }
    r.headers_mut()
        .insert("x-path", http::HeaderValue::from_str(&path).unwrap());
    r
}

/// Writes `pieces` one by one (each its own segment), then reads until the server closes.
async fn exchange(port: u16, pieces: &[&[u8]]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.set_nodelay(true).unwrap();
    for p in pieces {
        s.write_all(p).await.unwrap();
        s.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn strip_dates(s: &str) -> String {
    s.split("\r\n")
        .filter(|l| !l.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test]
async fn refusals_are_told_with_envoys_details() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut opts = options();
    opts.tell_refusals = true;
    let sink = seen.clone();
    let (port, _drain) = serve_with(opts, move |req: Request<Body>| {
        if let Some(r) = req.extensions().get::<server::Refusal>() {
            sink.lock().unwrap().push(*r);
        }
        echo(req)
    })
    .await;
    let out = exchange(
        port,
        &[b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"],
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 501 Not Implemented\r\n"), "{out}");
    assert_eq!(
        seen.lock().unwrap()[..],
        [server::Refusal {
            status: Some(StatusCode::NOT_IMPLEMENTED),
            details: "http1.invalid_transfer_encoding",
            body_bytes: 15,
        }]
    );
    // A head the client cuts off.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    drop(s);
    let end = tokio::time::Instant::now() + DEADLINE;
    while seen.lock().unwrap().len() < 2 && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.lock().unwrap().get(1), Some(&server::Refusal::CUT_OFF));
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (port, _drain) = serve_with(options(), echo).await;
    let out = exchange(
        port,
        &[b"GET /len HTTP/1.1\r\nHost: a\r\n\r\nPOST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"],
    )
    .await;
    assert_eq!(
        strip_dates(&out),
        "HTTP/1.1 200 OK\r\nx-path: /len\r\ncontent-length: 5\r\n\r\nhello\
         HTTP/1.1 200 OK\r\nx-path: /a\r\ncontent-length: 3\r\n\r\nabc\
         HTTP/1.1 200 OK\r\nx-path: /b\r\ntransfer-encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n\
         HTTP/1.1 204 No Content\r\nx-path: /204\r\nconnection: close\r\n\r\n"
    );
}

#[tokio::test]
async fn a_chunked_body_split_across_reads_streams_through() {
    let (port, _drain) = serve_with(options(), echo).await;
    let body: &[u8] = b"5\r\nhello\r\n1;ext\r\n \r\n6\r\nworld!\r\n0\r\ntrailer: x\r\n\r\n";
    let mut pieces: Vec<&[u8]> = vec![b"POST /collect HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"];
    pieces.extend(body.chunks(3));
    let out = exchange(port, &pieces).await;
    assert!(out.ends_with("\r\n\r\nhello world!"), "{out}");
    assert!(out.contains("content-length: 12\r\n"), "{out}");
}

#[tokio::test]
async fn head_and_204_have_no_body_and_expect_continue_is_answered() {
    let (port, _drain) = serve_with(options(), echo).await;
    let out = exchange(port, &[b"HEAD /len HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"]).await;
    assert_eq!(
        strip_dates(&out),
        "HTTP/1.1 200 OK\r\nx-path: /len\r\ncontent-length: 5\r\n\r\nHTTP/1.1 204 No Content\r\nx-path: /204\r\nconnection: close\r\n\r\n"
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"POST /collect HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n").await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut interim))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"ok").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        rest.ends_with(b"\r\n\r\nok"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn malformed_requests_get_envoys_status_and_a_close() {
    let (port, _drain) = serve_with(options(), echo).await;
    let mut huge = b"GET / HTTP/1.1\r\nHost: a\r\nx-a: ".to_vec();
    huge.extend_from_slice(&[b'a'; 70 * 1024]);
    huge.extend_from_slice(b"\r\n\r\n");
    let cases: [(&[u8], &str); 4] = [
        (&huge, "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            b"POST /collect HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "HTTP/1.1 426 Upgrade Required\r\n"),
    ];
    for (raw, status) in cases {
        let out = exchange(port, &[raw]).await;
        assert!(out.starts_with(status), "{out}");
        assert!(
            out.contains("connection: close\r\n") && out.contains("server: envoy\r\n"),
            "{out}"
        );
        let reason = status.trim_end().splitn(3, ' ').nth(2).unwrap();
        assert!(out.ends_with(&format!("\r\n\r\n{reason}")), "{out}");
    }
}

#[tokio::test]
async fn a_head_not_complete_within_the_header_timeout_closes_the_connection() {
    let opts = Options {
        header_timeout: Duration::from_millis(200),
        ..options()
    };
    let (port, _drain) = serve_with(opts, echo).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.is_empty(), "closed without a reply");
}

#[tokio::test]
async fn a_drain_closes_an_idle_connection_and_ends_a_busy_one_after_its_response() {
    let (port, drain) = serve_with(options(), echo).await;
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut busy = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // A request whose body is still coming when the drain starts.
    busy.write_all(b"POST /collect HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        .await
        .unwrap();
    idle.write_all(b"GET /len HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 17];
    idle.read_exact(&mut first).await.unwrap();
    drain.send(true).unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, idle.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    busy.write_all(b"cd").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, busy.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("connection: close\r\n") && out.ends_with("abcd"),
        "{out}"
    );
}

#[test]
fn the_connection_task_stays_small() {
    // tokio allocates a task with its future inline: what an idle connection costs.
    let (_tx, drain) = watch::channel(false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let size = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let fut = server::serve(s, BytesMut::new(), options(), echo, drain);
        std::mem::size_of_val(&fut)
    });
    assert!(size < 1024, "the connection future is {size} bytes");
}

/// A backend that answers each request with `200` and `content-length: 2`, counting the
/// connections it accepted; with `drop_second`, it closes a connection when a second
/// request arrives on it, unanswered.
async fn backend(drop_second: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut served = 0;
                loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        served += 1;
                        if drop_second && served == 2 {
                            return;
                        }
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn get(connector: &pool::Connector) -> Result<Bytes, client::Error> {
    let req = Request::get("/")
        .header("host", "b")
        .body(full(b""))
        .unwrap();
    let resp = client::request(connector, req).await?;
    Ok(resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn the_pool_reuses_one_connection_for_requests_in_sequence() {
    let (addr, accepted) = backend(false).await;
    let connector = pool::Connector::new(Duration::from_secs(1), None, addr);
    for _ in 0..5 {
        assert_eq!(get(&connector).await.unwrap(), "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_that_fails_on_a_reused_connection_is_sent_once_more_on_a_new_one() {
    let (addr, accepted) = backend(true).await;
    let connector = pool::Connector::new(Duration::from_secs(1), None, addr);
    assert_eq!(get(&connector).await.unwrap(), "ok");
    // The backend closes the pooled connection on this request: retried on a new one.
    assert_eq!(get(&connector).await.unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connect_failures_and_garbage_are_told_apart() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let connector = pool::Connector::new(Duration::from_secs(1), None, addr);
    assert!(matches!(
        get(&connector).await,
        Err(client::Error::Connect(_))
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut chunk = [0u8; 1024];
        let _ = s.read(&mut chunk).await;
        let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
    });
    let connector = pool::Connector::new(Duration::from_secs(1), None, addr);
    assert!(matches!(
        get(&connector).await,
        Err(client::Error::Protocol(_))
    ));
}

#[tokio::test]
async fn a_client_that_goes_away_before_its_response_cancels_the_request() {
    struct SetOnDrop(Arc<AtomicUsize>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let seen = dropped.clone();
    let handler = move |_req: Request<Body>| {
        let guard = SetOnDrop(seen.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Response::new(full(b""))
        }
    };
    let (port, _drain) = serve_with(options(), handler).await;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    drop(s);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn response_heads_leave_hop_by_hop_fields_out() {
    let parse = |raw: &[u8]| {
        codec::parse_response(&mut BytesMut::from(raw), false)
            .unwrap()
            .unwrap()
    };
    let names = |r: &codec::ResponseHead| -> Vec<String> {
        r.parts.headers.keys().map(|k| k.to_string()).collect()
    };
    let r = parse(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
          Transfer-Encoding: chunked\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nX-A: 1\r\n\r\n",
    );
    assert_eq!((r.framing, r.keep_alive), (Framing::Chunked, true));
    assert_eq!(names(&r), ["x-a"]);
    // `Connection: close` names a `close` field, even one before it.
    let r = parse(b"HTTP/1.1 200 OK\r\nClose: a\r\nConnection: close\r\nContent-Length: 1\r\n\r\n");
    assert_eq!((r.framing, r.keep_alive), (Framing::Length(1), false));
    assert_eq!(names(&r), ["content-length"]);
    // A Connection naming another field stays, for the router to strip both.
    let r = parse(b"HTTP/1.1 200 OK\r\nX-B: 1\r\nConnection: x-b\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(names(&r), ["x-b", "connection", "content-length"]);
    // A 101 keeps its upgrade fields.
    let r = parse(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(names(&r), ["connection", "upgrade"]);
    // HTTP/1.0 stays open only when asked; a transfer coding not ending in chunked reads to close.
    let r = parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n");
    assert!(r.keep_alive);
    let r = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
    assert!(!r.keep_alive);
    let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    assert_eq!((r.framing, r.keep_alive), (Framing::Close, false));
}

/// Records each write it is given, as a socket would see its `sendto`s.
#[derive(Default)]
struct Writes(Vec<Vec<u8>>);

impl tokio::io::AsyncWrite for Writes {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.push(buf.to_vec());
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_small_response_whose_body_is_here_goes_out_in_one_write() {
    use super::encode::{BodyWriter, Out};
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec();
    let mut writer = BodyWriter::new(full(b"hello"), Out::Length(5), head);
    let mut io = Writes::default();
    std::future::poll_fn(|cx| writer.poll_write(&mut io, cx))
        .await
        .unwrap();
    // Head and body in one write: one syscall (and one TLS record) instead of two.
    assert_eq!(
        io.0,
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()]
    );
}

#[tokio::test]
async fn a_body_that_fails_at_once_still_gets_its_head_written_first() {
    use super::encode::{BodyWriter, Out, WriteError};
    // Longer than announced: the body fails on its first frame.
    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n".to_vec();
    let mut writer = BodyWriter::new(full(b"hello"), Out::Length(2), head);
    let mut io = Writes::default();
    let result = std::future::poll_fn(|cx| writer.poll_write(&mut io, cx)).await;
    assert!(matches!(result, Err(WriteError::Body(_))), "{result:?}");
    assert_eq!(
        io.0,
        vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n".to_vec()]
    );
}
