//! Watching the config directory: reload on any change and on SIGHUP.
//!
//! The directory itself is watched (not each file), so a file replaced by rename, the way
//! editors and deploy tools write, is seen like any other change. Events are coalesced: after
//! the first, we wait a short quiet period, so a burst of writes is one reload, and the reload
//! happens well within a second of the last write.

use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{LoadOptions, SourceStatus, Versioner, load_dir};
use crate::cache::{Origin, SnapshotCache};
use crate::status::now;

/// How long the directory must stay quiet after a change before we reload.
const QUIET: Duration = Duration::from_millis(50);
/// A steady stream of changes still reloads at least this often.
const MAX_DELAY: Duration = Duration::from_millis(300);

/// Loads `dir` once; the result is applied to `cache` if it is good. Returns whether it was.
pub fn reload(
    dir: &std::path::Path,
    options: LoadOptions,
    versioner: &mut Versioner,
    cache: &SnapshotCache,
    status: &SourceStatus,
) -> bool {
    // Parsing a large directory allocates far more than the snapshot it yields.
    crate::memory::note_activity();
    let result = load_dir(dir, options).and_then(|loaded| {
        let warnings = loaded.warnings.clone();
        versioner.version(loaded).map(|groups| (groups, warnings))
    });
    match result {
        Ok((groups, warnings)) => {
            for w in &warnings {
                warn!("{w}");
            }
            let versions = groups
                .iter()
                .map(|g| (g.name.clone(), g.snapshot.version.clone()))
                .collect();
            info!(directory = %dir.display(), ?versions, "config loaded");
            cache.set_groups(Origin::Files, groups);
            status.update(|s| {
                s.versions = versions;
                s.loaded_at = Some(now());
                s.loads += 1;
                s.last_error = None;
                s.warnings = warnings;
            });
            true
        }
        Err(errors) => {
            for e in &errors {
                error!("config refused, the last good one keeps serving: {e}");
            }
            status.update(|s| {
                s.failed_loads += 1;
                s.last_error = Some(errors);
            });
            false
        }
    }
}

/// Watches `dir` until the process ends, reloading on changes and SIGHUP.
pub async fn run(
    dir: PathBuf,
    options: LoadOptions,
    mut versioner: Versioner,
    cache: SnapshotCache,
    status: SourceStatus,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fs_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Opening and reading files (our own reload does) is an access event: following it
        // would reload forever. Creates, writes, renames, removes and attribute changes count.
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = fs_tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            error!(error = %e, "cannot watch the config directory; reload with SIGHUP");
            return hup_only(dir, options, versioner, cache, status).await;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        error!(directory = %dir.display(), error = %e, "cannot watch the config directory; reload with SIGHUP");
    }
    spawn_hup(tx);
    while rx.recv().await.is_some() {
        let started = tokio::time::Instant::now();
        // Coalesce a burst: wait until QUIET passes with no event, or MAX_DELAY in all.
        while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {
            if started.elapsed() > MAX_DELAY {
                break;
            }
        }
        while rx.try_recv().is_ok() {}
        reload(&dir, options, &mut versioner, &cache, &status);
    }
    drop(watcher);
}

fn spawn_hup(tx: mpsc::UnboundedSender<()>) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    info!("SIGHUP: reloading");
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => warn!(error = %e, "cannot handle SIGHUP"),
    }
}

async fn hup_only(
    dir: PathBuf,
    options: LoadOptions,
    mut versioner: Versioner,
    cache: SnapshotCache,
    status: SourceStatus,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    spawn_hup(tx);
    while rx.recv().await.is_some() {
        reload(&dir, options, &mut versioner, &cache, &status);
    }
}

#[cfg(test)]
mod tests;
