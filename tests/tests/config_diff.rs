//! Differential test of the configuration checker: for every configuration of
//! `tests/configs/` (the valid corpus, the `dir/` of several files, and the
//! broken ones of `errors/`), `haproxy -c -f FILE` (Debian's HAProxy 2.6) and
//! `lb check -f FILE` must agree on valid/invalid. Where lb refuses on purpose
//! what HAProxy accepts, the case is in [`LB_STRICTER`] with the reason (and
//! HAProxy must indeed accept it, so the list cannot rot).
//!
//! Both run in `tests/configs/` (pattern files are relative to the current
//! directory, as HAProxy reads them), with the corpus' `LB_TEST_*` variables
//! unset. Needs `/usr/sbin/haproxy` (installed by `cargo xtask test`) and the
//! lb binary (`$LB_BIN`); no root, no network namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, ensure, Context, Result};

const HAPROXY: &str = "/usr/sbin/haproxy";

/// Broken configurations HAProxy 2.6 accepts but lb refuses on purpose.
const LB_STRICTER: &[(&str, &str)] = &[
    (
        "mode-http",
        "lb is an L4 balancer: a proxy left in HTTP mode is refused, never run as TCP",
    ),
    (
        "acl-http-fetch",
        "HAProxy lets a TCP frontend wait for an HTTP request to evaluate HTTP fetches; lb \
         offers layer-4 fetches only",
    ),
    (
        "balance-uri",
        "HAProxy falls back to round robin with a warning; lb refuses HTTP algorithms",
    ),
    (
        "bind-conflict",
        "haproxy -c does not bind; at start both listeners may share the port \
         (SO_REUSEPORT) and split its connections at random; lb refuses overlapping binds",
    ),
    (
        "server-is-own-bind",
        "haproxy -c does not connect; at run time every connection to the server would \
         loop through the balancer; lb refuses a destination its own binds steer back",
    ),
];

/// Broken configurations where HAProxy reports another line than lb.
const OTHER_LINE: &[(&str, &str)] = &[(
    "if-without-endif",
    "HAProxy reports an unterminated '.if' at the end of the file, lb at the '.if'",
)];

/// The line of the first HAProxy alert naming `target` (`[target:LINE]`).
fn haproxy_line(out: &str, target: &str) -> Option<usize> {
    let tag = format!("[{target}:");
    out.lines().filter(|l| l.contains("ALERT")).find_map(|l| {
        let rest = &l[l.find(&tag)? + tag.len()..];
        rest[..rest.find(']')?].parse().ok()
    })
}

/// The line of lb's error in `target`.
fn lb_line(out: &str, target: &str) -> Option<usize> {
    let tag = format!("[ALERT] {target}:");
    out.lines().find_map(|l| {
        let rest = l.strip_prefix(&tag)?;
        rest[..rest.find(':')?].parse().ok()
    })
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

/// Runs `prog args...` in `tests/configs/` with the corpus' variables unset.
fn run(prog: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(prog);
    cmd.args(args).current_dir(configs_dir());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LB_TEST_") {
            cmd.env_remove(k);
        }
    }
    cmd.output()
        .with_context(|| format!("cannot run {}", prog.display()))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Verdicts {
    haproxy_ok: bool,
    haproxy_out: String,
    lb_code: Option<i32>,
    lb_out: String,
}

fn check_both(lb: &Path, target: &str) -> Result<Verdicts> {
    let h = run(Path::new(HAPROXY), &["-c", "-f", target])?;
    let l = run(lb, &["check", "-f", target])?;
    Ok(Verdicts {
        haproxy_ok: h.status.success(),
        haproxy_out: text(&h),
        lb_code: l.status.code(),
        lb_out: text(&l),
    })
}

/// `# expect: [file:]LINE:COL fragment` of an error case.
fn expectation(path: &Path) -> Result<(String, String)> {
    let content = std::fs::read_to_string(path)?;
    let Some(first) = content
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
    else {
        bail!(
            "{}: no '# expect: LINE:COL fragment' header",
            path.display()
        );
    };
    let (pos, frag) = first
        .split_once(' ')
        .with_context(|| format!("{}: malformed header", path.display()))?;
    Ok((pos.to_string(), frag.to_string()))
}

