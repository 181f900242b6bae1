//! A minimal userspace TCP endpoint (IPv4) over an AF_PACKET socket, to put
//! on the wire what no real stack sends on demand: segments that carry again
//! bytes the receiver already has (`seq < rcv_nxt < end_seq`, with the right
//! old bytes in the overlap), in order or ahead of the segment they overlap.
//! `sch_netem` is not available here, and a retransmission that re-packs
//! data differently is exactly what a lossy path makes a real sender do.
//!
//! The endpoint uses an IPv4 address that is configured on NO interface of
//! its namespace: that namespace's own stack then neither answers the
//! balancer's segments nor resets them (with `ip_forward` 0, the default in
//! a fresh namespace, a frame for a foreign address is dropped silently).
//! The balancer's side gets a static neighbour entry for that address
//! ([`add_neighbour`]) on the veth it shares with this namespace, whose
//! connected route already covers the address.
//!
//! Sender: the stream is cut into segments of `seg` new bytes; every
//! `every`-th segment starts `overlap` bytes before its first new byte.
//! The peer's window is respected (no window scaling is negotiated, so the
//! window field is bytes); on a timeout without progress it goes back to the
//! last acknowledged byte (bounded by the caller's deadline); then a FIN,
//! and the peer's FIN is acknowledged. Whatever the peer sends is
//! acknowledged in order and counted (out-of-order data is dropped and
//! re-acknowledged; SACK is offered so that the receiver's D-SACK counters
//! show the overlaps).

use crate::netns::Netns;
use crate::packet::{Frame, Ip, Parsed, L4};
use crate::traffic::pattern_fill;
use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ETH_P_IP: u16 = 0x0800;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
/// What this endpoint tells the balancer it can take per segment.
const OUR_MSS: u16 = 1460;
/// Our receive window: we consume at once, so always the unscaled maximum.
const OUR_WINDOW: u16 = 65535;
/// Go back to the last acknowledged byte after this long without progress.
const RTO: Duration = Duration::from_millis(200);
/// Frames from the balancer can be GSO super-frames (veth keeps them whole).
const RX_BUF: usize = 70 * 1024;

/// The MAC address of `dev` in `ns` (`ip -j link show`).
pub fn mac_of(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&["-j", "link", "show", "dev", dev])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("ip -j link show")?;
    let s = v[0]["address"]
        .as_str()
        .with_context(|| format!("no address for {dev} in {}", ns.name()))?;
    parse_mac(s)
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("bad MAC {s}");
    }
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC {s}"))?;
    }
    Ok(m)
}

pub fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Let `ns` reach `addr` (a raw endpoint's unconfigured address) on `dev`
/// without ARP: nobody would answer ARP for it.
pub fn add_neighbour(ns: &Netns, addr: Ipv4Addr, mac: &[u8; 6], dev: &str) -> Result<()> {
    ns.ip(&[
        "neigh",
        "replace",
        &addr.to_string(),
        "lladdr",
        &fmt_mac(mac),
        "dev",
        dev,
        "nud",
        "permanent",
    ])?;
    Ok(())
}

/// An AF_PACKET socket bound to one interface, IPv4 frames only. Open it on
/// a thread inside the interface's namespace.
pub struct RawLink {
    fd: OwnedFd,
}

impl RawLink {
    pub fn open(dev: &str) -> Result<RawLink> {
        let proto = ETH_P_IP.to_be();
        // SAFETY: plain socket syscalls on a fresh fd that we own.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto as libc::c_int,
            );
            if fd < 0 {
                bail!("socket(AF_PACKET): {}", std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let name = CString::new(dev)?;
            let ifindex = libc::if_nametoindex(name.as_ptr());
            if ifindex == 0 {
                bail!("no interface {dev}: {}", std::io::Error::last_os_error());
            }
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            if libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) != 0
            {
                bail!("bind AF_PACKET {dev}: {}", std::io::Error::last_os_error());
            }
            // A burst of the balancer's ACKs must not overflow the queue while
            // we are busy sending: drops only cost retransmissions, but slow
            // the run down.
            let sz: libc::c_int = 8 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &sz as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            Ok(RawLink { fd })
        }
    }

    fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: valid fd and buffer; a bound packet socket sends on its
        // interface without an address.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            // The veth peer's backlog was full: a lost frame, which the
            // retransmission timer repairs like any loss.
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                return Ok(());
            }
            bail!("send on packet socket: {e}");
        }
        Ok(())
    }

    /// One incoming frame (not one that this host sends), or None after
    /// `timeout`.
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                bail!("poll: {e}");
            }
            if r == 0 {
                return Ok(None);
            }
            // SAFETY: valid fd, buffer and address storage.
            let (n, sll) = unsafe {
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                let mut sl = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut sll as *mut _ as *mut libc::sockaddr,
                    &mut sl,
                );
                (n, sll)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                bail!("recvfrom on packet socket: {e}");
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }
}

