//! PostgreSQL 15 backends (Debian's packages) running in a namespace, and
//! psql / pgbench client helpers.

use crate::netns::{ns_cmd, Netns};
use crate::util::{self, describe, run, tail};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

fn pg_tool(name: &str) -> Result<PathBuf> {
    let p = Path::new(PG_BIN_DIR).join(name);
    if !p.is_file() {
        bail!(
            "{} missing: PostgreSQL 15 server is not installed (apt-get install postgresql-15; \
             `cargo xtask test` does that)",
            p.display()
        );
    }
    Ok(p)
}

fn client_tool(name: &str) -> Result<PathBuf> {
    for dir in ["/usr/bin", PG_BIN_DIR] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found (apt-get install postgresql-client-15 postgresql-15)")
}

/// One PostgreSQL cluster (data dir in a temp dir owned by `postgres`),
/// listening on the given addresses, port 5432, inside a namespace.
pub struct Postgres {
    pub name: String,
    pub listen: Vec<String>,
    ns_path: String,
    dir: PathBuf,
    running: bool,
}

impl Postgres {
    /// initdb + configure + start. Prefer [`Postgres::trio`] for three
    /// instances (one initdb, copied).
    pub fn new(ns: &Netns, name: &str, listen: &[&str]) -> Result<Postgres> {
        let template = Template::new()?;
        let pg = Self::from_template(ns, &template, name, listen)?;
        Ok(pg)
    }

    /// Three instances, one per backend address list, e.g.
    /// `[["10.210.2.11"], ["10.210.2.12"], ["10.210.2.13"]]`.
    pub fn trio(ns: &Netns, listens: [&[&str]; 3]) -> Result<Vec<Postgres>> {
        let template = Template::new()?;
        let mut v = Vec::new();
        for (i, l) in listens.iter().enumerate() {
            v.push(Self::from_template(
                ns,
                &template,
                &format!("pg{}", i + 1),
                l,
            )?);
        }
        Ok(v)
    }

