//! The kernel NAT path (`data-path nat`): map types shared by `lb_nat` and the
//! daemon, and the pure decisions `lb_nat` takes (hashes, port choice, flow
//! ends) so that plain `cargo test` covers them.

/// Backends the NAT path can balance over (each has a pick table).
pub const MAX_NAT_BACKENDS: u32 = 64;
/// Slots of one backend's pick table: a prime, as Maglev wants, large enough
/// that weights up to 256 over a few dozen servers keep their ratios.
pub const NAT_PICK_SLOTS: u32 = 4093;
/// Servers a leastconn/first backend scans on a SYN (the rest are ignored,
/// `lb check` refuses more).
pub const NAT_SCAN_SERVERS: u32 = 64;
/// Tries to find a free balancer port for a new flow before giving up.
pub const NAT_PORT_TRIES: u32 = 16;
/// Table slots probed past an unusable (DOWN since the table was built, full)
/// server before the SYN is refused.
pub const NAT_PICK_PROBES: u32 = 8;
/// Default size of the flow table (two entries per flow) when no `maxconn`
/// says otherwise.
pub const NAT_DEFAULT_FLOWS: u32 = 262_144;

/// How a backend's server is chosen on a SYN ([`NatBackend::algo`]).
pub const NAT_ALGO_RR: u32 = 0;
/// A uniformly random slot of the table.
pub const NAT_ALGO_RANDOM: u32 = 1;
/// The slot the client address hashes to (`balance source`, Maglev table
/// when `hash-type consistent`).
pub const NAT_ALGO_SOURCE: u32 = 2;
/// The server with the fewest flows per unit of weight.
pub const NAT_ALGO_LEAST: u32 = 3;
/// The first server (in `id` order) below its maxconn.
pub const NAT_ALGO_FIRST: u32 = 4;

/// [`NatFlow::dir`]: the key is the client's packet (client -> frontend).
pub const NAT_DIR_CLIENT: u32 = 0;
/// The key is the server's reply (server -> balancer port).
pub const NAT_DIR_SERVER: u32 = 1;

/// [`NatFlow::flags`]: a FIN went this way.
pub const NAT_F_FIN: u32 = 1;
/// A RST went this way.
pub const NAT_F_RST: u32 = 2;
/// The flow ended and its server connection was counted out (set once, on
/// the client-side entry, by whoever ends it first).
pub const NAT_F_ENDED: u32 = 4;
/// The server answered (a packet came back).
pub const NAT_F_REPLIED: u32 = 8;
/// The flow ended because the runtime API reset it (`shutdown sessions`).
pub const NAT_F_KILLED: u32 = 16;
/// Both FINs acknowledged: both ends are done; set on both entries. Its
/// balancer port may be taken at once, its entries go after a short grace.
pub const NAT_F_CLOSED: u32 = 32;
/// The flow's frontend writes tcplog lines: its end goes to `LB_NAT_LOG`
/// (client-side entry, set when the flow starts).
pub const NAT_F_LOG: u32 = 64;

/// [`NatVip::flags`]: the frontend has `option tcplog`.
pub const NAT_VIP_LOG: u32 = 1;

/// Key of `LB_NAT_FLOWS`: one direction of a flow, as its packets arrive.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatKey {
    /// IPv4 addresses use the first four bytes, the rest zero.
    pub src_be: [u8; 16],
    pub dst_be: [u8; 16],
    pub sport_be: [u8; 2],
    pub dport_be: [u8; 2],
    /// `AF_INET` or `AF_INET6`.
    pub family: u32,
}
const _: () = assert!(core::mem::size_of::<NatKey>() == 40);

/// Value of `LB_NAT_FLOWS`: what the packets of this direction become, and
/// the flow's state. The two entries of a flow mirror each other: the
/// rewritten packet of one direction, reversed, is the other's key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatFlow {
    pub src_be: [u8; 16],
    pub dst_be: [u8; 16],
    pub sport_be: [u8; 2],
    pub dport_be: [u8; 2],
    /// Interface the rewritten packets leave by.
    pub ifindex: u32,
    /// Server index (LB_SRV_* maps), `u32::MAX` for a flow whose server is
    /// no longer configured.
    pub server: u32,
    pub frontend: u32,
    /// [`NAT_DIR_CLIENT`] or [`NAT_DIR_SERVER`].
    pub dir: u32,
    /// `NAT_F_*`, set with atomic OR.
    pub flags: u32,
    /// CLOCK_MONOTONIC ns: the SYN, the last packet, the end (0: running).
    pub created_ns: u64,
    pub last_ns: u64,
    pub ended_ns: u64,
    /// Packets and payload bytes of this direction.
    pub packets: u64,
    pub bytes: u64,
    /// The sequence number after this direction's last packet, and the last
    /// acknowledgment it carried (host order): where a reset must land to
    /// be accepted by the other end (`shutdown sessions`).
    pub seq_next: u32,
    pub ack: u32,
}
const _: () = assert!(core::mem::size_of::<NatFlow>() == 104);

