//! Embeds the eBPF object built by `cargo xtask build` (path in `LB_EBPF_OBJ`, or the
//! default output of the lb-ebpf crate). Without it the binary still builds, so that
//! plain `cargo test`/`clippy` work, and `lb run` says how to get the object.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("lb-ebpf.o");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let default = manifest.join("../lb-ebpf/target/bpfel-unknown-none/release/lb-ebpf");
    let src = env::var_os("LB_EBPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or(default);
    println!("cargo:rerun-if-env-changed=LB_EBPF_OBJ");
    println!("cargo:rerun-if-changed={}", src.display());
    match fs::read(&src) {
        Ok(bytes) => fs::write(&out, bytes).unwrap(),
        Err(_) => fs::write(&out, b"").unwrap(),
    }
}
