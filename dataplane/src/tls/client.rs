//! TLS origination: a cluster's [`ClientTls`] as a rustls `ClientConfig` (built once per set
//! of secrets), the server name to send, and a connector for the pooled HTTP clients that
//! does TCP then TLS within the cluster's connect timeout (Envoy counts a connection as
//! connected once its transport socket is, so the handshake is inside connect_timeout).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::verify::Upstream;
use super::{Secrets, TlsStats, certificate, validation};
use crate::config::tls::ClientTls;

/// The rustls config for the cluster with the current secrets.
pub fn config(tls: &ClientTls, secrets: &Secrets) -> Result<Arc<ClientConfig>, String> {
    let mut deps = Vec::new();
    let cert = tls
        .cert
        .as_ref()
        .map(|c| certificate(c, secrets, &mut deps))
        .transpose()?;
    let validation = tls
        .validation
        .as_ref()
        .map(|v| validation(v, secrets, &mut deps))
        .transpose()?;
    tls.built.get(deps, || {
        let provider = tls.params.provider.clone();
        let verifier = Arc::new(Upstream {
            validation,
            check_name: tls.auto_san_validation,
            provider: provider.clone(),
            stats: tls.stats.clone(),
        });
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&tls.params.versions)
            .map_err(|e| format!("tls_params: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match cert {
            Some(cert) => builder.with_client_cert_resolver(Arc::new(ClientCert(cert))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = tls.alpn.clone();
        config.resumption = if tls.max_session_keys == 0 {
            Resumption::disabled()
        } else {
            Resumption::in_memory_sessions(tls.max_session_keys)
        };
        Ok(config)
    })
}

/// The server name for a connection: the request's host with `auto_sni`, else `sni`. With
/// neither, the host's address: rustls sends no SNI for an IP address, as Envoy sends none.
pub fn server_name(tls: &ClientTls, host: Option<&str>, addr: IpAddr) -> ServerName<'static> {
    let host = host.map(|h| match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => h,
    });
    let name = match (tls.auto_sni, host) {
        (true, Some(h)) if !h.is_empty() => Some(h),
        _ => tls.sni.as_deref(),
    };
    name.and_then(|n| ServerName::try_from(n.to_string()).ok())
        .unwrap_or(ServerName::IpAddress(addr.into()))
}

/// The client certificate for mutual TLS.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// TLS on a connected socket, counted in the cluster's `ssl.*` stats.
pub async fn connect(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    stats: &TlsStats,
) -> std::io::Result<TlsStream<TcpStream>> {
    match tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    {
        Ok(s) => {
            stats.handshake.fetch_add(1, Ordering::Relaxed);
            Ok(s)
        }
        Err(e) => {
            stats.connection_error.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// What a pooled client's connector does on top of TCP.
#[derive(Clone)]
pub struct Origination {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    pub stats: Arc<TlsStats>,
}

/// The pooled clients' connector: TCP, then TLS when the cluster has a transport socket.
#[derive(Clone)]
pub struct Connector {
    pub http: HttpConnector,
    pub tls: Option<Origination>,
    pub timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = tower_service::Service::<Uri>::call(&mut self.http, uri);
        let (tls, timeout) = (self.tls.clone(), self.timeout);
        Box::pin(async move {
            let tcp = tcp.await?;
            let Some(o) = tls else {
                return Ok(Stream::Plain(tcp));
            };
            let handshake = connect(tcp.into_inner(), o.config, o.name, &o.stats);
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(s)) => Ok(Stream::Tls(Box::new(TokioIo::new(s)))),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err("TLS handshake timed out".into()),
            }
        })
    }
}

/// An upstream connection, plaintext or TLS.
pub enum Stream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(s) => s.connected(),
            Stream::Tls(s) => {
                let (tcp, conn) = s.inner().get_ref();
                let connected = tcp.connected();
                if conn.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
