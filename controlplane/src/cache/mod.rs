//! The snapshot cache: the current snapshot of every node group, and which group a node is in.
//!
//! Sources (files, the management API) call [`SnapshotCache::set_groups`]; the ADS server
//! asks [`SnapshotCache::watch`] for the group of each connecting node and follows its watch
//! channel. Owned by the server side; its internals may change, this API is the seam.

pub mod node_group;
pub mod snapshot;

pub use node_group::{NodeGroup, NodeSelector};
pub use snapshot::{EncodedResource, ResourceMap, Snapshot, SnapshotError};
