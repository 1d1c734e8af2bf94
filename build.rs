//! Compiles proto/graven/v1/graven.proto with the vendored protoc: a clean clone needs no
//! system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("graven_descriptor.bin"))
        .compile_with_config(config, &["proto/graven/v1/graven.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
