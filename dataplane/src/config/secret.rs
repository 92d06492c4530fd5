//! Secret -> [`Secret`] (SDS), and the PEM material every TLS context reads: a `DataSource`
//! (`inline_string`, `inline_bytes`, `filename`), certificate chains with their private key,
//! and validation contexts (trusted CAs, SAN matchers).
//!
//! Everything is parsed and checked here, once: a key that does not match its certificate,
//! a CA bundle without a certificate, an unreadable file are refused with the field (and the
//! path) named, so the hot path only ever sees ready-to-use rustls values.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use xds_types::pb::envoy::config::core::v3::{DataSource, data_source};
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret as XdsSecret, TlsCertificate, secret,
    subject_alt_name_matcher::SanType,
};

use super::route::{StringMatch, string_match};
use super::{ConfigError, FieldError, FieldResult, only_fields, validate};

/// A translated SDS secret.
#[derive(Debug, Clone)]
pub struct Secret {
    pub name: String,
    pub kind: SecretKind,
}

#[derive(Debug, Clone)]
pub enum SecretKind {
    Certificate(Arc<CertifiedKey>),
    Validation(Arc<Validation>),
}

/// How a peer's certificate is checked: the CAs it must chain to and the SANs it must have
/// (any one matcher matching is enough, as in Envoy).
#[derive(Debug)]
pub struct Validation {
    pub roots: Arc<RootCertStore>,
    pub sans: Vec<SanMatcher>,
}

#[derive(Debug, Clone)]
pub struct SanMatcher {
    pub kind: SanKind,
    pub matcher: StringMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanKind {
    Dns,
    Uri,
    Email,
    Ip,
}

impl TryFrom<&XdsSecret> for Secret {
    type Error = ConfigError;

    fn try_from(s: &XdsSecret) -> Result<Self, ConfigError> {
        translate(s).map_err(|e| e.of("secret", &s.name))
    }
}

fn translate(s: &XdsSecret) -> FieldResult<Secret> {
    validate(s)?;
    let kind = match &s.r#type {
        Some(secret::Type::TlsCertificate(c)) => {
            SecretKind::Certificate(certified_key(c).map_err(|e| e.within("tls_certificate"))?)
        }
        Some(secret::Type::ValidationContext(v)) => SecretKind::Validation(Arc::new(
            validation(v).map_err(|e| e.within("validation_context"))?,
        )),
        Some(secret::Type::SessionTicketKeys(_)) => {
            return Err(FieldError::new(
                "session_ticket_keys",
                "not supported (session tickets use keys this proxy generates and rotates)",
            ));
        }
        Some(secret::Type::GenericSecret(_)) => {
            return Err(FieldError::new(
                "generic_secret",
                "not supported (no filter here reads generic secrets)",
            ));
        }
        None => {
            return Err(FieldError::new(
                "type",
                "a tls_certificate or validation_context is required",
            ));
        }
    };
    Ok(Secret {
        name: s.name.clone(),
        kind,
    })
}

/// The bytes of a data source. Files are read when the resource is translated (as Envoy
/// does when it loads a context); an unreadable file refuses the resource, naming the path.
pub fn data(d: Option<&DataSource>) -> FieldResult<Vec<u8>> {
    let Some(d) = d else {
        return Err(FieldError::new("", "required"));
    };
    only_fields(d, &["filename", "inline_bytes", "inline_string"])?;
    match &d.specifier {
        Some(data_source::Specifier::InlineString(s)) => Ok(s.as_bytes().to_vec()),
        Some(data_source::Specifier::InlineBytes(b)) => Ok(b.clone()),
        Some(data_source::Specifier::Filename(path)) => std::fs::read(path)
            .map_err(|e| FieldError::new("filename", format!("cannot read \"{path}\": {e}"))),
        _ => Err(FieldError::new(
            "",
            "one of filename, inline_bytes or inline_string is required",
        )),
    }
}

