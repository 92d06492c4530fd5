//! `tls_params` -> [`TlsParams`]: protocol versions, and the ring provider restricted to the
//! cipher suites and curves asked for, by Envoy's names.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    TlsParameters, tls_parameters::TlsProtocol,
};

use crate::config::{FieldError, FieldResult, only_fields};

/// `tls_params`: protocol versions and the provider restricted to the configured suites.
#[derive(Debug, Clone)]
pub struct TlsParams {
    pub versions: Vec<&'static SupportedProtocolVersion>,
    pub provider: Arc<CryptoProvider>,
}

/// Envoy's OpenSSL-style names of the TLS 1.2 suites rustls implements. TLS 1.3 suites are
/// not configurable in Envoy either (`cipher_suites` only applies to TLS 1.2 and below).
fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// The suites in Envoy's default order. TLS 1.3 as BoringSSL orders them on CPUs with AES
/// instructions (AES-128-GCM, AES-256-GCM, ChaCha20); TLS 1.2 as Envoy's default
/// `cipher_suites` (AES-128-GCM and ChaCha20 before AES-256-GCM, ECDSA before RSA). rustls's own
/// default puts AES-256-GCM-SHA384 first: with an OpenSSL client that made every handshake hash
/// with SHA-384, whose SHA-512 compression ring runs without hardware help (13% of a full
/// handshake's CPU in perf), where Envoy negotiates AES-128-GCM-SHA256.
fn envoy_default_suites() -> Vec<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ]
}

/// `tls_minimum_protocol_version`, `tls_maximum_protocol_version`, `cipher_suites` (Envoy's
/// names; `[a|b]` equal-preference groups are taken in order) and `ecdh_curves`. A suite or
/// curve rustls does not have is refused by name rather than dropped: a config asking for it
/// expects clients that need it to connect.
pub(super) fn tls_params(p: &TlsParameters) -> FieldResult<TlsParams> {
    only_fields(
        p,
        &[
            "tls_minimum_protocol_version",
            "tls_maximum_protocol_version",
            "cipher_suites",
            "ecdh_curves",
        ],
    )?;
    let version = |field: &str, v: i32, default: u8| -> FieldResult<u8> {
        match TlsProtocol::try_from(v) {
            Ok(TlsProtocol::TlsAuto) => Ok(default),
            Ok(TlsProtocol::TlSv12) => Ok(2),
            Ok(TlsProtocol::TlSv13) => Ok(3),
            _ => Err(FieldError::new(
                field,
                "only TLSv1_2 and TLSv1_3 are supported (rustls has no TLS 1.0/1.1)",
            )),
        }
    };
    let min = version(
        "tls_minimum_protocol_version",
        p.tls_minimum_protocol_version,
        2,
    )?;
    let max = version(
        "tls_maximum_protocol_version",
        p.tls_maximum_protocol_version,
        3,
    )?;
    if min > max {
        return Err(FieldError::new(
            "tls_minimum_protocol_version",
            "is above tls_maximum_protocol_version",
        ));
    }
    let versions = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, v)| v)
        .collect();
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = envoy_default_suites();
    if !p.cipher_suites.is_empty() {
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_some())
            .copied()
            .collect();
        for (i, entry) in p.cipher_suites.iter().enumerate() {
            let group = entry.trim_start_matches('[').trim_end_matches(']');
            for name in group.split('|') {
                let suite = tls12_suite(name.trim()).ok_or_else(|| {
                    FieldError::new(
                        format!("cipher_suites[{i}]"),
                        format!("\"{name}\" is not a cipher suite this proxy implements"),
                    )
                })?;
                if !suites.contains(&suite) {
                    suites.push(suite);
                }
            }
        }
        provider.cipher_suites = suites;
    }
    use rustls::crypto::ring::kx_group;
    // Envoy's default curves are X25519 and P-256 (tls.proto, ecdh_curves).
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1];
    if !p.ecdh_curves.is_empty() {
        let mut groups = Vec::new();
        for (i, name) in p.ecdh_curves.iter().enumerate() {
            let group: &'static dyn rustls::crypto::SupportedKxGroup = match name.as_str() {
                "X25519" => kx_group::X25519,
                "P-256" => kx_group::SECP256R1,
                "P-384" => kx_group::SECP384R1,
                other => {
                    return Err(FieldError::new(
                        format!("ecdh_curves[{i}]"),
                        format!("\"{other}\" is not supported (X25519, P-256, P-384 are)"),
                    ));
                }
            };
            groups.push(group);
        }
        provider.kx_groups = groups;
    }
    Ok(TlsParams {
        versions,
        provider: Arc::new(provider),
    })
}
