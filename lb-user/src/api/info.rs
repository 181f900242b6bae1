//! `show info`: process information under HAProxy's field names and positions.
use serde_json::json;

use super::cmd::Format;
use super::Live;

pub struct Field {
    pub pos: u32,
    pub name: &'static str,
    pub tags: &'static str,
    pub value: super::stat::Val,
}

fn uptime(secs: u64) -> String {
    format!(
        "{}d {}h{:02}m{:02}s",
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

pub fn fields(live: &Live) -> Vec<Field> {
    use super::stat::Val::{Num, Str};
    let now = crate::sys::monotonic_ns();
    let up = now.saturating_sub(live.start_ns) / 1_000_000_000;
    let nofile = crate::sys::nofile_limit().unwrap_or(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let sessions = live.state.sessions.len() as u64;
    let listeners: u64 = live
        .cfg
        .frontends
        .iter()
        .map(|f| f.bind_keys().len() as u64)
        .sum();
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let f = |pos, name, tags, value| Field {
        pos,
        name,
        tags,
        value,
    };
    vec![
        f(0, "Name", "POS", Str("lb".into())),
        f(1, "Version", "POS", Str(env!("CARGO_PKG_VERSION").into())),
        f(3, "Nbthread", "CGS", Num(threads)),
        f(4, "Nbproc", "CGS", Num(1)),
        f(5, "Process_num", "KGP", Num(1)),
        f(6, "Pid", "SGP", Num(std::process::id() as u64)),
        f(7, "Uptime", "MDP", Str(uptime(up))),
        f(8, "Uptime_sec", "MDP", Num(up)),
        f(13, "Ulimit-n", "CLP", Num(nofile)),
        f(15, "Maxconn", "CLP", Num(live.global_limit.get() as u64)),
        f(17, "CurrConns", "MGP", Num(sessions)),
        f(18, "CumConns", "MCP", Num(live.state.sessions.opened())),
        f(50, "node", "COS", Str(node)),
        f(52, "Stopping", "MGP", Num(0)),
        f(53, "Jobs", "MGP", Num(sessions + listeners)),
        f(55, "Listeners", "MGP", Num(listeners)),
        f(
            100,
            "Lb_data_path",
            "CGP",
            Str(if live.splice_on {
                "kernel"
            } else {
                "userspace"
            }
            .into()),
        ),
        f(101, "Lb_instance", "CGP", Str(live.instance.clone())),
    ]
}

pub fn render(fields: &[Field], f: Format) -> String {
    let mut out = String::new();
    match f {
        Format::Csv => {
            for x in fields {
                out.push_str(&format!("{}: {}\n", x.name, x.value));
            }
        }
        Format::Typed => {
            for x in fields {
                let ty = match x.value {
                    super::stat::Val::Str(_) => "str",
                    _ => "u64",
                };
                out.push_str(&format!(
                    "{}.{}.1:{}:{ty}:{}\n",
                    x.pos, x.name, x.tags, x.value
                ));
            }
        }
        Format::Json => {
            let v: Vec<serde_json::Value> = fields
                .iter()
                .map(|x| {
                    let (ty, value) = match &x.value {
                        super::stat::Val::Str(s) => ("str", json!(s)),
                        super::stat::Val::Num(n) => ("u64", json!(n)),
                        super::stat::Val::Signed(n) => ("s64", json!(n)),
                    };
                    json!({
                        "field": {"pos": x.pos, "name": x.name},
                        "processNum": 1,
                        "value": {"type": ty, "value": value},
                    })
                })
                .collect();
            out = serde_json::Value::Array(v).to_string();
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn uptime_reads_like_haproxy() {
        assert_eq!(super::uptime(1), "0d 0h00m01s");
        assert_eq!(super::uptime(90061), "1d 1h01m01s");
    }
}
