//! One server choice with 1000 servers, for every algorithm (issue: under 1 us).
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use lb_user::balance::{Algo, Balancer, Candidate};

fn farm(n: u32) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            weight: 1 + i % 7,
            served: (i * 13) % 50,
            queued: 0,
            maxconn: 100,
            id: i + 1,
        })
        .collect()
}

fn picks(c: &mut Criterion) {
    let servers = farm(1000);
    let algos = [
        ("roundrobin", Algo::RoundRobin),
        ("static-rr", Algo::StaticRr),
        ("leastconn", Algo::LeastConn),
        ("first", Algo::First),
        (
            "source map-based",
            Algo::Source {
                consistent: false,
                avalanche: false,
            },
        ),
        (
            "source consistent",
            Algo::Source {
                consistent: true,
                avalanche: true,
            },
        ),
        ("random(2)", Algo::Random { draws: 2 }),
    ];
    let mut g = c.benchmark_group("pick among 1000 servers");
    for (name, algo) in algos {
        let mut b = Balancer::new(algo);
        // Tables and rings are built once, when the farm changes: not per pick.
        b.pick(&servers, None);
        let mut k = 0u32;
        g.bench_function(name, |bench| {
            bench.iter(|| {
                k = k.wrapping_add(2_654_435_761);
                let client = Some(IpAddr::V4(Ipv4Addr::from(k)));
                black_box(b.pick(black_box(&servers), client))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, picks);
criterion_main!(benches);
