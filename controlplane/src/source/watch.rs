//! Watching the config directory: reload on any change and on SIGHUP.
//!
//! The directory itself is watched (not each file), so a file replaced by rename, the way
//! editors and deploy tools write, is seen like any other change. Events are coalesced: after
//! the first, we wait a short quiet period, so a burst of writes is one reload, and the reload
//! happens well within a second of the last write. Reloads are also kept a moment apart, so
//! a storm of changes is a few pushes, each with the latest content.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::files::is_scratch_file;
use super::{LoadOptions, LoadTiming, SourceStatus, Versioner, load_dir_memo};
use crate::cache::{Origin, SnapshotCache};
use crate::status::now;

/// How long the directory must stay quiet after a change before we reload: a tool writing
/// several files (or one file in several writes) is one reload. Tools write within
/// microseconds to a few milliseconds; every millisecond here is added to every change.
const QUIET: Duration = Duration::from_millis(20);
/// A steady stream of changes still reloads at least this often.
const MAX_DELAY: Duration = Duration::from_millis(300);
/// Reloads are at least this far apart (from the end of one to the start of the next): a
/// storm of changes is a push every quarter second to every proxy, not a push per change,
/// while a change after a calm moment waits only [`QUIET`].
const MIN_INTERVAL: Duration = Duration::from_millis(250);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

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
    let mut timing = LoadTiming::default();
    let mut versioned = std::time::Duration::ZERO;
    let result = load_dir_memo(dir, options, &mut versioner.memos).and_then(|loaded| {
        let warnings = loaded.warnings.clone();
        timing = loaded.timing;
        let started = Instant::now();
        let groups = versioner.version(loaded);
        versioned = started.elapsed();
        groups.map(|groups| (groups, warnings))
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
            let started = Instant::now();
            cache.set_groups(Origin::Files, groups);
            debug!(
                read_ms = ms(timing.read),
                check_ms = ms(timing.check),
                snapshot_ms = ms(versioned),
                publish_ms = ms(started.elapsed()),
                published_us = crate::server::fanout::unix_us(),
                "reload timing"
            );
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
        // would reload forever. Creates, writes, renames, removes and attribute changes count,
        // unless they are all of scratch files: a tool writing `.x.json.tmp` before renaming
        // it into place would otherwise start a reload (of nothing new) before the rename,
        // and the rename's reload would wait for it.
        let counts = |e: &notify::Event| {
            !e.kind.is_access()
                && (e.paths.is_empty() || e.paths.iter().any(|p| !is_scratch_file(p)))
        };
        if event.is_ok_and(|e| counts(&e)) {
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
    let mut last_reload: Option<tokio::time::Instant> = None;
    while rx.recv().await.is_some() {
        let started = tokio::time::Instant::now();
        let event_us = crate::server::fanout::unix_us();
        // Coalesce a burst: wait until QUIET passes with no event, or MAX_DELAY in all.
        while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {
            if started.elapsed() > MAX_DELAY {
                break;
            }
        }
        // In a storm, changes that come meanwhile are part of this reload.
        if let Some(last) = last_reload {
            tokio::time::sleep_until(last + MIN_INTERVAL).await;
        }
        while rx.try_recv().is_ok() {}
        debug!(
            event_us,
            waited_ms = ms(started.elapsed()),
            "reloading after changes"
        );
        reload(&dir, options, &mut versioner, &cache, &status);
        last_reload = Some(tokio::time::Instant::now());
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