impl NatFlow {
    /// The key of the other direction's entry.
    pub const fn peer_key(&self, family: u32) -> NatKey {
        NatKey {
            src_be: self.dst_be,
            dst_be: self.src_be,
            sport_be: self.dport_be,
            dport_be: self.sport_be,
            family,
        }
    }
}

/// The one value of `LB_NAT_SCRATCH` (per CPU): a new flow's two entries
/// and the server-side key, built off the stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatScratch {
    pub fwd: NatFlow,
    pub back: NatFlow,
    pub rkey: NatKey,
    /// leastconn/first scan: the best server so far and its load key, kept
    /// in memory so that the verifier does not track them per iteration.
    pub best: u32,
    pub full: u32,
    pub best_key: u64,
    /// The other direction's key, when a packet needs it (ends, closing,
    /// port reclaim): one at a time, built here rather than on the stack.
    pub pkey: NatKey,
    /// The packet's own key, and its destination as a frontend address.
    pub key: NatKey,
    pub vkey: crate::BindKey,
}
const _: () = assert!(core::mem::size_of::<NatScratch>() == 368);

/// A record of `LB_NAT_LOG`: one NAT flow that ended, for its tcplog line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatLog {
    pub client_be: [u8; 16],
    pub family: u32,
    pub client_port: u32,
    pub frontend: u32,
    pub server: u32,
    /// CLOCK_MONOTONIC ns of the SYN and of the end.
    pub created_ns: u64,
    pub ended_ns: u64,
    /// Payload bytes from the client and from the server.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// HAProxy's termination state: `--` (FINs), `CD` (client reset), `SD`
    /// (server reset).
    pub term: [u8; 2],
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<NatLog>() == 72);

/// Bytes of `LB_NAT_LOG`: about 29,000 records, 1.5 s of flows ending at
/// 20,000/s while the daemon's NAT thread is busy sweeping (only frontends
/// with `option tcplog` send records).
pub const NAT_LOG_BYTES: u32 = 2 << 20;

/// Value of `LB_NAT_VIPS` (keyed by [`crate::BindKey`] with an exact address:
/// the daemon expands wildcard binds to the addresses of the interfaces).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatVip {
    pub frontend: u32,
    /// Index into `LB_NAT_BACKENDS`.
    pub backend: u32,
    /// `NAT_VIP_*`.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<NatVip>() == 16);

/// Value of `LB_NAT_BACKENDS`: how `lb_nat` picks a server of this backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatBackend {
    /// `NAT_ALGO_*`.
    pub algo: u32,
    /// Slots of the pick table in use (0: no server can take a flow).
    pub slots: u32,
    /// Servers in `scan` (leastconn, first).
    pub scan_len: u32,
    pub _pad: u32,
    /// Round-robin position, advanced atomically by every SYN.
    pub rr: u64,
    /// Eligible servers for leastconn/first (first: in `id` order).
    pub scan: [u32; NAT_SCAN_SERVERS as usize],
    /// Their weights (leastconn divides by them).
    pub weights: [u32; NAT_SCAN_SERVERS as usize],
}
const _: () = assert!(core::mem::size_of::<NatBackend>() == 24 + 8 * NAT_SCAN_SERVERS as usize);

impl Default for NatBackend {
    fn default() -> Self {
        Self {
            algo: 0,
            slots: 0,
            scan_len: 0,
            _pad: 0,
            rr: 0,
            scan: [0; NAT_SCAN_SERVERS as usize],
            weights: [0; NAT_SCAN_SERVERS as usize],
        }
    }
}

/// Value of `LB_NAT_SERVERS`: where a server is and how to reach it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatServer {
    pub addr_be: [u8; 16],
    /// The balancer's own address on the route to the server: the source the
    /// server sees.
    pub src_be: [u8; 16],
    pub port_be: [u8; 2],
    pub _pad: [u8; 2],
    pub family: u32,
    /// Interface of the route to the server.
    pub ifindex: u32,
    /// Balancer ports handed out, `[port_lo, port_hi]` (host order).
    pub port_lo: u32,
    pub port_hi: u32,
    /// `maxconn` (0: none): a SYN beyond it is refused.
    pub maxconn: u32,
    /// 1 while the server may take new flows (UP, not drained, weight > 0).
    pub usable: u32,
    /// Ports a SYN tries before it is refused: [`nat_port_tries`].
    pub port_tries: u32,
}
const _: () = assert!(core::mem::size_of::<NatServer>() == 64);

/// How many ports of `[lo, hi]` a SYN tries: `NAT_PORT_TRIES`, or the whole
/// range once through when it is smaller.
pub const fn nat_port_tries(lo: u32, hi: u32) -> u32 {
    let n = if hi >= lo { hi - lo + 1 } else { 1 };
    if n < NAT_PORT_TRIES {
        n
    } else {
        NAT_PORT_TRIES
    }
}