/// How the sender cuts the stream.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Stream length in bytes.
    pub len: u64,
    /// New bytes per segment.
    pub seg: u32,
    /// Every `every`-th segment overlaps (0: none does).
    pub every: u32,
    /// How many already-sent bytes an overlapping segment repeats.
    pub overlap: u32,
    /// Send each overlapping segment before the one it overlaps, so that it
    /// waits in the receiver's out-of-order queue.
    pub ahead: bool,
    /// Seed of the byte pattern (`traffic::pattern_fill`).
    pub seed: u64,
}

impl Plan {
    fn check(&self) -> Result<()> {
        if self.seg == 0 || self.seg as u64 + self.overlap as u64 > OUR_MSS as u64 {
            bail!(
                "segment {} + overlap {} must fit one MSS",
                self.seg,
                self.overlap
            );
        }
        if self.every == 1 || self.overlap >= self.seg {
            bail!("every must be 0 or >= 2 and overlap < seg");
        }
        Ok(())
    }

    /// Segments as stream byte ranges, in sending order.
    pub fn schedule(&self) -> Vec<(u64, u64)> {
        let seg = self.seg as u64;
        let n = self.len.div_ceil(seg);
        let mut v: Vec<(u64, u64)> = (0..n)
            .map(|j| {
                let first_new = j * seg;
                let end = (first_new + seg).min(self.len);
                let start = if self.overlaps(j) {
                    first_new.saturating_sub(self.overlap as u64)
                } else {
                    first_new
                };
                (start, end)
            })
            .collect();
        if self.ahead {
            for j in 1..v.len() {
                if self.overlaps(j as u64) {
                    v.swap(j - 1, j);
                }
            }
        }
        v
    }

    fn overlaps(&self, j: u64) -> bool {
        self.every >= 2 && self.overlap > 0 && j > 0 && (j + 1).is_multiple_of(self.every as u64)
    }

    /// How many segments of one pass repeat old bytes, and how many bytes.
    pub fn overlapping(&self) -> (u64, u64) {
        let n = self.len.div_ceil(self.seg as u64);
        let k = (0..n).filter(|&j| self.overlaps(j)).count() as u64;
        (k, k * self.overlap as u64)
    }
}

/// What one raw connection did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub segments: u64,
    pub overlapping: u64,
    /// Go-back-to-last-ACK rounds.
    pub retransmits: u64,
    /// Zero-window probes.
    pub probes: u64,
    /// In-order bytes the balancer sent us.
    pub received: u64,
    /// From the handshake to the last data byte acknowledged.
    pub data_acked_in: Duration,
    /// Time spent unable to send the next segment for want of window.
    pub window_blocked: Duration,
    pub fin_acked: bool,
    pub peer_fin: bool,
    pub reset: bool,
    pub elapsed: Duration,
}

struct Seg {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: u8,
    wnd: u16,
    payload_len: u32,
}

