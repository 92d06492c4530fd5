//! Compiles the project's own API (`proto/`) into Rust with tonic-prost-build.
//!
//! There is no `protoc` on the build machines: protox (a protobuf compiler in Rust, which ships
//! the well-known types) parses the files into descriptors that tonic-prost-build turns into
//! code. `google.protobuf.Any` maps to envoy-types' copy, so an `Any` of this API is the same
//! type as `xds_types::Any` and crosses the boundary without a conversion.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["xds_mesh/management/v1/management.proto"];
    for file in files {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .extern_path(
            ".google.protobuf.Any",
            "::envoy_types::pb::google::protobuf::Any",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
