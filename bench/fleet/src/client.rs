//! One simulated proxy: an ADS stream (SotW or Delta) that subscribes like Envoy (LDS and CDS
//! wildcard, then RDS and EDS by the names they need), ACKs every response and records what
//! it received and when.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost::encoding::{
    DecodeContext, WireType, encode_key, encode_varint, encoded_len_varint, key_len,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use xds_types::pb::envoy::config::core::v3::Node;
use xds_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use xds_types::{Any, type_url};

use crate::config::{ROUTE_CONFIG, cluster_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sotw,
    Delta,
}

/// Something a client received.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub at: Instant,
    pub kind: Kind,
    pub bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Lds,
    Cds,
    Rds,
    /// An EDS response; the port of service 0's first endpoint when it carried service 0.
    Eds(Option<u32>),
    Other,
}

pub type Events = Arc<Mutex<Vec<Event>>>;

fn record(events: &Events, kind: Kind, bytes: usize) {
    if let Ok(mut e) = events.lock() {
        e.push(Event {
            at: Instant::now(),
            kind,
            bytes,
        });
    }
}

/// Service 0's first endpoint port, read only from the resource that is service 0's: prost
/// encodes `cluster_name` (field 1) first, so its bytes start with that tag and the name.
fn svc0_port(resources: &[Any]) -> Option<u32> {
    let name = cluster_name(0);
    let mut prefix = vec![0x0a, name.len() as u8];
    prefix.extend_from_slice(name.as_bytes());
    let any = resources.iter().find(|a| a.value.starts_with(&prefix))?;
    let cla = ClusterLoadAssignment::decode(any.value.as_slice()).ok()?;
    let endpoint = cla.endpoints.first()?.lb_endpoints.first()?;
    match endpoint.host_identifier.as_ref()? {
        xds_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(e) => {
            match e.address.as_ref()?.address.as_ref()? {
                xds_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s) => {
                    match s.port_specifier.as_ref()? {
                        xds_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p) => Some(*p),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn kind_of(type_url: &str, resources: &[Any]) -> Kind {
    match type_url {
        type_url::LISTENER => Kind::Lds,
        type_url::CLUSTER => Kind::Cds,
        type_url::ROUTE => Kind::Rds,
        type_url::ENDPOINT => Kind::Eds(svc0_port(resources)),
        _ => Kind::Other,
    }
}

/// What every client shares, encoded once for the fleet (10,000 clients holding their own
/// copies of 12 KB of names and a 16 KB node would be 280 MB of the simulator's memory).
#[derive(Debug, Clone)]
pub struct Shared {
    pub clusters: usize,
    /// The EDS names, as SotW `resource_names` entries.
    eds_names: Bytes,
    route_names: Bytes,
    /// The node's fields but its id (see [`envoy_like_node`]).
    node_rest: Bytes,
    /// Whether the node goes into every request, as Envoy's default
    /// (`set_node_on_first_message_only: false`), or only the first.
    node_every_request: bool,
}

impl Shared {
    pub fn new(clusters: usize, node_every_request: bool) -> Self {
        let eds: Vec<String> = (0..clusters).map(cluster_name).collect();
        Shared {
            clusters,
            eds_names: sotw_names(&eds),
            route_names: sotw_names(&[ROUTE_CONFIG.to_string()]),
            node_rest: envoy_like_node().encode_to_vec().into(),
            node_every_request,
        }
    }
}

fn sotw_names(names: &[String]) -> Bytes {
    let entries = DiscoveryRequest {
        resource_names: names.to_vec(),
        ..Default::default()
    };
    entries.encode_to_vec().into()
}

/// A node the size of Envoy 1.40's (~16 KB: strace of its requests to our controlplane), most
/// of it the list of extensions compiled in, without the id (each client adds its own).
pub fn envoy_like_node() -> Node {
    use xds_types::pb::envoy::config::core::v3::{BuildVersion, Extension, node};
    use xds_types::pb::envoy::r#type::v3::SemanticVersion;
    let version = || BuildVersion {
        version: Some(SemanticVersion {
            major_number: 1,
            minor_number: 40,
            patch: 0,
        }),
        metadata: None,
    };
    Node {
        cluster: "fleet".into(),
        user_agent_name: "envoy".into(),
        user_agent_version_type: Some(node::UserAgentVersionType::UserAgentBuildVersion(version())),
        extensions: (0..136)
            .map(|i| Extension {
                name: format!("envoy.fleet.simulated.extension_{i:03}"),
                category: "envoy.filters.http".into(),
                type_urls: vec![format!(
                    "type.googleapis.com/envoy.extensions.fleet.v3.Config{i:03}"
                )],
                ..Default::default()
            })
            .collect(),
        client_features: vec![
            "envoy.config.require-any-fields-contain-struct".into(),
            "envoy.lb.does_not_support_overprovisioning".into(),
            "envoy.lrs.supports_send_all_clusters".into(),
        ],
        ..Default::default()
    }
}

pub async fn run(
    channel: Channel,
    mode: Mode,
    id: usize,
    shared: Arc<Shared>,
    events: Events,
) -> anyhow::Result<()> {
    let node = NodeField::new(mode, &format!("fleet-{id}"), &shared.node_rest);
    match mode {
        Mode::Sotw => sotw(channel, node, &shared, events).await,
        Mode::Delta => delta(channel, node, &shared, events).await,
    }
}

/// The node field of a request, encoded: the key, the length, the client's id, then the
/// fields every client shares.
#[derive(Debug, Default, Clone)]
struct NodeField {
    /// 2 in `DiscoveryRequest`, 1 in `DeltaDiscoveryRequest`.
    tag: u32,
    id: Bytes,
    rest: Bytes,
}

impl NodeField {
    fn new(mode: Mode, id: &str, rest: &Bytes) -> Self {
        let id = Node {
            id: id.to_string(),
            ..Default::default()
        };
        NodeField {
            tag: if mode == Mode::Sotw { 2 } else { 1 },
            id: id.encode_to_vec().into(),
            rest: rest.clone(),
        }
    }

    fn inner_len(&self) -> usize {
        self.id.len() + self.rest.len()
    }

    fn encoded_len(&self) -> usize {
        key_len(self.tag) + encoded_len_varint(self.inner_len() as u64) + self.inner_len()
    }

    fn encode(&self, buf: &mut impl BufMut) {
        encode_key(self.tag, WireType::LengthDelimited, buf);
        encode_varint(self.inner_len() as u64, buf);
        buf.put_slice(&self.id);
        buf.put_slice(&self.rest);
    }
}

/// A request with its node and resource names encoded beforehand.
///
/// Every SotW ACK repeats the whole subscription (1,000 EDS names per ACK, 10 million after
/// one push to 10,000 clients), and Envoy puts its ~16 KB node into every request. Built as
/// messages, each ACK cloned and freed 1,000 strings and re-encoded the node, and the
/// simulator's CPU (1.6 s per push) competed with the controlplane it measures for the
/// machine's two cores, where a real fleet encodes its ACKs on its own machines. The bytes on
/// the wire are the same: concatenated encodings of one message merge.
#[derive(Debug, Default, Clone)]
struct Encoded<M> {
    head: M,
    node: Option<NodeField>,
    /// `resource_names` (field 3) entries, encoded (SotW).
    names: Bytes,
}

impl<M: Message> Message for Encoded<M> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        self.head.encode_raw(buf);
        if let Some(node) = &self.node {
            node.encode(buf);
        }
        buf.put_slice(&self.names);
    }

    /// Not used: the simulator only sends this message.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.head.merge_field(tag, wire_type, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.head.encoded_len()
            + self.node.as_ref().map_or(0, NodeField::encoded_len)
            + self.names.len()
    }

    fn clear(&mut self) {
        self.head.clear();
        self.node = None;
        self.names = Bytes::new();
    }
}

/// Sends requests in order, with the node in the first one, or in every one.
struct Sender<M> {
    tx: mpsc::Sender<Encoded<M>>,
    node: NodeField,
    every: bool,
    sent: bool,
}

impl<M> Sender<M> {
    async fn send(&mut self, head: M, names: &Bytes) -> anyhow::Result<()> {
        let node = (self.every || !self.sent).then(|| self.node.clone());
        self.sent = true;
        self.tx
            .send(Encoded {
                head,
                node,
                names: names.clone(),
            })
            .await
            .map_err(|_| anyhow::anyhow!("the request stream ended"))
    }
}

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Opens the ADS stream of `path` with the `first` requests queued (tonic sends them as the
/// stream starts), and returns the sender of the rest.
async fn open<M, R>(
    channel: Channel,
    path: &'static str,
    node: NodeField,
    shared: &Shared,
    first: Vec<M>,
) -> anyhow::Result<(Sender<M>, tonic::Streaming<R>)>
where
    M: Message + Default + Send + 'static,
    R: Message + Default + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let mut sender = Sender {
        tx,
        node,
        every: shared.node_every_request,
        sent: false,
    };
    for head in first {
        sender.send(head, &Bytes::new()).await?;
    }
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(256 << 20);
    grpc.ready().await?;
    let codec = tonic_prost::ProstCodec::<Encoded<M>, R>::default();
    let stream = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            http::uri::PathAndQuery::from_static(path),
            codec,
        )
        .await?
        .into_inner();
    Ok((sender, stream))
}

