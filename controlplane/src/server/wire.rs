//! Responses as the stream state machines produce them, and their bytes on the wire.
//!
//! A response holds the snapshot's own resources (`Arc`s), not copies: a push to 10,000
//! streams does not build 10,000 `DiscoveryResponse`s of cloned `Any`s. Its gRPC message is
//! written only as the client reads it, [`CHUNK`] bytes at a time, into fresh buffers: the
//! message is the response's small head (version, type, nonce, removed names) followed by each
//! resource's entry, encoded once per snapshot ([`EncodedResource::sotw_entry`]), which is
//! valid protobuf because concatenated encodings merge repeated fields.
//!
//! Why not tonic's encoder: it encodes each message whole into one per-stream buffer that
//! keeps its largest size for the life of the stream, so every stream held a buffer the size
//! of its initial sync (~0.6 MB for 1,000 clusters: 6-7 GB at 10,000 streams).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use xds_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};

use crate::cache::EncodedResource;

/// The most bytes of a message copied into one outgoing buffer: big enough that a push is
/// few HTTP/2 DATA frames, small enough that a stream holds little while its client reads.
///
/// What a stream holds is bounded by h2's send buffer (hyper's 400 KB per stream), whatever
/// the chunk size; the number of chunks queued is not, and h2 queues each in a per-connection
/// slab that keeps its largest size: with 32 KB chunks it grew to ~5 KB per connection
/// during the initial sync (massif; 50 MB at 10,000 proxies). 96 KB chunks are fewer, and
/// still below glibc's mmap threshold (128 KB), so each is a heap allocation, not a syscall.
/// Measured with `fleet --streams 10000 --mode delta`: settled 500 -> 466 MB, initial-sync
/// peak 501 -> 478 MB.
pub const CHUNK: usize = 96 * 1024;

/// A State-of-the-World response.
#[derive(Debug, Clone, Default)]
pub struct SotwResponse {
    pub version_info: String,
    pub type_url: String,
    pub nonce: String,
    pub resources: Vec<Arc<EncodedResource>>,
}

/// A Delta (incremental) response.
#[derive(Debug, Clone, Default)]
pub struct DeltaResponse {
    pub system_version_info: String,
    pub type_url: String,
    pub nonce: String,
    pub resources: Vec<Arc<EncodedResource>>,
    pub removed_resources: Vec<String>,
}

impl SotwResponse {
    /// The protobuf message (for tests and tools; the server writes [`WireMessage::chunks`]).
    pub fn to_proto(&self) -> DiscoveryResponse {
        DiscoveryResponse {
            resources: self.resources.iter().map(|r| r.any.clone()).collect(),
            ..self.head()
        }
    }

    fn head(&self) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: self.version_info.clone(),
            type_url: self.type_url.clone(),
            nonce: self.nonce.clone(),
            ..Default::default()
        }
    }
}

impl DeltaResponse {
    /// The protobuf message (for tests and tools; the server writes [`WireMessage::chunks`]).
    pub fn to_proto(&self) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            resources: self.resources.iter().map(|r| r.delta_resource()).collect(),
            ..self.head()
        }
    }

    fn head(&self) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: self.system_version_info.clone(),
            type_url: self.type_url.clone(),
            nonce: self.nonce.clone(),
            removed_resources: self.removed_resources.clone(),
            ..Default::default()
        }
    }
}

/// A response that can be written as one gRPC message in chunks.
pub trait WireMessage: Send + 'static {
    /// Every field but the resources, encoded.
    fn encoded_head(&self) -> Vec<u8>;
    fn resources(&self) -> &[Arc<EncodedResource>];
    /// One resource's `resources` entry in this protocol.
    fn entry(resource: &EncodedResource) -> &[u8];

    /// The gRPC message (5-byte length prefix, then the protobuf), in buffers of about
    /// [`CHUNK`] bytes, each made when the previous one has been taken.
    fn chunks(self) -> Chunks<Self>
    where
        Self: Sized,
    {
        let head = self.encoded_head();
        let len = head.len()
            + self
                .resources()
                .iter()
                .map(|r| Self::entry(r).len())
                .sum::<usize>();
        Chunks {
            message: self,
            head: Some((head, len)),
            next: 0,
            offset: 0,
            remaining: 5 + len,
        }
    }
}

impl WireMessage for SotwResponse {
    fn encoded_head(&self) -> Vec<u8> {
        self.head().encode_to_vec()
    }
    fn resources(&self) -> &[Arc<EncodedResource>] {
        &self.resources
    }
    fn entry(resource: &EncodedResource) -> &[u8] {
        resource.sotw_entry()
    }
}

impl WireMessage for DeltaResponse {
    fn encoded_head(&self) -> Vec<u8> {
        self.head().encode_to_vec()
    }
    fn resources(&self) -> &[Arc<EncodedResource>] {
        &self.resources
    }
    fn entry(resource: &EncodedResource) -> &[u8] {
        resource.delta_entry()
    }
}

