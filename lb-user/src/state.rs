//! Runtime server state: what health checks decide, what connections count, and
//! the backend choice. Published to the SRV_STATE map, which is what `lb show`
//! and later restarts read.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use lb_common::{ServerMeta, ServerState, SRV_DOWN, SRV_MAINT, SRV_UP};

use crate::config::{CheckParams, Config};

/// One configured server, shared by the accept path, health checks and the splice
/// manager.
#[derive(Debug)]
pub struct Server {
    /// Global index (slot in the server maps).
    pub idx: u32,
    pub backend: String,
    pub name: String,
    pub addr: SocketAddr,
    pub check: Option<CheckParams>,
    pub state: AtomicU32,
    pub weight: AtomicU32,
    pub health: AtomicU32,
    pub cur_conns: AtomicU32,
    pub total_conns: AtomicU64,
    pub user_bytes_in: AtomicU64,
    pub user_bytes_out: AtomicU64,
    pub last_check: AtomicU32,
    pub check_us: AtomicU32,
    pub checks_failed: AtomicU64,
    pub state_changes: AtomicU64,
}

impl Server {
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == SRV_UP
    }

    pub fn snapshot(&self) -> ServerState {
        ServerState {
            state: self.state.load(Ordering::Relaxed),
            weight: self.weight.load(Ordering::Relaxed),
            health: self.health.load(Ordering::Relaxed),
            cur_conns: self.cur_conns.load(Ordering::Relaxed),
            total_conns: self.total_conns.load(Ordering::Relaxed),
            user_bytes_in: self.user_bytes_in.load(Ordering::Relaxed),
            user_bytes_out: self.user_bytes_out.load(Ordering::Relaxed),
            last_check: self.last_check.load(Ordering::Relaxed),
            check_us: self.check_us.load(Ordering::Relaxed),
            checks_failed: self.checks_failed.load(Ordering::Relaxed),
            state_changes: self.state_changes.load(Ordering::Relaxed),
        }
    }

    pub fn meta(&self) -> ServerMeta {
        let mut m = ServerMeta::default();
        copy_str(&mut m.name, &self.name);
        copy_str(&mut m.backend, &self.backend);
        match self.addr {
            SocketAddr::V4(a) => {
                m.family = lb_common::AF_INET;
                m.addr_be[..4].copy_from_slice(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                m.family = lb_common::AF_INET6;
                m.addr_be.copy_from_slice(&a.ip().octets());
            }
        }
        m.port_host = self.addr.port() as u32;
        m.in_use = 1;
        m
    }
}

/// NUL-padded copy, truncated on a char boundary.
pub fn copy_str(dst: &mut [u8], s: &str) {
    let mut n = s.len().min(dst.len() - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

pub fn read_str(src: &[u8]) -> String {
    let end = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..end]).into_owned()
}

/// Smooth weighted round robin (each pick adds every weight to its server's
/// current value, takes the largest and subtracts the total): weights are honoured
/// exactly over a cycle and picks of one server are spread out, not bunched.
#[derive(Debug, Default)]
pub struct RoundRobin {
    current: Vec<i64>,
}

