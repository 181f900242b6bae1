//! Types and names shared by the eBPF programs (`lb-ebpf`) and userspace (`lb-user`).
//!
//! Every map value is `#[repr(C)]` with fixed-width fields and explicit padding so that
//! the kernel, the BPF programs and userspace agree byte for byte; each type carries a
//! size assertion. Byte order is part of a field's name (`addr_be`, `port_host`).
#![no_std]

pub mod nat;
pub use nat::*;

/// Map names, as declared in `lb-ebpf` and looked up by userspace.
pub mod maps {
    /// SOCKMAP: listener index -> listening socket (one IPv4 and one IPv6 per frontend).
    pub const LISTENERS: &str = "LB_LISTENERS";
    /// HASH: [`crate::BindKey`] -> [`crate::BindTarget`], filled from `bind` lines.
    pub const BINDS: &str = "LB_BINDS";
    /// SOCKHASH (no program): socket cookie -> socket; redirect targets.
    pub const TARGETS: &str = "LB_TARGETS";
    /// SOCKHASH with the stream verdict attached: socket cookie -> socket.
    pub const SPLICED: &str = "LB_SPLICED";
    /// HASH: socket cookie -> [`crate::SockEnd`].
    pub const ENDS: &str = "LB_ENDS";
    /// ARRAY (mmapable): flow slot -> [`crate::FlowDir`], one slot per direction.
    pub const FLOWS: &str = "LB_FLOWS";
    /// ARRAY: server index -> [`crate::ServerMeta`] (names, address), written at start.
    pub const SRV_META: &str = "LB_SRV_META";
    /// ARRAY: server index -> [`crate::ServerState`] (health, weight, connections).
    pub const SRV_STATE: &str = "LB_SRV_STATE";
    /// PERCPU_ARRAY: server index -> [`crate::ServerKStats`] (bytes moved in the kernel).
    pub const SRV_KSTATS: &str = "LB_SRV_KSTATS";
    /// ARRAY: server index -> [`crate::ServerCheck`] (last health-check result).
    pub const SRV_CHECK: &str = "LB_SRV_CHECK";
    /// PERCPU_ARRAY: [`crate::stat`] index -> u64 event counter.
    pub const STATS: &str = "LB_STATS";
    /// RINGBUF of [`crate::Event`] from the verdict to userspace.
    pub const EVENTS: &str = "LB_EVENTS";
    /// PERCPU_ARRAY: frontend index -> [`crate::XdpFeStats`], counted by `lb_xdp`.
    pub const XDP_FE_STATS: &str = "LB_XDP_FE_STATS";
    /// PERCPU_ARRAY of one [`crate::XdpScratch`]: room to build a SYN-ACK in.
    pub const XDP_SCRATCH: &str = "LB_XDP_SCRATCH";
    /// ARRAY of one [`crate::XdpConfig`]: the XDP program's settings.
    pub const XDP_CFG: &str = "LB_XDP_CFG";
    /// LPM_TRIE: [`crate::AclKey4`] -> [`crate::ACL_ACCEPT`] / [`crate::ACL_REJECT`].
    pub const XDP_ACL4: &str = "LB_XDP_ACL4";
    /// LPM_TRIE: [`crate::AclKey6`] -> [`crate::ACL_ACCEPT`] / [`crate::ACL_REJECT`].
    pub const XDP_ACL6: &str = "LB_XDP_ACL6";
    /// LRU_HASH: [`crate::SynSource`] -> [`crate::SynBucket`], the per-source SYN
    /// token buckets.
    pub const XDP_SYN: &str = "LB_XDP_SYN";
    /// ARRAY: slot -> [`crate::XdpIface`], where the daemon attached `lb_xdp`
    /// (for `lb xdp status`; written by userspace only).
    pub const XDP_IFACES: &str = "LB_XDP_IFACES";
    /// ARRAY: frontend index -> [`crate::FrontendMeta`] (names for `lb xdp status`).
    pub const FE_META: &str = "LB_FE_META";
    /// ARRAY (mmapable): server index -> [`crate::SrvConns`], the server's
    /// current connections.
    /// Userspace adds one when it picks the server; whoever removes the server
    /// socket's [`CONN_SRV`] entry (the `lb_conns` sock_ops program when the
    /// socket reaches TCP_CLOSE, or userspace when it releases the connection)
    /// takes it off, so a connection that ends while the daemon is busy is
    /// counted out at once.
    pub const SRV_CONNS: &str = "LB_SRV_CONNS";
    /// HASH: socket cookie of a connection to a server -> server index.
    pub const CONN_SRV: &str = "LB_CONN_SRV";
    /// LRU_HASH, pinned across restarts: [`crate::NatKey`] -> [`crate::NatFlow`],
    /// two entries per NAT flow.
    pub const NAT_FLOWS: &str = "LB_NAT_FLOWS";
    /// HASH: [`crate::BindKey`] (exact address) -> [`crate::NatVip`].
    pub const NAT_VIPS: &str = "LB_NAT_VIPS";
    /// ARRAY: NAT backend index -> [`crate::NatBackend`].
    pub const NAT_BACKENDS: &str = "LB_NAT_BACKENDS";
    /// ARRAY: backend * NAT_PICK_SLOTS + slot -> server index.
    pub const NAT_PICK: &str = "LB_NAT_PICK";
    /// ARRAY: server index -> [`crate::NatServer`].
    pub const NAT_SERVERS: &str = "LB_NAT_SERVERS";
    /// PERCPU_ARRAY of one [`crate::NatScratch`]: room to build a new flow in.
    pub const NAT_SCRATCH: &str = "LB_NAT_SCRATCH";
    /// RINGBUF of [`crate::NatLog`]: NAT flows that ended, for tcplog.
    pub const NAT_LOG: &str = "LB_NAT_LOG";
    /// HASH: [`crate::BindKey`] (exact address) -> [`crate::NatVip`]: the
    /// `data-path connect` frontends' addresses.
    pub const CONN_VIPS: &str = "LB_CONN_VIPS";
    /// ARRAY: backend index -> [`crate::NatBackend`] (connect's tables).
    pub const CONN_BACKENDS: &str = "LB_CONN_BACKENDS";
    /// ARRAY: backend * NAT_PICK_SLOTS + slot -> server index.
    pub const CONN_PICK: &str = "LB_CONN_PICK";
    /// ARRAY: server index -> [`crate::NatServer`] (address, maxconn, usable).
    pub const CONN_SERVERS: &str = "LB_CONN_SERVERS";
    /// PERCPU_ARRAY of one [`crate::NatScratch`]: the leastconn scan's.
    pub const CONN_SCRATCH: &str = "LB_CONN_SCRATCH";
    /// HASH (not preallocated): socket cookie -> [`crate::ConnPeer`], each
    /// socket connected straight to a server, until it closes.
    pub const CONN_PEERS: &str = "LB_CONN_PEERS";
    /// ARRAY of one u64: the network namespace cookie `lb_connect4/6` act in.
    pub const CONN_NETNS: &str = "LB_CONN_NETNS";

