//! Server choice, with HAProxy's algorithms and their semantics: weighted smooth
//! round robin (dynamic weights), static round robin, least connections, first
//! available, source hashing (map-based and consistent) and power-of-n random.
//!
//! Pure logic over a slice of [`Candidate`]s, so that plain `cargo test` checks
//! the distributions; the daemon builds the candidates from its server state.
use std::net::IpAddr;

/// What the balancer needs to know about one server at pick time.
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

impl Candidate {
    fn has_slot(&self) -> bool {
        self.maxconn == 0 || self.served < self.maxconn
    }

    /// HAProxy's leastconn key: (served + queued + 1) * 4096 / effective weight
    /// (eweight = weight * 16), i.e. connections per unit of weight.
    fn load_key(&self) -> u64 {
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

/// Per-backend balancing state.
#[derive(Debug)]
pub struct Balancer {
    algo: Algo,
    /// Smooth round robin accumulators (roundrobin; ties of leastconn).
    current: Vec<i64>,
    /// static-rr / map-based hash: a weighted table and the weights it was built for.
    table: Vec<usize>,
    table_weights: Vec<u32>,
    pos: usize,
    /// Consistent hash ring: sorted (point, server) and the weights it was built for.
    ring: Vec<(u32, usize)>,
    ring_weights: Vec<u32>,
    /// leastconn tie-break: pick count at which each server was last chosen.
    last_pick: Vec<u64>,
    picks: u64,
    rng: u64,
}

impl Balancer {
    pub fn new(algo: Algo) -> Self {
        Self {
            algo,
            current: Vec::new(),
            table: Vec::new(),
            table_weights: Vec::new(),
            pos: 0,
            ring: Vec::new(),
            ring_weights: Vec::new(),
            last_pick: Vec::new(),
            picks: 0,
            // Seeded per process: random balancing must not repeat across runs.
            rng: (std::process::id() as u64) << 32 | 0x9e37_79b9,
        }
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    /// Chooses among `c` (indexes into it). `client` is the source address, used
    /// by `source`. None when no candidate is eligible.
    pub fn pick(&mut self, c: &[Candidate], client: Option<IpAddr>) -> Option<usize> {
        self.picks += 1;
        let chosen = match self.algo {
            Algo::RoundRobin => self.smooth_rr(c),
            Algo::StaticRr => self.static_rr(c),
            Algo::LeastConn => self.least_conn(c),
            Algo::First => first(c),
            Algo::Source {
                consistent,
                avalanche,
            } => {
                let key = client.map(source_key).unwrap_or(0);
                // One eligible server: no hashing, as HAProxy.
                let eligible = c.iter().filter(|s| s.weight > 0).count();
                let key = if avalanche && eligible > 1 {
                    full_hash(key)
                } else {
                    key
                };
                if consistent {
                    self.ring_lookup(c, key)
                } else {
                    self.map_lookup(c, key)
                }
            }
            Algo::Random { draws } => self.random(c, draws.max(1)),
        };
        if let Some(i) = chosen {
            if self.last_pick.len() != c.len() {
                self.last_pick = vec![0; c.len()];
            }
            self.last_pick[i] = self.picks;
        }
        chosen
    }

    fn smooth_rr(&mut self, c: &[Candidate]) -> Option<usize> {
        if self.current.len() != c.len() {
            self.current = vec![0; c.len()];
        }
        // One pass, with selects instead of branches so the loop does not
        // mispredict on a mixed farm: add each weight, keep the first maximum.
        // Ineligible servers restart from 0, as nginx's smooth round robin.
        let mut total = 0i64;
        let mut best_v = i64::MIN;
        let mut best_i = usize::MAX;
        for (i, (s, cur)) in c.iter().zip(self.current.iter_mut()).enumerate() {
            let w = s.weight as i64;
            let v = if w == 0 { 0 } else { *cur + w };
            *cur = v;
            total += w;
            let take = w != 0 && v > best_v;
            best_v = if take { v } else { best_v };
            best_i = if take { i } else { best_i };
        }
        if total == 0 {
            return None;
        }
        self.current[best_i] -= total;
        Some(best_i)
    }

    /// A table in which each server appears `weight` times, spread out.
    fn rebuild_table(&mut self, c: &[Candidate]) {
        if c.iter()
            .map(|s| s.weight)
            .eq(self.table_weights.iter().copied())
        {
            return;
        }
        let weights: Vec<u32> = c.iter().map(|s| s.weight).collect();
        let total: u32 = weights.iter().sum();
        let mut acc = vec![0i64; c.len()];
        self.table.clear();
        for _ in 0..total {
            let mut best = None;
            for (i, &w) in weights.iter().enumerate() {
                if w == 0 {
                    continue;
                }
                acc[i] += w as i64;
                if best.is_none_or(|b: usize| acc[i] > acc[b]) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                acc[b] -= total as i64;
                self.table.push(b);
            }
        }
        self.table_weights = weights;
        self.pos = 0;
    }

    /// Weights are taken when the set of eligible servers changes, not on every
    /// weight change: HAProxy's static-rr ignores runtime weight changes too.
    fn static_rr(&mut self, c: &[Candidate]) -> Option<usize> {
        let same_set = c
            .iter()
            .map(|s| s.weight > 0)
            .eq(self.table_weights.iter().map(|&w| w > 0));
        if !same_set {
            self.rebuild_table(c);
        }
        if self.table.is_empty() {
            return None;
        }
        let i = self.table[self.pos % self.table.len()];
        self.pos = (self.pos + 1) % self.table.len();
        Some(i)
    }

    fn map_lookup(&mut self, c: &[Candidate], key: u32) -> Option<usize> {
        self.rebuild_table(c);
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[key as usize % self.table.len()])
    }

    fn rebuild_ring(&mut self, c: &[Candidate]) {
        if c.iter()
            .map(|s| s.weight)
            .eq(self.ring_weights.iter().copied())
        {
            return;
        }
        let weights: Vec<u32> = c.iter().map(|s| s.weight).collect();
        self.ring.clear();
        for (i, s) in c.iter().enumerate() {
            for node in 0..s.weight * RING_SCALE {
                // A server's points depend only on its id and rank, so a server
                // leaving moves only the keys that were on its points.
                let point = full_hash(s.id.wrapping_mul(256 * RING_SCALE).wrapping_add(node));
                self.ring.push((point, i));
            }
        }
        self.ring.sort_unstable();
        self.ring_weights = weights;
    }

    /// The ring point closest to `key`, before or after it (HAProxy's chash).
    fn ring_lookup(&mut self, c: &[Candidate], key: u32) -> Option<usize> {
        self.rebuild_ring(c);
        let n = self.ring.len();
        if n == 0 {
            return None;
        }
        let next = self.ring.partition_point(|&(p, _)| p < key) % n;
        let prev = (next + n - 1) % n;
        let dn = self.ring[next].0.wrapping_sub(key);
        let dp = key.wrapping_sub(self.ring[prev].0);
        Some(if dp <= dn {
            self.ring[prev].1
        } else {
            self.ring[next].1
        })
    }

    fn least_conn(&mut self, c: &[Candidate]) -> Option<usize> {
        if self.last_pick.len() != c.len() {
            self.last_pick = vec![0; c.len()];
        }
        // Minimal connections per unit of weight; among equals the one picked
        // longest ago (round robin). Compared by cross-multiplication: no
        // division per server.
        let mut best: Option<(usize, u64, u64)> = None;
        for (i, s) in c.iter().enumerate() {
            if s.weight == 0 || !s.has_slot() {
                continue;
            }
            let load = s.served as u64 + s.queued as u64 + 1;
            let w = s.weight as u64;
            let better = match best {
                None => true,
                Some((b, bl, bw)) => {
                    let (lhs, rhs) = (load * bw, bl * w);
                    lhs < rhs || (lhs == rhs && self.last_pick[i] < self.last_pick[b])
                }
            };
            if better {
                best = Some((i, load, w));
            }
        }
        best.map(|(i, _, _)| i)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: fast, and good enough to spread draws.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `draws` weighted random servers, keep the least loaded of them (power of
    /// n choices). Draws are exact weighted picks, so one draw honours the weights
    /// precisely.
    fn random(&mut self, c: &[Candidate], draws: u32) -> Option<usize> {
        let total: u64 = c.iter().map(|s| s.weight as u64).sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        for _ in 0..draws {
            let mut r = self.next_random() % total;
            let i = c
                .iter()
                .position(|s| {
                    let w = s.weight as u64;
                    if r < w {
                        true
                    } else {
                        r -= w;
                        false
                    }
                })
                .unwrap_or(0);
            if best.is_none_or(|b| c[i].load_key() < c[b].load_key()) {
                best = Some(i);
            }
        }
        best
    }
}

/// Lowest id with a free slot.
fn first(c: &[Candidate]) -> Option<usize> {
    c.iter()
        .enumerate()
        .filter(|(_, s)| s.weight > 0 && s.has_slot())
        .min_by_key(|(_, s)| s.id)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

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
        for algo in [
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
        ] {
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
