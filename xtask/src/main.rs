//! `cargo xtask`: builds, runs and tests lb on a Debian 12 machine.
//!
//! The eBPF half is built with Debian's rustc (see the shared TOOLCHAIN.md notes
//! and `build.rs`), userspace with the normal rustup cargo.

mod bench;
mod build;
mod run;
mod test;
mod toolchain;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test lb"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install missing toolchain pieces, build the eBPF object and the `lb` binary.
    Build(build::BuildArgs),
    /// Build, then run `target/release/lb ARGS...` (as root).
    ///
    /// `cargo xtask run -- -f examples/pgsql.cfg` runs `lb run -f examples/pgsql.cfg`.
    Run(run::RunArgs),
    /// Every test: fmt, clippy, unit tests, privileged integration tests.
    Test(test::TestArgs),
    /// Benchmarks: lb vs direct vs HAProxy, in one run (`--quick`, `--repeat N`).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build::build(&args).map(|_| ()),
        Command::Run(args) => run::run(args),
        Command::Test(args) => test::test(&args),
        Command::Bench(args) => bench::bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
