//! `lb show ...`: reads the pinned maps of a running instance directly from bpffs.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use lb_common::{
    chk, maps, stat, FrontendMeta, ServerCheck, ServerKStats, ServerMeta, ServerState, SrvConns,
    XdpFeStats, XdpIface, AF_INET, MAX_FRONTENDS, MAX_SERVERS, MAX_XDP_IFACES,
};
use serde::Serialize;

use super::read_str;
use crate::kernel::pin_dir;
use lb_common::state_name;

/// One row of `lb show servers`.
#[derive(Debug, Serialize, PartialEq)]
pub struct ServerRow {
    pub backend: String,
    pub name: String,
    pub addr: String,
    pub state: String,
    /// Runtime API flags, space-separated: `MAINT`, `DRAIN`, `NOLB`,
    /// `CHECKS-PAUSED`; "" when none.
    pub admin: String,
    pub weight: u32,
    pub health: u32,
    pub cur_conns: u32,
    pub total_conns: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub checks_failed: u64,
    /// UP/DOWN transitions since start-up.
    pub state_changes: u64,
    pub last_check: String,
    pub check_ms: f64,
    /// HAProxy's check status name (`L4OK`, `L7STS`, ...); "" without `check`.
    pub check_status: String,
    /// Its description ("Layer4 connection problem").
    pub check_desc: String,
    /// Layer-7 code of the last check (HTTP status, ...), 0: none.
    pub check_code: u32,
    /// Last error or information text of the last check.
    pub check_info: String,
    /// Checks run since start-up.
    pub checks_run: u32,
}

fn open(dir: &Path, name: &str) -> Result<Map> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "opening pinned map {} (is `lb run` running with this --instance?)",
            path.display()
        )
    })?;
    Map::from_map_data(data).with_context(|| format!("map {}", path.display()))
}

pub fn servers(instance: &str) -> Result<Vec<ServerRow>> {
    let dir = pin_dir(instance);
    let meta: Array<MapData, ServerMeta> = open(&dir, maps::SRV_META)?.try_into()?;
    let st: Array<MapData, ServerState> = open(&dir, maps::SRV_STATE)?.try_into()?;
    let ks: PerCpuArray<MapData, ServerKStats> = open(&dir, maps::SRV_KSTATS)?.try_into()?;
    let ck: Array<MapData, ServerCheck> = open(&dir, maps::SRV_CHECK)?.try_into()?;
    // The live counts, kept right by the kernel even while the daemon is
    // stalled (absent when `lb_conns` could not attach).
    let conns: Option<Array<MapData, SrvConns>> = open(&dir, maps::SRV_CONNS)
        .ok()
        .and_then(|m| m.try_into().ok());
    let mut rows = Vec::new();
    for i in 0..MAX_SERVERS {
        let m = meta
            .get(&i, 0)
            .with_context(|| format!("LB_SRV_META[{i}]"))?;
        if m.in_use == 0 {
            break;
        }
        let s = st
            .get(&i, 0)
            .with_context(|| format!("LB_SRV_STATE[{i}]"))?;
        let k = ks
            .get(&i, 0)
            .with_context(|| format!("LB_SRV_KSTATS[{i}]"))?;
        let c = ck
            .get(&i, 0)
            .with_context(|| format!("LB_SRV_CHECK[{i}]"))?;
        // Never written: the server has no `check`.
        let checked = c.status != chk::UNK;
        let (kin, kout) = k
            .iter()
            .fold((0u64, 0u64), |(a, b), v| (a + v.bytes_in, b + v.bytes_out));
        let ip: IpAddr = if m.family == AF_INET {
            Ipv4Addr::new(m.addr_be[0], m.addr_be[1], m.addr_be[2], m.addr_be[3]).into()
        } else {
            Ipv6Addr::from(m.addr_be).into()
        };
        rows.push(ServerRow {
            backend: read_str(&m.backend),
            name: read_str(&m.name),
            addr: SocketAddr::new(ip, m.port_host as u16).to_string(),
            state: state_name(s.state).to_string(),
            admin: admin_words(s.admin_flags),
            weight: s.weight,
            health: s.health,
            cur_conns: conns
                .as_ref()
                .and_then(|c| c.get(&i, 0).ok())
                .map_or(s.cur_conns, |c| c.count),
            total_conns: s.total_conns,
            bytes_in: kin + s.user_bytes_in,
            bytes_out: kout + s.user_bytes_out,
            checks_failed: s.checks_failed,
            state_changes: s.state_changes,
            last_check: match s.last_check {
                0 => "fail",
                1 => "ok",
                _ => "-",
            }
            .to_string(),
            check_ms: s.check_us as f64 / 1000.0,
            check_status: if checked {
                chk::NAMES
                    .get(c.status as usize)
                    .unwrap_or(&"UNK")
                    .to_string()
            } else {
                String::new()
            },
            check_desc: if checked {
                lb_common::chk::desc(c.status).to_string()
            } else {
                String::new()
            },
            check_code: c.code,
            check_info: read_str(&c.info),
            checks_run: c.count,
        });
    }
    Ok(rows)
}

