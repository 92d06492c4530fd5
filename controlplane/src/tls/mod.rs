//! TLS for the xDS listener: `serve --tls-cert FILE --tls-key FILE [--client-ca FILE]`.
//!
//! rustls on the ring provider. We do the handshakes ourselves (not tonic's `ServerTlsConfig`)
//! for two reasons: the certificate must be replaceable while the server runs (new handshakes
//! use the new files, established streams are untouched: [`reload`]), and a failed handshake
//! must be logged with its peer and reason instead of disappearing inside tonic. The streams
//! we hand tonic are `tokio_rustls::server::TlsStream`s, so tonic's `Request::peer_certs()`
//! and `remote_addr()` work as with its own TLS.
//!
//! * [`pem`]: reading certificates and keys, the key-matches-certificate check (shared with the
//!   checks of Secret resources).
//! * [`identity`]: the names of a client certificate and `--node-id-match`.
//! * [`reload`]: watching the files.

pub mod identity;
pub mod pem;
pub mod reload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info};

pub use identity::{NodeIdMatch, PeerIdentity};

/// A client that connects and then stalls cannot hold a connection slot longer than this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once. Beyond it a new connection is closed at once: a flood of
/// stalled clients costs at most this many tasks and buffers, and established streams (and
/// a fleet reconnecting after a restart, which finishes its handshakes in milliseconds) are
/// not held back.
const MAX_HANDSHAKES: usize = 1024;

/// The files the xDS listener's TLS comes from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With it, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

/// The provider every TLS config of the controlplane uses (STACK.md: ring only).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// Reads the files into a server config. Errors name the file and the reason.
    pub fn load(&self) -> Result<ServerConfig, String> {
        let certs = pem::certs_from_file(&self.cert)?;
        let key = pem::key_from_file(&self.key)?;
        pem::check_pair(&certs, &key).map_err(|e| {
            format!(
                "{}: the private key does not match the certificate in {}: {e}",
                self.key.display(),
                self.cert.display()
            )
        })?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in pem::certs_from_file(path)? {
                    roots.add(cert).map_err(|e| {
                        format!("{}: not a usable CA certificate: {e}", path.display())
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                        .build()
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        // gRPC is HTTP/2. A client that offers ALPN must offer h2 (rustls refuses it otherwise,
        // with the no_application_protocol alert); Envoy's gRPC client offers none unless its
        // UpstreamTlsContext lists alpn_protocols, which rustls accepts.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// What the admin API shows of the listener's TLS.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsState {
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
    pub node_id_match: Option<NodeIdMatch>,
    /// Seconds since the Unix epoch of the last successful (re)load.
    pub loaded_at: u64,
    pub reloads: u64,
    pub failed_reloads: u64,
    /// Why the last reload was refused (the previous files keep serving).
    pub last_error: Option<String>,
}

/// Shared handle on [`TlsState`].
#[derive(Debug, Clone, Default)]
pub struct TlsStatus(Arc<Mutex<TlsState>>);

impl TlsStatus {
    pub fn get(&self) -> TlsState {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn update(&self, f: impl FnOnce(&mut TlsState)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }
}

/// The server config in force; a reload swaps it, and each handshake takes the one current
/// when it starts.
#[derive(Debug, Clone)]
pub struct Acceptor(Arc<ArcSwap<ServerConfig>>);

impl Acceptor {
    pub fn new(config: ServerConfig) -> Self {
        Acceptor(Arc::new(ArcSwap::from_pointee(config)))
    }

    pub fn swap(&self, config: ServerConfig) {
        self.0.store(Arc::new(config));
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.load_full()
    }

    /// Accepts on `listener` and hands over the connections whose handshake succeeded. Each
    /// handshake runs in its own task, so a slow client holds back nobody else. The stream
    /// never yields an error: a failed handshake is that client's problem, logged, and the
    /// listener goes on.
    pub fn incoming(
        self,
        listener: TcpListener,
    ) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
        let (tx, rx) = mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and the like: back off instead of spinning.
                            debug!(error = %e, "xDS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    info!(%peer, "xDS connection closed: {MAX_HANDSHAKES} TLS handshakes already in progress");
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = TlsAcceptor::from(self.current());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Ok(Err(e)) => info!(%peer, error = %e, "xDS TLS handshake failed"),
                        Err(_) => info!(%peer, "xDS TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}
