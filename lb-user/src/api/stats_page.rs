//! HAProxy's stats page, for an HTTP-mode `listen`/`frontend` whose only job
//! is `stats enable` (or `monitor-uri`): the HTML report in HAProxy's layout
//! of the TCP columns, its `;csv` and `;json` forms, basic auth (`stats
//! auth`, `stats realm`), admin actions on servers (`stats admin if COND`),
//! `stats refresh`, `stats hide-version`, `stats scope`, and `monitor-uri`.
//! Served with hyper on the daemon's tokio runtime; every figure comes from
//! the rows of `show stat`, so the page, the CSV and the runtime API agree.
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::cmd::{self, Level};
use super::stat::{self, Row};
use super::Cli;
use crate::config::matching::L4;
use crate::config::StatsPage;
use crate::datapath::Live;

/// Binds every address of the page and serves it until the process ends.
/// Errors name the address.
pub async fn serve(live: Arc<Live>, idx: usize) -> Result<()> {
    let page = &live.cfg.stats_pages[idx];
    for b in &page.binds {
        let ip = b
            .addr
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let addr = SocketAddr::new(ip, b.port_first);
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("stats page '{}': binding {addr}", page.name))?;
        tracing::info!(
            "stats page '{}' on http://{addr}{}",
            page.name,
            page.stats.uri.as_deref().unwrap_or("/haproxy?stats")
        );
        let live = live.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match l.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("stats page: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let local = stream.local_addr().unwrap_or(addr);
                let live = live.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let live = live.clone();
                        async move { Ok::<_, Infallible>(handle(&live, idx, peer, local, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
    }
    Ok(())
}

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_str(ctype).expect("static content type"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}

fn redirect(to: &str) -> Response<Full<Bytes>> {
    let mut r = reply(StatusCode::SEE_OTHER, "text/plain", "");
    if let Ok(v) = hyper::header::HeaderValue::from_str(to) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    r
}

/// Whether the request carries one of the `stats auth` pairs.
pub fn authorized(page: &StatsPage, header: Option<&str>) -> bool {
    if page.stats.auth.is_empty() {
        return true;
    }
    let Some(b64) = header.and_then(|h| h.strip_prefix("Basic ")) else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(raw) else {
        return false;
    };
    let Some((u, p)) = text.split_once(':') else {
        return false;
    };
    page.stats.auth.iter().any(|(au, ap)| au == u && ap == p)
}

async fn handle(
    live: &Live,
    idx: usize,
    peer: SocketAddr,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let page = &live.cfg.stats_pages[idx];
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let path = req.uri().path().to_string();
    if page.monitor_uri.as_deref() == Some(path.as_str()) {
        return reply(
            StatusCode::OK,
            "text/html",
            "<html><body><h1>200 OK</h1>\nService ready.\n</body></html>\n",
        );
    }
    let uri = page.uri();
    let Some(opts) = pq
        .strip_prefix(uri)
        .filter(|_| page.stats.enabled.is_some())
    else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/html",
            "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n",
        );
    };
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !authorized(page, auth) {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/html",
            "<html><body><h1>401 Unauthorized</h1>\nYou need a valid user and password to access this content.\n</body></html>\n",
        );
        let realm = page.realm().replace('"', "'");
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
            r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, v);
        }
        return r;
    }
    let l4 = L4 {
        src: peer,
        dst: local,
    };
    let admin = page.stats.admin.as_ref().is_some_and(|c| c.holds(&l4));
    if req.method() == Method::POST {
        let base = uri;
        if !admin {
            return redirect(&format!("{base};st=DENY"));
        }
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return redirect(&format!("{base};st=ERRP")),
        };
        let st = admin_action(live, &body);
        return redirect(&format!("{base};st={st}"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET, HEAD or POST\n",
        );
    }
    let rows = scoped(page, live.stat_rows());
    if opts.contains(";csv") {
        return reply(StatusCode::OK, "text/plain", stat::csv(&rows));
    }
    if opts.contains(";json") {
        return reply(StatusCode::OK, "application/json", stat::json(&rows));
    }
    let refresh = page.stats.refresh.filter(|_| !opts.contains(";norefresh"));
    let status = opts
        .split(';')
        .find_map(|o| o.strip_prefix("st="))
        .map(str::to_string);
    let html = render(live, page, &rows, admin, refresh, status.as_deref());
    reply(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// `stats scope`: only the named proxies (`.` is the page's own, which
/// carries no rows here).
fn scoped(page: &StatsPage, rows: Vec<Row>) -> Vec<Row> {
    if page.stats.scope.is_empty() {
        return rows;
    }
    rows.into_iter()
        .filter(|r| {
            let name = cell(r, "pxname");
            page.stats.scope.contains(&name)
        })
        .collect()
}

/// A server action from the admin form (`s=NAME` repeated, `action=...`,
/// `b=#IID` or a backend name), run as runtime API commands at admin level.
/// HAProxy's result codes: DONE, PART (some failed), NONE (nothing to do),
/// ERRP (bad request).
pub fn admin_action(live: &Live, body: &[u8]) -> &'static str {
    let mut servers = Vec::new();
    let mut action = None;
    let mut backend = None;
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "s" => servers.push(v.into_owned()),
            "action" => action = Some(v.into_owned()),
            "b" => backend = Some(v.into_owned()),
            _ => {}
        }
    }
    let (Some(action), Some(backend)) = (action, backend) else {
        return "ERRP";
    };
    let backend = match backend.strip_prefix('#') {
        Some(id) => {
            let rows = live.stat_rows();
            match rows
                .iter()
                .find(|r| r.kind == 1 && r.iid.to_string() == id)
                .map(|r| cell(r, "pxname"))
            {
                Some(n) => n,
                None => return "ERRP",
            }
        }
        None => backend,
    };
    let verb = |srv: &str| -> Option<String> {
        let t = format!("{backend}/{srv}");
        Some(match action.as_str() {
            "ready" => format!("set server {t} state ready"),
            "drain" => format!("set server {t} state drain"),
            "maint" => format!("set server {t} state maint"),
            "dhlth" => format!("disable health {t}"),
            "ehlth" => format!("enable health {t}"),
            "shutdown" => format!("shutdown sessions server {t}"),
            _ => return None,
        })
    };
    if servers.is_empty() {
        return "NONE";
    }
    let mut failed = 0;
    for srv in &servers {
        let Some(line) = verb(srv) else {
            return "ERRP";
        };
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let ok = match cmd::parse(&words) {
            Ok(c) => {
                let mut cli = Cli {
                    level: Level::Admin,
                    interactive: false,
                    quit: false,
                };
                super::execute(live, &mut cli, &c).trim().is_empty()
            }
            Err(_) => false,
        };
        if !ok {
            failed += 1;
        }
    }
    match failed {
        0 => "DONE",
        n if n == servers.len() => "ERRP",
        _ => "PART",
    }
}