    /// Every map of the object (a test checks the built object against it).
    pub const ALL: &[&str] = &[
        LISTENERS,
        BINDS,
        TARGETS,
        SPLICED,
        ENDS,
        FLOWS,
        SRV_META,
        SRV_STATE,
        SRV_KSTATS,
        SRV_CHECK,
        STATS,
        EVENTS,
        XDP_FE_STATS,
        XDP_SCRATCH,
        XDP_CFG,
        XDP_ACL4,
        XDP_ACL6,
        XDP_SYN,
        XDP_IFACES,
        FE_META,
        SRV_CONNS,
        CONN_SRV,
        NAT_FLOWS,
        NAT_VIPS,
        NAT_BACKENDS,
        NAT_PICK,
        NAT_SERVERS,
        NAT_SCRATCH,
        NAT_LOG,
        CONN_VIPS,
        CONN_BACKENDS,
        CONN_PICK,
        CONN_SERVERS,
        CONN_SCRATCH,
        CONN_PEERS,
        CONN_NETNS,
    ];
}

/// Program (function) names in the eBPF object.
pub mod progs {
    pub const DISPATCH: &str = "lb_dispatch";
    pub const VERDICT: &str = "lb_verdict";
    pub const XDP: &str = "lb_xdp";
    /// The same front door at tc ingress (after GRO: large packets stay whole).
    pub const FRONT_TC: &str = "lb_front";
    pub const CONNS: &str = "lb_conns";
    pub const NAT: &str = "lb_nat";
    pub const CONNECT4: &str = "lb_connect4";
    pub const CONNECT6: &str = "lb_connect6";
    pub const PEER4: &str = "lb_peer4";
    pub const PEER6: &str = "lb_peer6";
}

/// Sockets `data-path connect` can hold connected straight to a server at
/// once (entries of `LB_CONN_PEERS`, allocated as used).
pub const MAX_CONNECT_SOCKS: u32 = 1 << 18;

/// Value of [`maps::CONN_PEERS`]: what a socket connected by `lb_connect4/6`
/// asked for (shown by `getpeername`) and where it went.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnPeer {
    /// The frontend address and port the application connected to.
    pub vip_be: [u8; 16],
    /// The server it was connected to (to find it again after a restart,
    /// when server indexes may have changed).
    pub srv_be: [u8; 16],
    pub vip_port_be: [u8; 2],
    pub srv_port_be: [u8; 2],
    /// `AF_INET` or `AF_INET6`, of the address as the socket sees it.
    pub family: u32,
    /// Server index (`u32::MAX`: a server no longer configured).
    pub server: u32,
    pub frontend: u32,
}
const _: () = assert!(core::mem::size_of::<ConnPeer>() == 48);

pub const MAX_LISTENERS: u32 = 512;
pub const MAX_BINDS: u32 = 65_536;
/// Flow slots: two per spliced connection. The open-files limit (20000) caps a
/// process at ~9,900 proxied connections, so 32768 slots never run out first.
pub const MAX_FLOWS: u32 = 32_768;
pub const MAX_SOCKS: u32 = MAX_FLOWS;
pub const MAX_SERVERS: u32 = 4_096;
pub const EVENTS_BYTES: u32 = 1 << 20;
/// Frontends: one IPv4 and one IPv6 listener each.
pub const MAX_FRONTENDS: u32 = MAX_LISTENERS / 2;
/// Entries of each ACL trie (both generations together).
pub const MAX_ACL_ENTRIES: u32 = 1 << 20;
/// Sources tracked by the SYN rate limit; the least recently seen are evicted.
pub const MAX_SYN_SOURCES: u32 = 65_536;
/// Interfaces `lb_xdp` can be attached to at once.
pub const MAX_XDP_IFACES: u32 = 32;
/// IPv6 extension headers `lb_xdp` walks before giving up (counted, passed).
pub const XDP_MAX_EXT_HDRS: u32 = 4;

/// `BPF_F_MMAPABLE`: lets userspace share the flow words with the verdict.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Key of [`maps::BINDS`]. A wildcard bind has an all-zero address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BindKey {
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u32,
    pub port_host: u32,
    /// IPv4 addresses use the first four bytes.
    pub addr_be: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<BindKey>() == 24);

/// Value of [`maps::BINDS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindTarget {
    /// Listener index: frontend * 2 + is_v6.
    pub listener: u32,
    /// `bind ... interface`: only packets that arrived on this interface
    /// match; 0 for any.
    pub ifindex: u32,
}
const _: () = assert!(core::mem::size_of::<BindTarget>() == 8);

impl BindTarget {
    /// Whether a packet that arrived on `ifindex` may use this bind.
    #[inline(always)]
    pub const fn admits(&self, ifindex: u32) -> bool {
        self.ifindex == 0 || self.ifindex == ifindex
    }
}

pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

/// Value of [`maps::ENDS`]: what the verdict needs to know about one spliced socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockEnd {
    /// Cookie of the other socket of the pair (its key in [`maps::TARGETS`]).
    pub peer_cookie: u64,
    /// Slot in [`maps::FLOWS`] of the direction *from* this socket.
    pub slot: u32,
    /// Server index (for per-server byte counters).
    pub server: u32,
}
const _: () = assert!(core::mem::size_of::<SockEnd>() == 16);

/// `FlowDir::pass_word` bit: the verdict passes data to the source socket and
/// userspace forwards it (backpressure mode). The low bits count passed bytes.
pub const PASS_BIT: u64 = 1 << 63;
/// `FlowDir::pass_word` bit: this direction is copied by userspace for good.
pub const USER_BIT: u64 = 1 << 62;
pub const PASS_COUNT_MASK: u64 = (1 << 62) - 1;

