//! Fuzzes the runtime API's command parser: any line (any bytes, as a client
//! may send them) must split and parse into commands or error texts, never
//! panic. Error texts end up on the socket, so they must be single-line-safe
//! UTF-8 and never empty.
#![no_main]

#[allow(dead_code)]
#[path = "../../lb-user/src/api/cmd.rs"]
mod cmd;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match cmd::split(&text) {
        Ok(cmds) => {
            for words in cmds {
                assert!(!words.is_empty());
                assert!(words.len() <= cmd::MAX_WORDS);
                match cmd::parse(&words) {
                    Ok(c) => {
                        let _ = c.level();
                    }
                    Err(e) => assert!(!e.is_empty()),
                }
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
