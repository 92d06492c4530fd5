//! A connection after `101 Switching Protocols`: the downstream half (the server hands its
//! socket over once the 101 is written) and the upstream half (the client's connection the
//! 101 came on), each with the bytes already read after the head.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// A byte stream both ways.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

pub type Upgraded = Box<dyn Io>;

/// Where the upgraded stream will be delivered: in a request's or response's extensions
/// (which must be `Clone`; the stream is taken once).
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// The sending half, kept by whoever owns the connection.
pub struct Pending(oneshot::Sender<Upgraded>);

/// A pending upgrade and where it will arrive.
pub fn pending() -> (Pending, OnUpgrade) {
    let (tx, rx) = oneshot::channel();
    (Pending(tx), OnUpgrade(Arc::new(Mutex::new(Some(rx)))))
}

impl Pending {
    pub fn fulfill(self, io: Upgraded) {
        // The other side gave up (its request ended): the stream is dropped, closing it.
        let _ = self.0.send(io);
    }
}

impl OnUpgrade {
    /// An upgrade already done (the upstream half).
    pub fn ready(io: Upgraded) -> Self {
        let (tx, on) = pending();
        tx.fulfill(io);
        on
    }

    /// Waits for the stream; an error when the connection went away without upgrading.
    pub async fn get(self) -> Result<Upgraded, &'static str> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match rx {
            Some(rx) => rx
                .await
                .map_err(|_| "the connection closed without upgrading"),
            None => Err("the upgraded stream was already taken"),
        }
    }
}
