//! One simulated proxy: an ADS stream (SotW or Delta) that subscribes like Envoy (LDS and CDS
//! wildcard, then RDS and EDS by the names they need), ACKs every response and records what
//! it received and when.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost::encoding::{DecodeContext, WireType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use xds_types::pb::envoy::config::core::v3::Node;
use xds_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
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

pub async fn run(
    channel: Channel,
    mode: Mode,
    id: usize,
    clusters: usize,
    events: Events,
) -> anyhow::Result<()> {
    let node = Node {
        id: format!("fleet-{id}"),
        cluster: "fleet".into(),
        ..Default::default()
    };
    let eds_names: Vec<String> = (0..clusters).map(cluster_name).collect();
    match mode {
        Mode::Sotw => sotw(channel, node, &eds_names, events).await,
        Mode::Delta => {
            let mut client =
                AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
            delta(&mut client, node, eds_names, events).await
        }
    }
}

/// A SotW `DiscoveryRequest` whose resource names were encoded beforehand.
///
/// Every SotW ACK repeats the whole subscription: 1,000 EDS names per ACK, 10 million after
/// one push to 10,000 clients. Built as a `DiscoveryRequest`, each ACK cloned and freed 1,000
/// strings, and the simulator's CPU (1.6 s per push) competed with the controlplane it measures
/// for the machine's two cores, where a real fleet encodes its ACKs on its own machines. The
/// bytes on the wire are the same: concatenated encodings of one message merge.
#[derive(Debug, Default, Clone)]
struct SotwRequest {
    head: DiscoveryRequest,
    /// `resource_names` (field 3) entries, encoded.
    names: Bytes,
}

impl SotwRequest {
    fn encode_names(names: &[String]) -> Bytes {
        let entries = DiscoveryRequest {
            resource_names: names.to_vec(),
            ..Default::default()
        };
        entries.encode_to_vec().into()
    }
}

impl Message for SotwRequest {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        self.head.encode_raw(buf);
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
        self.head.encoded_len() + self.names.len()
    }

    fn clear(&mut self) {
        self.head.clear();
        self.names = Bytes::new();
    }
}

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

async fn sotw(
    channel: Channel,
    node: Node,
    eds_names: &[String],
    events: Events,
) -> anyhow::Result<()> {
    let eds_names = SotwRequest::encode_names(eds_names);
    let route_names = SotwRequest::encode_names(&[ROUTE_CONFIG.to_string()]);
    let (tx, rx) = mpsc::channel(16);
    let request = |type_url: &str, names: &Bytes, version: String, nonce: String| SotwRequest {
        head: DiscoveryRequest {
            type_url: type_url.to_string(),
            version_info: version,
            response_nonce: nonce,
            ..Default::default()
        },
        names: names.clone(),
    };
    let none = Bytes::new();
    let mut first = request(type_url::CLUSTER, &none, String::new(), String::new());
    first.head.node = Some(node);
    tx.send(first).await?;
    tx.send(request(
        type_url::LISTENER,
        &none,
        String::new(),
        String::new(),
    ))
    .await?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(256 << 20);
    grpc.ready().await?;
    let codec = tonic_prost::ProstCodec::<SotwRequest, DiscoveryResponse>::default();
    let mut stream = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            http::uri::PathAndQuery::from_static(SOTW_PATH),
            codec,
        )
        .await?
        .into_inner();
    while let Some(response) = stream.message().await? {
        record(
            &events,
            kind_of(&response.type_url, &response.resources),
            response.encoded_len(),
        );
        let names = match response.type_url.as_str() {
            type_url::ENDPOINT => &eds_names,
            type_url::ROUTE => &route_names,
            _ => &none,
        };
        tx.send(request(
            &response.type_url,
            names,
            response.version_info.clone(),
            response.nonce.clone(),
        ))
        .await?;
        // Like Envoy: the first CDS response makes it ask for EDS, the first LDS for RDS.
        match response.type_url.as_str() {
            type_url::CLUSTER if !events_seen(&events, Kind::Cds) => {
                tx.send(request(
                    type_url::ENDPOINT,
                    &eds_names,
                    String::new(),
                    String::new(),
                ))
                .await?
            }
            type_url::LISTENER if !events_seen(&events, Kind::Lds) => {
                tx.send(request(
                    type_url::ROUTE,
                    &route_names,
                    String::new(),
                    String::new(),
                ))
                .await?
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
    client: &mut AggregatedDiscoveryServiceClient<Channel>,
    node: Node,
    eds_names: Vec<String>,
    events: Events,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(16);
    let subscribe = |type_url: &str, names: Vec<String>| DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: names,
        ..Default::default()
    };
    tx.send(DeltaDiscoveryRequest {
        node: Some(node),
        ..subscribe(type_url::CLUSTER, vec![])
    })
    .await?;
    tx.send(subscribe(type_url::LISTENER, vec![])).await?;
    let mut stream = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(response) = stream.message().await? {
        let anys: Vec<Any> = response
            .resources
            .iter()
            .filter_map(|r| r.resource.clone())
            .collect();
        record(
            &events,
            kind_of(&response.type_url, &anys),
            response.encoded_len(),
        );
        tx.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await?;
        match response.type_url.as_str() {
            type_url::CLUSTER if !events_seen(&events, Kind::Cds) => {
                tx.send(subscribe(type_url::ENDPOINT, eds_names.clone()))
                    .await?
            }
            type_url::LISTENER if !events_seen(&events, Kind::Lds) => {
                tx.send(subscribe(type_url::ROUTE, vec![ROUTE_CONFIG.into()]))
                    .await?
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
    fn a_request_with_encoded_names_is_the_request_with_those_names() {
        let names = vec!["svc-0".to_string(), "svc-1".to_string()];
        let head = DiscoveryRequest {
            type_url: type_url::ENDPOINT.into(),
            version_info: "3".into(),
            response_nonce: "9".into(),
            ..Default::default()
        };
        let ours = SotwRequest {
            head: head.clone(),
            names: SotwRequest::encode_names(&names),
        };
        let wire = ours.encode_to_vec();
        assert_eq!(wire.len(), ours.encoded_len());
        let read = DiscoveryRequest::decode(&wire[..]).unwrap();
        assert_eq!(
            read,
            DiscoveryRequest {
                resource_names: names,
                ..head
            }
        );
    }
}
