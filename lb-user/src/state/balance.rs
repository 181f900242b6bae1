//! Server choice, with HAProxy's algorithms and their semantics: weighted smooth
//! round robin (dynamic weights), static round robin, least connections, first
//! available, source hashing (map-based and consistent) and power-of-n random.
//!
//! Pure logic over [`Member`]s and their loads, so that plain `cargo test`
//! checks the distributions; the daemon builds the members from its server
//! state. One type per algorithm behind [`Balancer`].
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::IpAddr;

/// One server with its live counts, for the slice form of a pick (tests).
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// Effective weight; 0 means "not eligible now" (down, drained, maintenance).
    pub weight: u32,
    /// Connections being served.
    pub served: u32,
    /// Connections waiting in this server's queue.
    pub queued: u32,
    /// `maxconn` (0: unlimited).
    pub maxconn: u32,
    /// Numeric `id` (HAProxy's puid): orders `first` and seeds the hash ring.
    pub id: u32,
}

#[cfg(test)]
impl Candidate {
    /// HAProxy's leastconn key: (served + queued + 1) * 4096 / effective weight
    /// (eweight = weight * 16), i.e. connections per unit of weight.
    pub fn load_key(&self) -> u64 {
        (self.served as u64 + self.queued as u64 + 1) * 4096 / (self.weight as u64 * 16).max(1)
    }
}

/// `hash-type` function (applies to string keys; the source address hash is an
/// XOR of its 32-bit words, as in HAProxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashFn {
    #[default]
    Sdbm,
    Djb2,
    Wt6,
    Crc32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    RoundRobin,
    StaticRr,
    LeastConn,
    First,
    Source { consistent: bool, avalanche: bool },
    Random { draws: u32 },
}

pub fn hash_sdbm(key: &[u8]) -> u32 {
    key.iter().fold(0u32, |h, &c| {
        (c as u32)
            .wrapping_add(h << 6)
            .wrapping_add(h << 16)
            .wrapping_sub(h)
    })
}

pub fn hash_djb2(key: &[u8]) -> u32 {
    key.iter().fold(5381u32, |h, &c| {
        (h << 5).wrapping_add(h).wrapping_add(c as u32)
    })
}

pub fn hash_wt6(key: &[u8]) -> u32 {
    let (mut h0, mut h1) = (0xa53c_965au32, 0x5ca6_953au32);
    let (mut step0, mut step1) = (6u32, 18u32);
    for &c in key {
        let t = c as u32;
        h0 = !(h0 ^ t);
        h1 = !(h1.wrapping_add(t));
        let t = h1.rotate_left(step0);
        h1 = h0.rotate_left(step1);
        h0 = t;
        let t = ((h0 >> 16) ^ h1) & 0xffff;
        step0 = t & 0x1f;
        step1 = t >> 11;
    }
    h0 ^ h1
}

pub fn hash_crc32(key: &[u8]) -> u32 {
    let mut h = !0u32;
    for &c in key {
        h ^= c as u32;
        for _ in 0..8 {
            h = (h >> 1) ^ if h & 1 != 0 { 0xedb8_8320 } else { 0 };
        }
    }
    !h
}

impl HashFn {
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashFn::Sdbm => hash_sdbm(key),
            HashFn::Djb2 => hash_djb2(key),
            HashFn::Wt6 => hash_wt6(key),
            HashFn::Crc32 => hash_crc32(key),
        }
    }
}

/// Bob Jenkins' 32-bit full-avalanche integer hash, then spread over the ring by
/// a large prime (HAProxy's `full_hash`).
pub fn full_hash(mut a: u32) -> u32 {
    a = a.wrapping_add(0x7ed5_5d16).wrapping_add(a << 12);
    a = (a ^ 0xc761_c23c) ^ (a >> 19);
    a = a.wrapping_add(0x1656_67b1).wrapping_add(a << 5);
    a = a.wrapping_add(0xd3a2_646c) ^ (a << 9);
    a = a.wrapping_add(0xfd70_46c5).wrapping_add(a << 3);
    a = (a ^ 0xb55a_4f09) ^ (a >> 16);
    a.wrapping_mul(3_221_225_473)
}

