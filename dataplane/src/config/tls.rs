//! `envoy.transport_sockets.tls` -> [`ServerTls`] (a listener's `DownstreamTlsContext`) and
//! [`ClientTls`] (a cluster's `UpstreamTlsContext`).
//!
//! Inline and file material is parsed and checked here; certificates and validation contexts
//! named through SDS are looked up in the config's secrets when the rustls config is built
//! (`tls/`), once per secret version. Every context owns its session cache and ticket keys so
//! a rebuild after an SDS rotation keeps resumption working. `tls/params.rs`: `tls_params`.

mod params;

use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};
use xds_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, TlsParameters, UpstreamTlsContext,
    common_tls_context::ValidationContextType,
};

pub use params::TlsParams;
use params::tls_params;

use super::secret::{Validation, certified_key, validation};
use super::{FieldError, FieldResult, only_fields, unpack};
use crate::tls::{Built, TlsStats};

const TLS: &str = "envoy.transport_sockets.tls";
const RAW_BUFFER: &str = "envoy.transport_sockets.raw_buffer";
const DOWNSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const UPSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// Envoy's default `max_session_keys` for upstream contexts.
const DEFAULT_MAX_SESSION_KEYS: usize = 1;
/// Sessions a downstream context remembers for stateful resumption.
const SESSION_CACHE_SIZE: usize = 4096;

/// Where a certificate or a validation context comes from.
#[derive(Debug, Clone)]
pub enum Source<T> {
    Inline(Arc<T>),
    /// By SDS secret: `name` is its key in the config's secrets (for a file source, the
    /// file's path and the secret's name, see [`file_key`]). `fetch_timeout`: how long a
    /// listener warms waiting for it (`initial_fetch_timeout`, 15 s by default; `None`:
    /// forever).
    Sds {
        name: String,
        origin: Origin,
        fetch_timeout: Option<Duration>,
    },
}

/// Where an SDS secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `sds_config` absent: a static secret of the bootstrap.
    Static,
    /// `sds_config: { ads: {} }`: requested over the ADS stream.
    Ads,
    /// `sds_config: { path_config_source: { path, watched_directory } }`: a file holding a
    /// DiscoveryResponse with Secrets, watched for changes (`tls/files.rs`); with
    /// `watched_directory`, changes in that directory trigger the reload instead.
    File {
        path: String,
        watched_directory: Option<String>,
    },
}

/// The key of a file-sourced secret in the config's secrets.
pub fn file_key(path: &str, name: &str) -> String {
    format!("{path}#{name}")
}

/// A listener filter chain's TLS termination.
#[derive(Debug)]
pub struct ServerTls {
    pub certs: Vec<Source<CertifiedKey>>,
    pub validation: Option<Source<Validation>>,
    pub require_client_cert: bool,
    pub alpn: Vec<Vec<u8>>,
    pub params: TlsParams,
    /// `prefer_client_ciphers`: Envoy picks by its own order unless this is set.
    pub prefer_client_ciphers: bool,
    /// Stateful resumption (session ids / TLS 1.3 stateful tickets); `None` when disabled.
    pub sessions: Option<Arc<dyn StoresServerSessions>>,
    /// Stateless resumption (session tickets); `None` when disabled.
    pub ticketer: Option<Arc<dyn ProducesTickets>>,
    /// The rustls config, built once per set of secrets.
    pub built: Built<ServerConfig>,
    /// Handshakes and their failures (the listener's `ssl.*` stats).
    pub stats: Arc<TlsStats>,
}

/// A cluster's TLS origination.
#[derive(Debug)]
pub struct ClientTls {
    pub cert: Option<Source<CertifiedKey>>,
    pub validation: Option<Source<Validation>>,
    /// `sni`: the server name sent; none when empty.
    pub sni: Option<String>,
    /// SNI from the request's host (`auto_sni` / `auto_host_sni`).
    pub auto_sni: bool,
    /// Check the upstream certificate against the SNI sent (`auto_san_validation`).
    pub auto_san_validation: bool,
    pub alpn: Vec<Vec<u8>>,
    pub params: TlsParams,
    pub max_session_keys: usize,
    pub stats: Arc<TlsStats>,
    pub built: Built<ClientConfig>,
}

