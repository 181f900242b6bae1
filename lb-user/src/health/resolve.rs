//! Servers whose address follows DNS (`server ... resolvers NAME`,
//! `server-template`): one task per backend and host name asks the section's
//! name servers every `timeout resolve`, and hands the addresses out as
//! HAProxy does: a server keeps its address while the answers hold it, the
//! others take the addresses no server of the group has (no two servers of
//! a backend get the same one), and a server left without one goes into
//! maintenance ("No IP for server") until one comes. A failed resolution
//! (NXDOMAIN, REFUSED, no answer, timeout) changes nothing until `hold
//! <status>` has passed since the last valid answer.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::config::{Config, Resolvers};
use crate::state::{Publish, State};

/// The servers of one backend that share a host name and a resolvers section.
#[derive(Clone, Debug)]
pub struct Group {
    pub backend: String,
    pub fqdn: String,
    pub prefer_v4: bool,
    /// Global server indexes, in configuration order.
    pub servers: Vec<u32>,
    pub resolvers: Resolvers,
}

/// The groups of a configuration (none without `resolvers` on servers).
pub fn groups(cfg: &Config) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut idx = 0u32;
    for b in &cfg.backends {
        for s in &b.servers {
            let this = idx;
            idx += 1;
            let (Some(r), Some(fqdn)) = (&s.params.resolvers, &s.fqdn) else {
                continue;
            };
            let Some(res) = cfg.resolvers.iter().find(|x| x.name == *r) else {
                continue;
            };
            let prefer_v4 = s.params.resolve_prefer_v4;
            match out.iter_mut().find(|g| {
                g.backend == b.name
                    && g.fqdn == *fqdn
                    && g.resolvers.name == *r
                    && g.prefer_v4 == prefer_v4
            }) {
                Some(g) => g.servers.push(this),
                None => out.push(Group {
                    backend: b.name.clone(),
                    fqdn: fqdn.clone(),
                    prefer_v4,
                    servers: vec![this],
                    resolvers: res.clone(),
                }),
            }
        }
    }
    out
}

/// Why a resolution gave no address (which `hold` applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Nx,
    Refused,
    Timeout,
    Other,
}

/// One resolution: the addresses of the preferred family, else of the
/// other, each query sent to every name server and the first valid answer
/// taken, `resolve_retries` times at most, `timeout retry` apart.
pub async fn resolve(
    sock: &UdpSocket,
    r: &Resolvers,
    fqdn: &str,
    prefer_v4: bool,
) -> Result<(Vec<IpAddr>, SocketAddr), Failure> {
    let name = Name::from_ascii(fqdn).map_err(|_| Failure::Other)?;
    let types = if prefer_v4 {
        [RecordType::A, RecordType::AAAA]
    } else {
        [RecordType::AAAA, RecordType::A]
    };
    let mut last = Failure::Timeout;
    for _ in 0..r.resolve_retries.max(1) {
        let mut timed_out = false;
        for t in types {
            match query(sock, r, &name, t).await {
                Ok((ips, from)) if !ips.is_empty() => return Ok((ips, from)),
                // No record of this type: the other family may have some.
                Ok(_) => last = Failure::Other,
                Err(Failure::Timeout) => {
                    timed_out = true;
                    break;
                }
                Err(f) => last = f,
            }
        }
        if !timed_out {
            return Err(last);
        }
        last = Failure::Timeout;
    }
    Err(last)
}