fn parse(frame: &[u8]) -> Option<Seg> {
    // The checksums are not checked: frames the host sends may still carry
    // a partial one (checksum offload) when a packet socket sees them.
    let p = Parsed::parse(frame).ok()?;
    let (Some(Ip::V4(ip)), Some(L4::Tcp(tcp))) = (p.ip, p.l4) else {
        return None;
    };
    Some(Seg {
        src: SocketAddrV4::new(ip.src, tcp.sport),
        dst: SocketAddrV4::new(ip.dst, tcp.dport),
        seq: tcp.seq,
        ack: tcp.ack,
        flags: tcp.flags,
        wnd: tcp.window,
        payload_len: tcp.payload.len() as u32,
    })
}

/// The MSS and SACK-permitted options (no window scaling, no timestamps).
const SYN_OPTS: [u8; 8] = [
    2,
    4,
    (OUR_MSS >> 8) as u8,
    (OUR_MSS & 0xff) as u8,
    1,
    1,
    4,
    2,
];

struct Tcb {
    link: RawLink,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// Sequence number of stream byte 0.
    base: u32,
    rcv_nxt: u32,
    ip_id: u16,
    rx: Vec<u8>,
}

impl Tcb {
    fn new(link: RawLink, src_mac: [u8; 6], dst_mac: [u8; 6], local: SocketAddrV4) -> Tcb {
        Tcb {
            link,
            src_mac,
            dst_mac,
            local,
            remote: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            base: initial_seq(),
            rcv_nxt: 0,
            ip_id: 1,
            rx: vec![0; RX_BUF],
        }
    }

    /// Build and send one segment.
    fn emit(&mut self, seq: u32, flags: u8, opts: &[u8], payload: &[u8]) -> Result<()> {
        let ack = if flags & ACK != 0 { self.rcv_nxt } else { 0 };
        let frame = Frame::tcp4(*self.local.ip(), *self.remote.ip())
            .src_mac(self.src_mac)
            .dst_mac(self.dst_mac)
            .ip_id(self.ip_id)
            // Don't fragment, as Linux sends TCP.
            .frag_off(0x4000)
            .sport(self.local.port())
            .dport(self.remote.port())
            .seq(seq)
            .ack(ack)
            .flags(flags)
            .window(OUR_WINDOW)
            .tcp_options(opts)
            .payload(payload)
            .build();
        self.ip_id = self.ip_id.wrapping_add(1);
        self.link.send(&frame)
    }

    /// The next segment addressed to us (from `remote` once it is known).
    fn next(&mut self, timeout: Duration) -> Result<Option<Seg>> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(n) = self.link.recv(&mut self.rx, left)? else {
                return Ok(None);
            };
            let Some(s) = parse(&self.rx[..n]) else {
                continue;
            };
            if s.dst != self.local {
                continue;
            }
            if self.remote.port() != 0 && s.src != self.remote {
                continue;
            }
            return Ok(Some(s));
        }
    }
}

fn initial_seq() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // Near the wrap on purpose now and then: sequence arithmetic must wrap.
    (t ^ (t >> 29)) as u32
}

/// Server role: wait for one SYN to `local`, answer it, send the plan's
/// stream, close, and acknowledge the peer's FIN. `peer_mac`: the MAC the
/// balancer's frames come from (its interface on this link).
pub fn serve(
    link: RawLink,
    our_mac: [u8; 6],
    peer_mac: [u8; 6],
    local: SocketAddrV4,
    plan: Plan,
    deadline: Duration,
) -> Result<Report> {
    plan.check()?;
    let t0 = Instant::now();
    let end = t0 + deadline;
    let mut t = Tcb::new(link, our_mac, peer_mac, local);
    let syn = loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("raw server {local}: no SYN within {deadline:?}");
        }
        if let Some(s) = t.next(left)? {
            if s.flags & SYN != 0 && s.flags & ACK == 0 {
                break s;
            }
        }
    };
    t.remote = syn.src;
    t.rcv_nxt = syn.seq.wrapping_add(1);
    let iss = t.base.wrapping_sub(1);
    let mut wnd;
    'handshake: loop {
        t.emit(iss, SYN | ACK, &SYN_OPTS, &[])?;
        let sent = Instant::now();
        while sent.elapsed() < RTO {
            if Instant::now() > end {
                bail!("raw server {local}: handshake with {} timed out", t.remote);
            }
            let Some(s) = t.next(RTO)? else { continue };
            if s.flags & RST != 0 {
                bail!("raw server {local}: reset during the handshake");
            }
            if s.flags & SYN != 0 {
                // Our SYN-ACK was lost: answer again.
                continue 'handshake;
            }
            if s.flags & ACK != 0 && s.ack == t.base {
                wnd = s.wnd;
                break 'handshake;
            }
        }
    }
    let mut r = Report::default();
    run(&mut t, plan, &mut wnd, end, &mut r)?;
    r.elapsed = t0.elapsed();
    Ok(r)
}

