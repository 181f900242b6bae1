//! The health-check scheduler: one task per checked server runs its
//! [`Plan`](crate::health::Plan) at HAProxy's intervals, applies the result with
//! HAProxy's rise/fall state machine, publishes the status and logs a line
//! like HAProxy's on every state change.
pub mod agent;
pub mod engine;
pub mod plan;
pub mod proto;
pub mod resolve;
pub mod tls;

pub use plan::*;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::state::SrvState;
use lb_common::ServerCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::CheckParams;
use crate::state::{apply_check, copy_str, Publish, Server, State};
use crate::sys;
use agent::{Admin, AgentPlan};
use engine::{status_desc, Connect, Connector, Outcome};

/// Opens check connections over TCP to the plan's target (or a `connect`
/// rule's port/address), with an optional PROXY header, and TLS when the
/// plan has it (`check-ssl`).
pub struct TcpConnector {
    pub target: SocketAddr,
    pub tls: Option<tls::TlsSetup>,
}

/// A check connection: plain, or TLS over TCP.
pub enum CheckStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl CheckStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            CheckStream::Plain(s) => s,
            CheckStream::Tls(t) => t.get_ref().0,
        }
    }
}

impl tokio::io::AsyncRead for CheckStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            CheckStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            CheckStream::Tls(t) => std::pin::Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for CheckStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            CheckStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            CheckStream::Tls(t) => std::pin::Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            CheckStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            CheckStream::Tls(t) => std::pin::Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            CheckStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            CheckStream::Tls(t) => std::pin::Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connector for TcpConnector {
    type Stream = CheckStream;

    async fn connect(&self, c: &Connect) -> std::io::Result<CheckStream> {
        let addr = SocketAddr::new(
            c.addr.unwrap_or(self.target.ip()),
            c.port.unwrap_or(self.target.port()),
        );
        let mut s = TcpStream::connect(addr).await?;
        if let Some(v) = c.send_proxy {
            let h = crate::datapath::proxy_proto::encode(v, s.local_addr()?, s.peer_addr()?);
            s.write_all(&h).await?;
        }
        Ok(CheckStream::Plain(s))
    }

    async fn start_tls(&self, s: CheckStream) -> std::io::Result<CheckStream> {
        let (CheckStream::Plain(tcp), Some(t)) = (s, &self.tls) else {
            return Err(std::io::Error::other("no TLS set up for this check"));
        };
        let tls = t.connector.connect(t.name.clone(), tcp).await?;
        Ok(CheckStream::Tls(Box::new(tls)))
    }

    fn close(&self, s: CheckStream, linger: bool) {
        // HAProxy closes checks with an RST so that they leave no TIME_WAIT.
        if !linger {
            let _ = sys::set_linger_reset(s.tcp());
        }
        drop(s);
    }
}

/// Called with each check result (publishes it to LB_SRV_CHECK).
/// A change a check or the agent made: it also feeds lastchg, chkdown and
/// downtime.
fn changed_by_check(publisher: &dyn Publish, s: &Server) {
    s.admin.note_change(s.is_up());
    publisher.changed(s.idx);
}

/// The published form of a result.
pub fn to_map(o: &Outcome, took: Duration, count: u32) -> ServerCheck {
    let mut c = ServerCheck {
        status: o.status,
        code: o.code,
        duration_us: took.as_micros().min(u32::MAX as u128) as u32,
        count,
        ..ServerCheck::default()
    };
    copy_str(&mut c.info, &o.info);
    c
}

