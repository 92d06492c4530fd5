//! The formatter, operator by operator, in text and JSON, as Envoy 1.40 renders them (the
//! expected strings were read from Envoy's own logs for the same requests).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Request};

use super::entry::{Entry, Flags};
use super::filter::{Cmp, Filter};
use super::format::{self, Body, Format, JsonValue};
use crate::http::Downstream;
use crate::tls::TlsInfo;

fn downstream(tls: Option<TlsInfo>) -> Downstream {
    Downstream {
        id: 7,
        peer: "127.0.0.1:35768".parse().unwrap(),
        local: "127.0.0.1:18080".parse().unwrap(),
        tls: tls.map(Arc::new),
    }
}

/// A forwarded GET: 404 from the upstream, as in Envoy's log for the same request.
fn entry() -> Entry {
    let mut e = Entry::new(downstream(None));
    e.start = UNIX_EPOCH + Duration::new(1_796_383_976, 630_123_456);
    let req = Request::get("/ok/?q=1")
        .header("host", "localhost:18080")
        .header("user-agent", "curl/x")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .body(())
        .unwrap();
    let (parts, ()) = req.into_parts();
    let wanted = ["user-agent", "x-multi", "x-missing"].map(http::HeaderName::from_static);
    e.capture_request(&parts, &wanted);
    let mut resp = HeaderMap::new();
    resp.insert("content-type", HeaderValue::from_static("text/html"));
    resp.insert("x-other", HeaderValue::from_static("no"));
    e.capture_response(&resp, &[http::HeaderName::from_static("content-type")]);
    e.status = Some(404);
    e.details = Some("via_upstream".into());
    e.upstream_host = Some("127.0.0.1:18081".parse().unwrap());
    e.upstream_cluster = Some("up".into());
    e.upstream_local = Some("127.0.0.1:46306".parse().unwrap());
    e.route_name = Some("r1".into());
    e.attempts = 1;
    e.bytes_sent = 335;
    e.request_end = Some(Duration::from_micros(300));
    e.response_start = Some(Duration::from_millis(28));
    e.duration = Some(Duration::from_micros(28_900));
    e
}

fn text(f: &str, e: &Entry) -> String {
    let format = Format {
        body: Body::Text(format::parse(f).unwrap()),
        omit_empty: false,
    };
    let mut out = String::new();
    format.render(e, &mut out);
    out
}

fn json(fields: &[(&str, &str)], omit_empty: bool, e: &Entry) -> String {
    let fields = fields
        .iter()
        .map(|(k, v)| (k.to_string(), JsonValue::Pieces(format::parse(v).unwrap())))
        .collect();
    let format = Format {
        body: Body::Json(fields),
        omit_empty,
    };
    let mut out = String::new();
    format.render(e, &mut out);
    out
}

#[test]
fn default_format_is_envoys() {
    let mut e = entry();
    e.request.headers.insert(
        "x-request-id",
        HeaderValue::from_static("e2829fca-adc6-495a-8de1-2c99dea5dbc6"),
    );
    let mut out = String::new();
    Format::default_text().render(&e, &mut out);
    assert_eq!(
        out,
        "[2026-12-04T11:32:56.630Z] \"GET /ok/?q=1 HTTP/1.1\" 404 - 0 335 28 - \"-\" \"curl/x\" \"e2829fca-adc6-495a-8de1-2c99dea5dbc6\" \"localhost:18080\" \"127.0.0.1:18081\"\n"
    );
}

#[test]
fn every_operator_in_text() {
    let e = entry();
    let cases = [
        (
            "%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%",
            "2026/12/04T11:32:56+0000 1796383976",
        ),
        (
            "%REQ(:METHOD)% %REQ(:PATH)% %REQ(:AUTHORITY)% %REQ(:SCHEME)%",
            "GET /ok/?q=1 localhost:18080 http",
        ),
        (
            "%REQ(USER-AGENT)%|%REQ(USER-AGENT):3%|%REQ(x-multi)%",
            "curl/x|cur|a,b",
        ),
        (
            "%REQ(X-MISSING?USER-AGENT)%|%REQ(X-MISSING)%|%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):4%",
            "curl/x|-|/ok/",
        ),
        (
            "%RESP(CONTENT-TYPE)%|%RESP(content-type):4%|%RESP(x-other)%",
            "text/html|text|-",
        ),
        (
            "%PROTOCOL% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% %RESPONSE_FLAGS%",
            "HTTP/1.1 404 via_upstream -",
        ),
        ("%BYTES_RECEIVED% %BYTES_SENT%", "0 335"),
        (
            "%DURATION% %REQUEST_DURATION% %RESPONSE_DURATION%",
            "28 0 28",
        ),
        (
            "%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS%",
            "127.0.0.1:18081 up 127.0.0.1:46306",
        ),
        ("%UPSTREAM_TRANSPORT_FAILURE_REASON%", "-"),
        (
            "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
            "127.0.0.1:35768 127.0.0.1",
        ),
        (
            "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
            "127.0.0.1:18080 127.0.0.1",
        ),
        (
            "%DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_PEER_DNS_SAN% %REQUESTED_SERVER_NAME%",
            "- - -",
        ),
        (
            "%ROUTE_NAME% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %CONNECTION_ID%",
            "r1 1 7",
        ),
        ("100% literal", "100% literal"),
    ];
    for (f, want) in cases {
        if f.contains("100%") {
            assert!(format::parse(f).is_err(), "{f}");
            continue;
        }
        assert_eq!(text(f, &e), want, "{f}");
    }
    assert!(!text("%HOSTNAME%", &e).is_empty());
}

