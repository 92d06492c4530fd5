//! The control channel's PKI for the TLS end-to-end tests: a CA, the controlplane's
//! certificate and files, `controlplane serve` with mutual TLS, bootstraps whose xDS cluster
//! speaks mutual TLS, and a raw ADS client (tonic) to probe what the server allows.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::tls::{Ca, Leaf};
use super::{Api, Controlplane};

pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// A CA, the controlplane's certificate (for `localhost` and 127.0.0.1) and the files.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: Ca,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Pki {
    pub fn new(work: &Path) -> Pki {
        let dir = work.join("pki");
        std::fs::create_dir(&dir).unwrap();
        let ca = Ca::new("e2e CA");
        let server = ca.leaf("controlplane", &["localhost", "127.0.0.1"], &[]);
        Pki {
            ca_file: super::tls::write(&dir, "ca.pem", &ca.pem()),
            cert_file: super::tls::write(&dir, "server.pem", &server.cert),
            key_file: super::tls::write(&dir, "server.key", &server.key),
            dir,
            ca,
        }
    }

    /// A client certificate of this CA, written as `<name>.pem` / `<name>.key`.
    pub fn client(&self, name: &str, dns: &[&str], uris: &[&str]) -> (Leaf, PathBuf, PathBuf) {
        let leaf = self.ca.leaf(name, dns, uris);
        let cert = super::tls::write(&self.dir, &format!("{name}.pem"), &leaf.cert);
        let key = super::tls::write(&self.dir, &format!("{name}.key"), &leaf.key);
        (leaf, cert, key)
    }

    /// `controlplane serve` with mutual TLS on `config`.
    pub fn controlplane(&self, config: &Path, work: &Path) -> Controlplane {
        self.controlplane_with(config, work, &[])
    }

    pub fn controlplane_with(&self, config: &Path, work: &Path, extra: &[&str]) -> Controlplane {
        let mut flags: Vec<&OsStr> = vec![
            OsStr::new("--tls-cert"),
            self.cert_file.as_os_str(),
            OsStr::new("--tls-key"),
            self.key_file.as_os_str(),
            OsStr::new("--client-ca"),
            self.ca_file.as_os_str(),
        ];
        flags.extend(extra.iter().map(OsStr::new));
        Controlplane::start_with(config, work, &flags)
    }
}

/// A bootstrap (for Envoy and our dataplane alike) whose xDS cluster speaks mutual TLS.
pub fn tls_bootstrap(
    node: &str,
    xds: &str,
    api: Api,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> String {
    let (host, port) = xds.rsplit_once(':').unwrap();
    let api_type = match api {
        Api::Sotw => "GRPC",
        Api::Delta => "DELTA_GRPC",
    };
    let tls = format!(
        r#"
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificates:
          - certificate_chain: {{ filename: "{}" }}
            private_key: {{ filename: "{}" }}
          validation_context:
            trusted_ca: {{ filename: "{}" }}
"#,
        cert.display(),
        key.display(),
        ca.display()
    );
    super::config::envoy_bootstrap(node, host, port, api_type) + tls.trim_start_matches('\n')
}

/// A gRPC channel to the controlplane, trusting `ca`, with `client` as identity if given.
pub async fn channel(xds: &str, ca: &str, client: Option<&Leaf>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(&c.cert, &c.key));
    }
    Endpoint::from_shared(format!("https://{xds}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Opens a SotW stream claiming `node_id` and asks for clusters.
pub async fn cds_stream(
    channel: Channel,
    node_id: &str,
) -> Result<
    (
        tokio::sync::mpsc::Sender<DiscoveryRequest>,
        tonic::Streaming<DiscoveryResponse>,
    ),
    tonic::Status,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: node_id.into(),
            ..Default::default()
        }),
        type_url: CDS.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

/// The first response of a stream claiming `node_id` over `channel`.
pub async fn first_response(
    channel: Channel,
    node_id: &str,
) -> Result<DiscoveryResponse, tonic::Status> {
    let (_tx, mut stream) = cds_stream(channel, node_id).await?;
    stream
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("the stream ended"))
}
