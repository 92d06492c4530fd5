//! One simulated proxy: an ADS stream (SotW or Delta) that subscribes like Envoy (LDS and CDS
//! wildcard, then RDS and EDS by the names they need), ACKs every response and records what
//! it received and when.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use xds_types::pb::envoy::config::core::v3::Node;
use xds_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
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
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
    match mode {
        Mode::Sotw => sotw(&mut client, node, eds_names, events).await,
        Mode::Delta => delta(&mut client, node, eds_names, events).await,
    }
}

async fn sotw(
    client: &mut AggregatedDiscoveryServiceClient<Channel>,
    node: Node,
    eds_names: Vec<String>,
    events: Events,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel(16);
    let request =
        |type_url: &str, names: Vec<String>, version: String, nonce: String| DiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names: names,
            version_info: version,
            response_nonce: nonce,
            ..Default::default()
        };
    tx.send(DiscoveryRequest {
        node: Some(node),
        ..request(type_url::CLUSTER, vec![], String::new(), String::new())
    })
    .await?;
    tx.send(request(
        type_url::LISTENER,
        vec![],
        String::new(),
        String::new(),
    ))
    .await?;
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(response) = stream.message().await? {
        record(
            &events,
            kind_of(&response.type_url, &response.resources),
            response.encoded_len(),
        );
        let names = match response.type_url.as_str() {
            type_url::ENDPOINT => eds_names.clone(),
            type_url::ROUTE => vec![ROUTE_CONFIG.to_string()],
            _ => vec![],
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
                    eds_names.clone(),
                    String::new(),
                    String::new(),
                ))
                .await?
            }
            type_url::LISTENER if !events_seen(&events, Kind::Lds) => {
                tx.send(request(
                    type_url::ROUTE,
                    vec![ROUTE_CONFIG.into()],
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
