//! HAProxy 2.6 (Debian's package) running a config next to lb, for tests that
//! compare the two on the same situations.

use crate::netns::Netns;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Child, Stdio};

/// `haproxy -f CFG` in a namespace; killed when dropped.
pub struct Haproxy {
    child: Child,
}

impl Haproxy {
    pub fn start(ns: &Netns, cfg: &Path) -> Result<Self> {
        let child = ns
            .cmd("haproxy")
            .arg("-f")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("haproxy (Debian package haproxy 2.6) must be installed")?;
        Ok(Self { child })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
