//! TLS clients and a TLS backend for tests: connect with a chosen SNI, ALPN, client
//! certificate and signature schemes; tell which certificate the server presented; send
//! HTTP/1.1 or HTTP/2 requests over the connection.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use super::DEADLINE;
use super::pki::Leaf;

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default()
}

fn key(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    Ok(PrivateKeyDer::from_pem_slice(pem.as_bytes())?)
}

/// How a test client connects.
#[derive(Clone, Default)]
pub struct Client {
    /// The CA the server's certificate must chain to (PEM); empty: accept any certificate
    /// (to see which one a server presents for a name it does not cover).
    pub ca: String,
    pub sni: Option<String>,
    pub alpn: Vec<&'static str>,
    pub cert: Option<Leaf>,
    /// Offer only RSA signature schemes (a client that cannot verify ECDSA).
    pub rsa_only: bool,
    /// Offer only TLS 1.2.
    pub tls12_only: bool,
}

impl Client {
    pub fn new(ca: &str, sni: &str) -> Client {
        Client {
            ca: ca.to_string(),
            sni: Some(sni.to_string()),
            ..Default::default()
        }
    }

    fn config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        if self.rsa_only {
            let algs = provider.signature_verification_algorithms;
            let mapping: Vec<_> = algs
                .mapping
                .iter()
                .filter(|(s, _)| format!("{s:?}").starts_with("RSA"))
                .copied()
                .collect();
            provider.signature_verification_algorithms = WebPkiSupportedAlgorithms {
                all: algs.all,
                mapping: Box::leak(mapping.into_boxed_slice()),
            };
        }
        let provider = Arc::new(provider);
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?;
        let builder = if self.ca.is_empty() {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            for c in certs(&self.ca) {
                roots.add(c)?;
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.cert {
            Some(leaf) => builder.with_client_auth_cert(certs(&leaf.cert), key(&leaf.key)?)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Ok(config)
    }

    /// A TLS connection to 127.0.0.1:`port`; `Err` when the handshake fails.
    pub async fn connect(&self, port: u16) -> anyhow::Result<TlsStream<TcpStream>> {
        self.connect_with(port, Arc::new(self.config()?)).await
    }

    /// A config to connect with several times (its session cache allows resumption).
    pub fn shared(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        Ok(Arc::new(self.config()?))
    }

    pub async fn connect_with(
        &self,
        port: u16,
        config: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<TlsStream<TcpStream>> {
        // Without an SNI, connect by IP address: rustls then sends no server_name.
        let name = match &self.sni {
            Some(s) => ServerName::try_from(s.clone())?,
            None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let tls = tokio_rustls::TlsConnector::from(config);
        Ok(tokio::time::timeout(DEADLINE, tls.connect(name, tcp))
            .await
            .context("TLS handshake timed out")??)
    }
}

/// Accepts any server certificate (signatures are still checked).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate the server presented on `stream` is `leaf`'s.
pub fn presented(stream: &TlsStream<TcpStream>, leaf: &Leaf) -> bool {
    let (_, conn) = stream.get_ref();
    let want = certs(&leaf.cert);
    conn.peer_certificates()
        .and_then(|c| c.first())
        .is_some_and(|c| want.first() == Some(c))
}

/// One request on an established TLS connection (HTTP/2 when ALPN chose h2); the
/// connection is driven in the background so more requests can follow.
pub struct Session {
    sender: SessionSender,
}

enum SessionSender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Session {
    pub async fn start(stream: TlsStream<TcpStream>) -> anyhow::Result<Session> {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let sender = if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            SessionSender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            SessionSender::H1(sender)
        };
        Ok(Session { sender })
    }

    pub async fn get(&mut self, host: &str, path: &str) -> anyhow::Result<Response<Bytes>> {
        let (uri, version) = match &self.sender {
            SessionSender::H1(_) => (path.to_string(), http::Version::HTTP_11),
            SessionSender::H2(_) => (format!("https://{host}{path}"), http::Version::HTTP_2),
        };
        let mut req = Request::get(uri)
            .version(version)
            .body(Full::new(Bytes::new()))?;
        if version == http::Version::HTTP_11 {
            req.headers_mut().insert(http::header::HOST, host.parse()?);
        }
        let resp = tokio::time::timeout(DEADLINE, async {
            match &mut self.sender {
                SessionSender::H1(s) => s.send_request(req).await,
                SessionSender::H2(s) => s.send_request(req).await,
            }
        })
        .await
        .context("request timed out")??;
        let (parts, body) = resp.into_parts();
        Ok(Response::from_parts(
            parts,
            body.collect().await?.to_bytes(),
        ))
    }
}

/// What the TLS backend saw of its last client.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub sni: Option<String>,
    pub client_cert: bool,
    pub alpn: Option<Vec<u8>>,
}

/// An HTTP backend behind TLS with `leaf`; with `client_ca`, it requires a client
/// certificate from that CA. Answers 200 with `x-backend: tls`.
pub async fn backend(
    leaf: &Leaf,
    client_ca: Option<&str>,
) -> anyhow::Result<(SocketAddr, Arc<Mutex<Seen>>)> {
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca) {
                roots.add(c)?;
            }
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build()?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs(&leaf.cert), key(&leaf.key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut s) = record.lock() {
                    let conn = tls.get_ref().1;
                    *s = Seen {
                        sni: conn.server_name().map(str::to_string),
                        client_cert: conn.peer_certificates().is_some(),
                        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                    };
                }
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        Response::builder()
                            .header("x-backend", "tls")
                            .header("x-seen-version", format!("{:?}", req.version()))
                            .body(Full::new(Bytes::from_static(b"secret hello")))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((addr, seen))
}
