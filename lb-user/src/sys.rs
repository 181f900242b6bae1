//! Thin, checked wrappers over the socket syscalls the data path needs and std does
//! not offer (cookies, TCP_INFO byte counters, queue sizes, lingering resets).
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn getsockopt<T: Copy>(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    let mut v = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    cvt(unsafe { libc::getsockopt(fd, level, name, v.as_mut_ptr().cast(), &mut len) })?;
    Ok(unsafe { v.assume_init() })
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The kernel's socket cookie: the key of the socket maps.
pub fn cookie(s: &impl AsRawFd) -> io::Result<u64> {
    getsockopt::<u64>(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_COOKIE)
}

/// The prefix of `struct tcp_info` (linux/tcp.h) up to the counters we read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct TcpInfoRaw {
    u8s: [u8; 8],
    u32s: [u32; 24],
    pacing_rate: u64,
    max_pacing_rate: u64,
    bytes_acked: u64,
    bytes_received: u64,
    segs_out: u32,
    segs_in: u32,
    notsent_bytes: u32,
    min_rtt: u32,
}
const _: () = assert!(size_of::<TcpInfoRaw>() == 152);

/// Byte counters of one TCP socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    pub state: u8,
    /// Bytes the far end acknowledged (RFC 4898 HCThruOctetsAcked).
    pub bytes_acked: u64,
    /// Bytes received from the far end (HCThruOctetsReceived).
    pub bytes_received: u64,
}

pub fn tcp_counters(s: &impl AsRawFd) -> io::Result<TcpCounters> {
    let raw: TcpInfoRaw = getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO)?;
    Ok(TcpCounters {
        state: raw.u8s[0],
        bytes_acked: raw.bytes_acked,
        bytes_received: raw.bytes_received,
    })
}

/// Bytes in the send queue not yet acknowledged (SIOCOUTQ).
pub fn outq(s: &impl AsRawFd) -> io::Result<u64> {
    let mut v: libc::c_int = 0;
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut v) })?;
    Ok(v.max(0) as u64)
}

/// Bytes sent that the far end may still acknowledge: [`outq`], but 0 once
/// the socket is closed (reset by the far end). SIOCOUTQ is
/// `write_seq - snd_una`, which a reset leaves as it was although the send
/// queue was purged and nothing will ever be acknowledged: waiting for it to
/// reach 0 would wait forever.
pub fn unacked(s: &impl AsRawFd) -> io::Result<u64> {
    if tcp_counters(s)?.state == TCP_CLOSE {
        return Ok(0);
    }
    outq(s)
}

/// `tcpi_state` of a closed socket (include/net/tcp_states.h).
pub const TCP_CLOSE: u8 = 7;

/// Bytes waiting to be read (FIONREAD).
pub fn inq(s: &impl AsRawFd) -> io::Result<u64> {
    let mut v: libc::c_int = 0;
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut v) })?;
    Ok(v.max(0) as u64)
}

/// Makes the next close() send an RST instead of a FIN.
pub fn set_linger_reset(s: &impl AsRawFd) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &l)
}

/// `SO_SNDBUFFORCE`: a send buffer past `net.core.wmem_max` (lb runs with
/// CAP_NET_ADMIN); the kernel doubles `bytes` for its bookkeeping, as with
/// `SO_SNDBUF`, and stops autotuning the socket's buffer.
pub fn force_sndbuf(s: &impl AsRawFd, bytes: u32) -> io::Result<()> {
    let v = bytes.min(i32::MAX as u32) as libc::c_int;
    setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &v)
}

/// `SO_RCVBUFFORCE`: caps the receive buffer (the kernel doubles `bytes`) and
/// stops autotuning it until [`unlock_rcvbuf`]. Bytes already queued stay;
/// the advertised window closes as the queue reaches the cap.
pub fn force_rcvbuf(s: &impl AsRawFd, bytes: u32) -> io::Result<()> {
    let v = bytes.min(i32::MAX as u32) as libc::c_int;
    setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &v)
}