/// The source-address key: the XOR of its 32-bit big-endian words.
pub fn source_key(addr: IpAddr) -> u32 {
    let words = |b: &[u8]| {
        b.chunks_exact(4).fold(0u32, |h, w| {
            h ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]])
        })
    };
    match addr {
        IpAddr::V4(a) => words(&a.octets()),
        IpAddr::V6(a) => words(&a.octets()),
    }
}

/// Nodes per unit of weight on the consistent-hash ring (HAProxy's
/// BE_WEIGHT_SCALE): weight 1 is 16 points, so 10 servers make 160+ points.
const RING_SCALE: u32 = 16;

/// Virtual time one pick of weight 1 costs in the round-robin schedule.
const STRIDE_ONE: u64 = 1 << 32;

/// The slowly changing part of one server as the balancer sees it: rebuilt
/// when a weight, a state or a limit changes, not per pick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Effective weight; 0: not eligible now (down, drained, maintenance,
    /// backup while an active server is up).
    pub weight: u32,
    /// `maxconn` (0: unlimited): at it, the server is skipped.
    pub maxconn: u32,
    /// Numeric `id`: orders `first` and places the server on the hash ring.
    pub id: u32,
}

/// Where member `i` starts in a stride schedule: somewhere in its first
/// stride, spread by the golden ratio so that servers of equal weight do not
/// all come due together (which would run the heavy ones in long streaks).
fn first_pass(vtime: u64, stride: u64, i: usize) -> u64 {
    let phase = ((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u128;
    vtime + 1 + ((stride as u128 * phase) >> 32) as u64
}

/// leastconn's order key: connections per unit of weight, scaled so that two
/// different ratios never compare equal (weights <= 256, loads < 2^24).
fn lc_key(load: u32, weight: u32) -> u64 {
    ((load as u64 + 1) << 24) / weight.max(1) as u64
}

/// What every algorithm sees of the backend: the members and who is eligible.
#[derive(Debug, Default)]
struct View {
    members: Vec<Member>,
    /// Eligible member indexes.
    eligible: Vec<u32>,
    total_weight: u64,
}

/// roundrobin: stride scheduling. Each pick advances the chosen server's
/// deadline by STRIDE_ONE / weight and the earliest deadline goes next, which
/// spreads each server's turns evenly (smooth) in the ratio of the weights. A
/// server keeps its deadline across weight changes (capped so that a raised
/// weight applies at once); one that becomes eligible starts within one
/// stride from now ([`first_pass`]).
#[derive(Debug, Default)]
struct RoundRobin {
    /// Each member's next virtual deadline, the schedule ordered by it, and
    /// the virtual time of the last pick.
    pass: Vec<u64>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    vtime: u64,
    skipped: Vec<Reverse<(u64, u32)>>,
}

impl RoundRobin {
    fn rebuild(&mut self, v: &View, old: &[Member]) {
        let n = v.members.len();
        self.pass.resize(n, 0);
        self.heap.clear();
        for i in 0..n {
            let w = v.members[i].weight as u64;
            if w == 0 {
                continue;
            }
            let stride = STRIDE_ONE / w;
            let was = old.get(i).is_some_and(|o| o.weight > 0);
            self.pass[i] = if was {
                self.pass[i].min(self.vtime + stride)
            } else {
                first_pass(self.vtime, stride, i)
            };
            self.heap.push(Reverse((self.pass[i], i as u32)));
        }
    }

    fn choose(&mut self, v: &View, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut chosen = None;
        while let Some(Reverse((p, i))) = self.heap.pop() {
            if skip(i as usize) {
                self.skipped.push(Reverse((p, i)));
                continue;
            }
            self.vtime = p;
            let next = p + STRIDE_ONE / v.members[i as usize].weight as u64;
            self.pass[i as usize] = next;
            self.heap.push(Reverse((next, i)));
            chosen = Some(i as usize);
            break;
        }
        self.heap.extend(self.skipped.drain(..));
        chosen
    }
}

/// Each eligible member `weight` times, interleaved by the stride schedule
/// (deterministic: a restarted daemon builds the same table).
fn weighted_table(v: &View) -> Vec<u32> {
    let mut heap: BinaryHeap<Reverse<(u64, u32)>> = v
        .eligible
        .iter()
        .map(|&i| {
            let stride = STRIDE_ONE / v.members[i as usize].weight as u64;
            Reverse((first_pass(0, stride, i as usize), i))
        })
        .collect();
    let mut table = Vec::with_capacity(v.total_weight as usize);
    for _ in 0..v.total_weight {
        let Some(Reverse((p, i))) = heap.pop() else {
            break;
        };
        table.push(i);
        heap.push(Reverse((
            p + STRIDE_ONE / v.members[i as usize].weight as u64,
            i,
        )));
    }
    table
}

/// static-rr: a weighted table walked in turn; kept while the set of eligible
/// servers is the same (HAProxy's static weights).
#[derive(Debug, Default)]
struct StaticRr {
    table: Vec<u32>,
    pos: usize,
}

impl StaticRr {
    fn rebuild(&mut self, v: &View, same_set: bool) {
        if !same_set || self.table.is_empty() {
            self.table = weighted_table(v);
            self.pos = 0;
        }
    }

    fn choose(&mut self, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.table.len();
        for _ in 0..n {
            let i = self.table[self.pos] as usize;
            self.pos = (self.pos + 1) % n;
            if !skip(i) {
                return Some(i);
            }
        }
        None
    }
}

/// source: the client address hashed onto a weighted table (map-based) or a
/// ring (consistent), rebuilt when a weight or an id changes.
#[derive(Debug, Default)]
struct Source {
    consistent: bool,
    avalanche: bool,
    /// Map-based: each eligible member `weight` times.
    table: Vec<u32>,
    /// Consistent: sorted (point, member).
    ring: Vec<(u32, u32)>,
}

impl Source {
    fn rebuild(&mut self, v: &View, same_weights: bool) {
        if self.consistent {
            if !same_weights || self.ring.is_empty() {
                self.ring.clear();
                for &i in &v.eligible {
                    let s = v.members[i as usize];
                    for node in 0..s.weight * RING_SCALE {
                        // A server's points depend only on its id and rank, so
                        // a server leaving moves only the keys on its points.
                        let point =
                            full_hash(s.id.wrapping_mul(256 * RING_SCALE).wrapping_add(node));
                        self.ring.push((point, i));
                    }
                }
                self.ring.sort_unstable();
            }
        } else if !same_weights || self.table.is_empty() {
            self.table = weighted_table(v);
        }
    }

    fn choose(
        &self,
        v: &View,
        client: Option<IpAddr>,
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let key = client.map(source_key).unwrap_or(0);
        // One eligible server: no hashing, as HAProxy.
        let key = if self.avalanche && v.eligible.len() > 1 {
            full_hash(key)
        } else {
            key
        };
        if self.consistent {
            self.ring_lookup(key, skip)
        } else {
            let n = self.table.len();
            (0..n)
                .map(|k| self.table[(key as usize + k) % n] as usize)
                .find(|&i| !skip(i))
        }
    }

    /// The ring point closest to `key`, before or after it (HAProxy's chash);
    /// past a skipped server, the next points clockwise.
    fn ring_lookup(&self, key: u32, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.ring.len();
        if n == 0 {
            return None;
        }
        let next = self.ring.partition_point(|&(p, _)| p < key) % n;
        let prev = (next + n - 1) % n;
        let dn = self.ring[next].0.wrapping_sub(key);
        let dp = key.wrapping_sub(self.ring[prev].0);
        let start = if dp <= dn { prev } else { next };
        (0..n)
            .map(|k| self.ring[(start + k) % n].1 as usize)
            .find(|&i| !skip(i))
    }
}

/// leastconn: the members ordered by connections per unit of weight, then by
/// when they were last chosen (among equals, the one chosen longest ago goes
/// next).
#[derive(Debug, Default)]
struct LeastConn {
    /// (key, last pick, member) in order, and each member's entry.
    order: BTreeSet<(u64, u64, u32)>,
    entry: Vec<Option<(u64, u64)>>,
}

impl LeastConn {
    fn rebuild(&mut self, v: &View, load: &[u32]) {
        self.order.clear();
        self.entry = vec![None; v.members.len()];
        for i in 0..v.members.len() {
            self.place(v, load, i, 0);
        }
    }

    fn place(&mut self, v: &View, load: &[u32], i: usize, seq: u64) {
        if let Some((k, s)) = self.entry[i].take() {
            self.order.remove(&(k, s, i as u32));
        }
        let w = v.members[i].weight;
        if w > 0 {
            let k = lc_key(load[i], w);
            self.order.insert((k, seq, i as u32));
            self.entry[i] = Some((k, seq));
        }
    }

    fn last_pick(&self, i: usize) -> u64 {
        self.entry[i].map_or(0, |(_, s)| s)
    }

    fn choose(&self, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.order
            .iter()
            .map(|&(_, _, i)| i as usize)
            .find(|&i| !skip(i))
    }
}

/// first: the eligible member with the lowest id that has a free slot.
#[derive(Debug, Default)]
struct First {
    by_id: Vec<u32>,
}

impl First {
    fn rebuild(&mut self, v: &View) {
        self.by_id = v.eligible.clone();
        self.by_id.sort_by_key(|&i| (v.members[i as usize].id, i));
    }

    fn choose(&self, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.by_id.iter().map(|&i| i as usize).find(|&i| !skip(i))
    }
}

/// random(n): `draws` weighted random servers, the least loaded of them kept
/// (power of n choices). Draws are exact weighted picks (a binary search in
/// the running sums), so one draw honours the weights precisely.
#[derive(Debug)]
struct Random {
    draws: u32,
    /// Running sums of the eligible members' weights.
    cum: Vec<u64>,
    rng: u64,
}

impl Random {
    fn new(draws: u32) -> Self {
        Self {
            draws: draws.max(1),
            cum: Vec::new(),
            // Seeded per process: random balancing must not repeat across runs.
            rng: (std::process::id() as u64) << 32 | 0x9e37_79b9,
        }
    }

    fn rebuild(&mut self, v: &View) {
        let mut acc = 0;
        self.cum = v
            .eligible
            .iter()
            .map(|&i| {
                acc += v.members[i as usize].weight as u64;
                acc
            })
            .collect();
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: fast, and good enough to spread draws.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn choose(
        &mut self,
        v: &View,
        skip: &dyn Fn(usize) -> bool,
        served: &dyn Fn(usize) -> u32,
    ) -> Option<usize> {
        if v.total_weight == 0 {
            return None;
        }
        let key = |i: usize| lc_key(served(i), v.members[i].weight);
        let mut best: Option<usize> = None;
        // Skipped (full) draws are drawn again, a bounded number of times.
        let mut budget = self.draws * 8;
        let mut taken = 0;
        while taken < self.draws && budget > 0 {
            budget -= 1;
            let r = self.next() % v.total_weight;
            let i = v.eligible[self.cum.partition_point(|&c| c <= r)] as usize;
            if skip(i) {
                continue;
            }
            taken += 1;
            if best.is_none_or(|b| key(i) < key(b)) {
                best = Some(i);
            }
        }
        best.or_else(|| v.eligible.iter().map(|&i| i as usize).find(|&i| !skip(i)))
    }
}

/// One type per algorithm, each with the structure its pick needs.
#[derive(Debug)]
enum Kind {
    RoundRobin(RoundRobin),
    StaticRr(StaticRr),
    Source(Source),
    LeastConn(LeastConn),
    First(First),
    Random(Random),
}

/// Per-backend balancing state. Built from the members once per change
/// ([`Balancer::set_members`]), so that a pick is O(1) or O(log n): a stride
/// schedule (roundrobin), a weighted table (static-rr, map-based hash), a hash
/// ring (consistent), an ordered set (leastconn), prefix sums (random).
#[derive(Debug)]
pub struct Balancer {
    algo: Algo,
    view: View,
    /// Each member's connections (+ queued ones), as last told.
    load: Vec<u32>,
    picks: u64,
    kind: Kind,
}

impl Balancer {
    pub fn new(algo: Algo) -> Self {
        let kind = match algo {
            Algo::RoundRobin => Kind::RoundRobin(RoundRobin::default()),
            Algo::StaticRr => Kind::StaticRr(StaticRr::default()),
            Algo::Source {
                consistent,
                avalanche,
            } => Kind::Source(Source {
                consistent,
                avalanche,
                ..Source::default()
            }),
            Algo::LeastConn => Kind::LeastConn(LeastConn::default()),
            Algo::First => Kind::First(First::default()),
            Algo::Random { draws } => Kind::Random(Random::new(draws)),
        };
        Self {
            algo,
            view: View::default(),
            load: Vec::new(),
            picks: 0,
            kind,
        }
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    pub fn members(&self) -> &[Member] {
        &self.view.members
    }

    /// Takes a new view of the servers (O(n log n)); what each algorithm keeps
    /// across changes follows HAProxy: round robin keeps each server's place,
    /// static-rr keeps its table while the set of eligible servers is the same.
    pub fn set_members(&mut self, m: &[Member]) {
        let old = std::mem::replace(&mut self.view.members, m.to_vec());
        let n = m.len();
        self.load.resize(n, 0);
        self.view.eligible = (0..n as u32)
            .filter(|&i| m[i as usize].weight > 0)
            .collect();
        self.view.total_weight = m.iter().map(|s| s.weight as u64).sum();
        let same_set = old.len() == n
            && old
                .iter()
                .zip(m)
                .all(|(a, b)| (a.weight > 0) == (b.weight > 0));
        let same_weights = old.len() == n
            && old
                .iter()
                .zip(m)
                .all(|(a, b)| a.weight == b.weight && a.id == b.id);
        let v = &self.view;
        match &mut self.kind {
            Kind::RoundRobin(k) => k.rebuild(v, &old),
            Kind::StaticRr(k) => k.rebuild(v, same_set),
            Kind::Source(k) => k.rebuild(v, same_weights),
            Kind::LeastConn(k) => k.rebuild(v, &self.load),
            Kind::First(k) => k.rebuild(v),
            Kind::Random(k) => k.rebuild(v),
        }
    }

    /// Member `i` now serves `load` connections (+ queued ones): reorders
    /// leastconn. The other algorithms read loads at pick time.
    pub fn set_load(&mut self, i: usize, load: u32) {
        if i >= self.load.len() || self.load[i] == load {
            return;
        }
        self.load[i] = load;
        if let Kind::LeastConn(k) = &mut self.kind {
            let seq = k.last_pick(i);
            k.place(&self.view, &self.load, i, seq);
        }
    }

    /// Chooses a member for a client (`client` is used by `source`).
    /// `served(i)` is member i's live connection count: a member at its
    /// maxconn is passed over. `avoid` (a redispatch) is passed over too
    /// unless nothing else can take the connection. None: nobody can.
    pub fn pick_live(
        &mut self,
        client: Option<IpAddr>,
        avoid: Option<usize>,
        served: &dyn Fn(usize) -> u32,
    ) -> Option<usize> {
        self.picks += 1;
        let members = &self.view.members;
        let full = |i: usize| {
            let m = members[i].maxconn;
            m > 0 && served(i) >= m
        };
        let mut chosen = None;
        if let Some(a) = avoid {
            chosen = Self::choose(
                &mut self.kind,
                &self.view,
                client,
                &|i| i == a || full(i),
                served,
            );
        }
        if chosen.is_none() {
            chosen = Self::choose(&mut self.kind, &self.view, client, &full, served);
        }
        if let (Some(i), Kind::LeastConn(k)) = (chosen, &mut self.kind) {
            // Among equal keys, the one chosen longest ago goes next.
            k.place(&self.view, &self.load, i, self.picks);
        }
        chosen
    }

    fn choose(
        kind: &mut Kind,
        v: &View,
        client: Option<IpAddr>,
        skip: &dyn Fn(usize) -> bool,
        served: &dyn Fn(usize) -> u32,
    ) -> Option<usize> {
        match kind {
            Kind::RoundRobin(k) => k.choose(v, skip),
            Kind::StaticRr(k) => k.choose(skip),
            Kind::Source(k) => k.choose(v, client, skip),
            Kind::LeastConn(k) => k.choose(skip),
            Kind::First(k) => k.choose(skip),
            Kind::Random(k) => k.choose(v, skip, served),
        }
    }

    /// The slice form: takes the candidates as the new members when they
    /// changed (O(n)), then picks.
    #[cfg(test)]
    pub fn pick(&mut self, c: &[Candidate], client: Option<IpAddr>) -> Option<usize> {
        let members: Vec<Member> = c
            .iter()
            .map(|s| Member {
                weight: s.weight,
                maxconn: s.maxconn,
                id: s.id,
            })
            .collect();
        if members != self.view.members {
            self.set_members(&members);
        }
        for (i, s) in c.iter().enumerate() {
            self.set_load(i, s.served + s.queued);
        }
        self.pick_live(client, None, &|i| c[i].served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const ALL_ALGOS: [Algo; 7] = [
        Algo::RoundRobin,
        Algo::StaticRr,
        Algo::LeastConn,
        Algo::First,
        Algo::Source {
            consistent: true,
            avalanche: true,
        },
        Algo::Source {
            consistent: false,
            avalanche: false,
        },
        Algo::Random { draws: 2 },
    ];

    fn servers(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Candidate {
                weight: w,
                id: i as u32 + 1,
                ..Default::default()
            })
            .collect()
    }

    fn shares(algo: Algo, weights: &[u32], n: usize) -> Vec<f64> {
        let c = servers(weights);
        let mut b = Balancer::new(algo);
        let mut counts = vec![0usize; c.len()];
        for k in 0..n {
            let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k as u32 * 7919));
            counts[b.pick(&c, Some(client)).unwrap()] += 1;
        }
        counts.iter().map(|&x| x as f64 / n as f64).collect()
    }

    fn within_one_percent(algo: Algo, weights: &[u32]) {
        let total: u32 = weights.iter().sum();
        let got = shares(algo, weights, 100_000);
        for (i, &w) in weights.iter().enumerate() {
            let want = w as f64 / total as f64;
            assert!(
                (got[i] - want).abs() <= 0.01,
                "{algo:?}: server {i} got {:.4}, want {want:.4}",
                got[i]
            );
        }
    }

    #[test]
    fn weighted_distributions_match_weights() {
        let w = [1, 2, 3, 10, 0, 4];
        within_one_percent(Algo::RoundRobin, &w);
        within_one_percent(Algo::StaticRr, &w);
        within_one_percent(Algo::Random { draws: 1 }, &w);
        within_one_percent(
            Algo::Source {
                consistent: false,
                avalanche: true,
            },
            &w,
        );
    }

    #[test]
    fn roundrobin_interleaves_and_follows_weight_changes() {
        let mut b = Balancer::new(Algo::RoundRobin);
        let c = servers(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7 * 20).map(|_| b.pick(&c, None).unwrap()).collect();
        for round in picks.chunks(7) {
            let n0 = round.iter().filter(|&&i| i == 0).count();
            assert_eq!(n0, 5, "{round:?}");
        }
        // Smooth: the heavy server never runs more than 3 times in a row.
        let longest = picks.split(|&i| i != 0).map(|run| run.len()).max().unwrap();
        assert!(longest <= 3, "{picks:?}");
        // A runtime weight change applies from the next pick on.
        let c = servers(&[1, 1, 1]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[b.pick(&c, None).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&n| (99..=101).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn full_servers_are_passed_over_by_every_algorithm() {
        for algo in ALL_ALGOS {
            let mut c = servers(&[3, 1, 1, 1]);
            for s in &mut c {
                s.maxconn = 1;
            }
            c[0].served = 1;
            c[2].served = 1;
            let mut b = Balancer::new(algo);
            for k in 0..200u32 {
                let client = Some(IpAddr::V4(Ipv4Addr::from(k.wrapping_mul(2_654_435_761))));
                let i = b.pick(&c, client).unwrap();
                assert!(i == 1 || i == 3, "{algo:?} picked full server {i}");
            }
            c[1].served = 1;
            c[3].served = 1;
            assert_eq!(b.pick(&c, None), None, "{algo:?}");
        }
    }

    #[test]
    fn leastconn_picks_a_minimal_key_and_rotates_ties() {
        let mut c = servers(&[1, 1, 2]);
        c[0].served = 3;
        c[1].served = 1;
        c[2].served = 2; // key (2+1)*256/2 = 384 vs (1+1)*256 = 512
        let mut b = Balancer::new(Algo::LeastConn);
        assert_eq!(b.pick(&c, None), Some(2));
        // Equal keys: round robin among them.
        let c = servers(&[1, 1, 1]);
        let picks: Vec<_> = (0..6).map(|_| b.pick(&c, None).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        // Random loads: the pick always has the minimal key.
        let mut rng = 1u64;
        for _ in 0..1000 {
            let c: Vec<Candidate> = (0..20)
                .map(|i| {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                    Candidate {
                        weight: 1 + (rng >> 60) as u32,
                        served: (rng >> 40) as u32 % 50,
                        queued: (rng >> 20) as u32 % 3,
                        id: i,
                        ..Default::default()
                    }
                })
                .collect();
            let i = b.pick(&c, None).unwrap();
            let min = c.iter().map(|s| s.load_key()).min().unwrap();
            assert_eq!(c[i].load_key(), min);
        }
    }

    #[test]
    fn first_takes_lowest_id_with_a_free_slot() {
        let mut c = servers(&[1, 1, 1]);
        for s in &mut c {
            s.maxconn = 2;
        }
        c[0].id = 30;
        c[1].id = 10;
        c[2].id = 20;
        let mut b = Balancer::new(Algo::First);
        assert_eq!(b.pick(&c, None), Some(1));
        c[1].served = 2;
        assert_eq!(b.pick(&c, None), Some(2));
        c[2].served = 2;
        assert_eq!(b.pick(&c, None), Some(0));
        c[0].served = 2;
        assert_eq!(b.pick(&c, None), None);
    }

    #[test]
    fn consistent_hashing_moves_few_keys_when_a_server_leaves() {
        let algo = Algo::Source {
            consistent: true,
            avalanche: true,
        };
        let c = servers(&[1; 10]);
        let mut gone = c.clone();
        gone[3].weight = 0;
        let (mut a, mut b) = (Balancer::new(algo), Balancer::new(algo));
        let n = 100_000;
        let mut moved = 0;
        for k in 0..n {
            let client = Some(IpAddr::V4(Ipv4Addr::from(
                (k as u32).wrapping_mul(2_654_435_761),
            )));
            let before = a.pick(&c, client).unwrap();
            let after = b.pick(&gone, client).unwrap();
            if before != after {
                assert_eq!(before, 3, "a key moved between two servers that stayed");
                moved += 1;
            }
        }
        let limit = n as f64 * (1.0 / 10.0 + 0.02);
        assert!((moved as f64) <= limit, "{moved} of {n} keys moved");
    }

    #[test]
    fn source_hash_is_stable_across_instances() {
        let algo = Algo::Source {
            consistent: false,
            avalanche: false,
        };
        let c = servers(&[1, 2, 1]);
        let client = Some("192.0.2.7".parse().unwrap());
        let first = Balancer::new(algo).pick(&c, client);
        for _ in 0..10 {
            assert_eq!(Balancer::new(algo).pick(&c, client), first);
        }
    }

    #[test]
    fn random_prefers_the_less_loaded_draw() {
        let mut c = servers(&[1, 1]);
        c[0].served = 100;
        let mut b = Balancer::new(Algo::Random { draws: 2 });
        let n = 10_000;
        let to_idle = (0..n).filter(|_| b.pick(&c, None) == Some(1)).count();
        // With two draws the loaded server wins only when both draws hit it (1/4).
        assert!(to_idle > n * 70 / 100, "{to_idle} of {n}");
    }

    #[test]
    fn nothing_eligible_means_none() {
        let c = servers(&[0, 0]);
        for algo in ALL_ALGOS {
            assert_eq!(Balancer::new(algo).pick(&c, None), None, "{algo:?}");
        }
    }

    #[test]
    fn hash_functions_match_reference_values() {
        // Values computed with HAProxy's C implementations (src/hash.c).
        assert_eq!(hash_sdbm(b""), 0);
        assert_eq!(hash_djb2(b""), 5381);
        assert_eq!(hash_crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(hash_djb2(b"a"), 5381 * 33 + 97);
        assert_eq!(hash_sdbm(b"a"), 97);
        assert_eq!(HashFn::Wt6.hash(b"abc"), hash_wt6(b"abc"));
        assert_ne!(hash_wt6(b"abc"), hash_wt6(b"abd"));
    }
}
