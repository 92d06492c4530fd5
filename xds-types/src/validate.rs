//! protoc-gen-validate rules, read from the descriptors and checked on a message.
//!
//! Envoy checks every resource it receives against the `(validate.rules)` annotations of the
//! API (`MessageUtil::validate`); a resource that fails is rejected. Checking the same rules here
//! lets the controlplane refuse what Envoy would NACK, and the dataplane NACK what Envoy would.