    fn from_template(ns: &Netns, t: &Template, name: &str, listen: &[&str]) -> Result<Postgres> {
        let dir = std::env::temp_dir().join(format!("lbt-{}-pg-{name}", util::unique_id()));
        run(Command::new("cp").arg("-a").arg(&t.dir).arg(&dir))?;
        let conf = format!(
            "\n# lb-tests\nlisten_addresses = '{}'\nport = 5432\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n\
             shared_buffers = 16MB\nlog_connections = off\n",
            listen.join(","),
            dir.display()
        );
        append(&dir.join("data/postgresql.conf"), &conf)?;
        let pg = Postgres {
            name: name.to_string(),
            listen: listen.iter().map(|s| s.to_string()).collect(),
            ns_path: ns.path(),
            dir,
            running: false,
        };
        let mut pg = pg;
        pg.start()?;
        Ok(pg)
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut c = ns_cmd(&self.ns_path, "runuser");
        c.args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN_DIR).join("pg_ctl"));
        c.arg("-D").arg(self.dir.join("data")).args(args);
        c
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// `pg_ctl start -w` (waits until it accepts connections, 30 s max).
    pub fn start(&mut self) -> Result<()> {
        let log = self.log_path();
        let mut c = self.pg_ctl(&["-w", "-t", "30", "-l"]);
        c.arg(&log).arg("start");
        // pg_ctl's children inherit stdout/stderr; keep them off our pipes.
        c.stdout(std::fs::File::create(self.dir.join("pg_ctl.out"))?);
        c.stderr(std::fs::File::create(self.dir.join("pg_ctl.err"))?);
        c.stdin(std::process::Stdio::null());
        let st = c
            .status()
            .with_context(|| format!("cannot run `{}`", describe(&c)))?;
        if !st.success() {
            bail!(
                "postgres {} failed to start ({st}): {}\n--- log tail ---\n{}",
                self.name,
                std::fs::read_to_string(self.dir.join("pg_ctl.err")).unwrap_or_default(),
                tail(&log, 30)
            );
        }
        self.running = true;
        Ok(())
    }

    /// `pg_ctl stop -m fast` (waits).
    pub fn stop(&mut self) -> Result<()> {
        self.stop_mode("fast")
    }

    pub fn stop_mode(&mut self, mode: &str) -> Result<()> {
        run(&mut self.pg_ctl(&["-w", "-t", "30", "-m", mode, "stop"]))?;
        self.running = false;
        Ok(())
    }

    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// Replaces pg_hba.conf with `rules` (first match wins) and reloads.
    pub fn set_hba(&mut self, rules: &str) -> Result<()> {
        let path = self.dir.join("data/pg_hba.conf");
        std::fs::write(&path, rules).with_context(|| format!("writing {}", path.display()))?;
        if self.running {
            run(&mut self.pg_ctl(&["reload"]))?;
            // The postmaster rereads the file asynchronously.
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), listening on
    /// `listen`, started.
    pub fn standby_of(
        ns: &Netns,
        primary: &Postgres,
        name: &str,
        listen: &[&str],
    ) -> Result<Postgres> {
        let dir = std::env::temp_dir().join(format!("lbt-{}-pg-{name}", util::unique_id()));
        std::fs::create_dir_all(&dir)?;
        run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        let mut c = ns_cmd(&ns.path(), "runuser");
        c.args(["-u", "postgres", "--"])
            .arg(pg_tool("pg_basebackup")?)
            .args([
                "-h",
                &primary.listen[0],
                "-p",
                "5432",
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-D",
            ])
            .arg(dir.join("data"));
        run(&mut c).context("pg_basebackup from the primary")?;
        let conf = format!(
            "\n# lb-tests standby\nlisten_addresses = '{}'\nunix_socket_directories = '{}'\nhot_standby = on\n",
            listen.join(","),
            dir.display()
        );
        append(&dir.join("data/postgresql.conf"), &conf)?;
        let mut pg = Postgres {
            name: name.to_string(),
            listen: listen.iter().map(|s| s.to_string()).collect(),
            ns_path: ns.path(),
            dir,
            running: false,
        };
        pg.start()?;
        Ok(pg)
    }

    /// `pg_ctl promote -w`: the standby becomes a primary.
    pub fn promote(&mut self) -> Result<()> {
        run(&mut self.pg_ctl(&["-w", "-t", "30", "promote"]))?;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = util::output(&mut self.pg_ctl(&["-w", "-t", "10", "-m", "immediate", "stop"]));
        }
        crate::report::stash(format!(
            "[lb-tests] postgres {} log tail:\n{}",
            self.name,
            tail(&self.log_path(), 8)
        ));
        crate::report::defer_remove(self.dir.clone());
    }
}

/// An initdb'ed data dir (trust auth, connections from anywhere) copied
/// for each instance.
struct Template {
    dir: PathBuf,
}

