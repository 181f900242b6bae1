//! `cargo xtask test`: deps, build, fmt, clippy, unit tests, fuzzing of the
//! config parser, integration tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use crate::{build, toolchain, util};

#[derive(Args)]
pub struct TestArgs {
    /// Only run integration tests whose name contains NAME.
    #[arg(long, value_name = "NAME")]
    pub filter: Option<String>,
    /// Skip `cargo fmt --check` and `cargo clippy`.
    #[arg(long)]
    pub skip_lint: bool,
    /// Skip the last step, `cargo xtask bench --quick` (proves the benchmark
    /// harness still works; its figures are not checked).
    #[arg(long)]
    pub skip_bench: bool,
}

enum Outcome {
    Ok(Duration),
    Failed(Duration),
    Skipped,
}

struct Runner {
    steps: Vec<(&'static str, Outcome)>,
    failed: bool,
}

impl Runner {
    /// Run one step unless an earlier one failed; print its duration.
    fn step(&mut self, name: &'static str, f: impl FnOnce() -> Result<()>) {
        if self.failed {
            self.steps.push((name, Outcome::Skipped));
            return;
        }
        println!("\n==> {name}");
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        match result {
            Ok(()) => {
                println!("==> {name}: ok ({})", util::fmt_duration(took));
                self.steps.push((name, Outcome::Ok(took)));
            }
            Err(err) => {
                eprintln!("==> {name}: FAILED ({}): {err:#}", util::fmt_duration(took));
                self.steps.push((name, Outcome::Failed(took)));
                self.failed = true;
            }
        }
    }

    fn skip(&mut self, name: &'static str) {
        self.steps.push((name, Outcome::Skipped));
    }

    fn summary(&self) {
        println!("\nsummary:");
        for (name, outcome) in &self.steps {
            let (word, took) = match outcome {
                Outcome::Ok(d) => ("ok", util::fmt_duration(*d)),
                Outcome::Failed(d) => ("FAILED", util::fmt_duration(*d)),
                Outcome::Skipped => ("skipped", String::new()),
            };
            let line = format!("  {name:<20} {word:<8} {took}");
            println!("{}", line.trim_end());
        }
    }
}

pub fn test(args: &TestArgs) -> Result<()> {
    let root = util::repo_root();
    let obj = build::ebpf_object();
    let mut lb: PathBuf = util::target_dir().join("release/lb");
    let mut r = Runner {
        steps: Vec::new(),
        failed: false,
    };

    r.step("deps", || {
        toolchain::ensure_build_toolchain()?;
        toolchain::ensure_packages(toolchain::TEST_PACKAGES, "the integration tests")
    });
    r.step("build", || {
        build::build_ebpf()?;
        lb = build::build_userspace(&obj, false)?;
        Ok(())
    });
    if args.skip_lint {
        r.skip("fmt");
        r.skip("clippy");
    } else {
        r.step("fmt", || {
            cargo(&root, &obj, &["fmt", "--all", "--", "--check"])?;
            let ebpf = root.join("lb-ebpf/Cargo.toml");
            let ebpf = ebpf.to_string_lossy();
            cargo(
                &root,
                &obj,
                &["fmt", "--all", "--manifest-path", &ebpf, "--", "--check"],
            )
        });
        r.step("clippy", || {
            cargo(
                &root,
                &obj,
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            )
        });
    }
    r.step("unit tests", || {
        cargo(&root, &obj, &["test", "--workspace"])
    });
    r.step("fuzz config parser 60s", || fuzz_config(&root));
    r.step("fuzz runtime API commands 60s", || fuzz_runtime_cmd(&root));
    r.step("integration tests", || {
        util::require_root("the integration tests")?;
        let mut cmd = util::cargo();
        cmd.current_dir(&root)
            .args([
                "test",
                "-p",
                "lb-tests",
                "--no-fail-fast",
                "--",
                "--ignored",
                "--test-threads=1",
                // The tests print what they measured (memory peaks, times, tps).
                "--nocapture",
            ])
            .args(args.filter.as_deref())
            .env("LB_EBPF_OBJ", &obj)
            .env("LB_BIN", &lb);
        util::run(&mut cmd)
    });

    if !args.skip_bench && args.filter.is_none() {
        r.step("bench --quick (harness only)", || {
            let mut cmd = util::cargo();
            cmd.current_dir(&root).args(["xtask", "bench", "--quick"]);
            util::run(&mut cmd)
        });
    }

    r.summary();
    disk_report(&util::target_dir());
    if r.failed {
        bail!("tests failed");
    }
    println!("all steps passed");
    Ok(())
}

/// Free space where cargo writes: a linker that dies with SIGBUS or "No space
/// left on device" in a CI log is explained by this one line.
fn disk_report(dir: &Path) {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: statvfs only writes into `st`, which is sized for it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return;
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    let gib = free as f64 / (1u64 << 30) as f64;
    println!("  free disk under {}: {gib:.1} GiB", dir.display());
    if gib < 2.0 {
        eprintln!("  warning: under 2 GiB free; a build step that failed may have run out of disk");
    }
}

/// Normal cargo in the workspace root. LB_EBPF_OBJ is set for every
/// invocation: lb-user's build script embeds the object, and a consistent
/// environment avoids needless rebuilds.
fn cargo(root: &Path, obj: &Path, args: &[&str]) -> Result<()> {
    util::run(
        util::cargo()
            .current_dir(root)
            .args(args)
            .env("LB_EBPF_OBJ", obj),
    )
}

/// `cargo fuzz run config` for 60 s on the configuration parser (installs
/// cargo-fuzz if missing). cargo-fuzz needs nightly features: the stable
/// toolchain with RUSTC_BOOTSTRAP=1. Seeds: the corpus of tests/configs/ and
/// fuzz/regressions/; what the fuzzer learns stays in fuzz/corpus/ (ignored).
fn fuzz_config(root: &Path) -> Result<()> {
    fuzz(
        root,
        "config",
        &[root.join("tests/configs"), root.join("fuzz/regressions")],
    )
}

/// `cargo fuzz run runtime_cmd` for 60 s on the runtime API's command parser
/// (lines as a stats-socket client sends them). Seeds: fuzz/seeds/runtime_cmd.
fn fuzz_runtime_cmd(root: &Path) -> Result<()> {
    fuzz(root, "runtime_cmd", &[root.join("fuzz/seeds/runtime_cmd")])
}

fn fuzz(root: &Path, target: &str, seeds: &[PathBuf]) -> Result<()> {
    let bin = util::cargo_bin_dir()?;
    let path = util::path_with_first(&[&bin])?;
    if !bin.join("cargo-fuzz").is_file() {
        util::run(
            util::cargo()
                .args(["install", "cargo-fuzz", "--locked"])
                .env("PATH", &path),
        )?;
    }
    let corpus = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    util::run(
        util::cargo()
            .current_dir(root)
            .env("PATH", &path)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .args(seeds)
            // No input may take 10 s (a hang); inputs up to 64 KiB.
            .args(["--", "-max_total_time=60", "-max_len=65536", "-timeout=10"]),
    )
}