/// The 32-bit hash of a client address `lb_nat` uses for `balance source`
/// (XOR of the address words, then a full avalanche): both sides compute it
/// alike, so userspace can say where a client goes.
pub const fn nat_addr_hash(addr_be: &[u8; 16]) -> u32 {
    let mut h = 0u32;
    let mut i = 0;
    while i < 16 {
        h ^= u32::from_be_bytes([addr_be[i], addr_be[i + 1], addr_be[i + 2], addr_be[i + 3]]);
        i += 4;
    }
    avalanche(h)
}

/// A 32-bit finalizer (murmur3's): every input bit flips about half the output.
pub const fn avalanche(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// The `attempt`-th candidate port of `[lo, hi]` for a flow whose tuple
/// hashes to `h`: a pseudo-random start, then consecutive ports, so a few
/// tries find a free one while the range is not nearly full.
pub const fn nat_port(lo: u32, hi: u32, h: u32, attempt: u32) -> u16 {
    // u64: a range of the whole u32 space must not wrap to 0.
    let n = if hi >= lo { (hi - lo) as u64 + 1 } else { 1 };
    (lo as u64 + (h.wrapping_add(attempt) as u64 % n)) as u16
}

/// Whether the flow has ended once this direction's flags become `mine` and
/// the other's are `peer`: a RST either way, or a FIN both ways.
pub const fn nat_flow_over(mine: u32, peer: u32) -> bool {
    (mine | peer) & NAT_F_RST != 0 || (mine & NAT_F_FIN != 0 && peer & NAT_F_FIN != 0)
}

/// Whether a pure ACK with sequence `seq` and acknowledgment `ack` closes an
/// ended flow for good: it acknowledges the other side's FIN (`ack` is the
/// sequence after it, `peer_seq_next`), and the other side had acknowledged
/// this side's FIN (its last `peer_ack` is this ACK's `seq`, the sequence
/// after this side's FIN). Both ends are then closed; the entries can go.
pub const fn nat_last_ack(seq: u32, ack: u32, peer_seq_next: u32, peer_ack: u32) -> bool {
    ack == peer_seq_next && peer_ack == seq
}

/// How long an ended flow keeps its balancer port to itself: a late FIN or
/// ACK of it still finds its rewrite; after that a new flow may take the port.
pub const NAT_PORT_REUSE_NS: u64 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_tries_stop_at_the_range() {
        assert_eq!(nat_port_tries(5000, 5000), 1);
        assert_eq!(nat_port_tries(5000, 5004), 5);
        assert_eq!(nat_port_tries(50_000, 65_535), NAT_PORT_TRIES);
        // A reversed range is one port, as nat_port treats it.
        assert_eq!(nat_port_tries(9, 1), 1);
    }

    #[test]
    fn peer_key_mirrors_the_rewrite() {
        let f = NatFlow {
            src_be: [1; 16],
            dst_be: [2; 16],
            sport_be: [0, 3],
            dport_be: [0, 4],
            ..Default::default()
        };
        let k = f.peer_key(crate::AF_INET6);
        assert_eq!((k.src_be, k.dst_be), ([2; 16], [1; 16]));
        assert_eq!((k.sport_be, k.dport_be), ([0, 4], [0, 3]));
    }

    #[test]
    fn ports_stay_in_range_and_walk_it() {
        let mut seen = [false; 11];
        for a in 0..11 {
            let p = nat_port(61000, 61010, 0xdead_beef, a);
            assert!((61000..=61010).contains(&p));
            seen[(p - 61000) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "11 attempts cover a range of 11");
        assert_eq!(nat_port(5, 5, 77, 3), 5);
        // A wrong range still yields a port inside [lo, lo].
        assert_eq!(nat_port(9, 1, 77, 3), 9);
    }

    #[test]
    fn flow_ends_on_rst_or_two_fins() {
        assert!(!nat_flow_over(NAT_F_FIN, 0));
        assert!(!nat_flow_over(0, NAT_F_FIN));
        assert!(nat_flow_over(NAT_F_FIN, NAT_F_FIN));
        assert!(nat_flow_over(NAT_F_RST, 0));
        assert!(nat_flow_over(0, NAT_F_RST));
    }

    #[test]
    fn last_ack_needs_both_fins_acknowledged() {
        // Client FIN at 100 (seq_next 101), server FIN at 500 acking it
        // (seq_next 501, ack 101); the client's ACK 501 at seq 101 closes.
        assert!(nat_last_ack(101, 501, 501, 101));
        // A duplicate ACK below the server's FIN does not.
        assert!(!nat_last_ack(101, 500, 501, 101));
        // Nor one whose own FIN the server has not acknowledged.
        assert!(!nat_last_ack(101, 501, 501, 90));
    }

    #[test]
    fn address_hash_spreads_neighbours() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut b = a;
        b[3] = 2;
        let (ha, hb) = (nat_addr_hash(&a), nat_addr_hash(&b));
        assert!((ha ^ hb).count_ones() > 8, "{ha:08x} {hb:08x}");
    }
}
