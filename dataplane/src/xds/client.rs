//! The ADS client: one state machine for SotW and Delta.
//!
//! Connect, send the initial requests (with the versions we hold: SotW `version_info`, Delta
//! `initial_resource_versions`), then select over the server's responses: translate each
//! resource ([`Store::accept`]), ACK or NACK with the errors, publish the new config once,
//! and follow the RDS/EDS names the listeners and clusters now need. On any error, reconnect
//! with jittered exponential backoff while the last config keeps serving.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{info, warn};
use xds_types::pb::envoy::config::core::v3::Node;
use xds_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use xds_types::pb::google::rpc::Status;
use xds_types::type_url;

use super::store::{Store, cluster_sds_names, known};
use crate::bootstrap::Ads;
use crate::runtime::Runtime;

const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The types subscribed by name, following what listeners and clusters reference: EDS from
/// clusters, RDS from connection managers, SDS from TLS contexts (`sds_config: { ads: {} }`).
const DEPENDENT: [&str; 3] = [type_url::ENDPOINT, type_url::ROUTE, type_url::SECRET];

pub struct XdsClient {
    pub node: Node,
    pub ads: Ads,
    pub runtime: Arc<Runtime>,
    pub store: Store,
    /// SotW: per type, the version_info of the last accepted response.
    versions: HashMap<&'static str, String>,
    /// Per type, the nonce of the last response.
    nonces: HashMap<&'static str, String>,
    /// RDS and EDS names we subscribed to.
    subscribed: HashMap<&'static str, BTreeSet<String>>,
}

impl XdsClient {
    pub fn new(node: Node, ads: Ads, runtime: Arc<Runtime>, store: Store) -> Self {
        // Every stream subscribes to CDS: listeners wait for the first answer.
        runtime.expect_clusters();
        XdsClient {
            node,
            ads,
            runtime,
            store,
            versions: HashMap::new(),
            nonces: HashMap::new(),
            subscribed: HashMap::new(),
        }
    }

