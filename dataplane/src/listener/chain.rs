//! Filter chain matching, as Envoy's `FilterChainMatch` documents it: the criteria are
//! applied in order (destination port, server name, transport protocol, application
//! protocols); at each level the most specific value that matches wins and only the chains
//! with it go on to the next level, or, when none has a matching value, the chains that do not
//! constrain that level. There is no backtracking: a connection that passes a level and then
//! fails the next gets the default chain, not a less specific one.

use crate::config::Listener;
use crate::config::listener::{ChainMatch, FilterChain};

/// What is known about a connection when its chain is chosen.
#[derive(Debug, Clone, Copy)]
pub struct Hints<'a> {
    pub local_port: u16,
    /// The ClientHello's server name (lowercased), with the TLS inspector.
    pub sni: Option<&'a str>,
    /// The inspector saw a TLS ClientHello (transport protocol "tls", else "raw_buffer").
    pub tls: bool,
    /// The ClientHello's ALPN protocols, in the client's order.
    pub alpn: &'a [Vec<u8>],
}

/// The chain for a connection: the matching chain, else the default chain, else none (the
/// connection is closed, as Envoy does).
pub fn select<'a>(listener: &'a Listener, h: &Hints<'_>) -> Option<&'a FilterChain> {
    let chains: Vec<&FilterChain> = listener.chains.iter().collect();
    let chains = narrow(
        chains,
        |m| m.destination_port == Some(h.local_port),
        |m| m.destination_port.is_none(),
    );
    let chains = by_server_name(chains, h.sni);
    let protocol = if h.tls { "tls" } else { "raw_buffer" };
    let chains = narrow(
        chains,
        |m| m.transport_protocol.as_deref() == Some(protocol),
        |m| m.transport_protocol.is_none(),
    );
    let chains = by_application_protocol(chains, h.alpn);
    chains
        .into_iter()
        .next()
        .or(listener.default_chain.as_ref())
}

/// The chains whose value is `specific`, or if there are none, those matching `any`.
fn narrow(
    chains: Vec<&FilterChain>,
    specific: impl Fn(&ChainMatch) -> bool,
    any: impl Fn(&ChainMatch) -> bool,
) -> Vec<&FilterChain> {
    let found: Vec<&FilterChain> = chains
        .iter()
        .copied()
        .filter(|c| specific(&c.matcher))
        .collect();
    if found.is_empty() {
        chains.into_iter().filter(|c| any(&c.matcher)).collect()
    } else {
        found
    }
}

/// Exact name first, then wildcards from the longest suffix (`a.b.example.com` tries
/// `*.b.example.com`, `*.example.com`, `*.com`), then chains without server names.
fn by_server_name<'a>(chains: Vec<&'a FilterChain>, sni: Option<&str>) -> Vec<&'a FilterChain> {
    let with = |name: &str| -> Vec<&'a FilterChain> {
        chains
            .iter()
            .copied()
            .filter(|c| c.matcher.server_names.iter().any(|n| n == name))
            .collect()
    };
    if let Some(sni) = sni.filter(|s| !s.is_empty()) {
        let exact = with(sni);
        if !exact.is_empty() {
            return exact;
        }
        let mut rest = sni;
        while let Some((_, suffix)) = rest.split_once('.') {
            let wildcard = with(&format!("*.{suffix}"));
            if !wildcard.is_empty() {
                return wildcard;
            }
            rest = suffix;
        }
    }
    chains
        .into_iter()
        .filter(|c| c.matcher.server_names.is_empty())
        .collect()
}

/// The first of the client's protocols some chain lists, else chains listing none.
fn by_application_protocol<'a>(
    chains: Vec<&'a FilterChain>,
    alpn: &[Vec<u8>],
) -> Vec<&'a FilterChain> {
    for offered in alpn {
        let found: Vec<&FilterChain> = chains
            .iter()
            .copied()
            .filter(|c| {
                c.matcher
                    .application_protocols
                    .iter()
                    .any(|p| p.as_bytes() == offered.as_slice())
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    chains
        .into_iter()
        .filter(|c| c.matcher.application_protocols.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
