//! Failure reporting: guards (lb, PostgreSQL, temp dirs) hand their
//! diagnostics and their scratch directories to the current test instead of
//! printing / deleting on drop, so that a test that fails by returning `Err`
//! (guards are dropped before the error reaches the test harness) still
//! shows the daemon's log tail and keeps its files.
//!
//! Write every integration test as `run_test(|| { ...; Ok(()) })`.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Mutex;

static STASH: Mutex<Vec<String>> = Mutex::new(Vec::new());
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Keep a diagnostic (e.g. a log tail) to print if the test fails.
pub fn stash(s: String) {
    let mut v = STASH.lock().unwrap_or_else(|e| e.into_inner());
    if v.len() < 64 {
        v.push(s);
    }
}

/// Remove `p` when the test passes; keep it (and print it) when it fails.
pub fn defer_remove(p: PathBuf) {
    PENDING.lock().unwrap_or_else(|e| e.into_inner()).push(p);
}

fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Run a test body. On success the scratch dirs are removed; on error or
/// panic the stashed diagnostics and kept dirs are printed and the test
/// fails.
pub fn run_test<F: FnOnce() -> anyhow::Result<()>>(f: F) {
    take(&STASH);
    take(&PENDING);
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    let ok = matches!(r, Ok(Ok(())));
    let stash = take(&STASH);
    let pending = take(&PENDING);
    if ok {
        for p in pending {
            let _ = std::fs::remove_dir_all(p);
        }
        return;
    }
    if let Ok(Err(e)) = &r {
        eprintln!("[lb-tests] FAILED: {e:#}\n[lb-tests] diagnostics of the failed test:");
    }
    for s in &stash {
        eprintln!("{s}");
    }
    for p in &pending {
        eprintln!("[lb-tests] kept {} for inspection", p.display());
    }
    match r {
        Ok(Err(e)) => panic!("{e:#}"),
        Err(p) => std::panic::resume_unwind(p),
        Ok(Ok(())) => unreachable!(),
    }
}
