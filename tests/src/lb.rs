//! Guard around a running `lb run` daemon inside the lb namespace.

use crate::netns::{ns_cmd, Netns};
use crate::util::{self, describe, tail, wait_until};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The lb binary: `$LB_BIN` (set by `cargo xtask test`), else
/// `<workspace>/target/release/lb`. Fails if it does not exist.
pub fn lb_bin() -> Result<PathBuf> {
    let p = match std::env::var_os("LB_BIN") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/lb"),
    };
    if !p.is_file() {
        bail!(
            "lb binary not found at {} (set LB_BIN or build it with `cargo xtask build`)",
            p.display()
        );
    }
    Ok(p.canonicalize().unwrap_or(p))
}

/// One row of `lb show servers --json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRow {
    pub backend: String,
    pub name: String,
    /// "ip:port" ("[v6]:port" for IPv6).
    pub addr: String,
    /// "UP" | "DOWN" | "MAINT"
    pub state: String,
    /// Runtime API flags ("DRAIN", "MAINT", "NOLB", "CHECKS-PAUSED",
    /// space-separated); "" when none.
    pub admin: String,
    pub weight: u64,
    pub cur_conns: u64,
    pub total_conns: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Health-check status name (`L4OK`, `L7STS`, ...), "" without `check`
    /// (or from an lb that does not report it).
    pub check_status: String,
    /// Layer-7 code of the last check (HTTP status), 0: none.
    pub check_code: u64,
    /// Info text of the last check ("Connection refused", ...).
    pub check_info: String,
    /// Checks run so far.
    pub checks_run: u64,
    /// UP/DOWN transitions so far.
    pub state_changes: u64,
}

impl ServerRow {
    fn from_json(v: &Value) -> Result<Self> {
        let s = |k: &str| -> Result<String> {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| anyhow!("server row lacks string `{k}`: {v}"))
        };
        let n = |k: &str| -> Result<u64> {
            v.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| anyhow!("server row lacks integer `{k}`: {v}"))
        };
        Ok(ServerRow {
            backend: s("backend")?,
            name: s("name")?,
            addr: s("addr")?,
            state: s("state")?,
            admin: s("admin").unwrap_or_default(),
            weight: n("weight")?,
            cur_conns: n("cur_conns")?,
            total_conns: n("total_conns")?,
            bytes_in: n("bytes_in")?,
            bytes_out: n("bytes_out")?,
            check_status: s("check_status").unwrap_or_default(),
            check_code: n("check_code").unwrap_or(0),
            check_info: s("check_info").unwrap_or_default(),
            checks_run: n("checks_run").unwrap_or(0),
            state_changes: n("state_changes").unwrap_or(0),
        })
    }
}

/// Parse the JSON printed by `lb show servers --json`.
pub fn parse_servers(json: &str) -> Result<Vec<ServerRow>> {
    let v: Value = serde_json::from_str(json.trim())
        .with_context(|| format!("`lb show servers --json` printed invalid JSON: {json}"))?;
    let arr = v
        .as_array()
        .ok_or_else(|| anyhow!("expected a JSON array, got: {v}"))?;
    arr.iter().map(ServerRow::from_json).collect()
}

pub struct Lb {
    child: Option<Child>,
    ns_path: String,
    instance: String,
    bin: PathBuf,
    log: PathBuf,
    pub cfg: PathBuf,
}

impl Lb {
    /// Write the config into `dir`, start
    /// `nsenter --net=<ns> -- lb run -f CFG --instance X --ready-file F EXTRA...`
    /// and wait (30 s) for the ready file.
    pub fn start(ns: &Netns, dir: &Path, cfg_text: &str, extra_args: &[&str]) -> Result<Lb> {
        let instance = format!("lbt{}", util::unique_id());
        Self::start_instance(ns, dir, cfg_text, &instance, extra_args)
    }

