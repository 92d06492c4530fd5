//! STRICT_DNS and LOGICAL_DNS clusters: resolves their names in the background and republishes
//! the cluster when an answer changes, as Envoy's DNS clusters do every `dns_refresh_rate`.
//!
//! One task for the process. It wakes on every config change (a new DNS cluster is resolved at
//! once, so it warms within one lookup) and otherwise at the earliest refresh due. Lookups go
//! through the system resolver (`getaddrinfo` on tokio's blocking pool), as Envoy's
//! `getaddrinfo` resolver does; a failed lookup keeps the last answer (Envoy keeps its hosts
//! too) and retries at the refresh rate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use crate::config::LoadAssignment;
use crate::config::cluster::{Discovery, DnsDiscovery, DnsFamily};
use crate::config::endpoint::Host;
use crate::runtime::Runtime;

pub async fn run(runtime: Arc<Runtime>) {
    let mut changed = runtime.subscribe();
    // When each DNS cluster is next due, and the discovery it was resolved for.
    let mut due: HashMap<String, (Instant, DnsDiscovery)> = HashMap::new();
    loop {
        let snapshot = runtime.load();
        let now = Instant::now();
        let dns: Vec<(String, DnsDiscovery)> = snapshot
            .config
            .clusters
            .iter()
            .filter_map(|(name, c)| match &c.discovery {
                Discovery::Dns(d) => Some((name.clone(), d.clone())),
                _ => None,
            })
            .collect();
        due.retain(|name, _| dns.iter().any(|(n, _)| n == name));
        for (name, d) in dns {
            let fresh = due
                .get(&name)
                .is_none_or(|(at, was)| *at <= now || *was != d);
            if !fresh {
                continue;
            }
            let assignment = resolve(&d).await;
            due.insert(name.clone(), (Instant::now() + d.refresh_rate, d));
            let Some(assignment) = assignment else {
                continue;
            };
            let unchanged = runtime
                .resolved(&name)
                .is_some_and(|old| old.priorities == assignment.priorities);
            if !unchanged {
                tracing::info!(cluster = %name, hosts = assignment.priorities.iter().flatten().count(), "DNS answer changed");
                runtime.set_resolved(&name, assignment);
            }
        }
        let next = due.values().map(|(at, _)| *at).min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            () = sleep => {}
        }
    }
}

/// Resolves every name of `d`; `None` if any lookup failed (the last answer stays).
async fn resolve(d: &DnsDiscovery) -> Option<LoadAssignment> {
    let mut priorities = Vec::with_capacity(d.priorities.len());
    for endpoints in &d.priorities {
        let mut hosts = Vec::new();
        for e in endpoints {
            let addrs = match tokio::net::lookup_host((e.name.as_str(), e.port)).await {
                Ok(a) => a.collect::<Vec<_>>(),
                Err(err) => {
                    tracing::warn!(name = %e.name, error = %err, "DNS lookup failed");
                    return None;
                }
            };
            let mut addrs = select(addrs, d.family);
            if d.logical {
                addrs.truncate(1);
            }
            hosts.extend(addrs.into_iter().map(|addr| Host {
                addr,
                hostname: e.name.clone(),
                weight: e.weight,
                healthy: e.healthy,
            }));
        }
        priorities.push(hosts);
    }
    Some(LoadAssignment { priorities })
}

/// The answers `family` keeps, in the resolver's order, without duplicates.
fn select(addrs: Vec<SocketAddr>, family: DnsFamily) -> Vec<SocketAddr> {
    let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs.into_iter().partition(|a| a.is_ipv4());
    let mut out = match family {
        DnsFamily::V4Only => v4,
        DnsFamily::V6Only => v6,
        DnsFamily::Auto => {
            if v6.is_empty() {
                v4
            } else {
                v6
            }
        }
        DnsFamily::V4Preferred => {
            if v4.is_empty() {
                v6
            } else {
                v4
            }
        }
        DnsFamily::All => v4.into_iter().chain(v6).collect(),
    };
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| seen.insert(*a));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster::DnsEndpoint;
    use std::time::Duration;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn families_pick_their_answers() {
        let answers = vec![a("127.0.0.1:80"), a("[::1]:80"), a("127.0.0.1:80")];
        assert_eq!(
            select(answers.clone(), DnsFamily::V4Only),
            [a("127.0.0.1:80")]
        );
        assert_eq!(select(answers.clone(), DnsFamily::V6Only), [a("[::1]:80")]);
        assert_eq!(select(answers.clone(), DnsFamily::Auto), [a("[::1]:80")]);
        assert_eq!(
            select(answers.clone(), DnsFamily::V4Preferred),
            [a("127.0.0.1:80")]
        );
        assert_eq!(
            select(answers, DnsFamily::All),
            [a("127.0.0.1:80"), a("[::1]:80")]
        );
        assert_eq!(
            select(vec![a("127.0.0.1:80")], DnsFamily::Auto),
            [a("127.0.0.1:80")]
        );
    }

    #[tokio::test]
    async fn resolves_names_and_ips_by_priority() {
        let endpoint = |name: &str, port| DnsEndpoint {
            name: name.into(),
            port,
            weight: 2,
            healthy: true,
        };
        let d = DnsDiscovery {
            logical: false,
            priorities: vec![
                vec![endpoint("localhost", 81)],
                vec![endpoint("127.0.0.2", 82)],
            ],
            refresh_rate: Duration::from_secs(5),
            family: DnsFamily::V4Only,
        };
        let la = resolve(&d).await.expect("localhost resolves");
        assert_eq!(la.priorities[0][0].addr, a("127.0.0.1:81"));
        assert_eq!(la.priorities[0][0].weight, 2);
        assert_eq!(la.priorities[1][0].addr, a("127.0.0.2:82"));
        let bad = DnsDiscovery {
            priorities: vec![vec![endpoint("no-such-host.invalid", 80)]],
            ..d
        };
        assert!(resolve(&bad).await.is_none());
    }
}
