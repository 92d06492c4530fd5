//! Which SDS secrets a resource asks for, and whether a Secret's certificate and key hold up.
//!
//! A cluster or listener whose TLS context names a secret to fetch over SDS waits (warms) until
//! the secret arrives, up to `initial_fetch_timeout`; a secret the group does not hold keeps it
//! from serving. The references can sit anywhere (transport sockets, their typed configs inside
//! `Any`s, per-filter-chain contexts), so the resource is walked generically through its
//! descriptors rather than by a hand-written list of fields.

use std::path::Path;

use prost::Message;
use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use xds_types::pb::envoy::config::core::v3::DataSource;
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret::Type};
use xds_types::{Any, descriptors, type_url};

use crate::source::secret_files::{self, Resolved};
use crate::tls::pem;

const SDS_SECRET_CONFIG: &str = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig";

/// Deep `Any` nesting beyond this is not followed (validation refuses it anyway).
const MAX_DEPTH: usize = 32;

/// `(field path, secret name)` for every secret the resource asks an SDS server for.
/// A reference without `sds_config` names a static secret of the proxy's bootstrap: not ours.
pub fn secret_refs(any: &Any) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if let Some(msg) = decode(any) {
        walk(&msg, String::new(), 0, &mut found);
    }
    found
}

fn decode(any: &Any) -> Option<DynamicMessage> {
    let desc = descriptors::message(type_url::message_name(&any.type_url))?;
    DynamicMessage::decode(desc, any.value.as_slice()).ok()
}

fn walk(msg: &DynamicMessage, path: String, depth: usize, found: &mut Vec<(String, String)>) {
    let desc = msg.descriptor();
    if depth > MAX_DEPTH {
        return;
    }
    if desc.full_name() == "google.protobuf.Any" {
        let type_url = msg
            .get_field_by_name("type_url")
            .and_then(|v| v.as_str().map(str::to_string));
        let value = msg
            .get_field_by_name("value")
            .and_then(|v| v.as_bytes().cloned());
        if let (Some(type_url), Some(value)) = (type_url, value) {
            let any = Any {
                type_url,
                value: value.to_vec(),
            };
            if let Some(inner) = decode(&any) {
                walk(&inner, path, depth + 1, found);
            }
        }
        return;
    }
    if desc.full_name() == SDS_SECRET_CONFIG && msg.has_field_by_name("sds_config") {
        let name = msg
            .get_field_by_name("name")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        found.push((path, name));
        return;
    }
    for (field, value) in msg.fields() {
        let here = if path.is_empty() {
            field.name().to_string()
        } else {
            format!("{path}.{}", field.name())
        };
        match value {
            Value::Message(m) => walk(m, here, depth, found),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        walk(m, format!("{here}[{i}]"), depth, found);
                    }
                }
            }
            Value::Map(map) => {
                for (key, item) in map {
                    if let (Value::Message(m), Some(k)) = (item, key.as_str()) {
                        walk(m, format!("{here}[{k}]"), depth, found);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Checks a Secret as Envoy does when it loads one: its PEM parses and its private key belongs
/// to its certificate (else Envoy refuses the secret and whatever uses it keeps warming or
/// its old certificate). Data we hold (inline, or relative files of the config directory) is
/// checked; a proxy's own file (absolute path) is not ours to read. Errors are
/// `field (source): reason`.
pub fn check_secret(any: &Any, yaml_file: &Path) -> Vec<String> {
    let Ok(secret) = Secret::decode(any.value.as_slice()) else {
        return Vec::new(); // Reported by the decoding check.
    };
    let base = secret_files::base_dir(yaml_file);
    let mut errors = Vec::new();
    let mut here = |d: &Option<DataSource>, field: &str| -> Option<(Vec<u8>, String)> {
        match secret_files::resolve(d.as_ref()?, base) {
            Ok(Resolved::Here(bytes, from)) => Some((bytes, from)),
            Ok(Resolved::Proxy) => None,
            Err(e) => {
                errors.push(format!("{field}.filename: {e}"));
                None
            }
        }
    };
    let mut found = Vec::new();
    match &secret.r#type {
        Some(Type::TlsCertificate(c)) => {
            let chain = here(&c.certificate_chain, "tls_certificate.certificate_chain");
            // An encrypted key (with `password`) or a key provider is Envoy's to open.
            let key = if c.password.is_none() {
                here(&c.private_key, "tls_certificate.private_key")
            } else {
                None
            };
            let certs = chain.as_ref().and_then(|(pem, from)| {
                pem::certs(pem)
                    .map_err(|e| {
                        found.push(format!("tls_certificate.certificate_chain ({from}): {e}"))
                    })
                    .ok()
            });
            let key_der = key.as_ref().and_then(|(pem, from)| {
                pem::key(pem)
                    .map_err(|e| found.push(format!("tls_certificate.private_key ({from}): {e}")))
                    .ok()
            });
            if let (Some(certs), Some(key_der), Some((_, chain_from)), Some((_, key_from))) =
                (certs, key_der, &chain, &key)
                && let Err(e) = pem::check_pair(&certs, &key_der)
            {
                found.push(format!(
                    "tls_certificate.private_key ({key_from}): does not match the certificate \
                     in tls_certificate.certificate_chain ({chain_from}): {e}"
                ));
            }
        }
        Some(Type::ValidationContext(v)) => {
            if let Some((pem, from)) = here(&v.trusted_ca, "validation_context.trusted_ca")
                && let Err(e) = pem::certs(&pem)
            {
                found.push(format!("validation_context.trusted_ca ({from}): {e}"));
            }
        }
        _ => {}
    }
    errors.extend(found);
    errors
}
