//! A snapshot: one consistent, versioned set of resources for a node group.
//!
//! Each resource is encoded once when the snapshot is built and shared (`Arc`) by every stream
//! that sends it, so a push to 10,000 proxies is not 10,000 encodes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use prost::Message;
use xds_types::Any;
use xds_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource,
};
use xds_types::resource::{ResourceError, name_of};
use xds_types::type_url;

/// One resource of a snapshot, encoded once.
#[derive(Debug)]
pub struct EncodedResource {
    pub name: String,
    /// Per-resource version (a hash of its bytes; for an assignment, also of the EDS clusters
    /// using it: see `tie_assignments_to_clusters`): what Delta xDS sends and what
    /// `initial_resource_versions` is compared against.
    pub version: String,
    pub any: Any,
    /// The resource as one `resources` entry of a SotW / Delta response, on the wire (field
    /// key, length, message), made on first use: a response is its head followed by these
    /// bytes, copied straight into the stream's outgoing chunks (see `server::wire`).
    sotw_entry: OnceLock<Box<[u8]>>,
    delta_entry: OnceLock<Box<[u8]>>,
}

impl EncodedResource {
    pub fn new(name: String, version: String, any: Any) -> Self {
        EncodedResource {
            name,
            version,
            any,
            sotw_entry: OnceLock::new(),
            delta_entry: OnceLock::new(),
        }
    }

    /// This resource as an entry of `DiscoveryResponse.resources`: a response with only
    /// this resource encodes to exactly that field, and protobuf concatenation merges
    /// repeated fields, so head + entries is the whole response.
    pub fn sotw_entry(&self) -> &[u8] {
        self.sotw_entry.get_or_init(|| {
            DiscoveryResponse {
                resources: vec![self.any.clone()],
                ..Default::default()
            }
            .encode_to_vec()
            .into_boxed_slice()
        })
    }

    /// This resource as an entry of `DeltaDiscoveryResponse.resources` (see
    /// [`Self::sotw_entry`]).
    pub fn delta_entry(&self) -> &[u8] {
        self.delta_entry.get_or_init(|| {
            DeltaDiscoveryResponse {
                resources: vec![self.delta_resource()],
                ..Default::default()
            }
            .encode_to_vec()
            .into_boxed_slice()
        })
    }

    /// This resource as a Delta `Resource` message.
    pub fn delta_resource(&self) -> Resource {
        Resource {
            name: self.name.clone(),
            version: self.version.clone(),
            resource: Some(self.any.clone()),
            ..Default::default()
        }
    }
}

/// Resources by name, for one type.
pub type ResourceMap = BTreeMap<String, Arc<EncodedResource>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("{type_url} resource {index}: {source}")]
    Undecodable {
        type_url: String,
        index: usize,
        source: ResourceError,
    },
    #[error("duplicate {kind} name \"{name}\"")]
    Duplicate { kind: &'static str, name: String },
}

/// A versioned set of resources, by type URL then name.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub version: String,
    resources: HashMap<String, ResourceMap>,
    /// What changed since the snapshot this one replaced (see [`Snapshot::with_parent`]).
    changes: Option<Changes>,
}

/// The names, per type, that were added, changed or removed since a parent snapshot.
#[derive(Debug, Clone)]
pub struct Changes {
    pub parent_version: String,
    pub names: HashMap<String, Vec<String>>,
}

impl Snapshot {
    /// Builds a snapshot, refusing undecodable resources and duplicate names within a type.
    pub fn new(version: impl Into<String>, resources: Vec<Any>) -> Result<Self, SnapshotError> {
        let mut by_type: HashMap<String, ResourceMap> = HashMap::new();
        for (index, any) in resources.into_iter().enumerate() {
            let name = name_of(&any).map_err(|source| SnapshotError::Undecodable {
                type_url: any.type_url.clone(),
                index,
                source,
            })?;
            let map = by_type.entry(any.type_url.clone()).or_default();
            if map.contains_key(&name) {
                return Err(SnapshotError::Duplicate {
                    kind: xds_types::type_url::short_name(&any.type_url),
                    name,
                });
            }
            let version = content_version(&any.value);
            map.insert(
                name.clone(),
                Arc::new(EncodedResource::new(name, version, any)),
            );
        }
        tie_assignments_to_clusters(&mut by_type);
        Ok(Snapshot {
            version: version.into(),
            resources: by_type,
            changes: None,
        })
    }

