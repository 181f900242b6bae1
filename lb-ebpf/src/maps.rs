//! Every map of the object, in one place (names in `lb_common::maps`, which
//! userspace uses; `lb_common::maps::ALL` lists them and a test checks the
//! built object against it). Maps written by userspace only are declared
//! here too, so that they live and are pinned with the object.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, SockHash, SockMap},
};
use lb_common::{
    stat, AclKey4, AclKey6, BindKey, BindTarget, FlowDir, FrontendMeta, ServerCheck, ServerKStats,
    ServerMeta, ServerState, SockEnd, SrvConns, SynBucket, SynSource, XdpConfig, XdpFeStats,
    XdpIface, XdpScratch, BPF_F_MMAPABLE, EVENTS_BYTES, MAX_ACL_ENTRIES, MAX_BINDS, MAX_FLOWS,
    MAX_FRONTENDS, MAX_LISTENERS, MAX_SERVERS, MAX_SOCKS, MAX_SYN_SOURCES, MAX_XDP_IFACES,
};
use lb_common::{
    ConnPeer, NatBackend, NatFlow, NatKey, NatScratch, NatServer, NatVip, MAX_CONNECT_SOCKS,
    MAX_NAT_BACKENDS, NAT_DEFAULT_FLOWS, NAT_LOG_BYTES, NAT_PICK_SLOTS,
};

// ---------------------------------------------------------------- steering

/// Listener index (frontend * 2 + is_v6) -> the daemon's listening socket.
#[map]
pub(crate) static LB_LISTENERS: SockMap = SockMap::with_max_entries(MAX_LISTENERS, 0);
/// Bind address and port -> listener index (and the interface a bind needs).
#[map]
pub(crate) static LB_BINDS: HashMap<BindKey, BindTarget> = HashMap::with_max_entries(MAX_BINDS, 0);

// ---------------------------------------------------------------- splice

/// Socket cookie -> socket: redirect targets (no program attached).
#[map]
pub(crate) static LB_TARGETS: SockHash<u64> = SockHash::with_max_entries(MAX_SOCKS, 0);
/// Socket cookie -> socket: spliced sockets, the stream verdict attached.
#[map]
pub(crate) static LB_SPLICED: SockHash<u64> = SockHash::with_max_entries(MAX_SOCKS, 0);
/// Socket cookie -> its peer's cookie, its flow slot and server.
#[map]
pub(crate) static LB_ENDS: HashMap<u64, SockEnd> = HashMap::with_max_entries(MAX_SOCKS, 0);
/// Flow slot (two per pair, one per direction) -> budget and byte counts,
/// shared with the daemon through mmap.
#[map]
pub(crate) static LB_FLOWS: Array<FlowDir> = Array::with_max_entries(MAX_FLOWS, BPF_F_MMAPABLE);
/// Ring of events for the daemon (a direction switched to PASS).
#[map]
pub(crate) static LB_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

// ---------------------------------------------------------------- servers

/// Server index -> name, backend and address (userspace only).
#[map]
pub(crate) static LB_SRV_META: Array<ServerMeta> = Array::with_max_entries(MAX_SERVERS, 0);
/// Server index -> state, weight, counters (userspace only).
#[map]
pub(crate) static LB_SRV_STATE: Array<ServerState> = Array::with_max_entries(MAX_SERVERS, 0);
/// Server index -> the last health check (userspace only).
#[map]
pub(crate) static LB_SRV_CHECK: Array<ServerCheck> = Array::with_max_entries(MAX_SERVERS, 0);
/// Server index -> bytes the verdict moved, per CPU.
#[map]
pub(crate) static LB_SRV_KSTATS: PerCpuArray<ServerKStats> =
    PerCpuArray::with_max_entries(MAX_SERVERS, 0);
/// Server index -> current connections (mmapped by the daemon).
#[map]
pub(crate) static LB_SRV_CONNS: Array<SrvConns> =
    Array::with_max_entries(MAX_SERVERS, BPF_F_MMAPABLE);
/// Server-side socket cookie -> server index, for `lb_conns` to count out.
#[map]
pub(crate) static LB_CONN_SRV: HashMap<u64, u32> = HashMap::with_max_entries(MAX_SOCKS, 0);

// ---------------------------------------------------------------- counters

/// `stat::*` -> event count, per CPU.
#[map]
pub(crate) static LB_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

// ---------------------------------------------------------------- XDP front door

/// Frontend index -> wire counters, per CPU.
#[map]
pub(crate) static LB_XDP_FE_STATS: PerCpuArray<XdpFeStats> =
    PerCpuArray::with_max_entries(MAX_FRONTENDS, 0);
/// The front door's settings: ACL generation, SYN rate, SYN cookies.
#[map]
pub(crate) static LB_XDP_CFG: Array<XdpConfig> = Array::with_max_entries(1, 0);
/// IPv4 `tcp-request connection` rules: scope + prefix -> accept/reject.
#[map]
pub(crate) static LB_XDP_ACL4: LpmTrie<AclKey4, u32> =
    LpmTrie::with_max_entries(MAX_ACL_ENTRIES, 0);
