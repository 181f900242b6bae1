//! `use_backend NAME if|unless COND` on layer-4 facts, end to end: the rule
//! that holds first picks the backend (by destination port, by client
//! address, through a PROXY header's addresses), otherwise the default.
//! Each server answers with the last byte of its address, so the client
//! sees which backend it reached.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::report::run_test;
use lb_tests::*;

/// Which server answered (the last byte of its address), and that the
/// connection then echoes.
fn reached(mut s: TcpStream, prefix: &[u8]) -> Result<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(prefix)?;
    let mut id = [0u8; 1];
    s.read_exact(&mut id)?;
    s.write_all(b"ping")?;
    let mut back = [0u8; 4];
    s.read_exact(&mut back)?;
    ensure!(&back == b"ping", "echo came back as {back:?}");
    Ok(id[0])
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn use_backend_routes_by_l4_acls() {
    run_test(|| {
        let topo = Topology::new("route")?;
        topo.client
            .ip(&["addr", "add", "10.210.1.3/24", "dev", "eth0"])?;
        let addrs: Vec<SocketAddr> = BACKENDS_V4.iter().map(|b| sa(b, 9700)).collect();
        let _stops = lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind {lb}:9700\n    bind {lb}:9701\n    bind {lb}:9702 accept-proxy\n\
             \x20   acl second_port dst_port 9701\n\
             \x20   use_backend two if second_port\n\
             \x20   use_backend three if {{ src 10.210.1.3 192.0.2.0/24 }}\n\
             \x20   default_backend one\n\
             backend one\n    server s1 {b1}:9700\n\
             backend two\n    server s2 {b2}:9700\n\
             backend three\n    server s3 {b3}:9700\n",
            lb = LB_V4,
            b1 = BACKENDS_V4[0],
            b2 = BACKENDS_V4[1],
            b3 = BACKENDS_V4[2],
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let got = topo.in_client(|| -> Result<Vec<u8>> {
            let mut got = Vec::new();
            for (src, port, proxy) in [
                (CLIENT_V4, 9700, ""),
                (CLIENT_V4, 9701, ""),
                ("10.210.1.3", 9700, ""),
                // The second rule holds before the source is looked at.
                ("10.210.1.3", 9701, ""),
                // Rules see the PROXY header's addresses, not the socket's.
                (
                    CLIENT_V4,
                    9702,
                    "PROXY TCP4 192.0.2.7 10.210.1.1 5555 9702\r\n",
                ),
                (
                    "10.210.1.3",
                    9702,
                    "PROXY TCP4 198.51.100.1 10.210.1.1 5555 9701\r\n",
                ),
            ] {
                let s =
                    lb_tests::traffic::connect_from(src, sa(LB_V4, port), Duration::from_secs(3))
                        .with_context(|| format!("{src} -> :{port}"))?;
                got.push(
                    reached(s, proxy.as_bytes()).with_context(|| format!("{src} -> :{port}"))?,
                );
            }
            Ok(got)
        })?;
        println!("[lb-tests] route: servers reached {got:?}");
        ensure!(
            got == [11, 12, 13, 12, 13, 12],
            "use_backend picked servers {got:?}, expected [11, 12, 13, 12, 13, 12]"
        );
        // Sessions count against the backend the rule chose.
        let servers = lb.show_servers()?;
        for (name, want) in [("s1", 1), ("s2", 3), ("s3", 2)] {
            let row = servers
                .iter()
                .find(|r| r.name == name)
                .with_context(|| format!("no {name} in {servers:?}"))?;
            ensure!(
                row.total_conns == want,
                "{name}: {} sessions, expected {want}",
                row.total_conns
            );
        }
        lb.stop()?;
        Ok(())
    })
}
