//! The xDS channel over TLS: a rustls client config from [`XdsTls`], checking the server with
//! the clusters' verifier (`tls::verify::Upstream`, Envoy's semantics), and the connector
//! tonic dials through.
//!
//! tonic's own `ClientTlsConfig` always checks the server's name against the address (or its
//! `domain_name`); Envoy does not: with `trusted_ca` it checks the chain, and names only through
//! `match_typed_subject_alt_names`. A bootstrap that works with Envoy (a server certificate
//! for `xds.internal` reached at 10.0.0.5) must work here, so we verify ourselves and hand tonic
//! a connector that returns the TLS stream.

use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::secret::{Validation, root_store};
use crate::config::xds_tls::{DataSource, XdsTls};
use crate::tls::verify::Upstream;

/// Builds the client config, reading every data source now (so a rotated file is used from
/// this connection on). Errors name the field's file and the reason.
pub fn client_config(tls: &XdsTls) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let validation = match &tls.trusted_ca {
        None => None,
        Some(ca) => {
            let roots = root_store(&ca.read()?)
                .map_err(|e| format!("trusted_ca ({}): {}", ca.describe(), e.reason))?;
            Some(Arc::new(Validation {
                roots: Arc::new(roots),
                sans: tls.san_matchers.clone(),
            }))
        }
    };
    // The clusters' verifier: the chain (when a CA is given), then the SAN matchers (when
    // any), never the name dialled.
    let verifier = Arc::new(Upstream {
        validation,
        check_name: false,
        provider: provider.clone(),
        stats: Arc::default(),
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
