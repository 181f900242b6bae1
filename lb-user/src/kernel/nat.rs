//! The kernel NAT path's pins, program and maps. Its state lives apart from
//! the other maps (in `NAT_PIN_ROOT/<instance>`)
//! and outlives the daemon: the flow table and the tcx links of `lb_nat` stay
//! pinned when lb stops or crashes, so established flows keep moving; the
//! next daemon reuses the table and swaps its own program into the links.
//! `lb clear nat` (or a configuration without NAT frontends) removes them.
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, MapInfo};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use lb_common::{
    maps, progs, BindKey, NatBackend, NatFlow, NatKey, NatServer, NatVip, NAT_PICK_SLOTS,
};

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("program {}: {source}", progs::NAT)]
    Program {
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching {} to '{iface}': {source}", progs::NAT)]
    Attach {
        iface: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("the {} link of '{iface}': {source}", progs::NAT)]
    Link { iface: String, source: LinkError },
    #[error("pinning the {} link of '{iface}' at {path}: {source}", progs::NAT)]
    PinLink {
        iface: String,
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {name} missing from the eBPF object")]
    MissingMap { name: &'static str },
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> NatError {
    move |source| NatError::Map { name, source }
}

/// Root of the NAT path's pins (bpffs refuses names with a dot, and the
/// instance directories under `PIN_ROOT` are replaced at each start).
pub const NAT_PIN_ROOT: &str = "/sys/fs/bpf/lb-nat";

/// Where the NAT path's state of `instance` is pinned.
pub fn nat_dir(instance: &str) -> PathBuf {
    Path::new(NAT_PIN_ROOT).join(instance)
}

/// What the loader found of a previous daemon's flow table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// The table's size (entries, two per flow).
    pub size: u32,
    /// Whether a pinned table was reused (its flows go on).
    pub reused: bool,
    /// Why a pinned table was not reused (its flows are dropped).
    pub dropped: Option<String>,
}

/// Before the object loads: with NAT frontends, the flow table is pinned in
/// the NAT directory and a previous daemon's table of the same layout is
/// reused (at its size, if the configuration now asks for another: resizing
/// would drop the flows); without, the previous NAT state is removed.
pub fn prepare(
    loader: &mut EbpfLoader<'_>,
    instance: &str,
    want: Option<u32>,
) -> Result<Option<Adopted>, NatError> {
    let dir = nat_dir(instance);
    let Some(mut size) = want else {
        if dir.exists() {
            tracing::info!(
                "no 'data-path nat' frontend: removing the NAT state of the previous run ({}); its flows end",
                dir.display()
            );
            remove(&dir)?;
        }
        // Never used: the smallest table.
        loader.map_max_entries(maps::NAT_FLOWS, 1);
        return Ok(None);
    };
    std::fs::create_dir_all(&dir).map_err(|source| NatError::Io {
        what: "creating",
        path: dir.clone(),
        source,
    })?;
    let pin = dir.join(maps::NAT_FLOWS);
    let mut adopted = Adopted::default();
    if let Ok(info) = MapInfo::from_pin(&pin) {
        let layout = (info.key_size(), info.value_size());
        let want_layout = (
            std::mem::size_of::<NatKey>() as u32,
            std::mem::size_of::<NatFlow>() as u32,
        );
        if layout != want_layout {
            adopted.dropped = Some(format!(
                "its entries are {}+{} bytes, this lb's are {}+{}",
                layout.0, layout.1, want_layout.0, want_layout.1
            ));
        } else if info.max_entries() != size && table_len(&pin) == 0 {
            // Empty: recreated at the size asked for.
        } else {
            if info.max_entries() != size {
                tracing::warn!(
                    "the NAT flow table holds {} entries, the configuration asks for {size}: \
                     the running flows keep the old table (`lb clear nat` with no flow left \
                     resizes it)",
                    info.max_entries()
                );
            }
            size = info.max_entries();
            adopted.reused = true;
        }
        if !adopted.reused {
            std::fs::remove_file(&pin).map_err(|source| NatError::Io {
                what: "removing",
                path: pin.clone(),
                source,
            })?;
        }
    }
    adopted.size = size;
    loader.map_max_entries(maps::NAT_FLOWS, size);
    loader.map_pin_path(maps::NAT_FLOWS, pin);
    Ok(Some(adopted))
}

/// Entries of a pinned flow table (0 if it cannot be read).
fn table_len(pin: &Path) -> usize {
    let Ok(data) = MapData::from_pin(pin) else {
        return 0;
    };
    let Ok(map) = aya::maps::Map::from_map_data(data) else {
        return 0;
    };
    HashMap::<_, NatKey, NatFlow>::try_from(map).map_or(0, |m| m.keys().count())
}

/// The flow table an instance pinned, read from bpffs (the runtime API's
/// `show sess`, or after the daemon is gone). Empty when there is none.
pub fn pinned_flows(instance: &str) -> Vec<(NatKey, NatFlow)> {
    let pin = nat_dir(instance).join(maps::NAT_FLOWS);
    let Ok(data) = MapData::from_pin(&pin) else {
        return Vec::new();
    };
    let Ok(map) = aya::maps::Map::from_map_data(data) else {
        return Vec::new();
    };
    HashMap::<_, NatKey, NatFlow>::try_from(map)
        .map(|m| m.iter().filter_map(|r| r.ok()).collect())
        .unwrap_or_default()
}

/// Removes the NAT state pinned for an instance: unpinning the links detaches
/// `lb_nat` (nothing else holds them), unpinning the table frees it.
pub fn remove(dir: &Path) -> Result<(), NatError> {
    std::fs::remove_dir_all(dir).map_err(|source| NatError::Io {
        what: "removing",
        path: dir.to_path_buf(),
        source,
    })
}

/// Loads `lb_nat` (with the other programs, before the logger takes its map).
pub fn load(ebpf: &mut Ebpf) -> Result<(), NatError> {
    program(ebpf)?.load().map_err(|e| NatError::Program {
        source: Box::new(e),
    })
}

fn program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, NatError> {
    let p = ebpf
        .program_mut(progs::NAT)
        .ok_or(NatError::MissingMap { name: progs::NAT })?;
    p.try_into().map_err(|e| NatError::Program {
        source: Box::new(e),
    })
}

/// One interface `lb_nat` runs on, from the links a daemon pinned
/// (`lb xdp status`, `show xdp`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct NatAttachment {
    pub interface: String,
    /// 0 when no interface of that name exists (any more) here.
    pub ifindex: u32,
    pub hook: &'static str,
    /// 0 when the pinned link could not be read.
    pub prog_id: u32,
}

/// Where `lb_nat` is attached for `instance`: nothing without `data-path nat`.
pub fn attachments(instance: &str) -> Vec<NatAttachment> {
    let Ok(rd) = std::fs::read_dir(nat_dir(instance)) else {
        return Vec::new();
    };
    let mut out: Vec<NatAttachment> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_prefix("link-")?.to_string();
            let prog_id = PinnedLink::from_pin(e.path())
                .ok()
                .map(FdLink::from)
                .and_then(|l| l.info().ok())
                .map_or(0, |i| i.program_id());
            let ifindex = std::ffi::CString::new(name.as_str())
                .map_or(0, |c| unsafe { libc::if_nametoindex(c.as_ptr()) });
            Some(NatAttachment {
                interface: name,
                ifindex,
                hook: "tcx ingress",
                prog_id,
            })
        })
        .collect();
    out.sort_by(|a, b| a.interface.cmp(&b.interface));
    out
}

