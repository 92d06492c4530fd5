//! TLS with rustls (ring provider): the listener side (the ClientHello inspector, termination
//! with per-chain certificates and client-certificate checks) and the cluster side
//! (origination with SNI, CA and SAN checks, client certificates).
//!
//! The translated contexts live in `config::tls`; this module turns them into rustls configs,
//! once per set of SDS secrets ([`Built`]), and runs handshakes. An SDS rotation therefore
//! changes the config used by the next handshake; established connections keep theirs.

pub mod client;
pub mod der;
pub mod files;
pub mod inspector;
pub mod rewind;
pub mod server;
pub mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

use crate::config::secret::{Secret, SecretKind, Validation};
use crate::config::tls::Source;
use rustls::sign::CertifiedKey;

/// The rustls config of one TLS context, built on first use and rebuilt only when one of the
/// SDS secrets it was built from is replaced (compared by `Arc` identity).
pub struct Built<T> {
    slot: ArcSwapOption<(Vec<Arc<Secret>>, Arc<T>)>,
}

impl<T> Default for Built<T> {
    fn default() -> Self {
        Built {
            slot: ArcSwapOption::empty(),
        }
    }
}

impl<T> std::fmt::Debug for Built<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Built")
    }
}

impl<T> Built<T> {
    /// The config for `deps` (the secrets it is built from, in a fixed order).
    pub fn get(
        &self,
        deps: Vec<Arc<Secret>>,
        build: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        if let Some(entry) = &*self.slot.load() {
            let same = entry.0.len() == deps.len()
                && entry.0.iter().zip(&deps).all(|(a, b)| Arc::ptr_eq(a, b));
            if same {
                return Ok(entry.1.clone());
            }
        }
        // Two handshakes racing after a rotation may both build; either result is right.
        let value = Arc::new(build()?);
        self.slot.store(Some(Arc::new((deps, value.clone()))));
        Ok(value)
    }
}

/// The secrets a config can name: the bootstrap's static ones and those from SDS.
pub type Secrets = HashMap<String, Arc<Secret>>;

/// A certificate from its source; the SDS secret it came from is pushed to `deps`.
pub fn certificate(
    source: &Source<CertifiedKey>,
    secrets: &Secrets,
    deps: &mut Vec<Arc<Secret>>,
) -> Result<Arc<CertifiedKey>, String> {
    resolve(
        source,
        secrets,
        deps,
        "tls_certificate",
        "validation_context",
        |k| match k {
            SecretKind::Certificate(k) => Some(k.clone()),
            SecretKind::Validation(_) => None,
        },
    )
}

/// A validation context from its source; see [`certificate`].
pub fn validation(
    source: &Source<Validation>,
    secrets: &Secrets,
    deps: &mut Vec<Arc<Secret>>,
) -> Result<Arc<Validation>, String> {
    resolve(
        source,
        secrets,
        deps,
        "validation_context",
        "tls_certificate",
        |k| match k {
            SecretKind::Validation(v) => Some(v.clone()),
            SecretKind::Certificate(_) => None,
        },
    )
}

/// The value a source names: inline, or the SDS secret of that name if it is the kind
/// `wanted` (`pick` takes it out; `other` names the kind it is otherwise).
fn resolve<T>(
    source: &Source<T>,
    secrets: &Secrets,
    deps: &mut Vec<Arc<Secret>>,
    wanted: &str,
    other: &str,
    pick: impl Fn(&SecretKind) -> Option<Arc<T>>,
) -> Result<Arc<T>, String> {
    match source {
        Source::Inline(v) => Ok(v.clone()),
        Source::Sds { name, .. } => {
            let secret = secrets
                .get(name)
                .ok_or_else(|| format!("secret \"{name}\" has not arrived"))?;
            deps.push(secret.clone());
            pick(&secret.kind)
                .ok_or_else(|| format!("secret \"{name}\" is a {other}, not a {wanted}"))
        }
    }
}

/// What a TLS connection tells about itself, for routing, header mutation and logs.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The SNI as the listener's tls_inspector read it (Envoy's requested server name);
    /// `None` without the inspector, even when the handshake carried one.
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    /// The client certificate's URI SANs (`%DOWNSTREAM_PEER_URI_SAN%`), DNS SANs
    /// (`%DOWNSTREAM_PEER_DNS_SAN%`); empty without a client certificate.
    pub peer_uri_sans: Vec<String>,
    pub peer_dns_sans: Vec<String>,
}

/// Envoy's per-cluster `ssl.*` counters that matter to an operator.
#[derive(Debug, Default)]
pub struct TlsStats {
    pub handshake: AtomicU64,
    pub connection_error: AtomicU64,
    pub fail_verify_error: AtomicU64,
    pub fail_verify_san: AtomicU64,
    pub fail_verify_no_cert: AtomicU64,
}

impl TlsStats {
    /// Adds `other`'s counts (a listener's chains shown as one, as Envoy's listener stats).
    pub fn add(&self, other: &TlsStats) {
        for (to, from) in [
            (&self.handshake, &other.handshake),
            (&self.connection_error, &other.connection_error),
            (&self.fail_verify_error, &other.fail_verify_error),
            (&self.fail_verify_san, &other.fail_verify_san),
            (&self.fail_verify_no_cert, &other.fail_verify_no_cert),
        ] {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The counters as `<prefix>.ssl.<name>` stats.
    pub fn stats(&self, prefix: &str) -> Vec<crate::observe::stat::Stat> {
        [
            ("connection_error", &self.connection_error),
            ("fail_verify_error", &self.fail_verify_error),
            ("fail_verify_no_cert", &self.fail_verify_no_cert),
            ("fail_verify_san", &self.fail_verify_san),
            ("handshake", &self.handshake),
        ]
        .into_iter()
        .map(|(name, c)| {
            crate::observe::stat::Stat::counter(
                format!("{prefix}.ssl.{name}"),
                c.load(Ordering::Relaxed),
            )
        })
        .collect()
    }
}
