//! The `lb` CLI's side of the runtime API: requests over the stats socket,
//! answers turned into tables or JSON.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

pub use crate::api::default_socket;

/// Sends one request line, returns the whole answer.
pub fn request(sock: &Path, line: &str) -> Result<String> {
    let mut s = UnixStream::connect(sock).with_context(|| {
        format!(
            "connecting to the runtime API at {} (is `lb run` running with this --instance, or pass --socket?)",
            sock.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(line.as_bytes())
        .and_then(|()| s.write_all(b"\n"))
        .with_context(|| format!("sending {line:?} to {}", sock.display()))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .with_context(|| format!("reading the answer to {line:?} from {}", sock.display()))?;
    Ok(out)
}

/// A read: HAProxy answers errors in plain text on the same channel, so the
/// known error answers become errors here.
pub fn read(sock: &Path, line: &str) -> Result<String> {
    let out = request(sock, line)?;
    let first = out.lines().next().unwrap_or("");
    if first == "Permission denied"
        || first.starts_with("Unknown command")
        || first.starts_with("No such")
        || first.starts_with("Can't find")
    {
        bail!("{}", out.trim());
    }
    Ok(out)
}

/// A write: an empty answer is success; anything else is HAProxy's error text.
pub fn command(sock: &Path, line: &str) -> Result<()> {
    let out = request(sock, line)?;
    let text = out.trim();
    // HAProxy answers a change of address with what changed: not an error.
    let report = [
        "IP changed from",
        "port changed from",
        "no need to change the addr",
    ];
    if report.iter().any(|r| text.starts_with(r)) {
        println!("{text}");
    } else if !text.is_empty() {
        bail!("{text}");
    }
    Ok(())
}

/// `show stat` as one map per row, non-empty columns only.
pub fn stat(sock: &Path) -> Result<Vec<BTreeMap<String, String>>> {
    let out = read(sock, "show stat")?;
    parse_stat(&out)
}

pub fn parse_stat(out: &str) -> Result<Vec<BTreeMap<String, String>>> {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or("");
    let Some(names) = header.strip_prefix("# ") else {
        bail!("unexpected answer to show stat: {}", out.trim());
    };
    let names: Vec<&str> = names.split(',').collect();
    let mut rows = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let row: BTreeMap<String, String> = names
            .iter()
            .zip(l.split(','))
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        rows.push(row);
    }
    Ok(rows)
}

/// Values that are numbers become JSON numbers.
pub fn to_json(row: &BTreeMap<String, String>) -> Value {
    let mut m = Map::new();
    for (k, v) in row {
        let val = v
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(v.clone()));
        m.insert(k.clone(), val);
    }
    Value::Object(m)
}

/// UP, DOWN or MAINT from HAProxy's status text (DRAIN and NOLB are UP
/// servers that take no new sessions; "UP 1/3" is going down).
pub fn op_state(status: &str) -> &'static str {
    if status.starts_with("DOWN") {
        "DOWN"
    } else if status.starts_with("MAINT") {
        "MAINT"
    } else {
        "UP"
    }
}

/// The administrative state `show stat`'s status column reveals, in the words
/// of `lb show servers`' ADMIN column: MAINT, DRAIN or NOLB (while UP), or
/// nothing. (Paused checks are not in `show stat`; the pinned maps have them.)
pub fn admin_state(status: &str) -> &'static str {
    if status.starts_with("MAINT") {
        "MAINT"
    } else if status == "DRAIN" {
        "DRAIN"
    } else if status == "NOLB" {
        "NOLB"
    } else {
        ""
    }
}

fn get<'a>(r: &'a BTreeMap<String, String>, k: &str) -> &'a str {
    r.get(k).map(String::as_str).unwrap_or("")
}

fn num(r: &BTreeMap<String, String>, k: &str) -> u64 {
    get(r, k).parse().unwrap_or(0)
}

/// Rows of one kind: "FRONTEND", "BACKEND" or servers (anything else).
pub fn of_kind(rows: &[BTreeMap<String, String>], kind: &str) -> Vec<BTreeMap<String, String>> {
    rows.iter()
        .filter(|r| {
            let sv = get(r, "svname");
            match kind {
                "FRONTEND" | "BACKEND" => sv == kind,
                _ => sv != "FRONTEND" && sv != "BACKEND",
            }
        })
        .cloned()
        .collect()
}

/// `lb show servers --json`: the fields scripts (and lb's tests) read, plus
/// HAProxy's status text.
pub fn server_json(r: &BTreeMap<String, String>) -> Value {
    serde_json::json!({
        "backend": get(r, "pxname"),
        "name": get(r, "svname"),
        "addr": get(r, "addr"),
        "state": op_state(get(r, "status")),
        "status": get(r, "status"),
        "admin": admin_state(get(r, "status")),
        "weight": num(r, "weight"),
        "uweight": num(r, "uweight"),
        "health": num(r, "check_health"),
        "cur_conns": num(r, "scur"),
        "max_conns": num(r, "smax"),
        "total_conns": num(r, "stot"),
        "bytes_in": num(r, "bin"),
        "bytes_out": num(r, "bout"),
        "checks_failed": num(r, "chkfail"),
        "check_status": get(r, "check_status"),
        "check_desc": get(r, "check_desc"),
        "check_code": num(r, "check_code"),
        "check_ms": num(r, "check_duration"),
    })
}