/// The chunks of one message, made one at a time.
#[derive(Debug)]
pub struct Chunks<M> {
    message: M,
    /// The head and the message length, until the first chunk is made.
    head: Option<(Vec<u8>, usize)>,
    /// The next resource to copy, and how much of it the previous chunk took (an entry
    /// bigger than a chunk spans several).
    next: usize,
    offset: usize,
    /// Bytes of the message (prefix included) not yet in a chunk.
    remaining: usize,
}

impl<M: WireMessage> Iterator for Chunks<M> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let resources = self.message.resources();
        if self.head.is_none() && self.next >= resources.len() {
            return None;
        }
        // No bigger than what is left of the message: a one-endpoint push is a few hundred
        // bytes, and 10,000 streams each holding a 32 KB buffer for it is 320 MB of malloc
        // traffic (and h2 keeps each buffer until its bytes are on the socket).
        let mut chunk = BytesMut::with_capacity(CHUNK.min(self.remaining));
        if let Some((head, len)) = self.head.take() {
            // The gRPC message prefix: not compressed, then the length (big-endian u32).
            // Messages are far below 4 GiB (a snapshot this large is refused long before).
            chunk.put_u8(0);
            chunk.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
            chunk.extend_from_slice(&head);
        }
        while chunk.len() < CHUNK
            && let Some(resource) = resources.get(self.next)
        {
            let entry = &M::entry(resource)[self.offset..];
            let room = CHUNK.saturating_sub(chunk.len()).max(1);
            if entry.len() <= room {
                chunk.extend_from_slice(entry);
                self.next += 1;
                self.offset = 0;
            } else {
                chunk.extend_from_slice(&entry[..room]);
                self.offset += room;
            }
        }
        self.remaining = self.remaining.saturating_sub(chunk.len());
        Some(chunk.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_types::Resource;
    use xds_types::pb::envoy::config::cluster::v3::Cluster;

    fn resource(name: &str, padding: usize) -> Arc<EncodedResource> {
        let any = Cluster {
            name: name.into(),
            alt_stat_name: "x".repeat(padding),
            ..Default::default()
        }
        .to_any();
        Arc::new(EncodedResource::new(name.into(), format!("v-{name}"), any))
    }

    /// The chunks joined, as the client reads them: the prefix's length, and the message.
    fn read(chunks: impl Iterator<Item = Bytes>) -> (usize, Vec<u8>, usize) {
        let mut all = Vec::new();
        let mut count = 0;
        for c in chunks {
            assert!(c.len() <= CHUNK + 5, "a chunk of {} bytes", c.len());
            all.extend_from_slice(&c);
            count += 1;
        }
        assert_eq!(all[0], 0, "not compressed");
        let len = u32::from_be_bytes(all[1..5].try_into().unwrap()) as usize;
        (len, all.split_off(5), count)
    }

    #[test]
    fn sotw_chunks_decode_to_the_response() {
        // Small entries, one bigger than a chunk, and enough to span several chunks.
        let mut resources: Vec<_> = (0..3 * CHUNK / 200)
            .map(|i| resource(&format!("c{i}"), 200))
            .collect();
        resources.insert(7, resource("big", 3 * CHUNK + 17));
        let response = SotwResponse {
            version_info: "v1".into(),
            type_url: xds_types::type_url::CLUSTER.into(),
            nonce: "3".into(),
            resources,
        };
        let want = response.to_proto();
        let (len, message, count) = read(response.chunks());
        assert_eq!(len, message.len());
        assert!(count > 4, "{count} chunks");
        assert_eq!(DiscoveryResponse::decode(&message[..]).unwrap(), want);
    }

    #[test]
    fn delta_chunks_decode_to_the_response() {
        let response = DeltaResponse {
            system_version_info: "v2".into(),
            type_url: xds_types::type_url::CLUSTER.into(),
            nonce: "9".into(),
            resources: vec![resource("a", 10), resource("b", CHUNK)],
            removed_resources: vec!["gone".into()],
        };
        let want = response.to_proto();
        let (len, message, _) = read(response.clone().chunks());
        assert_eq!(len, message.len());
        assert_eq!(DeltaDiscoveryResponse::decode(&message[..]).unwrap(), want);
        // A small message's one chunk is allocated at its size, not a whole CHUNK.
        let small = DeltaResponse {
            resources: vec![resource("a", 10)],
            ..response
        };
        let chunk = small.chunks().next().unwrap();
        let buf = chunk.try_into_mut().expect("the only reference");
        assert!(buf.capacity() < 256, "capacity {}", buf.capacity());
    }

    #[test]
    fn an_empty_response_is_one_chunk() {
        let response = SotwResponse {
            version_info: "v1".into(),
            type_url: xds_types::type_url::CLUSTER.into(),
            nonce: "1".into(),
            resources: vec![],
        };
        let want = response.to_proto();
        let (len, message, count) = read(response.chunks());
        assert_eq!((len, count), (message.len(), 1));
        assert_eq!(DiscoveryResponse::decode(&message[..]).unwrap(), want);
    }
}
