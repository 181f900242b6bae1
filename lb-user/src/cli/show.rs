//! `lb show ...` and `lb xdp status`: a running instance's state, from its
//! runtime API socket, completed from (or, when the daemon does not answer,
//! read entirely from) its pinned maps.
use anyhow::{Context, Result};

use super::{client, print_json, table, ShowWhat};
use crate::kernel::pinned::{self, ServerRow, XdpStatus};

pub fn print_servers(rows: &[ServerRow]) {
    let headers = [
        "BACKEND",
        "SERVER",
        "ADDRESS",
        "STATE",
        "ADMIN",
        "WEIGHT",
        "CUR",
        "TOTAL",
        "BYTES_IN",
        "BYTES_OUT",
        "CHECK",
        "INFO",
    ];
    let cells: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                r.backend.clone(),
                r.name.clone(),
                r.addr.clone(),
                r.state.clone(),
                if r.admin.is_empty() {
                    "-".into()
                } else {
                    r.admin.clone()
                },
                r.weight.to_string(),
                r.cur_conns.to_string(),
                r.total_conns.to_string(),
                r.bytes_in.to_string(),
                r.bytes_out.to_string(),
                check_cell(r),
                r.check_info.clone(),
            ]
        })
        .collect();
    table::print(&headers, &cells);
}

/// `L7STS/503 1.2ms`; `-` without `check`, `INI` before the first result.
fn check_cell(r: &ServerRow) -> String {
    match r.check_status.as_str() {
        "" => "-".into(),
        "INI" => "INI".into(),
        st if r.check_code != 0 => format!("{st}/{} {:.1}ms", r.check_code, r.check_ms),
        st => format!("{st} {:.1}ms", r.check_ms),
    }
}

pub fn print_xdp_status(s: &XdpStatus) {
    if s.interfaces.is_empty() {
        println!("XDP: not attached (no xdp-interface or bind ... interface, or --no-xdp)");
    } else {
        let rows: Vec<[String; 4]> = s
            .interfaces
            .iter()
            .map(|i| {
                [
                    i.interface.clone(),
                    i.ifindex.to_string(),
                    i.mode.to_string(),
                    i.prog_id.to_string(),
                ]
            })
            .collect();
        table::print(&["INTERFACE", "IFINDEX", "MODE", "PROG_ID"], &rows);
        println!("SYN cookies from XDP: {}", s.syn_cookies);
    }
    if !s.nat.is_empty() {
        println!();
        println!("data-path nat: lb_nat runs on");
        let rows: Vec<[String; 4]> = s
            .nat
            .iter()
            .map(|n| {
                [
                    n.interface.clone(),
                    n.ifindex.to_string(),
                    n.hook.to_string(),
                    n.prog_id.to_string(),
                ]
            })
            .collect();
        table::print(&["INTERFACE", "IFINDEX", "HOOK", "PROG_ID"], &rows);
    }
    println!();
    let rows: Vec<[String; 8]> = s
        .frontends
        .iter()
        .map(|f| {
            [
                f.frontend.clone(),
                f.acl_rules.to_string(),
                f.counters.packets.to_string(),
                f.counters.bytes.to_string(),
                f.counters.syns.to_string(),
                f.counters.acl_drops.to_string(),
                f.counters.syn_drops.to_string(),
                f.counters.syn_cookies.to_string(),
            ]
        })
        .collect();
    table::print(
        &[
            "FRONTEND",
            "ACL_RULES",
            "PACKETS",
            "BYTES",
            "SYNS",
            "ACL_DROPS",
            "SYN_DROPS",
            "SYN_COOKIES",
        ],
        &rows,
    );
    println!();
    let rows: Vec<[String; 2]> = s
        .counters
        .iter()
        .map(|(k, v)| [k.to_string(), v.to_string()])
        .collect();
    table::print(&["COUNTER", "VALUE"], &rows);
}

