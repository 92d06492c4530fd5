//! The file source: a directory of Envoy-format YAML/JSON resource files.
//!
//! A file holds either an Envoy file-xDS style `resources:` list of `"@type"`-tagged resources,
//! or one resource per YAML document (`---`). A file may say which nodes it is for with a
//! top-level `node_group:` key (in the `resources:` form, or as a document of its own):
//!
//! ```yaml
//! node_group: { name: canary, node_ids: ["edge-*"], node_clusters: ["canary"] }
//! resources: [ ... ]
//! ```
//!
//! Files without it make up the `default` group, served to every node no other group selects.
//! Only `.yaml`, `.yml` and `.json` files count; dotfiles and editors' `~` backups are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use xds_types::Any;
use xds_types::format::{FormatError, any_from_json_value};

use super::memo::Memo;
use crate::cache::NodeSelector;

/// The name of the group of files that name none.
pub const DEFAULT_GROUP: &str = "default";

/// One resource as read from a file, with where it came from (for error messages).
#[derive(Debug, Clone)]
pub struct SourcedResource {
    pub file: PathBuf,
    /// `resources[3]` or `document 2`.
    pub location: String,
    pub any: Any,
}

/// The resources of one node group, as read from the directory.
#[derive(Debug, Clone, Default)]
pub struct GroupFiles {
    pub selector: NodeSelector,
    pub resources: Vec<SourcedResource>,
}

/// Whether the directory entry is a config file (not a temporary or hidden file).
pub fn is_config_file(path: &Path) -> bool {
    let ext_ok = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    );
    ext_ok && !is_scratch_file(path) && path.is_file()
}

/// A hidden file or an editor's backup: what tools write aside before renaming into place
/// (`.fleet.json.tmp`), never read, so changing one is no reason to reload.
pub fn is_scratch_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.') || name.ends_with('~')
}

/// Reads every config file of `dir` into groups. Errors name the file, the resource and the
/// field; all of them are collected so one run reports every broken file.
pub fn read_dir(dir: &Path) -> Result<BTreeMap<String, GroupFiles>, Vec<String>> {
    read_dir_memo(dir, &mut Memo::default())
}

