//! `cargo xtask run -- ARGS...`: build, then exec `target/release/lb ARGS...`.
//! With the README's example (`examples/pgsql.cfg`), first bring up what it
//! balances over when it is missing: three PostgreSQL 15 clusters on
//! 127.0.0.1:5433-5435 (Debian's `pg_createcluster`), saying what is created
//! and how to remove it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;

use crate::{build, toolchain, util};

/// The example's servers: Debian cluster names and ports.
const EXAMPLE_CLUSTERS: [(&str, u16); 3] = [("lb5433", 5433), ("lb5434", 5434), ("lb5435", 5435)];

#[derive(Args)]
pub struct RunArgs {
    /// Arguments for `lb`; a leading `-f` means `lb run -f ...`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

pub fn run(args: RunArgs) -> Result<()> {
    util::require_root("`cargo xtask run`")?;
    let lb = build::build(&build::BuildArgs::default())?;
    let lb_args = lb_args(args.args);
    if runs_the_example(&lb_args) {
        example_servers()?;
    }
    let mut cmd = Command::new(&lb);
    cmd.args(&lb_args).current_dir(util::repo_root());
    println!("$ {}", util::describe(&cmd));
    // exec replaces this process, so signals (Ctrl-C) go straight to lb.
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", lb.display()))
}

/// Whether `lb_args` is `run -f .../examples/pgsql.cfg ...`.
fn runs_the_example(lb_args: &[OsString]) -> bool {
    let is_run = lb_args.first().is_some_and(|a| a == "run");
    let file = lb_args.iter().enumerate().find_map(|(i, a)| {
        let a = a.to_string_lossy();
        if a == "-f" {
            lb_args.get(i + 1).map(|f| f.to_string_lossy().into_owned())
        } else {
            a.strip_prefix("-f").map(str::to_string)
        }
    });
    is_run
        && file.is_some_and(|f| {
            let p = util::repo_root().join(&f);
            p.canonicalize().ok()
                == util::repo_root()
                    .join("examples/pgsql.cfg")
                    .canonicalize()
                    .ok()
        })
}

/// The example's three PostgreSQL clusters, created and started when missing.
fn example_servers() -> Result<()> {
    toolchain::ensure_packages(
        &[(
            "postgresql-15",
            "the example's three servers (127.0.0.1:5433-5435)",
        )],
        "examples/pgsql.cfg",
    )?;
    let list = Command::new("pg_lsclusters")
        .args(["--no-header"])
        .output()
        .context("running pg_lsclusters")?;
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    for (name, port) in EXAMPLE_CLUSTERS {
        let row = list.lines().find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"15") && f.get(1) == Some(&name)
        });
        match row {
            None => {
                println!(
                    "example: creating PostgreSQL 15 cluster '{name}' on 127.0.0.1:{port} \
                     (trust authentication on the host; remove with `pg_dropcluster --stop 15 {name}`)"
                );
                util::run(Command::new("pg_createcluster").args([
                    "15",
                    name,
                    "-p",
                    &port.to_string(),
                    "--start",
                    "--",
                    "--auth-host=trust",
                    "--auth-local=trust",
                ]))?;
            }
            Some(r) if !r.contains(" online") => {
                println!("example: starting PostgreSQL 15 cluster '{name}' ({port})");
                util::run(Command::new("pg_ctlcluster").args(["15", name, "start"]))?;
            }
            Some(_) => {}
        }
    }
    if list.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(2) == Some(&"5432") && f.get(3) == Some(&"online")
    }) {
        println!(
            "example: a PostgreSQL cluster is online on 5432, the balancer's port: lb will \
             refuse to bind it; stop it first (e.g. `pg_ctlcluster 15 main stop`)"
        );
    }
    Ok(())
}

/// `-f FILE ...` is shorthand for `run -f FILE ...`.
fn lb_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let starts_with_f = args
        .first()
        .is_some_and(|a| a.to_string_lossy().starts_with("-f"));
    if starts_with_f {
        args.insert(0, "run".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::{lb_args, runs_the_example};
    use std::ffi::OsString;

    fn v(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn leading_f_means_run() {
        assert_eq!(lb_args(v(&["-f", "x.cfg"])), v(&["run", "-f", "x.cfg"]));
        assert_eq!(lb_args(v(&["-fx.cfg"])), v(&["run", "-fx.cfg"]));
        assert_eq!(lb_args(v(&["show", "servers"])), v(&["show", "servers"]));
        assert_eq!(lb_args(v(&[])), v(&[]));
    }

    #[test]
    fn the_example_is_recognised() {
        assert!(runs_the_example(&v(&["run", "-f", "examples/pgsql.cfg"])));
        assert!(runs_the_example(&v(&[
            "run",
            "-fexamples/pgsql.cfg",
            "--no-xdp"
        ])));
        assert!(!runs_the_example(&v(&["run", "-f", "other.cfg"])));
        assert!(!runs_the_example(&v(&[
            "check",
            "-f",
            "examples/pgsql.cfg"
        ])));
    }
}
