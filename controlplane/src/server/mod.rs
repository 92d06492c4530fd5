//! The ADS server: `StreamAggregatedResources` (SotW) and `DeltaAggregatedResources` (Delta).
//!
//! One task per stream. It selects over the client's requests, the cache's generation (a
//! snapshot changed somewhere) and shutdown, and feeds both to the stream's state machine
//! ([`sotw::SotwState`] or [`delta::DeltaState`]), which says what to send. The state machines
//! share their subscription bookkeeping ([`stream::TypeSubscription`]).
//!
//! Encoding: every resource was encoded once when its snapshot was built; a response holds the
//! snapshot's resources and copies their bytes into the stream's outgoing chunks as the client
//! reads them ([`wire`], [`grpc`]), never a protobuf encode of the resource again.

pub mod by_type;
pub mod delta;
pub mod fanout;
pub mod grpc;
pub mod names;
pub mod request;
pub mod sotw;
pub mod stream;
pub mod wire;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tonic::{Request, Status};
use tracing::{debug, info, warn};
use xds_types::pb::envoy::config::core::v3::Node;
use xds_types::type_url::short_name;

use request::{DeltaRequest, ReadRequest, SotwRequest};
use wire::{DeltaResponse, SotwResponse, WireMessage};

use crate::cache::{Snapshot, SnapshotCache};
use crate::status::{Nack, ProxyRegistry, StreamHandle, now};
use crate::tls::{NodeIdMatch, PeerIdentity};

/// How a request relates to what the stream sent before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The first request of a type (no nonce).
    Initial,
    /// The client applied the response with this version.
    Ack { version: String },
    /// The client refused the response with this version and nonce, and says why.
    Nack {
        version: String,
        nonce: String,
        detail: String,
    },
    /// It answers a response older than the latest sent: ignored.
    Stale,
}

/// The ADS service, shared by every stream.
#[derive(Debug, Clone)]
pub struct AdsServer {
    cache: SnapshotCache,
    proxies: ProxyRegistry,
    shutdown: watch::Receiver<bool>,
    node_id_match: NodeIdMatch,
}

impl AdsServer {
    /// A server over `cache`, recording each stream in `proxies`; every stream ends cleanly
    /// when `shutdown` becomes true.
    pub fn new(
        cache: SnapshotCache,
        proxies: ProxyRegistry,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        AdsServer {
            cache,
            proxies,
            shutdown,
            node_id_match: NodeIdMatch::Any,
        }
    }

    /// Restricts the node ids a stream may claim to those its client certificate allows
    /// (see [`crate::tls::identity`]). A stream without a client certificate may then claim
    /// none, unless the rule is [`NodeIdMatch::Any`] (the default).
    pub fn with_node_id_match(mut self, rule: NodeIdMatch) -> Self {
        self.node_id_match = rule;
        self
    }

    pub fn into_service(self) -> grpc::AdsService {
        grpc::AdsService::new(self)
    }

    /// Starts driving one stream; returns what it will send.
    fn start<P: Protocol>(
        &self,
        request: Request<grpc::Requests<P::Req>>,
    ) -> mpsc::Receiver<grpc::Queued<P::Resp>> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        // The leaf certificate the client presented (only with --client-ca); rustls verified
        // its chain during the handshake.
        let identity = request
            .peer_certs()
            .and_then(|certs| certs.first().map(PeerIdentity::from_der));
        let identity = match identity {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => {
                warn!(%peer, error = %e, "client certificate without readable names");
                Some(PeerIdentity::default())
            }
            None => None,
        };
        // One response queued per stream: a slow client holds back its own stream, not memory.
        // (The channel allocates a block of 32 slots whatever its bound: boxed, a slot is 16
        // bytes, not the response's 120, so each stream's channel holds 0.5 KB, not 4 KB.)
        let (tx, rx) = mpsc::channel(1);
        let handle = self.proxies.connect(P::KIND, peer);
        handle.update(|s| s.peer_identity = identity.clone());
        let run = drive::<P>(
            request.into_inner(),
            tx,
            self.cache.clone(),
            handle,
            self.shutdown.clone(),
            Authorizer {
                rule: self.node_id_match,
                identity,
            },
        );
        tokio::spawn(run);
        rx
    }
}