fn link_pin(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link-{iface}"))
}

/// Attaches `lb_nat` at tcx ingress of each interface, or swaps it into the
/// link a previous daemon pinned there (atomically: no packet sees no
/// program); pins the links; removes the links of interfaces no longer
/// wanted. Returns, per interface, whether the link was taken over.
pub fn attach(
    ebpf: &mut Ebpf,
    instance: &str,
    ifaces: &[String],
) -> Result<Vec<(String, bool)>, NatError> {
    let dir = nat_dir(instance);
    let prog = program(ebpf)?;
    let mut out = Vec::new();
    for iface in ifaces {
        let path = link_pin(&dir, iface);
        let old = match PinnedLink::from_pin(&path) {
            Ok(old) => Some(old),
            Err(LinkError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!("{}: {e}; attaching anew", path.display());
                let _ = std::fs::remove_file(&path);
                None
            }
        };
        // A link whose interface went away (and came back) cannot be updated:
        // then it is replaced by a new one.
        let swapped = old.and_then(|old| {
            let link = FdLink::from(old).try_into().ok()?;
            match prog.attach_to_link(link) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(
                        "{iface}: the pinned {} link: {e}; attaching anew",
                        progs::NAT
                    );
                    let _ = std::fs::remove_file(&path);
                    None
                }
            }
        });
        let taken_over = swapped.is_some();
        let id = match swapped {
            Some(id) => id,
            None => prog
                .attach_with_options(
                    iface,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(|e| NatError::Attach {
                    iface: iface.clone(),
                    source: Box::new(e),
                })?,
        };
        let link = prog.take_link(id).map_err(|e| NatError::Attach {
            iface: iface.clone(),
            source: Box::new(e),
        })?;
        let fd: FdLink = link.try_into().map_err(|source| NatError::Link {
            iface: iface.clone(),
            source,
        })?;
        if taken_over {
            // The pin still names the link; the fd drops without detaching.
            drop(fd);
        } else {
            fd.pin(&path).map_err(|source| NatError::PinLink {
                iface: iface.clone(),
                path: path.clone(),
                source,
            })?;
        }
        out.push((iface.clone(), taken_over));
    }
    let wanted: HashSet<PathBuf> = ifaces.iter().map(|i| link_pin(&dir, i)).collect();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            let is_link = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("link-"));
            if is_link && !wanted.contains(&p) {
                tracing::info!(
                    "{}: interface no longer used by NAT, detaching",
                    p.display()
                );
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    Ok(out)
}