/// One query to all the name servers: the addresses of type `t` in the
/// first valid answer.
async fn query(
    sock: &UdpSocket,
    r: &Resolvers,
    name: &Name,
    t: RecordType,
) -> Result<(Vec<IpAddr>, SocketAddr), Failure> {
    let resp = query_msg(sock, r, name, t).await?;
    let from = resp.1;
    let ips = resp
        .0
        .answers()
        .iter()
        .filter_map(|rec| match rec.data() {
            RData::A(a) if t == RecordType::A => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) if t == RecordType::AAAA => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok((ips, from))
}

/// One query to all the name servers; the first answer that is not an
/// error other than NXDOMAIN wins (HAProxy: a slow server may still give
/// a valid answer after a fast faulty one).
async fn query_msg(
    sock: &UdpSocket,
    r: &Resolvers,
    name: &Name,
    t: RecordType,
) -> Result<(Message, SocketAddr), Failure> {
    let id: u16 = rand_id();
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), t));
    let mut edns = Edns::new();
    edns.set_max_payload(r.payload_size);
    m.set_edns(edns);
    let bytes = m.to_vec().map_err(|_| Failure::Other)?;
    for (_, ns) in &r.nameservers {
        // A name server of the other family than the socket: skipped.
        let _ = sock.send_to(&bytes, ns).await;
    }
    let deadline = Instant::now() + r.timeout_retry;
    let mut buf = vec![0u8; usize::from(r.payload_size).max(512)];
    let mut answered = 0;
    let mut worst = Failure::Timeout;
    while answered < r.nameservers.len() {
        let (n, from) = match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Err(_) => break,
            Ok(Err(_)) => continue,
            Ok(Ok(x)) => x,
        };
        if !r.nameservers.iter().any(|(_, ns)| *ns == from) {
            continue;
        }
        let Ok(resp) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if resp.id() != id || resp.message_type() != MessageType::Response {
            continue;
        }
        answered += 1;
        match resp.response_code() {
            ResponseCode::NoError => return Ok((resp, from)),
            ResponseCode::NXDomain => worst = Failure::Nx,
            ResponseCode::Refused if worst != Failure::Nx => worst = Failure::Refused,
            _ if worst == Failure::Timeout => worst = Failure::Other,
            _ => {}
        }
    }
    Err(worst)
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    if getrandom(&mut b).is_err() {
        return (crate::sys::monotonic_ns() & 0xffff) as u16;
    }
    u16::from_ne_bytes(b)
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: getrandom(2) writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n as usize == buf.len() {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Hands `records` (addresses, or address and port for SRV) to the
/// group's servers: each keeps its own while the answers hold it (and no
/// earlier server has it), the others take the records left, in order; a
/// server left without one has none. Returns (server index, new record or
/// None) for each change to make.
pub fn assign<T: PartialEq + Copy>(
    current: &[(u32, Option<T>)],
    records: &[T],
) -> Vec<(u32, Option<T>)> {
    let mut taken: Vec<T> = Vec::new();
    let mut pending = Vec::new();
    for &(idx, cur) in current {
        match cur {
            Some(r) if records.contains(&r) && !taken.contains(&r) => taken.push(r),
            _ => pending.push((idx, cur)),
        }
    }
    let mut free = records.iter().filter(|r| !taken.contains(r));
    let mut out = Vec::new();
    for (idx, cur) in pending {
        let new = free.next().copied();
        if new != cur {
            out.push((idx, new));
        }
    }
    out
}

/// One SRV record with the address of its target: from the answer's
/// additional records, else asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SrvTarget {
    pub ip: IpAddr,
    pub port: u16,
    /// HAProxy's weight from the record's: `(w + 255) / 256` (0 stays 0).
    pub weight: u32,
}

