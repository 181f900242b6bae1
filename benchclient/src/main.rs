//! `benchclient`: the traffic tools of `cargo xtask bench`, run inside the
//! benchmark's network namespaces (via nsenter).
//!
//! - `server`: the backend. Every connection starts with a 64-byte request;
//!   its first byte picks the mode: `E` (echo) answers 64 bytes and then
//!   waits for the client to close, `S` (stream) writes 64 KiB chunks until
//!   the client goes away (or a byte / time bound).
//! - `short`: short connections: connect, 64-byte `E` request, 64-byte reply,
//!   close, in a loop on several threads; connections/s and setup times.
//! - `hold`: opens N connections (one `E` exchange each, so each is proven
//!   end to end) and keeps them idle until stdin closes.
//! - `slow`: slow readers: `S` connections that read a little, then stop
//!   reading while the server keeps writing.
//!
//! Clients print JSON lines on stdout: `{"event":"ready",...}` once set up
//! (hold, slow), and a final `{"event":"done",...}` with the figures. Every
//! loop is bounded in count and time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

/// Size of a request and of an echo reply.
const MSG: usize = 64;
/// Chunk the streaming mode writes.
const CHUNK: usize = 64 * 1024;
/// A connect or a read that takes longer fails.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(name = "benchclient", about = "Traffic tools of `cargo xtask bench`")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo / streaming backend on every `--listen` address.
    Server {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        /// Exit after this many seconds whatever happens.
        #[arg(long, default_value_t = 3600)]
        max_secs: u64,
        /// Bytes one streaming connection writes at most.
        #[arg(long, default_value_t = 64 << 30)]
        stream_max_bytes: u64,
    },
    /// Short connections: connect, 64 B request, 64 B reply, close.
    Short {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 8)]
        threads: usize,
        #[arg(long)]
        secs: f64,
        /// Stop after this many connections in all.
        #[arg(long, default_value_t = 5_000_000)]
        max_conns: u64,
    },
    /// Open `--conns` connections, one echo each, and hold them idle.
    Hold {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        conns: usize,
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Hold at most this long if stdin stays open.
        #[arg(long, default_value_t = 60)]
        hold_secs: u64,
    },
    /// Slow readers: streaming connections that stop reading.
    Slow {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 4)]
        conns: usize,
        /// Bytes read from each connection before it stops reading.
        #[arg(long, default_value_t = 1 << 20)]
        prime_bytes: u64,
        /// Stop reading for at most this long (less if stdin closes).
        #[arg(long)]
        pause_secs: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    raise_nofile();
    let r = match cli.command {
        Cmd::Server {
            listen,
            max_secs,
            stream_max_bytes,
        } => server(&listen, Duration::from_secs(max_secs), stream_max_bytes),
        Cmd::Short {
            addr,
            threads,
            secs,
            max_conns,
        } => short(addr, threads.clamp(1, 256), secs, max_conns),
        Cmd::Hold {
            addr,
            conns,
            threads,
            hold_secs,
        } => hold(addr, conns, threads.clamp(1, 64), hold_secs),
        Cmd::Slow {
            addr,
            conns,
            prime_bytes,
            pause_secs,
        } => slow(addr, conns.clamp(1, 1024), prime_bytes, pause_secs),
    };
    if let Err(e) = r {
        eprintln!("benchclient: error: {e:#}");
        std::process::exit(1);
    }
}

/// Soft RLIMIT_NOFILE up to the hard limit (thousands of sockets).
fn raise_nofile() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

fn nofile_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        0
    }
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

// ---------------------------------------------------------------- server

fn server(listen: &[SocketAddr], max: Duration, stream_max: u64) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for &a in listen {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("bind {a}"))?;
            tasks.push(tokio::spawn(accept_loop(l, stream_max)));
        }
        eprintln!("benchclient server: listening on {listen:?}");
        tokio::time::sleep(max).await;
        for t in tasks {
            t.abort();
        }
        Ok(())
    })
}