/// Client role: connect from `local` (unconfigured in this namespace) to
/// `remote` through `peer_mac`, send the plan's stream, close, and
/// acknowledge the peer's FIN.
pub fn connect_send(
    link: RawLink,
    our_mac: [u8; 6],
    peer_mac: [u8; 6],
    local: SocketAddrV4,
    remote: SocketAddrV4,
    plan: Plan,
    deadline: Duration,
) -> Result<Report> {
    plan.check()?;
    let t0 = Instant::now();
    let end = t0 + deadline;
    let mut t = Tcb::new(link, our_mac, peer_mac, local);
    t.remote = remote;
    let iss = t.base.wrapping_sub(1);
    let mut wnd;
    'handshake: loop {
        if Instant::now() > end {
            bail!("raw client {local}: no SYN-ACK from {remote} within {deadline:?}");
        }
        t.emit(iss, SYN, &SYN_OPTS, &[])?;
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_millis(500) {
            let Some(s) = t.next(Duration::from_millis(100))? else {
                continue;
            };
            if s.flags & RST != 0 {
                bail!("raw client {local}: {remote} refused the connection");
            }
            if s.flags & (SYN | ACK) == SYN | ACK && s.ack == t.base {
                t.rcv_nxt = s.seq.wrapping_add(1);
                wnd = s.wnd;
                break 'handshake;
            }
        }
    }
    t.emit(t.base, ACK, &[], &[])?;
    let mut r = Report::default();
    run(&mut t, plan, &mut wnd, end, &mut r)?;
    r.elapsed = t0.elapsed();
    Ok(r)
}