/// The NAT path's maps, owned by the daemon.
pub struct NatMaps {
    pub vips: HashMap<MapData, BindKey, NatVip>,
    pub backends: Array<MapData, NatBackend>,
    pub pick: Array<MapData, u32>,
    pub servers: Array<MapData, NatServer>,
    pub flows: HashMap<MapData, NatKey, NatFlow>,
    /// NAT flows that ended (`NatLog` records), for tcplog.
    pub log: aya::maps::RingBuf<MapData>,
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, NatError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = ebpf.take_map(name).ok_or(NatError::MissingMap { name })?;
    T::try_from(m).map_err(map_err(name))
}

impl NatMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, NatError> {
        Ok(Self {
            vips: take_map(ebpf, maps::NAT_VIPS)?,
            backends: take_map(ebpf, maps::NAT_BACKENDS)?,
            pick: take_map(ebpf, maps::NAT_PICK)?,
            servers: take_map(ebpf, maps::NAT_SERVERS)?,
            flows: take_map(ebpf, maps::NAT_FLOWS)?,
            log: take_map(ebpf, maps::NAT_LOG)?,
        })
    }

    /// Replaces the frontend addresses (entries not in `vips` go).
    pub fn set_vips(&mut self, vips: &[(BindKey, NatVip)]) -> Result<(), NatError> {
        let old: Vec<BindKey> = self.vips.keys().filter_map(|k| k.ok()).collect();
        for (k, v) in vips {
            self.vips.insert(k, v, 0).map_err(map_err(maps::NAT_VIPS))?;
        }
        for k in old {
            if !vips.iter().any(|(n, _)| *n == k) {
                let _ = self.vips.remove(&k);
            }
        }
        Ok(())
    }

    pub fn set_server(&mut self, idx: u32, s: &NatServer) -> Result<(), NatError> {
        self.servers
            .set(idx, s, 0)
            .map_err(map_err(maps::NAT_SERVERS))
    }

    /// Writes a backend's pick table (its slots first, then the header that
    /// says how many are in use, so a SYN never reads a slot not yet written).
    pub fn set_backend(
        &mut self,
        idx: u32,
        be: &NatBackend,
        table: &[u32],
    ) -> Result<(), NatError> {
        write_backend(
            (&mut self.pick, maps::NAT_PICK),
            (&mut self.backends, maps::NAT_BACKENDS),
            idx,
            be,
            table,
        )
        .map_err(|(name, source)| NatError::Map { name, source })
    }

    /// Every entry of the flow table (a snapshot: entries come and go meanwhile).
    pub fn flows(&self) -> Vec<(NatKey, NatFlow)> {
        self.flows.iter().filter_map(|r| r.ok()).collect()
    }

    pub fn flow(&self, k: &NatKey) -> Option<NatFlow> {
        self.flows.get(k, 0).ok()
    }

    pub fn update_flow(&mut self, k: &NatKey, v: &NatFlow) -> bool {
        // BPF_EXIST: an entry deleted meanwhile stays deleted.
        self.flows.insert(k, v, 2).is_ok()
    }

    /// The next ended-flow record, if any.
    pub fn next_log(&mut self) -> Option<lb_common::NatLog> {
        let item = self.log.next()?;
        if item.len() < std::mem::size_of::<lb_common::NatLog>() {
            return None;
        }
        // SAFETY: the record was written as a `NatLog` (repr(C), Pod) by
        // lb_nat; read unaligned from the ring's bytes.
        Some(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const lb_common::NatLog) })
    }

    /// Removes one direction; true if this call removed it.
    pub fn remove_flow(&mut self, k: &NatKey) -> bool {
        self.flows.remove(k).is_ok()
    }
}

/// Writes a kernel pick table (`NAT_PICK_SLOTS` slots of backend `idx`),
/// then its header: a program that reads the new slot count finds the slots
/// filled. The round-robin position is the kernel's and carries on. Shared
/// by the NAT and connect paths; the error names the map.
pub(crate) fn write_backend(
    pick: (&mut Array<MapData, u32>, &'static str),
    backends: (&mut Array<MapData, NatBackend>, &'static str),
    idx: u32,
    be: &NatBackend,
    table: &[u32],
) -> Result<(), (&'static str, aya::maps::MapError)> {
    for (i, &s) in table.iter().enumerate().take(NAT_PICK_SLOTS as usize) {
        pick.0
            .set(idx * NAT_PICK_SLOTS + i as u32, s, 0)
            .map_err(|e| (pick.1, e))?;
    }
    let mut be = *be;
    if let Ok(old) = backends.0.get(&idx, 0) {
        be.rr = old.rr;
    }
    backends.0.set(idx, be, 0).map_err(|e| (backends.1, e))
}