#[test]
#[ignore]
fn haproxy_and_lb_check_agree() -> Result<()> {
    ensure!(
        Path::new(HAPROXY).is_file(),
        "{HAPROXY} is missing: install Debian's haproxy package (cargo xtask test does)"
    );
    let lb = lb_tests::lb_bin()?;
    let version = run(Path::new(HAPROXY), &["-v"])?;
    println!("{}", text(&version).lines().next().unwrap_or("haproxy ?"));

    let mut failures = Vec::new();
    let mut rows = Vec::new();

    // The valid corpus: both accept.
    let mut valid: Vec<String> = std::fs::read_dir(configs_dir())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cfg"))
        .collect();
    valid.sort();
    valid.push("dir".into());
    for name in &valid {
        let v = check_both(&lb, name)?;
        let ok = v.haproxy_ok && v.lb_code == Some(0);
        rows.push(format!(
            "{:<48} haproxy {:<8} lb {:<8} {}",
            name,
            if v.haproxy_ok { "valid" } else { "INVALID" },
            if v.lb_code == Some(0) {
                "valid"
            } else {
                "INVALID"
            },
            if ok { "agree" } else { "DISAGREE" }
        ));
        if !ok {
            failures.push(format!(
                "{name}: both should accept it\n--- haproxy:\n{}\n--- lb:\n{}",
                v.haproxy_out, v.lb_out
            ));
        }
    }

    // The broken ones: both refuse, except the allow-list, where HAProxy
    // accepts and lb refuses.
    let mut errors: Vec<PathBuf> = std::fs::read_dir(configs_dir().join("errors"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
        .collect();
    errors.sort();
    ensure!(errors.len() >= 40, "only {} error cases", errors.len());
    let mut allowed_seen = 0;
    let mut same_line = 0;
    for path in &errors {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let case = file
            .trim_end_matches(".cfg")
            .split_once('-')
            .map_or(file.as_str(), |(_, n)| n)
            .to_string();
        let target = format!("errors/{file}");
        let v = check_both(&lb, &target)?;
        let stricter = LB_STRICTER.iter().find(|(n, _)| *n == case);
        let (pos, frag) = expectation(path)?;
        let pos = if pos.matches(':').count() == 2 {
            pos
        } else {
            format!("{target}:{pos}")
        };
        let lb_ok = v.lb_code == Some(1)
            && v.lb_out.contains(&format!("[ALERT] {pos}: error: "))
            && v.lb_out.contains(&frag);
        let agree = match stricter {
            None => !v.haproxy_ok,
            Some(_) => {
                allowed_seen += 1;
                v.haproxy_ok
            }
        };
        // Where both name a line of the file, it is the same line.
        let lines = (
            haproxy_line(&v.haproxy_out, &target),
            lb_line(&v.lb_out, &target),
        );
        if let (Some(h), Some(l)) = lines {
            let excused = OTHER_LINE.iter().any(|(n, _)| *n == case);
            if (h == l) == excused {
                failures.push(format!(
                    "{target}: haproxy reports line {h}, lb line {l}{}",
                    if excused {
                        " (listed in OTHER_LINE: remove it)"
                    } else {
                        ""
                    }
                ));
            } else if h == l {
                same_line += 1;
            }
        }
        rows.push(format!(
            "{:<48} haproxy {:<8} lb {:<8} {}",
            file,
            if v.haproxy_ok { "valid" } else { "invalid" },
            if v.lb_code == Some(1) {
                "invalid"
            } else {
                "VALID?"
            },
            match (agree, stricter) {
                (true, None) => "agree".to_string(),
                (true, Some((_, why))) => format!("lb stricter on purpose: {why}"),
                (false, None) => "DISAGREE: haproxy accepts it".into(),
                (false, Some(_)) => "DISAGREE: allow-listed but haproxy refuses it".into(),
            }
        ));
        if !agree {
            failures.push(format!(
                "{target}: haproxy {} it{}\n--- haproxy:\n{}",
                if v.haproxy_ok { "accepts" } else { "refuses" },
                if stricter.is_some() {
                    " (allow-listed as accepted by HAProxy: remove it from LB_STRICTER)"
                } else {
                    ""
                },
                v.haproxy_out
            ));
        }
        if !lb_ok {
            failures.push(format!(
                "{target}: lb should refuse it with exit code 1 at {pos} saying '{frag}'\n--- lb (exit {:?}):\n{}",
                v.lb_code, v.lb_out
            ));
        }
    }
    ensure!(
        allowed_seen == LB_STRICTER.len(),
        "LB_STRICTER names {} cases, {} found in errors/",
        LB_STRICTER.len(),
        allowed_seen
    );

    for r in &rows {
        println!("{r}");
    }
    println!(
        "{} configurations: {} valid, {} broken ({} where lb is stricter on purpose; \
         {same_line} where both name the same line), {} disagreements",
        rows.len(),
        valid.len(),
        errors.len(),
        LB_STRICTER.len(),
        failures.len()
    );
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}