/// HAProxy's state-change line, e.g. `Server b/s is DOWN, reason: Layer4
/// connection problem, info: "Connection refused", check duration: 0ms. 2
/// active and 0 backup servers left. 0 sessions active, 0 requeued, 0
/// remaining in queue.`
pub fn change_line(
    state: &State,
    s: &Server,
    new: SrvState,
    o: &Outcome,
    took: Duration,
) -> String {
    let (mut active, mut backup) = (0, 0);
    let mut queued = 0;
    if let Some(b) = state.backend_of(s.idx) {
        queued = b.queued.load(Ordering::Relaxed);
        for &i in &b.servers {
            let x = &state.servers[i as usize];
            if x.is_up() {
                if x.backup() {
                    backup += 1;
                } else {
                    active += 1;
                }
            }
        }
    }
    let mut line = format!(
        "Server {}/{} is {}, reason: {}",
        s.backend,
        s.name(),
        new.name(),
        status_desc(o.status)
    );
    if o.code != 0 {
        line.push_str(&format!(", code: {}", o.code));
    }
    if !o.info.is_empty() {
        line.push_str(&format!(", info: \"{}\"", o.info));
    }
    line.push_str(&format!(", check duration: {}ms. ", took.as_millis()));
    if new == SrvState::Up {
        line.push_str(&format!(
            "{active} active and {backup} backup servers online. 0 sessions requeued, {queued} total in queue."
        ));
    } else {
        line.push_str(&format!(
            "{active} active and {backup} backup servers left. {} sessions active, 0 requeued, {queued} remaining in queue.",
            s.cur_conns.load(Ordering::Relaxed)
        ));
    }
    line
}

/// `iv` moved at random by up to ±`pct`/2 % (`spread-checks`), as HAProxy;
/// `r` is a uniform random u64.
pub fn jittered(iv: Duration, pct: u32, r: u64) -> Duration {
    if pct == 0 {
        return iv;
    }
    let rv = iv.as_secs_f64() * f64::from(pct) / 100.0;
    let j = rv / 2.0 - rv * (r as f64 / u64::MAX as f64);
    Duration::from_secs_f64((iv.as_secs_f64() + j).max(0.0))
}

