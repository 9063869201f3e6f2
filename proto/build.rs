//! Compiles `proto/*.proto` with the protoc that `protoc-bin-vendored` ships, so that no system
//! protoc is needed, and writes the descriptor set that server reflection serves.

use std::{env, path::PathBuf};

const PROTOS: [&str; 6] = [
    "proto/order_queue.proto",
    "proto/raft.proto",
    "proto/order.proto",
    "proto/fraud_detection.proto",
    "proto/transaction_verification.proto",
    "proto/suggestions.proto",
];

/// etcd's own API, the part the benchmark drives: a client only, and kept out of the descriptor
/// set, since no service of ours serves it.
const ETCD_PROTO: &str = "proto/etcd_kv.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;

    let mut config = prost_build::Config::new();
    config.protoc_executable(&protoc);
    // The card's Debug is written by hand so that a `{:?}` of an order never prints the number.
    config.skip_debug(["bookstore.CreditCard"]);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("bookstore_descriptor.bin"))
        .compile_with_config(config, &PROTOS, &["proto"])?;

    let mut etcd_config = prost_build::Config::new();
    etcd_config.protoc_executable(&protoc);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(etcd_config, &[ETCD_PROTO], &["proto"])?;

    for proto in PROTOS.iter().chain([&ETCD_PROTO]) {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