pub(super) fn show_cmd(what: ShowWhat) -> Result<()> {
    match what {
        ShowWhat::Info { target, json } => {
            let out = client::read(&target.socket(), "show info")?;
            if json {
                let m: serde_json::Map<String, serde_json::Value> = client::parse_info(&out)
                    .into_iter()
                    .map(|(k, v)| (k, v.into()))
                    .collect();
                print_json(&serde_json::Value::Object(m))
            } else {
                print!("{out}");
                Ok(())
            }
        }
        ShowWhat::Servers { target, json } => {
            let rows = match client::stat(&target.socket()) {
                Ok(rows) => client::of_kind(&rows, "server"),
                Err(e) => {
                    // The maps still hold states and counters when the daemon
                    // does not answer (hung, or an older instance).
                    eprintln!("lb: {e:#}; reading the pinned maps instead");
                    let rows = pinned::servers(&target.instance)?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&rows).context("json")?);
                    } else {
                        print_servers(&rows);
                    }
                    return Ok(());
                }
            };
            // What `show stat` does not carry (the check's info text, checks
            // run, every admin flag) comes from the instance's pinned maps.
            let pinned = pinned::servers(&target.instance).unwrap_or_default();
            let merged: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let live = client::server_json(r);
                    let p = pinned.iter().find(|p| {
                        live["backend"] == p.backend.as_str() && live["name"] == p.name.as_str()
                    });
                    client::with_pinned(live, p)
                })
                .collect();
            if json {
                print_json(&serde_json::Value::Array(merged))
            } else {
                let cells: Vec<[String; 12]> = rows
                    .iter()
                    .zip(&merged)
                    .map(|(r, m)| {
                        let c = client::server_cells(r);
                        let info = m["check_info"].as_str().unwrap_or("").to_string();
                        std::array::from_fn(|i| if i < 11 { c[i].clone() } else { info.clone() })
                    })
                    .collect();
                let mut headers = [""; 12];
                headers[..11].copy_from_slice(&client::SERVER_HEADERS);
                headers[11] = "INFO";
                table::print(&headers, &cells);
                Ok(())
            }
        }
        ShowWhat::Frontends { target, json } => {
            let rows = client::of_kind(&client::stat(&target.socket())?, "FRONTEND");
            if json {
                print_json(&serde_json::Value::Array(
                    rows.iter().map(client::to_json).collect(),
                ))
            } else {
                let cells: Vec<_> = rows.iter().map(client::frontend_cells).collect();
                table::print(&client::FRONTEND_HEADERS, &cells);
                Ok(())
            }
        }
        ShowWhat::Backends { target, json } => {
            let rows = client::of_kind(&client::stat(&target.socket())?, "BACKEND");
            if json {
                print_json(&serde_json::Value::Array(
                    rows.iter().map(client::to_json).collect(),
                ))
            } else {
                let cells: Vec<_> = rows.iter().map(client::backend_cells).collect();
                table::print(&client::BACKEND_HEADERS, &cells);
                Ok(())
            }
        }
        ShowWhat::Sessions { target, json } => {
            let out = client::read(&target.socket(), "show sess")?;
            let rows = client::parse_sess(&out);
            if json {
                print_json(&serde_json::Value::Array(
                    rows.iter()
                        .map(|r| serde_json::to_value(r).unwrap_or_default())
                        .collect(),
                ))
            } else {
                let cells: Vec<_> = rows.iter().map(client::session_cells).collect();
                table::print(&client::SESSION_HEADERS, &cells);
                Ok(())
            }
        }
        ShowWhat::Stat { target, json } => {
            let req = if json { "show stat json" } else { "show stat" };
            print!("{}", client::read(&target.socket(), req)?);
            Ok(())
        }
        ShowWhat::Stats { instance, json } => {
            let rows = pinned::stats(&instance)?;
            if json {
                let m: serde_json::Map<String, serde_json::Value> = rows
                    .iter()
                    .map(|(k, v)| (k.to_string(), (*v).into()))
                    .collect();
                println!("{}", serde_json::Value::Object(m));
            } else {
                let cells: Vec<[String; 2]> = rows
                    .iter()
                    .map(|(k, v)| [k.to_string(), v.to_string()])
                    .collect();
                table::print(&["COUNTER", "VALUE"], &cells);
            }
            Ok(())
        }
    }
}
