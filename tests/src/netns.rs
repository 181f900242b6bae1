//! Network namespace guard and helpers to run code / commands inside one.
//!
//! Commands run via `nsenter --net=/run/netns/NAME -- ...` rather than
//! `ip netns exec`, which remounts /sys and would hide /sys/fs/bpf where lb
//! pins its maps.

use crate::util::{self, pid_alive, run};
use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

/// Every namespace the harness creates starts with this prefix followed by
/// the creating process id: `lbt-<pid>-...`.
pub const PREFIX: &str = "lbt-";

/// A named network namespace (`ip netns add`), deleted on drop after killing
/// every process still inside it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `lbt-<pid>-<n>-<tag>` with `lo` up.
    pub fn new(tag: &str) -> Result<Self> {
        util::require_root()?;
        sweep_stale_once();
        let name = format!("{PREFIX}{}-{tag}", util::unique_id());
        run(Command::new("ip").args(["netns", "add", &name]))
            .context("`ip netns add` failed (is iproute2 installed, are we root?)")?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A Command that runs `prog` inside this namespace (nsenter, no /sys
    /// remount).
    pub fn cmd(&self, prog: impl AsRef<OsStr>) -> Command {
        ns_cmd(&self.path(), prog)
    }

    /// Run `prog args...` inside the namespace; stdout on success.
    pub fn run(&self, prog: &str, args: &[&str]) -> Result<String> {
        run(self.cmd(prog).args(args))
    }

    /// `ip -n <name> args...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Run `f` on a fresh thread that has joined this namespace; sockets it
    /// creates (and threads it spawns) stay in the namespace.
    pub fn enter<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        in_netns(&self.name, f)
    }

    /// Pids of processes inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        ns_pids(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_ns(&self.name);
    }
}

/// A Command running `prog` in the network namespace at `ns_path`.
pub fn ns_cmd(ns_path: &str, prog: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={ns_path}")).arg("--").arg(prog);
    c
}

/// Join the network namespace `name` on the *current* thread.
pub fn setns(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let f = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
    // SAFETY: valid fd, CLONE_NEWNET only affects this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        bail!("setns({path}) failed: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Run `f` on a scoped thread inside network namespace `name` and return its
/// result (a panic inside is propagated).
pub fn in_netns<T: Send, F: FnOnce() -> T + Send>(name: &str, f: F) -> T {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn_scoped(s, move || {
                setns(name).unwrap_or_else(|e| panic!("{e:#}"));
                f()
            })
            .expect("spawn thread");
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// Spawn a detached ('static) thread inside network namespace `name`.
pub fn spawn_in_netns<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
    name: &str,
    f: F,
) -> std::thread::JoinHandle<T> {
    let name = name.to_string();
    std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .stack_size(256 * 1024)
        .spawn(move || {
            setns(&name).unwrap_or_else(|e| panic!("{e:#}"));
            f()
        })
        .expect("spawn thread")
}

fn ns_pids(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kill every process in the namespace (SIGKILL, bounded retries) and delete it.
fn delete_ns(name: &str) {
    for _ in 0..50 {
        let pids = ns_pids(name);
        if pids.is_empty() {
            break;
        }
        for p in pids {
            util::signal(p, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

fn sweep_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sweep_stale);
}

/// Remove `lbt-<pid>-*` namespaces (and `/tmp/lbt-<pid>-*` scratch dirs
/// over an hour old, `/sys/fs/bpf/lb/lbt<pid>-*` pin dirs) left behind by crashed runs, i.e. whose `<pid>` is no longer
/// alive. Namespaces of concurrently running test processes are left alone.
pub fn sweep_stale() {
    let me = std::process::id();
    let list = Command::new("ip").args(["netns", "list"]).output();
    if let Ok(o) = list {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if let Some(pid) = owner_pid(name, PREFIX) {
                if pid != me && !pid_alive(pid) {
                    eprintln!("[lb-tests] removing stale namespace {name}");
                    delete_ns(name);
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Dirs of failed tests are kept for inspection: only sweep
            // those of dead processes that are over an hour old.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if let Some(pid) = owner_pid(&name, PREFIX) {
                if pid != me && !pid_alive(pid) && old {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/sys/fs/bpf/lb") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = owner_pid(&name, "lbt") {
                if pid != me && !pid_alive(pid) {
                    eprintln!("[lb-tests] removing stale pin dir /sys/fs/bpf/lb/{name}");
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// `lbt-1234-5-x` -> Some(1234) for prefix "lbt-".
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    rest.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn owner_pid_parses() {
        assert_eq!(super::owner_pid("lbt-1234-5-client", "lbt-"), Some(1234));
        assert_eq!(super::owner_pid("lbt1234-5", "lbt"), Some(1234));
        assert_eq!(super::owner_pid("other", "lbt-"), None);
    }
}