/// xorshift64: enough to decorrelate check times, no crate needed.
fn next_rand(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// HAProxy's `option log-health-checks` line for a result that changed
/// without changing the state, e.g. `Health check for server b/s failed,
/// reason: Layer4 connection problem, info: "Connection refused", check
/// duration: 0ms, status: 2/3 UP.`
pub fn check_line(s: &Server, o: &Outcome, took: Duration, rise: u32, fall: u32) -> String {
    let h = s.health.load(Ordering::Relaxed);
    let mut line = format!(
        "Health check for server {}/{} {}, reason: {}",
        s.backend,
        s.name(),
        if o.passed() { "succeeded" } else { "failed" },
        status_desc(o.status)
    );
    if o.code != 0 {
        line.push_str(&format!(", code: {}", o.code));
    }
    if !o.info.is_empty() {
        line.push_str(&format!(", info: \"{}\"", o.info));
    }
    let status = if h >= rise {
        let w = if s.weight.load(Ordering::Relaxed) > 0 {
            "UP"
        } else {
            "DRAIN"
        };
        format!("{}/{fall} {w}", h - rise + 1)
    } else {
        format!("{h}/{rise} DOWN")
    };
    line.push_str(&format!(
        ", check duration: {}ms, status: {status}.",
        took.as_millis()
    ));
    line
}

/// Starts one task per server with a plan (`plans[idx]`). The first checks
/// are spread evenly over the first interval so that a large farm is not
/// probed in one burst; each server then keeps its own phase, its next check
/// due one interval after the start of the previous one.
pub fn spawn_all(
    state: &Arc<State>,
    plans: Vec<Option<Plan>>,
    spread_pct: u32,
    publisher: Arc<dyn Publish>,
) {
    let n = plans.iter().filter(|p| p.is_some()).count().max(1) as u32;
    let mut pos = 0u32;
    for (idx, plan) in plans.into_iter().enumerate() {
        let Some(plan) = plan else { continue };
        let offset = plan.fastinter.mul_f64(pos as f64 / n as f64);
        pos += 1;
        let state = state.clone();
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let params = CheckParams {
                inter: plan.timeouts.inter,
                rise: plan.rise,
                fall: plan.fall,
            };
            let mut conn = TcpConnector {
                target: plan.target,
                tls: plan.tls.clone(),
            };
            // Checks follow the server's address (DNS may change it) unless
            // `addr` sets their own.
            let params_of = &state.servers[idx].conf.params;
            let (follows, follows_port) = (
                params_of.check_addr.is_none(),
                params_of.check_port.is_none(),
            );
            let mut next = Instant::now() + offset;
            let mut count = 0u32;
            let mut rng = (idx as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut prev: Option<(u32, bool)> = None;
            loop {
                tokio::time::sleep_until(next).await;
                if state.servers[idx]
                    .admin
                    .checks_disabled
                    .load(Ordering::Relaxed)
                {
                    // `disable health`: the state stays as it is until enabled.
                    next = Instant::now() + params.inter;
                    continue;
                }
                let srv = &state.servers[idx];
                if srv.no_addr.load(Ordering::Relaxed) {
                    // Nothing to check until DNS gives it an address.
                    next = Instant::now() + params.inter;
                    continue;
                }
                if follows {
                    conn.target.set_ip(srv.addr().ip());
                }
                if follows_port {
                    conn.target.set_port(srv.addr().port());
                }
                let start = Instant::now();
                let exec = matches!(plan.steps.first(), Some(engine::Step::Exec(_)));
                let steps = if plan.send_state || exec {
                    let s = &state.servers[idx];
                    let hdr = if plan.send_state {
                        server_state_header(&state, s, &plan)
                    } else {
                        String::new()
                    };
                    let cur = s.cur_conns.load(Ordering::Relaxed).to_string();
                    std::borrow::Cow::Owned(with_state(&plan.steps, &hdr, &cur))
                } else {
                    std::borrow::Cow::Borrowed(&plan.steps)
                };
                let o = engine::run(&steps, &conn, &plan.timeouts).await;
                let took = start.elapsed();
                count = count.wrapping_add(1);
                let s = &state.servers[idx];
                s.check_us.store(
                    took.as_micros().min(u32::MAX as u128) as u32,
                    Ordering::Relaxed,
                );
                if !o.passed() {
                    tracing::debug!(
                        "check {}/{}: {} {}",
                        s.backend,
                        s.name(),
                        lb_common::chk::NAMES[o.status as usize],
                        o.info
                    );
                }
                publisher.check(s.idx, &to_map(&o, took, count));
                s.check_status.store(o.status, Ordering::Relaxed);
                s.check_code.store(o.code, Ordering::Relaxed);
                let mut passed = o.passed();
                if plan.disable_on_404 {
                    // HAProxy: a 404 soft-stops a running server (NOLB), a
                    // stopped one stays stopped; 2xx/3xx puts it back.
                    let nolb = o.status == lb_common::chk::L7OKC;
                    if nolb && !s.is_up() {
                        passed = false;
                    } else if passed && s.admin.stopping.swap(nolb, Ordering::Relaxed) != nolb {
                        s.touch();
                        changed_by_check(&*publisher, s);
                        tracing::warn!(
                            "Server {}/{} is {} (http-check disable-on-404: {} {}).",
                            s.backend,
                            s.name(),
                            if nolb { "stopping" } else { "running again" },
                            o.code,
                            o.info
                        );
                    }
                }
                let changed = apply_check(s, passed, &params);
                let now = (o.status, o.passed());
                if plan.log_checks && changed.is_none() && prev.is_some_and(|p| p != now) {
                    tracing::info!("{}", check_line(s, &o, took, plan.rise, plan.fall));
                }
                prev = Some(now);
                if let Some(new) = changed {
                    tracing::warn!("{}", change_line(&state, s, new, &o, took));
                    changed_by_check(&*publisher, s);
                    if new != SrvState::Up {
                        if let Some(b) = state.backend_of(s.idx) {
                            if !b.servers.iter().any(|&i| state.servers[i as usize].is_up()) {
                                tracing::error!("backend {} has no server available!", b.name);
                            }
                        }
                    }
                }
                let down = s.state.get() != SrvState::Up;
                let iv = plan.interval(s.health.load(Ordering::Relaxed), down);
                let iv = jittered(iv, spread_pct, next_rand(&mut rng));
                next = (start + iv).max(Instant::now());
            }
        });
    }
}