/// Lets the kernel autotune the receive buffer again after
/// [`force_rcvbuf`] (`SO_BUF_LOCK`, Linux 5.14), keeping a send-buffer lock.
pub fn unlock_rcvbuf(s: &impl AsRawFd) -> io::Result<()> {
    const SOCK_RCVBUF_LOCK: libc::c_int = 2;
    let locks: libc::c_int = getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BUF_LOCK)?;
    setsockopt(
        s.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_BUF_LOCK,
        &(locks & !SOCK_RCVBUF_LOCK),
    )
}

/// Back to an ordinary close (FIN, then TIME_WAIT) after [`set_linger_reset`].
pub fn clear_linger(s: &impl AsRawFd) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 0,
        l_linger: 0,
    };
    setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &l)
}

/// Re-evaluates the receive queue against the low watermark: with a psock attached
/// this runs the stream verdict over bytes that arrived before insertion.
pub fn kick_rcvlowat(s: &impl AsRawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, &one)
}

/// Pending socket error (SO_ERROR), e.g. ECONNRESET after an RST.
pub fn take_error(s: &impl AsRawFd) -> io::Result<i32> {
    getsockopt::<libc::c_int>(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR)
}

pub fn shutdown_write(s: &impl AsRawFd) -> io::Result<()> {
    cvt(unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) }).map(drop)
}

/// SO_KEEPALIVE with the probes' timing where given (`option clitcpka`,
/// `srvtcpka`); what is not given keeps the kernel's default.
pub fn set_keepalive(
    s: &impl std::os::fd::AsFd,
    ka: &crate::config::TcpKeepalive,
) -> io::Result<()> {
    let mut k = socket2::TcpKeepalive::new();
    if let Some(t) = ka.idle_s {
        k = k.with_time(std::time::Duration::from_secs(t.into()));
    }
    if let Some(t) = ka.intvl_s {
        k = k.with_interval(std::time::Duration::from_secs(t.into()));
    }
    if let Some(n) = ka.cnt {
        k = k.with_retries(n);
    }
    socket2::SockRef::from(s).set_tcp_keepalive(&k)
}

/// Nonblocking recv; Ok(None) on EAGAIN.
pub fn recv(s: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    recv_flags(s, buf, libc::MSG_DONTWAIT)
}

fn recv_flags(s: &impl AsRawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<Option<usize>> {
    let r = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as usize))
}

/// Nonblocking `recv(MSG_PEEK)`: the bytes stay queued. Ok(None) on EAGAIN,
/// Ok(Some(0)) at end of stream with nothing queued.
pub fn peek(s: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    recv_flags(s, buf, libc::MSG_DONTWAIT | libc::MSG_PEEK)
}

/// `tcpi_state` of a socket that received the peer's FIN and has not
/// closed (include/net/tcp_states.h).
pub const TCP_CLOSE_WAIT: u8 = 8;

/// Nonblocking send without SIGPIPE; Ok(None) on EAGAIN.
pub fn send(s: &impl AsRawFd, buf: &[u8]) -> io::Result<Option<usize>> {
    let r = unsafe {
        libc::send(
            s.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as usize))
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The soft open-files limit.
pub fn nofile_limit() -> io::Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    Ok(rl.rlim_cur)
}

/// Raises the soft open-files limit to the hard limit; returns the new limit.
pub fn raise_nofile() -> io::Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    rl.rlim_cur = rl.rlim_max;
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) })?;
    Ok(rl.rlim_cur)
}

