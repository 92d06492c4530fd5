//! The project's own gRPC API (the controlplane's management service), compiled from `proto/`
//! by `build.rs`. The end-to-end tests of the whole system live beside it in `tests/`.
