//! SDS from files: `sds_config: { path_config_source: { path } }` names a file holding a
//! DiscoveryResponse with Secret resources (Envoy's file-based SDS). The file, and the
//! certificate, key and CA files its secrets name, are watched (inotify, through `notify`);
//! a change is read, translated and published, so new handshakes use the new certificate
//! while established connections keep theirs. A change that does not translate (a key not
//! matching its certificate, say, half-way through a rotation that writes two files) is
//! logged and the previous secrets keep serving until the files are consistent again.
//!
//! The directories holding the files are watched, not the files: a file replaced by a rename
//! (the atomic way to write it, which Envoy's own watch is built for) and the symlink swap of
//! Kubernetes secret volumes (`..data` re-pointed at a new timestamped directory, the names
//! being symlinks through it) both show as events in the directory, where a watch on the old
//! file would see nothing. With `watched_directory` that directory triggers the reload of
//! the path, as in Envoy. Every event leads to a re-read, and only content that changed is
//! published, so over-reporting (any write in the directory) costs a read, never a rotation.
//! If no watch can be set up (no inotify instances left), the files are polled instead.
//!
//! One task for the process follows the config and keeps one watcher per SDS file in use.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xds_types::Resource;
use xds_types::pb::envoy::config::core::v3::{DataSource, data_source};
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret as XdsSecret, secret};
use xds_types::pb::envoy::service::discovery::v3::DiscoveryResponse;

use crate::config::tls::{Origin, file_key};
use crate::config::{Config, Secret};
use crate::runtime::Runtime;

/// How long the directories must stay quiet after an event before the files are read: a
/// rotation writes a certificate and a key, and one read should see both.
const QUIET: Duration = Duration::from_millis(50);
/// How often the files are read when they cannot be watched.
const POLL: Duration = Duration::from_secs(1);

pub async fn run(runtime: Arc<Runtime>) {
    let mut changed = runtime.subscribe();
    let mut watching: HashMap<(String, Option<String>), JoinHandle<()>> = HashMap::new();
    loop {
        let wanted = sources(&runtime.load().config);
        watching.retain(|source, task| {
            let keep = wanted.contains(source);
            if !keep {
                task.abort();
            }
            keep
        });
        for source in wanted {
            watching
                .entry(source.clone())
                .or_insert_with(|| tokio::spawn(watch(source.0, source.1, runtime.clone())));
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// The SDS files the listeners and clusters name, with their `watched_directory`.
fn sources(config: &Config) -> BTreeSet<(String, Option<String>)> {
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
            Origin::File {
                path,
                watched_directory,
            } => Some((path.clone(), watched_directory.clone())),
            _ => None,
        })
        .collect()
}

/// Follows one SDS file: arm the watches, read, publish what changed, wait for an event.
async fn watch(path: String, watched_directory: Option<String>, runtime: Arc<Runtime>) {
    let (tx, mut events) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads are access events: following them would read forever.
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    });
    let mut watcher = watcher
        .inspect_err(|e| tracing::warn!(%path, error = %e, "cannot watch the SDS file; polling it"))
        .ok();
    let mut last: Option<Vec<u8>> = None;
    let mut named: Vec<PathBuf> = Vec::new();
    loop {
        // Armed before the read, and again whenever the read names other files: a change
        // after the read is an event, a change before it is in what was read.
        if let Some(w) = &mut watcher {
            arm(w, &directories(&path, watched_directory.as_deref(), &named));
        }
        let p = path.clone();
        let read = tokio::task::spawn_blocking(move || fingerprint(&p)).await;
        match read {
            Ok(Ok(read)) => {
                if last.as_ref() != Some(&read.print) {
                    publish(&path, &read.response, &runtime);
                    last = Some(read.print);
                }
                if read.files != named {
                    named = read.files;
                    continue;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(%path, error = %e, "SDS file unreadable; the previous secrets keep serving")
            }
            Err(_) => {}
        }
        if watcher.is_none() {
            tokio::time::sleep(POLL).await;
            continue;
        }
        if events.recv().await.is_none() {
            return;
        }
        while let Ok(Some(())) = tokio::time::timeout(QUIET, events.recv()).await {}
    }
}

/// The directories whose entries can change what `path` reads: the file's own (or
/// `watched_directory`), and those of the certificate, key and CA files its secrets name.
fn directories(
    path: &str,
    watched_directory: Option<&str>,
    named: &[PathBuf],
) -> BTreeSet<PathBuf> {
    let own = match watched_directory {
        Some(dir) => PathBuf::from(dir),
        None => parent(Path::new(path)),
    };
    std::iter::once(own)
        .chain(named.iter().map(|f| parent(f)))
        .collect()
}

fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Watches exactly `dirs`, anew: a watched directory that was a symlink swapped away (or
/// removed and made again) must be watched through its new target.
fn arm(watcher: &mut notify::RecommendedWatcher, dirs: &BTreeSet<PathBuf>) {
    for dir in dirs {
        let _ = watcher.unwatch(dir);
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(directory = %dir.display(), error = %e, "cannot watch a directory of SDS files");
        }
    }
}

fn publish(path: &str, response: &DiscoveryResponse, runtime: &Runtime) {
    match translate(path, response) {
        Ok(secrets) => {
            tracing::info!(%path, secrets = secrets.len(), "SDS file read");
            runtime.set_file_secrets(path, secrets);
        }
        Err(e) => {
            tracing::warn!(%path, error = %e, "SDS file refused; the previous secrets keep serving")
        }
    }
}

/// One read of an SDS file.
struct Read {
    /// Its bytes and those of every file its secrets name (what a change shows in).
    print: Vec<u8>,
    response: DiscoveryResponse,
    /// The files its secrets name.
    files: Vec<PathBuf>,
}

/// Reads the file and every file its secrets name.
fn fingerprint(path: &str) -> Result<Read, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let response: DiscoveryResponse =
        xds_types::format::from_yaml_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let mut print = text.into_bytes();
    let mut named = Vec::new();
    for any in &response.resources {
        if let Ok(s) = XdsSecret::from_any(any) {
            for file in files(&s) {
                print.extend(file.as_bytes());
                print.extend(std::fs::read(file).unwrap_or_default());
                named.push(PathBuf::from(file));
            }
        }
    }
    Ok(Read {
        print,
        response,
        files: named,
    })
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
