//! Compiles the .proto files under `proto/` with protox (pure Rust, so no
//! system `protoc` is needed) and generates prost messages plus tonic
//! clients and servers from the resulting descriptor set.

use std::path::Path;

const INCLUDE: &str = "proto";

const PROTOS: &[&str] = &[
    "etcd/mvccpb/kv.proto",
    "etcd/etcdserverpb/rpc.proto",
    "skiff/store.proto",
    "skiff/raft.proto",
    "skiff/agent.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `compile_fds` does not emit rerun-if-changed lines itself.
    println!("cargo:rerun-if-changed={INCLUDE}");
    for proto in PROTOS {
        println!(
            "cargo:rerun-if-changed={}",
            Path::new(INCLUDE).join(proto).display()
        );
    }

    let fds = protox::compile(PROTOS, [INCLUDE])?;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