/// PEM certificates, in order (the leaf first for a chain).
pub fn certificates(pem: &[u8]) -> FieldResult<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FieldError::new("", format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(FieldError::new("", "no PEM certificate found"));
    }
    Ok(certs)
}

/// A certificate chain and its private key, checked to belong together.
pub fn certified_key(c: &TlsCertificate) -> FieldResult<Arc<CertifiedKey>> {
    only_fields(c, &["certificate_chain", "private_key"])?;
    let chain = data(c.certificate_chain.as_ref())
        .and_then(|pem| certificates(&pem))
        .map_err(|e| e.within("certificate_chain"))?;
    let key_pem = data(c.private_key.as_ref()).map_err(|e| e.within("private_key"))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| FieldError::new("private_key", format!("not a PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .map(Arc::new)
        .map_err(|e| {
            let reason = match e {
                rustls::Error::InconsistentKeys(_) => {
                    "does not match the public key of certificate_chain".to_string()
                }
                other => format!("unusable: {other}"),
            };
            FieldError::new("private_key", reason)
        })
}

/// What a `CertificateValidationContext` says: where the trusted CAs are and which SANs a
/// peer certificate must have. The one reading of that message, for listeners, clusters and
/// the xDS channel (which reads the CA at each connection, so it takes the source).
pub struct ValidationSpec<'a> {
    pub trusted_ca: Option<&'a DataSource>,
    pub sans: Vec<SanMatcher>,
}

/// `trusted_ca` and `match_typed_subject_alt_names`; anything else that would change how a
/// peer is checked is refused rather than silently not enforced.
pub fn validation_spec(v: &CertificateValidationContext) -> FieldResult<ValidationSpec<'_>> {
    only_fields(v, &["trusted_ca", "match_typed_subject_alt_names"])?;
    let sans = v
        .match_typed_subject_alt_names
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let at = format!("match_typed_subject_alt_names[{i}]");
            only_fields(m, &["san_type", "matcher"]).map_err(|e| e.within(&at))?;
            let kind = match SanType::try_from(m.san_type) {
                Ok(SanType::Dns) => SanKind::Dns,
                Ok(SanType::Uri) => SanKind::Uri,
                Ok(SanType::Email) => SanKind::Email,
                Ok(SanType::IpAddress) => SanKind::Ip,
                _ => {
                    return Err(FieldError::new(
                        format!("{at}.san_type"),
                        "only DNS, URI, EMAIL and IP_ADDRESS are supported",
                    ));
                }
            };
            let matcher = m
                .matcher
                .as_ref()
                .ok_or_else(|| FieldError::new(format!("{at}.matcher"), "required"))
                .and_then(|s| string_match(s).map_err(|e| e.within(&format!("{at}.matcher"))))?;
            Ok(SanMatcher { kind, matcher })
        })
        .collect::<FieldResult<Vec<_>>>()?;
    if v.trusted_ca.is_none() && !sans.is_empty() {
        // Envoy's DefaultCertValidator refuses the same.
        return Err(FieldError::new(
            "match_typed_subject_alt_names",
            "SAN-based verification of peer certificates without trusted CA is insecure and not allowed",
        ));
    }
    Ok(ValidationSpec {
        trusted_ca: v.trusted_ca.as_ref(),
        sans,
    })
}

/// A validation context of a listener or cluster, its CA read now (required here: a context
/// that checks nothing is written by leaving `validation_context` out).
pub fn validation(v: &CertificateValidationContext) -> FieldResult<Validation> {
    let spec = validation_spec(v)?;
    let pem = data(spec.trusted_ca).map_err(|e| e.within("trusted_ca"))?;
    Ok(Validation {
        roots: Arc::new(root_store(&pem).map_err(|e| e.within("trusted_ca"))?),
        sans: spec.sans,
    })
}

/// The CAs of a PEM bundle as a trust store.
pub fn root_store(pem: &[u8]) -> FieldResult<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem)? {
        roots
            .add(cert)
            .map_err(|e| FieldError::new("", format!("unusable CA: {e}")))?;
    }
    Ok(roots)
}