/// IPv6 `tcp-request connection` rules: scope + prefix -> accept/reject.
#[map]
pub(crate) static LB_XDP_ACL6: LpmTrie<AclKey6, u32> =
    LpmTrie::with_max_entries(MAX_ACL_ENTRIES, 0);
/// Source address -> its SYN token bucket.
#[map]
pub(crate) static LB_XDP_SYN: LruHashMap<SynSource, SynBucket> =
    LruHashMap::with_max_entries(MAX_SYN_SOURCES, 0);
/// Per CPU: a SYN's headers and the SYN-ACK being built (the stack is too small).
#[map]
pub(crate) static LB_XDP_SCRATCH: PerCpuArray<XdpScratch> = PerCpuArray::with_max_entries(1, 0);
/// Slot -> where the daemon attached `lb_xdp` (userspace only).
#[map]
pub(crate) static LB_XDP_IFACES: Array<XdpIface> = Array::with_max_entries(MAX_XDP_IFACES, 0);
/// Frontend index -> name and rule count (userspace only).
#[map]
pub(crate) static LB_FE_META: Array<FrontendMeta> = Array::with_max_entries(MAX_FRONTENDS, 0);

// ---------------------------------------------------------------- kernel NAT

/// Flow direction as it arrives -> its rewrite and state. With NAT frontends
/// the loader pins it apart from the other maps and reuses the pin, so that
/// flows outlive the daemon.
#[map]
pub(crate) static LB_NAT_FLOWS: LruHashMap<NatKey, NatFlow> =
    LruHashMap::with_max_entries(NAT_DEFAULT_FLOWS, 0);
/// Frontend address and port (exact) -> frontend and NAT backend.
#[map]
pub(crate) static LB_NAT_VIPS: HashMap<BindKey, NatVip> = HashMap::with_max_entries(4096, 0);
/// NAT backend -> algorithm, table length, leastconn/first candidates.
#[map]
pub(crate) static LB_NAT_BACKENDS: Array<NatBackend> = Array::with_max_entries(MAX_NAT_BACKENDS, 0);
/// NAT backend * NAT_PICK_SLOTS + slot -> server index (weighted / Maglev).
#[map]
pub(crate) static LB_NAT_PICK: Array<u32> =
    Array::with_max_entries(MAX_NAT_BACKENDS * NAT_PICK_SLOTS, 0);
/// Server index -> address, source address, egress, ports, maxconn, usable.
#[map]
pub(crate) static LB_NAT_SERVERS: Array<NatServer> = Array::with_max_entries(MAX_SERVERS, 0);
/// Per CPU: a new flow's entries while they are built (the stack is too small).
#[map]
pub(crate) static LB_NAT_SCRATCH: PerCpuArray<NatScratch> = PerCpuArray::with_max_entries(1, 0);
/// NAT flows that ended (`NatLog`), for the frontends' tcplog lines.
#[map]
pub(crate) static LB_NAT_LOG: RingBuf = RingBuf::with_byte_size(NAT_LOG_BYTES, 0);

// ---------------------------------------------------------------- connect

/// `data-path connect` frontend address and port -> frontend, backend.
#[map]
pub(crate) static LB_CONN_VIPS: HashMap<BindKey, NatVip> = HashMap::with_max_entries(4096, 0);
/// Backend -> how `lb_connect4/6` pick (as `LB_NAT_BACKENDS`).
#[map]
pub(crate) static LB_CONN_BACKENDS: Array<NatBackend> =
    Array::with_max_entries(MAX_NAT_BACKENDS, 0);
/// Backend * NAT_PICK_SLOTS + slot -> server index.
#[map]
pub(crate) static LB_CONN_PICK: Array<u32> =
    Array::with_max_entries(MAX_NAT_BACKENDS * NAT_PICK_SLOTS, 0);
/// Server index -> address, maxconn, usable.
#[map]
pub(crate) static LB_CONN_SERVERS: Array<NatServer> = Array::with_max_entries(MAX_SERVERS, 0);
/// Per-CPU room for the leastconn/first scan.
#[map]
pub(crate) static LB_CONN_SCRATCH: PerCpuArray<NatScratch> = PerCpuArray::with_max_entries(1, 0);
/// Socket cookie -> the address it asked for and its server, until it closes
/// (`BPF_F_NO_PREALLOC`: memory as used).
#[map]
pub(crate) static LB_CONN_PEERS: HashMap<u64, ConnPeer> =
    HashMap::with_max_entries(MAX_CONNECT_SOCKS, 1);
/// The network namespace (cookie) whose connects are balanced.
#[map]
pub(crate) static LB_CONN_NETNS: Array<u64> = Array::with_max_entries(1, 0);
