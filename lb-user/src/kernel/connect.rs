//! `data-path connect`'s programs and maps: `lb_connect4/6` and
//! `lb_peer4/6` attached to a cgroup (the root one unless the configuration
//! names another), with `lb_conns` beside them so that a balanced socket is
//! counted out of its server when it closes. The links and the socket table
//! are pinned (in `CONNECT_PIN_ROOT/<instance>`): when the daemon stops or
//! dies, this host's clients keep being connected straight to the servers
//! (with the last state the daemon wrote); the next daemon swaps its
//! programs into the links (`BPF_LINK_UPDATE`: no connect sees no program)
//! and reuses the table. A configuration without connect frontends, or `lb
//! clear connect`, removes them.
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SockOps};
use aya::{Ebpf, EbpfLoader};
use lb_common::{maps, progs, BindKey, ConnPeer, NatBackend, NatServer, NatVip};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cgroup {path}: {source}")]
    Cgroup { path: PathBuf, source: io::Error },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("program {name} missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {name} missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("reading this network namespace's cookie (SO_NETNS_COOKIE): {0}")]
    Netns(io::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the {name} link: {source}")]
    Link {
        name: &'static str,
        source: aya::programs::links::LinkError,
    },
    #[error("pinning the {name} link at {path}: {source}")]
    PinLink {
        name: &'static str,
        path: PathBuf,
        source: aya::pin::PinError,
    },
}

/// Root of the connect path's pins (a dot-free name: bpffs refuses dots).
pub const CONNECT_PIN_ROOT: &str = "/sys/fs/bpf/lb-connect";

/// Where the connect path's links and socket table of `instance` are pinned.
pub fn connect_dir(instance: &str) -> PathBuf {
    Path::new(CONNECT_PIN_ROOT).join(instance)
}

/// Removes an instance's pinned connect state: unpinning the links detaches
/// the programs (nothing else holds them); this host's clients connect to
/// the frontend addresses as asked from then on.
pub fn remove(dir: &Path) -> Result<(), ConnectError> {
    std::fs::remove_dir_all(dir).map_err(|source| ConnectError::Io {
        what: "removing",
        path: dir.to_path_buf(),
        source,
    })
}

/// Before the object loads: with connect frontends, the socket table is
/// pinned in the instance's directory (a previous daemon's is reused: the
/// sockets it balanced keep their `getpeername` and are counted out when
/// they close); without, a previous run's connect state is removed.
pub fn prepare(
    loader: &mut EbpfLoader<'_>,
    instance: &str,
    want: bool,
) -> Result<(), ConnectError> {
    let dir = connect_dir(instance);
    if !want {
        if dir.exists() {
            tracing::info!(
                "no 'data-path connect' frontend: removing the connect state of the previous \
                 run ({}); this host's clients connect to the frontends' addresses again",
                dir.display()
            );
            remove(&dir)?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|source| ConnectError::Io {
        what: "creating",
        path: dir.clone(),
        source,
    })?;
    loader.map_pin_path(maps::CONN_PEERS, dir.join(maps::CONN_PEERS));
    Ok(())
}

fn bpf_sys(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<libc::c_long> {
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `BPF_OBJ_GET`: a pinned object's fd.
fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    let fd = bpf_sys(7, &mut attr)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The cgroup id a cgroup link is attached to (`BPF_OBJ_GET_INFO_BY_FD`:
/// `bpf_link_info.cgroup.cgroup_id`).
fn link_cgroup(link: &OwnedFd) -> io::Result<u64> {
    let mut info = [0u64; 8];
    let mut attr = [0u64; 16];
    attr[0] = link.as_raw_fd() as u64 | ((std::mem::size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf_sys(15, &mut attr)?;
    Ok(info[2])
}

/// `BPF_LINK_UPDATE`: the link runs `prog` from now on.
fn link_update(link: &OwnedFd, prog: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = [0u64; 16];
    attr[0] = link.as_raw_fd() as u64 | ((prog.as_raw_fd() as u64) << 32);
    bpf_sys(29, &mut attr).map(|_| ())
}

/// A cgroup's id: its directory's inode number on cgroup2.
fn cgroup_id(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.ino())
}

fn prog_err(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> ConnectError {
    move |e| ConnectError::Program {
        name,
        source: Box::new(e),
    }
}

/// The cgroup v2 hierarchy's root (where the programs attach by default: every
/// process of the host).
pub fn cgroup_root() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
    mounts
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            let (_dev, dir, fstype) = (it.next()?, it.next()?, it.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .ok_or_else(|| "no cgroup2 filesystem mounted".to_string())
}

/// Loads the four programs (before the logger takes its map).
pub fn load(ebpf: &mut Ebpf) -> Result<(), ConnectError> {
    for name in [progs::CONNECT4, progs::CONNECT6, progs::PEER4, progs::PEER6] {
        let p: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .ok_or(ConnectError::MissingProgram { name })?
            .try_into()
            .map_err(prog_err(name))?;
        p.load().map_err(prog_err(name))?;
    }
    Ok(())
}

/// The programs `attach` puts on the cgroup, each with its pinned link.
const LINKED: [&str; 5] = [
    progs::CONNECT4,
    progs::CONNECT6,
    progs::PEER4,
    progs::PEER6,
    progs::CONNS,
];

fn prog_fd<'a>(
    ebpf: &'a Ebpf,
    name: &'static str,
) -> Result<&'a aya::programs::ProgramFd, ConnectError> {
    ebpf.program(name)
        .ok_or(ConnectError::MissingProgram { name })?
        .fd()
        .map_err(prog_err(name))
}

/// Puts the programs, and `lb_conns` (loaded already), on `cgroup`: into
/// the links a previous daemon pinned for this instance (swapped in place,
/// if they are on the same cgroup), else as new links, pinned. They stack
/// with whatever else is attached there. Returns how many links were taken
/// over.
pub fn attach(ebpf: &mut Ebpf, instance: &str, cgroup: &Path) -> Result<usize, ConnectError> {
    let dir = connect_dir(instance);
    let want_id = cgroup_id(cgroup).map_err(|source| ConnectError::Cgroup {
        path: cgroup.to_path_buf(),
        source,
    })?;
    let mut taken = 0;
    for name in LINKED {
        let path = dir.join(format!("link-{name}"));
        if let Ok(link) = obj_get(&path) {
            let same = link_cgroup(&link).is_ok_and(|id| id == want_id);
            let prog = prog_fd(ebpf, name)?;
            if same && link_update(&link, prog.as_fd()).is_ok() {
                taken += 1;
                continue;
            }
            tracing::info!(
                "{}: {}; attaching anew",
                path.display(),
                if same {
                    "cannot swap the program in"
                } else {
                    "on another cgroup"
                }
            );
            let _ = std::fs::remove_file(&path);
        }
        let cg = File::open(cgroup).map_err(|source| ConnectError::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        // The same steps for both program types (their link types differ).
        macro_rules! attach_as {
            ($ty:ty) => {{
                let p: &mut $ty = ebpf
                    .program_mut(name)
                    .ok_or(ConnectError::MissingProgram { name })?
                    .try_into()
                    .map_err(prog_err(name))?;
                let id = p
                    .attach(cg, CgroupAttachMode::Single)
                    .map_err(prog_err(name))?;
                let link: FdLink = p
                    .take_link(id)
                    .map_err(prog_err(name))?
                    .try_into()
                    .map_err(|source| ConnectError::Link { name, source })?;
                link
            }};
        }
        let fd = if name == progs::CONNS {
            attach_as!(SockOps)
        } else {
            attach_as!(CgroupSockAddr)
        };
        fd.pin(&path).map_err(|source| ConnectError::PinLink {
            name,
            path: path.clone(),
            source,
        })?;
    }
    Ok(taken)
}

/// This network namespace's cookie: `lb_connect4/6` act only on connects
/// made in it.
pub fn netns_cookie() -> Result<u64, ConnectError> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let s = std::net::UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| std::net::UdpSocket::bind("[::1]:0"))
        .map_err(ConnectError::Netns)?;
    let mut v = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            &mut v as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(ConnectError::Netns(io::Error::last_os_error()));
    }
    Ok(v)
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, ConnectError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = ebpf
        .take_map(name)
        .ok_or(ConnectError::MissingMap { name })?;
    T::try_from(m).map_err(|source| ConnectError::Map { name, source })
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> ConnectError {
    move |source| ConnectError::Map { name, source }
}

/// `data-path connect`'s maps, owned by the daemon.
pub struct ConnectMaps {
    vips: HashMap<MapData, BindKey, NatVip>,
    backends: Array<MapData, NatBackend>,
    pick: Array<MapData, u32>,
    servers: Array<MapData, NatServer>,
    peers: HashMap<MapData, u64, ConnPeer>,
    netns: Array<MapData, u64>,
}

impl ConnectMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, ConnectError> {
        Ok(Self {
            vips: take_map(ebpf, maps::CONN_VIPS)?,
            backends: take_map(ebpf, maps::CONN_BACKENDS)?,
            pick: take_map(ebpf, maps::CONN_PICK)?,
            servers: take_map(ebpf, maps::CONN_SERVERS)?,
            peers: take_map(ebpf, maps::CONN_PEERS)?,
            netns: take_map(ebpf, maps::CONN_NETNS)?,
        })
    }

    pub fn set_netns(&mut self, cookie: u64) -> Result<(), ConnectError> {
        self.netns
            .set(0, cookie, 0)
            .map_err(map_err(maps::CONN_NETNS))
    }

    pub fn set_vips(&mut self, vips: &[(BindKey, NatVip)]) -> Result<(), ConnectError> {
        for (k, v) in vips {
            self.vips
                .insert(k, v, 0)
                .map_err(map_err(maps::CONN_VIPS))?;
        }
        Ok(())
    }

    pub fn set_server(&mut self, idx: u32, s: &NatServer) -> Result<(), ConnectError> {
        self.servers
            .set(idx, s, 0)
            .map_err(map_err(maps::CONN_SERVERS))
    }

    pub fn set_backend(
        &mut self,
        nb: u32,
        be: &NatBackend,
        slots: &[u32],
    ) -> Result<(), ConnectError> {
        super::nat::write_backend(
            (&mut self.pick, maps::CONN_PICK),
            (&mut self.backends, maps::CONN_BACKENDS),
            nb,
            be,
            slots,
        )
        .map_err(|(name, source)| ConnectError::Map { name, source })
    }

    /// Sockets connected straight to a server and still open.
    pub fn peers(&self) -> Vec<(u64, ConnPeer)> {
        self.peers.iter().filter_map(|r| r.ok()).collect()
    }

    /// Removes a socket's entry; true if this call removed it (and so
    /// counts it out: `lb_conns` removes the others).
    pub fn remove_peer(&mut self, cookie: u64) -> bool {
        self.peers.remove(&cookie).is_ok()
    }

    pub fn update_peer(&mut self, cookie: u64, p: &ConnPeer) {
        // BPF_EXIST: a socket that closed meanwhile stays gone.
        let _ = self.peers.insert(cookie, p, 2);
    }
}
