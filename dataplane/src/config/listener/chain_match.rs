//! `filter_chain_match` -> [`ChainMatch`], and the check that no two chains of a listener
//! match the same connections.

use xds_types::pb::envoy::config::listener::v3::FilterChainMatch;

use super::{ChainMatch, FilterChain};
use crate::config::{FieldError, FieldResult, only_fields};

/// Envoy refuses a listener where two chains match the same connections ("multiple filter
/// chains with the same matching rules are defined").
pub(super) fn check_distinct(chains: &[FilterChain]) -> FieldResult<()> {
    let mut seen = std::collections::HashMap::new();
    for (i, c) in chains.iter().enumerate() {
        let m = &c.matcher;
        let names: Vec<&str> = if m.server_names.is_empty() {
            vec![""]
        } else {
            m.server_names.iter().map(String::as_str).collect()
        };
        let protocols: Vec<&str> = if m.application_protocols.is_empty() {
            vec![""]
        } else {
            m.application_protocols.iter().map(String::as_str).collect()
        };
        for name in &names {
            for proto in &protocols {
                let key = (
                    m.destination_port,
                    *name,
                    m.transport_protocol.as_deref(),
                    *proto,
                );
                if let Some(first) = seen.insert(key, i) {
                    return Err(FieldError::new(
                        format!("filter_chains[{i}].filter_chain_match"),
                        format!(
                            "multiple filter chains with the same matching rules are defined (filter_chains[{first}] matches the same connections)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

pub(super) fn chain_match(m: &FilterChainMatch) -> FieldResult<ChainMatch> {
    only_fields(
        m,
        &[
            "destination_port",
            "server_names",
            "transport_protocol",
            "application_protocols",
        ],
    )?;
    let mut server_names = Vec::new();
    for (i, n) in m.server_names.iter().enumerate() {
        let n = n.to_ascii_lowercase();
        let wildcard = n.strip_prefix("*.");
        if n.is_empty() || wildcard.unwrap_or(&n).contains('*') {
            return Err(FieldError::new(
                format!("server_names[{i}]"),
                format!("\"{n}\": partial wildcards are not supported (use \"*.example.com\")"),
            ));
        }
        server_names.push(n);
    }
    let transport_protocol = match m.transport_protocol.as_str() {
        "" => None,
        "tls" | "raw_buffer" => Some(m.transport_protocol.clone()),
        other => {
            return Err(FieldError::new(
                "transport_protocol",
                format!("\"{other}\" is not supported (tls and raw_buffer are)"),
            ));
        }
    };
    Ok(ChainMatch {
        destination_port: m.destination_port.as_ref().map(|p| p.value as u16),
        server_names,
        transport_protocol,
        application_protocols: m.application_protocols.clone(),
    })
}
