//! Conditions evaluated on a connection: its layer-4 facts (`src`, `dst`,
//! `src_port`, `dst_port`) and, with content inspection, the first bytes
//! the client sent (`req.len`, `req.payload`, `req.ssl_sni`...). HAProxy's
//! matching: a term holds when any of its ACL's tests matches any of its
//! patterns; terms joined by AND, alternatives by `or`; `!` negates a term,
//! `unless` the whole condition. IPv4 addresses and networks compare with
//! IPv4-mapped IPv6 ones (a dual-stack listener).
//!
//! While more bytes may still come, a test whose sample is incomplete (a
//! ClientHello cut in two) or may still change (`req.len`) and does not
//! match yet is *undecided*: [`Verdict::Miss`], and a content rule waits.
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use super::model::{AclTest, Condition, Fetch, LvStart, Match, Pattern};

/// The facts a condition may test.
#[derive(Clone, Copy, Debug)]
pub struct L4 {
    /// The client, as the PROXY header said when the bind reads one.
    pub src: SocketAddr,
    /// The address the client connected to.
    pub dst: SocketAddr,
}

/// What the client sent so far, for content fetches.
#[derive(Clone, Copy, Debug)]
pub struct Content<'a> {
    pub bytes: &'a [u8],
    /// No more will be waited for: the delay expired, the client closed,
    /// the buffer is full, or there is no inspection at all.
    pub last: bool,
    /// The most the inspection buffer holds: a sample that could never fit
    /// never matches instead of waiting.
    pub capacity: usize,
}

/// An ACL result in HAProxy's encoding, so that AND is `&` and OR is `|`:
/// a failure wins an AND, a pass wins an OR, and an undecided test keeps
/// the result undecided otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Fail = 0,
    Miss = 1,
    Pass = 3,
}

impl Verdict {
    fn bits(b: u8) -> Self {
        match b {
            0 => Verdict::Fail,
            3 => Verdict::Pass,
            _ => Verdict::Miss,
        }
    }

    fn not(self) -> Self {
        match self {
            Verdict::Fail => Verdict::Pass,
            Verdict::Pass => Verdict::Fail,
            Verdict::Miss => Verdict::Miss,
        }
    }
}

const V4_MAPPED: u128 = 0xffff << 32;

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => V4_MAPPED | u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let len = match net {
        IpAddr::V4(_) => 96 + u32::from(prefix.min(32)),
        IpAddr::V6(_) => u32::from(prefix.min(128)),
    };
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    to_u128(ip) & mask == to_u128(net) & mask
}

enum Value<'a> {
    Ip(IpAddr),
    Int(i64),
    Bool(bool),
    Bytes(Cow<'a, [u8]>),
}

/// A fetched sample, or none (`None`); `may_change`: more bytes could
/// change it (or bring one), so a miss now is not final.
struct Sample<'a> {
    value: Option<Value<'a>>,
    may_change: bool,
}