/// One direction of one spliced connection, in the mmapable [`maps::FLOWS`] array.
///
/// Written by the verdict (`redirected`, `last_active_ns`, `seq_base`, the count in
/// `pass_word`) and by userspace (`forwarded`, set-up fields, and the PASS ->
/// redirect switch, done with a compare-and-swap on `pass_word` so it only
/// succeeds when every passed byte was forwarded).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowDir {
    pub pass_word: u64,
    /// Bytes the verdict redirected to the peer socket.
    pub redirected: u64,
    /// Bytes userspace wrote to the peer while in PASS mode.
    pub forwarded: u64,
    /// Peer's acked + queued byte count when the pair was spliced (userspace's
    /// reference for "written to the peer", from TCP_INFO and SIOCOUTQ).
    pub tx_base: u64,
    /// Peer's `write_seq` at the first verdict run (the verdict's reference).
    pub seq_base: u32,
    /// 1 once `seq_base` is set.
    pub seq_set: u32,
    /// `bpf_ktime_get_ns()` of the last byte seen in this direction.
    pub last_active_ns: u64,
    /// In-flight budget for this direction, bytes.
    pub budget: u32,
    pub server: u32,
    /// The verdict's upper bound of the peer's psock backlog: exact when it last
    /// read the peer's `write_seq`, plus what it redirected since (the backlog can
    /// only shrink meanwhile). While `bound + len` fits the budget, the verdict
    /// redirects without looking at the peer socket at all.
    pub bound: u64,
    /// Cookie of the socket whose verdict owns this slot: a verdict still
    /// running for a closed pair's socket leaves the next pair's slot alone.
    pub owner_cookie: u64,
    /// TCP sequence of the next byte this direction has not handled yet. TCP
    /// queues a segment that overlaps bytes already received whole, and the
    /// verdict sees whole skbs: it cuts what lies before this.
    pub next_seq: u32,
    /// 1 once `next_seq` is set (from the socket's `copied_seq`, at the first run).
    pub next_set: u32,
    /// 1 once an skb could not be trimmed: the stream has a hole, nothing more
    /// of it may go through (userspace resets the pair).
    pub broken: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<FlowDir>() == 88);

/// Bytes at the head of an skb starting at `seq` with `len` bytes that come
/// before `next` (the next byte not handled yet), i.e. what to cut: 0 when the
/// skb starts at `next` (or, never for an in-order queue, after it), `len` when
/// every byte is old. Sequence numbers wrap.
#[inline(always)]
pub const fn old_head(next: u32, seq: u32, len: u32) -> u32 {
    let before = next.wrapping_sub(seq) as i32;
    if before <= 0 {
        0
    } else if before as u32 >= len {
        len
    } else {
        before as u32
    }
}

/// `next_seq` after an skb: the later of `next` and the skb's end.
#[inline(always)]
pub const fn seq_after(next: u32, seq: u32, len: u32) -> u32 {
    let end = seq.wrapping_add(len);
    if (end.wrapping_sub(next) as i32) > 0 {
        end
    } else {
        next
    }
}

/// Bytes pushed toward the peer that its socket has not taken into its send queue
/// yet: the redirect backlog in the peer's psock, which no socket buffer limit
/// bounds. `written` is the peer's `write_seq` progress since `seq_base` (mod 2^32;
/// a backlog never comes near 4 GiB).
#[inline(always)]
pub const fn psock_backlog(redirected: u64, forwarded: u64, written: u32) -> u64 {
    let pushed = redirected.wrapping_add(forwarded) as u32;
    pushed.wrapping_sub(written) as u64
}

/// What the verdict does with `len` more bytes given the direction's state.
/// Shared so that the policy is unit-tested outside the kernel.
#[inline(always)]
pub const fn fits_budget(in_flight: u64, len: u64, budget: u32) -> bool {
    in_flight + len <= budget as u64
}

/// Value of [`maps::SRV_META`]. Strings are NUL-padded UTF-8.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerMeta {
    pub name: [u8; 64],
    pub backend: [u8; 64],
    pub addr_be: [u8; 16],
    pub family: u32,
    pub port_host: u32,
    /// 1 when this slot is configured.
    pub in_use: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ServerMeta>() == 160);

impl Default for ServerMeta {
    fn default() -> Self {
        Self {
            name: [0; 64],
            backend: [0; 64],
            addr_be: [0; 16],
            family: 0,
            port_host: 0,
            in_use: 0,
            _pad: 0,
        }
    }
}

pub const SRV_DOWN: u32 = 0;
pub const SRV_UP: u32 = 1;
/// Administratively disabled.
pub const SRV_MAINT: u32 = 2;

/// The name of a server state (`SRV_*`) as `lb show` and the logs print it.
pub fn state_name(state: u32) -> &'static str {
    match state {
        SRV_UP => "UP",
        SRV_DOWN => "DOWN",
        SRV_MAINT => "MAINT",
        _ => "?",
    }
}

/// Value of [`maps::SRV_STATE`], written by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerState {
    /// [`SRV_UP`], [`SRV_DOWN`] or [`SRV_MAINT`].
    pub state: u32,
    pub weight: u32,
    /// Health counter as in HAProxy: 0..rise+fall-1; UP while >= rise.
    pub health: u32,
    pub cur_conns: u32,
    pub total_conns: u64,
    /// Bytes client->server / server->client moved by userspace copies.
    pub user_bytes_in: u64,
    pub user_bytes_out: u64,
    /// Check result: 1 passed, 0 failed, 2 not checked yet.
    pub last_check: u32,
    /// Duration of the last check, microseconds.
    pub check_us: u32,
    pub checks_failed: u64,
    pub state_changes: u64,
    /// [`adm`] bits: what the runtime API set, so that a daemon restarted
    /// after a crash finds it in the pinned map.
    pub admin_flags: u32,
    /// The configured weight when this entry was written: a restored runtime
    /// weight applies only while the config still says the same.
    pub iweight: u32,
}
const _: () = assert!(core::mem::size_of::<ServerState>() == 72);

/// [`ServerState::admin_flags`] bits. The first two are HAProxy's
/// `SRV_ADMF_FMAINT` and `SRV_ADMF_FDRAIN` (as in `show servers state`); the
/// others are lb's own.
pub mod adm {
    /// `set server B/S state maint`.
    pub const FMAINT: u32 = 0x01;
    /// `set server B/S state drain`.
    pub const FDRAIN: u32 = 0x08;
    /// `disable health B/S`: checks paused.
    pub const CHECKS_PAUSED: u32 = 0x100;
    /// `set server B/S health stopping` (NOLB).
    pub const STOPPING: u32 = 0x200;
}