/// An SRV resolution (`_service._proto.name`): the records' targets with
/// their addresses.
pub async fn resolve_srv(
    sock: &UdpSocket,
    r: &Resolvers,
    fqdn: &str,
    prefer_v4: bool,
) -> Result<Vec<SrvTarget>, Failure> {
    let name = Name::from_ascii(fqdn).map_err(|_| Failure::Other)?;
    let mut last = Failure::Timeout;
    for _ in 0..r.resolve_retries.max(1) {
        match query_msg(sock, r, &name, RecordType::SRV).await {
            Ok((resp, _)) => {
                let mut out = Vec::new();
                for rec in resp.answers() {
                    let RData::SRV(srv) = rec.data() else {
                        continue;
                    };
                    let target = srv.target();
                    let extra = |t: RecordType| {
                        resp.additionals().iter().find_map(|a| {
                            (a.name() == target && a.record_type() == t).then(|| {
                                match a.data() {
                                    RData::A(x) => Some(IpAddr::V4(x.0)),
                                    RData::AAAA(x) => Some(IpAddr::V6(x.0)),
                                    _ => None,
                                }
                            })?
                        })
                    };
                    let (first, second) = if prefer_v4 {
                        (RecordType::A, RecordType::AAAA)
                    } else {
                        (RecordType::AAAA, RecordType::A)
                    };
                    let ip = match extra(first).or_else(|| extra(second)) {
                        Some(ip) => Some(ip),
                        None => resolve(sock, r, &target.to_ascii(), prefer_v4)
                            .await
                            .ok()
                            .and_then(|(ips, _)| ips.first().copied()),
                    };
                    if let Some(ip) = ip {
                        out.push(SrvTarget {
                            ip,
                            port: srv.port(),
                            weight: u32::from(srv.weight()).div_ceil(256),
                        });
                    }
                }
                return if out.is_empty() {
                    Err(Failure::Other)
                } else {
                    Ok(out)
                };
            }
            Err(Failure::Timeout) => last = Failure::Timeout,
            Err(f) => return Err(f),
        }
    }
    Err(last)
}

/// One task per group.
pub fn spawn_all(state: &Arc<State>, groups: Vec<Group>, publisher: &Arc<dyn Publish>) {
    for g in groups {
        let state = state.clone();
        let publisher = publisher.clone();
        tokio::spawn(async move { run(state, g, publisher).await });
    }
}

async fn run(state: Arc<State>, g: Group, publisher: Arc<dyn Publish>) {
    let v6 = g.resolvers.nameservers.iter().any(|(_, a)| a.is_ipv6());
    let bind: SocketAddr = if v6 {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                "resolvers '{}': no socket to ask for '{}': {e}",
                g.resolvers.name,
                g.fqdn
            );
            return;
        }
    };
    let r = &g.resolvers;
    // `_service._proto.name`: SRV records give address, port and weight.
    let srv_mode = g.fqdn.starts_with('_');
    let mut last_valid: Option<Instant> = None;
    // Records seen (address, port: 0 for A/AAAA), their weight, when last
    // seen (`hold obsolete`).
    let mut known: Vec<(Rec, Option<u32>, Instant)> = Vec::new();
    loop {
        let now = Instant::now();
        let outcome: Result<Vec<(Rec, Option<u32>)>, Failure> = if srv_mode {
            resolve_srv(&sock, r, &g.fqdn, g.prefer_v4).await.map(|v| {
                v.into_iter()
                    .map(|t| ((t.ip, t.port), Some(t.weight)))
                    .collect()
            })
        } else {
            resolve(&sock, r, &g.fqdn, g.prefer_v4)
                .await
                .map(|(ips, _)| ips.into_iter().map(|ip| ((ip, 0), None)).collect())
        };
        let records = match outcome {
            Ok(recs) => {
                last_valid = Some(now);
                for (rec, w) in &recs {
                    match known.iter_mut().find(|(k, _, _)| k == rec) {
                        Some(k) => (k.1, k.2) = (*w, now),
                        None => known.push((*rec, *w, now)),
                    }
                }
                known.retain(|(rec, _, seen)| {
                    recs.iter().any(|(x, _)| x == rec) || now - *seen <= r.hold.obsolete
                });
                tracing::trace!("resolvers '{}': {} -> {recs:?}", r.name, g.fqdn);
                Some(known.clone())
            }
            Err(f) => {
                let hold = match f {
                    Failure::Nx => r.hold.nx,
                    Failure::Refused => r.hold.refused,
                    Failure::Timeout => r.hold.timeout,
                    Failure::Other => r.hold.other,
                };
                let expired = last_valid.is_none_or(|t| now - t > hold);
                tracing::debug!(
                    "resolvers '{}': {}: {f:?}{}",
                    r.name,
                    g.fqdn,
                    if expired { "" } else { " (held)" }
                );
                expired.then(|| {
                    known.clear();
                    Vec::new()
                })
            }
        };
        if let Some(records) = records {
            apply(&state, &g, srv_mode, &records, &*publisher);
        }
        tokio::time::sleep(r.timeout_resolve.max(Duration::from_millis(100))).await;
    }
}

