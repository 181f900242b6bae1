//! Higher-level helpers shared by the integration tests.

use crate::lb::Lb;
use crate::netns::Netns;
use crate::postgres::{psql, Postgres};
use crate::topology::{Topology, BACKENDS_V4, BACKENDS_V6};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::time::Duration;

pub const PG_NODES: [&str; 3] = ["pgsql_node1", "pgsql_node2", "pgsql_node3"];

/// Three PostgreSQL instances in the srv namespace on the backend addresses
/// (IPv4 or IPv6), port 5432.
pub fn pg_trio(topo: &Topology, v6: bool) -> Result<Vec<Postgres>> {
    let b = if v6 { BACKENDS_V6 } else { BACKENDS_V4 };
    Postgres::trio(&topo.srv, [&[b[0]], &[b[1]], &[b[2]]])
}

/// Wait until every named server is in `state`.
pub fn wait_all(lb: &Lb, names: &[&str], state: &str, timeout: Duration) -> Result<Duration> {
    let mut worst = Duration::ZERO;
    let start = std::time::Instant::now();
    for n in names {
        let left = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(200));
        worst = worst.max(lb.wait_state(n, state, left)?);
    }
    Ok(start.elapsed().max(worst))
}

/// name -> total_conns, once settled: lb publishes its counters to the
/// pinned maps periodically (every 200 ms), so read until two reads 300 ms
/// apart agree (at most ~3 s).
pub fn total_conns(lb: &Lb) -> Result<BTreeMap<String, u64>> {
    let read = || -> Result<BTreeMap<String, u64>> {
        Ok(lb
            .show_servers()?
            .into_iter()
            .map(|r| (r.name, r.total_conns))
            .collect())
    };
    let mut prev = read()?;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        let cur = read()?;
        if cur == prev {
            return Ok(cur);
        }
        prev = cur;
    }
    Ok(prev)
}

/// `n` sequential single psql connections running `select 42`; every one
/// must print 42.
pub fn psql_42_many(ns: &Netns, host: &str, port: u16, n: usize) -> Result<()> {
    for i in 0..n {
        let r = psql(ns, host, port, "select 42")?;
        if !r.ok || r.stdout != "42" {
            bail!(
                "psql #{i} via {host}:{port}: ok={} stdout={:?} stderr={:?}",
                r.ok,
                r.stdout,
                r.stderr
            );
        }
    }
    Ok(())
}

/// Per-server total_conns growth between two snapshots, for `names`.
pub fn deltas(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    names: &[&str],
) -> Vec<i64> {
    names
        .iter()
        .map(|n| *after.get(*n).unwrap_or(&0) as i64 - *before.get(*n).unwrap_or(&0) as i64)
        .collect()
}

/// Round robin over `names` for `n` new connections: the deltas add up to
/// `n` and are within ±1 of each other.
pub fn assert_round_robin(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    names: &[&str],
    n: i64,
) -> Result<()> {
    let d = deltas(before, after, names);
    println!("[lb-tests] round robin: total_conns growth per server {names:?} = {d:?} (for {n} connections)");
    let sum: i64 = d.iter().sum();
    let (min, max) = (
        d.iter().min().copied().unwrap_or(0),
        d.iter().max().copied().unwrap_or(0),
    );
    if sum != n || max - min > 1 {
        bail!("not round robin: growth {d:?} (sum {sum}, expected {n}, spread {} > 1)\nbefore {before:?}\nafter {after:?}", max - min);
    }
    Ok(())
}