/// What the stream driver needs of a protocol's state machine.
trait Protocol: Default + Send + 'static {
    type Req: ReadRequest + Send + 'static;
    type Resp: WireMessage + Unpin;
    const KIND: &'static str;
    fn type_url(req: &Self::Req) -> &str;
    /// Whether the request may change the subscription (else the status keeps the last one).
    fn may_resubscribe(_req: &Self::Req) -> bool {
        true
    }
    fn on_request(
        &mut self,
        req: &Self::Req,
        snapshot: Option<&Arc<Snapshot>>,
    ) -> (Outcome, Option<Self::Resp>);
    fn on_snapshot(&mut self, snapshot: &Arc<Snapshot>) -> Vec<Self::Resp>;
    /// Type URL, version and nonce of a response.
    fn sent(resp: &Self::Resp) -> (&str, &str, &str);
    fn subscription(&self, url: &str) -> Option<(bool, names::Names)>;
}

impl Protocol for sotw::SotwState {
    type Req = SotwRequest;
    type Resp = SotwResponse;
    const KIND: &'static str = "sotw";
    fn type_url(req: &Self::Req) -> &str {
        &req.type_url
    }
    fn on_request(
        &mut self,
        req: &Self::Req,
        snapshot: Option<&Arc<Snapshot>>,
    ) -> (Outcome, Option<Self::Resp>) {
        sotw::SotwState::on_request(self, req, snapshot)
    }
    fn on_snapshot(&mut self, snapshot: &Arc<Snapshot>) -> Vec<Self::Resp> {
        sotw::SotwState::on_snapshot(self, snapshot)
    }
    fn sent(resp: &Self::Resp) -> (&str, &str, &str) {
        (&resp.type_url, &resp.version_info, &resp.nonce)
    }
    fn subscription(&self, url: &str) -> Option<(bool, names::Names)> {
        sotw::SotwState::subscription(self, url)
    }
}

impl Protocol for delta::DeltaState {
    type Req = DeltaRequest;
    type Resp = DeltaResponse;
    const KIND: &'static str = "delta";
    fn may_resubscribe(req: &Self::Req) -> bool {
        req.response_nonce.is_empty()
            || !req.resource_names_subscribe.is_empty()
            || !req.resource_names_unsubscribe.is_empty()
    }
    fn type_url(req: &Self::Req) -> &str {
        &req.type_url
    }
    fn on_request(
        &mut self,
        req: &Self::Req,
        snapshot: Option<&Arc<Snapshot>>,
    ) -> (Outcome, Option<Self::Resp>) {
        delta::DeltaState::on_request(self, req, snapshot)
    }
    fn on_snapshot(&mut self, snapshot: &Arc<Snapshot>) -> Vec<Self::Resp> {
        delta::DeltaState::on_snapshot(self, snapshot)
    }
    fn sent(resp: &Self::Resp) -> (&str, &str, &str) {
        (&resp.type_url, &resp.system_version_info, &resp.nonce)
    }
    fn subscription(&self, url: &str) -> Option<(bool, names::Names)> {
        delta::DeltaState::subscription(self, url)
    }
}

/// Which node ids a stream may claim: the rule and the stream's client certificate.
struct Authorizer {
    rule: NodeIdMatch,
    identity: Option<PeerIdentity>,
}

impl Authorizer {
    /// `Err` is the PERMISSION_DENIED the stream ends with: it names the node id claimed and
    /// the certificate's identity, so the operator sees at once which side is wrong.
    fn check(&self, node_id: &str) -> Result<(), Status> {
        if self.rule.allows(self.identity.as_ref(), node_id) {
            return Ok(());
        }
        let rule = match self.rule {
            NodeIdMatch::Any => "any",
            NodeIdMatch::San => "one of its DNS or URI SANs",
            NodeIdMatch::DnsSan => "one of its DNS SANs",
            NodeIdMatch::UriSan => "one of its URI SANs",
            NodeIdMatch::Cn => "its subject CN",
        };
        let message = match &self.identity {
            Some(id) => format!(
                "node id \"{node_id}\" is not allowed for the client certificate {id}: \
                 the node id must equal {rule} (--node-id-match {})",
                self.rule.as_str()
            ),
            None => format!(
                "node id \"{node_id}\" is not allowed without a client certificate \
                 (--node-id-match {})",
                self.rule.as_str()
            ),
        };
        Err(Status::permission_denied(message))
    }
}

