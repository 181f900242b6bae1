//! Small process / file helpers shared by the harness.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short string unique within this machine for the lifetime of this
/// process: `<pid>-<counter>`. Every resource the harness creates (network
/// namespaces, lb instances, temp dirs) carries the pid so that a later run
/// can tell leftovers of a crashed run (dead pid) from a concurrent run.
pub fn unique_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}", std::process::id(), n)
}

/// Fail (never skip) unless we are root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "lb-tests need root (network namespaces, eBPF); euid is {euid}. \
             Run them with `cargo xtask test` as root."
        );
    }
    Ok(())
}

/// A cgroup v2 hierarchy mounted somewhere, as on every systemd host: lb
/// attaches its connection-counting `sock_ops` program there. Mounts one
/// under /run/lb-tests when the host has none (the tests then run as on a
/// systemd host); fails if that is impossible.
pub fn ensure_cgroup2() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(2) == Some("cgroup2"))
    {
        return Ok(());
    }
    let dir = Path::new("/run/lb-tests/cgroup2");
    std::fs::create_dir_all(dir)?;
    run(Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(dir))
    .context("mounting a cgroup v2 hierarchy (the kernel needs CONFIG_CGROUPS and cgroup v2)")?;
    println!("[lb-tests] mounted cgroup2 at {}", dir.display());
    Ok(())
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (the blast tests open
/// hundreds of sockets in this process; children such as lb inherit it).
pub fn raise_nofile() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// A command line for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command to completion; error (with stdout/stderr) unless it exits 0.
/// Returns stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\nstdout: {}\nstderr: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a command to completion and return its Output whatever the exit code.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null());
    cmd.output()
        .with_context(|| format!("cannot run `{}`", describe(cmd)))
}

/// Poll `f` every `interval` until it returns true or `timeout` passes.
/// Returns the time it took. `what` names the condition in the error.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match f() {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() >= timeout {
            return Err(match last_err {
                Some(e) => {
                    anyhow!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(interval);
    }
}

/// The last `n` lines of a (log) file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// A temporary directory `/tmp/lbt-<pid>-<n>-<tag>`; on drop it is handed to
/// [`crate::report`], which removes it if the test passes and keeps it
/// otherwise (dirs of dead processes are swept at the next run).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("lbt-{}-{tag}", unique_id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        crate::report::defer_remove(self.path.clone());
    }
}

/// Write a config file `<dir>/<name>` and return its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

/// Is a process with this pid alive?
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Send a signal, ignoring errors (the process may be gone already).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we own; errors ignored on purpose.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// `GET /metrics` from lb's Prometheus endpoint at `addr` (call it inside the
/// namespace lb runs in): the exposition text, or an error naming the status.
pub fn scrape_metrics(addr: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connecting {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP body: {out}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("metrics answered {head}");
    }
    Ok(body.to_string())
}

/// One runtime API request through `socat`, as an operator's script sends it:
/// the whole answer.
pub fn socat(sock: &Path, input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("socat")
        .args(["-t", "5", "-"])
        .arg(format!("UNIX-CONNECT:{}", sock.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("socat (Debian package socat) must be installed")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("socat stdin"))?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "socat {input:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether TCP segmentation offload is on for `iface` in the current network
/// namespace (`ETHTOOL_GTSO`, as `ethtool -k` shows it). A veth whose peer
/// runs native XDP loses it (drivers/net/veth.c, `veth_xdp_set`).
pub fn tso_on(iface: &str) -> anyhow::Result<bool> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GTSO: u32 = 0x1e;
    #[repr(C)]
    struct Value {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut Value,
        _pad: [u8; 16],
    }
    anyhow::ensure!(
        !iface.is_empty() && iface.len() < libc::IFNAMSIZ,
        "bad interface name '{iface}'"
    );
    let mut v = Value {
        cmd: ETHTOOL_GTSO,
        data: 0,
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut v,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req) };
    let err = std::io::Error::last_os_error();
    unsafe { libc::close(fd) };
    anyhow::ensure!(r == 0, "ETHTOOL_GTSO on {iface}: {err}");
    Ok(v.data != 0)
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `ss -Hltn` in `ns` (every 20 ms, at most `timeout`) until every
/// address of `addrs` has a listener.
pub fn wait_listening(
    ns: &crate::netns::Netns,
    addrs: &[std::net::SocketAddr],
    timeout: Duration,
) -> Result<Duration> {
    wait_until(
        &format!("listeners on {addrs:?}"),
        timeout,
        Duration::from_millis(20),
        || {
            let out = ns.run("ss", &["-Hltn"])?;
            Ok(addrs
                .iter()
                .all(|a| out.split_whitespace().any(|w| w == a.to_string())))
        },
    )
}
