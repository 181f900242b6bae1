//! `agent-check`: a server-side agent answers one ASCII line that changes the
//! server's weight (`75%`), administrative state (`ready`, `drain`, `maint`)
//! or operational state (`up`, `down`, `failed`, `stopped`, with an optional
//! `#reason`), as in HAProxy 2.6. A failed agent connection changes nothing:
//! reachability is the health check's business.
use std::net::SocketAddr;
use std::time::Duration;

use super::engine::Timeouts;
use crate::config::{Backend, Server};

/// Most bytes read from an agent.
pub const MAX_LINE: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPlan {
    pub target: SocketAddr,
    /// `agent-send`, sent after connecting.
    pub send: Option<Vec<u8>>,
    pub timeouts: Timeouts,
    /// The configured weight, that `N%` is relative to.
    pub weight: u32,
}

/// The agent of server `s` (None without `agent-check`).
pub fn plan(b: &Backend, s: &Server) -> Option<AgentPlan> {
    if !s.params.agent.enabled {
        return None;
    }
    let port = s.params.agent.port?;
    let inter = s.params.agent.inter.unwrap_or(Duration::from_secs(2));
    Some(AgentPlan {
        target: SocketAddr::new(
            s.params
                .agent
                .addr
                .or(s.params.check_addr)
                .unwrap_or(s.addr.ip()),
            port,
        ),
        send: s.params.agent.send.as_ref().map(|t| t.clone().into_bytes()),
        timeouts: Timeouts {
            inter,
            connect: b.timeout_connect,
            check: b.timeout_check.as_ref().map(|t| t.value),
        },
        weight: s.params.weight,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

/// What one agent line asks for (the last word of each kind wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// `N%`.
    pub weight_pct: Option<u32>,
    pub admin: Option<Admin>,
    /// Some(true): `up`; Some(false): `down`, `failed` or `stopped`.
    pub up: Option<bool>,
    /// Text after `#`.
    pub reason: Option<String>,
    /// Words lb does not know (ignored, as HAProxy does).
    pub unknown: Vec<String>,
}

/// Parses an agent line: words separated by spaces, tabs or commas, up to an
/// optional `#reason`.
pub fn parse(line: &str) -> Reply {
    let line = line.trim_end_matches(['\r', '\n']);
    let (words, reason) = match line.split_once('#') {
        Some((w, r)) => (w, Some(r.trim().to_string())),
        None => (line, None),
    };
    let mut r = Reply {
        reason,
        ..Reply::default()
    };
    for w in words
        .split([' ', '\t', ','])
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
    {
        match w.as_str() {
            "ready" => r.admin = Some(Admin::Ready),
            "drain" => r.admin = Some(Admin::Drain),
            "maint" => r.admin = Some(Admin::Maint),
            "up" => r.up = Some(true),
            "down" | "failed" | "stopped" => r.up = Some(false),
            _ => match w.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()) {
                Some(p) => r.weight_pct = Some(p),
                None => r.unknown.push(w),
            },
        }
    }
    r
}

/// The weight `pct`% of `configured` gives (HAProxy caps weights at 256).
pub fn scaled_weight(configured: u32, pct: u32) -> u32 {
    ((u64::from(configured) * u64::from(pct)).div_ceil(100)).min(256) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_lines() {
        assert_eq!(
            parse("75%\n"),
            Reply {
                weight_pct: Some(75),
                ..Reply::default()
            }
        );
        let r = parse("drain,50% ");
        assert_eq!((r.admin, r.weight_pct), (Some(Admin::Drain), Some(50)));
        let r = parse("DOWN #disk full\r\n");
        assert_eq!(r.up, Some(false));
        assert_eq!(r.reason.as_deref(), Some("disk full"));
        let r = parse("ready up 100%");
        assert_eq!(
            (r.admin, r.up, r.weight_pct),
            (Some(Admin::Ready), Some(true), Some(100))
        );
        assert_eq!(parse("maint").admin, Some(Admin::Maint));
        assert_eq!(parse("stopped").up, Some(false));
        assert_eq!(parse("failed").up, Some(false));
        assert_eq!(parse("maxconn:30 x%").unknown, ["maxconn:30", "x%"]);
        assert_eq!(parse(""), Reply::default());
    }

    #[test]
    fn weights() {
        assert_eq!(scaled_weight(4, 75), 3);
        assert_eq!(scaled_weight(100, 50), 50);
        assert_eq!(scaled_weight(1, 1), 1);
        assert_eq!(scaled_weight(200, 200), 256);
        assert_eq!(scaled_weight(10, 0), 0);
    }
}
