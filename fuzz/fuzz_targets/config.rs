//! Fuzzes the configuration parser: any input must give a model or an error
//! naming `fuzz.cfg`, never a panic or a hang. The parser runs against a fake
//! system (no environment, no name resolution, no files).
//!
//! The `config` module of lb-user is compiled here on its own (it depends on
//! nothing else in lb-user), so that the fuzz build does not instrument aya,
//! tokio and the eBPF object.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../lb-user/src/config/mod.rs"]
mod config;

use libfuzzer_sys::fuzz_target;

/// Inputs beyond this are skipped (the parser's own limits are far above;
/// libFuzzer's -max_len keeps inputs smaller still).
const MAX_INPUT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse_for_fuzzing(text) {
        Ok(cfg) => {
            // Model invariants the daemon relies on.
            assert!(!cfg.frontends.is_empty());
            for f in &cfg.frontends {
                assert!(!f.binds.is_empty());
                for b in &f.binds {
                    assert!(b.port_first >= 1 && b.port_first <= b.port_last);
                }
                if let Some(i) = f.default_backend_idx {
                    assert_eq!(
                        Some(cfg.backends[i].name.as_str()),
                        f.default_backend.as_deref()
                    );
                }
                for u in &f.use_backends {
                    assert_eq!(cfg.backends[u.backend_idx].name, u.backend);
                }
            }
            for b in &cfg.backends {
                for s in &b.servers {
                    assert!(s.params.weight <= 256);
                    assert!(s.params.check_params.rise >= 1 && s.params.check_params.fall >= 1);
                    assert!(!s.params.check_params.inter.is_zero());
                    if s.port_mode == config::ServerPort::Fixed && !s.unresolved {
                        assert_ne!(s.addr.port(), 0);
                    }
                }
            }
            let _ = config::runtime_gaps(&cfg);
            let _ = config::runtime_ignored(&cfg);
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.cfg"), "{shown}");
            assert!(shown.contains(": error: "), "{shown}");
        }
    }
});
