//! The pick tables `lb_nat` reads on a SYN, built from the same members
//! (eligible servers and effective weights) the splice path balances over.
//! Pure functions: plain `cargo test` checks the ratios and how few slots move.
use lb_common::{
    NatBackend, NAT_ALGO_FIRST, NAT_ALGO_LEAST, NAT_ALGO_RANDOM, NAT_ALGO_RR, NAT_ALGO_SOURCE,
    NAT_PICK_SLOTS, NAT_SCAN_SERVERS,
};

use crate::state::balance::{Algo, Member};

/// One server as the table sees it: its global index, its member view, and
/// the name that seeds its Maglev permutation (stable across restarts).
#[derive(Clone, Debug)]
pub struct Slot<'a> {
    pub idx: u32,
    pub member: Member,
    pub name: &'a str,
}

/// The header and the table of one backend.
pub fn build(algo: Algo, servers: &[Slot<'_>]) -> (NatBackend, Vec<u32>) {
    let mut be = NatBackend::default();
    let eligible: Vec<&Slot<'_>> = servers.iter().filter(|s| s.member.weight > 0).collect();
    match algo {
        Algo::LeastConn | Algo::First => {
            be.algo = if algo == Algo::First {
                NAT_ALGO_FIRST
            } else {
                NAT_ALGO_LEAST
            };
            let mut order = eligible.clone();
            if algo == Algo::First {
                order.sort_by_key(|s| s.member.id);
            }
            for (i, s) in order.iter().take(NAT_SCAN_SERVERS as usize).enumerate() {
                be.scan[i] = s.idx;
                be.weights[i] = s.member.weight;
            }
            be.scan_len = order.len().min(NAT_SCAN_SERVERS as usize) as u32;
            (be, Vec::new())
        }
        Algo::Source {
            consistent: true, ..
        } => {
            be.algo = NAT_ALGO_SOURCE;
            let t = maglev(&eligible, NAT_PICK_SLOTS as usize);
            be.slots = t.len() as u32;
            (be, t)
        }
        _ => {
            be.algo = match algo {
                Algo::Random { .. } => NAT_ALGO_RANDOM,
                Algo::Source { .. } => NAT_ALGO_SOURCE,
                _ => NAT_ALGO_RR,
            };
            let t = interleave(&eligible, NAT_PICK_SLOTS as usize);
            be.slots = t.len() as u32;
            (be, t)
        }
    }
}

/// The weights scaled down (each eligible server keeps at least 1) until
/// they sum to at most `max`.
fn fit(weights: &[u32], max: usize) -> Vec<u64> {
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    if total as usize <= max {
        return weights.iter().map(|&w| w as u64).collect();
    }
    let n = weights.len() as u64;
    let room = (max as u64).saturating_sub(n);
    weights
        .iter()
        .map(|&w| 1 + (w as u64 - 1) * room / total.max(1))
        .collect()
}

/// Smooth weighted round robin (nginx's): each server's turns spread evenly
/// over one cycle of sum(weights) slots, so consecutive SYNs walk the
/// servers in the ratio of their weights.
pub fn interleave(servers: &[&Slot<'_>], max: usize) -> Vec<u32> {
    if servers.is_empty() {
        return Vec::new();
    }
    let w = fit(
        &servers.iter().map(|s| s.member.weight).collect::<Vec<_>>(),
        max,
    );
    let total: i64 = w.iter().map(|&x| x as i64).sum();
    let mut cur = vec![0i64; servers.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..servers.len() {
            cur[i] += w[i] as i64;
            if cur[i] > cur[best] {
                best = i;
            }
        }
        cur[best] -= total;
        out.push(servers[best].idx);
    }
    out
}

fn fnv(name: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Maglev (Eisenbud et al., NSDI'16) with weights: every server walks its own
/// permutation of the `m` slots (m prime) and claims the next free one when
/// its credit allows, so the table holds each server in proportion to its
/// weight and a server added or removed moves about 1/n of the slots.
pub fn maglev(servers: &[&Slot<'_>], m: usize) -> Vec<u32> {
    if servers.is_empty() {
        return Vec::new();
    }
    let m64 = m as u64;
    let perm: Vec<(u64, u64)> = servers
        .iter()
        .map(|s| {
            let offset = fnv(s.name, 0x5157) % m64;
            let skip = fnv(s.name, 0xa3c1) % (m64 - 1) + 1;
            (offset, skip)
        })
        .collect();
    let maxw = servers.iter().map(|s| s.member.weight).max().unwrap_or(1) as u64;
    let mut next = vec![0u64; servers.len()];
    let mut credit = vec![0u64; servers.len()];
    let mut table = vec![u32::MAX; m];
    let mut filled = 0;
    // Each round, every server earns weight/maxw of a claim; bounded by the
    // table size times the weight spread.
    let rounds = m as u64 * maxw + 1;
    'rounds: for _ in 0..rounds {
        for (i, s) in servers.iter().enumerate() {
            credit[i] += s.member.weight as u64;
            if credit[i] < maxw {
                continue;
            }
            credit[i] -= maxw;
            let (offset, skip) = perm[i];
            loop {
                let c = ((offset + next[i] * skip) % m64) as usize;
                next[i] += 1;
                if table[c] == u32::MAX {
                    table[c] = s.idx;
                    filled += 1;
                    break;
                }
            }
            if filled == m {
                break 'rounds;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(weights: &[u32]) -> (Vec<String>, Vec<Member>) {
        let names = (0..weights.len()).map(|i| format!("srv{i}")).collect();
        let members = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Member {
                weight: w,
                maxconn: 0,
                id: i as u32 + 1,
            })
            .collect();
        (names, members)
    }

    fn view<'a>(names: &'a [String], members: &[Member]) -> Vec<Slot<'a>> {
        names
            .iter()
            .zip(members)
            .enumerate()
            .map(|(i, (n, m))| Slot {
                idx: i as u32,
                member: *m,
                name: n,
            })
            .collect()
    }

    #[test]
    fn round_robin_walks_servers_in_turn() {
        let (n, m) = slots(&[1, 1, 1]);
        let (be, t) = build(Algo::RoundRobin, &view(&n, &m));
        assert_eq!(be.algo, NAT_ALGO_RR);
        assert_eq!(be.slots, 3);
        let mut sorted = t.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2]);
    }

    #[test]
    fn weights_keep_their_ratio_and_spread() {
        let (n, m) = slots(&[1, 2, 3]);
        let (_, t) = build(Algo::StaticRr, &view(&n, &m));
        assert_eq!(t.len(), 6);
        let count = |i| t.iter().filter(|&&x| x == i).count();
        assert_eq!((count(0), count(1), count(2)), (1, 2, 3));
        // Smooth: the heaviest never takes three turns in a row.
        assert!(!t.windows(3).any(|w| w.iter().all(|&x| x == 2)), "{t:?}");
    }

    #[test]
    fn ineligible_servers_get_no_slot() {
        let (n, m) = slots(&[1, 0, 1]);
        let (be, t) = build(Algo::RoundRobin, &view(&n, &m));
        assert_eq!(be.slots, 2);
        assert!(!t.contains(&1));
        let (n, m) = slots(&[0, 0]);
        let (be, t) = build(Algo::RoundRobin, &view(&n, &m));
        assert_eq!((be.slots, t.len()), (0, 0));
    }

    #[test]
    fn large_weights_are_scaled_to_the_table() {
        let (n, m) = slots(&[256; 40]);
        let (be, t) = build(Algo::RoundRobin, &view(&n, &m));
        assert!(be.slots as usize <= NAT_PICK_SLOTS as usize);
        assert_eq!(t.len(), be.slots as usize);
        for i in 0..40u32 {
            assert!(t.contains(&i));
        }
    }

    #[test]
    fn maglev_fills_every_slot_in_weight_ratio() {
        let (n, m) = slots(&[1, 1, 2]);
        let v = view(&n, &m);
        let (be, t) = build(
            Algo::Source {
                consistent: true,
                avalanche: true,
            },
            &v,
        );
        assert_eq!(be.algo, NAT_ALGO_SOURCE);
        assert_eq!(t.len(), NAT_PICK_SLOTS as usize);
        assert!(t.iter().all(|&x| x < 3));
        let share = |i| t.iter().filter(|&&x| x == i).count() as f64 / t.len() as f64;
        assert!((share(2) - 0.5).abs() < 0.02, "{}", share(2));
        assert!((share(0) - 0.25).abs() < 0.02, "{}", share(0));
    }

    #[test]
    fn maglev_moves_few_slots_when_a_server_goes() {
        let (n, m) = slots(&[1; 10]);
        let v = view(&n, &m);
        let all: Vec<&Slot<'_>> = v.iter().collect();
        let before = maglev(&all, NAT_PICK_SLOTS as usize);
        let without: Vec<&Slot<'_>> = v.iter().filter(|s| s.idx != 4).collect();
        let after = maglev(&without, NAT_PICK_SLOTS as usize);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 4 && b != a)
            .count();
        // Only the removed server's ~10% must move; Maglev moves a little more.
        assert!(
            moved < NAT_PICK_SLOTS as usize / 20,
            "{moved} slots of surviving servers moved"
        );
    }

    #[test]
    fn leastconn_and_first_list_eligible_servers() {
        let (n, mut m) = slots(&[3, 0, 1]);
        m[0].id = 9;
        let (be, t) = build(Algo::First, &view(&n, &m));
        assert!(t.is_empty());
        assert_eq!(be.algo, NAT_ALGO_FIRST);
        assert_eq!(be.scan_len, 2);
        // `first` goes by id: server 2 (id 3) before server 0 (id 9).
        assert_eq!(&be.scan[..2], &[2, 0]);
        let (be, _) = build(Algo::LeastConn, &view(&n, &m));
        assert_eq!(be.algo, NAT_ALGO_LEAST);
        assert_eq!(&be.weights[..2], &[3, 1]);
    }
}