/// Minimal epoll wrapper for the splice manager.
pub struct Epoll {
    fd: std::os::fd::OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self {
            fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout_ms`; EINTR is an empty wake-up.
    pub fn wait(&self, out: &mut Vec<libc::epoll_event>, timeout_ms: i32) -> io::Result<()> {
        out.clear();
        let cap = out.capacity().max(1);
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                out.as_mut_ptr(),
                cap as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        unsafe { out.set_len(n as usize) };
        Ok(())
    }
}

/// An eventfd used to wake the splice manager from other threads.
pub struct EventFd {
    fd: std::os::fd::OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<Self> {
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        Ok(Self {
            fd: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        })
    }

    pub fn notify(&self) {
        let one: u64 = 1;
        // A full counter still wakes the reader; nothing to do on error.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub fn drain(&self) {
        let mut v: u64 = 0;
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The kernel driver behind network interface `iface` (ethtool's
/// ETHTOOL_GDRVINFO: "veth", "mlx5_core", ...).
pub fn driver_name(iface: &str) -> io::Result<String> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 32 * 4 + 12 + 5 * 4],
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut DrvInfo,
        _pad: [u8; 16],
    }
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name '{iface}'"),
        ));
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 32 * 4 + 12 + 5 * 4],
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut info,
        _pad: [0; 16],
    };
    req.name[..iface.len()].copy_from_slice(iface.as_bytes());
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is ours; the request and the buffer it points to outlive the call.
    let r = cvt(unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req) });
    unsafe { libc::close(fd) };
    r?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Switches the whole process (glibc applies set*id calls to every thread)
/// to `gid` (supplementary groups dropped, or those of `user` when named)
/// and `uid`. Leaving root this way clears every capability: lb keeps none.
pub fn switch_ids(uid: Option<u32>, user: Option<&str>, gid: Option<u32>) -> io::Result<()> {
    if let Some(g) = gid {
        cvt(unsafe { libc::setgroups(0, std::ptr::null()) })?;
        cvt(unsafe { libc::setresgid(g, g, g) })?;
    }
    if let Some(u) = uid {
        if let Some(name) = user {
            let c = std::ffi::CString::new(name).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the user name")
            })?;
            let g = gid.unwrap_or_else(|| unsafe { libc::getgid() });
            cvt(unsafe { libc::initgroups(c.as_ptr(), g) })?;
        }
        cvt(unsafe { libc::setresuid(u, u, u) })?;
    }
    Ok(())
}

/// What every thread of this process runs as: (real, effective, saved uid;
/// the same of gid; effective capabilities), or the first thread that
/// differs from the others.
pub fn thread_credentials() -> io::Result<String> {
    let mut seen: Option<String> = None;
    for t in std::fs::read_dir("/proc/self/task")? {
        let t = t?;
        let status = match std::fs::read_to_string(t.path().join("status")) {
            Ok(s) => s,
            // A thread that ended meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().take(3).collect::<Vec<_>>().join("/"))
                .unwrap_or_default()
        };
        let creds = format!(
            "uid {} gid {} caps {}",
            field("Uid:"),
            field("Gid:"),
            field("CapEff:")
        );
        match &seen {
            None => seen = Some(creds),
            Some(s) if *s != creds => {
                return Err(io::Error::other(format!(
                    "thread {} runs as {creds}, another as {s}",
                    t.file_name().to_string_lossy()
                )))
            }
            Some(_) => {}
        }
    }
    seen.ok_or_else(|| io::Error::other("no threads in /proc/self/task"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn driver_name_refuses_bad_names() {
        assert!(driver_name("").is_err());
        assert!(driver_name("a-name-longer-than-15").is_err());
        assert!(driver_name("no-such-if-lb").is_err());
    }

    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn counters_follow_traffic() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_ne!(cookie(&c).unwrap(), cookie(&s).unwrap());
        c.write_all(&[7u8; 1000]).unwrap();
        let mut buf = [0u8; 1000];
        s.read_exact(&mut buf).unwrap();
        let sc = tcp_counters(&s).unwrap();
        assert_eq!(sc.bytes_received, 1000);
        // The ACK may lag a little; bounded wait.
        for _ in 0..100 {
            if tcp_counters(&c).unwrap().bytes_acked >= 1000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(tcp_counters(&c).unwrap().bytes_acked >= 1000);
        assert_eq!(inq(&s).unwrap(), 0);
    }
}
