//! The xDS cluster's `transport_socket` -> [`XdsTls`]: how the dataplane talks TLS (or mutual
//! TLS) to its management server.
//!
//! Envoy reads the same `envoy.transport_sockets.tls` / `UpstreamTlsContext` on the bootstrap's
//! xDS cluster as on any cluster; we honour the part a control channel needs and refuse the
//! rest by name:
//!
//! * `sni`: sent as the TLS server name. Without it no SNI is sent, as Envoy does.
//! * `common_tls_context.tls_certificates[0]`: `certificate_chain` and `private_key`
//!   (mutual TLS); at most one certificate.
//! * `common_tls_context.validation_context`: read by the same translation as every other
//!   validation context (`secret::validation_spec`) and checked by the same verifier
//!   (`tls::verify::Upstream`): the server's chain must lead to `trusted_ca`, and its names are
//!   checked only against `match_typed_subject_alt_names`, never against `sni` or the
//!   address. Without `trusted_ca` Envoy accepts any server certificate; so do we.
//! * `common_tls_context.alpn_protocols`: offered as given; empty means `h2` (gRPC needs
//!   HTTP/2, and this is what Envoy's gRPC client ends up speaking).
//!
//! Data sources (`filename`, `inline_bytes`, `inline_string`, `environment_variable`) are kept
//! as written and read at every (re)connection, so a client certificate rotated on disk is
//! used from the next connection on, as Envoy picks up a rotated file.

use std::path::PathBuf;

use xds_types::pb::envoy::config::core::v3::{
    DataSource as XdsDataSource, TransportSocket, data_source::Specifier, transport_socket,
};
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, TlsCertificate, UpstreamTlsContext, common_tls_context::ValidationContextType,
};

use super::secret::{SanMatcher, validation_spec};
use super::{FieldError, FieldResult, only_fields, unpack, validate};

const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

/// Where PEM bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    File(PathBuf),
    Inline(Vec<u8>),
    Env(String),
}

impl DataSource {
    /// The bytes now; the error names the file or variable.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            DataSource::Inline(b) => Ok(b.clone()),
            DataSource::File(p) => {
                std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
            }
            DataSource::Env(v) => std::env::var(v)
                .map(String::into_bytes)
                .map_err(|e| format!("environment variable {v}: {e}")),
        }
    }

    /// How an error message names it.
    pub fn describe(&self) -> String {
        match self {
            DataSource::File(p) => p.display().to_string(),
            DataSource::Inline(_) => "inline PEM".into(),
            DataSource::Env(v) => format!("environment variable {v}"),
        }
    }
}

/// TLS to the xDS server.
#[derive(Debug, Clone)]
pub struct XdsTls {
    /// The SNI to send; `None` sends none.
    pub sni: Option<String>,
    pub trusted_ca: Option<DataSource>,
    /// The client certificate chain and its key (mutual TLS).
    pub client_cert: Option<(DataSource, DataSource)>,
    /// The server certificate must have a SAN matching one of these (none: any name).
    pub san_matchers: Vec<SanMatcher>,
    pub alpn: Vec<Vec<u8>>,
}

/// The xDS cluster's transport socket. `Ok(None)`: a plaintext one (`raw_buffer`).
pub fn translate(ts: &TransportSocket) -> FieldResult<Option<XdsTls>> {
    let any = match &ts.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => any,
        None if ts.name == "envoy.transport_sockets.raw_buffer" => return Ok(None),
        None => return Err(FieldError::new("typed_config", "required")),
    };
    if xds_types::type_url::message_name(&any.type_url)
        == "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    {
        return Ok(None);
    }
    let ctx: UpstreamTlsContext = unpack(any).map_err(|e| {
        FieldError::new(
            "typed_config",
            format!(
                "{} (only {TLS_SOCKET} with an UpstreamTlsContext is supported here)",
                e.reason
            ),
        )
    })?;
    upstream(&ctx).map_err(|e| e.within("typed_config"))
}

fn upstream(ctx: &UpstreamTlsContext) -> FieldResult<Option<XdsTls>> {
    validate(ctx)?;
    only_fields(ctx, &["common_tls_context", "sni"])?;
    let common = ctx.common_tls_context.clone().unwrap_or_default();
    let (client_cert, trusted_ca, san_matchers, alpn) =
        common_context(&common).map_err(|e| e.within("common_tls_context"))?;
    Ok(Some(XdsTls {
        sni: (!ctx.sni.is_empty()).then(|| ctx.sni.clone()),
        trusted_ca,
        client_cert,
        san_matchers,
        alpn,
    }))
}

type Common = (
    Option<(DataSource, DataSource)>,
    Option<DataSource>,
    Vec<SanMatcher>,
    Vec<Vec<u8>>,
);

fn common_context(c: &CommonTlsContext) -> FieldResult<Common> {
    only_fields(
        c,
        &["tls_certificates", "validation_context", "alpn_protocols"],
    )?;
    let client_cert = match c.tls_certificates.as_slice() {
        [] => None,
        [cert] => Some(certificate(cert).map_err(|e| e.within("tls_certificates[0]"))?),
        _ => {
            return Err(FieldError::new(
                "tls_certificates",
                "one client certificate at most on the xDS cluster",
            ));
        }
    };
    let (trusted_ca, san_matchers) = match &c.validation_context_type {
        None => (None, Vec::new()),
        Some(ValidationContextType::ValidationContext(v)) => {
            let spec = validation_spec(v).map_err(|e| e.within("validation_context"))?;
            let ca = spec
                .trusted_ca
                .map(|d| data_source(d).map_err(|e| e.within("validation_context.trusted_ca")))
                .transpose()?;
            (ca, spec.sans)
        }
        Some(_) => {
            return Err(FieldError::new(
                "validation_context_type",
                "only validation_context is supported on the xDS cluster (SDS would need the \
                 xDS connection it secures)",
            ));
        }
    };
    let alpn = if c.alpn_protocols.is_empty() {
        vec![b"h2".to_vec()]
    } else {
        c.alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect()
    };
    Ok((client_cert, trusted_ca, san_matchers, alpn))
}

fn certificate(c: &TlsCertificate) -> FieldResult<(DataSource, DataSource)> {
    only_fields(c, &["certificate_chain", "private_key"])?;
    let chain = c
        .certificate_chain
        .as_ref()
        .ok_or_else(|| FieldError::new("certificate_chain", "required"))?;
    let key = c
        .private_key
        .as_ref()
        .ok_or_else(|| FieldError::new("private_key", "required"))?;
    Ok((
        data_source(chain).map_err(|e| e.within("certificate_chain"))?,
        data_source(key).map_err(|e| e.within("private_key"))?,
    ))
}

fn data_source(d: &XdsDataSource) -> FieldResult<DataSource> {
    only_fields(
        d,
        &[
            "filename",
            "inline_bytes",
            "inline_string",
            "environment_variable",
        ],
    )?;
    Ok(match &d.specifier {
        Some(Specifier::Filename(f)) => DataSource::File(PathBuf::from(f)),
        Some(Specifier::InlineBytes(b)) => DataSource::Inline(b.clone()),
        Some(Specifier::InlineString(s)) => DataSource::Inline(s.as_bytes().to_vec()),
        Some(Specifier::EnvironmentVariable(v)) => DataSource::Env(v.clone()),
        None => return Err(FieldError::new("", "a filename or inline PEM is required")),
    })
}

#[cfg(test)]
mod tests;
