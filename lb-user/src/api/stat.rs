//! `show stat`: HAProxy 2.6's statistics columns, in its order, filled with
//! what means something at L4; every other column stays empty. Rendered as
//! CSV, `typed` or `json` like HAProxy.
use std::sync::atomic::Ordering;

use crate::state::SrvState;
use serde_json::json;

use crate::config::{Balance, Config};
use crate::state::{Server, State};

/// HAProxy 2.6's `show stat` columns, position = index (its `# pxname,...` header).
pub const FIELDS: [&str; 128] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
    "-",
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_open_connections",
    "h2_backend_open_streams",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
];

/// The columns lb fills (the rest has no meaning at L4 or is not tracked).
pub const L4_FIELDS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "econ",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "lbtot",
    "type",
    "check_status",
    "check_duration",
    "lastsess",
    "check_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "addr",
    "mode",
    "algo",
    "conn_tot",
    "uweight",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
];

pub fn pos(name: &str) -> usize {
    FIELDS
        .iter()
        .position(|f| *f == name)
        .unwrap_or_else(|| panic!("unknown stat field {name}"))
}

/// HAProxy's field tags (origin, nature, scope) and value type, for `typed`
/// and `json`.
fn tags(name: &str) -> (&'static str, &'static str) {
    match name {
        "pxname" | "svname" => ("KNS", "str"),
        "status" => ("SGP", "str"),
        "addr" | "mode" | "algo" => ("CGS", "str"),
        "check_status" | "check_desc" | "last_chk" => ("MOP", "str"),
        "qcur" | "scur" | "srv_icur" => ("MGP", "u32"),
        "qmax" | "smax" => ("MMP", "u32"),
        "slim" | "qlimit" => ("CLP", "u32"),
        "weight" | "uweight" => ("MaP", "u32"),
        "act" | "bck" => ("SGP", "u32"),
        "lastchg" => ("MAP", "u32"),
        "downtime" => ("MCP", "u32"),
        "qtime" | "ctime" | "rtime" | "ttime" => ("MaP", "u32"),
        "qtime_max" | "ctime_max" | "rtime_max" | "ttime_max" => ("MMP", "u32"),
        "lastsess" => ("MAP", "s32"),
        "pid" => ("KGP", "u32"),
        "iid" | "sid" => ("KGS", "u32"),
        "type" | "check_rise" | "check_fall" | "check_health" => ("CGS", "u32"),
        "check_duration" => ("MDP", "u64"),
        _ => ("MCP", "u64"),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Str(String),
    Num(u64),
    Signed(i64),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Str(s) => f.write_str(s),
            Val::Num(n) => write!(f, "{n}"),
            Val::Signed(n) => write!(f, "{n}"),
        }
    }
}

/// One line of `show stat`.
#[derive(Clone, Debug)]
pub struct Row {
    /// 0 frontend, 1 backend, 2 server (HAProxy's `type`).
    pub kind: u32,
    pub iid: u32,
    pub sid: u32,
    pub cells: Vec<Option<Val>>,
}

impl Row {
    fn new(kind: u32, iid: u32, sid: u32) -> Self {
        let mut r = Self {
            kind,
            iid,
            sid,
            cells: vec![None; FIELDS.len()],
        };
        r.set("pid", Val::Num(1));
        r.set("iid", Val::Num(iid as u64));
        r.set("sid", Val::Num(sid as u64));
        r.set("type", Val::Num(kind as u64));
        r.set("mode", Val::Str("tcp".into()));
        r
    }

    fn set(&mut self, name: &str, v: Val) {
        self.cells[pos(name)] = Some(v);
    }

    fn num(&mut self, name: &str, v: u64) {
        self.set(name, Val::Num(v));
    }

    fn str(&mut self, name: &str, v: impl Into<String>) {
        self.set(name, Val::Str(v.into()));
    }

    pub fn get(&self, name: &str) -> Option<&Val> {
        self.cells[pos(name)].as_ref()
    }
}

