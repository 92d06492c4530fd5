//! The xDS channel over TLS: a rustls client config from [`XdsTls`], a certificate verifier
//! with Envoy's semantics, and the connector tonic dials through.
//!
//! tonic's own `ClientTlsConfig` always checks the server's name against the address (or its
//! `domain_name`); Envoy does not: with `trusted_ca` it checks the chain, and names only through
//! `match_typed_subject_alt_names`. A bootstrap that works with Envoy (a server certificate
//! for `xds.internal` reached at 10.0.0.5) must work here, so we verify ourselves and hand tonic
//! a connector that returns the TLS stream.

use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::xds_tls::{DataSource, SanKind, SanMatcher, XdsTls};

/// Builds the client config, reading every data source now (so a rotated file is used from
/// this connection on). Errors name the field's file and the reason.
pub fn client_config(tls: &XdsTls) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &tls.trusted_ca {
        None => None,
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("trusted_ca ({}): {e}", ca.describe()))?;
            }
            Some(Arc::new(roots))
        }
    };
    let verifier = Arc::new(EnvoyVerifier {
        roots,
        san_matchers: tls.san_matchers.clone(),
        provider: provider.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain_certs = certs(chain)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key.read()?)
                .map_err(|e| format!("private_key ({}): {e}", key.describe()))?;
            builder
                .with_client_auth_cert(chain_certs, key_der)
                .map_err(|e| {
                    let why = match e {
                        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                            "the private key does not match the certificate".to_string()
                        }
                        e => e.to_string(),
                    };
                    format!(
                        "tls_certificates[0] ({} with {}): {why}",
                        chain.describe(),
                        key.describe()
                    )
                })?
        }
    };
    config.alpn_protocols = tls.alpn.clone();
    // Envoy sends SNI only when `sni` is set.
    config.enable_sni = tls.sni.is_some();
    Ok(config)
}

fn certs(source: &DataSource) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = source.read()?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: invalid PEM: {e}", source.describe()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the PEM", source.describe()));
    }
    Ok(certs)
}

/// Envoy's server certificate check for an UpstreamTlsContext: the chain (when a CA is
/// given), then the SAN matchers (when any), never the name dialled.
#[derive(Debug)]
struct EnvoyVerifier {
    roots: Option<Arc<RootCertStore>>,
    san_matchers: Vec<SanMatcher>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EnvoyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        if !self.san_matchers.is_empty() {
            let cert = webpki::EndEntityCert::try_from(end_entity)
                .map_err(|e| rustls::Error::General(format!("server certificate: {e}")))?;
            let dns: Vec<&str> = cert.valid_dns_names().collect();
            let uris: Vec<&str> = cert.valid_uri_names().collect();
            if !self
                .san_matchers
                .iter()
                .any(|m| san_matches(m, &dns, &uris))
            {
                return Err(rustls::Error::General(format!(
                    "the server certificate's SANs (DNS {dns:?}, URI {uris:?}) match no \
                     match_typed_subject_alt_names"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A SAN matcher against the certificate's names. A DNS `exact` matcher follows RFC 6125
/// 6.4.3 wildcards, as Envoy documents: `*.example.com` matches `a.example.com` only.
fn san_matches(m: &SanMatcher, dns: &[&str], uris: &[&str]) -> bool {
    match m.kind {
        SanKind::Uri => uris.iter().any(|u| m.matcher.matches(u)),
        SanKind::Dns => dns.iter().any(|name| {
            if m.matcher.matches(name) {
                return true;
            }
            match (&m.matcher, name.strip_prefix("*.")) {
                (crate::config::route::StringMatch::Exact(want, ic), Some(parent)) => {
                    want.split_once('.').is_some_and(|(label, rest)| {
                        !label.is_empty()
                            && if *ic {
                                rest.eq_ignore_ascii_case(parent)
                            } else {
                                rest == parent
                            }
                    })
                }
                _ => false,
            }
        }),
    }
}

/// What tonic dials through: TCP to the address of the URI, then the TLS handshake.
#[derive(Clone)]
pub struct Connector {
    pub tls: Arc<ClientConfig>,
    pub sni: Option<String>,
}

impl tonic::codegen::Service<http::Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = TlsConnector::from(self.tls.clone());
        let sni = self.sni.clone();
        Box::pin(async move {
            let invalid =
                |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            // With `sni` unset, SNI is off (enable_sni = false) and the name only feeds our
            // verifier, which ignores it: the address serves.
            let name = sni.unwrap_or(host);
            let server_name = ServerName::try_from(name.clone())
                .map_err(|e| invalid(format!("sni \"{name}\": {e}")))?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::route::StringMatch;

    #[test]
    fn dns_exact_matchers_follow_wildcards_one_label_deep() {
        let m = |s: &str| SanMatcher {
            kind: SanKind::Dns,
            matcher: StringMatch::Exact(s.into(), false),
        };
        assert!(san_matches(&m("a.example.com"), &["*.example.com"], &[]));
        assert!(!san_matches(&m("a.b.example.com"), &["*.example.com"], &[]));
        assert!(!san_matches(&m("example.com"), &["*.example.com"], &[]));
        assert!(san_matches(&m("xds"), &["xds"], &[]));
        let uri = SanMatcher {
            kind: SanKind::Uri,
            matcher: StringMatch::Prefix("spiffe://td/".into(), false),
        };
        assert!(san_matches(&uri, &["x"], &["spiffe://td/cp"]));
        assert!(!san_matches(&uri, &["spiffe://td/cp"], &[]));
    }
}
