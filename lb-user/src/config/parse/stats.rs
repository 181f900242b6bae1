//! `stats ...` and `monitor-uri`: kept in the settings for an HTTP-mode
//! proxy that serves HAProxy's stats page, and noted as HTTP-only so that a
//! TCP proxy gets HAProxy's warning that it ignores them.
use super::{ConfigError, HttpNote, Line, Parser, PendingCond, Section};
use crate::config::values::{parse_time, suggest};

/// `stats <what> ...` in a proxy or defaults section.
pub(crate) fn p_stats(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let what = p.arg(
        l,
        0,
        "'enable', 'uri', 'auth', 'admin', 'refresh', 'realm'... as an argument",
    )?;
    let sub = what.text.clone();
    let origin = p.origin(l.no);
    let arg = |p: &Parser<'_>, n: usize, usage: &str| -> Result<String, ConfigError> {
        Ok(p.arg(l, n, usage)?.text.clone())
    };
    match sub.as_str() {
        "enable" => p.no_more(l, 1, "stats enable")?,
        "uri" => {
            let u = arg(p, 1, "a URI prefix after 'stats uri'")?;
            p.no_more(l, 2, "stats uri")?;
            p.settings(l)?.stats.uri = Some(u);
        }
        "realm" => {
            // HAProxy takes the rest of the line, spaces escaped or not.
            let words: Vec<&str> = l.args[1..].iter().map(|t| t.text.as_str()).collect();
            if words.is_empty() {
                return Err(p.err(l.no, what, "'stats realm' expects a realm as an argument"));
            }
            p.settings(l)?.stats.realm = Some(words.join(" "));
        }
        "auth" => {
            let a = p.arg(l, 1, "<user>:<password> after 'stats auth'")?;
            let Some((user, pass)) = a.text.split_once(':') else {
                return Err(p.err(
                    l.no,
                    a,
                    "'stats auth' expects <user>:<password> (a colon between them)",
                ));
            };
            let pair = (user.to_string(), pass.to_string());
            p.no_more(l, 2, "stats auth")?;
            p.settings(l)?.stats.auth.push(pair);
        }
        "refresh" => {
            let v = p.arg(l, 1, "a time after 'stats refresh' (e.g. 10s)")?;
            let d = parse_time(&v.text)
                .map_err(|m| p.err(l.no, v, format!("invalid 'stats refresh': {m}")))?;
            p.no_more(l, 2, "stats refresh")?;
            p.settings(l)?.stats.refresh = (!d.is_zero()).then_some(d);
        }
        "admin" => {
            if l.args.len() < 2 {
                return Err(p.err(
                    l.no,
                    what,
                    "'stats admin' expects 'if' or 'unless' followed by a condition",
                ));
            }
            let cond = super::acl::parse_condition(p, l, 1, "stats admin")?;
            if let Section::Proxy(px) = &mut p.section {
                px.pending.push(PendingCond::StatsAdmin);
            }
            p.settings(l)?.stats.admin = Some(cond);
        }
        "hide-version" => {
            p.no_more(l, 1, "stats hide-version")?;
            p.settings(l)?.stats.hide_version = true;
        }
        "show-legends" => {
            p.no_more(l, 1, "stats show-legends")?;
            p.settings(l)?.stats.show_legends = true;
        }
        "show-node" => {
            let name = l.args.get(1).map(|t| t.text.clone()).unwrap_or_default();
            p.settings(l)?.stats.show_node = Some(name);
        }
        "show-desc" => {
            let words: Vec<&str> = l.args[1..].iter().map(|t| t.text.as_str()).collect();
            p.settings(l)?.stats.show_desc = Some(words.join(" "));
        }
        "scope" => {
            let n = arg(p, 1, "a proxy name (or '.') after 'stats scope'")?;
            p.settings(l)?.stats.scope.push(n);
        }
        "show-modules" => {}
        "http-request" => {
            return Err(p.not_yet_err(l.no, what, "stats http-request", ""));
        }
        "socket" | "timeout" | "maxconn" | "bind-process" => {
            return Err(p.err(
                l.no,
                what,
                format!("'stats {sub}' is a 'global' keyword, not one of a proxy"),
            ));
        }
        _ => {
            return Err(p.err_hint(
                l.no,
                what,
                format!("unknown stats parameter '{sub}'"),
                suggest(
                    &sub,
                    [
                        "enable",
                        "uri",
                        "realm",
                        "auth",
                        "refresh",
                        "admin",
                        "hide-version",
                        "show-legends",
                        "show-node",
                        "show-desc",
                        "scope",
                    ],
                ),
            ))
        }
    }
    let s = p.settings(l)?;
    if s.stats.enabled.is_none() {
        s.stats.enabled = Some(origin);
    }
    p.http_only(l, "stats", HttpNote::Stats)
}

/// `monitor-uri <path>`.
pub(crate) fn p_monitor_uri(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let u = p.arg(l, 0, "a URI as an argument")?.text.clone();
    p.no_more(l, 1, "monitor-uri")?;
    p.settings(l)?.monitor_uri = Some(u);
    p.http_only(l, "monitor-uri", HttpNote::MonitorUri)
}