impl<T> Source<T> {
    /// The SDS secret it names (its key in the config's secrets) and where it comes from.
    pub fn sds_name(&self) -> Option<(&str, &Origin)> {
        match self {
            Source::Sds { name, origin, .. } => Some((name, origin)),
            Source::Inline(_) => None,
        }
    }
}

impl ServerTls {
    /// The longest time a listener warms for this context's SDS secrets: `None` forever.
    pub fn warming_timeout(&self) -> Option<Duration> {
        longest_fetch(self.certs.iter(), self.validation.as_ref())
    }

    /// The SDS secrets it needs: (key, origin).
    pub fn secret_names(&self) -> impl Iterator<Item = (&str, &Origin)> {
        self.certs
            .iter()
            .filter_map(Source::sds_name)
            .chain(self.validation.iter().filter_map(Source::sds_name))
    }
}

impl ClientTls {
    pub fn secret_names(&self) -> impl Iterator<Item = (&str, &Origin)> {
        self.cert
            .iter()
            .filter_map(Source::sds_name)
            .chain(self.validation.iter().filter_map(Source::sds_name))
    }

    /// The longest time a cluster warms for this context's SDS secrets: `None` forever.
    pub fn warming_timeout(&self) -> Option<Duration> {
        longest_fetch(self.cert.iter(), self.validation.as_ref())
    }
}

/// The longest fetch timeout of a context's secrets (`None`: one waits forever). Envoy's init
/// manager starts every secret's fetch at once and is done when the last one is, so the
/// context waits for the longest.
fn longest_fetch<'a>(
    certs: impl Iterator<Item = &'a Source<CertifiedKey>>,
    validation: Option<&'a Source<Validation>>,
) -> Option<Duration> {
    let fetches = certs
        .filter_map(Source::fetch_timeout)
        .chain(validation.and_then(Source::fetch_timeout));
    let mut longest = Duration::ZERO;
    for fetch in fetches {
        longest = longest.max(fetch?);
    }
    Some(longest)
}

/// Which typed config a transport socket carries: `None` for raw_buffer (plaintext).
fn tls_any(ts: &TransportSocket) -> FieldResult<Option<&xds_types::Any>> {
    only_fields(ts, &["name", "typed_config"])?;
    match &ts.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => Ok(Some(any)),
        None if ts.name == RAW_BUFFER => Ok(None),
        None if ts.name == TLS => Err(FieldError::new("typed_config", "required")),
        None => Err(FieldError::new(
            "name",
            format!(
                "transport socket \"{}\" is not supported ({TLS} and {RAW_BUFFER} are)",
                ts.name
            ),
        )),
    }
}

/// A filter chain's `transport_socket`.
pub fn downstream(ts: &TransportSocket) -> FieldResult<Option<Arc<ServerTls>>> {
    let Some(any) = tls_any(ts)? else {
        return Ok(None);
    };
    let name = xds_types::type_url::message_name(&any.type_url);
    if name.ends_with("RawBuffer") {
        return Ok(None);
    }
    if name != DOWNSTREAM {
        return Err(FieldError::new(
            "typed_config",
            format!("{name} is not supported here ({DOWNSTREAM} is)"),
        ));
    }
    let d: DownstreamTlsContext = unpack(any).map_err(|e| e.within("typed_config"))?;
    server(&d)
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| e.within("typed_config"))
}