/// [`read_dir`], turning into protobuf only the resources `parsed` does not hold from an
/// earlier load.
pub fn read_dir_memo(
    dir: &Path,
    parsed: &mut Memo<String, Any>,
) -> Result<BTreeMap<String, GroupFiles>, Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| vec![format!("{}: cannot read directory: {e}", dir.display())])?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_config_file(p))
        .collect();
    paths.sort();
    let mut groups: BTreeMap<String, GroupFiles> = BTreeMap::new();
    let mut errors = Vec::new();
    for path in paths {
        match read_file_memo(&path, parsed) {
            Ok((group, resources)) => {
                let (name, selector) =
                    group.unwrap_or_else(|| (DEFAULT_GROUP.to_string(), NodeSelector::default()));
                let entry = groups.entry(name.clone()).or_insert_with(|| GroupFiles {
                    selector: selector.clone(),
                    ..Default::default()
                });
                if entry.selector != selector {
                    errors.push(format!(
                        "{}: node_group \"{name}\" selects {selector:?}, but another file gives the same group {:?}",
                        path.display(),
                        entry.selector
                    ));
                }
                entry.resources.extend(resources);
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

type FileContent = (Option<(String, NodeSelector)>, Vec<SourcedResource>);

/// Reads one file: its node group (if it names one) and its resources.
pub fn read_file(path: &Path) -> Result<FileContent, Vec<String>> {
    read_file_memo(path, &mut Memo::default())
}

fn read_file_memo(path: &Path, parsed: &mut Memo<String, Any>) -> Result<FileContent, Vec<String>> {
    let file = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{file}: cannot read: {e}")])?;
    let mut documents = Vec::new();
    // JSON is YAML, but serde_json reads it several times faster than the YAML parser:
    // large generated configs (thousands of endpoints) are usually JSON.
    let json = path.extension().is_some_and(|e| e == "json");
    if json {
        let value: Value =
            serde_json::from_str(&text).map_err(|e| vec![format!("{file}: invalid JSON: {e}")])?;
        documents.push(value);
    }
    // Not a filter on the YAML documents: that would still run the YAML parser over the
    // whole JSON text (it parses a document to yield it), several times slower than the read.
    if !json {
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(document)
                .map_err(|e| vec![format!("{file}: invalid YAML: {e}")])?;
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    let mut group = None;
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    let mut add =
        |location: String, value: &Value, resources: &mut Vec<SourcedResource>| match parsed
            .get_or_try(value.to_string(), || resource(value))
        {
            Ok(any) => resources.push(SourcedResource {
                file: path.to_path_buf(),
                location,
                any,
            }),
            Err(e) => errors.push(format!("{file}: {location}{}: {e}", describe(value))),
        };
    let many = documents.len() > 1;
    for (d, doc) in documents.iter().enumerate() {
        let Some(map) = doc.as_object() else {
            return Err(vec![format!(
                "{file}: document {d}: expected a mapping with \"resources\" or \"@type\""
            )]);
        };
        if let Some(g) = map.get("node_group") {
            group = Some(node_group(g).map_err(|e| vec![format!("{file}: node_group: {e}")])?);
        }
        if let Some(list) = map.get("resources") {
            let Some(list) = list.as_array() else {
                return Err(vec![format!("{file}: resources: expected a list")]);
            };
            for (i, value) in list.iter().enumerate() {
                add(format!("resources[{i}]"), value, &mut resources);
            }
        } else if map.contains_key("@type") {
            add(
                if many {
                    format!("document {d}")
                } else {
                    "resource".to_string()
                },
                doc,
                &mut resources,
            );
        } else if !map.contains_key("node_group") {
            let keys: Vec<&String> = map.keys().collect();
            return Err(vec![format!(
                "{file}: document {d}: expected \"resources\", \"@type\" or \"node_group\", found {keys:?}"
            )]);
        }
    }
    if errors.is_empty() {
        Ok((group, resources))
    } else {
        Err(errors)
    }
}

/// ` (Cluster "web")` for an error message, when the value says its type and name.
fn describe(value: &Value) -> String {
    let kind = value
        .get("@type")
        .and_then(Value::as_str)
        .map(|t| t.rsplit('.').next().unwrap_or(t));
    let name = value
        .get("name")
        .or_else(|| value.get("cluster_name"))
        .and_then(Value::as_str);
    match (kind, name) {
        (Some(k), Some(n)) => format!(" ({k} \"{n}\")"),
        (Some(k), None) => format!(" ({k})"),
        _ => String::new(),
    }
}

fn resource(value: &Value) -> Result<Any, FormatError> {
    let any = any_from_json_value(value)?;
    if !xds_types::type_url::ALL.contains(&any.type_url.as_str()) {
        return Err(FormatError {
            path: "@type".into(),
            reason: format!("{} is not an xDS resource type", any.type_url),
        });
    }
    Ok(any)
}

fn node_group(value: &Value) -> Result<(String, NodeSelector), String> {
    let map = value.as_object().ok_or("expected a mapping")?;
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match map.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{key}: expected strings"))
                })
                .collect(),
            Some(_) => Err(format!("{key}: expected a list of strings")),
        }
    };
    for key in map.keys() {
        if !matches!(key.as_str(), "name" | "node_ids" | "node_clusters") {
            return Err(format!(
                "unknown field \"{key}\" (expected name, node_ids, node_clusters)"
            ));
        }
    }
    let name = map
        .get("name")
        .and_then(Value::as_str)
        .ok_or("name: required")?
        .to_string();
    let selector = NodeSelector {
        node_ids: strings("node_ids")?,
        node_clusters: strings("node_clusters")?,
    };
    if selector.is_default() && name != DEFAULT_GROUP {
        return Err(format!(
            "group \"{name}\" selects no node: give node_ids or node_clusters"
        ));
    }
    Ok((name, selector))
}

#[cfg(test)]
mod tests;
