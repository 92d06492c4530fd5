//! Our own HTTP/1.0 and 1.1 codec for the hot path, in place of hyper's: the downstream
//! server ([`server`]) and the upstream client with its connection pool ([`client`],
//! [`pool`]). HTTP/2 stays on hyper.
//!
//! Heads are parsed by `httparse` (the parser hyper itself uses) into `http` types whose
//! header values share the bytes read; bodies stream both ways through [`decode`] and
//! [`encode`], never buffered whole. Requests go in as `http::Request<pool::Body>` and
//! responses come out as `http::Response<_>`, as with hyper, so the router is the same for
//! both codecs.

pub mod body;
pub mod client;
pub mod codec;
mod date;
pub mod decode;
pub mod encode;
pub mod io;
pub mod pool;
pub mod server;
pub mod stream;
pub mod upgrade;

#[cfg(test)]
mod tests;
