//! One server choice with 1000 servers, for every algorithm (issue: under 1 us):
//! the balancer's pick over its prepared structures, and the daemon's whole
//! `State::pick` + `State::release` (eligibility, counting, leastconn order).
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use lb_user::state::balance::{Algo, Balancer, Member};
use lb_user::state::State;

const N: u32 = 1000;

fn farm() -> Vec<Member> {
    (0..N)
        .map(|i| Member {
            weight: 1 + i % 7,
            maxconn: 100,
            id: i + 1,
        })
        .collect()
}

/// Live connection counts of the farm: spread, none at its maxconn.
fn served(i: usize) -> u32 {
    (i as u32 * 13) % 50
}

const ALGOS: [(&str, &str, Algo); 7] = [
    ("roundrobin", "roundrobin", Algo::RoundRobin),
    ("static-rr", "static-rr", Algo::StaticRr),
    ("leastconn", "leastconn", Algo::LeastConn),
    ("first", "first", Algo::First),
    (
        "source map-based",
        "source",
        Algo::Source {
            consistent: false,
            avalanche: false,
        },
    ),
    (
        "source consistent",
        "source\n    hash-type consistent sdbm avalanche",
        Algo::Source {
            consistent: true,
            avalanche: true,
        },
    ),
    ("random(2)", "random(2)", Algo::Random { draws: 2 }),
];

fn next_client(k: &mut u32) -> Option<IpAddr> {
    *k = k.wrapping_add(2_654_435_761);
    Some(IpAddr::V4(Ipv4Addr::from(*k)))
}

fn balancer_picks(c: &mut Criterion) {
    let members = farm();
    let mut g = c.benchmark_group("pick among 1000 servers");
    for (name, _, algo) in ALGOS {
        let mut b = Balancer::new(algo);
        // Structures are built when the farm changes, not per pick.
        b.set_members(&members);
        for i in 0..members.len() {
            b.set_load(i, served(i));
        }
        let mut k = 0u32;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let client = next_client(&mut k);
                black_box(b.pick_live(client, None, &served))
            })
        });
    }
    g.finish();
}

fn state_picks(c: &mut Criterion) {
    let mut g = c.benchmark_group("State::pick + release, 1000 servers");
    for (name, balance, _) in ALGOS {
        let mut cfg = format!(
            "frontend f\n    bind 127.0.0.1:1\n    default_backend b\nbackend b\n    balance {balance}\n"
        );
        for i in 0..N {
            let w = 1 + i % 7;
            cfg += &format!(
                "    server s{i} 127.0.0.1:{} weight {w} maxconn 100\n",
                2000 + i
            );
        }
        let cfg = lb_user::config::parse_str(&cfg, std::path::Path::new("bench.cfg")).unwrap();
        let state = State::from_config(&cfg);
        let mut k = 0u32;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let client = next_client(&mut k);
                let s = state.pick(0, client, None).unwrap();
                let idx = s.idx;
                state.release(black_box(idx));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, balancer_picks, state_picks);
criterion_main!(benches);