fn server(d: &DownstreamTlsContext) -> FieldResult<ServerTls> {
    only_fields(
        d,
        &[
            "common_tls_context",
            "require_client_certificate",
            "disable_stateless_session_resumption",
            "disable_stateful_session_resumption",
            "prefer_client_ciphers",
        ],
    )?;
    let common = d.common_tls_context.clone().unwrap_or_default();
    let parts = common_parts(&common).map_err(|e| e.within("common_tls_context"))?;
    if parts.certs.is_empty() {
        return Err(FieldError::new(
            "common_tls_context",
            "a server context needs tls_certificates or tls_certificate_sds_secret_configs",
        ));
    }
    let require_client_cert = d
        .require_client_certificate
        .as_ref()
        .is_some_and(|b| b.value);
    if require_client_cert && parts.validation.is_none() {
        return Err(FieldError::new(
            "require_client_certificate",
            "needs a validation_context with trusted_ca to check client certificates against",
        ));
    }
    use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::downstream_tls_context::SessionTicketKeysType;
    let stateless = !matches!(
        d.session_ticket_keys_type,
        Some(SessionTicketKeysType::DisableStatelessSessionResumption(
            true
        ))
    );
    let ticketer =
        if stateless {
            // Envoy generates random ticket keys when none are configured; rustls's ticketer does
            // the same and rotates them (every 6 hours).
            Some(rustls::crypto::ring::Ticketer::new().map_err(|e| {
                FieldError::new("", format!("cannot create session ticket keys: {e}"))
            })?)
        } else {
            None
        };
    let sessions: Option<Arc<dyn StoresServerSessions>> = (!d.disable_stateful_session_resumption)
        .then(|| ServerSessionMemoryCache::new(SESSION_CACHE_SIZE) as _);
    Ok(ServerTls {
        certs: parts.certs,
        validation: parts.validation,
        require_client_cert,
        alpn: parts.alpn,
        params: parts.params,
        prefer_client_ciphers: d.prefer_client_ciphers,
        sessions,
        ticketer,
        built: Built::default(),
        stats: Arc::default(),
    })
}

/// A cluster's `transport_socket`. `http2`: the cluster speaks HTTP/2, so ALPN offers `h2`
/// unless `alpn_protocols` says otherwise (Envoy does the same).
/// `auto`: the cluster's `auto_sni` and `auto_san_validation` (upstream_http_protocol_options).
pub fn upstream(
    ts: &TransportSocket,
    http2: bool,
    auto: (bool, bool),
) -> FieldResult<Option<Arc<ClientTls>>> {
    let Some(any) = tls_any(ts)? else {
        return Ok(None);
    };
    let name = xds_types::type_url::message_name(&any.type_url);
    if name.ends_with("RawBuffer") {
        return Ok(None);
    }
    if name != UPSTREAM {
        return Err(FieldError::new(
            "typed_config",
            format!("{name} is not supported here ({UPSTREAM} is)"),
        ));
    }
    let u: UpstreamTlsContext = unpack(any).map_err(|e| e.within("typed_config"))?;
    client(&u, http2, auto)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| e.within("typed_config"))
}

fn client(u: &UpstreamTlsContext, http2: bool, auto: (bool, bool)) -> FieldResult<ClientTls> {
    only_fields(
        u,
        &[
            "common_tls_context",
            "sni",
            "auto_host_sni",
            "auto_sni_san_validation",
            "max_session_keys",
        ],
    )?;
    let common = u.common_tls_context.clone().unwrap_or_default();
    let mut parts = common_parts(&common).map_err(|e| e.within("common_tls_context"))?;
    if parts.certs.len() > 1 {
        return Err(FieldError::new(
            "common_tls_context.tls_certificates",
            "a client context takes one certificate",
        ));
    }
    if parts.alpn.is_empty() && http2 {
        parts.alpn = vec![b"h2".to_vec()];
    }
    Ok(ClientTls {
        cert: parts.certs.pop(),
        validation: parts.validation,
        sni: Some(u.sni.clone()).filter(|s| !s.is_empty()),
        auto_sni: u.auto_host_sni || auto.0,
        auto_san_validation: u.auto_sni_san_validation || auto.1,
        alpn: parts.alpn,
        params: parts.params,
        max_session_keys: u
            .max_session_keys
            .as_ref()
            .map_or(DEFAULT_MAX_SESSION_KEYS, |n| n.value as usize),
        stats: Arc::default(),
        built: Built::default(),
    })
}

struct CommonParts {
    certs: Vec<Source<CertifiedKey>>,
    validation: Option<Source<Validation>>,
    alpn: Vec<Vec<u8>>,
    params: TlsParams,
}

