//! Files named by the Secret resources of the config directory.
//!
//! In Envoy a `DataSource.filename` is read by the proxy, on the proxy's filesystem. A Secret
//! served over SDS is different: its point is that the proxy does not have the files (the
//! controlplane holds the keys and pushes them, rotation included); go-control-plane users
//! build such Secrets with inline bytes. So the rule here is:
//!
//! * a **relative** `filename` in a Secret of the config directory is a file of the
//!   controlplane, resolved against the directory of the YAML file that names it; it is read,
//!   checked, and sent as `inline_bytes` (and a `watched_directory` beside it is dropped: the
//!   directory watcher reloads and re-pushes instead). A proxy therefore needs no copy of it,
//!   and an edit of the PEM file is pushed like an edit of the YAML (the watcher sees changes
//!   in the config directory itself; files in a subdirectory are re-read on SIGHUP).
//! * an **absolute** `filename` is the proxy's, as in Envoy: sent unchanged and not read here
//!   (the controlplane may run on another host; certificates mounted into a sidecar are the
//!   usual case).
//!
//! Resources set through the management API have no directory: their filenames are sent
//! unchanged.

use std::path::{Path, PathBuf};

use prost::Message;
use xds_types::Any;
use xds_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret::Type};
use xds_types::type_url;

/// Where a data source's bytes are, seen from the controlplane.
pub enum Resolved {
    /// Bytes we hold (inline, or a relative file read now), and how to name them.
    Here(Vec<u8>, String),
    /// A file or variable of the proxy: not ours to read.
    Proxy,
}

/// The directory relative filenames of `yaml_file` resolve against, if it is a file of the
/// config directory (the management API's resources are not).
pub fn base_dir(yaml_file: &Path) -> Option<&Path> {
    yaml_file.is_file().then(|| yaml_file.parent()).flatten()
}

/// Resolves one data source. `Err` names the file and the reason.
pub fn resolve(d: &DataSource, base: Option<&Path>) -> Result<Resolved, String> {
    Ok(match &d.specifier {
        Some(Specifier::InlineBytes(b)) => Resolved::Here(b.clone(), "inline_bytes".into()),
        Some(Specifier::InlineString(s)) => {
            Resolved::Here(s.as_bytes().to_vec(), "inline_string".into())
        }
        Some(Specifier::Filename(f)) => match relative(f, base) {
            Some(path) => {
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
                Resolved::Here(bytes, path.display().to_string())
            }
            None => Resolved::Proxy,
        },
        Some(Specifier::EnvironmentVariable(_)) | None => Resolved::Proxy,
    })
}

fn relative(filename: &str, base: Option<&Path>) -> Option<PathBuf> {
    let path = Path::new(filename);
    match base {
        Some(base) if path.is_relative() => Some(base.join(path)),
        _ => None,
    }
}

/// Replaces the relative filenames of a Secret with their contents. Other resources are
/// returned as they are. `Err`: `field.filename: path: reason`.
pub fn inline(any: &Any, yaml_file: &Path) -> Result<Any, String> {
    let Some(base) = base_dir(yaml_file) else {
        return Ok(any.clone());
    };
    if any.type_url != type_url::SECRET {
        return Ok(any.clone());
    }
    let mut secret = Secret::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
    let mut changed = false;
    let mut fix = |d: &mut Option<DataSource>, field: &str| -> Result<(), String> {
        let Some(ds) = d else { return Ok(()) };
        let Some(Specifier::Filename(f)) = &ds.specifier else {
            return Ok(());
        };
        let Some(path) = relative(f, Some(base)) else {
            return Ok(());
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("{field}.filename: {}: cannot read: {e}", path.display()))?;
        ds.specifier = Some(Specifier::InlineBytes(bytes));
        ds.watched_directory = None;
        changed = true;
        Ok(())
    };
    match &mut secret.r#type {
        Some(Type::TlsCertificate(c)) => {
            fix(
                &mut c.certificate_chain,
                "tls_certificate.certificate_chain",
            )?;
            fix(&mut c.private_key, "tls_certificate.private_key")?;
            fix(&mut c.pkcs12, "tls_certificate.pkcs12")?;
            fix(&mut c.password, "tls_certificate.password")?;
            fix(&mut c.ocsp_staple, "tls_certificate.ocsp_staple")?;
            if changed {
                c.watched_directory = None;
            }
        }
        Some(Type::ValidationContext(v)) => {
            fix(&mut v.trusted_ca, "validation_context.trusted_ca")?;
            fix(&mut v.crl, "validation_context.crl")?;
            if changed {
                v.watched_directory = None;
            }
        }
        Some(Type::GenericSecret(g)) => fix(&mut g.secret, "generic_secret.secret")?,
        Some(Type::SessionTicketKeys(k)) => {
            for (i, key) in k.keys.iter_mut().enumerate() {
                let mut slot = Some(std::mem::take(key));
                let result = fix(&mut slot, &format!("session_ticket_keys.keys[{i}]"));
                *key = slot.unwrap_or_default();
                result?;
            }
        }
        None => {}
    }
    if !changed {
        return Ok(any.clone());
    }
    Ok(Any {
        type_url: any.type_url.clone(),
        value: secret.encode_to_vec(),
    })
}

#[cfg(test)]
mod tests;