/// One stream, from its first request to its end.
///
/// What a request does is worked out by [`Driver::on_request`], a plain function: only its
/// answer waits on the channel. The request and its outcome are not kept across that wait:
/// each stream's task (10,000 of them for as many proxies) is ~2 KB, not ~3.7 KB.
async fn drive<P: Protocol>(
    mut requests: grpc::Requests<P::Req>,
    tx: mpsc::Sender<grpc::Queued<P::Resp>>,
    cache: SnapshotCache,
    handle: StreamHandle,
    mut shutdown: watch::Receiver<bool>,
    authorizer: Authorizer,
) {
    let mut generation = cache.subscribe();
    let mut driver = Driver::<P> {
        state: P::default(),
        node: None,
        snapshot: None,
        cache,
        handle,
        authorizer,
    };
    loop {
        let step = tokio::select! {
            message = requests.message() => match message {
                Ok(Some(req)) => driver.on_request(&req, &mut generation),
                Ok(None) => break,
                Err(e) => { debug!(error = %e, "xDS stream ended"); break }
            },
            changed = generation.changed() => {
                if changed.is_err() { break }
                let responses = driver.on_snapshot_change();
                let any = !responses.is_empty();
                for r in responses {
                    if !send::<P>(&tx, &driver.handle, r).await { return }
                }
                if any {
                    fanout::queued();
                }
                Step::Nothing
            }
            _ = shutdown.changed() => break,
        };
        match step {
            Step::Nothing => {}
            Step::Send(r) => {
                if !send::<P>(&tx, &driver.handle, r).await {
                    break;
                }
            }
            Step::Refuse(status) => {
                let _ = tx.send(Err(status)).await;
                break;
            }
        }
    }
    if let Some(n) = driver.node {
        info!(node = %n.id, stream = P::KIND, "proxy disconnected");
    }
}

/// What a request asks of the stream.
enum Step<R> {
    Nothing,
    Send(R),
    /// End the stream with this status.
    Refuse(Status),
}

/// A stream's state between its awaits.
struct Driver<P: Protocol> {
    state: P,
    /// Its id and cluster (all node groups select on). Boxed: a `Node` is 376 bytes inline,
    /// most of them empty fields.
    node: Option<Box<Node>>,
    snapshot: Option<Arc<Snapshot>>,
    cache: SnapshotCache,
    handle: StreamHandle,
    authorizer: Authorizer,
}

impl<P: Protocol> Driver<P> {
    fn on_request(&mut self, req: &P::Req, generation: &mut watch::Receiver<u64>) -> Step<P::Resp> {
        if self.node.is_none() {
            // Only the first request's node is read; later ones are not even decoded.
            let n = match request::node(req) {
                Some(Ok(n)) => selectable(n),
                Some(Err(status)) => return Step::Refuse(status),
                None => {
                    return Step::Refuse(Status::invalid_argument(
                        "the first request must carry the node",
                    ));
                }
            };
            if let Err(status) = self.authorizer.check(&n.id) {
                warn!(node = %n.id, error = %status.message(), "xDS stream refused");
                return Step::Refuse(status);
            }
            info!(node = %n.id, cluster = %n.cluster, stream = P::KIND, "proxy connected");
            self.handle.update(|s| {
                s.node_id = n.id.clone();
                s.node_cluster = n.cluster.clone();
            });
            generation.mark_unchanged();
            self.snapshot = self.resolve(&n);
            if self.snapshot.is_none() {
                warn!(node = %n.id, "no node group matches this node: it is served nothing");
            }
            self.node = Some(Box::new(n));
        }
        let url = P::type_url(req).to_string();
        let (outcome, response) = self.state.on_request(req, self.snapshot.as_ref());
        let sub = P::may_resubscribe(req)
            .then(|| self.state.subscription(&url))
            .flatten();
        record(&self.handle, self.node.as_deref(), &url, &outcome, sub);
        response.map_or(Step::Nothing, Step::Send)
    }

    /// The responses a new snapshot generation calls for.
    fn on_snapshot_change(&mut self) -> Vec<P::Resp> {
        let Some(n) = &self.node else {
            return Vec::new();
        };
        self.snapshot = self.resolve(n);
        match &self.snapshot {
            Some(s) => self.state.on_snapshot(s),
            None => Vec::new(),
        }
    }

