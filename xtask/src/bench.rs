//! `cargo xtask bench`: not implemented yet.

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Short run (smoke test of the benchmark harness).
    #[arg(long)]
    pub quick: bool,
}

pub fn bench(_args: &BenchArgs) -> Result<()> {
    bail!("`cargo xtask bench` is not implemented yet")
}
