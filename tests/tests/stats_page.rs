//! HAProxy's stats page from an HTTP-mode `listen` whose only job it is:
//! basic auth and realm, the HTML report, `;csv` (the runtime API's `show
//! stat`, column for column) and `;json`, an admin action through the page's
//! form, `monitor-uri`, a path it does not serve, the Prometheus endpoint
//! (`--metrics`, the same HTTP server), and a look at the page in a real
//! browser (headless Chromium: a screenshot and the DOM it built).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::report::run_test;
use lb_tests::*;

const PORT: u16 = 9720;

/// `curl` in the client namespace: (status, headers, body).
fn curl(topo: &Topology, args: &[&str]) -> Result<(u16, String, String)> {
    let out = topo
        .client
        .cmd("curl")
        .args(["-sS", "-m", "5", "-D", "-", "-o", "-"])
        .args(args)
        .output()
        .context("curl (is curl installed?)")?;
    ensure!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

/// Width and height from a PNG's IHDR.
fn png_size(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() < 24 || &b[..8] != b"\x89PNG\r\n\x1a\n" || &b[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(b[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(b[20..24].try_into().ok()?);
    Some((w, h))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn stats_page_serves_report_csv_json_admin_and_a_browser() {
    run_test(|| {
        let topo = Topology::new("statspg")?;
        let addrs: Vec<std::net::SocketAddr> =
            BACKENDS_V4[..2].iter().map(|b| sa(b, PORT)).collect();
        let _stops = lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             listen stats\n    mode http\n    bind {lb}:8404\n    stats enable\n    stats uri /stats\n\
             \x20   stats refresh 5s\n    stats realm lb\\ test\n    stats auth admin:secret\n\
             \x20   stats admin if {{ src 10.210.1.0/24 }}\n    monitor-uri /healthz\n\
             listen stats_open\n    mode http\n    bind {lb}:8405\n    stats enable\n    stats uri /\n\
             \x20   stats hide-version\n\
             frontend fe\n    bind {lb}:{PORT}\n    default_backend be\n\
             backend be\n    server s1 {b1}:{PORT} check inter 500ms\n    server s2 {b2}:{PORT} check inter 500ms\n",
            lb = LB_V4,
            b1 = BACKENDS_V4[0],
            b2 = BACKENDS_V4[1],
        );
        let metrics = format!("{LB_V4}:9101");
        let lb = topo.start_lb(&cfg, &["--metrics", &metrics])?;
        lb.wait_state("s1", "UP", Duration::from_secs(10))?;
        lb.wait_state("s2", "UP", Duration::from_secs(10))?;
        let base = format!("http://{LB_V4}:8404/stats");

        let (st, head, _) = curl(&topo, &[&base])?;
        ensure!(st == 401, "no credentials: status {st}\n{head}");
        ensure!(
            head.contains("WWW-Authenticate: Basic realm=\"lb test\"")
                || head.contains("www-authenticate: Basic realm=\"lb test\""),
            "realm: {head}"
        );
        let (st, _, _) = curl(&topo, &["-u", "admin:wrong", &base])?;
        ensure!(st == 401, "a wrong password: status {st}");

        let auth = ["-u", "admin:secret"];
        let (st, head, html) = curl(&topo, &[&auth[..], &[base.as_str()]].concat())?;
        ensure!(st == 200, "the report: status {st}\n{head}");
        for want in [
            "<meta http-equiv=\"refresh\" content=\"5\">",
            "id=\"be\"",
            ">s1<",
            ">s2<",
            ">Frontend<",
            ">Backend<",
            "name=\"action\"",
            "lb version",
        ] {
            ensure!(html.contains(want), "the report lacks {want:?}");
        }

        // `;csv` is the runtime API's `show stat`, the same columns.
        let (st, _, csv) = curl(
            &topo,
            &[&auth[..], &[format!("{base};csv").as_str()]].concat(),
        )?;
        ensure!(st == 200, "csv: status {st}");
        let api = lb.show_stat_csv()?;
        ensure!(
            csv.lines().next() == api.lines().next(),
            "csv header differs from show stat:\n{}\n{}",
            csv.lines().next().unwrap_or_default(),
            api.lines().next().unwrap_or_default()
        );
        ensure!(
            csv.lines().count() == api.lines().count(),
            "csv rows {} vs show stat {}",
            csv.lines().count(),
            api.lines().count()
        );
        let (st, _, json) = curl(
            &topo,
            &[&auth[..], &[format!("{base};json").as_str()]].concat(),
        )?;
        ensure!(st == 200, "json: status {st}");
        serde_json::from_str::<serde_json::Value>(&json).context("the ;json form is not JSON")?;

        // The admin form: s1 to DRAIN.
        let iid = lb.stat_field("be", "BACKEND", "iid")?;
        let form = format!("s=s1&action=drain&b=%23{iid}");
        let (st, head, _) = curl(
            &topo,
            &[&auth[..], &["-d", form.as_str(), base.as_str()]].concat(),
        )?;
        ensure!(st == 303, "admin POST: status {st}\n{head}");
        ensure!(head.contains(";st=DONE"), "admin POST: {head}");
        let s1 = lb.server("s1")?;
        ensure!(
            s1.admin.contains("DRAIN"),
            "s1 after the drain action: {s1:?}"
        );
        let (_, _, html) = curl(
            &topo,
            &[&auth[..], &[format!("{base};st=DONE").as_str()]].concat(),
        )?;
        ensure!(html.contains("class=\"draining\""), "s1 not shown draining");

        let (st, _, body) = curl(&topo, &[&format!("http://{LB_V4}:8404/healthz")])?;
        ensure!(
            st == 200 && body.contains("Service ready"),
            "monitor-uri: {st} {body}"
        );
        let (st, _, _) = curl(&topo, &[&format!("http://{LB_V4}:8404/other")])?;
        ensure!(st == 503, "a path the page does not serve: {st}");

        // The Prometheus endpoint, on the same HTTP server code.
        let (st, _, body) = curl(&topo, &[&format!("http://{metrics}/metrics")])?;
        ensure!(
            st == 200 && body.contains("haproxy_server_sessions_total{proxy=\"be\",server=\"s1\"}"),
            "metrics: {st}\n{}",
            &body[..body.len().min(400)]
        );
        let (st, _, _) = curl(&topo, &[&format!("http://{metrics}/other")])?;
        ensure!(st == 404, "metrics, another path: {st}");

        // A real browser: the page it renders, and what it built of it.
        let dir = topo.dir.path();
        let shot = dir.join("stats.png");
        let profile = dir.join("chromium-profile");
        let url = format!("http://{LB_V4}:8405/");
        let chromium = |extra: &[&str]| -> Result<std::process::Output> {
            topo.client
                .cmd("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(["--window-size=1400,900", "--hide-scrollbars"])
                .args(extra)
                .arg(&url)
                .env("HOME", dir)
                .output()
                .context("chromium (is it installed?)")
        };
        let out = chromium(&[&format!("--screenshot={}", shot.display())])?;
        let png = std::fs::read(&shot).with_context(|| {
            format!(
                "chromium wrote no screenshot: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        ensure!(
            png_size(&png) == Some((1400, 900)) && png.len() > 10_000,
            "screenshot: {:?}, {} bytes",
            png_size(&png),
            png.len()
        );
        let dom = chromium(&["--dump-dom"])?;
        let dom = String::from_utf8_lossy(&dom.stdout);
        for want in [">s1<", ">s2<", "Statistics Report for pid", "<h1>lb</h1>"] {
            ensure!(dom.contains(want), "the browser's DOM lacks {want:?}");
        }
        println!(
            "[lb-tests] stats page: screenshot {} ({} bytes), DOM {} bytes",
            shot.display(),
            png.len(),
            dom.len()
        );
        // Kept beside the test logs for a human to look at.
        let _ = std::fs::copy(&shot, std::env::temp_dir().join("lb-stats-page.png"));
        lb.stop()?;
        Ok(())
    })
}
