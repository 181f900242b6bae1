//! `cargo xtask build`: toolchain check, eBPF object, then the `lb` binary.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;

use crate::{toolchain, util};

pub const BPF_TARGET: &str = "bpfel-unknown-none";

#[derive(Args, Default)]
pub struct BuildArgs {
    /// Build userspace in the debug profile (target/debug/lb); eBPF is always release.
    #[arg(long)]
    pub debug: bool,
}

/// Build everything; returns the absolute path of the `lb` binary.
pub fn build(args: &BuildArgs) -> Result<PathBuf> {
    toolchain::ensure_build_toolchain()?;
    let obj = build_ebpf()?;
    let lb = build_userspace(&obj, args.debug)?;
    println!("built: {}", lb.display());
    Ok(lb)
}

/// Absolute path of the eBPF object (whether built yet or not).
pub fn ebpf_object() -> PathBuf {
    util::repo_root()
        .join("lb-ebpf/target")
        .join(BPF_TARGET)
        .join("release/lb-ebpf")
}

/// Build lb-ebpf with Debian's cargo/rustc (see TOOLCHAIN.md).
pub fn build_ebpf() -> Result<PathBuf> {
    let rustflags = [
        "-C",
        "target-cpu=v3",
        "-C",
        "debuginfo=2",
        "-C",
        "link-arg=--btf",
    ]
    .join("\x1f");
    // bpf-linker lives in ~/.cargo/bin; rustc finds it through PATH.
    let path = util::path_with_first(&[&util::cargo_bin_dir()?])?;
    let mut cmd = Command::new("/usr/bin/cargo");
    cmd.current_dir(util::repo_root().join("lb-ebpf"))
        .args(["build", "--release", "--target", BPF_TARGET])
        // Forget the outer rustup cargo, so Debian's cargo and rustc are used.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env("PATH", path);
    util::run(&mut cmd).context("building the eBPF object (lb-ebpf) failed")?;
    let obj = ebpf_object();
    anyhow::ensure!(
        obj.is_file(),
        "eBPF build succeeded but {} is missing",
        obj.display()
    );
    println!("built: {}", obj.display());
    Ok(obj)
}

/// Build lb-user with the normal cargo, embedding the eBPF object.
pub fn build_userspace(obj: &std::path::Path, debug: bool) -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.current_dir(util::repo_root()).arg("build");
    if !debug {
        cmd.arg("--release");
    }
    cmd.args(["-p", "lb-user"]).env("LB_EBPF_OBJ", obj);
    util::run(&mut cmd).context("building lb-user failed")?;
    let profile = if debug { "debug" } else { "release" };
    Ok(util::target_dir().join(profile).join("lb"))
}