impl RoundRobin {
    /// `weights[i]` is 0 for a server that must not be chosen (down, drained).
    pub fn pick(&mut self, weights: &[u32]) -> Option<usize> {
        if self.current.len() != weights.len() {
            self.current = vec![0; weights.len()];
        }
        let total: i64 = weights.iter().map(|&w| w as i64).sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        for (i, &w) in weights.iter().enumerate() {
            if w == 0 {
                self.current[i] = 0;
                continue;
            }
            self.current[i] += w as i64;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

#[derive(Debug)]
pub struct BackendState {
    pub name: String,
    /// Global server indexes of this backend's servers.
    pub servers: Vec<u32>,
    rr: Mutex<RoundRobin>,
}

/// All servers and backends of the running config.
#[derive(Debug)]
pub struct State {
    pub servers: Vec<Server>,
    pub backends: Vec<BackendState>,
}

impl State {
    pub fn from_config(cfg: &Config) -> Self {
        let mut servers = Vec::new();
        let mut backends = Vec::new();
        for b in &cfg.backends {
            let mut idxs = Vec::new();
            for s in &b.servers {
                let idx = servers.len() as u32;
                idxs.push(idx);
                let check = s.check.then_some(s.check_params);
                let (state, health) = if s.disabled {
                    (SRV_MAINT, 0)
                } else {
                    // HAProxy starts servers UP with health = rise: up, but the
                    // first failed check takes them down.
                    (SRV_UP, s.check_params.rise)
                };
                servers.push(Server {
                    idx,
                    backend: b.name.clone(),
                    name: s.name.clone(),
                    addr: s.addr,
                    check,
                    state: AtomicU32::new(state),
                    weight: AtomicU32::new(s.weight),
                    health: AtomicU32::new(health),
                    cur_conns: AtomicU32::new(0),
                    total_conns: AtomicU64::new(0),
                    user_bytes_in: AtomicU64::new(0),
                    user_bytes_out: AtomicU64::new(0),
                    last_check: AtomicU32::new(2),
                    check_us: AtomicU32::new(0),
                    checks_failed: AtomicU64::new(0),
                    state_changes: AtomicU64::new(0),
                });
            }
            backends.push(BackendState {
                name: b.name.clone(),
                servers: idxs,
                rr: Mutex::new(RoundRobin::default()),
            });
        }
        Self { servers, backends }
    }

    /// Picks a server of `backend` by weighted round robin among UP servers with a
    /// non-zero weight. None when no server can take a connection.
    pub fn pick(&self, backend: usize) -> Option<&Server> {
        let b = self.backends.get(backend)?;
        let weights: Vec<u32> = b
            .servers
            .iter()
            .map(|&i| {
                let s = &self.servers[i as usize];
                if s.is_up() {
                    s.weight.load(Ordering::Relaxed)
                } else {
                    0
                }
            })
            .collect();
        let i =
            b.rr.lock()
                .unwrap_or_else(|e| e.into_inner())
                .pick(&weights)?;
        Some(&self.servers[b.servers[i] as usize])
    }
}

/// Applies one health-check result with HAProxy's state machine (health in
/// 0..rise+fall-1, UP while health >= rise). Returns Some(new state) on a change.
pub fn apply_check(s: &Server, passed: bool, p: &CheckParams) -> Option<u32> {
    let top = p.rise + p.fall - 1;
    let mut h = s.health.load(Ordering::Relaxed);
    if passed {
        if h < top {
            h += 1;
            if h >= p.rise {
                h = top;
            }
        }
    } else {
        s.checks_failed.fetch_add(1, Ordering::Relaxed);
        if h > 0 {
            h -= 1;
            if h < p.rise {
                h = 0;
            }
        }
    }
    s.health.store(h, Ordering::Relaxed);
    s.last_check.store(passed as u32, Ordering::Relaxed);
    let cur = s.state.load(Ordering::Relaxed);
    if cur == SRV_MAINT {
        return None;
    }
    let want = if h >= p.rise { SRV_UP } else { SRV_DOWN };
    if want != cur {
        s.state.store(want, Ordering::Relaxed);
        s.state_changes.fetch_add(1, Ordering::Relaxed);
        Some(want)
    } else {
        None
    }
}

pub fn state_name(state: u32) -> &'static str {
    match state {
        SRV_UP => "UP",
        SRV_DOWN => "DOWN",
        SRV_MAINT => "MAINT",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_wrr_honours_weights_and_interleaves() {
        let mut rr = RoundRobin::default();
        let w = [5, 1, 1];
        let picks: Vec<usize> = (0..7).map(|_| rr.pick(&w).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 5);
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        let mut counts = [0u32; 3];
        for _ in 0..70_000 {
            counts[rr.pick(&w).unwrap()] += 1;
        }
        assert_eq!(counts, [50_000, 10_000, 10_000]);
    }

    #[test]
    fn equal_weights_are_plain_round_robin() {
        let mut rr = RoundRobin::default();
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(&[1, 1, 1]).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn zero_weights_are_skipped_and_none_when_all_zero() {
        let mut rr = RoundRobin::default();
        for _ in 0..10 {
            assert_eq!(rr.pick(&[0, 3, 0]), Some(1));
        }
        assert_eq!(rr.pick(&[0, 0, 0]), None);
        assert_eq!(rr.pick(&[]), None);
    }

    fn server(rise: u32) -> Server {
        Server {
            idx: 0,
            backend: "b".into(),
            name: "s".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            check: None,
            state: AtomicU32::new(SRV_UP),
            weight: AtomicU32::new(1),
            health: AtomicU32::new(rise),
            cur_conns: AtomicU32::new(0),
            total_conns: AtomicU64::new(0),
            user_bytes_in: AtomicU64::new(0),
            user_bytes_out: AtomicU64::new(0),
            last_check: AtomicU32::new(2),
            check_us: AtomicU32::new(0),
            checks_failed: AtomicU64::new(0),
            state_changes: AtomicU64::new(0),
        }
    }

    #[test]
    fn haproxy_health_state_machine() {
        let p = CheckParams::default(); // rise 2, fall 3
        let s = server(p.rise);
        // First pass after start: health jumps to rise+fall-1.
        assert_eq!(apply_check(&s, true, &p), None);
        assert_eq!(s.health.load(Ordering::Relaxed), 4);
        // fall-1 failures keep it UP, the fall-th takes it DOWN.
        assert_eq!(apply_check(&s, false, &p), None);
        assert_eq!(apply_check(&s, false, &p), None);
        assert_eq!(apply_check(&s, false, &p), Some(SRV_DOWN));
        assert_eq!(s.health.load(Ordering::Relaxed), 0);
        // rise passes bring it back.
        assert_eq!(apply_check(&s, true, &p), None);
        assert_eq!(apply_check(&s, true, &p), Some(SRV_UP));
        assert_eq!(s.health.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn first_failure_after_start_takes_server_down() {
        let p = CheckParams::default();
        let s = server(p.rise);
        assert_eq!(apply_check(&s, false, &p), Some(SRV_DOWN));
    }

    #[test]
    fn copy_str_truncates_on_char_boundary() {
        let mut b = [0u8; 4];
        copy_str(&mut b, "aé€");
        assert_eq!(read_str(&b), "aé");
    }
}
