//! The management API (`xds_mesh.management.v1.Management`): set, get and watch a node group's
//! resources over gRPC, so a deploy pipeline can push without writing files.
//!
//! A group set here is an [`Origin::Api`] group: it takes precedence over a file group of the
//! same name and survives directory reloads. `SetGroup` runs the same checks as the file source
//! ([`super::check`]); `skip_checks` turns them off so a test can push a resource a proxy will
//! NACK, but an undecodable resource, an unknown type or a duplicate name is still refused
//! (the snapshot could not be built at all).

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;
use xds_mesh::management::v1::management_server::{Management, ManagementServer};
use xds_mesh::management::v1::{
    DeleteGroupResponse, GetGroupRequest, Group, Selector, SetGroupRequest, SetGroupResponse,
};

use super::check;
use super::files::SourcedResource;
use crate::cache::snapshot::content_version;
use crate::cache::{NodeGroup, NodeSelector, Origin, Snapshot, SnapshotCache};

/// The management service over a cache.
#[derive(Debug, Clone)]
pub struct ManagementApi {
    cache: SnapshotCache,
    strict: bool,
    versions: Arc<Mutex<ApiVersions>>,
    /// WatchGroup streams end when this becomes true (server shutdown).
    shutdown: Option<watch::Receiver<bool>>,
    /// With mutual TLS: the client certificate names (CN, DNS or URI SAN) allowed to call.
    /// `None`: anyone who reached the service.
    allowed_clients: Option<Arc<Vec<String>>>,
}

/// Version bookkeeping: a monotonic sequence, and each group's content hash so that setting
/// the same content again keeps the version (and pushes nothing).
#[derive(Debug, Default)]
struct ApiVersions {
    sequence: u64,
    hashes: HashMap<String, String>,
}

impl ManagementApi {
    /// `strict`: warnings refuse a `SetGroup` as they refuse a directory load.
    pub fn new(cache: SnapshotCache, strict: bool) -> Self {
        ManagementApi {
            cache,
            strict,
            versions: Arc::default(),
            shutdown: None,
            allowed_clients: None,
        }
    }

