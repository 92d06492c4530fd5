//! The protobuf descriptors of the whole Envoy v3 API.
//!
//! The file is the `FileDescriptorSet` that `envoy-types` 0.7.7 ships (`src/generated/types.bin`
//! in the published crate, not exported by it). It is vendored here so the descriptors and the
//! prost structs always come from the same API version: bump both together. The build strips
//! its comments (build.rs): 3.4 MB -> 0.7 MB.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prost_reflect::{DescriptorPool, MessageDescriptor};

static ENCODED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy-api.bin"));

/// The decoded pool and when it was last asked for. Decoded it takes ~17 MB and ~27 ms (~48 MB
/// and ~56 ms with the comments the build strips): a
/// long-running proxy that reads config once in a while keeps it only while it is in use
/// (see [`release_if_unused_for`]), so its resident memory is not mostly descriptors.
static CACHE: Mutex<Option<(DescriptorPool, Instant)>> = Mutex::new(None);

/// The pool holding every message of the Envoy v3 API, google.protobuf and validate (a cheap
/// handle: clones share one decoded pool).
pub fn pool() -> DescriptorPool {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let (pool, used) = cache.get_or_insert_with(|| {
        // Decoded on a thread of its own, so that glibc's malloc puts its tens of thousands
        // of allocations in that thread's arena, apart from the config being translated
        // meanwhile: once the pool is dropped and the heap trimmed, the arena gives all its
        // pages back, instead of the config's allocations pinning pages scattered through
        // the ~40 MB the pool spanned (measured: 540 KB in use holding 2.7 MB resident).
        // The vendored file is a build input, not peer or user data: failing to decode it is
        // a broken build, caught by the unit test below.
        let decode = || DescriptorPool::decode(ENCODED);
        #[allow(clippy::expect_used)]
        let pool = std::thread::scope(|s| {
            match std::thread::Builder::new()
                .name("descriptors".into())
                .spawn_scoped(s, decode)
            {
                // A panic there is passed on, as if decoded here.
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had (a process limit): decoded here, memory as before.
                Err(_) => decode(),
            }
        })
        .expect("vendored Envoy descriptor set decodes");
        (pool, Instant::now())
    });
    *used = Instant::now();
    pool.clone()
}

/// The descriptor of a message by full name (`envoy.config.cluster.v3.Cluster`).
pub fn message(full_name: &str) -> Option<MessageDescriptor> {
    pool().get_message_by_name(full_name)
}

/// The encoded descriptor set, as compiled into the binary (for callers that want to give
/// its pages back to the system while it is not needed).
pub fn encoded() -> &'static [u8] {
    ENCODED
}

/// Drops the cached pool if nobody asked for it for `idle`; true if it was dropped. The memory
/// is freed once the last descriptor handed out is dropped too; the next [`pool`] call decodes
/// it again.
pub fn release_if_unused_for(idle: Duration) -> bool {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if cache
        .as_ref()
        .is_some_and(|(_, used)| used.elapsed() >= idle)
    {
        *cache = None;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_has_the_resources_and_extensions() {
        for name in [
            "envoy.config.listener.v3.Listener",
            "envoy.config.bootstrap.v3.Bootstrap",
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "envoy.extensions.filters.http.router.v3.Router",
            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "google.protobuf.Duration",
        ] {
            assert!(message(name).is_some(), "{name} missing");
        }
        assert!(pool().get_extension_by_name("validate.rules").is_some());
    }
}
