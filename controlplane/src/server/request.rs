//! The two request messages as a stream reads them: Envoy's `DiscoveryRequest` and
//! `DeltaDiscoveryRequest` on the wire, decoded into types that allocate only what the server
//! looks at.
//!
//! Why not the generated messages:
//! - Envoy puts its `node` into every request (`set_node_on_first_message_only` is false by
//!   default): with its extension list that is ~16 KB and hundreds of strings, decoded on
//!   every ACK and thrown away, since only a stream's first node is used. Here it stays the
//!   bytes it arrived as, sliced from the message, decoded once ([`node`]).
//! - Every SotW ACK repeats the whole subscription: after an EDS push to 10,000 proxies of
//!   1,000 clusters that is 10 million names, each a `String` allocation. Here a name is a
//!   slice of the received message ([`Bytes`]: a reference count, no copy), checked as UTF-8
//!   as prost checks a string, and copied only when the subscription changed.
//!
//! Fields the server does not read (`resource_locators`) are skipped as unknown fields, as
//! they were before.

use bytes::Bytes;
use prost::Message;
use tonic::Status;
use xds_types::pb::envoy::config::core::v3::Node;
use xds_types::pb::google::rpc::Status as RpcStatus;

/// A request as the stream reads it: decoded, then checked where prost would have checked.
pub trait ReadRequest: Message + Default {
    /// The name prost gives the message in its errors.
    const MESSAGE: &'static str;
    /// What a generated decoder would have refused in the fields kept as bytes.
    fn check(&self) -> Result<(), Status> {
        Ok(())
    }
    /// The node, as it arrived.
    fn node_bytes(&self) -> Option<&Bytes>;
}

/// `envoy.service.discovery.v3.DiscoveryRequest` (State of the World).
#[derive(Clone, PartialEq, Message)]
pub struct SotwRequest {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub node: Option<Bytes>,
    /// Protobuf `string`s: [`ReadRequest::check`] refuses what is not UTF-8.
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub resource_names: Vec<Bytes>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub response_nonce: String,
    #[prost(message, optional, tag = "6")]
    pub error_detail: Option<RpcStatus>,
}

impl ReadRequest for SotwRequest {
    const MESSAGE: &'static str = "DiscoveryRequest";

    fn check(&self) -> Result<(), Status> {
        match self
            .resource_names
            .iter()
            .all(|n| std::str::from_utf8(n).is_ok())
        {
            true => Ok(()),
            false => Err(invalid_utf8(Self::MESSAGE, "resource_names")),
        }
    }

    fn node_bytes(&self) -> Option<&Bytes> {
        self.node.as_ref()
    }
}

impl SotwRequest {
    /// The resource names, each valid UTF-8 once [`ReadRequest::check`] passed.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.resource_names.iter().map(|n| n.as_ref())
    }
}

/// `envoy.service.discovery.v3.DeltaDiscoveryRequest` (incremental).
#[derive(Clone, PartialEq, Message)]
pub struct DeltaRequest {
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub node: Option<Bytes>,
    #[prost(string, tag = "2")]
    pub type_url: String,
    #[prost(string, repeated, tag = "3")]
    pub resource_names_subscribe: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub resource_names_unsubscribe: Vec<String>,
    #[prost(map = "string, string", tag = "5")]
    pub initial_resource_versions: std::collections::HashMap<String, String>,
    #[prost(string, tag = "6")]
    pub response_nonce: String,
    #[prost(message, optional, tag = "7")]
    pub error_detail: Option<RpcStatus>,
}

impl ReadRequest for DeltaRequest {
    const MESSAGE: &'static str = "DeltaDiscoveryRequest";

    fn node_bytes(&self) -> Option<&Bytes> {
        self.node.as_ref()
    }
}

