//! Loading, attaching and pinning the eBPF programs and maps.
pub mod btf;
pub mod connect;
#[cfg(feature = "test-harness")]
pub mod harness;
pub mod nat;
pub mod pinned;
pub mod route;
pub mod sockdiag;
pub mod xdp;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf, SockHash, SockMap};
use aya::programs::{CgroupAttachMode, SkLookup, SkSkb, SockOps};
use aya::{Ebpf, EbpfLoader};
use lb_common::{
    maps, progs, BindKey, BindTarget, FlowDir, ServerCheck, ServerKStats, ServerMeta, ServerState,
    SockEnd,
};

/// The object built by `cargo xtask build`, embedded by build.rs (empty if absent).
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf.o"));

/// Root of pinned maps; one directory per instance.
pub const PIN_ROOT: &str = "/sys/fs/bpf/lb";

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("the eBPF object is not embedded in this binary: build with `cargo xtask build`")]
    NoObject,
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("map {name} missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("pinning map {name} at {path}: {source}")]
    Pin {
        name: &'static str,
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error(transparent)]
    Xdp(Box<crate::kernel::xdp::XdpError>),
    #[error(transparent)]
    Nat(Box<crate::kernel::nat::NatError>),
    #[error(transparent)]
    Connect(Box<crate::kernel::connect::ConnectError>),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn pin_dir(instance: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(instance)
}

/// Mounts bpffs at /sys/fs/bpf when it is not there (fresh VMs, containers).
fn ensure_bpffs() -> Result<(), BpfError> {
    let target = Path::new("/sys/fs/bpf");
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new("/sys/fs/bpf").unwrap();
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    let _ = std::fs::create_dir_all(target);
    let fs = std::ffi::CString::new("bpf").unwrap();
    let r = unsafe { libc::mount(fs.as_ptr(), c.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        return Err(BpfError::Io {
            what: "mounting bpffs at",
            path: target.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Everything loaded into the kernel for one daemon. Dropping it detaches the
/// programs (links are owned by `ebpf`) and unpins the maps.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub pin_dir: PathBuf,
    /// Whether the splice verdict loaded and attached (Err: why not).
    pub splice: Result<(), String>,
    /// Whether `lb_xdp` is loaded (the daemon attaches it once its maps are filled).
    pub xdp: bool,
    /// With NAT frontends: `lb_nat` is loaded and what became of the previous
    /// daemon's flow table.
    pub nat: Option<crate::kernel::nat::Adopted>,
    /// Whether `lb_conns` (kernel-side connection counting) attached (Err: why not).
    pub conns: Result<(), String>,
    /// aya-log records from the programs; the daemon polls it.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

fn prog_err(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> BpfError {
    move |source| BpfError::Program { name, source }
}

/// Loads the object, attaches steering (and the splice verdict when wanted),
/// loads `lb_xdp` when `want_xdp` (an XDP program failing the verifier is an
/// error: the configuration asked for it), loads `lb_nat` with a flow table of
/// `want_nat` entries (reusing a pinned one), and pins the maps.
pub fn load(
    instance: &str,
    want_splice: bool,
    want_xdp: bool,
    want_nat: Option<u32>,
    want_connect: bool,
) -> Result<Loaded, BpfError> {
    if OBJECT.is_empty() {
        return Err(BpfError::NoObject);
    }
    ensure_bpffs()?;
    // The verdict reads fields of tcp_sock and sk_buff at offsets from the
    // running kernel's BTF. Without them the kernel path is off, steering
    // still works.
    let offsets = crate::kernel::btf::VerdictOffsets::from_kernel();
    let mut loader = EbpfLoader::new();
    if let Ok(o) = &offsets {
        loader.override_global("TCP_SOCK_WRITE_SEQ", &o.write_seq, true);
        loader.override_global("TCP_SOCK_COPIED_SEQ", &o.copied_seq, true);
        loader.override_global("SKB_TCP_SEQ", &o.skb_seq, true);
    }
    let nat = crate::kernel::nat::prepare(&mut loader, instance, want_nat)
        .map_err(|e| BpfError::Nat(Box::new(e)))?;
    crate::kernel::connect::prepare(&mut loader, instance, want_connect)
        .map_err(|e| BpfError::Connect(Box::new(e)))?;
    let mut ebpf = loader.load(OBJECT)?;

    // Steering: sk_lookup in this network namespace.
    let netns = File::open("/proc/self/ns/net").map_err(|source| BpfError::Io {
        what: "opening",
        path: "/proc/self/ns/net".into(),
        source,
    })?;
    let prog: &mut SkLookup = ebpf
        .program_mut(progs::DISPATCH)
        .ok_or(BpfError::MissingMap {
            name: progs::DISPATCH,
        })?
        .try_into()
        .map_err(prog_err(progs::DISPATCH))?;
    prog.load().map_err(prog_err(progs::DISPATCH))?;
    prog.attach(netns.as_fd())
        .map_err(prog_err(progs::DISPATCH))?;

    let splice = match (want_splice, offsets) {
        (false, _) => Err("disabled by --no-splice".to_string()),
        (true, Err(e)) => Err(format!("kernel BTF unavailable: {e}")),
        (true, Ok(_)) => attach_splice(&mut ebpf),
    };
    if want_xdp {
        crate::kernel::xdp::load(&mut ebpf).map_err(|e| BpfError::Xdp(Box::new(e)))?;
    }
    if nat.is_some() {
        crate::kernel::nat::load(&mut ebpf).map_err(|e| BpfError::Nat(Box::new(e)))?;
    }
    let conns = attach_conns(&mut ebpf);
    if want_connect {
        crate::kernel::connect::load(&mut ebpf).map_err(|e| BpfError::Connect(Box::new(e)))?;
    }
    // Only after every program is loaded: the logger takes its map out of `ebpf`,
    // and programs loaded later could no longer reference it.
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::debug!("eBPF logger not initialised: {e}");
            None
        }
    };

    let dir = pin_dir(instance);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|source| BpfError::Io {
        what: "creating pin directory",
        path: dir.clone(),
        source,
    })?;
    for name in [
        maps::SRV_META,
        maps::SRV_STATE,
        maps::SRV_CHECK,
        maps::SRV_KSTATS,
        maps::STATS,
        maps::FLOWS,
        maps::BINDS,
        maps::XDP_FE_STATS,
        maps::XDP_IFACES,
        maps::FE_META,
        maps::XDP_CFG,
    ] {
        let map = ebpf.map(name).ok_or(BpfError::MissingMap { name })?;
        let path = dir.join(name);
        map.pin(&path)
            .map_err(|source| BpfError::Pin { name, path, source })?;
    }
    // Readers take LB_SRV_CONNS as the live counts: only when it is.
    if conns.is_ok() {
        let name = maps::SRV_CONNS;
        let map = ebpf.map(name).ok_or(BpfError::MissingMap { name })?;
        let path = dir.join(name);
        map.pin(&path)
            .map_err(|source| BpfError::Pin { name, path, source })?;
    }
    Ok(Loaded {
        ebpf,
        pin_dir: dir,
        splice,
        xdp: want_xdp,
        nat,
        conns,
        logger,
    })
}

/// The cgroup v2 directory this process runs in: `lb_conns` attaches there,
/// so it sees the sockets of the daemon (and of its cgroup, which it ignores:
/// only sockets registered in LB_CONN_SRV are counted).
fn own_cgroup2() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
    let root = mounts
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            let (_dev, dir, fstype) = (it.next()?, it.next()?, it.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .ok_or("no cgroup2 filesystem mounted")?;
    let me = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let rel = me
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .trim_start_matches('/');
    Ok(root.join(rel))
}

fn attach_conns(ebpf: &mut Ebpf) -> Result<(), String> {
    let cg_path = own_cgroup2()?;
    let cg = File::open(&cg_path).map_err(|e| format!("{}: {e}", cg_path.display()))?;
    let prog: &mut SockOps = ebpf
        .program_mut(progs::CONNS)
        .ok_or("program lb_conns missing")?
        .try_into()
        .map_err(|e| format!("lb_conns: {e}"))?;
    prog.load()
        .map_err(|e| format!("loading lb_conns: {e:?}"))?;
    // Several daemons (instances) may share a cgroup: each has its own program
    // and maps. Attached as a bpf_link, which the kernel always stacks with
    // the others; it refuses attach flags there, so "Single" (no flags).
    prog.attach(cg, CgroupAttachMode::Single)
        .map_err(|e| format!("attaching lb_conns to {}: {e:?}", cg_path.display()))?;
    Ok(())
}

/// Maps `len` elements of `T` of an mmapable array map into this process, for
/// good (the mapping lives as long as the process). The kernel stores values
/// at `round_up(value_size, 8)` apart, so `T` must be a multiple of 8 bytes for
/// element N to be where the kernel's element N is (checked at compile time).
fn mmap_array<T>(map: &Map, name: &'static str, len: usize) -> Result<*mut T, BpfError> {
    const {
        assert!(
            std::mem::size_of::<T>().is_multiple_of(8),
            "array map values are 8-byte strided"
        )
    };
    let Map::Array(data) = map else {
        return Err(BpfError::MissingMap { name });
    };
    let fd = data.fd().as_fd().as_raw_fd();
    let bytes = len * std::mem::size_of::<T>();
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(BpfError::Io {
            what: "mmap of map",
            path: name.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(ptr.cast())
}

fn attach_splice(ebpf: &mut Ebpf) -> Result<(), String> {
    let map_fd = {
        let m: SockHash<&MapData, u64> = ebpf
            .map(maps::SPLICED)
            .ok_or("map LB_SPLICED missing")?
            .try_into()
            .map_err(|e| format!("map LB_SPLICED: {e}"))?;
        m.fd().try_clone().map_err(|e| e.to_string())?
    };
    let verdict: &mut SkSkb = ebpf
        .program_mut(progs::VERDICT)
        .ok_or("program lb_verdict missing")?
        .try_into()
        .map_err(|e| format!("lb_verdict: {e}"))?;
    verdict
        .load()
        .map_err(|e| format!("loading lb_verdict: {e:?}"))?;
    verdict
        .attach(&map_fd)
        .map_err(|e| format!("attaching lb_verdict: {e}"))?;

    Ok(())
}

/// Typed handles to the maps userspace writes, taken out of the `Ebpf` object.
pub struct Maps {
    pub listeners: SockMap<MapData>,
    pub binds: HashMap<MapData, BindKey, BindTarget>,
    pub targets: SockHash<MapData, u64>,
    pub spliced: SockHash<MapData, u64>,
    pub ends: HashMap<MapData, u64, SockEnd>,
    pub flows: Map,
    pub srv_meta: Array<MapData, ServerMeta>,
    pub srv_state: Array<MapData, ServerState>,
    pub srv_check: Array<MapData, ServerCheck>,
    pub srv_kstats: PerCpuArray<MapData, ServerKStats>,
    pub stats: PerCpuArray<MapData, u64>,
    pub events: RingBuf<MapData>,
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, BpfError> {
    ebpf.take_map(name).ok_or(BpfError::MissingMap { name })
}

macro_rules! typed {
    ($ebpf:expr, $name:expr) => {
        take($ebpf, $name)?
            .try_into()
            .map_err(|source| BpfError::Map {
                name: $name,
                source,
            })?
    };
}

impl Maps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, BpfError> {
        Ok(Self {
            listeners: typed!(ebpf, maps::LISTENERS),
            binds: typed!(ebpf, maps::BINDS),
            targets: typed!(ebpf, maps::TARGETS),
            spliced: typed!(ebpf, maps::SPLICED),
            ends: typed!(ebpf, maps::ENDS),
            flows: take(ebpf, maps::FLOWS)?,
            srv_meta: typed!(ebpf, maps::SRV_META),
            srv_state: typed!(ebpf, maps::SRV_STATE),
            srv_check: typed!(ebpf, maps::SRV_CHECK),
            srv_kstats: typed!(ebpf, maps::SRV_KSTATS),
            stats: typed!(ebpf, maps::STATS),
            events: typed!(ebpf, maps::EVENTS),
        })
    }
}

/// The FLOWS array mapped into this process: the verdict and userspace share these
/// words (atomics on both sides).
pub struct FlowTable {
    ptr: *mut FlowDir,
    len: usize,
}

// The memory is shared with the kernel; all access goes through atomics or
// single-writer fields documented on `FlowDir`.
unsafe impl Send for FlowTable {}
unsafe impl Sync for FlowTable {}

impl FlowTable {
    pub fn map(flows: &Map) -> Result<Self, BpfError> {
        let len = lb_common::MAX_FLOWS as usize;
        Ok(Self {
            ptr: mmap_array(flows, maps::FLOWS, len)?,
            len,
        })
    }

    /// Raw pointer to one slot; callers use atomics for shared words.
    pub fn slot(&self, i: u32) -> *mut FlowDir {
        assert!((i as usize) < self.len, "flow slot {i} out of range");
        unsafe { self.ptr.add(i as usize) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for FlowTable {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.len * std::mem::size_of::<FlowDir>()) };
    }
}

/// The kernel-side connection counts (LB_SRV_CONNS, mapped here) and the
/// registry of server sockets the sock_ops program counts out (LB_CONN_SRV).
pub struct ConnTable {
    counts: *mut lb_common::SrvConns,
    conn_srv: std::sync::Mutex<HashMap<MapData, u64, u32>>,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnTable")
    }
}

// The counts are shared with the kernel and only touched through atomics.
unsafe impl Send for ConnTable {}
unsafe impl Sync for ConnTable {}

impl ConnTable {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, BpfError> {
        let counts = take(ebpf, maps::SRV_CONNS)?;
        let counts = mmap_array(&counts, maps::SRV_CONNS, lb_common::MAX_SERVERS as usize)?;
        Ok(Self {
            counts,
            conn_srv: std::sync::Mutex::new(typed!(ebpf, maps::CONN_SRV)),
        })
    }

    /// Server `idx`'s counter (None beyond the map).
    pub fn count(&self, idx: u32) -> Option<&std::sync::atomic::AtomicU32> {
        (idx < lb_common::MAX_SERVERS).then(|| unsafe {
            std::sync::atomic::AtomicU32::from_ptr(std::ptr::addr_of_mut!(
                (*self.counts.add(idx as usize)).count
            ))
        })
    }

    pub fn register(&self, cookie: u64, idx: u32) -> Result<(), aya::maps::MapError> {
        let mut m = self.conn_srv.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(cookie, idx, 0)
    }

    /// True when this call removed the entry (so the caller counts the
    /// connection out); false when the kernel already did.
    pub fn unregister(&self, cookie: u64) -> bool {
        let mut m = self.conn_srv.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&cookie).is_ok()
    }
}

/// NUL-padded copy, truncated on a char boundary.
pub fn copy_str(dst: &mut [u8], s: &str) {
    let mut n = s.len().min(dst.len() - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

pub fn read_str(src: &[u8]) -> String {
    let end = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..end]).into_owned()
}

/// The per-CPU counter maps the runtime API and the metrics read (and
/// `clear counters all` resets), summed over CPUs here.
pub struct Counters {
    pub srv_kstats: PerCpuArray<MapData, ServerKStats>,
    pub stats: PerCpuArray<MapData, u64>,
}

impl Counters {
    /// Bytes the verdict moved (in, out) for servers `0..n`.
    pub fn server_bytes(&self, n: u32) -> Vec<(u64, u64)> {
        (0..n)
            .map(|i| {
                self.srv_kstats.get(&i, 0).map_or((0, 0), |v| {
                    v.iter()
                        .fold((0, 0), |(a, b), x| (a + x.bytes_in, b + x.bytes_out))
                })
            })
            .collect()
    }

    /// Writes the daemon's own counters into `LB_STATS` (CPU 0 holds the
    /// total; the programs never write these slots).
    pub fn set_user_stats(&mut self, vals: &[(u32, u64)]) -> Result<(), String> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| format!("counting CPUs: {e}"))?;
        for &(i, v) in vals {
            let mut per = vec![0u64; cpus];
            per[0] = v;
            let per = aya::maps::PerCpuValues::try_from(per).map_err(|e| e.to_string())?;
            self.stats
                .set(i, per, 0)
                .map_err(|e| format!("writing LB_STATS[{i}]: {e}"))?;
        }
        Ok(())
    }

    /// `LB_STATS`, by counter name.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        (0..lb_common::stat::COUNT)
            .map(|i| {
                let v = self.stats.get(&i, 0).map_or(0, |v| v.iter().sum());
                (lb_common::stat::NAMES[i as usize], v)
            })
            .collect()
    }

    /// Zeroes the verdict's byte counts of servers `0..n`.
    pub fn clear_server_bytes(&mut self, n: u32) -> Result<(), String> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| format!("counting CPUs: {e}"))?;
        for i in 0..n.min(lb_common::MAX_SERVERS) {
            let zero = aya::maps::PerCpuValues::try_from(vec![ServerKStats::default(); cpus])
                .map_err(|e| e.to_string())?;
            self.srv_kstats
                .set(i, zero, 0)
                .map_err(|e| format!("clearing LB_SRV_KSTATS[{i}]: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The object's maps are exactly `lb_common::maps::ALL`: userspace never
    /// spells a map name by hand, and no map is left out of the list.
    #[test]
    fn object_maps_are_the_listed_ones() {
        assert!(
            !super::OBJECT.is_empty(),
            "no eBPF object embedded: build it with `cargo xtask build` (or set LB_EBPF_OBJ)"
        );
        let obj = aya_obj::Object::parse(super::OBJECT).expect("parsing the eBPF object");
        let mut found: Vec<&str> = obj
            .maps
            .keys()
            .map(String::as_str)
            .filter(|n| !n.starts_with('.') && !n.starts_with("AYA_LOGS"))
            .collect();
        found.sort_unstable();
        let mut listed = lb_common::maps::ALL.to_vec();
        listed.sort_unstable();
        assert_eq!(found, listed);
    }
}