/// An address and, for SRV records, a port (0 for A/AAAA records).
type Rec = (IpAddr, u16);

/// Hands the records to the group's servers and logs what changed.
fn apply(
    state: &State,
    g: &Group,
    srv_mode: bool,
    records: &[(Rec, Option<u32>, Instant)],
    publisher: &dyn Publish,
) {
    let current: Vec<(u32, Option<Rec>)> = g
        .servers
        .iter()
        .map(|&i| {
            let s = &state.servers[i as usize];
            let has = !s.no_addr.load(std::sync::atomic::Ordering::Relaxed);
            let a = s.addr();
            (
                i,
                has.then(|| (a.ip(), if srv_mode { a.port() } else { 0 })),
            )
        })
        .collect();
    let recs: Vec<Rec> = records.iter().map(|(r, _, _)| *r).collect();
    let say = |idx: u32, what: String| {
        let s = &state.servers[idx as usize];
        tracing::warn!(
            "Server {}/{} ('{}') {what} by resolvers '{}'.",
            s.backend,
            s.name(),
            g.fqdn,
            g.resolvers.name
        );
        publisher.changed(idx);
    };
    for (idx, new) in assign(&current, &recs) {
        let s = &state.servers[idx as usize];
        if let Some((_, port)) = new.filter(|_| srv_mode) {
            if port != s.addr().port() {
                let old = s.addr().port();
                s.set_port(port);
                say(idx, format!("changed its port from {old} to {port}"));
            }
        }
        if let Some(what) = s.set_addr(new.map(|(ip, _)| ip)) {
            say(idx, what);
        }
    }
    // SRV weights, for every server holding a record now.
    for &i in g.servers.iter().filter(|_| srv_mode) {
        let s = &state.servers[i as usize];
        if s.no_addr.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        let a = s.addr();
        let w = records
            .iter()
            .find(|(r, _, _)| *r == (a.ip(), a.port()))
            .and_then(|(_, w, _)| *w);
        if let Some(w) = w.filter(|&w| w != s.weight.load(std::sync::atomic::Ordering::Relaxed)) {
            s.weight.store(w, std::sync::atomic::Ordering::Relaxed);
            s.touch();
            say(i, format!("takes the weight {w} of its SRV record"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::assign;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn servers_keep_their_address_and_share_the_rest() {
        let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        // Start: none has one; three servers, two addresses.
        let cur = [(0, None), (1, None), (2, None)];
        assert_eq!(assign(&cur, &[a, b]), vec![(0, Some(a)), (1, Some(b))]);
        // b goes, c comes: server 1 moves to c, server 0 keeps a.
        let cur = [(0, Some(a)), (1, Some(b)), (2, None)];
        assert_eq!(assign(&cur, &[c, a]), vec![(1, Some(c))]);
        // One address left: the others have none.
        let cur = [(0, Some(a)), (1, Some(c)), (2, None)];
        assert_eq!(assign(&cur, &[c]), vec![(0, None)]);
        // Nothing: all lose theirs.
        assert_eq!(assign(&cur, &[]), vec![(0, None), (1, None)]);
        // Two servers on one address (configured alike): the second moves.
        let cur = [(0, Some(a)), (1, Some(a))];
        assert_eq!(assign(&cur, &[a, b]), vec![(1, Some(b))]);
    }
}