fn fetch<'a>(f: Fetch, l4: &L4, c: &Content<'a>) -> Sample<'a> {
    let some = |v| Sample {
        value: Some(v),
        may_change: false,
    };
    let pending = Sample {
        value: None,
        may_change: true,
    };
    let none = Sample {
        value: None,
        may_change: false,
    };
    let b = c.bytes;
    match f {
        Fetch::Src => some(Value::Ip(l4.src.ip())),
        Fetch::Dst => some(Value::Ip(l4.dst.ip())),
        Fetch::SrcPort => some(Value::Int(i64::from(l4.src.port()))),
        Fetch::DstPort => some(Value::Int(i64::from(l4.dst.port()))),
        Fetch::AlwaysTrue => some(Value::Bool(true)),
        Fetch::AlwaysFalse => some(Value::Bool(false)),
        Fetch::WaitEnd if c.last => some(Value::Bool(true)),
        Fetch::WaitEnd => pending,
        Fetch::ReqLen => Sample {
            value: Some(Value::Int(b.len() as i64)),
            may_change: true,
        },
        Fetch::ReqPayload { off, len } => {
            let (off, len) = (off as usize, len as usize);
            if off + len > c.capacity {
                return none;
            }
            if off + len > b.len() || (len == 0 && off > b.len()) {
                return pending;
            }
            let end = if len == 0 { b.len() } else { off + len };
            Sample {
                value: Some(Value::Bytes(Cow::Borrowed(&b[off..end]))),
                may_change: len == 0,
            }
        }
        Fetch::ReqPayloadLv { off, size, start } => {
            let (off, size) = (off as usize, size as usize);
            if off + size > b.len() {
                return pending;
            }
            let n = b[off..off + size]
                .iter()
                .fold(0usize, |n, &x| (n << 8) | x as usize);
            let after = off + size;
            let at = match start {
                LvStart::AfterLength => Some(after),
                LvStart::At(a) => Some(a as usize),
                LvStart::Shift(d) => after.checked_add_signed(d as isize),
            };
            let Some(at) = at.filter(|&a| n > 0 && a + n <= c.capacity) else {
                return none;
            };
            if at + n > b.len() {
                return pending;
            }
            some(Value::Bytes(Cow::Borrowed(&b[at..at + n])))
        }
        Fetch::ReqSslHelloType => match tls::hello_type(b) {
            tls::Parsed::Got(t) => some(Value::Int(i64::from(t))),
            tls::Parsed::Short => pending,
            tls::Parsed::Not => none,
        },
        Fetch::ReqSslVer => match tls::client_version(b) {
            tls::Parsed::Got(v) => some(Value::Int(i64::from(v))),
            tls::Parsed::Short => pending,
            tls::Parsed::Not => none,
        },
        Fetch::ReqSslSni => match tls::sni(b) {
            tls::Parsed::Got(name) => some(Value::Bytes(Cow::Borrowed(name))),
            tls::Parsed::Short => pending,
            tls::Parsed::Not => none,
        },
    }
}

/// `dom` and `dir`: the pattern is one or more whole words of the sample,
/// words delimited by any of `delims` (or the ends).
fn has_words(s: &[u8], p: &[u8], delims: &[u8]) -> bool {
    if p.is_empty() {
        return false;
    }
    let mut i = 0;
    while i + p.len() <= s.len() {
        let left = i == 0 || delims.contains(&s[i - 1]);
        let right = i + p.len() == s.len() || delims.contains(&s[i + p.len()]);
        if left && right && &s[i..i + p.len()] == p {
            return true;
        }
        i += 1;
    }
    false
}

fn value_matches(t: &AclTest, v: &Value<'_>) -> bool {
    let ints = |n: i64| {
        t.patterns.iter().any(|p| match *p {
            Pattern::Int { lo, hi } => (lo..=hi).contains(&n),
            _ => false,
        })
    };
    match (t.method, v) {
        (Match::Found, _) => true,
        (Match::Bool, Value::Bool(b)) => *b,
        (Match::Bool, Value::Int(n)) => *n != 0,
        (Match::Ip, Value::Ip(ip)) => t.patterns.iter().any(|p| match p {
            Pattern::Net(n) => in_net(*ip, n.addr, n.prefix),
            _ => false,
        }),
        (Match::Int, Value::Int(n)) => ints(*n),
        (Match::Len, Value::Bytes(b)) => ints(b.len() as i64),
        (m, Value::Bytes(raw)) => {
            let s: Cow<'_, [u8]> = if t.icase && m != Match::Bin && m != Match::Reg {
                Cow::Owned(raw.to_ascii_lowercase())
            } else {
                Cow::Borrowed(raw)
            };
            t.patterns.iter().any(|p| match (m, p) {
                (Match::Reg, Pattern::Regex(r)) => r.0.is_match(&s),
                (Match::Str | Match::Bin, Pattern::Bytes(x)) => *s == **x,
                (Match::Beg, Pattern::Bytes(x)) => s.starts_with(x),
                (Match::End, Pattern::Bytes(x)) => s.ends_with(x),
                (Match::Sub, Pattern::Bytes(x)) => {
                    x.is_empty() || s.windows(x.len()).any(|w| w == &x[..])
                }
                (Match::Dom, Pattern::Bytes(x)) => has_words(&s, x, b"/?.:"),
                (Match::Dir, Pattern::Bytes(x)) => has_words(&s, x, b"/?"),
                _ => false,
            })
        }
        _ => false,
    }
}