    /// The node's snapshot, recording its group in the status when it changed (every stream
    /// resolves on every push; the group seldom changes).
    fn resolve(&self, node: &Node) -> Option<Arc<Snapshot>> {
        let found = self.cache.snapshot_for(node);
        let group = found.as_ref().map(|(g, _)| g.as_str());
        self.handle.update(|s| {
            if s.group.as_deref() != group {
                s.group = group.map(str::to_string);
            }
        });
        found.map(|(_, s)| s)
    }
}

/// What a stream keeps of its node: what node groups select on (id and cluster). Envoy's node
/// also lists its extensions and client features, ~16 KB on the wire and ~80 KB decoded,
/// which every stream held for its life: 800 MB at 10,000 proxies, measured with the fleet's
/// Envoy-sized node.
fn selectable(node: Node) -> Node {
    Node {
        id: node.id,
        cluster: node.cluster,
        ..Default::default()
    }
}

async fn send<P: Protocol>(
    tx: &mpsc::Sender<grpc::Queued<P::Resp>>,
    handle: &StreamHandle,
    resp: P::Resp,
) -> bool {
    let (url, version, nonce) = P::sent(&resp);
    let (url, version, nonce) = (url.to_string(), version.to_string(), nonce.to_string());
    handle.update_type(&url, |t| {
        t.version_sent = Some(version);
        t.nonce_sent = Some(nonce);
    });
    crate::memory::note_activity();
    tx.send(Ok(Box::new(resp))).await.is_ok()
}

fn record(
    handle: &StreamHandle,
    node: Option<&Node>,
    url: &str,
    outcome: &Outcome,
    sub: Option<(bool, names::Names)>,
) {
    let id = node.map(|n| n.id.as_str()).unwrap_or_default();
    handle.update_type(url, |t| {
        if let Some((wildcard, names)) = sub {
            t.wildcard = wildcard;
            t.subscribed = names;
        }
        match outcome {
            Outcome::Ack { version } => t.version_acked = Some(version.clone()),
            Outcome::Nack { version, nonce, detail } => {
                warn!(node = %id, r#type = short_name(url), %version, error_detail = %detail, "proxy NACKed");
                t.last_nack = Some(Box::new(Nack { version: version.clone(), nonce: nonce.clone(), error_detail: detail.clone(), at: now() }));
            }
            Outcome::Initial | Outcome::Stale => {}
        }
    });
    if let Outcome::Ack { version } = outcome {
        debug!(node = %id, r#type = short_name(url), %version, "proxy ACKed");
    }
}

#[cfg(test)]
mod authorizer_tests {
    use super::*;

    #[test]
    fn a_stream_keeps_only_the_node_fields_groups_select_on() {
        let node = Node {
            id: "edge-1".into(),
            cluster: "edge".into(),
            user_agent_name: "envoy".into(),
            client_features: vec!["envoy.lb.does_not_support_overprovisioning".into()],
            extensions: vec![Default::default(); 100],
            ..Default::default()
        };
        let kept = selectable(node);
        assert_eq!(
            (kept.id.as_str(), kept.cluster.as_str()),
            ("edge-1", "edge")
        );
        assert_eq!(
            kept,
            Node {
                id: "edge-1".into(),
                cluster: "edge".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn refusals_name_the_node_id_the_certificate_and_the_rule() {
        let identity = PeerIdentity {
            subject_cn: Some("edge-1".into()),
            dns_sans: vec!["edge-1".into()],
            uri_sans: vec![],
        };
        let auth = |rule, identity| Authorizer { rule, identity };
        let a = auth(NodeIdMatch::San, Some(identity.clone()));
        assert!(a.check("edge-1").is_ok());
        let e = a
            .check("edge-2")
            .err()
            .map(|s| (s.code(), s.message().to_string()));
        assert_eq!(
            e,
            Some((
                tonic::Code::PermissionDenied,
                "node id \"edge-2\" is not allowed for the client certificate [CN=edge-1, \
                 DNS:edge-1]: the node id must equal one of its DNS or URI SANs \
                 (--node-id-match san)"
                    .to_string()
            ))
        );
        let e = auth(NodeIdMatch::Cn, None).check("edge-1").err();
        assert_eq!(
            e.map(|s| s.message().to_string()).as_deref(),
            Some(
                "node id \"edge-1\" is not allowed without a client certificate (--node-id-match cn)"
            )
        );
        assert!(auth(NodeIdMatch::Any, None).check("anything").is_ok());
    }
}