/// What `show stat` needs besides the config and the live state.
pub struct Inputs<'a> {
    pub cfg: &'a Config,
    pub state: &'a State,
    /// Bytes the kernel moved per server index (in, out), summed over CPUs.
    pub kernel_bytes: &'a [(u64, u64)],
    /// Each frontend's current maxconn (0: none).
    pub fe_maxconn: Vec<u32>,
    pub now_ns: u64,
}

fn secs_since(now: u64, then: u64) -> u64 {
    now.saturating_sub(then) / 1_000_000_000
}

/// HAProxy's server status text.
pub fn server_status(s: &Server) -> String {
    let state = s.state.get();
    let h = s.health.load(Ordering::Relaxed);
    match state {
        SrvState::Maint => "MAINT".into(),
        SrvState::Up if s.admin.drain.load(Ordering::Relaxed) => "DRAIN".into(),
        SrvState::Up if s.admin.stopping.load(Ordering::Relaxed) => "NOLB".into(),
        SrvState::Up if s.admin.checks_disabled.load(Ordering::Relaxed) => "no check".into(),
        SrvState::Up => match s.check() {
            None => "no check".into(),
            Some(p) => {
                let top = p.rise + p.fall - 1;
                if h < top && h >= p.rise {
                    format!("UP {}/{}", h - p.rise + 1, p.fall)
                } else {
                    "UP".into()
                }
            }
        },
        SrvState::Down => match s.check() {
            Some(p) if h > 0 && h < p.rise => format!("DOWN {}/{}", h, p.rise),
            _ => "DOWN".into(),
        },
    }
}

/// HAProxy's check status code and description of the last check.
pub fn check_result(s: &Server) -> Option<(&'static str, &'static str)> {
    s.check()?;
    let st = s.check_status.load(Ordering::Relaxed);
    Some((
        lb_common::chk::NAMES
            .get(st as usize)
            .copied()
            .unwrap_or("UNK"),
        crate::health::engine::status_desc(st),
    ))
}

/// HAProxy's numeric `enum healthcheck_status` (as `show servers state` prints
/// it) and `CHK_RES_*` for a [`lb_common::chk`] code.
pub fn check_status_numbers(st: u32) -> (u32, u32) {
    use lb_common::chk;
    let status = match st {
        chk::INI => 1,
        chk::SOCKERR => 5,
        chk::L4OK => 6,
        chk::L4TOUT => 7,
        chk::L4CON => 8,
        chk::L6OK => 9,
        chk::L6TOUT => 10,
        chk::L6RSP => 11,
        chk::L7TOUT => 12,
        chk::L7RSP => 13,
        chk::L7OK => 14,
        chk::L7OKC => 15,
        chk::L7STS => 16,
        chk::PROCERR => 17,
        chk::PROCTOUT => 18,
        chk::PROCOK => 19,
        _ => 0,
    };
    // CHK_RES_UNKNOWN 0, FAILED 2, PASSED 3, CONDPASS 4.
    let result = match st {
        chk::INI | chk::UNK => 0,
        chk::L4OK | chk::L6OK | chk::L7OK | chk::PROCOK => 3,
        chk::L7OKC => 4,
        _ => 2,
    };
    (status, result)
}

pub fn server_bytes(inp: &Inputs<'_>, s: &Server) -> (u64, u64) {
    let (kin, kout) = inp
        .kernel_bytes
        .get(s.idx as usize)
        .copied()
        .unwrap_or_default();
    (
        kin + s.user_bytes_in.load(Ordering::Relaxed),
        kout + s.user_bytes_out.load(Ordering::Relaxed),
    )
}