    /// Records what changed since `parent`, the snapshot this one replaces for the same nodes.
    /// A stream whose client is known to hold exactly `parent` then only looks at those names,
    /// so a one-endpoint change costs each stream O(1), not O(resources).
    ///
    /// Resources whose version did not change become the parent's own copies (same version,
    /// same bytes): streams that have not caught up yet keep older snapshots alive, and a push
    /// storm then holds a few snapshots that share all but what changed, not a few whole ones.
    pub fn with_parent(mut self, parent: &Snapshot) -> Self {
        let mut names: HashMap<String, Vec<String>> = HashMap::new();
        let urls: std::collections::BTreeSet<String> = self
            .resources
            .keys()
            .chain(parent.resources.keys())
            .cloned()
            .collect();
        for url in urls {
            let old = parent.resources(&url);
            let mut changed = Vec::new();
            if let Some(new) = self.resources.get_mut(&url) {
                for (name, resource) in new.iter_mut() {
                    match old.get(name) {
                        Some(o) if o.version == resource.version => *resource = o.clone(),
                        _ => changed.push(name.clone()),
                    }
                }
            }
            let new = self.resources(&url);
            changed.extend(old.keys().filter(|n| !new.contains_key(*n)).cloned());
            if !changed.is_empty() {
                names.insert(url, changed);
            }
        }
        self.changes = Some(Changes {
            parent_version: parent.version.clone(),
            names,
        });
        self
    }

    /// What changed since the parent snapshot, if it was recorded.
    pub fn changes(&self) -> Option<&Changes> {
        self.changes.as_ref()
    }

    /// The resources of one type (empty when the snapshot has none).
    pub fn resources(&self, type_url: &str) -> &ResourceMap {
        static EMPTY: ResourceMap = BTreeMap::new();
        self.resources.get(type_url).unwrap_or(&EMPTY)
    }

    /// Every resource of every type.
    pub fn all(&self) -> impl Iterator<Item = &Arc<EncodedResource>> {
        self.resources.values().flat_map(|m| m.values())
    }
}

/// Makes the version of each ClusterLoadAssignment depend on the EDS clusters that use it, so
/// that changing a cluster also resends its assignment, right after the cluster (ADS order).
///
/// Why: Envoy warms an updated EDS cluster until an EDS response carrying its assignment
/// arrives, and uses its cached copy only after the EDS config source's
/// `initial_fetch_timeout` (15 s by default; `cds: ... starting warming`, then `Did not
/// receive EDS response on time, using cached ClusterLoadAssignment`). Envoy does not ask
/// again (the EDS names are unchanged), so a server that sends only what changed leaves every
/// cluster update pending for that long, the old version serving meanwhile. Istio pushes EDS
/// with CDS for the same reason (Envoy issue #13009).
fn tie_assignments_to_clusters(by_type: &mut HashMap<String, ResourceMap>) {
    use xds_types::pb::envoy::config::cluster::v3::Cluster;
    // Assignment name -> the versions of the clusters using it (in name order).
    let mut users: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let clusters = by_type.get(type_url::CLUSTER);
    for r in clusters.into_iter().flat_map(|m| m.values()) {
        let Ok(c) = Cluster::decode(r.any.value.as_slice()) else {
            continue;
        };
        if let Some(service) = xds_types::resource::eds_service_name(&c) {
            users
                .entry(service.to_string())
                .or_default()
                .push(&r.version);
        }
    }
    let mut tied: Vec<(String, String)> = Vec::new();
    let assignments = by_type.get(type_url::ENDPOINT);
    for (name, versions) in &users {
        let Some(r) = assignments.and_then(|m| m.get(name)) else {
            continue;
        };
        let mut bytes = r.any.value.clone();
        for v in versions {
            bytes.extend_from_slice(v.as_bytes());
        }
        tied.push((name.clone(), content_version(&bytes)));
    }
    let Some(assignments) = by_type.get_mut(type_url::ENDPOINT) else {
        return;
    };
    for (name, version) in tied {
        if let Some(r) = assignments.get_mut(&name).and_then(Arc::get_mut) {
            r.version = version;
        }
    }
}

/// A short, stable version for a resource's bytes (FNV-1a 64; collisions only cost a missed
/// Delta update, and the bytes are ours, not an attacker's).
pub fn content_version(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