    /// Runs until the process ends.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let received = match self.session().await {
                Ok(received) => {
                    info!(server = %self.ads.server, "xDS stream closed by the server");
                    received
                }
                Err((e, received)) => {
                    warn!(server = %self.ads.server, error = %e, "xDS stream failed");
                    received
                }
            };
            failures = if received { 0 } else { failures + 1 };
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << failures.min(8))
                .min(BACKOFF_MAX);
            let wait = rand::rng().random_range(ceiling / 2..=ceiling);
            tokio::time::sleep(wait).await;
        }
    }

    /// One stream; `bool`: whether any response arrived (resets the backoff).
    async fn session(&mut self) -> Result<bool, (anyhow::Error, bool)> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.ads.server))
            .map_err(|e| (e.into(), false))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let channel = match &self.ads.tls {
            None => endpoint.connect().await,
            Some(tls) => {
                // Read the certificate files at every connection: a rotated client
                // certificate is used from the next reconnection on.
                let config = super::tls::client_config(tls)
                    .map_err(|e| (anyhow::anyhow!("xDS cluster transport_socket: {e}"), false))?;
                let connector = super::tls::Connector {
                    tls: Arc::new(config),
                    sni: tls.sni.clone(),
                };
                endpoint.connect_with_connector(connector).await
            }
        };
        let channel = channel.map_err(|e| (tls_error(e), false))?;
        let mut client =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
        self.nonces.clear();
        if self.ads.delta {
            self.delta(&mut client).await
        } else {
            self.sotw(&mut client).await
        }
    }

    /// Whether a CDS ACK may go out. Once its clusters are initialized, Envoy pauses CDS while
    /// clusters it brought are warming and sends the ACK when they are warm
    /// (cluster_manager_impl.cc: "Once cluster is warmed up, CDS is resumed, and ACK is sent
    /// to ADS server"), so a management server sees the ACK when the new clusters serve.
    fn cds_resumed(&self) -> bool {
        !self.runtime.clusters_initialized() || self.runtime.load().warming.is_empty()
    }

    /// The next response (`None`: the stream or our side of it ended); while waiting, a held
    /// CDS ACK goes out as soon as the clusters are warm.
    async fn next<M, R>(
        &self,
        stream: &mut tonic::Streaming<M>,
        changes: &mut tokio::sync::watch::Receiver<u64>,
        held: &mut Option<R>,
        tx: &mpsc::Sender<R>,
    ) -> Result<Option<M>, tonic::Status> {
        loop {
            // tonic's `message` is cancel safe.
            tokio::select! {
                m = stream.message() => return m,
                _ = changes.changed(), if held.is_some() => {
                    if self.cds_resumed()
                        && let Some(ack) = held.take()
                        && tx.send(ack).await.is_err()
                    {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn wanted(&self, url: &'static str) -> BTreeSet<String> {
        match url {
            type_url::ENDPOINT => self.store.eds_names(),
            type_url::ROUTE => self.store.rds_names(),
            type_url::SECRET => {
                // A replaced cluster serves its previous version while the new one warms
                // (upstream/warming.rs): that version's secrets stay subscribed, as Envoy's
                // old cluster keeps its secret providers until it is gone.
                let mut names = self.store.sds_names();
                let serving = self.runtime.load();
                names.extend(cluster_sds_names(
                    serving.clusters.values().map(|c| &c.config),
                ));
                names
            }
            _ => BTreeSet::new(),
        }
    }

    /// Publishes the store's config and drops RDS/EDS resources no longer wanted.
    fn publish(&mut self) {
        for url in DEPENDENT {
            let wanted = self.wanted(url);
            self.store.retain(url, &wanted);
        }
        let config = self.store.config();
        self.runtime.publish(config);
        if self.store.seen.contains(type_url::CLUSTER) {
            self.runtime.clusters_arrived();
        }
        if let Ok(mut dump) = self.runtime.dump.lock() {
            *dump = self.store.dump();
        }
        let seen = |u| self.store.seen.contains(u);
        if seen(type_url::CLUSTER)
            && seen(type_url::LISTENER)
            && self
                .store
                .rds_names()
                .is_subset(&self.store.names(type_url::ROUTE))
            && self
                .store
                .sds_names()
                .is_subset(&self.store.names(type_url::SECRET))
        {
            self.runtime.set_ready();
        }
    }

    async fn sotw(
        &mut self,
        client: &mut AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    ) -> Result<bool, (anyhow::Error, bool)> {
        let (tx, rx) = mpsc::channel(64);
        let mut first = true;
        for url in [
            type_url::CLUSTER,
            type_url::LISTENER,
            type_url::ENDPOINT,
            type_url::ROUTE,
            type_url::SECRET,
        ] {
            let names = self.wanted(url);
            if DEPENDENT.contains(&url) && names.is_empty() {
                continue;
            }
            self.subscribed.insert(url, names.clone());
            let req = DiscoveryRequest {
                node: first.then(|| self.node.clone()),
                type_url: url.to_string(),
                version_info: self.versions.get(url).cloned().unwrap_or_default(),
                resource_names: names.into_iter().collect(),
                ..Default::default()
            };
            first = false;
            let _ = tx.send(req).await;
        }
        let mut stream = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|e| (e.into(), false))?
            .into_inner();
        let mut received = false;
        let mut changes = self.runtime.subscribe();
        let mut held: Option<DiscoveryRequest> = None;
        loop {
            let response = match self.next(&mut stream, &mut changes, &mut held, &tx).await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(received),
                Err(e) => return Err((e.into(), received)),
            };
            received = true;
            let Some(url) = known(&response.type_url) else {
                continue;
            };
            let errors = self.apply_sotw(url, &response);
            self.nonces.insert(url, response.nonce.clone());
            let error_detail = if errors.is_empty() {
                self.versions.insert(url, response.version_info.clone());
                None
            } else {
                let message = errors.join("; ");
                warn!(r#type = type_url::short_name(url), version = %response.version_info, %message, "NACK");
                Some(Status {
                    code: 3,
                    message,
                    details: vec![],
                })
            };
            self.publish();
            let ack = DiscoveryRequest {
                type_url: url.to_string(),
                version_info: self.versions.get(url).cloned().unwrap_or_default(),
                response_nonce: response.nonce.clone(),
                resource_names: self
                    .subscribed
                    .get(url)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
                error_detail,
                ..Default::default()
            };
            if url == type_url::CLUSTER && !self.cds_resumed() {
                held = Some(ack);
            } else if tx.send(ack).await.is_err() {
                return Ok(received);
            }
            // Follow the names the listeners and clusters need now.
            for dep in DEPENDENT {
                let wanted = self.wanted(dep);
                if self.subscribed.get(dep) != Some(&wanted) {
                    self.subscribed.insert(dep, wanted.clone());
                    let req = DiscoveryRequest {
                        type_url: dep.to_string(),
                        version_info: self.versions.get(dep).cloned().unwrap_or_default(),
                        response_nonce: self.nonces.get(dep).cloned().unwrap_or_default(),
                        resource_names: wanted.into_iter().collect(),
                        ..Default::default()
                    };
                    let _ = tx.send(req).await;
                }
            }
        }
    }

    /// Applies a SotW response; returns the errors (one per rejected resource).
    fn apply_sotw(&mut self, url: &'static str, response: &DiscoveryResponse) -> Vec<String> {
        self.store.seen.insert(url);
        let mut errors = Vec::new();
        let mut present = BTreeSet::new();
        for any in &response.resources {
            match self.store.accept(url, any, &response.version_info) {
                Ok(name) => {
                    present.insert(name);
                }
                Err(e) => {
                    if let Ok(name) = xds_types::resource::name_of(any) {
                        present.insert(name);
                    }
                    errors.push(e);
                }
            }
        }
        // LDS and CDS carry the full set: what is not there is removed.
        if type_url::is_full_state(url) {
            self.store.retain(url, &present);
        }
        if url == type_url::ENDPOINT {
            self.runtime
                .endpoints_arrived(present.iter().map(String::as_str));
        }
        errors
    }

    async fn delta(
        &mut self,
        client: &mut AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    ) -> Result<bool, (anyhow::Error, bool)> {
        let (tx, rx) = mpsc::channel(64);
        let mut first = true;
        for url in [
            type_url::CLUSTER,
            type_url::LISTENER,
            type_url::ENDPOINT,
            type_url::ROUTE,
            type_url::SECRET,
        ] {
            let names = self.wanted(url);
            if DEPENDENT.contains(&url) && names.is_empty() {
                continue;
            }
            self.subscribed.insert(url, names.clone());
            let initial = self
                .store
                .types
                .get(url)
                .map(|m| {
                    m.iter()
                        .map(|(n, a)| (n.clone(), a.version.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let req = DeltaDiscoveryRequest {
                node: first.then(|| self.node.clone()),
                type_url: url.to_string(),
                resource_names_subscribe: names.into_iter().collect(),
                initial_resource_versions: initial,
                ..Default::default()
            };
            first = false;
            let _ = tx.send(req).await;
        }
        let mut stream = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|e| (e.into(), false))?
            .into_inner();
        let mut received = false;
        let mut changes = self.runtime.subscribe();
        let mut held: Option<DeltaDiscoveryRequest> = None;
        loop {
            let response = match self.next(&mut stream, &mut changes, &mut held, &tx).await {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(received),
                Err(e) => return Err((e.into(), received)),
            };
            received = true;
            let Some(url) = known(&response.type_url) else {
                continue;
            };
            let errors = self.apply_delta(url, &response);
            let error_detail = (!errors.is_empty()).then(|| {
                let message = errors.join("; ");
                warn!(r#type = type_url::short_name(url), version = %response.system_version_info, %message, "NACK");
                Status { code: 3, message, details: vec![] }
            });
            self.publish();
            let ack = DeltaDiscoveryRequest {
                type_url: url.to_string(),
                response_nonce: response.nonce.clone(),
                error_detail,
                ..Default::default()
            };
            if url == type_url::CLUSTER && !self.cds_resumed() {
                held = Some(ack);
            } else if tx.send(ack).await.is_err() {
                return Ok(received);
            }
            for dep in DEPENDENT {
                let wanted = self.wanted(dep);
                let had = self.subscribed.get(dep).cloned().unwrap_or_default();
                if had != wanted {
                    let req = DeltaDiscoveryRequest {
                        type_url: dep.to_string(),
                        resource_names_subscribe: wanted.difference(&had).cloned().collect(),
                        resource_names_unsubscribe: had.difference(&wanted).cloned().collect(),
                        ..Default::default()
                    };
                    self.subscribed.insert(dep, wanted);
                    let _ = tx.send(req).await;
                }
            }
        }
    }

    fn apply_delta(&mut self, url: &'static str, response: &DeltaDiscoveryResponse) -> Vec<String> {
        self.store.seen.insert(url);
        let mut errors = Vec::new();
        for r in &response.resources {
            let Some(any) = &r.resource else { continue };
            if let Err(e) = self.store.accept(url, any, &r.version) {
                errors.push(e);
            }
        }
        if url == type_url::ENDPOINT {
            self.runtime.endpoints_arrived(
                response
                    .resources
                    .iter()
                    .filter(|r| r.resource.is_some())
                    .map(|r| r.name.as_str()),
            );
        }
        for name in &response.removed_resources {
            self.store.remove(url, name);
        }
        errors
    }
}

/// tonic's connect error says only "transport error"; the TLS reason (unknown CA, certificate
/// required...) is in its sources, and is what the operator needs in the log.
fn tls_error(e: tonic::transport::Error) -> anyhow::Error {
    anyhow::anyhow!(crate::causes::with_causes(&e))
}
