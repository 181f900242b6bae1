//! lb stopped (SIGSTOP) under 10 spliced downloads: no connection breaks,
//! no byte is lost or altered, and the streams go on at their speed once it
//! runs again. How fast they move *while* it is stopped is printed, not
//! asserted: a direction over its in-flight budget waits for the daemon to
//! copy what the verdict passed (docs/ARCHITECTURE.md, "The in-flight
//! budget": no kernel mechanism resumes it), so today they nearly stall.

use lb_tests::traffic::{connect, pattern_fill, Verifier};
use lb_tests::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PORT: u16 = 9810;
const CLIENTS: usize = 10;
const SEED: u64 = 0x5354_4f50;

fn config() -> String {
    format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind {}\n    default_backend be\n\
         backend be\n    server s1 {}\n",
        hp(LB_V4, PORT),
        hp(BACKENDS_V4[0], PORT)
    )
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Bytes all readers moved during `d`.
fn moved_during(total: &AtomicU64, d: Duration) -> u64 {
    let before = total.load(Ordering::Relaxed);
    std::thread::sleep(d);
    total.load(Ordering::Relaxed) - before
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn spliced_downloads_move_while_lb_is_stopped() {
    run_test(|| {
        let topo = Topology::new("stopped")?;
        let stop = Arc::new(AtomicBool::new(false));
        // The backend streams until the connection fails.
        lb_tests::traffic::serve(
            topo.srv.name(),
            &[sa(BACKENDS_V4[0], PORT)],
            stop.clone(),
            |mut s, _| {
                let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
                let mut buf = vec![0u8; 256 * 1024];
                let mut off = 0u64;
                loop {
                    pattern_fill(SEED, off, &mut buf);
                    if s.write_all(&buf).is_err() {
                        return;
                    }
                    off += buf.len() as u64;
                }
            },
        )?;
        let lb = topo.start_lb(&config(), &[])?;
        let addr = sa(LB_V4, PORT);
        let socks = topo.in_client(|| -> anyhow::Result<Vec<_>> {
            (0..CLIENTS).map(|_| Ok(connect(addr)?)).collect()
        })?;
        let total = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = socks
            .into_iter()
            .map(|mut s| {
                let (total, stop) = (total.clone(), stop.clone());
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut v = Verifier::new(SEED);
                    let mut failed = None;
                    while !stop.load(Ordering::Relaxed) {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                failed = Some("end of stream".to_string());
                                break;
                            }
                            Ok(n) => {
                                v.feed(&buf[..n]);
                                if let Some(at) = v.first_mismatch {
                                    failed = Some(format!("wrong byte at {at}"));
                                    break;
                                }
                                total.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(e) => {
                                failed = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    failed
                })
            })
            .collect();
        // Past the copy phase and the rate sizing.
        std::thread::sleep(Duration::from_secs(1));
        let running = moved_during(&total, Duration::from_secs(2)) / 2;
        signal(lb.pid(), libc::SIGSTOP);
        let t = Instant::now();
        let stopped = moved_during(&total, Duration::from_secs(5)) / 5;
        signal(lb.pid(), libc::SIGCONT);
        let stopped_for = t.elapsed();
        // The PASS backlog of the stopped second drains first.
        std::thread::sleep(Duration::from_millis(500));
        let after = moved_during(&total, Duration::from_secs(2)) / 2;
        stop.store(true, Ordering::Relaxed);
        let errors: Vec<String> = readers
            .into_iter()
            .filter_map(|r| r.join().ok().flatten())
            .collect();
        let stats = lb.show_stats()?;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "[lb-tests] {CLIENTS} downloads: {:.0} MiB/s with lb running, {:.0} MiB/s while it was stopped ({:.1} s), {:.0} MiB/s after; stats {stats}",
            mib(running),
            mib(stopped),
            stopped_for.as_secs_f64(),
            mib(after)
        );
        anyhow::ensure!(errors.is_empty(), "downloads failed: {errors:?}");
        anyhow::ensure!(
            after as f64 >= 0.5 * running as f64,
            "after SIGCONT the downloads moved {:.0} MiB/s, against {:.0} MiB/s before",
            mib(after),
            mib(running)
        );
        Ok(())
    });
}
