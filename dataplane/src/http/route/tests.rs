use super::*;
use crate::config::route::Action;
use xds_types::pb::envoy::config::route::v3::RouteConfiguration;

fn table(yaml: &str) -> RouteTable {
    let rc: RouteConfiguration = xds_types::format::from_yaml_str(yaml).unwrap();
    RouteTable::try_from(&rc).unwrap()
}

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// The cluster the request is routed to, or "-".
fn cluster(t: &RouteTable, host: &str, uri: &str, headers: &[(&str, &str)]) -> String {
    let p = parts("GET", uri, headers);
    let Some(v) = t.vhost(host) else {
        return "-".into();
    };
    match v.route(&p).map(|r| &r.action) {
        Some(Action::Forward(f)) => match &f.target {
            crate::config::route::ClusterTarget::Name(n) => n.clone(),
            _ => "?".into(),
        },
        Some(_) => "other".into(),
        None => "-".into(),
    }
}

const DOMAINS: &str = r#"
name: r
virtual_hosts:
- { name: exact, domains: ["api.example.com"], routes: [ { match: { prefix: "/" }, route: { cluster: exact } } ] }
- { name: short-suffix, domains: ["*.com"], routes: [ { match: { prefix: "/" }, route: { cluster: short-suffix } } ] }
- { name: long-suffix, domains: ["*.example.com"], routes: [ { match: { prefix: "/" }, route: { cluster: long-suffix } } ] }
- { name: prefix, domains: ["api.*"], routes: [ { match: { prefix: "/" }, route: { cluster: prefix } } ] }
- { name: any, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: any } } ] }
"#;

#[test]
fn domain_precedence_is_envoys() {
    let t = table(DOMAINS);
    assert_eq!(cluster(&t, "api.example.com", "/", &[]), "exact");
    assert_eq!(
        cluster(&t, "API.Example.com", "/", &[]),
        "exact",
        "hosts are case-insensitive"
    );
    assert_eq!(
        cluster(&t, "www.example.com", "/", &[]),
        "long-suffix",
        "the longest suffix wins"
    );
    assert_eq!(cluster(&t, "www.other.com", "/", &[]), "short-suffix");
    assert_eq!(
        cluster(&t, "api.other.org", "/", &[]),
        "prefix",
        "suffix wildcards before prefix ones"
    );
    assert_eq!(cluster(&t, "nothing.org", "/", &[]), "any");
    // The port is part of the host unless ignore_port_in_host_matching is set.
    assert_eq!(cluster(&t, "api.example.com:8080", "/", &[]), "prefix");
    let mut t2 = table(DOMAINS);
    t2.ignore_port_in_host_matching = true;
    assert_eq!(cluster(&t2, "api.example.com:8080", "/", &[]), "exact");
}

const MATCHES: &str = r#"
name: r
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - { match: { path: "/exact" }, route: { cluster: path } }
  - { match: { prefix: "/CI/", case_sensitive: false }, route: { cluster: case-insensitive } }
  - { match: { safe_regex: { regex: "/re/[0-9]+" } }, route: { cluster: regex } }
  - { match: { path_separated_prefix: "/sep" }, route: { cluster: separated } }
  - { match: { prefix: "/h", headers: [ { name: x-exact, string_match: { exact: "a" } } ] }, route: { cluster: h-exact } }
  - { match: { prefix: "/h", headers: [ { name: x-pre, string_match: { prefix: "ab" } } ] }, route: { cluster: h-prefix } }
  - { match: { prefix: "/h", headers: [ { name: x-suf, string_match: { suffix: "yz" } } ] }, route: { cluster: h-suffix } }
  - { match: { prefix: "/h", headers: [ { name: x-con, string_match: { contains: "mid" } } ] }, route: { cluster: h-contains } }
  - { match: { prefix: "/h", headers: [ { name: x-re, string_match: { safe_regex: { regex: "v[0-9]" } } } ] }, route: { cluster: h-regex } }
  - { match: { prefix: "/h", headers: [ { name: x-range, range_match: { start: 10, end: 20 } } ] }, route: { cluster: h-range } }
  - { match: { prefix: "/h", headers: [ { name: x-present, present_match: true } ] }, route: { cluster: h-present } }
  - { match: { prefix: "/h", headers: [ { name: x-not, string_match: { exact: "no" }, invert_match: true } ] }, route: { cluster: h-invert } }
  - { match: { prefix: "/q", query_parameters: [ { name: debug, string_match: { exact: "1" } } ] }, route: { cluster: q-exact } }
  - { match: { prefix: "/q", query_parameters: [ { name: flag, present_match: true } ] }, route: { cluster: q-present } }
  - { match: { prefix: "/g", grpc: {} }, route: { cluster: grpc } }
  - { match: { prefix: "/" }, route: { cluster: fallback } }
