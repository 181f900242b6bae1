//! Prometheus metrics (`lb run --metrics ADDR`): HAProxy exporter names and
//! labels (`haproxy_server_current_sessions{proxy,server}`, ...) plus lb's
//! own (`lb_*`: sessions by data path, kernel event counters). Every scrape
//! builds the families afresh from the live state and the per-CPU maps, so a
//! scrape costs a few map reads and no locks on the data path.
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::api::{stat, Live};

struct Families {
    reg: Registry,
}

impl Families {
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.reg.register(Box::new(g.clone()))?;
        Ok(g)
    }

    fn fgauge(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        self.reg.register(Box::new(g.clone()))?;
        Ok(g)
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.reg.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

fn num(row: &stat::Row, f: &str) -> i64 {
    match row.get(f) {
        Some(stat::Val::Num(n)) => *n as i64,
        Some(stat::Val::Signed(n)) => *n,
        _ => 0,
    }
}

fn text(row: &stat::Row, f: &str) -> String {
    row.get(f).map(|v| v.to_string()).unwrap_or_default()
}

/// `show stat` time columns and their HAProxy exporter names (after
/// `haproxy_backend_` / `haproxy_server_`).
const TIME_METRICS: &[(&str, &str, &str)] = &[
    (
        "qtime",
        "queue_time_average_seconds",
        "Avg. queue time for last 1024 successful connections.",
    ),
    (
        "ctime",
        "connect_time_average_seconds",
        "Avg. connect time for last 1024 successful connections.",
    ),
    (
        "ttime",
        "total_time_average_seconds",
        "Avg. total time for last 1024 successful connections.",
    ),
    (
        "qtime_max",
        "max_queue_time_seconds",
        "Maximum observed time spent in the queue.",
    ),
    (
        "ctime_max",
        "max_connect_time_seconds",
        "Maximum observed waiting time for a connection to complete.",
    ),
    (
        "ttime_max",
        "max_total_time_seconds",
        "Maximum observed total request+response time.",
    ),
];

const SERVER_STATES: [&str; 5] = ["DOWN", "UP", "MAINT", "DRAIN", "NOLB"];
/// `show stat` check_status names and HAProxy's exporter state labels
/// (`HCHK_STATUS_*`, where L7OK is `L7OKD` and L7OKC `L7OKCD`).
const CHECK_STATES: [(&str, &str); 14] = [
    ("UNK", "UNKNOWN"),
    ("INI", "INI"),
    ("SOCKERR", "SOCKERR"),
    ("L4OK", "L4OK"),
    ("L4TOUT", "L4TOUT"),
    ("L4CON", "L4CON"),
    ("L6OK", "L6OK"),
    ("L6TOUT", "L6TOUT"),
    ("L6RSP", "L6RSP"),
    ("L7TOUT", "L7TOUT"),
    ("L7RSP", "L7RSP"),
    ("L7OK", "L7OKD"),
    ("L7OKC", "L7OKCD"),
    ("L7STS", "L7STS"),
];

/// The exposition text of one scrape.
pub fn render(live: &Live) -> Result<String> {
    let f = Families {
        reg: Registry::new(),
    };
    let rows = live.stat_rows();
    let state = &live.state;

    // Process.
    let p_cur = f.gauge(
        "haproxy_process_current_connections",
        "Number of active sessions.",
        &[],
    )?;
    p_cur
        .with_label_values(&[])
        .set(state.sessions.len() as i64);
    let p_tot = f.counter(
        "haproxy_process_connections_total",
        "Total number of created sessions.",
        &[],
    )?;
    p_tot.with_label_values(&[]).inc_by(state.sessions.opened());
    let p_max = f.gauge(
        "haproxy_process_max_connections",
        "Maximum number of concurrent connections (0: none).",
        &[],
    )?;
    p_max
        .with_label_values(&[])
        .set(live.global_limit.get() as i64);
    let p_start = f.gauge(
        "haproxy_process_start_time_seconds",
        "Start time in seconds.",
        &[],
    )?;
    p_start.with_label_values(&[]).set(live.start_unix as i64);

    // Frontends.
    let px = &["proxy"];
    let fe_cur = f.gauge(
        "haproxy_frontend_current_sessions",
        "Number of current sessions.",
        px,
    )?;
    let fe_max = f.gauge(
        "haproxy_frontend_max_sessions",
        "Maximum observed number of active sessions.",
        px,
    )?;
    let fe_lim = f.gauge(
        "haproxy_frontend_limit_sessions",
        "Configured session limit (0: none).",
        px,
    )?;
    let fe_tot = f.counter(
        "haproxy_frontend_sessions_total",
        "Total number of sessions.",
        px,
    )?;
    let fe_in = f.counter(
        "haproxy_frontend_bytes_in_total",
        "Current total of incoming bytes.",
        px,
    )?;
    let fe_out = f.counter(
        "haproxy_frontend_bytes_out_total",
        "Current total of outgoing bytes.",
        px,
    )?;
    let fe_denied = f.counter(
        "haproxy_frontend_denied_connections_total",
        "Sessions closed because no server could take them.",
        px,
    )?;
    // Backends and servers.
    let be_cur = f.gauge(
        "haproxy_backend_current_sessions",
        "Number of current sessions.",
        px,
    )?;
    let be_max = f.gauge(
        "haproxy_backend_max_sessions",
        "Maximum observed number of active sessions.",
        px,
    )?;
    let be_tot = f.counter(
        "haproxy_backend_sessions_total",
        "Total number of sessions.",
        px,
    )?;
    let be_in = f.counter(
        "haproxy_backend_bytes_in_total",
        "Current total of incoming bytes.",
        px,
    )?;
    let be_out = f.counter(
        "haproxy_backend_bytes_out_total",
        "Current total of outgoing bytes.",
        px,
    )?;
    let be_q = f.gauge(
        "haproxy_backend_current_queue",
        "Number of sessions waiting in the queue.",
        px,
    )?;
    let be_act = f.gauge(
        "haproxy_backend_active_servers",
        "Current number of active servers.",
        px,
    )?;
    let be_bck = f.gauge(
        "haproxy_backend_backup_servers",
        "Current number of backup servers.",
        px,
    )?;
    let be_w = f.gauge(
        "haproxy_backend_weight",
        "Total weight of the servers in the backend.",
        px,
    )?;
    let be_econ = f.counter(
        "haproxy_backend_connection_errors_total",
        "Total number of connection errors.",
        px,
    )?;
    let be_retr = f.counter(
        "haproxy_backend_retry_warnings_total",
        "Total number of retry warnings.",
        px,
    )?;
    let be_redis = f.counter(
        "haproxy_backend_redispatch_warnings_total",
        "Total number of redispatch warnings.",
        px,
    )?;
    let be_status = f.gauge(
        "haproxy_backend_status",
        "Current status of the service (1: the state is this one).",
        &["proxy", "state"],
    )?;
    let sv = &["proxy", "server"];
    let s_cur = f.gauge(
        "haproxy_server_current_sessions",
        "Number of current sessions.",
        sv,
    )?;
    let s_max = f.gauge(
        "haproxy_server_max_sessions",
        "Maximum observed number of active sessions.",
        sv,
    )?;
    let s_lim = f.gauge(
        "haproxy_server_limit_sessions",
        "Configured session limit (0: none).",
        sv,
    )?;
    let s_tot = f.counter(
        "haproxy_server_sessions_total",
        "Total number of sessions.",
        sv,
    )?;
    let s_in = f.counter(
        "haproxy_server_bytes_in_total",
        "Current total of incoming bytes.",
        sv,
    )?;
    let s_out = f.counter(
        "haproxy_server_bytes_out_total",
        "Current total of outgoing bytes.",
        sv,
    )?;
    let s_econ = f.counter(
        "haproxy_server_connection_errors_total",
        "Total number of connection errors.",
        sv,
    )?;
    let s_retr = f.counter(
        "haproxy_server_retry_warnings_total",
        "Total number of retry warnings.",
        sv,
    )?;
    let s_redis = f.counter(
        "haproxy_server_redispatch_warnings_total",
        "Total number of redispatch warnings.",
        sv,
    )?;
    let s_w = f.gauge("haproxy_server_weight", "Server's effective weight.", sv)?;
    let s_chkfail = f.counter(
        "haproxy_server_check_failures_total",
        "Total number of failed checks.",
        sv,
    )?;
    let s_updown = f.counter(
        "haproxy_server_check_up_down_total",
        "Total number of UP->DOWN transitions.",
        sv,
    )?;
    let s_down = f.counter(
        "haproxy_server_downtime_seconds_total",
        "Total downtime (in seconds) for the service.",
        sv,
    )?;
    let s_chkdur = f.fgauge(
        "haproxy_server_check_duration_seconds",
        "Previously run health check duration, in seconds.",
        sv,
    )?;
    let s_status = f.gauge(
        "haproxy_server_status",
        "Current status of the service (1: the state is this one).",
        &["proxy", "server", "state"],
    )?;
    let s_chk = f.gauge(
        "haproxy_server_check_status",
        "Status of last health check (1: the status is this one).",
        &["proxy", "server", "state"],
    )?;
    let s_last = f.gauge(
        "haproxy_server_last_session_seconds",
        "Seconds since the last session was assigned (-1: never).",
        sv,
    )?;

    // Session times (ms in show stat, seconds here), backends and servers alike.
    let mut times = Vec::new();
    for (scope, labels) in [("backend", &["proxy"][..]), ("server", sv)] {
        let mut g = Vec::new();
        for (field, name, help) in TIME_METRICS {
            g.push((
                *field,
                f.fgauge(&format!("haproxy_{scope}_{name}"), help, labels)?,
            ));
        }
        times.push(g);
    }

    for r in &rows {
        let pxn = text(r, "pxname");
        let svn = text(r, "svname");
        match r.kind {
            0 => {
                let l = [pxn.as_str()];
                fe_cur.with_label_values(&l).set(num(r, "scur"));
                fe_max.with_label_values(&l).set(num(r, "smax"));
                fe_lim.with_label_values(&l).set(num(r, "slim"));
                fe_tot.with_label_values(&l).inc_by(num(r, "stot") as u64);
                fe_in.with_label_values(&l).inc_by(num(r, "bin") as u64);
                fe_out.with_label_values(&l).inc_by(num(r, "bout") as u64);
                if let Some(i) = live.cfg.frontends.iter().position(|x| x.name == pxn) {
                    fe_denied
                        .with_label_values(&l)
                        .inc_by(state.frontends[i].denied.load(Ordering::Relaxed));
                }
            }
            1 => {
                let l = [pxn.as_str()];
                be_cur.with_label_values(&l).set(num(r, "scur"));
                be_max.with_label_values(&l).set(num(r, "smax"));
                be_tot.with_label_values(&l).inc_by(num(r, "stot") as u64);
                be_in.with_label_values(&l).inc_by(num(r, "bin") as u64);
                be_out.with_label_values(&l).inc_by(num(r, "bout") as u64);
                be_q.with_label_values(&l).set(num(r, "qcur"));
                be_act.with_label_values(&l).set(num(r, "act"));
                be_bck.with_label_values(&l).set(num(r, "bck"));
                be_w.with_label_values(&l).set(num(r, "weight"));
                be_econ.with_label_values(&l).inc_by(num(r, "econ") as u64);
                be_retr.with_label_values(&l).inc_by(num(r, "wretr") as u64);
                be_redis
                    .with_label_values(&l)
                    .inc_by(num(r, "wredis") as u64);
                for (field, g) in &times[0] {
                    g.with_label_values(&l).set(num(r, field) as f64 / 1000.0);
                }
                let st = text(r, "status");
                for s in ["DOWN", "UP"] {
                    be_status
                        .with_label_values(&[pxn.as_str(), s])
                        .set((st == s) as i64);
                }
            }
            _ => {
                let l = [pxn.as_str(), svn.as_str()];
                s_cur.with_label_values(&l).set(num(r, "scur"));
                s_max.with_label_values(&l).set(num(r, "smax"));
                s_lim.with_label_values(&l).set(num(r, "slim"));
                s_tot.with_label_values(&l).inc_by(num(r, "stot") as u64);
                s_in.with_label_values(&l).inc_by(num(r, "bin") as u64);
                s_out.with_label_values(&l).inc_by(num(r, "bout") as u64);
                s_econ.with_label_values(&l).inc_by(num(r, "econ") as u64);
                s_retr.with_label_values(&l).inc_by(num(r, "wretr") as u64);
                s_redis
                    .with_label_values(&l)
                    .inc_by(num(r, "wredis") as u64);
                s_w.with_label_values(&l).set(num(r, "weight"));
                s_last.with_label_values(&l).set(num(r, "lastsess"));
                for (field, g) in &times[1] {
                    g.with_label_values(&l).set(num(r, field) as f64 / 1000.0);
                }
                // HAProxy's status text: "UP 1/3" is UP, "no check" is UP.
                let st = text(r, "status");
                let st = match st.split(' ').next().unwrap_or("") {
                    "no" => "UP".to_string(),
                    s => s.to_string(),
                };
                for s in SERVER_STATES {
                    s_status
                        .with_label_values(&[pxn.as_str(), svn.as_str(), s])
                        .set((st == s) as i64);
                }
                if r.get("check_rise").is_some() {
                    s_chkfail
                        .with_label_values(&l)
                        .inc_by(num(r, "chkfail") as u64);
                    s_updown
                        .with_label_values(&l)
                        .inc_by(num(r, "chkdown") as u64);
                    s_down
                        .with_label_values(&l)
                        .inc_by(num(r, "downtime") as u64);
                    s_chkdur
                        .with_label_values(&l)
                        .set(num(r, "check_duration") as f64 / 1000.0);
                    let cs = text(r, "check_status");
                    for (s, label) in CHECK_STATES {
                        s_chk
                            .with_label_values(&[
                                pxn.as_str(),
                                svn.as_str(),
                                &format!("HCHK_STATUS_{label}"),
                            ])
                            .set((cs == s) as i64);
                    }
                }
            }
        }
    }

    // lb's own.
    let path = f.gauge(
        "lb_data_path",
        "The data path in use (1: this one): kernel splice or userspace copy.",
        &["path"],
    )?;
    path.with_label_values(&["kernel"])
        .set(live.splice_on as i64);
    path.with_label_values(&["userspace"])
        .set(!live.splice_on as i64);
    let by_path = f.gauge(
        "lb_current_sessions",
        "Current sessions by data path.",
        &["proxy", "path"],
    )?;
    let ended = f.counter(
        "lb_sessions_ended_total",
        "Ended sessions by data path.",
        &["proxy", "path"],
    )?;
    let live_sessions = state.sessions.list();
    for (i, fe) in live.cfg.frontends.iter().enumerate() {
        let spliced = live_sessions
            .iter()
            .filter(|s| s.frontend == i && s.spliced.load(Ordering::Relaxed))
            .count() as i64;
        let all = live_sessions.iter().filter(|s| s.frontend == i).count() as i64;
        by_path
            .with_label_values(&[fe.name.as_str(), "kernel"])
            .set(spliced);
        by_path
            .with_label_values(&[fe.name.as_str(), "userspace"])
            .set(all - spliced);
        let st = &state.frontends[i];
        ended
            .with_label_values(&[fe.name.as_str(), "kernel"])
            .inc_by(st.ended_spliced.load(Ordering::Relaxed));
        ended
            .with_label_values(&[fe.name.as_str(), "userspace"])
            .inc_by(st.ended_userspace.load(Ordering::Relaxed));
    }
    let kev = f.counter(
        "lb_kernel_events_total",
        "eBPF program events, summed over CPUs (budget_hit: a direction went over its in-flight budget and was passed to userspace).",
        &["event"],
    )?;
    for (name, v) in live.kernel_stats() {
        kev.with_label_values(&[name]).inc_by(v);
    }

    // The XDP front door's wire counters, read from its pinned per-CPU map
    // (present only when the program is attached somewhere).
    if let Ok(x) = crate::kernel::pinned::xdp_status(&live.instance) {
        if !x.interfaces.is_empty() {
            let fam = [
                (
                    "lb_xdp_frontend_packets_total",
                    "TCP packets to the frontend seen by XDP.",
                ),
                ("lb_xdp_frontend_bytes_total", "Bytes of those packets."),
                (
                    "lb_xdp_frontend_syns_total",
                    "SYNs to the frontend seen by XDP.",
                ),
                (
                    "lb_xdp_frontend_acl_drops_total",
                    "Packets dropped by tcp-request connection rules.",
                ),
                (
                    "lb_xdp_frontend_syn_drops_total",
                    "SYNs dropped by the per-source SYN rate limit.",
                ),
                (
                    "lb_xdp_frontend_syn_cookies_total",
                    "SYNs answered with a SYN cookie SYN-ACK from XDP.",
                ),
            ];
            let c: Vec<_> = fam
                .iter()
                .map(|(n, h)| f.counter(n, h, px))
                .collect::<Result<_>>()?;
            for fe in &x.frontends {
                let l = [fe.frontend.as_str()];
                for (m, v) in c.iter().zip([
                    fe.counters.packets,
                    fe.counters.bytes,
                    fe.counters.syns,
                    fe.counters.acl_drops,
                    fe.counters.syn_drops,
                    fe.counters.syn_cookies,
                ]) {
                    m.with_label_values(&l).inc_by(v);
                }
            }
        }
    }

    let mut out = String::new();
    TextEncoder::new()
        .encode_utf8(&f.reg.gather(), &mut out)
        .context("encoding metrics")?;
    Ok(out)
}

/// Serves `GET /metrics` on `addr` with hyper on the daemon's runtime (the
/// stats page's server). Errors name the address.
pub async fn serve(live: Arc<Live>, addr: SocketAddr) -> Result<()> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    tracing::info!("Prometheus metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            let stream = match l.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let live = live.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let live = live.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&live, &req)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Ok(())
}

fn answer<B>(
    live: &Live,
    req: &hyper::Request<B>,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    use hyper::StatusCode;
    let (status, ctype, body) = if req.method() != hyper::Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".to_string(),
        )
    } else if req.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "see /metrics\n".to_string(),
        )
    } else {
        match render(live) {
            Ok(body) => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            ),
            Err(e) => {
                tracing::error!("metrics: {e:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e:#}\n"),
                )
            }
        }
    };
    let mut r = hyper::Response::new(http_body_util::Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_haproxy_names_and_labels() {
        let cfg = crate::config::parse_str(
            "defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n\
             frontend fe\n bind 127.0.0.1:1\n default_backend be\n\
             backend be\n server s1 127.0.0.1:2 check\n",
            std::path::Path::new("t.cfg"),
        )
        .unwrap();
        let mut live = Live::for_tests(cfg);
        live.frontend_limits = vec![crate::datapath::limits::Limit::new(Some(10))];
        live.state.servers[0]
            .total_conns
            .store(3, Ordering::Relaxed);
        let out = render(&live).unwrap();
        assert!(
            out.contains("haproxy_server_sessions_total{proxy=\"be\",server=\"s1\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("haproxy_backend_active_servers{proxy=\"be\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("haproxy_frontend_limit_sessions{proxy=\"fe\"} 10\n"),
            "{out}"
        );
        assert!(
            out.contains("haproxy_server_status{proxy=\"be\",server=\"s1\",state=\"UP\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("haproxy_server_check_status{proxy=\"be\",server=\"s1\",state=\"HCHK_STATUS_INI\"} 1\n"), "{out}");
        assert!(
            out.contains("# TYPE haproxy_server_bytes_in_total counter\n"),
            "{out}"
        );
        assert!(out.contains("lb_data_path{path=\"kernel\"} 1\n"), "{out}");
    }
}