/// Health-check status codes (HAProxy's names: [`chk::NAMES`]).
pub mod chk {
    pub const UNK: u32 = 0;
    pub const INI: u32 = 1;
    pub const SOCKERR: u32 = 2;
    pub const L4OK: u32 = 3;
    pub const L4TOUT: u32 = 4;
    pub const L4CON: u32 = 5;
    pub const L6OK: u32 = 6;
    pub const L6TOUT: u32 = 7;
    pub const L6RSP: u32 = 8;
    pub const L7TOUT: u32 = 9;
    pub const L7RSP: u32 = 10;
    pub const L7OK: u32 = 11;
    pub const L7OKC: u32 = 12;
    pub const L7STS: u32 = 13;
    /// `option external-check`: the command failed, timed out, or passed.
    pub const PROCERR: u32 = 14;
    pub const PROCTOUT: u32 = 15;
    pub const PROCOK: u32 = 16;
    pub const COUNT: u32 = 17;
    pub const NAMES: [&str; COUNT as usize] = [
        "UNK", "INI", "SOCKERR", "L4OK", "L4TOUT", "L4CON", "L6OK", "L6TOUT", "L6RSP", "L7TOUT",
        "L7RSP", "L7OK", "L7OKC", "L7STS", "PROCERR", "PROCTOUT", "PROCOK",
    ];

    /// HAProxy's description of a status (`show stat`'s `check_desc`).
    pub fn desc(status: u32) -> &'static str {
        match status {
            INI => "Initializing",
            SOCKERR => "Socket error",
            L4OK => "Layer4 check passed",
            L4TOUT => "Layer4 timeout",
            L4CON => "Layer4 connection problem",
            L6OK => "Layer6 check passed",
            L6TOUT => "Layer6 timeout",
            L6RSP => "Layer6 invalid response",
            L7TOUT => "Layer7 timeout",
            L7RSP => "Layer7 invalid response",
            L7OK => "Layer7 check passed",
            L7OKC => "Layer7 check conditionally passed",
            L7STS => "Layer7 wrong status",
            PROCERR => "External check error",
            PROCTOUT => "External check timeout",
            PROCOK => "External check passed",
            _ => "Unknown",
        }
    }
}

/// Bytes of [`ServerCheck::info`].
pub const CHECK_INFO_LEN: usize = 240;

/// Value of [`maps::SRV_CHECK`], written by the daemon after each check.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerCheck {
    /// A [`chk`] code.
    pub status: u32,
    /// Layer-7 code (HTTP status, ...), 0: none.
    pub code: u32,
    /// Duration of the last check, microseconds.
    pub duration_us: u32,
    /// Checks run so far.
    pub count: u32,
    /// Last error or information text, NUL-padded UTF-8.
    pub info: [u8; CHECK_INFO_LEN],
}
const _: () = assert!(core::mem::size_of::<ServerCheck>() == 256);

impl Default for ServerCheck {
    fn default() -> Self {
        Self {
            status: chk::INI,
            code: 0,
            duration_us: 0,
            count: 0,
            info: [0; CHECK_INFO_LEN],
        }
    }
}

/// Value of [`maps::SRV_KSTATS`] (per CPU): bytes the verdict moved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerKStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Connections the kernel balanced to the server with no proxy: flows
    /// `lb_nat` opened, sockets `lb_connect4/6` connected (the daemon adds
    /// them to the server's total connections).
    pub kernel_conns: u64,
}
const _: () = assert!(core::mem::size_of::<ServerKStats>() == 24);

/// Value of [`maps::SRV_CONNS`]: one server's current connections. The kernel
/// lays an array map's values out at an 8-byte stride (`round_up(value_size,
/// 8)` in kernel/bpf/arraymap.c), and userspace reaches them through `mmap`:
/// a bare `u32` value would put server N's count at byte 8N for the kernel and
/// 4N for a reader that indexes a `u32` slice. The padding makes the stride
/// the type's own size on both sides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SrvConns {
    pub count: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SrvConns>() == 8);