"#;

#[test]
fn every_match_kind_and_first_match_wins() {
    let t = table(MATCHES);
    let c = |uri: &str, h: &[(&str, &str)]| cluster(&t, "x", uri, h);
    assert_eq!(c("/exact", &[]), "path");
    assert_eq!(c("/exact/more", &[]), "fallback");
    assert_eq!(c("/ci/thing", &[]), "case-insensitive");
    assert_eq!(c("/re/123", &[]), "regex");
    assert_eq!(
        c("/re/12a", &[]),
        "fallback",
        "safe_regex matches the whole path"
    );
    assert_eq!(c("/sep", &[]), "separated");
    assert_eq!(c("/sep/x", &[]), "separated");
    assert_eq!(c("/separate", &[]), "fallback");
    assert_eq!(c("/h", &[("x-exact", "a")]), "h-exact");
    assert_eq!(c("/h", &[("x-pre", "abc")]), "h-prefix");
    assert_eq!(c("/h", &[("x-suf", "xyz")]), "h-suffix");
    assert_eq!(c("/h", &[("x-con", "amidb")]), "h-contains");
    assert_eq!(c("/h", &[("x-re", "v7")]), "h-regex");
    assert_eq!(c("/h", &[("x-range", "15")]), "h-range");
    // The range end is exclusive; a missing header fails even an inverted matcher (Envoy).
    assert_eq!(c("/h", &[("x-range", "20")]), "fallback");
    assert_eq!(c("/h", &[("x-not", "yes")]), "h-invert");
    assert_eq!(c("/h", &[("x-present", "")]), "h-present");
    assert_eq!(c("/h", &[("x-not", "no")]), "fallback");
    assert_eq!(c("/q?a=b&debug=1", &[]), "q-exact");
    assert_eq!(c("/q?flag", &[]), "q-present");
    assert_eq!(c("/q?debug=2", &[]), "fallback");
    assert_eq!(c("/g", &[("content-type", "application/grpc")]), "grpc");
    assert_eq!(c("/g", &[("content-type", "text/plain")]), "fallback");
}

#[test]
fn translation_errors_name_the_path() {
    let rc: RouteConfiguration = xds_types::format::from_yaml_str(
        "name: r\nvirtual_hosts: [ { name: v, domains: ['*'], routes: [ { match: { safe_regex: { regex: '(' } }, route: { cluster: c } } ] } ]\n",
    )
    .unwrap();
    let e = RouteTable::try_from(&rc).unwrap_err().to_string();
    assert!(e.starts_with("route configuration \"r\": virtual_hosts[0].routes[0].match.safe_regex.regex: invalid regex"), "{e}");
    let rc: RouteConfiguration = xds_types::format::from_yaml_str(
        "name: r\nvirtual_hosts: [ { name: v, domains: ['*'], routes: [ { match: { prefix: / }, route: { cluster: c, hash_policy: [ { filter_state: { key: x } } ] } } ] } ]\n",
    )
    .unwrap();
    let e = RouteTable::try_from(&rc).unwrap_err().to_string();
    assert!(
        e.contains("virtual_hosts[0].routes[0].route.hash_policy[0].filter_state: not supported"),
        "{e}"
    );
}