fn common_parts(c: &CommonTlsContext) -> FieldResult<CommonParts> {
    only_fields(
        c,
        &[
            "tls_params",
            "tls_certificates",
            "tls_certificate_sds_secret_configs",
            "alpn_protocols",
            "validation_context",
            "validation_context_sds_secret_config",
        ],
    )?;
    let mut certs = Vec::new();
    for (i, t) in c.tls_certificates.iter().enumerate() {
        let key = certified_key(t).map_err(|e| e.within(&format!("tls_certificates[{i}]")))?;
        certs.push(Source::Inline(key));
    }
    for (i, s) in c.tls_certificate_sds_secret_configs.iter().enumerate() {
        certs.push(
            sds(s).map_err(|e| e.within(&format!("tls_certificate_sds_secret_configs[{i}]")))?,
        );
    }
    let validation = match &c.validation_context_type {
        None => None,
        Some(ValidationContextType::ValidationContext(v)) => Some(Source::Inline(Arc::new(
            validation(v).map_err(|e| e.within("validation_context"))?,
        ))),
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            Some(sds(s).map_err(|e| e.within("validation_context_sds_secret_config"))?)
        }
        Some(_) => {
            return Err(FieldError::new(
                "validation_context_type",
                "only validation_context and validation_context_sds_secret_config are supported",
            ));
        }
    };
    let alpn = c
        .alpn_protocols
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    let params = match &c.tls_params {
        Some(p) => tls_params(p).map_err(|e| e.within("tls_params"))?,
        None => tls_params(&TlsParameters::default())?,
    };
    Ok(CommonParts {
        certs,
        validation,
        alpn,
        params,
    })
}

impl<T> Source<T> {
    /// How long a listener may warm for this secret: `Some(None)` forever, `None` when it
    /// is not fetched (inline, or a static secret of the bootstrap).
    pub fn fetch_timeout(&self) -> Option<Option<Duration>> {
        match self {
            Source::Sds {
                origin: Origin::Ads | Origin::File { .. },
                fetch_timeout,
                ..
            } => Some(*fetch_timeout),
            _ => None,
        }
    }
}

/// An `SdsSecretConfig` as a source: a bootstrap secret, one over ADS, or one from a file.
fn sds<T>(s: &SdsSecretConfig) -> FieldResult<Source<T>> {
    use xds_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
    only_fields(s, &["name", "sds_config"])?;
    if s.name.is_empty() {
        return Err(FieldError::new("name", "required"));
    }
    let Some(source) = &s.sds_config else {
        return Ok(Source::Sds {
            name: s.name.clone(),
            origin: Origin::Static,
            fetch_timeout: None,
        });
    };
    #[allow(deprecated)]
    let path = match &source.config_source_specifier {
        Some(ConfigSourceSpecifier::Path(p)) => Some((p.clone(), None)),
        Some(ConfigSourceSpecifier::PathConfigSource(p)) => {
            only_fields(p, &["path", "watched_directory"])
                .map_err(|e| e.within("sds_config.path_config_source"))?;
            let watched = p.watched_directory.as_ref().map(|w| w.path.clone());
            if watched.as_ref().is_some_and(String::is_empty) {
                return Err(FieldError::new(
                    "sds_config.path_config_source.watched_directory.path",
                    "must not be empty",
                ));
            }
            Some((p.path.clone(), watched))
        }
        _ => None,
    };
    let Some((path, watched_directory)) = path else {
        let fetch_timeout = super::ads_config_source(source).map_err(|e| e.within("sds_config"))?;
        return Ok(Source::Sds {
            name: s.name.clone(),
            origin: Origin::Ads,
            fetch_timeout,
        });
    };
    only_fields(
        source,
        &[
            "path",
            "path_config_source",
            "resource_api_version",
            "initial_fetch_timeout",
        ],
    )
    .map_err(|e| e.within("sds_config"))?;
    // Envoy: "the path to the source must exist at config load time".
    std::fs::metadata(&path).map_err(|e| {
        FieldError::new(
            "sds_config.path_config_source.path",
            format!("cannot read \"{path}\": {e}"),
        )
    })?;
    Ok(Source::Sds {
        name: file_key(&path, &s.name),
        origin: Origin::File {
            path,
            watched_directory,
        },
        fetch_timeout: super::initial_fetch_timeout(source),
    })
}
