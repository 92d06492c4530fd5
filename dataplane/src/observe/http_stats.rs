//! A connection manager's `http.<stat_prefix>.*` stats: connections and requests, and requests
//! by the class of their response (Envoy's `downstream_cx_*`, `downstream_rq_*`). Kept by prefix for the life of the process, as Envoy's stats
//! store keeps them by name: a listener update with the same prefix counts on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use super::stat::Stat;

#[derive(Debug, Default)]
pub struct HttpStats {
    cx_total: AtomicU64,
    cx_active: AtomicU64,
    rq_total: AtomicU64,
    /// By response class: 1xx to 5xx.
    rq_class: [AtomicU64; 5],
}

static BY_PREFIX: LazyLock<Mutex<BTreeMap<String, Arc<HttpStats>>>> =
    LazyLock::new(Default::default);

/// The stats of the connection managers with this `stat_prefix`.
pub fn for_prefix(prefix: &str) -> Arc<HttpStats> {
    let mut all = BY_PREFIX.lock().unwrap_or_else(|p| p.into_inner());
    all.entry(prefix.to_string()).or_default().clone()
}

/// Every connection manager's stats, named as Envoy's.
pub fn stats() -> Vec<Stat> {
    let all = BY_PREFIX.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::new();
    for (prefix, s) in all.iter() {
        let name = |stat: &str| format!("http.{prefix}.{stat}");
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        out.push(Stat::counter(
            name("downstream_cx_total"),
            load(&s.cx_total),
        ));
        out.push(Stat::gauge(
            name("downstream_cx_active"),
            load(&s.cx_active),
        ));
        out.push(Stat::counter(
            name("downstream_rq_total"),
            load(&s.rq_total),
        ));
        for (class, v) in s.rq_class.iter().enumerate() {
            out.push(Stat::counter(
                name(&format!("downstream_rq_{}xx", class + 1)),
                load(v),
            ));
        }
    }
    out
}

impl HttpStats {
    /// A connection served by the manager, counted active until the guard drops.
    pub fn connection(self: &Arc<Self>) -> Active {
        self.cx_total.fetch_add(1, Ordering::Relaxed);
        self.cx_active.fetch_add(1, Ordering::Relaxed);
        Active(self.clone())
    }

    /// A request the manager answers (routed or refused; not one the HTTP/1 codec itself
    /// refused as malformed).
    pub fn request(&self) {
        self.rq_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A response sent with this status.
    pub fn responded(&self, status: u16) {
        if let Some(v) = self.rq_class.get(usize::from(status / 100).wrapping_sub(1)) {
            v.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Uncounts an active connection when dropped.
#[derive(Debug)]
pub struct Active(Arc<HttpStats>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.cx_active.fetch_sub(1, Ordering::Relaxed);
    }
}