/// [`lb_common::adm`] bits as words.
pub fn admin_words(flags: u32) -> String {
    use lb_common::adm;
    [
        (adm::FMAINT, "MAINT"),
        (adm::FDRAIN, "DRAIN"),
        (adm::STOPPING, "NOLB"),
        (adm::CHECKS_PAUSED, "CHECKS-PAUSED"),
    ]
    .iter()
    .filter(|(b, _)| flags & b != 0)
    .map(|(_, w)| *w)
    .collect::<Vec<_>>()
    .join(" ")
}

/// Kernel-side event counters, summed over CPUs.
pub fn stats(instance: &str) -> Result<Vec<(&'static str, u64)>> {
    let dir = pin_dir(instance);
    let st: PerCpuArray<MapData, u64> = open(&dir, maps::STATS)?.try_into()?;
    let mut out = Vec::new();
    for i in 0..stat::COUNT {
        let v = st.get(&i, 0).with_context(|| format!("LB_STATS[{i}]"))?;
        out.push((stat::NAMES[i as usize], v.iter().sum()));
    }
    Ok(out)
}

/// One frontend's XDP counters, summed over CPUs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct XdpFrontend {
    pub frontend: String,
    /// `tcp-request connection` rules compiled into the ACL tries.
    pub acl_rules: u32,
    /// Summed over CPUs; flattened so that the JSON keeps one object per
    /// frontend.
    #[serde(flatten)]
    pub counters: XdpFeStats,
}

#[derive(Clone, Debug, Serialize)]
pub struct XdpAttachment {
    pub interface: String,
    pub ifindex: u32,
    pub mode: &'static str,
    pub prog_id: u32,
}

/// `lb xdp status`.
#[derive(Clone, Debug, Serialize)]
pub struct XdpStatus {
    pub interfaces: Vec<XdpAttachment>,
    /// Whether SYNs are answered with cookies from XDP while a listener's SYN
    /// queue is full ("on"), or left to the kernel ("off").
    pub syn_cookies: &'static str,
    pub frontends: Vec<XdpFrontend>,
    /// Interfaces `lb_nat` (`data-path nat`) runs on.
    pub nat: Vec<crate::kernel::nat::NatAttachment>,
    /// The program's global counters (the `xdp_*` rows of `lb show stats`).
    pub counters: std::collections::BTreeMap<&'static str, u64>,
}

