//! The ADS gRPC service on tonic's router, with our own response bodies.
//!
//! tonic's generated server keeps two buffers per stream at the largest size they ever grew
//! to: the encoder's (a whole response: ~0.6 MB after the initial sync of a 1,000-cluster
//! snapshot) and the decoder's (a whole request: ~30 KB after a first EDS request naming 1,000
//! clusters). With 10,000 streams those were most of the controlplane's memory. Here each
//! response is written in small chunks as the client reads it ([`super::wire`]), and a request
//! is buffered only until it is whole; nothing outlives its message.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::marker::PhantomData;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::server::NamedService;

use super::request::ReadRequest;
use super::wire::{Chunks, WireMessage};
use super::{AdsServer, Protocol, delta::DeltaState, sotw::SotwState};

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The largest request accepted: a Delta reconnect lists every resource the client holds in
/// `initial_resource_versions`, which exceeds tonic's 4 MB default for large snapshots.
const MAX_REQUEST: usize = 64 << 20;

/// `envoy.service.discovery.v3.AggregatedDiscoveryService`, both methods.
#[derive(Debug, Clone)]
pub struct AdsService {
    server: AdsServer,
}

impl AdsService {
    pub fn new(server: AdsServer) -> Self {
        AdsService { server }
    }

    fn stream<P: Protocol>(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        // No compression is offered (as tonic's default server): say so, as it does.
        if let Some(encoding) = request.headers().get("grpc-encoding")
            && encoding != "identity"
        {
            return Status::unimplemented(format!(
                "Content is compressed with `{}` which isn't supported",
                encoding.to_str().unwrap_or("?")
            ))
            .into_http();
        }
        let (parts, body) = request.into_parts();
        let requests = Requests::new(body);
        let request = tonic::Request::from_http(http::Request::from_parts(parts, requests));
        let responses = self.server.start::<P>(request);
        let mut response = http::Response::new(tonic::body::Body::new(ResponseBody {
            responses,
            current: None,
            done: false,
        }));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        response
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl tower_service::Service<http::Request<tonic::body::Body>> for AdsService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let response = match request.uri().path() {
            SOTW => self.stream::<SotwState>(request),
            DELTA => self.stream::<DeltaState>(request),
            _ => Status::unimplemented("").into_http(),
        };
        std::future::ready(Ok(response))
    }
}

/// What a stream's driver queues for its response body: a response (boxed, to keep each
/// stream's channel small: see `AdsServer::start`), or the status that ends the stream.
pub type Queued<M> = Result<Box<M>, Status>;

/// A stream's responses as its driver queues them, each written in chunks, then the gRPC
/// status in the trailers.
struct ResponseBody<M> {
    responses: mpsc::Receiver<Queued<M>>,
    current: Option<Chunks<M>>,
    done: bool,
}

impl<M: WireMessage + Unpin> http_body::Body for ResponseBody<M> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(chunk) = this.current.as_mut().and_then(Iterator::next) {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if this.current.take().is_some() {
                super::fanout::written();
            }
            let status = match ready!(this.responses.poll_recv(cx)) {
                Some(Ok(message)) => {
                    this.current = Some((*message).chunks());
                    continue;
                }
                Some(Err(status)) => status,
                // The driver ended the stream (the client closed its side, or shutdown).
                None => Status::ok(""),
            };
            this.done = true;
            let mut trailers = HeaderMap::new();
            // Only fails for metadata that is not valid in a header; ours has none.
            let _ = status.add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// A stream's requests, decoded from the request body's DATA frames.
///
/// A message that arrived whole in one frame (most do: an ACK, or an Envoy request with its
/// ~16 KB node when it fits a frame) is decoded where it lies, no copy. One split across
/// frames is gathered into a buffer of its exact size, allocated once its length is known.
pub struct Requests<T> {
    body: tonic::body::Body,
    /// What is left of the last DATA frame.
    frame: Bytes,
    /// A message split across frames; empty (no allocation) between messages.
    partial: BytesMut,
    _message: PhantomData<fn() -> T>,
}

impl<T> Requests<T> {
    pub fn new(body: tonic::body::Body) -> Self {
        Requests {
            body,
            frame: Bytes::new(),
            partial: BytesMut::new(),
            _message: PhantomData,
        }
    }
}

impl<T: ReadRequest> Requests<T> {
    /// The next request, `None` when the client closed its side, or the error that ends the
    /// stream (as tonic's decoder would: INTERNAL for bytes that do not decode, OUT_OF_RANGE
    /// for a message over the limit).
    pub async fn message(&mut self) -> Result<Option<T>, Status> {
        loop {
            if let Some(message) = self.next_whole()? {
                return decode(message).map(Some);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.frame = data;
                    }
                }
                Some(Err(status)) => return Err(status),
                None if self.partial.is_empty() => return Ok(None),
                None => {
                    return Err(Status::internal(
                        "the request stream ended inside a message",
                    ));
                }
            }
        }
    }

    /// The next whole message, its 5-byte prefix included, or `None` once the frame is used
    /// up without completing one.
    fn next_whole(&mut self) -> Result<Option<Bytes>, Status> {
        if self.partial.is_empty() {
            if let Some(len) = message_len(&self.frame)? {
                if self.frame.len() >= 5 + len {
                    return Ok(Some(self.frame.split_to(5 + len)));
                }
                self.partial = BytesMut::with_capacity(5 + len);
            } else if self.frame.is_empty() {
                return Ok(None);
            }
        }
        loop {
            let want = message_len(&self.partial)?.map_or(5, |len| 5 + len);
            let take = (want - self.partial.len()).min(self.frame.len());
            self.partial.extend_from_slice(&self.frame.split_to(take));
            if self.partial.len() < want {
                return Ok(None);
            }
            match message_len(&self.partial)? {
                // The prefix just completed: room for the rest, exactly.
                Some(len) if self.partial.len() < 5 + len => self.partial.reserve(len),
                // Whole; `take` leaves `partial` empty with no allocation.
                _ => return Ok(Some(std::mem::take(&mut self.partial).freeze())),
            }
        }
    }
}