async fn sotw(
    channel: Channel,
    node: NodeField,
    shared: &Shared,
    events: Events,
) -> anyhow::Result<()> {
    let request = |type_url: &str, version: String, nonce: String| DiscoveryRequest {
        type_url: type_url.to_string(),
        version_info: version,
        response_nonce: nonce,
        ..Default::default()
    };
    let none = Bytes::new();
    let first = vec![
        request(type_url::CLUSTER, String::new(), String::new()),
        request(type_url::LISTENER, String::new(), String::new()),
    ];
    let (mut tx, mut stream) =
        open::<_, DiscoveryResponse>(channel, SOTW_PATH, node, shared, first).await?;
    while let Some(response) = stream.message().await? {
        record(
            &events,
            kind_of(&response.type_url, &response.resources),
            response.encoded_len(),
        );
        let names = match response.type_url.as_str() {
            type_url::ENDPOINT => &shared.eds_names,
            type_url::ROUTE => &shared.route_names,
            _ => &none,
        };
        let ack = request(
            &response.type_url,
            response.version_info.clone(),
            response.nonce.clone(),
        );
        tx.send(ack, names).await?;
        // Like Envoy: the first CDS response makes it ask for EDS, the first LDS for RDS.
        match response.type_url.as_str() {
            type_url::CLUSTER if !events_seen(&events, Kind::Cds) => {
                let eds = request(type_url::ENDPOINT, String::new(), String::new());
                tx.send(eds, &shared.eds_names).await?
            }
            type_url::LISTENER if !events_seen(&events, Kind::Lds) => {
                let rds = request(type_url::ROUTE, String::new(), String::new());
                tx.send(rds, &shared.route_names).await?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether an earlier response of this kind than the one just recorded exists.
fn events_seen(events: &Events, kind: Kind) -> bool {
    events
        .lock()
        .map(|e| e.iter().filter(|ev| ev.kind == kind).count() > 1)
        .unwrap_or(true)
}

async fn delta(
    channel: Channel,
    node: NodeField,
    shared: &Shared,
    events: Events,
) -> anyhow::Result<()> {
    let subscribe = |type_url: &str, names: Vec<String>| DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: names,
        ..Default::default()
    };
    let none = Bytes::new();
    let first = vec![
        subscribe(type_url::CLUSTER, vec![]),
        subscribe(type_url::LISTENER, vec![]),
    ];
    let (mut tx, mut stream) =
        open::<_, DeltaDiscoveryResponse>(channel, DELTA_PATH, node, shared, first).await?;
    let svc0_name = cluster_name(0);
    while let Some(response) = stream.message().await? {
        // Only service 0's assignment is looked into: the initial sync's 2,000 resources
        // were cloned per response before, on the cores the controlplane is measured on.
        let svc0 = response
            .resources
            .iter()
            .find(|r| r.name == svc0_name)
            .and_then(|r| r.resource.as_ref());
        record(
            &events,
            kind_of(
                &response.type_url,
                svc0.map(std::slice::from_ref).unwrap_or_default(),
            ),
            response.encoded_len(),
        );
        let ack = DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        };
        tx.send(ack, &none).await?;
        match response.type_url.as_str() {
            type_url::CLUSTER if !events_seen(&events, Kind::Cds) => {
                let names = (0..shared.clusters).map(cluster_name).collect();
                tx.send(subscribe(type_url::ENDPOINT, names), &none).await?
            }
            type_url::LISTENER if !events_seen(&events, Kind::Lds) => {
                let names = vec![ROUTE_CONFIG.to_string()];
                tx.send(subscribe(type_url::ROUTE, names), &none).await?
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_request_is_the_request_with_that_node_and_those_names() {
        let names = vec!["svc-0".to_string(), "svc-1".to_string()];
        let rest: Bytes = envoy_like_node().encode_to_vec().into();
        let head = DiscoveryRequest {
            type_url: type_url::ENDPOINT.into(),
            version_info: "3".into(),
            response_nonce: "9".into(),
            ..Default::default()
        };
        let ours = Encoded {
            head: head.clone(),
            node: Some(NodeField::new(Mode::Sotw, "fleet-7", &rest)),
            names: sotw_names(&names),
        };
        let wire = ours.encode_to_vec();
        assert_eq!(wire.len(), ours.encoded_len());
        let node = Node {
            id: "fleet-7".into(),
            ..envoy_like_node()
        };
        let read = DiscoveryRequest::decode(&wire[..]).unwrap();
        assert_eq!(
            read,
            DiscoveryRequest {
                resource_names: names,
                node: Some(node.clone()),
                ..head
            }
        );
        let delta = Encoded {
            head: DeltaDiscoveryRequest::default(),
            node: Some(NodeField::new(Mode::Delta, "fleet-7", &rest)),
            names: Bytes::new(),
        };
        let read = DeltaDiscoveryRequest::decode(&delta.encode_to_vec()[..]).unwrap();
        assert_eq!(read.node, Some(node));
    }

    #[test]
    fn the_node_is_about_the_size_of_envoys() {
        let len = envoy_like_node().encoded_len();
        assert!((14_000..18_000).contains(&len), "{len} bytes");
    }
}
