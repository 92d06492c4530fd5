//! Translation of `access_log`: what compiles, and the NACK reasons for what does not.

use std::time::Duration;

use xds_types::pb::envoy::config::listener::v3::Listener as XdsListener;

use crate::config::Listener;
use crate::config::listener::NetworkFilter;
use crate::observe::access_log::writer::{FLUSH_INTERVAL, Target};

/// A listener whose connection manager has these loggers (YAML flow list items).
fn listener(loggers: &str) -> Result<Listener, String> {
    let yaml = format!(
        r#"
name: l
address: {{ socket_address: {{ address: 127.0.0.1, port_value: 10000 }} }}
filter_chains:
- filters:
  - name: hcm
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: s
      access_log: [ {loggers} ]
      route_config: {{ virtual_hosts: [ {{ name: v, domains: ["*"], routes: [ {{ match: {{ prefix: "/" }}, direct_response: {{ status: 200 }} }} ] }} ] }}
      http_filters: [ {{ name: router, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }} }} ]
"#
    );
    let l: XdsListener = xds_types::format::from_yaml_str(&yaml).expect("a listener");
    Listener::try_from(&l).map_err(|e| e.to_string())
}

fn file(path: &str, more: &str) -> String {
    format!(
        r#"{{ name: f, {more} typed_config: {{ "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: {path:?} }} }}"#
    )
}

fn file_with_format(path: &str, format: &str) -> String {
    format!(
        r#"{{ name: f, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: {path:?}, log_format: {format} }} }}"#
    )
}

const AT: &str = "listener \"l\": filter_chains[0].filters[0].typed_config.access_log[0]";

#[test]
fn loggers_formats_and_filters_compile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.log").display().to_string();
    let stdout = r#"{ name: o, typed_config: { "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog, log_format: { json_format: { code: "%RESPONSE_CODE%", ua: "%REQ(USER-AGENT)%", n: 1 }, omit_empty_values: true } } }"#;
    let filter = r#"filter: { and_filter: { filters: [ { header_filter: { header: { name: x-debug, present_match: true } } }, { duration_filter: { comparison: { op: GE, value: { default_value: 5, runtime_key: k } } } } ] } },"#;
    let l = listener(&format!(
        "{}, {stdout}, {}",
        file(&path, filter),
        file_with_format(
            &path,
            r#"{ text_format_source: { inline_string: "%RESP(X-A):3%\n" } }"#
        )
    ))
    .expect("valid");
    let NetworkFilter::Http(hcm) = &l.chains[0].filter else {
        panic!("not HTTP")
    };
    let logs = hcm.access_log.as_ref().expect("loggers");
    assert_eq!(logs.logs.len(), 3);
    // Two loggers on one path share one writer.
    assert!(std::sync::Arc::ptr_eq(
        &logs.logs[0].sink,
        &logs.logs[2].sink
    ));
    assert_eq!(logs.logs[1].sink.target(), &Target::Stdout);
    assert!(logs.logs[1].format.omit_empty);
    // Only the headers a format or filter reads are kept of a request and its response.
    let names = |l: &[http::HeaderName]| l.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(&logs.request_headers),
        [
            "user-agent",
            "x-debug",
            "x-envoy-original-path",
            "x-forwarded-for",
            "x-request-id"
        ]
    );
    assert_eq!(
        names(&logs.response_headers),
        ["x-a", "x-envoy-upstream-service-time"]
    );
    assert!(
        std::path::Path::new(&path).exists(),
        "opened at translation"
    );
    assert_eq!(FLUSH_INTERVAL, Duration::from_secs(1));
}

#[test]
fn what_we_do_not_have_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.log").display().to_string();
    let cases = [
        (
            file_with_format(&path, r#"{ text_format_source: { inline_string: "%BOGUS_OP%" } }"#),
            format!("{AT}.typed_config.log_format.text_format_source.inline_string: Not supported field in StreamInfo: BOGUS_OP"),
        ),
        (
            file_with_format(&path, r#"{ json_format: { a: { b: "%DURATION" } } }"#),
            format!("{AT}.typed_config.log_format.json_format.a.b: Incorrect configuration: %DURATION. Couldn't find valid command at position 0"),
        ),
        (
            file("/nonexistent-dir/a.log", ""),
            format!("{AT}.typed_config: unable to open file '/nonexistent-dir/a.log': No such file or directory"),
        ),
        (
            r#"{ name: otel, typed_config: { "@type": type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig } }"#.to_string(),
            format!("{AT}.typed_config: access logger \"otel\" (envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig) is not supported"),
        ),
        (
            file(&path, "filter: { runtime_filter: { runtime_key: k } },"),
            format!("{AT}.filter.filter_specifier: access log filter RuntimeFilter is not supported"),
        ),
        (
            file(&path, "filter: { or_filter: { filters: [ { not_health_check_filter: {} }, { response_flag_filter: { flags: [XX] } } ] } },"),
            format!("{AT}.filter.or_filter.filters[1].response_flag_filter.flags[0]: unknown response flag \"XX\""),
        ),
    ];
    for (logger, want) in cases {
        let got = listener(&logger).expect_err(&logger);
        // Envoy's own validation may speak first (the response flag list is checked by it).
        assert!(got == want || got.contains("XX"), "got  {got}\nwant {want}");
    }
}
