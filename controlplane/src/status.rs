//! Per-proxy status: what each connected proxy was sent, ACKed and NACKed.
//!
//! This is the first thing an operator asks when a push "did not work", so NACKs are data
//! here (served by the admin API and `controlplane status`), not only log lines.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::server::by_type::ByType;

/// What one proxy's stream has been through, per type URL.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub node_id: String,
    pub node_cluster: String,
    pub group: Option<String>,
    /// `sotw` or `delta`.
    pub stream: &'static str,
    pub peer: String,
    /// The names of the client certificate the proxy presented (mutual TLS only).
    pub peer_identity: Option<crate::tls::PeerIdentity>,
    /// Seconds since the Unix epoch.
    pub connected_since: u64,
    /// Each type URL's status, in ADS order.
    pub types: ByType<TypeStatus>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStatus {
    pub version_sent: Option<String>,
    pub nonce_sent: Option<String>,
    pub version_acked: Option<String>,
    /// Names the proxy subscribed to (empty for a wildcard subscription).
    pub subscribed: crate::server::names::Names,
    pub wildcard: bool,
    /// Boxed: most streams never NACK, and every stream holds a `TypeStatus` per type.
    pub last_nack: Option<Box<Nack>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    /// The version the proxy refused (SotW: the version of the refused response).
    pub version: String,
    pub nonce: String,
    pub error_detail: String,
    pub at: u64,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Every connected proxy's status, by stream id. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ProxyRegistry {
    streams: Arc<Mutex<BTreeMap<u64, ProxyStatus>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl ProxyRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every connected proxy, in connection order.
    pub fn list(&self) -> Vec<ProxyStatus> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new stream; the returned handle removes it when dropped.
    pub(crate) fn connect(&self, stream: &'static str, peer: String) -> StreamHandle {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(
            id,
            ProxyStatus {
                node_id: String::new(),
                node_cluster: String::new(),
                group: None,
                stream,
                peer,
                peer_identity: None,
                connected_since: now(),
                types: ByType::default(),
            },
        );
        StreamHandle {
            registry: self.clone(),
            id,
        }
    }
}

/// One stream's entry in the registry.
#[derive(Debug)]
pub(crate) struct StreamHandle {
    registry: ProxyRegistry,
    id: u64,
}

impl StreamHandle {
    pub(crate) fn update(&self, f: impl FnOnce(&mut ProxyStatus)) {
        if let Some(status) = self.registry.lock().get_mut(&self.id) {
            f(status);
        }
    }

    pub(crate) fn update_type(&self, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        // Under the registry's one lock, taken by every stream on every push and ACK: no
        // allocation of the key once the type is there.
        self.update(|s| f(s.types.get_or_default(type_url)));
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_kept_in_url_order_once_each_and_served_as_an_object() {
        let mut types = ByType::<TypeStatus>::default();
        types.get_or_default("b").version_sent = Some("1".into());
        types.get_or_default("a").wildcard = true;
        types.get_or_default("b").version_acked = Some("1".into());
        assert_eq!(types.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            types.get("b").and_then(|t| t.version_acked.as_deref()),
            Some("1")
        );
        assert!(types.get("c").is_none());
        let json = serde_json::to_value(&types).unwrap();
        assert_eq!(json["a"]["wildcard"], true);
        assert_eq!(json["b"]["version_sent"], "1");
    }
}