/// ` on NODE` for `stats show-node` (the host name without a name).
fn node(page: &StatsPage) -> String {
    match page.stats.show_node.as_deref() {
        None => String::new(),
        Some("") => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!(" on {}", esc(host.trim()))
        }
        Some(n) => format!(" on {}", esc(n)),
    }
}

fn cell(r: &Row, name: &str) -> String {
    r.get(name).map(|v| v.to_string()).unwrap_or_default()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The CSS class of a row, by its status (HAProxy's colours).
fn row_class(r: &Row) -> &'static str {
    let st = cell(r, "status");
    let backup = cell(r, "bck") == "1";
    match st.as_str() {
        s if s.starts_with("MAINT") => "maintain",
        "DRAIN" | "NOLB" => "draining",
        s if s.starts_with("UP") && backup => "backup_up",
        s if s.starts_with("UP") => "active_up",
        s if s.starts_with("DOWN") && backup => "backup_down",
        s if s.starts_with("DOWN") => "active_down",
        "no check" => "active_no_check",
        _ => "",
    }
}

const CSS: &str = "body{font-family:arial,helvetica,sans-serif;font-size:12px;color:#000;background:#fff}\
h1{font-size:xx-large;margin-bottom:0.5em}h2{font-size:x-large;margin:0.2em 0}\
table.tbl{border-collapse:collapse;border-style:none;margin-bottom:1em}\
table.tbl td,table.tbl th{text-align:right;border:1px solid #aaa;white-space:nowrap;padding:2px 4px}\
table.tbl th{background:#20a0ff;color:#fff}table.tbl th.pxname{background:#b00040;text-align:left}\
table.tbl td.ac{text-align:center}table.tbl td.left,table.tbl th.left{text-align:left}\
tr.titre th{background:#20a0ff}tr.frontend td{background:#e8e8d0}tr.backend td{background:#e8e8d0;font-weight:bold}\
tr.active_up td{background:#c0ffc0}tr.active_down td{background:#ff9090}tr.active_no_check td{background:#e8e8d0}\
tr.backup_up td{background:#c0c0ff}tr.backup_down td{background:#ff9090}\
tr.maintain td{background:#c07820}tr.draining td{background:#20a0ff}\
table.lgd{border-collapse:collapse}table.lgd td{border:1px solid #aaa;padding:2px 6px}\
div.status{margin:0.5em 0;padding:4px;border:1px solid #888;background:#ffffa0}";

/// The report: HAProxy's sections (process information, legend, one table
/// per proxy with its frontend, servers and backend) and TCP columns.
pub fn render(
    live: &Live,
    page: &StatsPage,
    rows: &[Row],
    admin: bool,
    refresh: Option<std::time::Duration>,
    status: Option<&str>,
) -> String {
    let mut h = String::new();
    let version = env!("CARGO_PKG_VERSION");
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><title>Statistics Report for lb{}</title>\n\
         <meta http-equiv=\"content-type\" content=\"text/html; charset=utf-8\">\n",
        node(page)
    );
    if let Some(r) = refresh {
        let _ = writeln!(
            h,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            r.as_secs().max(1)
        );
    }
    let _ = writeln!(h, "<style>{CSS}</style></head><body>");
    if page.stats.hide_version {
        h.push_str("<h1>lb</h1>\n");
    } else {
        let _ = writeln!(h, "<h1>lb version {version}</h1>");
    }
    let _ = writeln!(
        h,
        "<h2>Statistics Report for pid {}{}</h2>",
        std::process::id(),
        node(page)
    );
    if let Some(d) = &page.stats.show_desc {
        let _ = writeln!(h, "<p>{}</p>", esc(d));
    }
    if let Some(st) = status {
        let msg = match st {
            "DONE" => "Action processed successfully.",
            "PART" => "Action partially processed.",
            "NONE" => "Nothing has changed.",
            "DENY" => "Action denied.",
            _ => "Action not processed: the request was invalid.",
        };
        let _ = writeln!(h, "<div class=\"status\">[X] {msg}</div>");
    }
    let now = crate::sys::monotonic_ns();
    let up = now.saturating_sub(live.start_ns) / 1_000_000_000;
    let cur: u64 = rows
        .iter()
        .filter(|r| r.kind == 0)
        .map(|r| cell(r, "scur").parse::<u64>().unwrap_or(0))
        .sum();
    let _ = write!(
        h,
        "<h3>&gt; General process information</h3>\n<table class=\"lgd\"><tr><td>\
         pid = {} (process #1, nbproc = 1, nbthread = {})<br>\
         uptime = {}d {}h{:02}m{:02}s<br>\
         system limits: memmax = unlimited; ulimit-n = {}<br>\
         maxsock = {}; maxconn = {}<br>\
         current conns = {cur}; instance = {}; data path = {}</td>",
        std::process::id(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        up / 86400,
        (up / 3600) % 24,
        (up / 60) % 60,
        up % 60,
        crate::sys::nofile_limit().unwrap_or(0),
        crate::sys::nofile_limit().unwrap_or(0),
        live.cfg.global.maxconn.unwrap_or(0),
        esc(&live.instance),
        if live.splice_on {
            "kernel splice"
        } else {
            "userspace copy"
        },
    );
    {
        h.push_str(
            "<td><table class=\"lgd\">\
             <tr class=\"active_up\"><td>active UP</td></tr>\
             <tr class=\"backup_up\"><td>backup UP</td></tr>\
             <tr class=\"active_down\"><td>active DOWN</td></tr>\
             <tr class=\"backup_down\"><td>backup DOWN</td></tr>\
             <tr class=\"draining\"><td>active or backup SOFT STOPPED for maintenance</td></tr>\
             <tr class=\"maintain\"><td>active or backup DOWN for maintenance (MAINT)</td></tr>\
             <tr class=\"active_no_check\"><td>not checked</td></tr></table></td>",
        );
    }
    h.push_str("</tr></table>\n");
    let _ = writeln!(
        h,
        "<p>Display option: <a href=\"{u};norefresh\">Disable refresh</a> \
         &middot; <a href=\"{u};csv\">CSV export</a> &middot; <a href=\"{u};json\">JSON export</a></p>",
        u = esc(page.uri())
    );
    // Proxies in their order, each with its rows (frontend, servers, backend).
    let mut order: Vec<String> = Vec::new();
    for r in rows {
        let n = cell(r, "pxname");
        if !order.contains(&n) {
            order.push(n);
        }
    }
    for px in &order {
        let mine: Vec<&Row> = rows.iter().filter(|r| cell(r, "pxname") == *px).collect();
        let has_servers = mine.iter().any(|r| r.kind == 2);
        let form = admin && has_servers;
        let be_iid = mine.iter().find(|r| r.kind == 1).map(|r| r.iid);
        if form {
            let _ = writeln!(h, "<form method=\"post\" action=\"{}\">", esc(page.uri()));
        }
        let _ = write!(
            h,
            "<table class=\"tbl\" id=\"{p}\"><tr class=\"titre\"><th class=\"pxname\" colspan=\"{c}\">\
             <a name=\"{p}\"></a>{p}</th></tr>\n\
             <tr class=\"titre\">{chk}<th rowspan=\"2\" class=\"left\"></th>\
             <th colspan=\"3\">Queue</th><th colspan=\"3\">Session rate</th>\
             <th colspan=\"6\">Sessions</th><th colspan=\"2\">Bytes</th>\
             <th colspan=\"2\">Denied</th><th colspan=\"3\">Errors</th>\
             <th colspan=\"2\">Warnings</th><th colspan=\"9\">Server</th></tr>\n\
             <tr class=\"titre\"><th>Cur</th><th>Max</th><th>Limit</th>\
             <th>Cur</th><th>Max</th><th>Limit</th>\
             <th>Cur</th><th>Max</th><th>Limit</th><th>Total</th><th>LbTot</th><th>Last</th>\
             <th>In</th><th>Out</th><th>Req</th><th>Resp</th>\
             <th>Req</th><th>Conn</th><th>Resp</th><th>Retr</th><th>Redis</th>\
             <th>Status</th><th>LastChk</th><th>Wght</th><th>Act</th><th>Bck</th>\
             <th>Chk</th><th>Dwn</th><th>Dwntme</th><th>Thrtle</th></tr>\n",
            p = esc(px),
            c = 31 + usize::from(form),
            chk = if form {
                "<th rowspan=\"2\"></th>"
            } else {
                ""
            },
        );
        let mut sorted = mine.clone();
        sorted.sort_by_key(|r| match r.kind {
            0 => 0,
            2 => 1,
            _ => 2,
        });
        for r in sorted {
            let (class, label) = match r.kind {
                0 => ("frontend", "Frontend".to_string()),
                1 => ("backend", "Backend".to_string()),
                _ => (row_class(r), cell(r, "svname")),
            };
            let _ = write!(h, "<tr class=\"{class}\">");
            if form {
                if r.kind == 2 {
                    let _ = write!(
                        h,
                        "<td class=\"ac\"><input type=\"checkbox\" name=\"s\" value=\"{}\"></td>",
                        esc(&label)
                    );
                } else {
                    h.push_str("<td></td>");
                }
            }
            let _ = write!(h, "<td class=\"left\">{}</td>", esc(&label));
            for f in [
                "qcur", "qmax", "qlimit", "rate", "rate_max", "rate_lim", "scur", "smax", "slim",
                "stot", "lbtot", "lastsess", "bin", "bout", "dreq", "dresp", "ereq", "econ",
                "eresp", "wretr", "wredis",
            ] {
                let v = cell(r, f);
                let v = match f {
                    // -1: never.
                    "lastsess" if v == "-1" => String::new(),
                    "lastsess" if !v.is_empty() => human_secs(&v),
                    _ => v,
                };
                let _ = write!(h, "<td>{}</td>", esc(&v));
            }
            let status = match r.kind {
                0 => cell(r, "status"),
                _ => {
                    let s = cell(r, "status");
                    let lc = cell(r, "lastchg");
                    if lc.is_empty() {
                        s
                    } else {
                        format!("{} {s}", human_secs(&lc))
                    }
                }
            };
            let chk = {
                let c = cell(r, "check_status");
                let d = cell(r, "check_duration");
                if c.is_empty() {
                    String::new()
                } else if d.is_empty() {
                    c
                } else {
                    format!("{c} in {d}ms")
                }
            };
            let _ = write!(
                h,
                "<td class=\"ac\">{}</td><td class=\"ac\">{}</td>",
                esc(&status),
                esc(&chk)
            );
            for f in [
                "weight", "act", "bck", "chkfail", "chkdown", "downtime", "throttle",
            ] {
                let v = cell(r, f);
                let v = if f == "downtime" && !v.is_empty() {
                    human_secs(&v)
                } else {
                    v
                };
                let _ = write!(h, "<td class=\"ac\">{}</td>", esc(&v));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
        if form {
            let _ = write!(
                h,
                "<p>Choose the action to perform on the checked servers : \
                 <select name=\"action\"><option value=\"\"></option>\
                 <option value=\"ready\">Set state to READY</option>\
                 <option value=\"drain\">Set state to DRAIN</option>\
                 <option value=\"maint\">Set state to MAINT</option>\
                 <option value=\"dhlth\">Health: disable checks</option>\
                 <option value=\"ehlth\">Health: enable checks</option>\
                 <option value=\"shutdown\">Kill Sessions</option></select>\
                 <input type=\"hidden\" name=\"b\" value=\"#{}\">\
                 <input type=\"submit\" value=\"Apply\"></p></form>",
                be_iid.unwrap_or(0)
            );
        }
    }
    h.push_str("</body></html>\n");
    h
}

/// HAProxy's durations: `5s`, `3m12s`, `2h05m`, `4d3h`.
fn human_secs(v: &str) -> String {
    let Ok(s) = v.parse::<u64>() else {
        return v.to_string();
    };
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d{}h", s / 86400, (s / 3600) % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn live(text: &str) -> Live {
        Live::for_tests(crate::config::parse_str(text, std::path::Path::new("t.cfg")).unwrap())
    }

    const CFG: &str = "defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n\
        listen stats\n mode http\n bind 127.0.0.1:8404\n stats enable\n stats uri /st\n stats auth a:b\n \
        stats auth c:d\n stats admin if LOCALHOST\n stats refresh 3s\n monitor-uri /up\n\
        frontend fe\n bind 127.0.0.1:1\n default_backend be\n\
        backend be\n server s1 127.0.0.1:2\n server s2 127.0.0.1:3 backup\n";

    #[test]
    fn page_from_config_auth_and_render() {
        let l = live(CFG);
        let page = &l.cfg.stats_pages[0];
        assert_eq!(page.uri(), "/st");
        assert_eq!(page.monitor_uri.as_deref(), Some("/up"));
        assert_eq!(page.stats.refresh, Some(std::time::Duration::from_secs(3)));
        // The stats listen carries no traffic: it is no frontend.
        assert_eq!(l.cfg.frontends.len(), 1);
        let b64 = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(page, Some(&b64("a:b"))));
        assert!(authorized(page, Some(&b64("c:d"))));
        assert!(!authorized(page, Some(&b64("a:d"))));
        assert!(!authorized(page, Some("Bearer x")));
        assert!(!authorized(page, None));
        l.state.servers[0].total_conns.store(7, Ordering::Relaxed);
        let html = render(
            &l,
            page,
            &l.stat_rows(),
            true,
            page.stats.refresh,
            Some("DONE"),
        );
        for want in [
            "content=\"3\"",
            "Action processed successfully",
            "<td class=\"left\">s1</td>",
            "class=\"backup_",
            "<input type=\"checkbox\" name=\"s\" value=\"s2\">",
            "<td>7</td>",
        ] {
            assert!(html.contains(want), "{want}\n{html}");
        }
        // Without admin rights, no form.
        let html = render(&l, page, &l.stat_rows(), false, None, None);
        assert!(!html.contains("<form"), "{html}");
    }

    #[test]
    fn admin_actions_run_as_runtime_commands() {
        let l = live(CFG);
        let iid = l
            .stat_rows()
            .iter()
            .find(|r| r.kind == 1)
            .map(|r| r.iid)
            .unwrap();
        assert_eq!(
            admin_action(&l, format!("s=s1&action=maint&b=%23{iid}").as_bytes()),
            "DONE"
        );
        assert_eq!(
            l.state.servers[0].state.get(),
            crate::state::SrvState::Maint
        );
        assert_eq!(admin_action(&l, b"s=s1&s=nope&action=ready&b=be"), "PART");
        assert_ne!(
            l.state.servers[0].state.get(),
            crate::state::SrvState::Maint
        );
        assert_eq!(admin_action(&l, b"action=ready&b=be"), "NONE");
        assert_eq!(admin_action(&l, b"s=s1&action=explode&b=be"), "ERRP");
        assert_eq!(admin_action(&l, b"s=s1&action=ready"), "ERRP");
        assert_eq!(admin_action(&l, b"s=s1&action=ready&b=%23999"), "ERRP");
    }
}