pub fn xdp_status(instance: &str) -> Result<XdpStatus> {
    let dir = pin_dir(instance);
    let ifaces: Array<MapData, XdpIface> = open(&dir, maps::XDP_IFACES)?.try_into()?;
    let meta: Array<MapData, FrontendMeta> = open(&dir, maps::FE_META)?.try_into()?;
    let st: PerCpuArray<MapData, XdpFeStats> = open(&dir, maps::XDP_FE_STATS)?.try_into()?;
    let cfg: Array<MapData, lb_common::XdpConfig> = open(&dir, maps::XDP_CFG)?.try_into()?;
    let syn_cookies = if cfg.get(&0, 0).context("LB_XDP_CFG[0]")?.syn_cookies != 0 {
        "on"
    } else {
        "off"
    };
    let mut interfaces = Vec::new();
    for i in 0..MAX_XDP_IFACES {
        let f = ifaces
            .get(&i, 0)
            .with_context(|| format!("LB_XDP_IFACES[{i}]"))?;
        if f.mode != 0 {
            interfaces.push(XdpAttachment {
                interface: crate::kernel::xdp::cstr(&f.name),
                ifindex: f.ifindex,
                mode: crate::kernel::xdp::mode_name(f.mode),
                prog_id: f.prog_id,
            });
        }
    }
    let mut frontends = Vec::new();
    for i in 0..MAX_FRONTENDS {
        let m = meta
            .get(&i, 0)
            .with_context(|| format!("LB_FE_META[{i}]"))?;
        if m.in_use == 0 {
            break;
        }
        let mut counters = XdpFeStats::default();
        for s in st
            .get(&i, 0)
            .with_context(|| format!("LB_XDP_FE_STATS[{i}]"))?
            .iter()
        {
            counters.add(s);
        }
        frontends.push(XdpFrontend {
            frontend: crate::kernel::xdp::cstr(&m.name),
            acl_rules: m.acl_rules,
            counters,
        });
    }
    let counters = stats(instance)?
        .into_iter()
        .filter(|(k, _)| k.starts_with("xdp_"))
        .collect();
    Ok(XdpStatus {
        interfaces,
        syn_cookies,
        frontends,
        nat: crate::kernel::nat::attachments(instance),
        counters,
    })
}

/// One pinned map of `lb maps list`.
#[derive(Debug, Serialize)]
pub struct MapRow {
    pub name: String,
    pub kind: String,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub id: u32,
}

