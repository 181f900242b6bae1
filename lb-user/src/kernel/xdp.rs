//! The XDP front door: attaching `lb_xdp`, compiling its settings and ACL
//! tables into maps, and reading its counters back for `lb xdp status`.

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData};
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::Ebpf;
use lb_common::{
    acl_scope_be, maps, progs, AclKey4, AclKey6, FrontendMeta, XdpConfig, XdpIface, ACL_ACCEPT,
    ACL_REJECT, MAX_XDP_IFACES, XDP_MODE_NATIVE, XDP_MODE_SKB, XDP_MODE_TC,
};

use crate::config::l4acl::Table;
use crate::config::{Config, Origin, SynRate, XdpAttach};

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("{origin}: interface '{iface}' does not exist")]
    NoInterface { origin: Origin, iface: String },
    #[error("{origin}: attaching XDP to '{iface}' in {mode} mode: {source}")]
    Attach {
        origin: Origin,
        iface: String,
        mode: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("program {name} missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("more than {MAX_XDP_IFACES} XDP interfaces configured")]
    TooManyInterfaces,
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {name} missing from the eBPF object")]
    MissingMap { name: &'static str },
}

/// One interface to attach to, and the line that asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceReq {
    pub name: String,
    pub mode: XdpAttach,
    pub origin: Origin,
}

/// The interfaces a configuration names: `xdp-interface` lines first, then
/// the `bind ... interface` ones not named there (in automatic mode).
pub fn interfaces(cfg: &Config) -> Vec<IfaceReq> {
    let mut out: Vec<IfaceReq> = cfg
        .global
        .xdp_interfaces
        .iter()
        .map(|i| IfaceReq {
            name: i.value.name.clone(),
            mode: i.value.mode,
            origin: i.origin.clone(),
        })
        .collect();
    for b in cfg.frontends.iter().flat_map(|f| &f.binds) {
        if let Some(name) = &b.interface {
            if !out.iter().any(|r| &r.name == name) {
                out.push(IfaceReq {
                    name: name.clone(),
                    mode: XdpAttach::Auto,
                    origin: b.origin.clone(),
                });
            }
        }
    }
    out
}

/// Two binds of one address and port that differ in `interface` (one of
/// them possibly without): HAProxy could hold both sockets, but steering keeps
/// one listener per address and port, so lb refuses the second.
pub fn interface_conflict(cfg: &Config) -> Option<(Origin, String)> {
    let mut seen: std::collections::HashMap<lb_common::BindKey, Option<&str>> =
        std::collections::HashMap::new();
    for f in &cfg.frontends {
        for b in &f.binds {
            let iface = b.interface.as_deref();
            let single = crate::config::Frontend {
                binds: vec![b.clone()],
                ..Default::default()
            };
            for k in single.bind_keys() {
                match seen.get(&k) {
                    Some(prev) if *prev != iface => {
                        let show = |i: Option<&str>| {
                            i.map_or("any interface".to_string(), |i| format!("interface {i}"))
                        };
                        return Some((
                            b.origin.clone(),
                            format!(
                                "port {} is already bound on the same address for {}; lb \
                                 binds one interface per address and port (here {})",
                                k.port_host,
                                show(*prev),
                                show(iface)
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(k, iface);
                    }
                }
            }
        }
    }
    None
}

/// The interface index of `name`, if it exists in this network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

pub(crate) fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn name16(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = s.len().min(15);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

fn name64(s: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    let n = s.len().min(63);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

pub(super) fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    ebpf.program_mut(progs::XDP)
        .ok_or(XdpError::MissingProgram { name: progs::XDP })?
        .try_into()
        .map_err(|e| XdpError::Program {
            name: progs::XDP,
            source: Box::new(e),
        })
}

pub(super) fn tc_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, XdpError> {
    ebpf.program_mut(progs::FRONT_TC)
        .ok_or(XdpError::MissingProgram {
            name: progs::FRONT_TC,
        })?
        .try_into()
        .map_err(|e| XdpError::Program {
            name: progs::FRONT_TC,
            source: Box::new(e),
        })
}

/// Loads `lb_xdp` and `lb_front` (the verifier runs here).
pub fn load(ebpf: &mut Ebpf) -> Result<(), XdpError> {
    program(ebpf)?.load().map_err(|e| XdpError::Program {
        name: progs::XDP,
        source: Box::new(e),
    })?;
    tc_program(ebpf)?.load().map_err(|e| XdpError::Program {
        name: progs::FRONT_TC,
        source: Box::new(e),
    })
}

fn is_veth(iface: &str) -> bool {
    crate::sys::driver_name(iface).is_ok_and(|d| d == "veth")
}

/// The hook an interface gets before trying native XDP: `Auto` on a veth is
/// tc. Native XDP on a veth makes the driver turn GSO off on its peer
/// (drivers/net/veth.c, `veth_xdp_set`), so every segment crosses alone:
/// forwarding through a balancer namespace measured 17.5 -> 6.2 Gbit/s.
fn planned(r: &IfaceReq, veth: bool) -> XdpAttach {
    match r.mode {
        XdpAttach::Auto if veth => XdpAttach::Tc,
        m => m,
    }
}

/// Attaches the front door to every interface, as its mode says: native
/// XDP where the driver has it (not on a veth), else `lb_front` at tc
/// ingress, first in the interface's tcx chain (before `lb_nat`). The links
/// belong to `ebpf`: dropping it detaches them.
pub fn attach(ebpf: &mut Ebpf, reqs: &[IfaceReq]) -> Result<Vec<XdpIface>, XdpError> {
    if reqs.len() > MAX_XDP_IFACES as usize {
        return Err(XdpError::TooManyInterfaces);
    }
    let prog_err = |name| {
        move |e: aya::programs::ProgramError| XdpError::Program {
            name,
            source: Box::new(e),
        }
    };
    let xdp_id = program(ebpf)?.info().map_err(prog_err(progs::XDP))?.id();
    let tc_id = tc_program(ebpf)?
        .info()
        .map_err(prog_err(progs::FRONT_TC))?
        .id();
    let mut out = Vec::new();
    for r in reqs {
        let idx = ifindex(&r.name).ok_or_else(|| XdpError::NoInterface {
            origin: r.origin.clone(),
            iface: r.name.clone(),
        })?;
        let attach_err = |mode, source| XdpError::Attach {
            origin: r.origin.clone(),
            iface: r.name.clone(),
            mode,
            source: Box::new(source),
        };
        let tc = |ebpf: &mut Ebpf| -> Result<u32, XdpError> {
            tc_program(ebpf)?
                .attach_with_options(
                    &r.name,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::first()),
                )
                .map_err(|e| attach_err("tc", e))?;
            Ok(XDP_MODE_TC)
        };
        let veth = is_veth(&r.name);
        let mode = match planned(r, veth) {
            XdpAttach::Native => {
                program(ebpf)?
                    .attach_to_if_index(idx, XdpMode::Driver)
                    .map_err(|e| attach_err("native", e))?;
                XDP_MODE_NATIVE
            }
            XdpAttach::Skb => {
                program(ebpf)?
                    .attach_to_if_index(idx, XdpMode::Skb)
                    .map_err(|e| attach_err("skb", e))?;
                XDP_MODE_SKB
            }
            XdpAttach::Tc => {
                if veth && r.mode == XdpAttach::Auto {
                    tracing::info!(
                        "{}: {} is a veth: the front door runs at tc ingress (native XDP would \
                         turn GSO off on its peer; 'xdp-interface {} native' to have it anyway)",
                        r.origin,
                        r.name,
                        r.name
                    );
                }
                tc(ebpf)?
            }
            XdpAttach::Auto => match program(ebpf)?.attach_to_if_index(idx, XdpMode::Driver) {
                Ok(_) => XDP_MODE_NATIVE,
                Err(e) => {
                    tracing::warn!(
                        "{}: interface {}: native XDP unavailable ({e}); the front door runs \
                         at tc ingress (generic XDP would linearize every large packet)",
                        r.origin,
                        r.name
                    );
                    tc(ebpf)?
                }
            },
        };
        let prog_id = if mode == XDP_MODE_TC { tc_id } else { xdp_id };
        tracing::info!(
            "front door on {} ({}, program id {prog_id})",
            r.name,
            mode_name(mode)
        );
        out.push(XdpIface {
            name: name16(&r.name),
            ifindex: idx,
            mode,
            prog_id,
            _pad: 0,
        });
    }
    Ok(out)
}

pub fn mode_name(mode: u32) -> &'static str {
    match mode {
        XDP_MODE_NATIVE => "native",
        XDP_MODE_SKB => "skb",
        XDP_MODE_TC => "tc",
        _ => "-",
    }
}

/// `xdp-syn-cookies`, on unless set off (for a program attached nowhere).
pub fn syn_cookies_on(cfg: &Config) -> bool {
    cfg.global.xdp_syn_cookies.as_ref().is_none_or(|c| c.value)
}

/// Whether the program answers SYNs with cookies on these interfaces: not
/// when it is attached nowhere; else as `xdp-syn-cookies on|off` says. Unset:
/// yes where an interface runs XDP, except on a veth in native mode, where the
/// SYN-ACKs (XDP_TX) only leave if the peer end runs an XDP program itself
/// (the veth driver queues them for the peer and never wakes it otherwise, so
/// clients would not get their SYN-ACK); the tc hook leaves cookies to the
/// kernel. Returns the decision and, when unset and off, why.
pub fn syn_cookies_for(cfg: &Config, reqs: &[IfaceReq]) -> (bool, Option<String>) {
    // Not attached anywhere (no interface, --no-xdp): nothing to answer with.
    if reqs.is_empty() {
        return (false, None);
    }
    if let Some(c) = &cfg.global.xdp_syn_cookies {
        return (c.value, None);
    }
    let mut why_off = None;
    let mut on_xdp = false;
    for r in reqs {
        let veth = is_veth(&r.name);
        match planned(r, veth) {
            XdpAttach::Tc => {
                why_off.get_or_insert_with(|| {
                    format!(
                        "the front door runs at tc ingress on {}, where SYN cookies are the \
                         kernel's own",
                        r.name
                    )
                });
            }
            XdpAttach::Native if veth => {
                return (
                    false,
                    Some(format!(
                        "{} is a veth in native mode: its peer takes XDP_TX frames only if it \
                         runs XDP itself ('xdp-syn-cookies on' to use them anyway, or attach \
                         in skb mode)",
                        r.name
                    )),
                );
            }
            _ => on_xdp = true,
        }
    }
    if on_xdp {
        (true, None)
    } else {
        (false, why_off)
    }
}

/// `xdp-syn-rate` as the program's credit arithmetic: (interval, cap) in ns.
pub fn syn_credit(rate: Option<SynRate>) -> (u64, u64) {
    match rate {
        None => (0, 0),
        Some(r) => {
            let interval = (1_000_000_000u64 / r.per_second as u64).max(1);
            (interval, interval.saturating_mul(r.burst as u64))
        }
    }
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> XdpError {
    move |source| XdpError::Map { name, source }
}

/// The maps the front door's settings live in.
pub struct XdpMaps {
    pub cfg: Array<MapData, XdpConfig>,
    pub acl4: LpmTrie<MapData, AclKey4, u32>,
    pub acl6: LpmTrie<MapData, AclKey6, u32>,
    pub ifaces: Array<MapData, XdpIface>,
    pub fe_meta: Array<MapData, FrontendMeta>,
}

macro_rules! take {
    ($ebpf:expr, $name:expr) => {
        $ebpf
            .take_map($name)
            .ok_or(XdpError::MissingMap { name: $name })?
            .try_into()
            .map_err(map_err($name))?
    };
}

impl XdpMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, XdpError> {
        Ok(Self {
            cfg: take!(ebpf, maps::XDP_CFG),
            acl4: take!(ebpf, maps::XDP_ACL4),
            acl6: take!(ebpf, maps::XDP_ACL6),
            ifaces: take!(ebpf, maps::XDP_IFACES),
            fe_meta: take!(ebpf, maps::FE_META),
        })
    }
}

/// The ACL tables in force, as two generations: a new set of tables is written
/// under the generation not in force, then `XdpConfig::acl_gen` is flipped (one
/// map update, atomic for the program), then the old generation is deleted. A
/// packet sees the old rules or the new ones, never none.
pub struct FrontDoor {
    pub maps: XdpMaps,
    gen: u32,
    syn: (u64, u64),
    syn_cookies: bool,
    live4: Vec<Key<AclKey4>>,
    live6: Vec<Key<AclKey6>>,
}

impl FrontDoor {
    pub fn new(maps: XdpMaps) -> Self {
        Self {
            maps,
            gen: 0,
            syn: (0, 0),
            syn_cookies: false,
            live4: Vec::new(),
            live6: Vec::new(),
        }
    }

    pub fn generation(&self) -> u32 {
        self.gen
    }

    fn write_cfg(&mut self, gen: u32) -> Result<(), XdpError> {
        let cfg = XdpConfig {
            acl_gen: gen,
            syn_cookies: self.syn_cookies as u32,
            syn_interval_ns: self.syn.0,
            syn_cap_ns: self.syn.1,
        };
        self.maps.cfg.set(0, cfg, 0).map_err(map_err(maps::XDP_CFG))
    }

    /// Sets the SYN rate limit (None: off).
    pub fn set_syn_rate(&mut self, rate: Option<SynRate>) -> Result<(), XdpError> {
        self.syn = syn_credit(rate);
        self.write_cfg(self.gen)
    }

    /// Whether SYNs are answered with SYN cookies from XDP while a listener's
    /// SYN queue is full.
    pub fn set_syn_cookies(&mut self, on: bool) -> Result<(), XdpError> {
        self.syn_cookies = on;
        self.write_cfg(self.gen)
    }

    /// Frontend names for `lb xdp status`.
    pub fn set_frontends(&mut self, names: &[(&str, usize)]) -> Result<(), XdpError> {
        for (i, (name, rules)) in names.iter().enumerate() {
            let meta = FrontendMeta {
                name: name64(name),
                in_use: 1,
                acl_rules: *rules as u32,
            };
            self.maps
                .fe_meta
                .set(i as u32, meta, 0)
                .map_err(map_err(maps::FE_META))?;
        }
        Ok(())
    }

    pub fn set_ifaces(&mut self, ifaces: &[XdpIface]) -> Result<(), XdpError> {
        for (i, f) in ifaces.iter().enumerate() {
            self.maps
                .ifaces
                .set(i as u32, *f, 0)
                .map_err(map_err(maps::XDP_IFACES))?;
        }
        Ok(())
    }

    /// Replaces every frontend's ACL table (index = frontend, None = no rules).
    /// On error the rules in force stay as they were.
    pub fn install_acls(&mut self, tables: &[Option<&Table>]) -> Result<(), XdpError> {
        let next = self.gen ^ 1;
        let mut new4 = Vec::new();
        let mut new6 = Vec::new();
        let res = (|| {
            for (fe, t) in tables.iter().enumerate() {
                let Some(t) = t else { continue };
                let scope_be = acl_scope_be(fe as u32, next);
                for (len, addr, reject) in t.v4() {
                    let k = Key::new(
                        32 + len as u32,
                        AclKey4 {
                            scope_be,
                            addr_be: addr.octets(),
                        },
                    );
                    self.maps
                        .acl4
                        .insert(&k, action(reject), 0)
                        .map_err(map_err(maps::XDP_ACL4))?;
                    new4.push(k);
                }
                for (len, addr, reject) in t.v6() {
                    let k = Key::new(
                        32 + len as u32,
                        AclKey6 {
                            scope_be,
                            addr_be: addr.octets(),
                        },
                    );
                    self.maps
                        .acl6
                        .insert(&k, action(reject), 0)
                        .map_err(map_err(maps::XDP_ACL6))?;
                    new6.push(k);
                }
            }
            self.write_cfg(next)
        })();
        if let Err(e) = res {
            // The new generation never came into force: remove what was written.
            for k in &new4 {
                let _ = self.maps.acl4.remove(k);
            }
            for k in &new6 {
                let _ = self.maps.acl6.remove(k);
            }
            return Err(e);
        }
        self.gen = next;
        for k in std::mem::replace(&mut self.live4, new4) {
            let _ = self.maps.acl4.remove(&k);
        }
        for k in std::mem::replace(&mut self.live6, new6) {
            let _ = self.maps.acl6.remove(&k);
        }
        Ok(())
    }

    /// Entries in the ACL tries (both generations; after an install, only the one
    /// in force).
    pub fn acl_entries(&self) -> usize {
        self.maps.acl4.keys().count() + self.maps.acl6.keys().count()
    }
}

fn action(reject: bool) -> u32 {
    if reject {
        ACL_REJECT
    } else {
        ACL_ACCEPT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_credit_arithmetic() {
        assert_eq!(syn_credit(None), (0, 0));
        let r = SynRate {
            per_second: 100,
            burst: 20,
        };
        assert_eq!(syn_credit(Some(r)), (10_000_000, 200_000_000));
        let r = SynRate {
            per_second: 1_000_000_000,
            burst: 1,
        };
        assert_eq!(syn_credit(Some(r)), (1, 1));
    }

    #[test]
    fn interfaces_from_global_and_binds() {
        let text = "global\n xdp-interface veth0 native\n xdp-interface eth1\n\
                    defaults\n mode tcp\n timeout client 1s\n timeout server 1s\n timeout connect 1s\n\
                    frontend f\n bind :80 interface veth0\n bind :81 interface veth9\n default_backend b\n\
                    backend b\n server s 127.0.0.1:1\n";
        let cfg = crate::config::parse_str(text, std::path::Path::new("x.cfg")).unwrap();
        let r = interfaces(&cfg);
        let names: Vec<_> = r.iter().map(|r| (r.name.as_str(), r.mode)).collect();
        assert_eq!(
            names,
            [
                ("veth0", XdpAttach::Native),
                ("eth1", XdpAttach::Auto),
                ("veth9", XdpAttach::Auto)
            ]
        );
        assert_eq!(r[2].origin.line, 11);
    }

    #[test]
    fn syn_cookie_setting() {
        let cfg_with = |line: &str| {
            let text = format!(
                "global\n{line}\ndefaults\n mode tcp\n timeout client 1s\n timeout server 1s\n \
                 timeout connect 1s\nfrontend f\n bind :80\n default_backend b\n\
                 backend b\n server s 127.0.0.1:1\n"
            );
            crate::config::parse_str(&text, std::path::Path::new("x.cfg")).unwrap()
        };
        // An interface that is not there has no driver: not a veth.
        let reqs = [IfaceReq {
            name: "lb-no-such0".into(),
            mode: XdpAttach::Native,
            origin: Origin::default(),
        }];
        for (line, want) in [
            (" xdp-syn-cookies on", true),
            (" xdp-syn-cookies off", false),
            (" maxconn 10", true),
        ] {
            assert_eq!(
                syn_cookies_for(&cfg_with(line), &reqs),
                (want, None),
                "{line}"
            );
            assert_eq!(
                syn_cookies_for(&cfg_with(line), &[]),
                (false, None),
                "{line}"
            );
        }
    }

    #[test]
    fn one_interface_per_address_and_port() {
        let cfg = |binds: &str| {
            let text = format!(
                "defaults\n mode tcp\n timeout client 1s\n timeout server 1s\n timeout connect 1s\n\
                 frontend f\n{binds} default_backend b\nbackend b\n server s 127.0.0.1:1\n"
            );
            crate::config::parse_str(&text, std::path::Path::new("x.cfg")).unwrap()
        };
        assert!(
            interface_conflict(&cfg(" bind :80 interface a\n bind :81 interface b\n")).is_none()
        );
        assert!(interface_conflict(&cfg(
            " bind 10.0.0.1:80 interface a\n bind :80 interface b\n"
        ))
        .is_none());
        let (o, m) =
            interface_conflict(&cfg(" bind :80 interface a\n bind :80 interface b\n")).unwrap();
        assert_eq!(o.line, 8);
        assert!(
            m.contains("interface a") && m.contains("interface b"),
            "{m}"
        );
        let (_, m) = interface_conflict(&cfg(" bind :80\n bind :80 interface b\n")).unwrap();
        assert!(m.contains("any interface"), "{m}");
    }

    #[test]
    fn names_are_truncated_and_padded() {
        assert_eq!(cstr(&name16("veth0")), "veth0");
        assert_eq!(cstr(&name64(&"x".repeat(80))).len(), 63);
    }
}