impl Template {
    fn new() -> Result<Template> {
        util::require_root()?;
        let initdb = pg_tool("initdb")?;
        pg_tool("pg_ctl")?;
        pg_tool("postgres")?;
        let dir = std::env::temp_dir().join(format!("lbt-{}-pgtemplate", util::unique_id()));
        std::fs::create_dir_all(&dir)?;
        let t = Template { dir };
        run(Command::new("chown").arg("postgres:postgres").arg(&t.dir))
            .context("chown to postgres (does the postgres user exist?)")?;
        let start = Instant::now();
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&initdb)
            .arg("-D")
            .arg(t.dir.join("data"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .env("LC_ALL", "C"))?;
        append(
            &t.dir.join("data/pg_hba.conf"),
            "\nhost all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n",
        )?;
        // TLS as Debian's own clusters have it (ssl = on with a self-signed
        // certificate): psql then negotiates TLS unless told not to, and a
        // TLS session ends differently from a plain one (the server's
        // close_notify meets a client that already closed).
        let data = t.dir.join("data");
        run(Command::new("runuser")
            .args(["-u", "postgres", "--", "openssl", "req", "-x509", "-newkey"])
            .args([
                "rsa:2048",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                "/CN=lb-tests",
            ])
            .arg("-keyout")
            .arg(data.join("server.key"))
            .arg("-out")
            .arg(data.join("server.crt")))
        .context("a self-signed certificate for the test PostgreSQL (is openssl installed?)")?;
        append(&data.join("postgresql.conf"), "\nssl = on\n")?;
        println!("[lb-tests] initdb took {:?}", start.elapsed());
        Ok(t)
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Outcome of a psql run.
#[derive(Debug)]
pub struct PsqlResult {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// `psql -h HOST -p PORT -U postgres -X -tA -c SQL postgres` inside `ns`
/// (connect timeout 5 s), without TLS. Never errors on a failed query: look
/// at `ok`.
pub fn psql(ns: &Netns, host: &str, port: u16, sql: &str) -> Result<PsqlResult> {
    psql_ssl(ns, host, port, sql, "disable")
}

/// [`psql`] with `PGSSLMODE` = `sslmode` (`require`: over TLS).
pub fn psql_ssl(ns: &Netns, host: &str, port: u16, sql: &str, sslmode: &str) -> Result<PsqlResult> {
    psql_with(ns, host, port, sql, sslmode, 5)
}

/// [`psql_ssl`] with a connect timeout of `connect_secs`.
pub fn psql_with(
    ns: &Netns,
    host: &str,
    port: u16,
    sql: &str,
    sslmode: &str,
    connect_secs: u32,
) -> Result<PsqlResult> {
    let bin = client_tool("psql")?;
    let mut c = ns.cmd(&bin);
    c.args([
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-X",
        "-tA",
    ])
    .args(["-v", "ON_ERROR_STOP=1", "-c", sql, "postgres"])
    .env("PGCONNECT_TIMEOUT", connect_secs.to_string())
    .env("PGSSLMODE", sslmode);
    let start = Instant::now();
    let out = util::output(&mut c)?;
    Ok(PsqlResult {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        elapsed: start.elapsed(),
    })
}

/// psql that must succeed; returns trimmed stdout.
pub fn psql_ok(ns: &Netns, host: &str, port: u16, sql: &str) -> Result<String> {
    let r = psql(ns, host, port, sql)?;
    if !r.ok {
        bail!(
            "psql -h {host} -p {port} -c {sql:?} failed after {:?}: {}",
            r.elapsed,
            r.stderr
        );
    }
    Ok(r.stdout)
}

/// `pgbench ARGS... -U postgres postgres` in `ns`; must succeed. Returns stdout.
pub fn pgbench(ns: &Netns, args: &[&str]) -> Result<String> {
    let bin = client_tool("pgbench")?;
    let mut c = ns.cmd(&bin);
    c.args(args)
        .args(["-U", "postgres", "postgres"])
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGSSLMODE", "disable");
    run(&mut c)
}

/// Parse pgbench's report: (tps, failed transactions).
pub fn parse_pgbench(out: &str) -> Result<(f64, u64)> {
    let mut tps = None;
    let mut failed = 0u64;
    for line in out.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("tps = ") {
            if tps.is_none() {
                tps = rest
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<f64>().ok());
            }
        }
        if let Some(rest) = l.strip_prefix("number of failed transactions: ") {
            failed = rest
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(u64::MAX);
        }
    }
    match tps {
        Some(t) => Ok((t, failed)),
        None => bail!("no `tps = ` line in pgbench output:\n{out}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_pgbench() {
        let out = "transaction type: <builtin: select only>\nnumber of failed transactions: 0 (0.000%)\n\
                   latency average = 0.5 ms\ntps = 15234.123456 (without initial connection time)\n";
        let (tps, failed) = super::parse_pgbench(out).unwrap();
        assert!(tps > 15000.0);
        assert_eq!(failed, 0);
    }
}
