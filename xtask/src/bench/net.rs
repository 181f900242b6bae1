//! Where the benchmark runs: the integration tests' three namespaces joined
//! by veth pairs (`netns`), or one namespace of our own where everything
//! talks over its loopback (`loopback`). Either way, every byte stays inside
//! namespaces this process created.

use std::path::Path;

use anyhow::{Context, Result};
use clap::ValueEnum;
use lb_tests::util::TempDir;
use lb_tests::{Netns, Topology, BACKENDS_V4, LB_V4};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TopologyKind {
    /// client, balancer and backend namespaces over veth pairs (the tests' topology)
    Netns,
    /// client, balancer and backends in one namespace, over its loopback
    Loopback,
}

/// Loopback variant: the balancer's address and the three backends.
const LO_LB: &str = "127.0.0.1";
const LO_BACKENDS: [&str; 3] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];

/// Ephemeral ports for outgoing connections, above every port the benchmark
/// listens on (so a client can never pick a listening port as its own).
const PORT_RANGE: &str = "net.ipv4.ip_local_port_range=15000 64999";
/// The balancer's: `data-path nat` takes its ports from above the range
/// (15,536 per server here, room for the idle-connections workload), the
/// proxies' own connections to the servers from within it.
const LB_PORT_RANGE: &str = "net.ipv4.ip_local_port_range=15000 49999";

pub enum Net {
    Veth(Topology),
    Loopback { dir: TempDir, ns: Netns },
}

impl Net {
    pub fn new(kind: TopologyKind) -> Result<Net> {
        let net = match kind {
            TopologyKind::Netns => Net::Veth(Topology::new("bench")?),
            TopologyKind::Loopback => Net::Loopback {
                dir: TempDir::new("bench")?,
                ns: Netns::new("bench-lo")?,
            },
        };
        // Hundreds of thousands of short connections: a wide port range and
        // TIME_WAIT reuse where connections are opened (client, balancer).
        // Both sysctls are per namespace.
        let lb_is_client = matches!(net, Net::Loopback { .. });
        for (ns, range) in [
            (net.client(), PORT_RANGE),
            // One namespace for all: the clients' range rules.
            (
                net.lb(),
                if lb_is_client {
                    PORT_RANGE
                } else {
                    LB_PORT_RANGE
                },
            ),
        ] {
            for setting in [range, "net.ipv4.tcp_tw_reuse=1"] {
                ns.run("sysctl", &["-q", "-w", setting])
                    .with_context(|| format!("sysctl {setting} in {}", ns.name()))?;
            }
        }
        Ok(net)
    }

    pub fn client(&self) -> &Netns {
        match self {
            Net::Veth(t) => &t.client,
            Net::Loopback { ns, .. } => ns,
        }
    }

    pub fn lb(&self) -> &Netns {
        match self {
            Net::Veth(t) => &t.lb,
            Net::Loopback { ns, .. } => ns,
        }
    }

    pub fn srv(&self) -> &Netns {
        match self {
            Net::Veth(t) => &t.srv,
            Net::Loopback { ns, .. } => ns,
        }
    }

    /// Scratch dir: configs, logs.
    pub fn dir(&self) -> &Path {
        match self {
            Net::Veth(t) => t.dir.path(),
            Net::Loopback { dir, .. } => dir.path(),
        }
    }

    /// The address the balancers bind.
    pub fn lb_addr(&self) -> &'static str {
        match self {
            Net::Veth(_) => LB_V4,
            Net::Loopback { .. } => LO_LB,
        }
    }

    pub fn backends(&self) -> [&'static str; 3] {
        match self {
            Net::Veth(_) => BACKENDS_V4,
            Net::Loopback { .. } => LO_BACKENDS,
        }
    }

    /// The veth topology, for the `direct` target's routes.
    pub fn veth(&self) -> Option<&Topology> {
        match self {
            Net::Veth(t) => Some(t),
            Net::Loopback { .. } => None,
        }
    }

    /// One line for the logs and the docs.
    pub fn describe(&self) -> String {
        match self {
            Net::Veth(t) => format!(
                "namespaces {}-{{client,lb,srv}} over veth: client 10.210.1.2 -> balancer {} ; \
                 10.210.2.1 -> backends {}",
                t.name,
                LB_V4,
                BACKENDS_V4.join(", ")
            ),
            Net::Loopback { ns, .. } => format!(
                "one namespace ({}) over its loopback: balancer {LO_LB}, backends {}",
                ns.name(),
                LO_BACKENDS.join(", ")
            ),
        }
    }
}
