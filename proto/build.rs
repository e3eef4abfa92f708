//! Compiles the gRPC schema with a protoc binary vendored through crates.io,
//! so a build needs nothing installed beyond cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .bytes(".")
        .type_attribute(
            ".remote_gopls.v1.StatusResponse",
            "#[derive(serde::Serialize)]",
        )
        .type_attribute(
            ".remote_gopls.v1.WorkspaceStatus",
            "#[derive(serde::Serialize)]",
        )
        .type_attribute(
            ".remote_gopls.v1.InstanceStatus",
            "#[derive(serde::Serialize)]",
        )
        .compile_protos(&["proto/remote_gopls/v1/tunnel.proto"], &["proto"])?;
    Ok(())
}
