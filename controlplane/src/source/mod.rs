//! Where snapshots come from: the watched config directory ([`files`], [`watch`]) and the
//! management API ([`api`]), both through the same checks ([`check`]).
//!
//! Loading is all-or-nothing per directory: a file that does not parse or a group that fails
//! its checks leaves every group as it was, and the error (file, resource, field) goes to the
//! log and to [`SourceStatus`], which the admin API serves.

pub mod api;
pub mod check;
pub mod files;
pub mod memo;
pub mod secret_files;
pub mod watch;

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::cache::{NodeGroup, Snapshot};

/// How strict loading is.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Warnings (a route to a cluster that does not exist) are errors.
    pub strict: bool,
}

/// A directory that loaded: its groups (snapshots not yet versioned) and the warnings.
#[derive(Debug)]
pub struct Loaded {
    pub groups: Vec<(String, crate::cache::NodeSelector, Vec<xds_types::Any>)>,
    pub warnings: Vec<String>,
    pub timing: LoadTiming,
}

/// Where a load's time went (logged at debug level with each reload).
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadTiming {
    /// Reading and parsing the files into resources.
    pub read: std::time::Duration,
    /// The checks (validation, references) and inlining Secret files.
    pub check: std::time::Duration,
}

/// Reads and checks `dir`. `Err` holds every error found, each naming its file.
pub fn load_dir(dir: &Path, options: LoadOptions) -> Result<Loaded, Vec<String>> {
    load_dir_memo(dir, options, &mut memo::Memos::default())
}

/// [`load_dir`], parsing and validating only the resources `memos` does not hold from an
/// earlier load of the same source.
pub fn load_dir_memo(
    dir: &Path,
    options: LoadOptions,
    memos: &mut memo::Memos,
) -> Result<Loaded, Vec<String>> {
    memos.rotate();
    let started = std::time::Instant::now();
    let groups = files::read_dir_memo(dir, &mut memos.parsed)?;
    let read = started.elapsed();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for (name, group) in groups {
        let findings = check::check_memo(&name, &group.resources, &mut memos.validated);
        // An unreadable Secret file is reported once, by the check, not again by inline().
        let checked = findings.errors.is_empty();
        errors.extend(findings.errors);
        if options.strict {
            errors.extend(
                findings
                    .warnings
                    .into_iter()
                    .map(|w| format!("{w} [--strict]")),
            );
        } else {
            warnings.extend(findings.warnings);
        }
        // Relative files of Secrets become inline bytes (see secret_files); after the checks,
        // which read the same files and name them.
        let mut anys = Vec::with_capacity(group.resources.len());
        for r in &group.resources {
            match secret_files::inline(&r.any, &r.file) {
                Ok(any) => anys.push(any),
                Err(e) if checked => {
                    errors.push(format!("{}: {}: {e}", r.file.display(), r.location))
                }
                Err(_) => {}
            }
        }
        out.push((name, group.selector, anys));
    }
    if errors.is_empty() {
        Ok(Loaded {
            groups: out,
            warnings,
            timing: LoadTiming {
                read,
                check: started.elapsed() - read,
            },
        })
    } else {
        Err(errors)
    }
}

/// Versions snapshots: a group whose content did not change keeps its snapshot (and so its
/// version: nothing is pushed); a changed group gets `<sequence>-<content hash>`, the sequence
/// growing with every load so versions sort in the order they were made.
///
/// It also holds what a load keeps for the next one of the same source ([`memo::Memos`]).
#[derive(Debug, Default)]
pub struct Versioner {
    pub memos: memo::Memos,
    sequence: u64,
    previous: std::collections::HashMap<String, (String, Arc<Snapshot>)>,
}

impl Versioner {
    pub fn version(&mut self, loaded: Loaded) -> Result<Vec<NodeGroup>, Vec<String>> {
        self.sequence += 1;
        let mut groups = Vec::new();
        let mut next = std::collections::HashMap::new();
        for (name, selector, anys) in loaded.groups {
            let mut bytes = Vec::new();
            for a in &anys {
                bytes.extend_from_slice(a.type_url.as_bytes());
                bytes.extend_from_slice(&a.value);
            }
            let hash = crate::cache::snapshot::content_version(&bytes);
            let snapshot = match self.previous.get(&name) {
                Some((h, s)) if *h == hash => s.clone(),
                previous => {
                    let version = format!("{}-{}", self.sequence, &hash[..8]);
                    let snapshot = Snapshot::new(version, anys)
                        .map_err(|e| vec![format!("group \"{name}\": {e}")])?;
                    // What changed since the group's last snapshot: streams holding that one
                    // look only at these names.
                    Arc::new(match previous {
                        Some((_, p)) => snapshot.with_parent(p),
                        None => snapshot,
                    })
                }
            };
            next.insert(name.clone(), (hash, snapshot.clone()));
            groups.push(NodeGroup {
                name,
                selector,
                snapshot,
            });
        }
        self.previous = next;
        Ok(groups)
    }
}

/// The file source's state, for the admin API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceState {
    pub directory: String,
    /// Versions of the groups last served, by group.
    pub versions: std::collections::BTreeMap<String, String>,
    pub loaded_at: Option<u64>,
    pub loads: u64,
    pub failed_loads: u64,
    /// Why the last load failed, if it did (the last good snapshot keeps serving).
    pub last_error: Option<Vec<String>>,
    pub warnings: Vec<String>,
}

/// Shared handle on [`SourceState`].
#[derive(Debug, Clone, Default)]
pub struct SourceStatus(Arc<Mutex<SourceState>>);

impl SourceStatus {
    pub fn get(&self) -> SourceState {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn update(&self, f: impl FnOnce(&mut SourceState)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }
}
