use super::*;
use crate::config::listener::{NetworkFilter, TcpProxy};

fn chain(name: &str, m: ChainMatch) -> FilterChain {
    FilterChain {
        name: name.into(),
        matcher: m,
        tls: None,
        handshake_timeout: None,
        filter: NetworkFilter::Tcp(TcpProxy {
            stat_prefix: String::new(),
            cluster: String::new(),
            idle_timeout: None,
            access_log: None,
        }),
    }
}

fn names(n: &[&str]) -> ChainMatch {
    ChainMatch {
        server_names: n.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn listener(chains: Vec<FilterChain>, default: Option<FilterChain>) -> Listener {
    Listener {
        name: "l".into(),
        address: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
        chains,
        default_chain: default,
        tls_inspector: true,
        filters_timeout: None,
        stat_prefix: String::new(),
        reuse_port: true,
    }
}

fn pick(l: &Listener, sni: Option<&str>, tls: bool, alpn: &[Vec<u8>]) -> Option<String> {
    let h = Hints {
        local_port: 443,
        sni,
        tls,
        alpn,
    };
    select(l, &h).map(|c| c.name.clone())
}

#[test]
fn server_names_exact_then_longest_wildcard_then_none() {
    let l = listener(
        vec![
            chain("a", names(&["a.example.com"])),
            chain("wild", names(&["*.example.com"])),
            chain("deep", names(&["*.b.example.com"])),
            chain("plain", names(&[])),
        ],
        None,
    );
    assert_eq!(
        pick(&l, Some("a.example.com"), true, &[]).as_deref(),
        Some("a")
    );
    assert_eq!(
        pick(&l, Some("x.example.com"), true, &[]).as_deref(),
        Some("wild")
    );
    assert_eq!(
        pick(&l, Some("x.b.example.com"), true, &[]).as_deref(),
        Some("deep")
    );
    assert_eq!(
        pick(&l, Some("y.a.example.com"), true, &[]).as_deref(),
        Some("wild")
    );
    assert_eq!(
        pick(&l, Some("other.org"), true, &[]).as_deref(),
        Some("plain")
    );
    assert_eq!(pick(&l, None, false, &[]).as_deref(), Some("plain"));
}

#[test]
fn unknown_name_without_catch_all_gets_the_default_or_nothing() {
    let only = vec![chain("a", names(&["a.example.com"]))];
    assert_eq!(
        pick(
            &listener(only.clone(), None),
            Some("b.example.com"),
            true,
            &[]
        ),
        None
    );
    let l = listener(only, Some(chain("default", ChainMatch::default())));
    assert_eq!(
        pick(&l, Some("b.example.com"), true, &[]).as_deref(),
        Some("default")
    );
}

#[test]
fn transport_protocol_and_no_backtracking() {
    let tls = |name: &str, n: &[&str]| {
        let mut m = names(n);
        m.transport_protocol = Some("tls".into());
        chain(name, m)
    };
    let mut raw = names(&[]);
    raw.transport_protocol = Some("raw_buffer".into());
    let l = listener(
        vec![
            tls("tls", &[]),
            chain("raw", raw),
            tls("named", &["n.example"]),
        ],
        None,
    );
    assert_eq!(pick(&l, None, true, &[]).as_deref(), Some("tls"));
    assert_eq!(pick(&l, None, false, &[]).as_deref(), Some("raw"));
    // The name level picks "named"; plaintext with that name... cannot happen (no SNI without
    // TLS), but a TLS hello for the name goes to it.
    assert_eq!(
        pick(&l, Some("n.example"), true, &[]).as_deref(),
        Some("named")
    );
}

#[test]
fn application_protocols_in_client_order() {
    let alpn = |name: &str, p: &[&str]| {
        chain(
            name,
            ChainMatch {
                application_protocols: p.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
    };
    let l = listener(
        vec![
            alpn("h2", &["h2"]),
            alpn("h1", &["http/1.1"]),
            alpn("any", &[]),
        ],
        None,
    );
    let offered = [b"http/1.1".to_vec(), b"h2".to_vec()];
    assert_eq!(pick(&l, None, true, &offered).as_deref(), Some("h1"));
    assert_eq!(
        pick(&l, None, true, &[b"x".to_vec()]).as_deref(),
        Some("any")
    );
}
