//! Compiles the .proto files with protox (pure Rust: no system protoc), keeps
//! the file descriptor set for server reflection, and generates tonic code.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/movies/auth/v1/auth.proto",
        "proto/movies/catalog/v1/catalog.proto",
        "proto/movies/feed/v1/feed.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
