//! The project's own gRPC API (the controlplane's management service), compiled from `proto/`
//! by `build.rs`. The end-to-end tests of the whole system live beside it in `tests/`.

/// `xds_mesh.management.v1`: set, get and watch a node group's resources.
pub mod management {
    pub mod v1 {
        // Generated code: its lints are tonic's, not ours.
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("xds_mesh.management.v1");
    }
}