fn server_row(inp: &Inputs<'_>, iid: u32, s: &Server) -> Row {
    let mut r = Row::new(2, iid, s.id);
    r.str("pxname", &s.backend);
    r.str("svname", s.name());
    // The backend's queue is shared (no per-server queue): 0 here as in
    // HAProxy without persistence.
    r.num("qcur", 0);
    r.num("qmax", 0);
    r.num("scur", s.cur_conns.load(Ordering::Relaxed) as u64);
    r.num("smax", s.admin.max_conns.load(Ordering::Relaxed) as u64);
    let maxconn = s.configured_maxconn();
    if maxconn > 0 {
        r.num("slim", maxconn as u64);
    }
    let total = s.total_conns.load(Ordering::Relaxed);
    r.num("stot", total);
    r.num("lbtot", total);
    let (bin, bout) = server_bytes(inp, s);
    r.num("bin", bin);
    r.num("bout", bout);
    r.num("econ", s.admin.econ.load(Ordering::Relaxed));
    r.num("wretr", s.admin.retries.load(Ordering::Relaxed));
    r.num("wredis", s.admin.redispatches.load(Ordering::Relaxed));
    r.str("status", server_status(s));
    r.num("weight", s.effective_weight() as u64);
    r.num("uweight", s.weight.load(Ordering::Relaxed) as u64);
    r.num("act", !s.backup() as u64);
    r.num("bck", s.backup() as u64);
    r.num(
        "lastchg",
        secs_since(inp.now_ns, s.admin.last_change_ns.load(Ordering::Relaxed)),
    );
    let last_sess = s.admin.last_sess_ns.load(Ordering::Relaxed);
    r.set(
        "lastsess",
        Val::Signed(if last_sess == 0 {
            -1
        } else {
            secs_since(inp.now_ns, last_sess) as i64
        }),
    );
    r.str("addr", s.addr().to_string());
    set_times(&mut r, &s.admin.times);
    if let Some(p) = s.check() {
        r.num("chkfail", s.checks_failed.load(Ordering::Relaxed));
        r.num("chkdown", s.admin.downs.load(Ordering::Relaxed));
        let since = s.admin.down_since_ns.load(Ordering::Relaxed);
        let down = s.admin.downtime_ns.load(Ordering::Relaxed)
            + if since > 0 {
                inp.now_ns.saturating_sub(since)
            } else {
                0
            };
        r.num("downtime", down / 1_000_000_000);
        if let Some((code, desc)) = check_result(s) {
            r.str("check_status", code);
            r.str("check_desc", desc);
            if code != "INI" {
                r.num(
                    "check_duration",
                    s.check_us.load(Ordering::Relaxed) as u64 / 1000,
                );
            }
            let l7 = s.check_code.load(Ordering::Relaxed);
            if l7 != 0 {
                r.num("check_code", l7 as u64);
            }
        }
        r.num("check_rise", p.rise as u64);
        r.num("check_fall", p.fall as u64);
        r.num("check_health", s.health.load(Ordering::Relaxed) as u64);
    }
    r
}

/// The time columns that mean something at L4; `rtime` (HTTP response
/// time) is 0 as in HAProxy's TCP proxies.
fn set_times(r: &mut Row, t: &crate::state::admin::SessionTimes) {
    let [q, c, tt] = t.averages();
    let [qm, cm, tm] = t.maxima();
    for (name, v) in [
        ("qtime", q),
        ("ctime", c),
        ("rtime", 0),
        ("ttime", tt),
        ("qtime_max", qm),
        ("ctime_max", cm),
        ("rtime_max", 0),
        ("ttime_max", tm),
    ] {
        r.num(name, v);
    }
}

