//! `cargo xtask run -- ARGS...`: build, then exec `target/release/lb ARGS...`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;

use crate::{build, util};

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
    let mut cmd = Command::new(&lb);
    cmd.args(&lb_args).current_dir(util::repo_root());
    println!("$ {}", util::describe(&cmd));
    // exec replaces this process, so signals (Ctrl-C) go straight to lb.
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", lb.display()))
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
    use super::lb_args;
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
}
