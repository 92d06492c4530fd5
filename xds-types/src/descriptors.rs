//! The protobuf descriptors of the whole Envoy v3 API.
//!
//! The file is the `FileDescriptorSet` that `envoy-types` 0.7.7 ships (`src/generated/types.bin`
//! in the published crate, not exported by it). It is vendored here so the descriptors and the
//! prost structs always come from the same API version: bump both together.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

static ENCODED: &[u8] = include_bytes!("../descriptors/envoy-types-0.7.7.bin");

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // The vendored file is a build input, not peer or user data: failing to decode it is a
    // broken build, caught by the unit test below.
    #[allow(clippy::expect_used)]
    DescriptorPool::decode(ENCODED).expect("vendored Envoy descriptor set decodes")
});

/// The pool holding every message of the Envoy v3 API, google.protobuf and validate.
pub fn pool() -> &'static DescriptorPool {
    &POOL
}

/// The descriptor of a message by full name (`envoy.config.cluster.v3.Cluster`).
pub fn message(full_name: &str) -> Option<MessageDescriptor> {
    POOL.get_message_by_name(full_name)
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
