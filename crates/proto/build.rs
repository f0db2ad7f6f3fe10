//! Compiles `proto/helpline/v1/*.proto` with protox (pure Rust, no `protoc`) and generates
//! prost messages and tonic services; writes the descriptor set for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let dir = root.join("helpline/v1");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());

    let descriptors = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("helpline_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // An envelope's sealed fields are one to three entries, decoded for every event a
        // replay reads: a B-tree of them costs no hasher, no table and no random seed.
        .btree_map(".helpline.v1.EventEnvelope.personal")
        // A sealed value's nonce and ciphertext are read once, to be opened: decoded from
        // a message's `Bytes` they are slices of it, not two copies per sealed field.
        .bytes(".helpline.v1.Sealed")
        .compile_fds(descriptors)?;
    Ok(())
}