    /// Only clients whose certificate's CN, DNS SAN or URI SAN is one of `names` may call.
    /// The xDS port is shared with the proxies, whose certificates come from the same CA: a
    /// proxy must not be able to set (or read, Secrets included) every group.
    pub fn with_allowed_clients(mut self, names: Vec<String>) -> Self {
        self.allowed_clients = Some(Arc::new(names));
        self
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(allowed) = &self.allowed_clients else {
            return Ok(());
        };
        let identity = request
            .peer_certs()
            .and_then(|c| c.first().map(crate::tls::PeerIdentity::from_der))
            .and_then(Result::ok);
        let Some(id) = identity else {
            return Err(Status::permission_denied(
                "the management API needs a client certificate (--management-client)",
            ));
        };
        let names = id.subject_cn.iter().chain(&id.dns_sans).chain(&id.uri_sans);
        if names.into_iter().any(|n| allowed.contains(n)) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "the client certificate {id} is not allowed to use the management API \
             (--management-client {})",
            allowed.join(", ")
        )))
    }

    /// Ends every WatchGroup stream when `shutdown` becomes true, so a server shutting down
    /// does not wait for watchers that never hang up.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    pub fn into_service(self) -> ManagementServer<Self> {
        ManagementServer::new(self).max_decoding_message_size(64 << 20)
    }

    /// Checks and applies a `SetGroup`; the error says every reason it was refused.
    pub fn set(&self, req: SetGroupRequest) -> Result<SetGroupResponse, Status> {
        if req.group.is_empty() {
            return Err(Status::invalid_argument("group: a name is required"));
        }
        let origin = PathBuf::from(format!("SetGroup(\"{}\")", req.group));
        let resources: Vec<SourcedResource> = req
            .resources
            .into_iter()
            .enumerate()
            .map(|(i, any)| SourcedResource {
                file: origin.clone(),
                location: format!("resources[{i}]"),
                any,
            })
            .collect();
        let mut errors: Vec<String> = resources
            .iter()
            .filter(|r| !xds_types::type_url::ALL.contains(&r.any.type_url.as_str()))
            .map(|r| {
                format!(
                    "{}: {}: {} is not an xDS resource type",
                    r.file.display(),
                    r.location,
                    r.any.type_url
                )
            })
            .collect();
        let mut warnings = Vec::new();
        if errors.is_empty() && !req.skip_checks {
            let findings = check::check(&req.group, &resources);
            errors = findings.errors;
            if self.strict {
                errors.extend(
                    findings
                        .warnings
                        .into_iter()
                        .map(|w| format!("{w} [--strict]")),
                );
            } else {
                warnings = findings.warnings;
            }
        }
        if !errors.is_empty() {
            return Err(Status::invalid_argument(errors.join("\n")));
        }
        let selector = req
            .selector
            .map(|s| NodeSelector {
                node_ids: s.node_ids,
                node_clusters: s.node_clusters,
            })
            .unwrap_or_default();
        let anys: Vec<_> = resources.into_iter().map(|r| r.any).collect();
        let mut bytes = Vec::new();
        for a in &anys {
            bytes.extend_from_slice(a.type_url.as_bytes());
            bytes.extend_from_slice(&a.value);
        }
        let hash = content_version(&bytes);
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        let current = self
            .cache
            .groups()
            .into_iter()
            .find(|(o, g)| *o == Origin::Api && g.name == req.group);
        if let Some((_, group)) = current.as_ref().filter(|(_, g)| g.selector == selector)
            && versions.hashes.get(&req.group) == Some(&hash)
        {
            return Ok(SetGroupResponse {
                version: group.snapshot.version.clone(),
                warnings,
            });
        }
        versions.sequence += 1;
        let version = format!("api-{}-{}", versions.sequence, &hash[..8]);
        let mut snapshot = Snapshot::new(version.clone(), anys)
            .map_err(|e| Status::invalid_argument(format!("{}: {e}", origin.display())))?;
        if let Some((_, previous)) = &current {
            snapshot = snapshot.with_parent(&previous.snapshot);
        }
        versions.hashes.insert(req.group.clone(), hash);
        info!(group = %req.group, %version, skip_checks = req.skip_checks, "group set through the management API");
        self.cache.set_group(
            Origin::Api,
            NodeGroup {
                name: req.group,
                selector,
                snapshot: Arc::new(snapshot),
            },
        );
        Ok(SetGroupResponse { version, warnings })
    }

    /// Removes an API group; `None` when there is none of that name.
    pub fn delete(&self, name: &str) -> Option<String> {
        // Under the versions lock, like `set`, so a concurrent set is not lost.
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        let (api, _files): (Vec<_>, Vec<_>) = self
            .cache
            .groups()
            .into_iter()
            .partition(|(o, _)| *o == Origin::Api);
        let (gone, kept): (Vec<_>, Vec<_>) = api
            .into_iter()
            .map(|(_, g)| g)
            .partition(|g| g.name == name);
        let version = gone.first()?.snapshot.version.clone();
        versions.hashes.remove(name);
        self.cache.set_groups(Origin::Api, kept);
        info!(group = %name, %version, "group deleted through the management API");
        Some(version)
    }

    /// The group as served now.
    pub fn get(&self, name: &str) -> Option<Group> {
        let (origin, group) = self
            .cache
            .groups()
            .into_iter()
            .find(|(_, g)| g.name == name)?;
        Some(Group {
            name: group.name.clone(),
            selector: Some(Selector {
                node_ids: group.selector.node_ids.clone(),
                node_clusters: group.selector.node_clusters.clone(),
            }),
            version: group.snapshot.version.clone(),
            origin: match origin {
                Origin::Api => "api",
                Origin::Files => "files",
            }
            .to_string(),
            resources: xds_types::type_url::ALL
                .iter()
                .flat_map(|url| group.snapshot.resources(url).values())
                .map(|r| r.any.clone())
                .collect(),
        })
    }
}

/// Resolves once `shutdown` says stop (never without a receiver).
async fn stopped(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => {
            let _ = rx.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

type GroupStream = Pin<Box<dyn Stream<Item = Result<Group, Status>> + Send>>;

#[tonic::async_trait]
impl Management for ManagementApi {
    async fn set_group(
        &self,
        request: Request<SetGroupRequest>,
    ) -> Result<Response<SetGroupResponse>, Status> {
        self.authorize(&request)?;
        self.set(request.into_inner()).map(Response::new)
    }

    async fn get_group(
        &self,
        request: Request<GetGroupRequest>,
    ) -> Result<Response<Group>, Status> {
        self.authorize(&request)?;
        let name = request.into_inner().group;
        self.get(&name)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no group \"{name}\"")))
    }

    async fn delete_group(
        &self,
        request: Request<GetGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        self.authorize(&request)?;
        let name = request.into_inner().group;
        self.delete(&name)
            .map(|version| Response::new(DeleteGroupResponse { version }))
            .ok_or_else(|| Status::not_found(format!("no group \"{name}\" set through this API")))
    }

    type WatchGroupStream = GroupStream;

    /// Sends the group now (if it exists), then each time its version (or origin) changes.
    /// A group that is removed sends nothing until it comes back.
    async fn watch_group(
        &self,
        request: Request<GetGroupRequest>,
    ) -> Result<Response<GroupStream>, Status> {
        self.authorize(&request)?;
        let name = request.into_inner().group;
        let (tx, rx) = mpsc::channel(4);
        let api = self.clone();
        let mut generation = self.cache.subscribe();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut last: Option<(String, String)> = None;
            loop {
                generation.mark_unchanged();
                if let Some(group) = api.get(&name) {
                    let key = (group.origin.clone(), group.version.clone());
                    if last.as_ref() != Some(&key) {
                        last = Some(key);
                        if tx.send(Ok(group)).await.is_err() {
                            return;
                        }
                    }
                }
                tokio::select! {
                    changed = generation.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = stopped(&mut shutdown) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests;
