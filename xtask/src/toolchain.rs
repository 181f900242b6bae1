//! Make sure the build and test dependencies are installed (Debian 12).
//!
//! The recipe is the one in the shared TOOLCHAIN.md notes: Debian's rustc 1.96
//! (`rustc-web`) with its prebuilt `core` for bpfel-unknown-none, and
//! bpf-linker 0.13.0 built against Debian's LLVM 22.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};

use crate::util::{self, cargo_bin_dir, is_root};

/// Debian packages the eBPF build needs, with the reason shown when installing.
pub const BUILD_PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "Debian's rustc 1.96 (/usr/bin/rustc) compiles the eBPF crate",
    ),
    (
        "cargo-web",
        "Debian's cargo (/usr/bin/cargo) drives the eBPF build",
    ),
    (
        "libstd-rust-web-dev-bpf",
        "prebuilt `core` for bpfel-unknown-none (no nightly, no -Z build-std)",
    ),
    ("llvm-22-dev", "bpf-linker is built against LLVM 22"),
    (
        "libpolly-22-dev",
        "linked by LLVM 22 when building bpf-linker",
    ),
    ("zlib1g-dev", "linked by LLVM 22 when building bpf-linker"),
    ("libzstd-dev", "linked by LLVM 22 when building bpf-linker"),
];

/// Debian packages the integration tests use.
pub const TEST_PACKAGES: &[(&str, &str)] = &[
    (
        "postgresql-15",
        "PostgreSQL server used as a backend in integration tests",
    ),
    (
        "postgresql-client-15",
        "psql / pgbench clients for integration tests",
    ),
    (
        "iproute2",
        "`ip netns` / `ip link` for the test network namespaces",
    ),
    (
        "util-linux",
        "unshare / nsenter for the test network namespaces",
    ),
    (
        "haproxy",
        "reference load balancer the tests compare against",
    ),
    ("iperf3", "bulk TCP traffic through the load balancer"),
    (
        "dnsmasq-base",
        "a DNS server in the test's namespace for `resolvers` and `server-template`",
    ),
    (
        "nftables",
        "the kernel's own NAT, the benchmark's peer of lb's NAT path",
    ),
    ("socat", "simple TCP clients and servers in tests"),
    (
        "openssl",
        "certificates, TLS clients and servers (psql over TLS, SNI routing)",
    ),
    (
        "chromium",
        "a real browser (headless) looks at the stats page in a test",
    ),
    ("curl", "HTTP requests to the stats page in tests"),
    (
        "netsniff-ng",
        "trafgen: the bounded spoofed SYN flood of the XDP tests",
    ),
    (
        "prometheus",
        "promtool check metrics validates lb's Prometheus endpoint",
    ),
    ("procps", "ps / pkill / sysctl used by the tests"),
    (
        "redis-server",
        "Redis server for the redis-check health-check test",
    ),
    (
        "mariadb-server",
        "MariaDB server for the mysql-check health-check test",
    ),
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// Everything `cargo xtask build` needs: Debian packages, then bpf-linker.
pub fn ensure_build_toolchain() -> Result<()> {
    ensure_packages(BUILD_PACKAGES, "building the eBPF programs")?;
    for tool in ["/usr/bin/rustc", "/usr/bin/cargo"] {
        if !Path::new(tool).exists() {
            bail!("{tool} is missing although rustc-web/cargo-web are installed; reinstall them");
        }
    }
    ensure_bpf_linker()
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

fn is_installed(pkg: &str) -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .context("cannot run dpkg-query: lb's build expects Debian 12 (bookworm)")?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

/// Install whichever of `packages` is missing, saying what and why.
pub fn ensure_packages(packages: &[(&str, &str)], purpose: &str) -> Result<()> {
    let mut missing = Vec::new();
    for &(pkg, why) in packages {
        if !is_installed(pkg)? {
            missing.push((pkg, why));
        }
    }
    if missing.is_empty() {
        println!(
            "deps: all {} Debian packages for {purpose} are installed",
            packages.len()
        );
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    if !is_root() {
        bail!(
            "missing Debian packages for {purpose}: {}; re-run as root so xtask can install them, \
             or run `apt-get install -y {}` yourself",
            names.join(", "),
            names.join(" ")
        );
    }
    println!("deps: installing Debian packages for {purpose}:");
    for (pkg, why) in &missing {
        println!("  {pkg:<26} {why}");
    }
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        util::run(Command::new("apt-get").arg("update"))
            .context("`apt-get update` failed (network? apt sources?)")?;
    }
    util::run(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&names)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| {
        format!(
            "cannot install {} (rustc-web and llvm-22 come from bookworm-security: is it in the apt sources?)",
            names.join(", ")
        )
    })?;
    let still: Vec<&str> = names
        .iter()
        .copied()
        .filter(|p| !is_installed(p).unwrap_or(false))
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

/// bpf-linker 0.13.0 in ~/.cargo/bin, built against Debian's LLVM 22.
fn ensure_bpf_linker() -> Result<()> {
    let bin_dir = cargo_bin_dir()?;
    let linker = bin_dir.join("bpf-linker");
    let found = Command::new(&linker)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match found {
        Some(v) if v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) => {
            println!("deps: {v} found in {}", bin_dir.display());
            return Ok(());
        }
        Some(v) => println!("deps: found {v}, need {BPF_LINKER_VERSION}: reinstalling"),
        None => println!(
            "deps: installing bpf-linker {BPF_LINKER_VERSION} into {} (links the eBPF object; built against LLVM 22, takes ~30 s)",
            bin_dir.display()
        ),
    }
    let path = util::path_with_first(&[Path::new(LLVM_BIN)])?;
    util::run(
        util::cargo()
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22", "--force"])
            .env("PATH", path),
    )
    .with_context(|| {
        format!("cannot install bpf-linker {BPF_LINKER_VERSION} (needs llvm-22-dev and network access to crates.io)")
    })?;
    Ok(())
}