/// Builds every row: each frontend, then each backend's servers and its
/// BACKEND line (a `listen` section's backend right after its frontend).
pub fn rows(inp: &Inputs<'_>) -> Vec<Row> {
    let cfg = inp.cfg;
    let mut out = Vec::new();
    let mut order: Vec<(bool, usize)> = Vec::new();
    for (i, f) in cfg.frontends.iter().enumerate() {
        order.push((true, i));
        if let Some(b) = cfg.backends.iter().position(|b| b.name == f.name) {
            order.push((false, b));
        }
    }
    for (i, _) in cfg.backends.iter().enumerate() {
        if !order.contains(&(false, i)) {
            order.push((false, i));
        }
    }
    // Proxy ids in config order from 2, as HAProxy numbers them after its
    // internal proxy; a listen section's two halves share one.
    let mut iids = std::collections::HashMap::new();
    let mut next = 2u32;
    for &(is_fe, i) in &order {
        let name = if is_fe {
            &cfg.frontends[i].name
        } else {
            &cfg.backends[i].name
        };
        iids.entry(name.clone()).or_insert_with(|| {
            next += 1;
            next - 1
        });
    }
    for (is_fe, i) in order {
        if is_fe {
            let f = &cfg.frontends[i];
            let st = &inp.state.frontends[i];
            let mut r = Row::new(0, iids[&f.name], 0);
            r.str("pxname", &f.name);
            r.str("svname", "FRONTEND");
            r.num("scur", st.cur.load(Ordering::Relaxed) as u64);
            r.num("smax", st.max.load(Ordering::Relaxed) as u64);
            if let Some(&m) = inp.fe_maxconn.get(i).filter(|&&m| m > 0) {
                r.num("slim", m as u64);
            }
            let total = st.total.load(Ordering::Relaxed);
            r.num("stot", total);
            r.num("conn_tot", total);
            let (mut bin, mut bout) = (
                st.bytes_in.load(Ordering::Relaxed),
                st.bytes_out.load(Ordering::Relaxed),
            );
            for s in inp.state.sessions.list() {
                if s.frontend == i {
                    bin += s.bytes_in.load(Ordering::Relaxed);
                    bout += s.bytes_out.load(Ordering::Relaxed);
                }
            }
            r.num("bin", bin);
            r.num("bout", bout);
            r.num("dreq", st.denied_req.load(Ordering::Relaxed));
            r.str("status", "OPEN");
            out.push(r);
        } else {
            let b = &cfg.backends[i];
            let bs = &inp.state.backends[i];
            let iid = iids[&b.name];
            let mut sum = Row::new(1, iid, 0);
            let (mut scur, mut stot, mut bin, mut bout, mut econ, mut wretr, mut wredis) =
                (0, 0, 0, 0, 0, 0, 0);
            let (mut act, mut bck, mut weight, mut uweight, mut smax) = (0, 0, 0, 0, 0);
            let mut last_sess = 0u64;
            let mut last_chg = 0u64;
            for &idx in &bs.servers {
                let s = &inp.state.servers[idx as usize];
                let r = server_row(inp, iid, s);
                out.push(r);
                scur += s.cur_conns.load(Ordering::Relaxed) as u64;
                smax += s.admin.max_conns.load(Ordering::Relaxed) as u64;
                stot += s.total_conns.load(Ordering::Relaxed);
                let (i, o) = server_bytes(inp, s);
                bin += i;
                bout += o;
                econ += s.admin.econ.load(Ordering::Relaxed);
                wretr += s.admin.retries.load(Ordering::Relaxed);
                wredis += s.admin.redispatches.load(Ordering::Relaxed);
                last_sess = last_sess.max(s.admin.last_sess_ns.load(Ordering::Relaxed));
                last_chg = last_chg.max(s.admin.last_change_ns.load(Ordering::Relaxed));
                let usable = s.is_up() && s.effective_weight() > 0;
                if usable {
                    if s.backup() {
                        bck += 1;
                    } else {
                        act += 1;
                        weight += s.effective_weight() as u64;
                        uweight += s.weight.load(Ordering::Relaxed) as u64;
                    }
                }
            }
            sum.str("pxname", &b.name);
            sum.str("svname", "BACKEND");
            sum.num("qcur", bs.queued.load(Ordering::Relaxed) as u64);
            sum.num("qmax", 0);
            sum.num("scur", scur);
            sum.num("smax", smax);
            // HAProxy's default fullconn: a tenth of the maxconn of the
            // frontends that use this backend.
            let fe_sum: u64 = cfg
                .frontends
                .iter()
                .enumerate()
                .filter(|(_, f)| f.default_backend_idx == Some(i))
                .map(|(fi, _)| inp.fe_maxconn.get(fi).copied().unwrap_or(0) as u64)
                .sum();
            let full = b.fullconn.as_ref().map(|v| v.value as u64);
            if let Some(v) = full.or((fe_sum > 0).then(|| fe_sum.div_ceil(10))) {
                sum.num("slim", v);
            }
            sum.num("stot", stot);
            sum.num("lbtot", stot);
            sum.num("bin", bin);
            sum.num("bout", bout);
            sum.num("econ", econ);
            sum.num("wretr", wretr);
            sum.num("wredis", wredis);
            sum.str("status", if act + bck > 0 { "UP" } else { "DOWN" });
            sum.num("weight", weight);
            sum.num("uweight", uweight);
            sum.num("act", act);
            sum.num("bck", bck);
            sum.num("chkdown", 0);
            sum.num("lastchg", secs_since(inp.now_ns, last_chg));
            sum.num("downtime", 0);
            sum.set(
                "lastsess",
                Val::Signed(if last_sess == 0 {
                    -1
                } else {
                    secs_since(inp.now_ns, last_sess) as i64
                }),
            );
            sum.str(
                "algo",
                match b.balance {
                    Balance::RoundRobin => "roundrobin",
                    Balance::StaticRr => "static-rr",
                    Balance::LeastConn => "leastconn",
                    Balance::First => "first",
                    Balance::Source => "source",
                    Balance::Random { .. } => "random",
                },
            );
            if bs.maxqueue > 0 {
                sum.num("qlimit", bs.maxqueue as u64);
            }
            set_times(&mut sum, &bs.times);
            out.push(sum);
        }
    }
    out
}

