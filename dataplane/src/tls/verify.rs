//! Peer certificate checks Envoy makes and rustls's stock verifiers do not: SAN matchers
//! (`match_typed_subject_alt_names`, any one matching is enough, DNS wildcards by RFC 6125)
//! on client and server certificates, and server chains checked against the trusted CA
//! without a hostname check (Envoy only checks names when SAN matchers or
//! `auto_san_validation` ask for it). [`Upstream`] is the one server-certificate verifier:
//! clusters' TLS and the xDS channel (`xds/tls.rs`) both use it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::TlsStats;
use super::der::{San, subject_alt_names};
use crate::config::route::StringMatch;
use crate::config::secret::{SanKind, SanMatcher, Validation};

/// No SAN matched: refused with a `certificate_unknown` alert, as Envoy (BoringSSL) sends
/// for a SAN mismatch (rustls would send `bad_certificate` for `NotValidForName`).
#[derive(Debug)]
struct SanMismatch;

impl std::fmt::Display for SanMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no subject alternative name matches match_typed_subject_alt_names")
    }
}

impl std::error::Error for SanMismatch {}

fn san_mismatch() -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        SanMismatch,
    ))))
}

/// Whether the certificate has a SAN that one of `matchers` accepts.
pub fn sans_match(cert: &CertificateDer<'_>, matchers: &[SanMatcher]) -> bool {
    let sans = subject_alt_names(cert);
    matchers.iter().any(|m| {
        sans.iter().any(|san| match (m.kind, san) {
            (SanKind::Dns, San::Dns(name)) => dns_san_matches(&m.matcher, name),
            (SanKind::Uri, San::Uri(v)) | (SanKind::Email, San::Email(v)) => m.matcher.matches(v),
            (SanKind::Ip, San::Ip(ip)) => m.matcher.matches(&ip.to_string()),
            _ => false,
        })
    })
}

/// A DNS SAN of the certificate against a matcher. An `exact` matcher also accepts a
/// wildcard SAN covering it ([`name_covers`]), as Envoy's `dnsNameMatch` does.
pub fn dns_san_matches(matcher: &StringMatch, name: &str) -> bool {
    matcher.matches(name)
        || matches!(matcher, StringMatch::Exact(want, ignore_case)
            if name.starts_with("*.") && name_covers(name, want, *ignore_case))
}

/// Whether a certificate name covers `host`, by RFC 6125 6.4.3 as Envoy (and BoringSSL)
/// apply it: a `*` is the whole leftmost label and stands for exactly one non-empty label, so
/// `*.example.com` covers `a.example.com` but neither `a.b.example.com` nor `example.com`.
/// The one place of this rule: SAN checks and the choice of a certificate by SNI use it.
pub fn name_covers(name: &str, host: &str, ignore_case: bool) -> bool {
    let same = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match name.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && same(rest, parent)),
        None => same(name, host),
    }
}

/// rustls's client-certificate verifier plus the SAN matchers, counting failures in the
/// listener's `ssl.fail_verify_*` as Envoy does.
#[derive(Debug)]
pub struct Client {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub sans: Vec<SanMatcher>,
    pub stats: Arc<TlsStats>,
}

impl ClientCertVerifier for Client {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|_| {
                self.stats.fail_verify_error.fetch_add(1, Ordering::Relaxed);
            })?;
        if !self.sans.is_empty() && !sans_match(end_entity, &self.sans) {
            self.stats.fail_verify_san.fetch_add(1, Ordering::Relaxed);
            return Err(san_mismatch());
        }
        Ok(verified)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The upstream certificate check, as Envoy's: without a validation context anything is
/// accepted (Envoy's default for clusters); with one the chain must reach a trusted CA and,
/// when matchers are given, a SAN must match; `check_name` (auto_san_validation) also asks
/// for the SNI sent. Failures are counted in the cluster's `ssl.fail_verify_*`.
#[derive(Debug)]
pub struct Upstream {
    pub validation: Option<Arc<Validation>>,
    pub check_name: bool,
    pub provider: Arc<CryptoProvider>,
    pub stats: Arc<TlsStats>,
}

impl Upstream {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        if let Some(v) = &self.validation {
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &v.roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )
            .inspect_err(|_| {
                self.stats.fail_verify_error.fetch_add(1, Ordering::Relaxed);
            })?;
            if !v.sans.is_empty() && !sans_match(end_entity, &v.sans) {
                self.stats.fail_verify_san.fetch_add(1, Ordering::Relaxed);
                return Err(san_mismatch());
            }
        }
        if self.check_name {
            rustls::client::verify_server_name(&parsed, server_name).inspect_err(|_| {
                self.stats.fail_verify_san.fetch_add(1, Ordering::Relaxed);
            })?;
        }
        Ok(())
    }
}

impl ServerCertVerifier for Upstream {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity, intermediates, server_name, now)?;
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_exact_matchers_follow_wildcards_one_label_deep() {
        let exact = |s: &str| StringMatch::Exact(s.into(), false);
        assert!(dns_san_matches(&exact("a.example.com"), "*.example.com"));
        assert!(!dns_san_matches(&exact("a.b.example.com"), "*.example.com"));
        assert!(!dns_san_matches(&exact("example.com"), "*.example.com"));
        assert!(!dns_san_matches(&exact(".example.com"), "*.example.com"));
        assert!(dns_san_matches(&exact("xds"), "xds"));
        assert!(name_covers("*.example.com", "b.example.com", false));
        assert!(!name_covers("*.example.com", "x.b.example.com", false));
        assert!(name_covers("a.example.com", "a.example.com", false));
        assert!(dns_san_matches(
            &StringMatch::Exact("A.Example.com".into(), true),
            "*.example.COM"
        ));
        let prefix = StringMatch::Prefix("a.".into(), false);
        assert!(
            !dns_san_matches(&prefix, "*.example.com"),
            "only exact matchers expand wildcards"
        );
    }
}
