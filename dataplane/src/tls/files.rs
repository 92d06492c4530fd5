//! SDS from files: `sds_config: { path_config_source: { path } }` names a file holding a
//! DiscoveryResponse with Secret resources (Envoy's file-based SDS). The file, and the
//! certificate, key and CA files its secrets name, are checked every second; a change is read,
//! translated and published, so new handshakes use the new certificate while established
//! connections keep theirs. A change that does not translate (a key not matching its
//! certificate, say, half-way through a rotation that writes two files) is logged and the
//! previous secrets keep serving until the files are consistent again.
//!
//! One task for the process follows the config and keeps one watcher per file in use.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use xds_types::Resource;
use xds_types::pb::envoy::config::core::v3::{DataSource, data_source};
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret as XdsSecret, secret};
use xds_types::pb::envoy::service::discovery::v3::DiscoveryResponse;

use crate::config::tls::{Origin, file_key};
use crate::config::{Config, Secret};
use crate::runtime::Runtime;

/// How often the files are checked (Envoy reacts to inotify moves; polling is simpler and
/// bounded).
const POLL: Duration = Duration::from_secs(1);

pub async fn run(runtime: Arc<Runtime>) {
    let mut changed = runtime.subscribe();
    let mut watching: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        let wanted = paths(&runtime.load().config);
        watching.retain(|path, task| {
            let keep = wanted.contains(path);
            if !keep {
                task.abort();
            }
            keep
        });
        for path in wanted {
            watching
                .entry(path.clone())
                .or_insert_with(|| tokio::spawn(watch(path, runtime.clone())));
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// The SDS files the listeners and clusters name.
fn paths(config: &Config) -> HashSet<String> {
    let listeners = config
        .listeners
        .values()
        .flat_map(|l| crate::xds::store::listener_secrets(l).collect::<Vec<_>>());
    let clusters = config
        .clusters
        .values()
        .filter_map(|c| c.tls.as_ref())
        .flat_map(|t| t.secret_names().collect::<Vec<_>>());
    listeners
        .chain(clusters)
        .filter_map(|(_, origin)| match origin {
            Origin::File(path) => Some(path.clone()),
            _ => None,
        })
        .collect()
}

async fn watch(path: String, runtime: Arc<Runtime>) {
    let mut last: Option<Vec<u8>> = None;
    loop {
        let p = path.clone();
        let read = tokio::task::spawn_blocking(move || fingerprint(&p)).await;
        if let Ok(Ok((print, response))) = read
            && last.as_ref() != Some(&print)
        {
            match translate(&path, &response) {
                Ok(secrets) => {
                    tracing::info!(%path, secrets = secrets.len(), "SDS file read");
                    runtime.set_file_secrets(&path, secrets);
                }
                Err(e) => {
                    tracing::warn!(%path, error = %e, "SDS file refused; the previous secrets keep serving")
                }
            }
            last = Some(print);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The file's bytes and those of every file its secrets name (what a change shows in), and
/// the parsed response.
fn fingerprint(path: &str) -> Result<(Vec<u8>, DiscoveryResponse), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let response: DiscoveryResponse =
        xds_types::format::from_yaml_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let mut print = text.into_bytes();
    for any in &response.resources {
        if let Ok(s) = XdsSecret::from_any(any) {
            for file in files(&s) {
                print.extend(file.as_bytes());
                print.extend(std::fs::read(file).unwrap_or_default());
            }
        }
    }
    Ok((print, response))
}

/// The files a secret's material comes from.
fn files(s: &XdsSecret) -> Vec<&str> {
    let sources: Vec<Option<&DataSource>> = match &s.r#type {
        Some(secret::Type::TlsCertificate(c)) => {
            vec![c.certificate_chain.as_ref(), c.private_key.as_ref()]
        }
        Some(secret::Type::ValidationContext(v)) => vec![v.trusted_ca.as_ref()],
        _ => Vec::new(),
    };
    sources
        .into_iter()
        .flatten()
        .filter_map(|d| match &d.specifier {
            Some(data_source::Specifier::Filename(f)) => Some(f.as_str()),
            _ => None,
        })
        .collect()
}

/// Every Secret of the response, keyed for the config; one that does not translate refuses
/// the whole file (as Envoy rejects the update).
fn translate(
    path: &str,
    response: &DiscoveryResponse,
) -> Result<HashMap<String, Arc<Secret>>, String> {
    response
        .resources
        .iter()
        .map(|any| {
            let proto = XdsSecret::from_any(any).map_err(|e| e.to_string())?;
            let secret = Secret::try_from(&proto).map_err(|e| e.to_string())?;
            Ok((file_key(path, &secret.name), Arc::new(secret)))
        })
        .collect()
}