fn test_verdict(t: &AclTest, l4: &L4, c: &Content<'_>) -> u8 {
    let smp = fetch(t.fetch, l4, c);
    let undecided = smp.may_change && !c.last;
    let pass = smp.value.as_ref().is_some_and(|v| value_matches(t, v));
    match (pass, undecided) {
        (true, _) => Verdict::Pass as u8,
        (false, true) => Verdict::Miss as u8,
        (false, false) => Verdict::Fail as u8,
    }
}

impl Condition {
    /// The condition on this connection and what its client sent so far;
    /// `unless` applied. [`Verdict::Miss`] only while `content.last` is false.
    pub fn verdict(&self, l4: &L4, content: &Content<'_>) -> Verdict {
        let mut any = Verdict::Fail as u8;
        for all in &self.any_of {
            let mut conj = Verdict::Pass as u8;
            for term in all {
                let mut r = Verdict::Fail as u8;
                for t in term.tests.iter() {
                    r |= test_verdict(t, l4, content);
                    if r == Verdict::Pass as u8 {
                        break;
                    }
                }
                let mut r = Verdict::bits(r);
                if term.negate {
                    r = r.not();
                }
                conj &= r as u8;
                if conj == Verdict::Fail as u8 {
                    break;
                }
            }
            any |= conj;
            if any == Verdict::Pass as u8 {
                break;
            }
        }
        let v = Verdict::bits(any);
        if self.unless {
            v.not()
        } else {
            v
        }
    }

    /// Whether the condition holds, with no more bytes to wait for: on the
    /// connection's addresses alone (content fetches see no bytes).
    pub fn holds(&self, l4: &L4) -> bool {
        self.holds_on(l4, &[])
    }

    /// Whether the condition holds on this connection and the bytes its
    /// client sent (all there will be).
    pub fn holds_on(&self, l4: &L4, bytes: &[u8]) -> bool {
        let c = Content {
            bytes,
            last: true,
            capacity: usize::MAX,
        };
        self.verdict(l4, &c) == Verdict::Pass
    }

    /// Whether any test reads the request's contents.
    pub fn needs_content(&self) -> bool {
        self.any_of
            .iter()
            .flatten()
            .any(|t| t.tests.iter().any(|t| t.fetch.needs_content()))
    }
}

/// `tcp-request content` rules on what the client sent so far, as HAProxy
/// runs them: in order, the first rule whose condition holds (or that has
/// none) decides; an undecided condition stops the walk to wait for more
/// bytes (`None`); accept when no rule decides.
pub fn content_rules(
    rules: &[super::model::TcpRequestRule],
    l4: &L4,
    c: &Content<'_>,
) -> Option<bool> {
    use super::model::TcpRequestAction as A;
    for r in rules {
        let applies = match &r.cond {
            None => true,
            Some(cond) => match cond.verdict(l4, c) {
                Verdict::Miss => return None,
                v => v == Verdict::Pass,
            },
        };
        if applies {
            return Some(r.action != A::Reject);
        }
    }
    Some(true)
}

