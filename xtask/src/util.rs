//! Small helpers shared by the commands.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The workspace root (parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The workspace's cargo target directory (`$CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    }
}

/// `$CARGO_HOME/bin`, i.e. `~/.cargo/bin` by default: where bpf-linker lives.
pub fn cargo_bin_dir() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home).join("bin"));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo").join("bin"))
}

/// `dirs` followed by the current PATH.
pub fn path_with_first(dirs: &[&Path]) -> Result<OsString> {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let paths = dirs
        .iter()
        .map(|d| d.to_path_buf())
        .chain(std::env::split_paths(&current));
    std::env::join_paths(paths).context("cannot build PATH")
}

/// The rustup cargo that started us (`$CARGO`), else `cargo` from PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} needs root (eBPF programs, sockmap, network namespaces); re-run as root, e.g. with sudo");
    }
    Ok(())
}

/// Human-readable form of a command: `[cwd] KEY=VAL program args` (PATH omitted).
pub fn describe(cmd: &Command) -> String {
    let mut parts = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        parts.push(format!("(in {})", dir.display()));
    }
    for (key, val) in cmd.get_envs() {
        if let (Some(val), false) = (val, key == "PATH") {
            parts.push(format!("{}={:?}", key.to_string_lossy(), val));
        }
    }
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Print the command, run it with inherited stdio, fail if it does not exit 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = describe(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}
