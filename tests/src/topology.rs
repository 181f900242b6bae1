//! The three-namespace test topology:
//!
//! ```text
//!  [client ns]                 [lb ns]                      [srv ns]
//!  eth0 10.210.1.2   <->  eth-c 10.210.1.1
//!       fd10:210:1::2           fd10:210:1::1
//!                             eth-s 10.210.2.1      <->  eth0 10.210.2.11/.12/.13
//!                                   fd10:210:2::1             fd10:210:2::11/::12/::13
//! ```
//!
//! Only connected routes: the client only talks to the balancer's address,
//! and the balancer connects to the backends from its own 10.210.2.1, so no
//! forwarding and no default route anywhere. Nothing leaves these namespaces.

use crate::lb::Lb;
use crate::netns::Netns;
use crate::util::{self, wait_until, TempDir};
use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const CLIENT_V4: &str = "10.210.1.2";
pub const LB_V4: &str = "10.210.1.1";
pub const LB_SRV_V4: &str = "10.210.2.1";
pub const BACKENDS_V4: [&str; 3] = ["10.210.2.11", "10.210.2.12", "10.210.2.13"];

pub const CLIENT_V6: &str = "fd10:210:1::2";
pub const LB_V6: &str = "fd10:210:1::1";
pub const LB_SRV_V6: &str = "fd10:210:2::1";
pub const BACKENDS_V6: [&str; 3] = ["fd10:210:2::11", "fd10:210:2::12", "fd10:210:2::13"];

/// `ip` + `port` -> SocketAddr (IPv4 or IPv6 literal without brackets).
pub fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().expect("ip literal"), port)
}

/// HAProxy-style `ip:port` (IPv6 in brackets).
pub fn hp(ip: &str, port: u16) -> String {
    sa(ip, port).to_string()
}

pub struct Topology {
    pub name: String,
    /// Per-topology scratch dir: configs, logs, ready files.
    pub dir: TempDir,
    // Field order = drop order: namespaces go after everything else.
    pub client: Netns,
    pub lb: Netns,
    pub srv: Netns,
}

impl Topology {
    pub fn new(name: &str) -> Result<Self> {
        util::require_root()?;
        util::raise_nofile();
        let dir = TempDir::new(name)?;
        let client = Netns::new(&format!("{name}-client"))?;
        let lb = Netns::new(&format!("{name}-lb"))?;
        let srv = Netns::new(&format!("{name}-srv"))?;

        // veth pairs created directly inside the namespaces (no names in the
        // root namespace, so concurrent runs cannot collide).
        client
            .ip(&[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth-c",
                "netns",
                lb.name(),
            ])
            .context("creating the client<->lb veth pair")?;
        lb.ip(&[
            "link",
            "add",
            "eth-s",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            srv.name(),
        ])
        .context("creating the lb<->srv veth pair")?;

        client.ip(&["addr", "add", &format!("{CLIENT_V4}/24"), "dev", "eth0"])?;
        client.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{CLIENT_V6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        lb.ip(&["addr", "add", &format!("{LB_V4}/24"), "dev", "eth-c"])?;
        lb.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{LB_V6}/64"),
            "dev",
            "eth-c",
            "nodad",
        ])?;
        lb.ip(&["addr", "add", &format!("{LB_SRV_V4}/24"), "dev", "eth-s"])?;
        lb.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{LB_SRV_V6}/64"),
            "dev",
            "eth-s",
            "nodad",
        ])?;
        for (v4, v6) in BACKENDS_V4.iter().zip(BACKENDS_V6.iter()) {
            srv.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"])?;
            srv.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?;
        }
        client.ip(&["link", "set", "eth0", "up"])?;
        lb.ip(&["link", "set", "eth-c", "up"])?;
        lb.ip(&["link", "set", "eth-s", "up"])?;
        srv.ip(&["link", "set", "eth0", "up"])?;

        let topo = Topology {
            name: name.to_string(),
            dir,
            client,
            lb,
            srv,
        };
        topo.wait_ready()?;
        Ok(topo)
    }

    /// Wait until every veth is operationally UP and no IPv6 address is
    /// tentative (nodad should make that immediate).
    fn wait_ready(&self) -> Result<()> {
        let links = [
            (&self.client, "eth0"),
            (&self.lb, "eth-c"),
            (&self.lb, "eth-s"),
            (&self.srv, "eth0"),
        ];
        for (ns, dev) in links {
            wait_until(
                &format!("{dev} in {} to be UP with usable IPv6", ns.name()),
                Duration::from_secs(10),
                Duration::from_millis(50),
                || {
                    let link = ns.ip(&["-o", "link", "show", "dev", dev])?;
                    let tentative =
                        ns.ip(&["-6", "-o", "addr", "show", "dev", dev, "tentative"])?;
                    let v6 = ns.ip(&["-6", "-o", "addr", "show", "dev", dev, "scope", "global"])?;
                    Ok(link.contains("state UP")
                        && tentative.trim().is_empty()
                        && !v6.trim().is_empty())
                },
            )?;
        }
        Ok(())
    }

    /// Write `<dir>/<file>` (an lb config usually).
    pub fn write_cfg(&self, file: &str, text: &str) -> Result<PathBuf> {
        util::write_file(self.dir.path(), file, text)
    }

    /// Start lb in the lb namespace with this config text and extra `run` args.
    pub fn start_lb(&self, cfg_text: &str, extra_args: &[&str]) -> Result<Lb> {
        Lb::start(&self.lb, self.dir.path(), cfg_text, extra_args)
    }

    /// [`Topology::start_lb`] with a chosen instance name.
    pub fn start_lb_instance(
        &self,
        cfg_text: &str,
        instance: &str,
        extra_args: &[&str],
    ) -> Result<Lb> {
        Lb::start_instance(&self.lb, self.dir.path(), cfg_text, instance, extra_args)
    }

    /// Run `f` on a thread in the client namespace.
    pub fn in_client<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        self.client.enter(f)
    }

    /// Run `f` on a thread in the server namespace.
    pub fn in_srv<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        self.srv.enter(f)
    }

    /// Run `f` on a thread in the balancer namespace.
    pub fn in_lb<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        self.lb.enter(f)
    }
}
