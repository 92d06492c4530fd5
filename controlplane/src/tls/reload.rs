//! Reloading the listener's certificate, key and client CA when their files change, and on
//! SIGHUP, in the style of the config directory's watcher (`source::watch`).
//!
//! The directories holding the files are watched, not the files: cert-manager, Kubernetes
//! Secret volumes (a `..data` symlink swapped atomically) and `mv`-style deploys all replace a
//! file rather than write it, and a watch on the old inode would miss that. Events are
//! coalesced over a quiet period; a reload that fails (a certificate written before its key,
//! so they do not match yet) keeps the previous config and is retried on the next event.
//!
//! A new config applies to new handshakes only: established connections keep the session
//! they negotiated, so no xDS stream is cut by a rotation.

use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{Acceptor, TlsFiles, TlsStatus};
use crate::status::now;

/// How long the files must stay quiet after a change before we reload.
const QUIET: Duration = Duration::from_millis(100);
/// A steady stream of changes still reloads at least this often.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// The files' bytes, to tell a real change from an event on a neighbour in the directory.
fn fingerprint(files: &TlsFiles) -> Vec<Option<Vec<u8>>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .map(|p| p.and_then(|p| std::fs::read(p).ok()))
    .collect()
}

/// Loads the files again and swaps them in if they changed and load. Returns whether a new
/// config is in force.
pub fn reload_once(
    files: &TlsFiles,
    acceptor: &Acceptor,
    status: &TlsStatus,
    last: &mut Vec<Option<Vec<u8>>>,
) -> bool {
    let now_print = fingerprint(files);
    if now_print == *last {
        return false;
    }
    match files.load() {
        Ok(config) => {
            acceptor.swap(config);
            *last = now_print;
            info!(cert = %files.cert.display(), "TLS certificate reloaded: new handshakes use it");
            status.update(|s| {
                s.loaded_at = now();
                s.reloads += 1;
                s.last_error = None;
            });
            true
        }
        Err(e) => {
            error!("TLS files refused, the previous certificate keeps serving: {e}");
            status.update(|s| {
                s.failed_reloads += 1;
                s.last_error = Some(e);
            });
            false
        }
    }
}

fn dirs(files: &TlsFiles) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    })
    .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Watches the files until the process ends.
pub async fn run(files: TlsFiles, acceptor: Acceptor, status: TlsStatus) {
    let mut last = fingerprint(&files);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fs_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads are access events: following them would reload forever.
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = fs_tx.send(());
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => {
            for dir in dirs(&files) {
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    error!(directory = %dir.display(), error = %e, "cannot watch the TLS files; reload them with SIGHUP");
                }
            }
            Some(w)
        }
        Err(e) => {
            error!(error = %e, "cannot watch the TLS files; reload them with SIGHUP");
            None
        }
    };
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot handle SIGHUP for the TLS files"),
    }
    while rx.recv().await.is_some() {
        let started = tokio::time::Instant::now();
        while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {
            if started.elapsed() > MAX_DELAY {
                break;
            }
        }
        reload_once(&files, &acceptor, &status, &mut last);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_mismatched_pair_keeps_the_old_config_until_the_files_agree() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cp.pem"),
            key: dir.path().join("cp.key"),
            client_ca: None,
        };
        let (cert, key) = pair();
        std::fs::write(&files.cert, &cert).unwrap();
        std::fs::write(&files.key, &key).unwrap();
        let acceptor = Acceptor::new(files.load().unwrap());
        let status = TlsStatus::default();
        let mut last = fingerprint(&files);
        let first = acceptor.current();
        assert!(
            !reload_once(&files, &acceptor, &status, &mut last),
            "nothing changed"
        );

        // The new key lands before its certificate: refused, the old config stays.
        let (new_cert, new_key) = pair();
        std::fs::write(&files.key, &new_key).unwrap();
        assert!(!reload_once(&files, &acceptor, &status, &mut last));
        assert!(Arc::ptr_eq(&first, &acceptor.current()));
        let state = status.get();
        assert_eq!(state.failed_reloads, 1);
        let error = state.last_error.unwrap();
        assert!(
            error.contains("cp.key: the private key does not match the certificate in"),
            "{error}"
        );

        std::fs::write(&files.cert, &new_cert).unwrap();
        assert!(reload_once(&files, &acceptor, &status, &mut last));
        assert!(!Arc::ptr_eq(&first, &acceptor.current()));
        let state = status.get();
        assert_eq!((state.reloads, state.last_error), (1, None));
    }

    #[test]
    fn the_watched_directories() {
        let files = TlsFiles {
            cert: "/a/cert.pem".into(),
            key: "/a/key.pem".into(),
            client_ca: Some("ca.pem".into()),
        };
        assert_eq!(dirs(&files), [PathBuf::from("/a"), PathBuf::from(".")]);
    }
}