#[test]
fn tls_operators_share_the_connection_values() {
    let mut e = entry();
    e.downstream = downstream(Some(TlsInfo {
        sni: Some("api.example.com".into()),
        alpn: None,
        peer_uri_sans: vec!["spiffe://x/a".into(), "spiffe://x/b".into()],
        peer_dns_sans: vec!["client.example.com".into()],
    }));
    assert_eq!(
        text(
            "%DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_PEER_DNS_SAN% %REQUESTED_SERVER_NAME% %REQ(:SCHEME)%",
            &e
        ),
        "spiffe://x/a,spiffe://x/b client.example.com api.example.com https"
    );
}

#[test]
fn failures_and_missing_values() {
    let mut e = Entry::new(downstream(None));
    e.status = Some(503);
    e.flags.insert("UF");
    e.flags.insert("URX");
    e.transport_failure = Some("delayed_connect_error:_Connection_refused".into());
    e.duration = Some(Duration::ZERO);
    assert_eq!(
        text(
            "%RESPONSE_FLAGS% %UPSTREAM_TRANSPORT_FAILURE_REASON% %RESPONSE_DURATION% %PROTOCOL% %REQ(:METHOD)%",
            &e
        ),
        "UF,URX delayed_connect_error:_Connection_refused - - -"
    );
    // tcp_proxy: no response code is 0.
    e.status = None;
    assert_eq!(text("%RESPONSE_CODE%", &e), "0");
    let omitted = Format {
        body: Body::Text(format::parse("a=%REQ(X-MISSING)% b=%RESPONSE_FLAGS%").unwrap()),
        omit_empty: true,
    };
    let mut out = String::new();
    omitted.render(&Entry::new(downstream(None)), &mut out);
    assert_eq!(out, "a= b=-");
}

#[test]
fn json_values_are_typed() {
    let e = entry();
    let fields = [
        ("attempts", "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"),
        ("bytes_tx", "%BYTES_SENT%"),
        ("code", "%RESPONSE_CODE%"),
        ("codestr", "c=%RESPONSE_CODE%"),
        ("dur", "%DURATION%"),
        ("flags", "%RESPONSE_FLAGS%"),
        ("sni", "%REQUESTED_SERVER_NAME%"),
        ("ua3", "%REQ(USER-AGENT):3%"),
        ("q", "\"%REQ(x-multi)%\"\n"),
        ("zstart", "%START_TIME%"),
    ];
    assert_eq!(
        json(&fields, false, &e),
        r#"{"attempts":1,"bytes_tx":335,"code":404,"codestr":"c=404","dur":28,"flags":"-","sni":null,"ua3":"cur","q":"\"a,b\"\n","zstart":"2026-12-04T11:32:56.630Z"}"#
            .to_string()
            + "\n"
    );
    assert_eq!(
        json(
            &[
                ("a", "%RESPONSE_DURATION%"),
                ("sni", "%REQUESTED_SERVER_NAME%"),
                ("z", "%BYTES_SENT%")
            ],
            true,
            &Entry::new(downstream(None))
        ),
        "{\"z\":0}\n"
    );
    let nested = Format {
        body: Body::Json(vec![
            ("lit".into(), JsonValue::Raw("5".into())),
            (
                "nested".into(),
                JsonValue::Object(vec![
                    (
                        "a".into(),
                        JsonValue::Pieces(format::parse("%RESPONSE_CODE%").unwrap()),
                    ),
                    ("b".into(), JsonValue::Pieces(format::parse("x").unwrap())),
                ]),
            ),
        ]),
        omit_empty: false,
    };
    let mut out = String::new();
    nested.render(&e, &mut out);
    assert_eq!(out, "{\"lit\":5,\"nested\":{\"a\":404,\"b\":\"x\"}}\n");
}

#[test]
fn parse_errors_are_envoys() {
    assert_eq!(
        format::parse("a=%BOGUS_OP% b").unwrap_err(),
        "Not supported field in StreamInfo: BOGUS_OP"
    );
    assert_eq!(
        format::parse("%START_TIME").unwrap_err(),
        "Incorrect configuration: %START_TIME. Couldn't find valid command at position 0"
    );
    assert!(format::parse("%REQ%").is_err());
    assert!(format::parse("%DURATION(x)%").is_err());
    // Arguments may hold `%` and `)`.
    assert_eq!(
        format::parse("%START_TIME((%H))%:%REQ(A):10%")
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn filters() {
    let e = entry();
    assert!(Filter::Status(Cmp::Ge, 400).allows(&e));
    assert!(!Filter::Status(Cmp::Eq, 200).allows(&e));
    assert!(Filter::Status(Cmp::Ne, 200).allows(&e));
    assert!(Filter::Duration(Cmp::Le, 28).allows(&e));
    assert!(!Filter::Duration(Cmp::Ge, 29).allows(&e));
    assert!(!Filter::Flags(Flags::default()).allows(&e));
    let mut failed = entry();
    failed.flags.insert("UF");
    assert!(Filter::Flags(Flags::default()).allows(&failed));
    assert!(Filter::Flags(Flags::named("UF").unwrap()).allows(&failed));
    assert!(!Filter::Flags(Flags::named("NR").unwrap()).allows(&failed));
    let and = Filter::And(vec![Filter::NotHealthCheck, Filter::Status(Cmp::Eq, 404)]);
    assert!(and.allows(&e));
    let or = Filter::Or(vec![
        Filter::Status(Cmp::Eq, 200),
        Filter::Status(Cmp::Eq, 500),
    ]);
    assert!(!or.allows(&e));
}