/// The established part: send the stream with its overlaps, FIN, wait for
/// the FIN to be acknowledged and for the peer's FIN.
fn run(t: &mut Tcb, plan: Plan, wnd: &mut u16, end: Instant, r: &mut Report) -> Result<()> {
    let sched = plan.schedule();
    let len = plan.len;
    let mut payload = vec![0u8; (plan.seg + plan.overlap) as usize];
    // Stream offset acknowledged so far.
    let mut una = 0u64;
    let mut next = 0usize;
    // Highest stream offset sent: where our pure ACKs sit.
    let mut snd_max = 0u64;
    let mut fin_sent = false;
    let mut last_progress = Instant::now();
    let started = Instant::now();
    let mut blocked_since: Option<Instant> = None;
    loop {
        if r.fin_acked && r.peer_fin {
            break;
        }
        if Instant::now() > end {
            bail!(
                "raw endpoint {} <-> {}: deadline; {una} of {len} bytes acknowledged, \
                 window {wnd}, FIN sent {fin_sent} acked {}, peer FIN {}, {:?}",
                t.local,
                t.remote,
                r.fin_acked,
                r.peer_fin,
                r
            );
        }
        while next < sched.len() {
            let (s, e) = sched[next];
            if e <= una {
                next += 1;
                continue;
            }
            if e > una + *wnd as u64 {
                blocked_since.get_or_insert_with(Instant::now);
                break;
            }
            if let Some(b) = blocked_since.take() {
                r.window_blocked += b.elapsed();
            }
            let p = &mut payload[..(e - s) as usize];
            pattern_fill(plan.seed, s, p);
            let seq = t.base.wrapping_add(s as u32);
            t.emit(seq, ACK | PSH, &[], p)?;
            r.segments += 1;
            snd_max = snd_max.max(e);
            if !s.is_multiple_of(plan.seg as u64) {
                r.overlapping += 1;
            }
            next += 1;
        }
        if next == sched.len() && una == len && !fin_sent {
            t.emit(t.base.wrapping_add(len as u32), FIN | ACK, &[], &[])?;
            fin_sent = true;
            last_progress = Instant::now();
        }
        let wait = RTO.saturating_sub(last_progress.elapsed());
        let Some(s) = t.next(wait.max(Duration::from_millis(1)))? else {
            if last_progress.elapsed() < RTO {
                continue;
            }
            last_progress = Instant::now();
            if una < len {
                next = sched.iter().position(|&(_, e)| e > una).unwrap_or(0);
                if sched[next].1 > una + *wnd as u64 {
                    // The window cannot take the next segment and no ACK
                    // will come by itself: a zero-length segment below the
                    // window makes the receiver answer with its current one.
                    t.emit(
                        t.base.wrapping_add(una as u32).wrapping_sub(1),
                        ACK,
                        &[],
                        &[],
                    )?;
                    r.probes += 1;
                } else {
                    r.retransmits += 1;
                }
            } else if fin_sent && !r.fin_acked {
                t.emit(t.base.wrapping_add(len as u32), FIN | ACK, &[], &[])?;
                r.retransmits += 1;
            }
            continue;
        };
        if s.flags & RST != 0 {
            r.reset = true;
            bail!(
                "raw endpoint {} <-> {}: reset by the peer after {una} of {len} bytes \
                 acknowledged; {:?}",
                t.local,
                t.remote,
                r
            );
        }
        if s.flags & ACK != 0 {
            let acked = s.ack.wrapping_sub(t.base) as u64;
            if acked <= len + 1 {
                if acked.min(len) > una {
                    una = acked.min(len);
                    last_progress = Instant::now();
                    if una == len {
                        r.data_acked_in = started.elapsed();
                    }
                }
                if acked == len + 1 && fin_sent && !r.fin_acked {
                    r.fin_acked = true;
                    last_progress = Instant::now();
                }
                *wnd = s.wnd;
            }
        }
        let seg_len = s.payload_len + (s.flags & FIN != 0) as u32;
        if seg_len > 0 {
            if s.seq == t.rcv_nxt {
                t.rcv_nxt = t.rcv_nxt.wrapping_add(seg_len);
                r.received += s.payload_len as u64;
                if s.flags & FIN != 0 {
                    r.peer_fin = true;
                }
            }
            // In order or not: tell the peer where we are.
            let seq = t.base.wrapping_add(snd_max as u32 + fin_sent as u32);
            t.emit(seq, ACK, &[], &[])?;
        }
    }
    // Linger a little: our last ACK may be lost and the peer's FIN come again.
    let fin_seq = t.base.wrapping_add(len as u32 + 1);
    let linger = Instant::now() + Duration::from_millis(300);
    while let Some(s) = t.next(linger.saturating_duration_since(Instant::now()))? {
        if s.flags & FIN != 0 {
            t.emit(fin_seq, ACK, &[], &[])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_overlaps_every_fifth() {
        let p = Plan {
            len: 10_500,
            seg: 1000,
            every: 5,
            overlap: 300,
            ahead: false,
            seed: 1,
        };
        let s = p.schedule();
        assert_eq!(s.len(), 11);
        assert_eq!(s[3], (3000, 4000));
        assert_eq!(s[4], (3700, 5000));
        assert_eq!(s[9], (8700, 10_000));
        assert_eq!(s[10], (10_000, 10_500));
        assert_eq!(p.overlapping(), (2, 600));
        let a = Plan { ahead: true, ..p }.schedule();
        assert_eq!(a[3], (3700, 5000));
        assert_eq!(a[4], (3000, 4000));
    }
}
