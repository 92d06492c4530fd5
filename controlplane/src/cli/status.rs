//! `controlplane status`: the admin API's `/status`, as a table a person reads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

pub fn run(admin: &str) -> anyhow::Result<()> {
    let status = fetch(admin)?;
    print!("{}", render(&status));
    Ok(())
}

fn fetch(admin: &str) -> anyhow::Result<Value> {
    let mut stream = TcpStream::connect(admin)
        .with_context(|| format!("connecting to the admin endpoint {admin}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "{admin}/status answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    serde_json::from_str(body).context("decoding /status")
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The table: one line per proxy and type, then the source's state.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let source = &status["source"];
    out.push_str(&format!(
        "source {}: {} loads, {} refused\n",
        s(&source["directory"]),
        s(&source["loads"]),
        s(&source["failed_loads"])
    ));
    if let Some(errors) = source["last_error"].as_array() {
        for e in errors {
            out.push_str(&format!("  last load refused: {}\n", s(e)));
        }
    }
    for w in source["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("  warning: {}\n", s(w)));
    }
    let tls = &status["tls"];
    if !tls.is_null() {
        out.push_str(&format!(
            "tls {} (client CA {}, node ids by {}): {} reloads, {} refused\n",
            s(&tls["cert"]),
            s(&tls["client_ca"]),
            s(&tls["node_id_match"]),
            s(&tls["reloads"]),
            s(&tls["failed_reloads"])
        ));
        if !tls["last_error"].is_null() {
            out.push_str(&format!(
                "  last reload refused: {}\n",
                s(&tls["last_error"])
            ));
        }
    }
    for g in status["groups"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "group {} ({}): version {}\n",
            s(&g["name"]),
            s(&g["origin"]),
            s(&g["version"])
        ));
    }
    let header = [
        "NODE",
        "CLUSTER",
        "GROUP",
        "STREAM",
        "TYPE",
        "SENT",
        "ACKED",
        "LAST NACK",
    ];
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for p in status["proxies"].as_array().into_iter().flatten() {
        for (url, t) in p["types"].as_object().into_iter().flatten() {
            let nack = match &t["last_nack"] {
                Value::Null => "-".to_string(),
                // Envoy's error_detail spans lines (it dumps the refused proto): one line here.
                n => format!(
                    "{}: {}",
                    s(&n["version"]),
                    s(&n["error_detail"])
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            };
            rows.push(vec![
                s(&p["node_id"]),
                s(&p["node_cluster"]),
                s(&p["group"]),
                s(&p["stream"]),
                xds_types::type_url::short_name(url).to_string(),
                s(&t["version_sent"]),
                s(&t["version_acked"]),
                nack,
            ]);
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    // Who each proxy is by its client certificate (mutual TLS only).
    for p in status["proxies"].as_array().into_iter().flatten() {
        let id = &p["peer_identity"];
        if id.is_null() {
            continue;
        }
        let names: Vec<String> = id["subject_cn"]
            .as_str()
            .map(|cn| format!("CN={cn}"))
            .into_iter()
            .chain(
                id["dns_sans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| format!("DNS:{}", s(d))),
            )
            .chain(
                id["uri_sans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| format!("URI:{}", s(u))),
            )
            .collect();
        out.push_str(&format!(
            "{} from {}: certificate [{}]\n",
            s(&p["node_id"]),
            s(&p["peer"]),
            names.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_versions_and_the_last_nack() {
        let status = serde_json::json!({
            "source": { "directory": "/etc/xds", "loads": 3, "failed_loads": 1,
                        "last_error": ["routes.yaml: invalid YAML"], "warnings": [] },
            "groups": [ { "name": "default", "origin": "files", "version": "3-abcd" } ],
            "tls": { "cert": "/pki/cp.pem", "client_ca": "/pki/ca.pem", "node_id_match": "san",
                     "reloads": 1, "failed_reloads": 0, "last_error": null },
            "proxies": [ {
                "node_id": "edge-1", "node_cluster": "edge", "group": "default", "stream": "sotw",
                "peer": "127.0.0.1:5000",
                "peer_identity": { "subject_cn": "edge-1", "dns_sans": ["edge-1"], "uri_sans": [] },
                "types": {
                    "type.googleapis.com/envoy.config.cluster.v3.Cluster":
                        { "version_sent": "3-abcd", "version_acked": "2-ffff",
                          "last_nack": { "version": "3-abcd", "error_detail": "bad\n  port" } },
                    "type.googleapis.com/envoy.config.listener.v3.Listener":
                        { "version_sent": "3-abcd", "version_acked": "3-abcd", "last_nack": null }
                }
            } ]
        });
        let table = render(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "source /etc/xds: 3 loads, 1 refused");
        assert_eq!(lines[1], "  last load refused: routes.yaml: invalid YAML");
        assert_eq!(
            lines[2],
            "tls /pki/cp.pem (client CA /pki/ca.pem, node ids by san): 1 reloads, 0 refused"
        );
        let lines = [&lines[..2], &lines[3..]].concat();
        assert_eq!(lines[2], "group default (files): version 3-abcd");
        assert!(
            lines[3]
                .starts_with("NODE    CLUSTER  GROUP    STREAM  TYPE  SENT    ACKED   LAST NACK"),
            "{table}"
        );
        assert_eq!(
            lines[4],
            "edge-1  edge     default  sotw    CDS   3-abcd  2-ffff  3-abcd: bad port"
        );
        assert_eq!(
            lines[5],
            "edge-1  edge     default  sotw    LDS   3-abcd  3-abcd  -"
        );
        assert_eq!(
            lines[6],
            "edge-1 from 127.0.0.1:5000: certificate [CN=edge-1, DNS:edge-1]"
        );
    }
}