/// Indexes of [`maps::STATS`].
pub mod stat {
    pub const LOOKUP_HIT: u32 = 0;
    pub const LOOKUP_MISS: u32 = 1;
    pub const LOOKUP_NO_LISTENER: u32 = 2;
    pub const VERDICT_REDIRECT: u32 = 3;
    pub const VERDICT_PASS: u32 = 4;
    pub const VERDICT_FIN: u32 = 5;
    pub const VERDICT_UNKNOWN: u32 = 6;
    pub const BUDGET_HIT: u32 = 7;
    pub const PEER_UNKNOWN: u32 = 8;
    pub const EVENT_LOST: u32 = 9;
    /// Every packet `lb_xdp` saw.
    pub const XDP_SEEN: u32 = 10;
    /// TCP packets to a configured frontend (address, port).
    pub const XDP_FRONTEND: u32 = 11;
    /// Headers cut short by the end of the packet: passed to the kernel, which
    /// drops them by its own checks.
    pub const XDP_TRUNCATED: u32 = 12;
    /// Impossible headers (IPv4 IHL < 5 or beyond the total length, wrong IP
    /// version, TCP data offset < 5): dropped.
    pub const XDP_MALFORMED: u32 = 13;
    /// IPv4 or IPv6 fragments: passed (no TCP header to match on; the kernel
    /// reassembles them and the daemon applies the ACL at accept).
    pub const XDP_FRAGMENT: u32 = 14;
    /// More IPv6 extension headers than `XDP_MAX_EXT_HDRS`: passed.
    pub const XDP_EXT_DEPTH: u32 = 15;
    /// Dropped by a `tcp-request connection` rule.
    pub const XDP_ACL_DROP: u32 = 16;
    /// SYNs dropped by the per-source rate limit.
    pub const XDP_SYN_DROP: u32 = 17;
    /// Server connections counted out by `lb_conns` (the socket closed before
    /// userspace released it).
    pub const KERNEL_CONN_END: u32 = 18;
    /// SYNs answered by `lb_xdp` with a SYN cookie SYN-ACK (XDP_TX): the
    /// listener's SYN queue was full, so the kernel would have sent a cookie.
    pub const XDP_SYN_COOKIE: u32 = 19;
    /// Skbs the verdict trimmed because their head overlapped bytes already
    /// handled (a retransmission TCP queued whole).
    pub const OVERLAP_TRIMMED: u32 = 20;
    /// Overlapping bytes cut by those trims.
    pub const OVERLAP_BYTES: u32 = 21;
    /// Skbs whose every byte was already handled: dropped.
    pub const OVERLAP_OLD: u32 = 22;
    /// Skbs that could not be trimmed (or whose sequence could not be read):
    /// the pair is reset.
    pub const OVERLAP_FAILED: u32 = 23;
    /// A verdict for a socket whose flow slot belongs to another pair now.
    pub const VERDICT_STALE: u32 = 24;
    /// Redirects the kernel refused (the peer socket left the map): the
    /// pair is reset.
    pub const REDIRECT_FAILED: u32 = 25;
    /// The daemon writes this and the next two (CPU 0's slot holds the
    /// total), the programs never touch them: what the data path did with
    /// whole connections. Pairs moved to the kernel path.
    pub const CONN_SPLICED: u32 = 26;
    /// Pairs that ended on the userspace copy (short ones that never proved
    /// long-lived, `--no-splice`, and those the kernel refused).
    pub const CONN_COPIED: u32 = 27;
    /// Pairs the kernel path refused (a side already closed, no free slot).
    pub const CONN_REFUSED: u32 = 28;
    /// NAT flows started (a SYN to a `data-path nat` frontend got a server).
    pub const NAT_NEW: u32 = 29;
    /// Packets `lb_nat` rewrote and forwarded.
    pub const NAT_PACKETS: u32 = 30;
    /// SYNs refused: no server of the backend can take a flow.
    pub const NAT_NO_SERVER: u32 = 31;
    /// SYNs refused: every usable server is at its maxconn.
    pub const NAT_FULL: u32 = 32;
    /// SYNs refused: no free balancer port toward the chosen server.
    pub const NAT_NO_PORT: u32 = 33;
    /// SYNs refused: the flow could not be stored (table full).
    pub const NAT_TABLE_FULL: u32 = 34;
    /// Flows that ended with a FIN both ways or a RST.
    pub const NAT_ENDED: u32 = 35;
    /// NAT flow halves the daemon found without their other half: the LRU
    /// flow table, full, evicted running flows (written by the daemon, CPU
    /// 0's slot; `lb_nat` never writes it).
    pub const NAT_ORPHAN: u32 = 36;
    /// Packets whose TTL / hop limit ran out here: dropped.
    pub const NAT_TTL: u32 = 37;
    /// Packets to a NAT frontend that belong to no flow and open none (not a
    /// SYN): left to the host, which resets them.
    pub const NAT_UNKNOWN: u32 = 38;
    /// Packets `lb_nat` could not rewrite (header not in reach): dropped.
    pub const NAT_FAILED: u32 = 39;
    /// Ended flows closed by their last ACK (both FINs acknowledged): their
    /// ports are free at once.
    pub const NAT_CLOSED: u32 = 40;
    /// Balancer ports taken over from an ended flow still in its grace.
    pub const NAT_PORT_REUSED: u32 = 41;
    /// Ended flows whose tcplog record found `LB_NAT_LOG` full: lost.
    pub const NAT_LOG_LOST: u32 = 42;
    /// Port tries that met a flow still holding the port (running, or ended
    /// under `NAT_PORT_REUSE_NS` ago): the next port is tried.
    pub const NAT_PORT_HELD: u32 = 43;
    /// Port tries whose insert failed although the port was free (the LRU
    /// found no node to give: all of them in other CPUs' pending lists).
    pub const NAT_PORT_NOMEM: u32 = 44;
    /// Connects to a `data-path connect` frontend sent straight to a server.
    pub const CONNECT_BALANCED: u32 = 45;
    /// Connects to such a frontend left to its listener: no server could
    /// take one (all DOWN, drained or at maxconn).
    pub const CONNECT_NO_SERVER: u32 = 46;
    /// Connects left to the listener because `LB_CONN_PEERS` is full.
    pub const CONNECT_TABLE_FULL: u32 = 47;
    /// Balanced sockets that closed (counted out of their server).
    pub const CONNECT_CLOSED: u32 = 48;
    pub const COUNT: u32 = 49;

    pub const NAMES: [&str; COUNT as usize] = [
        "lookup_hit",
        "lookup_miss",
        "lookup_no_listener",
        "verdict_redirect",
        "verdict_pass",
        "verdict_fin",
        "verdict_unknown",
        "budget_hit",
        "peer_unknown",
        "event_lost",
        "xdp_seen",
        "xdp_frontend",
        "xdp_truncated",
        "xdp_malformed",
        "xdp_fragment",
        "xdp_ext_depth",
        "xdp_acl_drop",
        "xdp_syn_drop",
        "kernel_conn_end",
        "xdp_syn_cookie",
        "overlap_trimmed",
        "overlap_bytes",
        "overlap_old",
        "overlap_failed",
        "verdict_stale",
        "redirect_failed",
        "conn_spliced",
        "conn_copied",
        "conn_refused",
        "nat_new",
        "nat_packets",
        "nat_no_server",
        "nat_full",
        "nat_no_port",
        "nat_table_full",
        "nat_ended",
        "nat_orphan",
        "nat_ttl",
        "nat_unknown",
        "nat_failed",
        "nat_closed",
        "nat_port_reused",
        "nat_log_lost",
        "nat_port_held",
        "nat_port_nomem",
        "connect_balanced",
        "connect_no_server",
        "connect_table_full",
        "connect_closed",
    ];
}

/// The verdict switched this slot to PASS mode: userspace must drain it.
pub const EVENT_PASS: u32 = 1;
/// The verdict could not cut an overlapping head: this direction has a hole,
/// userspace resets the pair.
pub const EVENT_BROKEN: u32 = 2;

/// Ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    pub slot: u32,
    pub cookie: u64,
}
const _: () = assert!(core::mem::size_of::<Event>() == 16);

/// Value of [`maps::XDP_FE_STATS`] (per CPU): what `lb_xdp` saw for one frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct XdpFeStats {
    /// TCP packets to the frontend's addresses and ports (dropped ones included).
    pub packets: u64,
    /// Their bytes, whole frames as received.
    pub bytes: u64,
    /// SYNs (without ACK): connection attempts.
    pub syns: u64,
    /// Packets dropped by `tcp-request connection` rules.
    pub acl_drops: u64,
    /// SYNs dropped by the per-source SYN rate limit.
    pub syn_drops: u64,
    /// SYNs answered from XDP with a SYN cookie SYN-ACK.
    pub syn_cookies: u64,
}
const _: () = assert!(core::mem::size_of::<XdpFeStats>() == 48);

impl XdpFeStats {
    /// Adds another CPU's counters (readers sum the per-CPU values).
    pub fn add(&mut self, o: &Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.syns += o.syns;
        self.acl_drops += o.acl_drops;
        self.syn_drops += o.syn_drops;
        self.syn_cookies += o.syn_cookies;
    }
}