/// The length a gRPC message prefix announces, once its 5 bytes are there.
fn message_len(bytes: &[u8]) -> Result<Option<usize>, Status> {
    let Some(prefix) = bytes.get(..5) else {
        return Ok(None);
    };
    if prefix[0] != 0 {
        return Err(Status::internal(
            "protocol error: received a compressed message, but no compression was negotiated",
        ));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > MAX_REQUEST {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {len} bytes, the limit is: \
             {MAX_REQUEST} bytes"
        )));
    }
    Ok(Some(len))
}

/// Decodes a whole message from shared bytes: the fields kept as bytes (names, the node) are
/// slices of it, not copies (see `super::request`).
fn decode<T: ReadRequest>(mut message: Bytes) -> Result<T, Status> {
    message.advance(5);
    let message = T::decode(message).map_err(|e| Status::internal(e.to_string()))?;
    message.check()?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::request::SotwRequest;
    use prost::Message;
    use xds_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    /// A request body of these bytes, cut into frames of `frame` bytes.
    fn body(bytes: Vec<u8>, frame: usize) -> tonic::body::Body {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = bytes
            .chunks(frame)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    fn framed(message: &impl Message) -> Vec<u8> {
        let bytes = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
        out
    }

    fn requests(bytes: Vec<u8>, frame: usize) -> Requests<SotwRequest> {
        Requests::new(body(bytes, frame))
    }

    #[tokio::test]
    async fn messages_split_across_frames_are_decoded_and_the_buffer_let_go() {
        let first = DiscoveryRequest {
            type_url: "t".into(),
            resource_names: (0..500).map(|i| format!("cluster-{i}")).collect(),
            ..Default::default()
        };
        let second = DiscoveryRequest {
            response_nonce: "1".into(),
            ..Default::default()
        };
        let mut bytes = framed(&first);
        bytes.extend(framed(&second));
        let read = |m: &DiscoveryRequest| SotwRequest::decode(&m.encode_to_vec()[..]).ok();
        let mut requests = requests(bytes, 7);
        assert_eq!(requests.message().await.unwrap(), read(&first));
        assert_eq!(requests.message().await.unwrap(), read(&second));
        assert_eq!(requests.partial.capacity(), 0);
        assert_eq!(requests.message().await.unwrap(), None);
    }

    #[test]
    fn a_split_message_is_gathered_at_its_size_and_a_whole_one_decoded_in_place() {
        let msg = framed(&DiscoveryRequest {
            type_url: "t".into(),
            resource_names: (0..100).map(|i| format!("cluster-{i}")).collect(),
            ..Default::default()
        });
        let mut r = requests(vec![], 1);
        // Split: 3 bytes (no length yet), 10 more, then the rest.
        r.frame = Bytes::copy_from_slice(&msg[..3]);
        assert_eq!(r.next_whole().unwrap(), None);
        r.frame = Bytes::copy_from_slice(&msg[3..13]);
        assert_eq!(r.next_whole().unwrap(), None);
        assert_eq!(r.partial.capacity(), msg.len());
        r.frame = Bytes::copy_from_slice(&msg[13..]);
        assert_eq!(r.next_whole().unwrap().as_deref(), Some(&msg[..]));
        assert_eq!(r.partial.capacity(), 0);
        // Whole in one frame, with the start of the next: the first is the frame's own bytes.
        let mut two = msg.clone();
        two.extend_from_slice(&msg[..4]);
        let frame = Bytes::from(two);
        r.frame = frame.clone();
        let whole = r.next_whole().unwrap().unwrap();
        assert_eq!((whole.as_ptr(), whole.len()), (frame.as_ptr(), msg.len()));
        assert_eq!(r.next_whole().unwrap(), None);
        assert_eq!(r.partial.len(), 4);
    }

    #[tokio::test]
    async fn bad_requests_end_the_stream_with_tonics_statuses() {
        let mut compressed = framed(&DiscoveryRequest::default());
        compressed[0] = 1;
        let e = requests(compressed, 100).message().await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        let huge = [0u8, 0xff, 0xff, 0xff, 0xff].to_vec();
        let e = requests(huge, 100).message().await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::OutOfRange);
        let e = requests(vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff], 2)
            .message()
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        // A resource name that is not UTF-8 (field 3, length 1, 0xff), as prost refuses it.
        let e = requests(vec![0, 0, 0, 0, 3, 0x1a, 0x01, 0xff], 100)
            .message()
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert!(e.message().contains("not UTF-8"), "{}", e.message());
        let cut = framed(&DiscoveryRequest::default())[..3].to_vec();
        let e = requests(cut, 1).message().await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
    }
}
