//! TLS termination: a filter chain's [`ServerTls`] as a rustls `ServerConfig` (built once per
//! set of secrets), the certificate choice among several, and the handshake.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureAlgorithm};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use super::der::{San, subject_alt_names};
use super::verify::{Client, name_covers};
use super::{Secrets, TlsInfo, TlsStats, certificate, validation};
use crate::config::tls::ServerTls;

/// The rustls config for the chain with the current secrets.
pub fn config(tls: &ServerTls, secrets: &Secrets) -> Result<Arc<ServerConfig>, String> {
    let mut deps = Vec::new();
    let certs = tls
        .certs
        .iter()
        .map(|c| certificate(c, secrets, &mut deps))
        .collect::<Result<Vec<_>, _>>()?;
    let validation = tls
        .validation
        .as_ref()
        .map(|v| validation(v, secrets, &mut deps))
        .transpose()?;
    tls.built.get(deps, || build(tls, certs, validation))
}

fn build(
    tls: &ServerTls,
    certs: Vec<Arc<CertifiedKey>>,
    validation: Option<Arc<crate::config::secret::Validation>>,
) -> Result<ServerConfig, String> {
    let provider = tls.params.provider.clone();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&tls.params.versions)
        .map_err(|e| format!("tls_params: {e}"))?;
    let builder = match validation {
        None => builder.with_no_client_auth(),
        Some(v) => {
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(v.roots.clone(), provider.clone());
            if !tls.require_client_cert {
                // Envoy asks for a certificate and checks one when given, but lets a client
                // without one in unless require_client_certificate is set.
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("validation_context: {e}"))?;
            builder.with_client_cert_verifier(Arc::new(Client {
                inner: verifier,
                sans: v.sans.clone(),
                stats: tls.stats.clone(),
            }))
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver::new(certs)));
    config.alpn_protocols = tls.alpn.clone();
    config.ignore_client_order = !tls.prefer_client_ciphers;
    config.session_storage = match &tls.sessions {
        Some(s) => s.clone(),
        None => Arc::new(NoServerSessionStorage {}),
    };
    if let Some(t) = &tls.ticketer {
        config.ticketer = t.clone();
    }
    if tls.sessions.is_none() && tls.ticketer.is_none() {
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

/// Picks the certificate for a handshake among the chain's. Envoy's order: a certificate
/// whose SANs match the SNI first, then by the client's capabilities: the first ECDSA
/// certificate for a client that can verify ECDSA, else the first RSA one.
#[derive(Debug)]
struct Resolver {
    certs: Vec<(Arc<CertifiedKey>, Vec<String>)>,
}

impl Resolver {
    fn new(certs: Vec<Arc<CertifiedKey>>) -> Self {
        let certs = certs
            .into_iter()
            .map(|c| {
                let names = c
                    .cert
                    .first()
                    .map(|leaf| subject_alt_names(leaf))
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| match s {
                        San::Dns(d) => Some(d.to_ascii_lowercase()),
                        _ => None,
                    })
                    .collect();
                (c, names)
            })
            .collect();
        Resolver { certs }
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let by_name: Vec<&(Arc<CertifiedKey>, Vec<String>)> = match &sni {
            Some(sni) => self
                .certs
                .iter()
                .filter(|(_, names)| names.iter().any(|n| name_covers(n, sni, false)))
                .collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&Arc<CertifiedKey>> = if by_name.is_empty() {
            self.certs.iter().map(|(c, _)| c).collect()
        } else {
            by_name.into_iter().map(|(c, _)| c).collect()
        };
        let usable = |c: &&&Arc<CertifiedKey>| c.key.choose_scheme(schemes).is_some();
        candidates
            .iter()
            .filter(usable)
            .find(|c| c.key.algorithm() == SignatureAlgorithm::ECDSA)
            .or_else(|| candidates.iter().find(usable))
            .map(|c| (*c).clone())
    }
}

/// The handshake, counted in the chain's `ssl.*` stats; on success, what the connection
/// tells about itself.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: Arc<ServerConfig>,
    stats: &TlsStats,
) -> std::io::Result<(TlsStream<S>, TlsInfo)> {
    let tls = match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
        Ok(tls) => {
            stats.handshake.fetch_add(1, Ordering::Relaxed);
            tls
        }
        Err(e) => {
            // Envoy counts a missing client certificate in fail_verify_no_cert, a refused one
            // in fail_verify_* (the verifier counts those), and other TLS failures in
            // connection_error; a peer that just goes away is none of these.
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::NoCertificatesPresented) => {
                    stats.fail_verify_no_cert.fetch_add(1, Ordering::Relaxed);
                }
                Some(rustls::Error::InvalidCertificate(_)) | None => {}
                Some(_) => {
                    stats.connection_error.fetch_add(1, Ordering::Relaxed);
                }
            }
            return Err(e);
        }
    };
    let info = {
        let (_, conn) = tls.get_ref();
        let sans = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|leaf| subject_alt_names(leaf))
            .unwrap_or_default();
        TlsInfo {
            sni: conn.server_name().map(str::to_string),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer_uri_sans: sans
                .iter()
                .filter_map(|s| match s {
                    San::Uri(u) => Some(u.clone()),
                    _ => None,
                })
                .collect(),
            peer_dns_sans: sans
                .iter()
                .filter_map(|s| match s {
                    San::Dns(d) => Some(d.clone()),
                    _ => None,
                })
                .collect(),
        }
    };
    Ok((tls, info))
}