/// HAProxy's `X-Haproxy-Server-State` value (`http-check send-state`):
/// the state with the health count, address, port, names, node, effective
/// and backend weights, sessions of the server and of its backend, queue.
pub fn server_state_header(state: &State, s: &Server, plan: &Plan) -> String {
    let (rise, fall) = (plan.rise, plan.fall);
    let h = s.health.load(Ordering::Relaxed);
    let up = s.is_up();
    let nolb = s.admin.stopping.load(Ordering::Relaxed);
    let word = if s.admin.checks_disabled.load(Ordering::Relaxed) {
        "no check".to_string()
    } else if up {
        let kind = if nolb { "NOLB" } else { "UP" };
        if h == rise + fall - 1 {
            kind.to_string()
        } else {
            format!("{kind} {}/{fall}", (h + 1).saturating_sub(rise))
        }
    } else if h > 0 {
        format!("DOWN {h}/{rise}")
    } else {
        "DOWN".to_string()
    };
    let peers: Vec<&Server> = state
        .backend_of(s.idx)
        .map(|b| {
            b.servers
                .iter()
                .map(|&i| &state.servers[i as usize])
                .collect()
        })
        .unwrap_or_default();
    let tot_weight: u32 = peers
        .iter()
        .filter(|p| p.is_up())
        .map(|p| p.effective_weight())
        .sum();
    let be_conns: u32 = peers
        .iter()
        .map(|p| p.cur_conns.load(Ordering::Relaxed))
        .sum();
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut v = format!(
        "{word}; address={}; port={}; name={}/{}; node={}; weight={}/{tot_weight}; scur={}/{be_conns}; qcur=0",
        s.addr().ip(),
        s.addr().port(),
        s.backend,
        s.name(),
        node.trim(),
        s.effective_weight(),
        s.cur_conns.load(Ordering::Relaxed),
    );
    let ramp = s.ramp();
    if up && ramp < 1.0 {
        v.push_str(&format!("; throttle={}%", ((ramp * 100.0) as u32).max(1)));
    }
    v
}

/// The plan's steps with the state header (`send-state`) and an external
/// check's `HAPROXY_SERVER_CURCONN` filled in.
fn with_state(steps: &[engine::Step], hdr: &str, curconn: &str) -> Vec<engine::Step> {
    let mark = plan::STATE_MARK.as_bytes();
    steps
        .iter()
        .map(|st| match st {
            engine::Step::Exec(x) => {
                let mut x = x.clone();
                for (_, v) in x.env.iter_mut().filter(|(_, v)| v == plan::STATE_MARK) {
                    *v = curconn.to_string();
                }
                engine::Step::Exec(x)
            }
            engine::Step::Send(b) => match b.windows(mark.len()).position(|w| w == mark) {
                Some(i) => {
                    let mut out = b[..i].to_vec();
                    out.extend_from_slice(hdr.as_bytes());
                    out.extend_from_slice(&b[i + mark.len()..]);
                    engine::Step::Send(out)
                }
                None => st.clone(),
            },
            _ => st.clone(),
        })
        .collect()
}