/// `live` (from `show stat`) completed with what only the pinned maps hold;
/// the live values win, except a richer admin state (paused checks).
pub fn with_pinned(mut live: Value, pinned: Option<&crate::kernel::pinned::ServerRow>) -> Value {
    let (Some(obj), Some(p)) = (live.as_object_mut(), pinned) else {
        return live;
    };
    let Ok(Value::Object(p)) = serde_json::to_value(p) else {
        return live;
    };
    for (k, v) in p {
        if k == "admin" && v.as_str().is_some_and(|a| !a.is_empty()) {
            obj.insert(k, v);
        } else {
            obj.entry(k).or_insert(v);
        }
    }
    live
}

pub fn server_cells(r: &BTreeMap<String, String>) -> [String; 11] {
    [
        get(r, "pxname").into(),
        get(r, "svname").into(),
        get(r, "addr").into(),
        get(r, "status").into(),
        get(r, "weight").into(),
        get(r, "scur").into(),
        get(r, "smax").into(),
        get(r, "stot").into(),
        get(r, "bin").into(),
        get(r, "bout").into(),
        match get(r, "check_status") {
            "" => "-".into(),
            s => format!("{s} {}ms", get(r, "check_duration")),
        },
    ]
}

pub const SERVER_HEADERS: [&str; 11] = [
    "BACKEND",
    "SERVER",
    "ADDRESS",
    "STATUS",
    "WEIGHT",
    "CUR",
    "MAX",
    "TOTAL",
    "BYTES_IN",
    "BYTES_OUT",
    "CHECK",
];

pub const FRONTEND_HEADERS: [&str; 8] = [
    "FRONTEND",
    "STATUS",
    "CUR",
    "MAX",
    "LIMIT",
    "TOTAL",
    "BYTES_IN",
    "BYTES_OUT",
];

pub fn frontend_cells(r: &BTreeMap<String, String>) -> [String; 8] {
    [
        get(r, "pxname").into(),
        get(r, "status").into(),
        get(r, "scur").into(),
        get(r, "smax").into(),
        match get(r, "slim") {
            "" => "-".into(),
            s => s.into(),
        },
        get(r, "stot").into(),
        get(r, "bin").into(),
        get(r, "bout").into(),
    ]
}

pub const BACKEND_HEADERS: [&str; 10] = [
    "BACKEND",
    "STATUS",
    "ALGO",
    "ACT",
    "BCK",
    "WEIGHT",
    "CUR",
    "QUEUE",
    "TOTAL",
    "BYTES_OUT",
];

pub fn backend_cells(r: &BTreeMap<String, String>) -> [String; 10] {
    [
        get(r, "pxname").into(),
        get(r, "status").into(),
        get(r, "algo").into(),
        get(r, "act").into(),
        get(r, "bck").into(),
        get(r, "weight").into(),
        get(r, "scur").into(),
        get(r, "qcur").into(),
        get(r, "stot").into(),
        get(r, "bout").into(),
    ]
}

/// `show info` lines as (name, value).
pub fn parse_info(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `show sess` lines as key=value maps (the leading `0xID:` as `id`).
pub fn parse_sess(out: &str) -> Vec<BTreeMap<String, String>> {
    out.lines()
        .filter_map(|l| {
            let (id, rest) = l.split_once(": ")?;
            let mut m = BTreeMap::new();
            m.insert("id".to_string(), id.to_string());
            for kv in rest.split(' ') {
                if let Some((k, v)) = kv.split_once('=') {
                    m.insert(k.to_string(), v.to_string());
                }
            }
            Some(m)
        })
        .collect()
}

pub const SESSION_HEADERS: [&str; 9] = [
    "ID",
    "CLIENT",
    "FRONTEND",
    "BACKEND",
    "SERVER",
    "AGE",
    "PATH",
    "BYTES_IN",
    "BYTES_OUT",
];

pub fn session_cells(m: &BTreeMap<String, String>) -> [String; 9] {
    [
        "id",
        "src",
        "fe",
        "be",
        "srv",
        "age",
        "path",
        "bytes_in",
        "bytes_out",
    ]
    .map(|k| get(m, k).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str =
        "# pxname,svname,status,weight,scur,stot,addr,check_status,check_duration,\n\
        fe,FRONTEND,OPEN,,1,5,,,,\n\
        be,s1,UP 1/3,10,1,5,10.0.0.1:80,L4OK,0,\n\
        be,s2,DRAIN,0,0,0,10.0.0.2:80,,,\n\
        be,BACKEND,UP,10,1,5,,,,\n\n";

    #[test]
    fn stat_rows_and_kinds() {
        let rows = parse_stat(STAT).unwrap();
        assert_eq!(rows.len(), 4);
        let servers = of_kind(&rows, "server");
        assert_eq!(servers.len(), 2);
        let j = server_json(&servers[0]);
        assert_eq!(j["state"], "UP");
        assert_eq!(j["status"], "UP 1/3");
        assert_eq!(j["weight"], 10);
        assert_eq!(server_json(&servers[1])["state"], "UP");
        assert_eq!(of_kind(&rows, "FRONTEND")[0]["stot"], "5");
        assert!(parse_stat("Unknown command\n").is_err());
        assert_eq!(to_json(&rows[0])["scur"], 1);
    }

    #[test]
    fn info_and_sessions() {
        assert_eq!(
            parse_info("Name: lb\nUptime: 0d 0h00m01s\n"),
            vec![
                ("Name".into(), "lb".into()),
                ("Uptime".into(), "0d 0h00m01s".into())
            ]
        );
        let s =
            parse_sess("0x1f: proto=tcpv4 src=10.0.0.1:5 fe=f be=b srv=s1 age=3s path=kernel\n");
        assert_eq!(s[0]["id"], "0x1f");
        assert_eq!(s[0]["srv"], "s1");
        assert_eq!(op_state("DOWN 1/2"), "DOWN");
        assert_eq!(op_state("MAINT"), "MAINT");
    }
}