/// The maps pinned for `instance`, read from bpffs (no daemon needed).
pub fn maps_list(instance: &str) -> Result<Vec<MapRow>> {
    let dir = pin_dir(instance);
    let entries = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "listing {} (is an `lb run --instance {instance}` loaded?)",
            dir.display()
        )
    })?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let path = e.path();
        let info = aya::maps::MapInfo::from_pin(&path)
            .with_context(|| format!("reading map info of {}", path.display()))?;
        out.push(MapRow {
            name: e.file_name().to_string_lossy().into_owned(),
            kind: info
                .map_type()
                .map_or_else(|e| format!("unknown ({e})"), |t| format!("{t:?}")),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            id: info.id(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn ip_of(family: u32, addr_be: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        Ipv4Addr::new(addr_be[0], addr_be[1], addr_be[2], addr_be[3]).into()
    } else {
        Ipv6Addr::from(*addr_be).into()
    }
}

/// Every entry of a pinned map, decoded with its lb-common type; per-CPU
/// values summed over CPUs. Array slots never written are left out.
pub fn maps_dump(instance: &str, name: &str) -> Result<Vec<(String, serde_json::Value)>> {
    use serde_json::json;
    let dir = pin_dir(instance);
    let mut out = Vec::new();
    match name {
        maps::SRV_META => {
            let m: Array<MapData, ServerMeta> = open(&dir, name)?.try_into()?;
            for i in 0..MAX_SERVERS {
                let v = m.get(&i, 0).with_context(|| format!("{name}[{i}]"))?;
                if v.in_use == 0 {
                    continue;
                }
                let ip = ip_of(v.family, &v.addr_be);
                out.push((
                    i.to_string(),
                    json!({"backend": read_str(&v.backend), "name": read_str(&v.name),
                           "addr": SocketAddr::new(ip, v.port_host as u16).to_string()}),
                ));
            }
        }
        maps::SRV_STATE => {
            let meta: Array<MapData, ServerMeta> = open(&dir, maps::SRV_META)?.try_into()?;
            let m: Array<MapData, ServerState> = open(&dir, name)?.try_into()?;
            for i in 0..MAX_SERVERS {
                if meta.get(&i, 0).map(|v| v.in_use).unwrap_or(0) == 0 {
                    continue;
                }
                let s = m.get(&i, 0).with_context(|| format!("{name}[{i}]"))?;
                out.push((
                    i.to_string(),
                    json!({"state": state_name(s.state), "weight": s.weight, "health": s.health,
                           "cur_conns": s.cur_conns, "total_conns": s.total_conns,
                           "user_bytes_in": s.user_bytes_in, "user_bytes_out": s.user_bytes_out,
                           "last_check": s.last_check, "check_us": s.check_us,
                           "checks_failed": s.checks_failed, "state_changes": s.state_changes}),
                ));
            }
        }
        maps::SRV_KSTATS => {
            let meta: Array<MapData, ServerMeta> = open(&dir, maps::SRV_META)?.try_into()?;
            let m: PerCpuArray<MapData, ServerKStats> = open(&dir, name)?.try_into()?;
            for i in 0..MAX_SERVERS {
                if meta.get(&i, 0).map(|v| v.in_use).unwrap_or(0) == 0 {
                    continue;
                }
                let v = m.get(&i, 0).with_context(|| format!("{name}[{i}]"))?;
                let (a, b) = v
                    .iter()
                    .fold((0u64, 0u64), |(a, b), x| (a + x.bytes_in, b + x.bytes_out));
                out.push((i.to_string(), json!({"bytes_in": a, "bytes_out": b})));
            }
        }
        maps::SRV_CONNS => {
            let meta: Array<MapData, ServerMeta> = open(&dir, maps::SRV_META)?.try_into()?;
            let m: Array<MapData, SrvConns> = open(&dir, name)?.try_into()?;
            for i in 0..MAX_SERVERS {
                if meta.get(&i, 0).map(|v| v.in_use).unwrap_or(0) == 0 {
                    continue;
                }
                let v = m.get(&i, 0).with_context(|| format!("{name}[{i}]"))?;
                out.push((i.to_string(), json!({"cur_conns": v.count})));
            }
        }
        maps::STATS => {
            for (k, v) in stats(instance)? {
                out.push((k.to_string(), json!(v)));
            }
        }
        maps::FLOWS => {
            let m: Array<MapData, lb_common::FlowDir> = open(&dir, name)?.try_into()?;
            for i in 0..lb_common::MAX_FLOWS {
                let f = m.get(&i, 0).with_context(|| format!("{name}[{i}]"))?;
                if f == lb_common::FlowDir::default() {
                    continue;
                }
                out.push((
                    i.to_string(),
                    json!({"server": f.server, "redirected": f.redirected, "forwarded": f.forwarded,
                           "pass": f.pass_word & lb_common::PASS_BIT != 0,
                           "user": f.pass_word & lb_common::USER_BIT != 0,
                           "passed": f.pass_word & lb_common::PASS_COUNT_MASK,
                           "budget": f.budget, "bound": f.bound}),
                ));
            }
        }
        maps::BINDS => {
            let m: aya::maps::HashMap<MapData, lb_common::BindKey, lb_common::BindTarget> =
                open(&dir, name)?.try_into()?;
            for item in m.iter() {
                let (k, v) = item.with_context(|| format!("iterating {name}"))?;
                let ip = ip_of(k.family, &k.addr_be);
                out.push((
                    SocketAddr::new(ip, k.port_host as u16).to_string(),
                    json!({"listener": v.listener, "ifindex": v.ifindex}),
                ));
            }
        }
        _ => anyhow::bail!(
            "no pinned map named '{name}' (known: {}, {}, {}, {}, {}, {}, {}; see `lb maps list`)",
            maps::SRV_META,
            maps::SRV_STATE,
            maps::SRV_KSTATS,
            maps::SRV_CONNS,
            maps::STATS,
            maps::FLOWS,
            maps::BINDS
        ),
    }
    Ok(out)
}
