//! Destroying sockets by cookie with `sock_diag` (`SOCK_DESTROY`, the
//! mechanism behind `ss -K`; the kernel needs `CONFIG_INET_DIAG_DESTROY`):
//! `shutdown sessions` for the sockets `data-path connect` connected
//! straight to a server. The socket's owner sees `ECONNABORTED`, the server
//! a reset. Only this network namespace's sockets are seen.
use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// nlmsghdr (16) + inet_diag_req_v2 (56).
const REQ_LEN: usize = 16 + 56;
/// Offset of `inet_diag_msg.id` in a reply's payload, and the id's length.
const ID_OFF: usize = 4;
const ID_LEN: usize = 48;

fn netlink() -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A request: every TCP socket of `family` in every state, or (with `id`)
/// exactly that one.
fn request(kind: u16, flags: u16, family: u8, id: Option<&[u8]>) -> [u8; REQ_LEN] {
    let mut b = [0u8; REQ_LEN];
    b[0..4].copy_from_slice(&(REQ_LEN as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&kind.to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&1u32.to_ne_bytes());
    b[16] = family;
    b[17] = libc::IPPROTO_TCP as u8;
    b[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    if let Some(id) = id {
        b[24..24 + ID_LEN].copy_from_slice(id);
    }
    b
}

fn send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    let r = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The ids (`inet_diag_sockid`, as the kernel gave them) and cookies of the
/// TCP sockets of `family` that `keep` accepts (by cookie).
fn find(family: u8, keep: &dyn Fn(u64) -> bool) -> io::Result<Vec<([u8; ID_LEN], u64)>> {
    let fd = netlink()?;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    send(&fd, &request(SOCK_DIAG_BY_FAMILY, flags, family, None))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    // Bounded: a dump ends with NLMSG_DONE; a namespace has finitely many
    // sockets, and each read returns at least one message.
    for _ in 0..1_000_000 {
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut off = 0usize;
        let n = n as usize;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
            let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if len < 16 || off + len > n {
                return Ok(out);
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code =
                        i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or([0; 4]));
                    return Err(io::Error::from_raw_os_error(-code));
                }
                SOCK_DIAG_BY_FAMILY if len >= 16 + ID_OFF + ID_LEN => {
                    let p = off + 16;
                    let id: [u8; ID_LEN] = buf[p + ID_OFF..p + ID_OFF + ID_LEN]
                        .try_into()
                        .unwrap_or([0; ID_LEN]);
                    let cookie = u32::from_ne_bytes(id[40..44].try_into().unwrap_or([0; 4])) as u64
                        | (u32::from_ne_bytes(id[44..48].try_into().unwrap_or([0; 4])) as u64)
                            << 32;
                    if keep(cookie) {
                        out.push((id, cookie));
                    }
                }
                _ => {}
            }
            off += (len + 3) & !3;
        }
    }
    Ok(out)
}

/// Destroys the TCP sockets (IPv4 and IPv6) whose cookies are given.
/// Returns how many were destroyed.
pub fn destroy(cookies: &HashSet<u64>) -> io::Result<usize> {
    if cookies.is_empty() {
        return Ok(0);
    }
    let mut done = 0;
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        for (id, _) in find(family, &|c| cookies.contains(&c))? {
            let fd = netlink()?;
            let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
            send(&fd, &request(SOCK_DESTROY, flags, family, Some(&id)))?;
            let mut ack = [0u8; 64];
            let n = unsafe { libc::recv(fd.as_raw_fd(), ack.as_mut_ptr().cast(), ack.len(), 0) };
            if n >= 20 {
                let code = i32::from_ne_bytes(ack[16..20].try_into().unwrap_or([0; 4]));
                match code {
                    0 => done += 1,
                    // Closed meanwhile.
                    c if -c == libc::ENOENT => {}
                    c => return Err(io::Error::from_raw_os_error(-c)),
                }
            }
        }
    }
    Ok(done)
}

/// The cookies of every TCP socket of this namespace (both families): a
/// table of sockets can be checked against it for entries whose socket is
/// gone without its close being seen.
pub fn cookies() -> io::Result<HashSet<u64>> {
    let mut all = HashSet::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        all.extend(find(family, &|_| true)?.into_iter().map(|(_, c)| c));
    }
    Ok(all)
}
