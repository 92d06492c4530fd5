//! Envoy's `/stats/prometheus` text, made from the stats `/stats` shows.
//!
//! As Envoy writes it: the metric is `envoy_` and the stat name with its tag taken out, every
//! character other than `[a-zA-Z0-9_]` made `_`; the tags are Envoy's default ones for the
//! stats we keep, `envoy_cluster_name` from `cluster.<name>.` and `envoy_listener_address`
//! from `listener.<address>.`. A listener `stat_prefix` that is not an address stays in the
//! name, as Envoy's tag pattern (digits, `.`, `_`, or hex digits and brackets) does not match
//! it. Each metric has one `# TYPE` line over all its series; counters come first, then gauges.
//!
//! One difference: Envoy's cluster tag ends at the first `.` of the name; ours is the cluster's
//! whole name (the stat names are made here, with the names known).

use std::collections::BTreeMap;

use super::stat::Stat;

/// The Prometheus text for `stats`; `clusters` are the cluster names the `cluster.` stats use.
pub fn render(stats: &[Stat], clusters: &[&str]) -> String {
    // metric -> (is a gauge, its series: labels -> value)
    let mut metrics: BTreeMap<String, (bool, BTreeMap<String, u64>)> = BTreeMap::new();
    for stat in stats {
        let (rest, labels) = tagged(&stat.name, clusters);
        let (rest, labels) = code_class(rest, labels);
        let metric = format!("envoy_{}", sanitized(&rest));
        metrics
            .entry(metric)
            .or_insert_with(|| (stat.gauge, BTreeMap::new()))
            .1
            .insert(labels, stat.value);
    }
    let mut out = String::new();
    for want_gauge in [false, true] {
        for (metric, (gauge, series)) in &metrics {
            if *gauge != want_gauge {
                continue;
            }
            let kind = if *gauge { "gauge" } else { "counter" };
            out.push_str(&format!("# TYPE {metric} {kind}\n"));
            for (labels, value) in series {
                out.push_str(&format!("{metric}{{{labels}}} {value}\n"));
            }
        }
    }
    out
}

/// The stat name without its tag (`cluster.web.x` -> `cluster.x`), and the tag as labels.
fn tagged(name: &str, clusters: &[&str]) -> (String, String) {
    if let Some(rest) = name.strip_prefix("cluster.") {
        // The longest cluster name that prefixes the rest (names may hold dots).
        if let Some(cluster) = clusters
            .iter()
            .filter(|c| {
                rest.strip_prefix(**c)
                    .is_some_and(|after| after.starts_with('.'))
            })
            .max_by_key(|c| c.len())
        {
            let after = &rest[cluster.len() + 1..];
            return (
                format!("cluster.{after}"),
                format!("envoy_cluster_name=\"{}\"", escaped(cluster)),
            );
        }
    }
    // Envoy's `envoy_http_conn_manager_prefix`: up to the first `.`.
    if let Some(rest) = name.strip_prefix("http.")
        && let Some((prefix, after)) = rest.split_once('.')
    {
        return (
            format!("http.{after}"),
            format!("envoy_http_conn_manager_prefix=\"{}\"", escaped(prefix)),
        );
    }
    if let Some(rest) = name.strip_prefix("listener.")
        && let Some((prefix, after)) = split_address(rest)
    {
        return (
            format!("listener.{after}"),
            format!("envoy_listener_address=\"{}\"", escaped(prefix)),
        );
    }
    (name.to_string(), String::new())
}

/// Envoy's `envoy_response_code_class` tag: `..._rq_2xx` is `..._rq_xx` with the class `2`,
/// the first of the labels.
fn code_class(name: String, labels: String) -> (String, String) {
    let bytes = name.as_bytes();
    let n = bytes.len();
    let is_class = n > 6
        && name.ends_with("xx")
        && bytes[n - 3].is_ascii_digit()
        && name[..n - 3].ends_with("_rq_");
    if !is_class {
        return (name, labels);
    }
    let class = format!("envoy_response_code_class=\"{}\"", &name[n - 3..n - 2]);
    let labels = if labels.is_empty() {
        class
    } else {
        format!("{class},{labels}")
    };
    (format!("{}xx", &name[..n - 3]), labels)
}

/// `127.0.0.1_10000.ssl.handshake` -> (`127.0.0.1_10000`, `ssl.handshake`), as Envoy's
/// `envoy_listener_address` pattern matches: the longest run of IPv4 address characters (digits,
/// `.`, `_`), else of IPv6 ones (hex digits, `_`, brackets), up to its last `.`.
fn split_address(rest: &str) -> Option<(&str, &str)> {
    let v4 = |c: char| c.is_ascii_digit() || c == '.' || c == '_';
    let v6 = |c: char| c.is_ascii_hexdigit() || c == '_' || c == '[' || c == ']';
    for class in [&v4 as &dyn Fn(char) -> bool, &v6] {
        let run = rest.find(|c: char| !class(c)).unwrap_or(rest.len());
        // The `.` that ends the tag may be the first character after the run.
        let upto = if rest[run..].starts_with('.') {
            run + 1
        } else {
            run
        };
        if let Some(dot) = rest[..upto].rfind('.').filter(|&d| d > 0) {
            return Some((&rest[..dot], &rest[dot + 1..]));
        }
    }
    None
}

fn sanitized(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escaped(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoys_names_tags_and_types() {
        let text = render(
            &[
                Stat::counter("cluster.web.upstream_rq_active_overflow", 2),
                Stat::counter("cluster.a.b.upstream_rq_active_overflow", 1),
                Stat::gauge("cluster.web.circuit_breakers.default.rq_open", 1),
                Stat::counter("listener.127.0.0.1_10000.ssl.handshake", 5),
                Stat::counter("listener.[__1]_443.ssl.handshake", 6),
                Stat::counter("listener.ingress.ssl.handshake", 7),
                Stat::counter("filesystem.write_buffered", 3),
            ],
            &["web", "a.b"],
        );
        assert_eq!(
            text,
            "# TYPE envoy_cluster_upstream_rq_active_overflow counter\n\
             envoy_cluster_upstream_rq_active_overflow{envoy_cluster_name=\"a.b\"} 1\n\
             envoy_cluster_upstream_rq_active_overflow{envoy_cluster_name=\"web\"} 2\n\
             # TYPE envoy_filesystem_write_buffered counter\n\
             envoy_filesystem_write_buffered{} 3\n\
             # TYPE envoy_listener_ingress_ssl_handshake counter\n\
             envoy_listener_ingress_ssl_handshake{} 7\n\
             # TYPE envoy_listener_ssl_handshake counter\n\
             envoy_listener_ssl_handshake{envoy_listener_address=\"127.0.0.1_10000\"} 5\n\
             envoy_listener_ssl_handshake{envoy_listener_address=\"[__1]_443\"} 6\n\
             # TYPE envoy_cluster_circuit_breakers_default_rq_open gauge\n\
             envoy_cluster_circuit_breakers_default_rq_open{envoy_cluster_name=\"web\"} 1\n"
        );
    }
}