/// One agent exchange: connect, send `agent-send`, read a line (up to
/// [`agent::MAX_LINE`] bytes, a newline or the end), within the check
/// timeouts.
async fn agent_line(plan: &AgentPlan) -> Result<String, String> {
    let start = Instant::now();
    let t = &plan.timeouts;
    let connect = tokio::time::timeout(t.connect_limit(), TcpStream::connect(plan.target));
    let mut s = match connect.await {
        Err(_) => return Err("connect timeout".into()),
        Ok(Err(e)) => return Err(engine::io_text(&e)),
        Ok(Ok(s)) => s,
    };
    let deadline = match t.check {
        Some(c) => Instant::now() + c,
        None => start + t.inter,
    };
    let exchange = async {
        if let Some(d) = &plan.send {
            s.write_all(d).await?;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < agent::MAX_LINE {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let r = tokio::time::timeout_at(deadline, exchange).await;
    let _ = sys::set_linger_reset(&s);
    match r {
        Err(_) => Err("read timeout".into()),
        Ok(Err(e)) => Err(engine::io_text(&e)),
        Ok(Ok(buf)) => {
            let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
            Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
        }
    }
}

/// Starts one agent task per server with `agent-check` (`agents[idx]`).
/// `rise[idx]`: the server's `rise`, to tell whether its health checks
/// would have it UP when the agent lets it go.
pub fn spawn_agents(
    state: &Arc<State>,
    agents: Vec<Option<AgentPlan>>,
    rise: Vec<u32>,
    publisher: Arc<dyn Publish>,
) {
    let n = agents.iter().filter(|p| p.is_some()).count().max(1) as u32;
    let mut pos = 0u32;
    for (idx, plan) in agents.into_iter().enumerate() {
        let Some(plan) = plan else { continue };
        let offset = plan.timeouts.inter.mul_f64(pos as f64 / n as f64);
        pos += 1;
        let state = state.clone();
        let publisher = publisher.clone();
        let rise = rise.get(idx).copied().unwrap_or(1);
        tokio::spawn(async move {
            let mut next = Instant::now() + offset;
            // What the agent set, so that `ready` undoes only that.
            let (mut maint_by_agent, mut drained, mut pct) = (false, false, 100u32);
            let mut last_weight = plan.weight;
            loop {
                tokio::time::sleep_until(next).await;
                let start = Instant::now();
                next = start + plan.timeouts.inter;
                let s = &state.servers[idx];
                let line = match agent_line(&plan).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::debug!("agent of {}/{}: {e}", s.backend, s.name());
                        continue;
                    }
                };
                let r = agent::parse(&line);
                let mut changed = false;
                let say = |new: SrvState, why: &str| {
                    tracing::warn!(
                        "Server {}/{} is {}, reason: Agent {why}{}. agent line: \"{line}\"",
                        s.backend,
                        s.name(),
                        new.name(),
                        r.reason
                            .as_deref()
                            .map(|x| format!(", info: \"{x}\""))
                            .unwrap_or_default()
                    );
                };
                let health_up = || s.health.load(Ordering::Relaxed) >= rise;
                if let Some(p) = r.weight_pct {
                    pct = p;
                }
                match r.admin {
                    Some(Admin::Drain) => drained = true,
                    Some(Admin::Ready) => {
                        drained = false;
                        if maint_by_agent && s.state.get() == SrvState::Maint {
                            let new = if health_up() && !s.agent_down.load(Ordering::Relaxed) {
                                s.up_since_ns.store(sys::monotonic_ns(), Ordering::Relaxed);
                                SrvState::Up
                            } else {
                                SrvState::Down
                            };
                            s.state.set(new);
                            s.state_changes.fetch_add(1, Ordering::Relaxed);
                            say(new, "says ready");
                            changed = true;
                        }
                        maint_by_agent = false;
                    }
                    Some(Admin::Maint) if s.state.get() != SrvState::Maint => {
                        s.state.set(SrvState::Maint);
                        s.state_changes.fetch_add(1, Ordering::Relaxed);
                        maint_by_agent = true;
                        say(SrvState::Maint, "says maint");
                        changed = true;
                    }
                    Some(Admin::Maint) | None => {}
                }
                match r.up {
                    Some(false) => {
                        let was_down = s.agent_down.swap(true, Ordering::Relaxed);
                        if !was_down && s.state.get() == SrvState::Up {
                            s.state.set(SrvState::Down);
                            s.state_changes.fetch_add(1, Ordering::Relaxed);
                            say(SrvState::Down, "reports down");
                            changed = true;
                        }
                    }
                    Some(true) => {
                        let was_down = s.agent_down.swap(false, Ordering::Relaxed);
                        if was_down && s.state.get() == SrvState::Down && health_up() {
                            s.up_since_ns.store(sys::monotonic_ns(), Ordering::Relaxed);
                            s.state.set(SrvState::Up);
                            s.state_changes.fetch_add(1, Ordering::Relaxed);
                            say(SrvState::Up, "reports up");
                            changed = true;
                        }
                    }
                    None => {}
                }
                let w = if drained {
                    0
                } else {
                    agent::scaled_weight(plan.weight, pct)
                };
                if w != last_weight {
                    last_weight = w;
                    s.weight.store(w, Ordering::Relaxed);
                    tracing::info!(
                        "Server {}/{} weight {w} ({}) from its agent",
                        s.backend,
                        s.name(),
                        if drained {
                            "drain".to_string()
                        } else {
                            format!("{pct}%")
                        }
                    );
                    changed = true;
                }
                if changed {
                    s.touch();
                    changed_by_check(&*publisher, s);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::chk;

    #[test]
    fn spread_checks_jitter_stays_within_half_the_percentage() {
        let iv = Duration::from_secs(2);
        assert_eq!(jittered(iv, 0, 12345), iv);
        assert_eq!(jittered(iv, 10, 0), Duration::from_millis(2100));
        assert_eq!(jittered(iv, 10, u64::MAX), Duration::from_millis(1900));
        let mut x = 7u64;
        let v: Vec<Duration> = (0..1000)
            .map(|_| jittered(iv, 10, next_rand(&mut x)))
            .collect();
        assert!(v
            .iter()
            .all(|d| (1900..=2100).contains(&(d.as_millis() as u64))));
        let mean = v.iter().map(|d| d.as_secs_f64()).sum::<f64>() / 1000.0;
        assert!((mean - 2.0).abs() < 0.01, "{mean}");
    }

    #[test]
    fn log_health_checks_line_is_haproxys() {
        let cfg = crate::config::parse_str(
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
             listen b\n  bind 127.0.0.1:65000\n  server s 127.0.0.1:1 check\n",
            std::path::Path::new("t.cfg"),
        )
        .unwrap();
        let state = State::from_config(&cfg);
        let s = &state.servers[0];
        // rise 2, fall 3: health 3 of 0..4 is UP, 2 failures from DOWN.
        s.health.store(3, Ordering::Relaxed);
        let o = Outcome::new(chk::L4CON, "Connection refused");
        assert_eq!(
            check_line(s, &o, Duration::from_millis(1), 2, 3),
            "Health check for server b/s failed, reason: Layer4 connection problem, info: \
             \"Connection refused\", check duration: 1ms, status: 2/3 UP."
        );
        s.health.store(1, Ordering::Relaxed);
        let o = Outcome::new(chk::L4OK, "");
        assert_eq!(
            check_line(s, &o, Duration::ZERO, 2, 3),
            "Health check for server b/s succeeded, reason: Layer4 check passed, check duration: 0ms, \
             status: 1/2 DOWN."
        );
    }

    #[test]
    fn change_line_is_haproxys() {
        let cfg = crate::config::parse_str(
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n\
             listen b\n  bind 127.0.0.1:65000\n  server s1 127.0.0.1:1 check\n  server s2 127.0.0.1:2 check\n  server s3 127.0.0.1:3 check backup\n",
            std::path::Path::new("t.cfg"),
        )
        .unwrap();
        let state = State::from_config(&cfg);
        state.servers[0].state.set(SrvState::Down);
        let o = Outcome::new(chk::L4CON, "Connection refused");
        let l = change_line(
            &state,
            &state.servers[0],
            SrvState::Down,
            &o,
            Duration::from_micros(300),
        );
        assert_eq!(
            l,
            "Server b/s1 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", \
             check duration: 0ms. 1 active and 1 backup servers left. 0 sessions active, 0 requeued, \
             0 remaining in queue."
        );
        let o = Outcome::new(chk::L7OK, "OK").with_code(200);
        state.servers[0].state.set(SrvState::Up);
        let l = change_line(
            &state,
            &state.servers[0],
            SrvState::Up,
            &o,
            Duration::from_millis(3),
        );
        assert_eq!(
            l,
            "Server b/s1 is UP, reason: Layer7 check passed, code: 200, info: \"OK\", check duration: 3ms. \
             2 active and 1 backup servers online. 0 sessions requeued, 0 total in queue."
        );
    }
}