/// The first TLS record of a client, as far as the fetches need it.
pub mod tls {
    /// What a parse found.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Parsed<T> {
        Got(T),
        /// Not all there yet.
        Short,
        /// Not what the fetch looks for.
        Not,
    }
    use Parsed::*;

    fn be(b: &[u8]) -> usize {
        b.iter().fold(0, |n, &x| (n << 8) | x as usize)
    }

    /// A record type of TLS (change_cipher_spec, alert, handshake,
    /// application_data) or SSLv2-compatible 0xff.
    fn record_type(t: u8) -> bool {
        (0x14..=0x17).contains(&t) || t == 0xff
    }

    /// `req.ssl_hello_type`: the type of the first handshake message, once
    /// it is whole.
    pub fn hello_type(b: &[u8]) -> Parsed<u8> {
        let Some(&t) = b.first() else { return Short };
        if !record_type(t) {
            return Not;
        }
        if b.len() < 9 {
            return Short;
        }
        if b[1] < 3 || be(&b[3..5]) < 4 {
            return Not;
        }
        if b.len() < 9 + be(&b[6..9]) {
            return Short;
        }
        Got(b[5])
    }

    /// `req.ssl_ver`: the version a TLS ClientHello asks for (not the
    /// record layer's), `major << 16 | minor`. SSLv2-format hellos are not
    /// recognised.
    pub fn client_version(b: &[u8]) -> Parsed<u32> {
        let Some(&t) = b.first() else { return Short };
        if !record_type(t) {
            return Not;
        }
        if b.len() < 11 {
            return Short;
        }
        let len = be(&b[3..5]);
        if b[1] < 3 || !(6..=(1 << 14) + 2048).contains(&len) {
            return Not;
        }
        Got(u32::from(b[9]) << 16 | u32::from(b[10]))
    }

    /// The extensions of a whole ClientHello in the first record.
    fn extensions(b: &[u8]) -> Parsed<&[u8]> {
        let Some(&t) = b.first() else { return Short };
        if t != 0x16 {
            return Not;
        }
        if b.len() < 5 {
            return if b.len() >= 2 && b[1] < 3 { Not } else { Short };
        }
        if b[1] < 3 {
            return Not;
        }
        let rec_len = be(&b[3..5]);
        // type, length, version, random, and the shortest rest with an
        // extension list.
        const MIN_HELLO: usize = 2 + 32 + 1 + 2 + 2 + 1 + 1 + 2 + 2;
        if rec_len < 4 + MIN_HELLO {
            return Not;
        }
        let Some(rec) = b.get(5..5 + rec_len) else {
            return Short;
        };
        if rec[0] != 0x01 {
            return Not;
        }
        let hs_len = be(&rec[1..4]);
        if hs_len < MIN_HELLO {
            return Not;
        }
        // A hello longer than its record continues in the next one.
        let Some(h) = rec.get(4..4 + hs_len) else {
            return match b.len() >= 5 + rec_len {
                true => Not,
                false => Short,
            };
        };
        if h[0] < 3 || h[1] < 1 {
            return Not;
        }
        let mut at = 34;
        let sid = h[at] as usize;
        if sid > 32 {
            return Not;
        }
        at += 1 + sid;
        let Some(ciphers) = h.get(at..at + 2).map(be) else {
            return Not;
        };
        if ciphers < 2 {
            return Not;
        }
        at += 2 + ciphers;
        let Some(&comp) = h.get(at) else { return Not };
        if comp < 1 {
            return Not;
        }
        at += 1 + comp as usize;
        let Some(ext_len) = h.get(at..at + 2).map(be) else {
            return Not;
        };
        match h.get(at + 2..at + 2 + ext_len) {
            Some(e) => Got(e),
            None => Not,
        }
    }

    /// `req.ssl_sni`: the host name of the server_name extension.
    pub fn sni(b: &[u8]) -> Parsed<&[u8]> {
        let mut e = match extensions(b) {
            Got(e) => e,
            Short => return Short,
            Not => return Not,
        };
        while e.len() >= 4 {
            let (ty, len) = (be(&e[0..2]), be(&e[2..4]));
            let Some(body) = e.get(4..4 + len) else {
                return Not;
            };
            if ty == 0 {
                // server_name_list: length, then (type, length, name)...
                if body.len() < 2 {
                    return Not;
                }
                let list = be(&body[0..2]);
                let Some(mut l) = body.get(2..2 + list) else {
                    return Not;
                };
                while l.len() >= 3 {
                    let n = be(&l[1..3]);
                    let Some(name) = l.get(3..3 + n) else {
                        return Not;
                    };
                    if l[0] == 0 {
                        return Got(name);
                    }
                    l = &l[3 + n..];
                }
                return Not;
            }
            e = &e[4 + len..];
        }
        Not
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    fn l4(src: &str, dst: &str) -> L4 {
        L4 {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    /// The backend `use_backend` picks in frontend f of `rules`, or the default.
    fn pick(rules: &str, c: &L4) -> String {
        pick_on(rules, c, b"")
    }

    /// The same, on a connection whose client sent `bytes`.
    fn pick_on(rules: &str, c: &L4, bytes: &[u8]) -> String {
        let cfg = parse(&format!(
            "defaults\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n\
             frontend f\n    bind :80\n{rules}    default_backend dflt\n\
             backend dflt\n    server s 10.9.9.9:1\nbackend a\n    server s 10.9.9.9:1\n\
             backend b\n    server s 10.9.9.9:1\n"
        ));
        let f = &cfg.frontends[0];
        let idx = f
            .use_backends
            .iter()
            .find(|u| u.cond.as_ref().is_none_or(|cond| cond.holds_on(c, bytes)))
            .map(|u| u.backend_idx)
            .or(f.default_backend_idx)
            .unwrap();
        cfg.backends[idx].name.clone()
    }

    #[test]
    fn src_dst_and_ports() {
        let r =
            "    use_backend a if { src 10.1.0.0/16 }\n    use_backend b if { dst_port 5433 }\n";
        assert_eq!(pick(r, &l4("10.1.2.3:40000", "10.0.0.1:80")), "a");
        assert_eq!(pick(r, &l4("10.2.2.3:40000", "10.0.0.1:5433")), "b");
        assert_eq!(pick(r, &l4("10.2.2.3:40000", "10.0.0.1:80")), "dflt");
        // A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6.
        assert_eq!(
            pick(r, &l4("[::ffff:10.1.9.9]:1", "[::ffff:10.0.0.1]:80")),
            "a"
        );
        let r = "    use_backend a if { dst 192.0.2.1 } { src_port 1024:2047 }\n";
        assert_eq!(pick(r, &l4("10.0.0.9:1500", "192.0.2.1:80")), "a");
        assert_eq!(pick(r, &l4("10.0.0.9:3000", "192.0.2.1:80")), "dflt");
        let r = "    use_backend a if { src fd00::/8 }\n";
        assert_eq!(pick(r, &l4("[fd12::1]:1", "[fd00::1]:80")), "a");
        assert_eq!(pick(r, &l4("10.0.0.1:1", "10.0.0.2:80")), "dflt");
    }

    #[test]
    fn named_acls_negation_or_and_unless() {
        let r = "    acl lan src 10.0.0.0/8 192.168.0.0/16\n    acl pg dst_port 5432\n    \
                 use_backend a if lan pg || !lan { dst_port 6379 }\n    use_backend b unless lan\n";
        assert_eq!(pick(r, &l4("10.1.1.1:1", "10.0.0.1:5432")), "a");
        assert_eq!(pick(r, &l4("10.1.1.1:1", "10.0.0.1:6379")), "dflt");
        assert_eq!(pick(r, &l4("172.16.0.1:1", "10.0.0.1:6379")), "a");
        assert_eq!(pick(r, &l4("172.16.0.1:1", "10.0.0.1:80")), "b");
        // The first rule that holds wins; one without a condition always does.
        let r = "    use_backend b\n    use_backend a if TRUE\n";
        assert_eq!(pick(r, &l4("10.1.1.1:1", "10.0.0.1:1")), "b");
        let r = "    use_backend a if FALSE\n";
        assert_eq!(pick(r, &l4("10.1.1.1:1", "10.0.0.1:1")), "dflt");
    }
    /// A TLS 1.2-style ClientHello record carrying `sni` (None: no
    /// server_name extension), with one other extension before it.
    fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let mut ext = vec![0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]; // ec_point_formats
        if let Some(name) = sni {
            let n = name.len() as u16;
            ext.extend_from_slice(&[0x00, 0x00]);
            ext.extend_from_slice(&(n + 5).to_be_bytes());
            ext.extend_from_slice(&(n + 3).to_be_bytes());
            ext.push(0);
            ext.extend_from_slice(&n.to_be_bytes());
            ext.extend_from_slice(name.as_bytes());
        }
        let mut hello = vec![0x03, 0x03];
        hello.extend_from_slice(&[0x5a; 32]);
        hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
        hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hello.extend_from_slice(&ext);
        let mut hs = vec![0x01, 0x00];
        hs.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        hs.extend_from_slice(&hello);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_client_hello_fields() {
        use tls::Parsed::*;
        let h = client_hello(Some("db.example.com"));
        assert_eq!(tls::sni(&h), Got(&b"db.example.com"[..]));
        assert_eq!(tls::hello_type(&h), Got(1));
        assert_eq!(tls::client_version(&h), Got(0x0003_0003));
        // Every cut of the record is incomplete, never a wrong answer.
        for cut in 0..h.len() {
            assert_eq!(tls::sni(&h[..cut]), Short, "cut at {cut}");
            assert_eq!(tls::hello_type(&h[..cut]), Short, "cut at {cut}");
        }
        let none = client_hello(None);
        assert_eq!(tls::sni(&none), Not);
        assert_eq!(tls::sni(b"GET / HTTP/1.1\r\n"), Not);
        assert_eq!(tls::hello_type(b"\x00\x00\x00\x08"), Not);
        // A length that runs past the record: malformed, not a wait.
        let mut bad = h.clone();
        let n = bad.len();
        bad[n - 16] = 0xff;
        assert_ne!(tls::sni(&bad), Got(&b"db.example.com"[..]));
        // Bytes after the record (the next one) change nothing.
        let mut more = h.clone();
        more.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
        assert_eq!(tls::sni(&more), Got(&b"db.example.com"[..]));
    }

    /// What `tcp-request content` rules decide on `bytes`; `last`: no more
    /// will come. "wait" for undecided.
    fn rules(text: &str, bytes: &[u8], last: bool) -> &'static str {
        let cfg = parse(&format!(
            "defaults\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n\
             frontend f\n    bind :80\n    tcp-request inspect-delay 5s\n{text}    default_backend b\n\
             backend b\n    server s 10.9.9.9:1\n"
        ));
        let c = Content {
            bytes,
            last,
            capacity: 15360,
        };
        match content_rules(
            &cfg.frontends[0].tcp_request_content,
            &l4("10.0.0.1:1000", "10.0.0.2:443"),
            &c,
        ) {
            Some(true) => "accept",
            Some(false) => "reject",
            None => "wait",
        }
    }

    #[test]
    fn content_rules_wait_decide_and_default() {
        let hello = client_hello(Some("a.example.com"));
        let half = &hello[..hello.len() / 2];
        let sni_rules = "    tcp-request content accept if { req.ssl_hello_type 1 }\n    tcp-request content reject\n";
        let len_rules = "    tcp-request content reject if { req.len lt 4 }\n";
        let table: &[(&str, &str, &[u8], bool, &str)] = &[
            ("whole hello: accepted", sni_rules, &hello, false, "accept"),
            ("half a hello: wait", sni_rules, half, false, "wait"),
            (
                "half a hello, delay over: rejected",
                sni_rules,
                half,
                true,
                "reject",
            ),
            (
                "not TLS: rejected at once",
                sni_rules,
                b"GET / HTTP/1.0\r\n\r\n",
                false,
                "reject",
            ),
            ("nothing yet: wait", sni_rules, b"", false, "wait"),
            // req.len passes at once (a pass is final even if it may change).
            (
                "req.len lt 4 on 2 bytes: rejected",
                len_rules,
                b"ab",
                false,
                "reject",
            ),
            // As in HAProxy, `req.len` may still change: a miss waits.
            (
                "req.len lt 4 on 9 bytes: wait",
                len_rules,
                b"abcdefghi",
                false,
                "wait",
            ),
            (
                "req.len lt 4 on 9 bytes, the end: accepted",
                len_rules,
                b"abcdefghi",
                true,
                "accept",
            ),
            (
                "unless on an undecided test: wait",
                "    tcp-request content reject unless { req.len ge 4 }\n",
                b"ab",
                false,
                "wait",
            ),
            (
                "WAIT_END waits for the end",
                "    tcp-request content accept if WAIT_END\n    tcp-request content reject\n",
                b"x",
                false,
                "wait",
            ),
            (
                "WAIT_END at the end",
                "    tcp-request content accept if WAIT_END\n    tcp-request content reject\n",
                b"x",
                true,
                "accept",
            ),
            (
                "payload bytes (hex)",
                "    tcp-request content reject if { req.payload(0,3) -m bin 474554 }\n",
                b"GET /",
                false,
                "reject",
            ),
            (
                "payload_lv: length-prefixed block",
                "    tcp-request content reject if { req.payload_lv(0,1) -m str abc }\n",
                b"\x03abcdef",
                false,
                "reject",
            ),
            (
                "sni -m end -i",
                "    tcp-request content reject if { req.ssl_sni -i -m end .EXAMPLE.com }\n",
                &hello,
                false,
                "reject",
            ),
            (
                "sni -m reg",
                "    tcp-request content reject if { req_ssl_sni -m reg ^a\\.[a-z]+\\.com$ }\n",
                &hello,
                false,
                "reject",
            ),
            (
                "sni -m dom",
                "    tcp-request content reject if { req.ssl_sni -m dom example }\n",
                &hello,
                false,
                "reject",
            ),
            (
                "sni str mismatch: next rule, default accept",
                "    tcp-request content reject if { req.ssl_sni b.example.com }\n",
                &hello,
                false,
                "accept",
            ),
            (
                "ssl_ver range",
                "    tcp-request content reject if { req.ssl_ver 3.1:3.3 }\n",
                &hello,
                false,
                "reject",
            ),
            (
                "no condition: decides at once",
                "    tcp-request content reject\n",
                b"",
                false,
                "reject",
            ),
        ];
        let mut bad = Vec::new();
        for (what, r, bytes, last, want) in table {
            let got = rules(r, bytes, *last);
            if got != *want {
                bad.push(format!("{what}: got {got}, want {want}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn use_backend_by_sni() {
        let r = "    use_backend a if { req.ssl_sni -m end .a.example.com }\n    use_backend b if { req_ssl_sni -i B.example.com }\n";
        let c = l4("10.0.0.1:1", "10.0.0.2:443");
        let pick_on = |bytes: &[u8]| pick_on(r, &c, bytes);
        assert_eq!(pick_on(&client_hello(Some("x.a.example.com"))), "a");
        assert_eq!(pick_on(&client_hello(Some("b.example.com"))), "b");
        assert_eq!(pick_on(&client_hello(Some("c.example.com"))), "dflt");
        assert_eq!(pick_on(&client_hello(None)), "dflt");
        assert_eq!(pick_on(b""), "dflt");
    }
}