    /// [`Lb::start`] with a chosen instance name (to restart the same
    /// instance and find what the previous daemon left).
    pub fn start_instance(
        ns: &Netns,
        dir: &Path,
        cfg_text: &str,
        instance: &str,
        extra_args: &[&str],
    ) -> Result<Lb> {
        let bin = lb_bin()?;
        let instance = instance.to_string();
        let cfg = util::write_file(dir, &format!("{instance}.cfg"), cfg_text)?;
        let ready = dir.join(format!("{instance}.ready"));
        let log = dir.join(format!("{instance}.{}.log", util::unique_id()));
        let _ = std::fs::remove_file(&ready);
        let logf = std::fs::File::create(&log)?;
        let mut cmd = ns_cmd(&ns.path(), &bin);
        cmd.arg("run")
            .arg("-f")
            .arg(&cfg)
            .args(["--instance", &instance])
            .arg("--ready-file")
            .arg(&ready)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        cmd.env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let what = describe(&cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot spawn `{what}`"))?;
        let mut lb = Lb {
            child: Some(child),
            ns_path: ns.path(),
            instance,
            bin,
            log,
            cfg,
        };
        println!(
            "[lb-tests] started lb pid {} (instance {}): {what}",
            lb.pid(),
            lb.instance
        );

        let start = Instant::now();
        loop {
            if ready.exists() {
                println!("[lb-tests] lb ready after {:?}", start.elapsed());
                return Ok(lb);
            }
            if let Some(st) = lb.child.as_mut().unwrap().try_wait()? {
                bail!(
                    "lb exited ({st}) before becoming ready; config:\n{cfg_text}\n--- log tail ({}) ---\n{}",
                    lb.log.display(),
                    lb.log_tail(60)
                );
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "lb not ready after 30 s (no {}); --- log tail ({}) ---\n{}",
                    ready.display(),
                    lb.log.display(),
                    lb.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Writes `cfg_text` over the daemon's config file, sends SIGHUP and waits
    /// (10 s) for the daemon to log the outcome; returns that log line
    /// ("reload: ..." or "reload refused ...").
    pub fn reload(&self, cfg_text: &str) -> Result<String> {
        let count = |s: &str| s.lines().filter(|l| l.contains("reload")).count();
        let before = count(&std::fs::read_to_string(&self.log).unwrap_or_default());
        std::fs::write(&self.cfg, cfg_text)?;
        // SAFETY: plain kill(2) on our child's pid.
        if unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) } != 0 {
            bail!("SIGHUP to lb: {}", std::io::Error::last_os_error());
        }
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if count(&log) > before {
                let line = log.lines().rev().find(|l| l.contains("reload"));
                return Ok(line.unwrap_or_default().to_string());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "no reload logged 10 s after SIGHUP; log tail:\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Error (with the log tail) if the daemon has exited.
    pub fn assert_alive(&mut self) -> Result<()> {
        if let Some(st) = self.child.as_mut().unwrap().try_wait()? {
            bail!(
                "lb exited unexpectedly ({st}); --- log tail ---\n{}",
                self.log_tail(60)
            );
        }
        Ok(())
    }

    /// `lb show servers --instance X --json`, run in the lb namespace.
    pub fn show_servers(&self) -> Result<Vec<ServerRow>> {
        let mut cmd = ns_cmd(&self.ns_path, &self.bin);
        cmd.args(["show", "servers", "--instance", &self.instance, "--json"]);
        let out = util::output(&mut cmd)?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}\n--- daemon log tail ---\n{}",
                describe(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end(),
                self.log_tail(30)
            );
        }
        parse_servers(&String::from_utf8_lossy(&out.stdout))
    }

    /// `lb show stats --instance X --json`, raw (kernel-side counters).
    pub fn show_stats(&self) -> Result<String> {
        let mut cmd = ns_cmd(&self.ns_path, &self.bin);
        cmd.args(["show", "stats", "--instance", &self.instance, "--json"]);
        Ok(util::run(&mut cmd)?.trim().to_string())
    }

    /// `lb show stat --instance X`: HAProxy's `show stat` CSV.
    pub fn show_stat_csv(&self) -> Result<String> {
        let mut cmd = ns_cmd(&self.ns_path, &self.bin);
        cmd.args(["show", "stat", "--instance", &self.instance]);
        util::run(&mut cmd)
    }

    /// One column of one row of `show stat` (`svname` FRONTEND, BACKEND or
    /// a server's name).
    pub fn stat_field(&self, pxname: &str, svname: &str, field: &str) -> Result<String> {
        let csv = self.show_stat_csv()?;
        let mut lines = csv.lines();
        let header = lines.next().unwrap_or_default().trim_start_matches("# ");
        let cols: Vec<&str> = header.split(',').collect();
        let col = cols
            .iter()
            .position(|c| *c == field)
            .ok_or_else(|| anyhow!("no column {field} in show stat: {header}"))?;
        for l in lines {
            let f: Vec<&str> = l.split(',').collect();
            if f.first() == Some(&pxname) && f.get(1) == Some(&svname) {
                return Ok(f.get(col).copied().unwrap_or_default().to_string());
            }
        }
        bail!("no row {pxname}/{svname} in show stat:\n{csv}")
    }

    /// `lb maps dump NAME --instance X --json`, parsed: the pinned map read
    /// straight from bpffs (works while the daemon is stopped).
    pub fn maps_dump(&self, name: &str) -> Result<serde_json::Value> {
        let mut cmd = ns_cmd(&self.ns_path, &self.bin);
        cmd.args(["maps", "dump", name, "--instance", &self.instance, "--json"]);
        let out = util::run(&mut cmd)?;
        Ok(serde_json::from_str(&out)?)
    }

    /// `lb xdp status --instance X --json`, parsed.
    pub fn xdp_status(&self) -> Result<serde_json::Value> {
        let mut cmd = ns_cmd(&self.ns_path, &self.bin);
        cmd.args(["xdp", "status", "--instance", &self.instance, "--json"]);
        let out = util::run(&mut cmd)?;
        Ok(serde_json::from_str(&out)?)
    }

    /// The row of server `name` (any backend).
    pub fn server(&self, name: &str) -> Result<ServerRow> {
        let rows = self.show_servers()?;
        rows.iter()
            .find(|r| r.name == name)
            .cloned()
            .ok_or_else(|| anyhow!("no server named {name} in show servers: {rows:?}"))
    }

    /// Poll (every 100 ms) until server `name` is in `state`; returns the time it took.
    pub fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Result<Duration> {
        wait_until(
            &format!("server {name} to be {state}"),
            timeout,
            Duration::from_millis(100),
            || Ok(self.server(name)?.state == state),
        )
        .map_err(|e| {
            let rows = self
                .show_servers()
                .map(|r| format!("{r:#?}"))
                .unwrap_or_else(|e| format!("{e:#}"));
            anyhow!("{e:#}\ncurrent servers: {rows}")
        })
    }

    /// Stop the daemon (SIGINT, 5 s, then SIGKILL) and return its exit status.
    /// Errors if it had to be killed or exited non-zero.
    pub fn stop(mut self) -> Result<ExitStatus> {
        let (st, killed) = self.shutdown();
        if killed {
            bail!(
                "lb did not exit within 5 s of SIGINT; --- log tail ---\n{}",
                self.log_tail(40)
            );
        }
        let st = st.ok_or_else(|| anyhow!("lb exit status unavailable"))?;
        if !st.success() {
            bail!(
                "lb exited with {st} after SIGINT; --- log tail ---\n{}",
                self.log_tail(40)
            );
        }
        let pins = Path::new("/sys/fs/bpf/lb").join(&self.instance);
        if pins.exists() {
            println!(
                "[lb-tests] note: pin dir {} still exists after lb exited",
                pins.display()
            );
        }
        Ok(st)
    }

    /// SIGKILL, as a crash: the daemon cleans nothing up (its pinned maps
    /// stay in bpffs).
    pub fn kill(mut self) -> Result<()> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("lb already stopped"))?;
        child.kill().context("SIGKILL to lb")?;
        child.wait().context("waiting for the killed lb")?;
        Ok(())
    }

    fn shutdown(&mut self) -> (Option<ExitStatus>, bool) {
        let Some(mut child) = self.child.take() else {
            return (None, false);
        };
        if let Ok(Some(st)) = child.try_wait() {
            return (Some(st), false);
        }
        util::signal(child.id(), libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return (Some(st), false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        (child.wait().ok(), true)
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let (st, killed) = self.shutdown();
        if killed {
            eprintln!(
                "[lb-tests] lb (instance {}) ignored SIGINT for 5 s; killed",
                self.instance
            );
        }
        crate::report::stash(format!(
            "[lb-tests] lb instance {} exit {:?}; --- log tail ({}) ---\n{}",
            self.instance,
            st,
            self.log.display(),
            self.log_tail(60)
        ));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_servers_json() {
        let rows = super::parse_servers(
            r#"[{"backend":"b","name":"s1","addr":"10.0.0.1:5432","state":"UP","weight":1,
                "cur_conns":0,"total_conns":3,"bytes_in":10,"bytes_out":20}]"#,
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].total_conns, 3);
        assert_eq!(rows[0].state, "UP");
        assert!(super::parse_servers(r#"[{"name":"x"}]"#).is_err());
    }
}