async fn accept_loop(l: tokio::net::TcpListener, stream_max: u64) {
    // Bounded by the server's --max-secs (the runtime stops then).
    loop {
        match l.accept().await {
            Ok((s, _)) => {
                tokio::spawn(serve(s, stream_max));
            }
            Err(e) => {
                // EMFILE and the like: back off, keep serving the others.
                eprintln!("benchclient server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve(mut s: tokio::net::TcpStream, stream_max: u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let mut req = [0u8; MSG];
    if s.read_exact(&mut req).await.is_err() {
        return;
    }
    if req[0] == b'S' {
        let chunk = vec![b's'; CHUNK];
        let mut sent = 0u64;
        while sent < stream_max {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
            sent += CHUNK as u64;
        }
        return;
    }
    let mut reply = [b'r'; MSG];
    reply[0] = req[0];
    if s.write_all(&reply).await.is_err() {
        return;
    }
    // Wait for the client's close (or anything it sends), then close.
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

// ---------------------------------------------------------------- clients

fn request(mode: u8) -> [u8; MSG] {
    let mut r = [b'q'; MSG];
    r[0] = mode;
    r
}

/// Connect with a timeout, no Nagle, bounded reads.
fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// One echo exchange on a connected socket.
fn echo(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(&request(b'E'))?;
    let mut reply = [0u8; MSG];
    s.read_exact(&mut reply)?;
    if reply[0] != b'E' {
        return Err(std::io::Error::other("bad echo reply"));
    }
    Ok(())
}

/// Percentiles of microsecond samples (sorted in place).
fn percentiles(v: &mut [u32]) -> serde_json::Value {
    v.sort_unstable();
    let p = |q: f64| -> Option<u32> {
        if v.is_empty() {
            return None;
        }
        let i = ((q / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        Some(v[i])
    };
    json!({ "p50": p(50.0), "p90": p(90.0), "p99": p(99.0), "max": v.last(), "n": v.len() })
}

/// Samples one thread keeps at most (bounded memory).
const MAX_SAMPLES: usize = 4_000_000;

#[derive(Default)]
struct ShortThread {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    txn_us: Vec<u32>,
    connect_us: Vec<u32>,
}

fn short(addr: SocketAddr, threads: usize, secs: f64, max_conns: u64) -> Result<()> {
    if !(secs > 0.0 && secs <= 3600.0) {
        bail!("--secs must be in (0, 3600]");
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let started = started.clone();
            std::thread::spawn(move || short_thread(addr, deadline, &started, max_conns))
        })
        .collect();
    let mut all = ShortThread::default();
    for h in handles {
        let t = h.join().unwrap_or_default();
        all.ok += t.ok;
        all.errors += t.errors;
        all.first_error = all.first_error.or(t.first_error);
        all.txn_us.extend(t.txn_us);
        all.connect_us.extend(t.connect_us);
    }
    let elapsed = start.elapsed().as_secs_f64();
    emit(json!({
        "event": "done",
        "conns": all.ok,
        "errors": all.errors,
        "first_error": all.first_error,
        "elapsed_s": elapsed,
        "conns_per_s": all.ok as f64 / elapsed,
        "txn_us": percentiles(&mut all.txn_us),
        "connect_us": percentiles(&mut all.connect_us),
    }));
    Ok(())
}

fn short_thread(
    addr: SocketAddr,
    deadline: Instant,
    started: &AtomicU64,
    max_conns: u64,
) -> ShortThread {
    let mut t = ShortThread::default();
    let mut consecutive_errors = 0;
    while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < max_conns {
        let t0 = Instant::now();
        let r = connect(addr).and_then(|mut s| {
            let t1 = t0.elapsed();
            echo(&mut s)?;
            Ok(t1)
        });
        match r {
            Ok(connected) => {
                t.ok += 1;
                consecutive_errors = 0;
                if t.txn_us.len() < MAX_SAMPLES {
                    t.txn_us
                        .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    t.connect_us
                        .push(connected.as_micros().min(u32::MAX as u128) as u32);
                }
            }
            Err(e) => {
                t.errors += 1;
                consecutive_errors += 1;
                t.first_error.get_or_insert_with(|| e.to_string());
                if consecutive_errors >= 100 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    t
}

/// Wait until stdin reaches EOF, at most `limit`.
fn wait_stdin_eof(limit: Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        // Bounded by the process: it exits after `limit` at the latest.
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(limit);
}

fn hold(addr: SocketAddr, conns: usize, threads: usize, hold_secs: u64) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let per = conns.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let n = per.min(conns.saturating_sub(i * per));
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::with_capacity(n);
                for _ in 0..n {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match connect(addr).and_then(|mut s| echo(&mut s).map(|()| s)) {
                        Ok(s) => held.push(s),
                        Err(e) => {
                            // A limit (open files, ports, the balancer's): stop everyone.
                            stop.store(true, Ordering::Relaxed);
                            return (held, Some(e.to_string()));
                        }
                    }
                }
                (held, None)
            })
        })
        .collect();
    let mut held = Vec::with_capacity(conns);
    let mut error = None;
    for h in handles {
        let (s, e) = h.join().unwrap_or_default();
        held.extend(s);
        error = error.or(e);
    }
    emit(json!({
        "event": "ready",
        "established": held.len(),
        "wanted": conns,
        "error": error,
        "open_files_limit": nofile_limit(),
        "setup_s": start.elapsed().as_secs_f64(),
    }));
    wait_stdin_eof(Duration::from_secs(hold_secs));
    let n = held.len();
    drop(held);
    emit(json!({ "event": "done", "established": n }));
    Ok(())
}

fn slow(addr: SocketAddr, conns: usize, prime: u64, pause_secs: u64) -> Result<()> {
    let mut held = Vec::with_capacity(conns);
    let mut buf = vec![0u8; CHUNK];
    for i in 0..conns {
        let mut s = connect(addr).with_context(|| format!("connection {i} to {addr}"))?;
        s.write_all(&request(b'S'))?;
        let mut got = 0u64;
        while got < prime {
            let want = (prime - got).min(buf.len() as u64) as usize;
            let n = s
                .read(&mut buf[..want])
                .with_context(|| format!("priming connection {i}"))?;
            if n == 0 {
                bail!("connection {i} closed after {got} bytes");
            }
            got += n as u64;
        }
        held.push(s);
    }
    emit(json!({ "event": "ready", "conns": held.len(), "primed_bytes": prime }));
    wait_stdin_eof(Duration::from_secs(pause_secs));
    // Closing with unread data resets the connections: the server stops.
    drop(held);
    emit(json!({ "event": "done" }));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_pick_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        let p = super::percentiles(&mut v);
        assert_eq!(p["p50"], 50);
        assert_eq!(p["p99"], 99);
        assert_eq!(p["max"], 100);
        assert!(super::percentiles(&mut []).get("p50").unwrap().is_null());
    }
}