/// The only entry of [`maps::XDP_CFG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// ACL generation in force (0 or 1): the low bit of every ACL key's scope.
    /// Userspace fills the other generation, then flips this word, then clears
    /// the old one, so a reload never leaves a window without rules.
    pub acl_gen: u32,
    /// 1: answer SYNs with SYN cookies from XDP while the listener's SYN queue
    /// is full (`xdp-syn-cookies on`); 0: leave them to the kernel.
    pub syn_cookies: u32,
    /// Nanoseconds of credit one SYN costs (10^9 / rate); 0 disables the limit.
    pub syn_interval_ns: u64,
    /// Most credit a source can hold: burst * `syn_interval_ns`.
    pub syn_cap_ns: u64,
}
const _: () = assert!(core::mem::size_of::<XdpConfig>() == 24);

/// [`XdpIface::mode`]: native (driver) XDP.
pub const XDP_MODE_NATIVE: u32 = 1;
/// [`XdpIface::mode`]: generic (skb) XDP.
pub const XDP_MODE_SKB: u32 = 2;
/// [`XdpIface::mode`]: `lb_front` at tc (tcx) ingress.
pub const XDP_MODE_TC: u32 = 3;

/// Value of [`maps::XDP_IFACES`]: one attachment of `lb_xdp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpIface {
    /// NUL-padded interface name.
    pub name: [u8; 16],
    pub ifindex: u32,
    /// [`XDP_MODE_NATIVE`], [`XDP_MODE_SKB`] or [`XDP_MODE_TC`]; 0 for an
    /// unused slot.
    pub mode: u32,
    /// Kernel id of the attached program.
    pub prog_id: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<XdpIface>() == 32);

/// Value of [`maps::FE_META`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendMeta {
    /// NUL-padded UTF-8 name.
    pub name: [u8; 64],
    /// 1 when this slot is configured.
    pub in_use: u32,
    /// Number of `tcp-request connection` rules compiled into the ACL tries.
    pub acl_rules: u32,
}
const _: () = assert!(core::mem::size_of::<FrontendMeta>() == 72);

impl Default for FrontendMeta {
    fn default() -> Self {
        Self {
            name: [0; 64],
            in_use: 0,
            acl_rules: 0,
        }
    }
}

/// ACL trie value: let the packet through.
pub const ACL_ACCEPT: u32 = 0;
/// ACL trie value: drop the packet.
pub const ACL_REJECT: u32 = 1;

/// The scope bytes of an ACL key: frontend and generation, big endian so that
/// they are the first 32 bits the trie matches.
#[inline(always)]
pub const fn acl_scope_be(frontend: u32, gen: u32) -> [u8; 4] {
    ((frontend << 1) | (gen & 1)).to_be_bytes()
}

/// Data of an [`maps::XDP_ACL4`] key; the prefix length counts the 32 scope bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AclKey4 {
    pub scope_be: [u8; 4],
    pub addr_be: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<AclKey4>() == 8);

/// Data of an [`maps::XDP_ACL6`] key; the prefix length counts the 32 scope bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AclKey6 {
    pub scope_be: [u8; 4],
    pub addr_be: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<AclKey6>() == 20);

/// Key of [`maps::XDP_SYN`]: one client address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SynSource {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u32,
    /// IPv4 addresses use the first four bytes.
    pub addr_be: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<SynSource>() == 20);

/// Value of [`maps::XDP_SYN`]: a token bucket kept as nanoseconds of credit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynBucket {
    pub credit_ns: u64,
    pub last_ns: u64,
}
const _: () = assert!(core::mem::size_of::<SynBucket>() == 16);

/// One SYN against a bucket: refill by the time elapsed (capped at `cap_ns`),
/// then take `interval_ns` if there is that much. Credit in nanoseconds needs no
/// division in the program. Returns (allowed, the bucket after).
#[inline(always)]
pub const fn syn_take(
    b: SynBucket,
    now_ns: u64,
    interval_ns: u64,
    cap_ns: u64,
) -> (bool, SynBucket) {
    let elapsed = now_ns.saturating_sub(b.last_ns);
    let mut credit = b.credit_ns.saturating_add(elapsed);
    if credit > cap_ns {
        credit = cap_ns;
    }
    let ok = credit >= interval_ns;
    if ok {
        credit -= interval_ns;
    }
    (
        ok,
        SynBucket {
            credit_ns: credit,
            last_ns: now_ns,
        },
    )
}

/// Bytes of the SYN-ACK headers `lb_xdp` writes after the link layer: IPv4
/// without options, TCP with the MSS option only.
pub const SYNACK4_LEN: usize = 20 + SYNACK_TCP_LEN;
/// The same for IPv6 without extension headers.
pub const SYNACK6_LEN: usize = 40 + SYNACK_TCP_LEN;
/// TCP header with one option, MSS (the only one a cookie without timestamps
/// can carry: the kernel restores neither window scaling nor SACK from it).
pub const SYNACK_TCP_LEN: usize = 24;

/// The SYN a cookie answers: addresses and ports as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynFields<const N: usize> {
    pub src_be: [u8; N],
    pub dst_be: [u8; N],
    pub sport_be: [u8; 2],
    pub dport_be: [u8; 2],
    /// The SYN's sequence number (host order).
    pub seq: u32,
}

/// Adds big-endian 16-bit words to a one's complement running sum.
#[inline(always)]
pub fn csum_add<const N: usize>(mut sum: u32, b: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_be_bytes([b[i], b[i + 1]]) as u32;
        i += 2;
    }
    if N % 2 == 1 {
        sum += (b[N - 1] as u32) << 8;
    }
    sum
}

