//! `data-path` per frontend: a `copy` frontend's connections stay on the
//! userspace copy however long they live, a `splice` frontend's move to the
//! kernel path, both byte-exact, in one daemon.

use lb_tests::traffic::{connect, pattern_fill, Verifier};
use lb_tests::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SEED: u64 = 0x6461_7461;
const LEN: usize = 4 << 20;

/// Sends LEN pattern bytes through `port`, reads them back from the echo
/// server, checks them.
fn echo_through(topo: &Topology, port: u16) -> anyhow::Result<()> {
    topo.in_client(|| -> anyhow::Result<()> {
        let s = connect(sa(LB_V4, port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut w = s.try_clone()?;
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; LEN];
            pattern_fill(SEED, 0, &mut buf);
            w.write_all(&buf)?;
            w.shutdown(std::net::Shutdown::Write)
        });
        let mut r = s;
        let mut v = Verifier::new(SEED);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            v.feed(&buf[..n]);
        }
        writer.join().expect("writer")?;
        v.check(LEN as u64)
    })
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn copy_and_splice_frontends_side_by_side() {
    run_test(|| {
        let topo = Topology::new("dpath")?;
        let stop = Arc::new(AtomicBool::new(false));
        lb_tests::traffic::serve(
            topo.srv.name(),
            &[sa(BACKENDS_V4[0], 9820)],
            stop.clone(),
            |mut s, _| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let mut w = match s.try_clone() {
                    Ok(w) => w,
                    Err(_) => return,
                };
                let _ = std::io::copy(&mut s, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Write);
            },
        )?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend spliced\n    bind {}\n    default_backend be\n\
             frontend copied\n    bind {}\n    data-path copy\n    default_backend be\n\
             backend be\n    server s1 {}\n",
            hp(LB_V4, 9821),
            hp(LB_V4, 9822),
            hp(BACKENDS_V4[0], 9820)
        );
        let lb = topo.start_lb(&cfg, &[])?;
        echo_through(&topo, 9821)?;
        echo_through(&topo, 9822)?;
        let mut last = String::new();
        let settled = util::wait_until(
            "one spliced and one copied connection counted",
            Duration::from_secs(5),
            Duration::from_millis(100),
            || {
                last = lb.show_stats()?;
                let st: serde_json::Value = serde_json::from_str(&last)?;
                Ok(st["conn_spliced"] == 1 && st["conn_copied"] == 1)
            },
        );
        stop.store(true, Ordering::Relaxed);
        println!("[lb-tests] data-path: 4 MiB echoed through each frontend; stats {last}");
        settled.map(|_| ())
    });
}
