//! What a reload (SIGHUP) leaves for a restart: the differences between the
//! running configuration and the file, beyond what a reload puts in force.

use super::model::Config;

/// Sections that differ in something a reload does not apply: everything
/// but the frontends' `tcp-request connection` rules, `xdp-syn-rate` and
/// `xdp-syn-cookies`. File and line numbers do not count (a rule added above
/// a section moves it down without changing it).
pub fn reload_pending(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (reloadable_cleared(old), reloadable_cleared(new));
    let mut out = Vec::new();
    if text(&a.global) != text(&b.global) {
        out.push("global".to_string());
    }
    for (fa, fb) in a.frontends.iter().zip(&b.frontends) {
        let acls_differ = text(&fa.acls) != text(&fb.acls);
        let (mut fa, mut fb) = (fa.clone(), fb.clone());
        // Declared ACLs matter here only through `use_backend` rules; the
        // connection rules carry their conditions resolved.
        if fa.use_backends.is_empty() && fb.use_backends.is_empty() {
            fa.acls.clear();
            fb.acls.clear();
        }
        if text(&fa) != text(&fb) || (acls_differ && !fa.use_backends.is_empty()) {
            out.push(format!("frontend '{}'", fb.name));
        }
    }
    if text(&a.stats_pages) != text(&b.stats_pages) {
        out.push("the stats pages".to_string());
    }
    if a.frontends.len() != b.frontends.len() {
        out.push("the list of frontends".to_string());
    }
    for bb in &b.backends {
        match a.backends.iter().find(|x| x.name == bb.name) {
            None => out.push(format!("new backend '{}'", bb.name)),
            Some(ba) if text(ba) != text(bb) => out.push(format!("backend '{}'", bb.name)),
            Some(_) => {}
        }
    }
    for ba in &a.backends {
        if !b.backends.iter().any(|x| x.name == ba.name) {
            out.push(format!("removed backend '{}'", ba.name));
        }
    }
    out
}

fn reloadable_cleared(c: &Config) -> Config {
    let mut c = c.clone();
    c.warnings.clear();
    c.global.xdp_syn_rate = None;
    c.global.xdp_syn_cookies = None;
    for f in &mut c.frontends {
        f.tcp_request_connection.clear();
    }
    c
}

/// The value's debug text without `Origin { .. }` (file and line) parts.
fn text(v: &impl std::fmt::Debug) -> String {
    let s = format!("{v:?}");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("Origin { file: ") {
        out.push_str(&rest[..i]);
        rest = match rest[i..].find(" }") {
            Some(j) => &rest[i + j + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = "\
global
    xdp-syn-rate 10 per-source
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 10.0.0.1:80
    tcp-request connection reject if { src 192.0.2.0/24 }
    default_backend b
backend b
    server s 127.0.0.1:1
";

    fn parse(t: &str) -> Config {
        crate::config::parse_str(t, Path::new("r.cfg")).unwrap()
    }

    #[test]
    fn rules_and_syn_settings_reload_in_place() {
        let old = parse(BASE);
        let new = parse(
            &BASE
                .replace("192.0.2.0/24", "198.51.100.0/24 203.0.113.9")
                .replace(
                    "xdp-syn-rate 10 per-source",
                    "xdp-syn-rate 20 per-source\n    xdp-syn-cookies off\n\n",
                )
                .replace(
                    "    default_backend b",
                    "    tcp-request connection accept if { src 10.9.0.0/16 }\n    default_backend b",
                ),
        );
        assert_eq!(reload_pending(&old, &new), Vec::<String>::new());
        assert_eq!(reload_pending(&old, &old), Vec::<String>::new());
    }

    #[test]
    fn other_changes_wait_for_a_restart() {
        let old = parse(BASE);
        let text = BASE
            .replace("timeout client 30s", "timeout client 31s")
            .replace("127.0.0.1:1", "127.0.0.1:2")
            .replace("global\n", "global\n    maxconn 100\n")
            + "backend c\n    server t 127.0.0.1:3\n";
        let new = parse(&text);
        assert_eq!(
            reload_pending(&old, &new),
            ["global", "frontend 'f'", "backend 'b'", "new backend 'c'"]
        );
    }

    #[test]
    fn origins_are_ignored() {
        let s = text(&crate::config::Origin {
            file: "a.cfg".into(),
            line: 3,
        });
        assert_eq!(s, "");
    }
}