/// The node of a stream's first request; the status ends the stream as a message that does
/// not decode does (INTERNAL, prost's words).
pub fn node<R: ReadRequest>(req: &R) -> Option<Result<Node, Status>> {
    let bytes = req.node_bytes()?.clone();
    Some(Node::decode(bytes).map_err(|e| {
        Status::internal(format!(
            "failed to decode Protobuf message: {}.node: {e}",
            R::MESSAGE
        ))
    }))
}

fn invalid_utf8(message: &str, field: &str) -> Status {
    Status::internal(format!(
        "failed to decode Protobuf message: {message}.{field}: invalid string value: data is \
         not UTF-8 encoded"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};

    fn node() -> Node {
        Node {
            id: "edge-1".into(),
            cluster: "edge".into(),
            user_agent_name: "envoy".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_discovery_request_reads_as_sent() {
        let sent = DiscoveryRequest {
            version_info: "3".into(),
            node: Some(node()),
            resource_names: vec!["b".into(), "a".into(), "b".into()],
            type_url: "t".into(),
            response_nonce: "7".into(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: "bad".into(),
                details: vec![],
            }),
            ..Default::default()
        };
        let read = SotwRequest::decode(Bytes::from(sent.encode_to_vec())).unwrap();
        assert!(read.check().is_ok());
        assert_eq!(read.version_info, "3");
        assert_eq!(read.names().collect::<Vec<_>>(), [b"b", b"a", b"b"]);
        assert_eq!(read.type_url, "t");
        assert_eq!(read.response_nonce, "7");
        assert_eq!(
            read.error_detail.as_ref().map(|s| s.message.as_str()),
            Some("bad")
        );
        assert_eq!(super::node(&read).unwrap().unwrap(), node());
    }

    #[test]
    fn a_delta_request_reads_as_sent() {
        let sent = DeltaDiscoveryRequest {
            node: Some(node()),
            type_url: "t".into(),
            resource_names_subscribe: vec!["a".into()],
            resource_names_unsubscribe: vec!["b".into()],
            initial_resource_versions: [("c".to_string(), "1".to_string())].into(),
            response_nonce: "n".into(),
            ..Default::default()
        };
        let read = DeltaRequest::decode(Bytes::from(sent.encode_to_vec())).unwrap();
        assert_eq!(read.resource_names_subscribe, ["a"]);
        assert_eq!(read.resource_names_unsubscribe, ["b"]);
        assert_eq!(
            read.initial_resource_versions.get("c").map(String::as_str),
            Some("1")
        );
        assert_eq!(read.response_nonce, "n");
        assert_eq!(super::node(&read).unwrap().unwrap(), node());
        assert!(super::node(&DeltaRequest::default()).is_none());
    }

    #[test]
    fn names_are_slices_of_the_message_not_copies() {
        let sent = DiscoveryRequest {
            resource_names: vec!["cluster-1".into()],
            ..Default::default()
        };
        let wire = Bytes::from(sent.encode_to_vec());
        let read = SotwRequest::decode(wire.clone()).unwrap();
        let name = read.resource_names[0].as_ptr() as usize;
        let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
        assert!(range.contains(&name));
    }

    #[test]
    fn what_prost_refuses_is_refused_with_its_words() {
        // Field 3 (resource_names), length 1, byte 0xff: not UTF-8.
        let read = SotwRequest::decode(&[0x1a, 0x01, 0xff][..]).unwrap();
        let e = read.check().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert_eq!(
            e.message(),
            "failed to decode Protobuf message: DiscoveryRequest.resource_names: invalid string \
             value: data is not UTF-8 encoded"
        );
        // Field 2 (node), length 2: a field 1 (id) whose length runs past the end.
        let read = SotwRequest::decode(&[0x12, 0x02, 0x0a, 0x05][..]).unwrap();
        let e = super::node(&read).unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert!(
            e.message()
                .starts_with("failed to decode Protobuf message: DiscoveryRequest.node: "),
            "{}",
            e.message()
        );
    }
}