pub fn header() -> String {
    format!("# {},\n", FIELDS.join(","))
}

pub fn csv(rows: &[Row]) -> String {
    let mut out = header();
    for r in rows {
        for c in &r.cells {
            if let Some(v) = c {
                let s = v.to_string();
                // HAProxy's CSV escaping: quote values holding a separator.
                if s.contains([',', '"', '\n']) {
                    out.push('"');
                    out.push_str(&s.replace('"', "\"\""));
                    out.push('"');
                } else {
                    out.push_str(&s);
                }
            }
            out.push(',');
        }
        out.push('\n');
    }
    out.push('\n');
    out
}

fn obj_letter(kind: u32) -> char {
    match kind {
        0 => 'F',
        1 => 'B',
        _ => 'S',
    }
}

pub fn typed(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.cells.iter().enumerate() {
            if let Some(v) = c {
                let (t, ty) = tags(FIELDS[i]);
                out.push_str(&format!(
                    "{}.{}.{}.{}.{}.1:{}:{}:{}\n",
                    obj_letter(r.kind),
                    r.iid,
                    r.sid,
                    i,
                    FIELDS[i],
                    t,
                    ty,
                    v
                ));
            }
        }
    }
    out.push('\n');
    out
}

fn tag_words(t: &str) -> (&'static str, &'static str, &'static str) {
    let b = t.as_bytes();
    let origin = match b[0] {
        b'K' => "Key",
        b'C' => "Config",
        b'S' => "Status",
        b'O' => "Output",
        _ => "Metric",
    };
    let nature = match b[1] {
        b'N' => "Name",
        b'M' => "Max",
        b'L' => "Limit",
        b'C' => "Counter",
        b'R' => "Rate",
        b'D' => "Duration",
        b'A' => "Age",
        b'a' => "Avg",
        b'O' => "Output",
        _ => "Gauge",
    };
    let scope = if b[2] == b'S' { "Service" } else { "Process" };
    (origin, nature, scope)
}