/// Folds a running sum to the 16-bit one's complement checksum.
#[inline(always)]
pub const fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The TCP header of a reply to `syn` (ports swapped, acknowledging the
/// SYN's sequence + 1) with sequence `seq`, `flags`, `window` and one option
/// word, checksum over the pseudo-header (addresses, protocol, length) and
/// the header.
#[inline(always)]
fn reply_tcp<const N: usize>(
    syn: &SynFields<N>,
    seq: u32,
    flags: u8,
    window: u16,
    option: [u8; 4],
) -> [u8; SYNACK_TCP_LEN] {
    let mut t = [0u8; SYNACK_TCP_LEN];
    t[0..2].copy_from_slice(&syn.dport_be);
    t[2..4].copy_from_slice(&syn.sport_be);
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&syn.seq.wrapping_add(1).to_be_bytes());
    t[12] = ((SYNACK_TCP_LEN / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t[20..24].copy_from_slice(&option);
    let mut sum = csum_add(0, &syn.src_be);
    sum = csum_add(sum, &syn.dst_be);
    sum += 6 + SYNACK_TCP_LEN as u32;
    sum = csum_add(sum, &t);
    t[16..18].copy_from_slice(&csum_fold(sum).to_be_bytes());
    t
}

/// The SYN-ACK's TCP header: our sequence is the cookie, the MSS option (the
/// only one a cookie without timestamps can carry: the kernel restores
/// neither window scaling nor SACK from it), and, with no window scaling,
/// the most an unscaled window can say.
#[inline(always)]
fn synack_tcp<const N: usize>(syn: &SynFields<N>, cookie: u32, mss: u16) -> [u8; SYNACK_TCP_LEN] {
    let m = mss.to_be_bytes();
    reply_tcp(syn, cookie, 0x12, u16::MAX, [2, 4, m[0], m[1]])
}

/// The refusal's TCP header: RST | ACK of the SYN, as a closed port answers
/// (the option word is four NOPs, so that both replies have one length).
#[inline(always)]
fn rst_tcp<const N: usize>(syn: &SynFields<N>) -> [u8; SYNACK_TCP_LEN] {
    reply_tcp(syn, 0, 0x14, 0, [1, 1, 1, 1])
}

/// The IPv4 header of a reply to `syn`, checksum filled in.
#[inline(always)]
fn reply_ip4(syn: &SynFields<4>, h: &mut [u8; SYNACK4_LEN]) {
    // Every byte written one by one: `*h = [0; N]` becomes a memset call,
    // which BPF programs do not have.
    h[0] = 0x45;
    h[1] = 0;
    h[2..4].copy_from_slice(&(SYNACK4_LEN as u16).to_be_bytes());
    h[4] = 0; // id
    h[5] = 0;
    h[6] = 0x40; // DF
    h[7] = 0;
    h[8] = 64; // TTL
    h[9] = 6; // TCP
    h[10] = 0;
    h[11] = 0;
    h[12..16].copy_from_slice(&syn.dst_be);
    h[16..20].copy_from_slice(&syn.src_be);
    let mut sum = 0;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_be_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    h[10..12].copy_from_slice(&csum_fold(sum).to_be_bytes());
}

/// The IPv6 header of a reply to `syn`.
#[inline(always)]
fn reply_ip6(syn: &SynFields<16>, h: &mut [u8; SYNACK6_LEN]) {
    h[0] = 0x60;
    h[1] = 0;
    h[2] = 0;
    h[3] = 0;
    h[4..6].copy_from_slice(&(SYNACK_TCP_LEN as u16).to_be_bytes());
    h[6] = 6; // TCP
    h[7] = 64; // hop limit
    h[8..24].copy_from_slice(&syn.dst_be);
    h[24..40].copy_from_slice(&syn.src_be);
}

/// Writes the IPv4 + TCP headers of the SYN cookie SYN-ACK answering `syn`,
/// checksums filled in, to `h` (in place: the XDP program builds it in a
/// per-CPU scratch buffer, the BPF stack being too small).
#[inline(always)]
pub fn synack_v4(syn: &SynFields<4>, cookie: u32, mss: u16, h: &mut [u8; SYNACK4_LEN]) {
    reply_ip4(syn, h);
    h[20..].copy_from_slice(&synack_tcp(syn, cookie, mss));
}

/// Writes the IPv6 + TCP headers of the SYN cookie SYN-ACK answering `syn` to `h`.
#[inline(always)]
pub fn synack_v6(syn: &SynFields<16>, cookie: u32, mss: u16, h: &mut [u8; SYNACK6_LEN]) {
    reply_ip6(syn, h);
    h[40..].copy_from_slice(&synack_tcp(syn, cookie, mss));
}

/// Writes the IPv4 + TCP headers of the RST | ACK refusing `syn` to `h`
/// (the NAT path's answer to a SYN no server can take).
#[inline(always)]
pub fn rst_v4(syn: &SynFields<4>, h: &mut [u8; SYNACK4_LEN]) {
    reply_ip4(syn, h);
    h[20..].copy_from_slice(&rst_tcp(syn));
}

/// The same for IPv6.
#[inline(always)]
pub fn rst_v6(syn: &SynFields<16>, h: &mut [u8; SYNACK6_LEN]) {
    reply_ip6(syn, h);
    h[40..].copy_from_slice(&rst_tcp(syn));
}

/// Value of [`maps::XDP_SCRATCH`]: per-CPU room for the SYN cookie path.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpScratch {
    /// The SYN's IP header, as the cookie helper reads it.
    pub ip: [u8; 40],
    /// The SYN's TCP header with its options (at most 60 bytes).
    pub th: [u8; 60],
    /// The SYN-ACK's IP and TCP headers.
    pub out: [u8; SYNACK6_LEN],
}
const _: () = assert!(core::mem::size_of::<XdpScratch>() == 164);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for NatKey {}
    unsafe impl aya::Pod for NatFlow {}
    unsafe impl aya::Pod for NatVip {}
    unsafe impl aya::Pod for ConnPeer {}
    unsafe impl aya::Pod for NatBackend {}
    unsafe impl aya::Pod for NatServer {}
    unsafe impl aya::Pod for NatLog {}
    unsafe impl aya::Pod for XdpFeStats {}
    unsafe impl aya::Pod for XdpIface {}
    unsafe impl aya::Pod for FrontendMeta {}
    unsafe impl aya::Pod for XdpConfig {}
    unsafe impl aya::Pod for AclKey4 {}
    unsafe impl aya::Pod for AclKey6 {}
    unsafe impl aya::Pod for SynSource {}
    unsafe impl aya::Pod for SynBucket {}
    use super::*;
    unsafe impl aya::Pod for BindKey {}
    unsafe impl aya::Pod for BindTarget {}
    unsafe impl aya::Pod for SockEnd {}
    unsafe impl aya::Pod for FlowDir {}
    unsafe impl aya::Pod for ServerMeta {}
    unsafe impl aya::Pod for ServerState {}
    unsafe impl aya::Pod for ServerKStats {}
    unsafe impl aya::Pod for SrvConns {}
    unsafe impl aya::Pod for ServerCheck {}
    unsafe impl aya::Pod for Event {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn backlog_is_pushed_minus_written() {
        assert_eq!(psock_backlog(100, 0, 0), 100);
        assert_eq!(psock_backlog(100, 50, 120), 30);
        assert_eq!(psock_backlog(100, 50, 150), 0);
        // Across the 4 GiB wrap of the 32-bit sequence space.
        let pushed = (1u64 << 32) + 10;
        assert_eq!(psock_backlog(pushed, 0, 5), 5);
    }

    #[test]
    fn overlapping_heads_are_cut_once() {
        // (next, seq, len) -> (cut, next after)
        let cases: [(&str, u32, u32, u32, u32, u32); 7] = [
            ("in order", 1000, 1000, 500, 0, 1500),
            ("head overlaps 200", 1000, 800, 500, 200, 1300),
            ("every byte old", 1000, 200, 500, 500, 1000),
            ("ends exactly at next", 1000, 500, 500, 500, 1000),
            (
                "a gap (never in an in-order queue)",
                1000,
                1200,
                100,
                0,
                1300,
            ),
            ("across the wrap", 10, u32::MAX - 9, 40, 20, 30),
            ("in order across the wrap", 0, 0, 1, 0, 1),
        ];
        for (what, next, seq, len, cut, after) in cases {
            assert_eq!(old_head(next, seq, len), cut, "{what}: cut");
            assert_eq!(seq_after(next, seq, len), after, "{what}: next");
        }
    }

    #[test]
    fn budget_is_inclusive() {
        assert!(fits_budget(0, 4096, 4096));
        assert!(!fits_budget(1, 4096, 4096));
        assert!(fits_budget(4 << 20, 0, 4 << 20));
    }

    #[test]
    fn syn_bucket_refills_and_caps() {
        let (interval, cap) = (1_000, 3_000);
        // A new source starts full: three SYNs pass at once, the fourth not.
        let mut b = SynBucket {
            credit_ns: cap,
            last_ns: 0,
        };
        for _ in 0..3 {
            let (ok, nb) = syn_take(b, 0, interval, cap);
            assert!(ok);
            b = nb;
        }
        let (ok, b) = syn_take(b, 0, interval, cap);
        assert!(!ok);
        // One interval later exactly one more.
        let (ok, b) = syn_take(b, 1_000, interval, cap);
        assert!(ok);
        let (ok, b) = syn_take(b, 1_500, interval, cap);
        assert!(!ok);
        // A long pause refills only up to the cap.
        let (_, b) = syn_take(b, 1_000_000, interval, cap);
        assert_eq!(b.credit_ns, cap - interval);
        // A clock that goes backwards (another CPU stamped later) adds nothing.
        let (ok, b2) = syn_take(b, 10, interval, cap);
        assert!(ok);
        assert_eq!(b2.credit_ns, cap - 2 * interval);
    }

    /// Sums a whole buffer as the receiver does: 0 means the checksum holds.
    fn verify(parts: &[&[u8]]) -> u16 {
        let mut all = Vec::new();
        for p in parts {
            all.extend_from_slice(p);
        }
        let mut s: u32 = 0;
        for c in all.chunks(2) {
            s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn synack_v4_answers_the_syn_with_valid_checksums() {
        let syn = SynFields {
            src_be: [10, 210, 1, 7],
            dst_be: [10, 210, 1, 1],
            sport_be: 40000u16.to_be_bytes(),
            dport_be: 5432u16.to_be_bytes(),
            seq: u32::MAX,
        };
        let mut h = [0xffu8; SYNACK4_LEN];
        synack_v4(&syn, 0xdead_beef, 1460, &mut h);
        assert_eq!(&h[12..16], &[10, 210, 1, 1]);
        assert_eq!(&h[16..20], &[10, 210, 1, 7]);
        assert_eq!(verify(&[&h[..20]]), 0, "IPv4 header checksum");
        let t = &h[20..];
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), 5432);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]), 40000);
        assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), 0xdead_beef);
        // The acknowledgment wraps with the sequence space.
        assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), 0);
        assert_eq!(t[12] >> 4, 6);
        assert_eq!(t[13], 0x12);
        assert_eq!(&t[20..24], &[2, 4, 0x05, 0xb4]);
        let pseudo = [10, 210, 1, 1, 10, 210, 1, 7, 0, 6, 0, 24];
        assert_eq!(verify(&[&pseudo, t]), 0, "TCP checksum");
    }

    #[test]
    fn synack_v6_has_valid_tcp_checksum() {
        let mut src = [0u8; 16];
        src[0] = 0xfd;
        src[15] = 2;
        let mut dst = src;
        dst[15] = 1;
        let syn = SynFields {
            src_be: src,
            dst_be: dst,
            sport_be: [0xab, 0xcd],
            dport_be: 80u16.to_be_bytes(),
            seq: 41,
        };
        let mut h = [0xffu8; SYNACK6_LEN];
        synack_v6(&syn, 7, 1220, &mut h);
        assert_eq!(h[0] >> 4, 6);
        assert_eq!(&h[8..24], &dst);
        assert_eq!(&h[24..40], &src);
        let t = &h[40..];
        assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), 42);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&[0, 0, 0, 24, 0, 0, 0, 6]);
        assert_eq!(verify(&[&pseudo, t]), 0, "TCP checksum");
    }

    #[test]
    fn rst_v4_refuses_the_syn_with_valid_checksums() {
        let syn = SynFields {
            src_be: [10, 210, 1, 2],
            dst_be: [10, 210, 1, 1],
            sport_be: [0xc3, 0x50],
            dport_be: 5432u16.to_be_bytes(),
            seq: 0xffff_ffff,
        };
        let mut h = [0u8; SYNACK4_LEN];
        rst_v4(&syn, &mut h);
        assert_eq!(verify(&[&h[..20]]), 0, "IP checksum");
        assert_eq!(&h[12..16], &[10, 210, 1, 1]);
        let t = &h[20..];
        assert_eq!(&t[0..4], &[0x15, 0x38, 0xc3, 0x50]);
        assert_eq!(
            u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
            0,
            "ACK wraps"
        );
        assert_eq!(t[13], 0x14, "RST | ACK");
        assert_eq!(&t[20..24], &[1, 1, 1, 1]);
        let pseudo = [10, 210, 1, 1, 10, 210, 1, 2, 0, 6, 0, 24];
        assert_eq!(verify(&[&pseudo, t]), 0, "TCP checksum");
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(csum_add(0, &[1u8, 2, 3]), 0x0102 + 0x0300);
        assert_eq!(csum_fold(0xffff), 0);
        assert_eq!(csum_fold(0x1_fffe), 0);
    }

    #[test]
    fn acl_scope_orders_frontend_then_generation() {
        assert_eq!(acl_scope_be(0, 0), [0, 0, 0, 0]);
        assert_eq!(acl_scope_be(0, 1), [0, 0, 0, 1]);
        assert_eq!(acl_scope_be(3, 1), [0, 0, 0, 7]);
        assert_eq!(acl_scope_be(3, 2), [0, 0, 0, 6]);
    }

    #[test]
    fn pass_bits_do_not_overlap_count() {
        assert_eq!(PASS_BIT & PASS_COUNT_MASK, 0);
        assert_eq!(USER_BIT & PASS_COUNT_MASK, 0);
        assert_eq!(PASS_BIT & USER_BIT, 0);
    }
}