pub fn json(rows: &[Row]) -> String {
    let mut all = Vec::new();
    for r in rows {
        let mut fields = Vec::new();
        for (i, c) in r.cells.iter().enumerate() {
            let Some(v) = c else { continue };
            let (t, ty) = tags(FIELDS[i]);
            let (origin, nature, scope) = tag_words(t);
            let value = match v {
                Val::Str(s) => json!(s),
                Val::Num(n) => json!(n),
                Val::Signed(n) => json!(n),
            };
            fields.push(json!({
                "objType": match r.kind { 0 => "Frontend", 1 => "Backend", _ => "Server" },
                "proxyId": r.iid,
                "id": r.sid,
                "field": {"pos": i, "name": FIELDS[i]},
                "processNum": 1,
                "tags": {"origin": origin, "nature": nature, "scope": scope},
                "value": {"type": ty, "value": value},
            }));
        }
        all.push(serde_json::Value::Array(fields));
    }
    let mut s = serde_json::Value::Array(all).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend fe
    bind 127.0.0.1:1
    maxconn 500
    default_backend be
backend be
    server s1 127.0.0.1:2 weight 10
    server s2 127.0.0.1:3 check inter 1s backup
";

    fn inputs_rows() -> Vec<Row> {
        let cfg = crate::config::parse_str(CFG, std::path::Path::new("t.cfg")).unwrap();
        let state = State::from_config(&cfg);
        state.servers[0].total_conns.store(7, Ordering::Relaxed);
        state.servers[0].admin.times.record(1, 3, 40);
        state.servers[0].admin.times.record(3, 5, 60);
        state.backends[0].times.record(3, 5, 60);
        let kb = vec![(100, 200), (0, 0)];
        let inp = Inputs {
            cfg: &cfg,
            state: &state,
            kernel_bytes: &kb,
            fe_maxconn: vec![500],
            now_ns: crate::sys::monotonic_ns(),
        };
        rows(&inp)
    }

    #[test]
    fn header_is_haproxy_26() {
        assert_eq!(FIELDS.len(), 128);
        assert_eq!(pos("pxname"), 0);
        assert_eq!(pos("status"), 17);
        assert_eq!(pos("addr"), 73);
        assert_eq!(pos("uweight"), 99);
        assert_eq!(pos("h1_spliced_bytes_out"), 127);
        for f in L4_FIELDS {
            pos(f);
        }
    }

    #[test]
    fn rows_hold_l4_values_at_haproxy_positions() {
        let rows = inputs_rows();
        assert_eq!(rows.len(), 4);
        let csv = csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        let cols: Vec<Vec<&str>> = lines.iter().map(|l| l.split(',').collect()).collect();
        for c in &cols[1..4] {
            assert_eq!(c.len(), 129, "{c:?}");
        }
        let fe = &cols[1];
        assert_eq!(
            (fe[0], fe[1], fe[6], fe[17], fe[75]),
            ("fe", "FRONTEND", "500", "OPEN", "tcp")
        );
        let s1 = &cols[2];
        assert_eq!((s1[1], s1[7], s1[8], s1[9]), ("s1", "7", "100", "200"));
        assert_eq!(
            (s1[17], s1[18], s1[19], s1[20]),
            ("no check", "10", "1", "0")
        );
        assert_eq!(s1[73], "127.0.0.1:2");
        assert_eq!(s1[55], "-1");
        let t = |c: &Vec<&str>| -> Vec<String> {
            ["qtime", "ctime", "rtime", "ttime", "ctime_max", "ttime_max"]
                .iter()
                .map(|f| c[pos(f)].to_string())
                .collect()
        };
        assert_eq!(t(s1), ["2", "4", "0", "50", "5", "60"]);
        assert_eq!(t(&cols[3]), ["0", "0", "0", "0", "0", "0"]);
        assert_eq!(t(&cols[4]), ["3", "5", "0", "60", "5", "60"]);
        let s2 = &cols[3];
        assert_eq!(
            (s2[17], s2[19], s2[20], s2[36]),
            ("UP 1/3", "0", "1", "INI")
        );
        assert_eq!((s2[67], s2[68], s2[69]), ("2", "3", "2"));
        let be = &cols[4];
        assert_eq!(
            (be[1], be[6], be[17], be[18], be[76]),
            ("BACKEND", "50", "UP", "10", "roundrobin")
        );
        // Columns with no L4 meaning stay empty.
        assert_eq!(be[pos("hrsp_2xx")], "");
        assert_eq!(lines.last(), Some(&""));
    }

    #[test]
    fn typed_and_json_carry_positions() {
        let rows = inputs_rows();
        let t = typed(&rows);
        assert!(t.contains("F.2.0.0.pxname.1:KNS:str:fe\n"), "{t}");
        assert!(t.contains("S.3.1.17.status.1:SGP:str:no check\n"), "{t}");
        let j: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        let first = &j[0][0];
        assert_eq!(first["objType"], "Frontend");
        assert_eq!(first["field"]["name"], "pxname");
        assert_eq!(first["value"]["value"], "fe");
    }
}
