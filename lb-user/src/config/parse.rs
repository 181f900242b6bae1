//! The parser: HAProxy sections and keywords into the typed [`Config`] model.
//!
//! Every section dispatches its lines through a keyword table ([`GLOBAL_KWS`],
//! [`PROXY_KWS`], and the sub-keyword tables for `option`, `timeout`,
//! `balance`, `bind` and `server` parameters). Each entry says in which
//! sections the keyword is valid (HAProxy's "capabilities": defaults,
//! frontend, backend; `listen` has both frontend and backend) and what to do
//! with it: parse it, accept and ignore it, reject it as an HTTP-mode feature,
//! or reject it as "not supported yet". Growing towards HAProxy's full TCP
//! keyword set is adding rows, and turning "not supported yet" rows into
//! parsers.
//!
//! The first error stops the parse; it names `file:line:col` and the token.
use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lexer::{lex_line, Token};
use super::model::{Backend, Balance, Bind, CheckParams, Config, Frontend, Global, Origin, Server};

/// Largest configuration accepted, in bytes.
pub(crate) const MAX_CONFIG_SIZE: usize = 16 << 20;
/// Longest line accepted, in bytes (before and after environment expansion).
pub(crate) const MAX_LINE_LEN: usize = 64 << 10;
/// Largest server weight, as HAProxy.
const MAX_WEIGHT: u32 = 256;
/// Largest timer HAProxy accepts: `INT_MAX` milliseconds (about 24.8 days).
const MAX_TIMER_MS: u64 = i32::MAX as u64;

/// A configuration error.
///
/// Errors about a place in the file display as
/// `FILE:LINE:COL: error: <what>, near '<token>'`, with a
/// `; did you mean '<keyword>'?` hint when a close valid keyword exists.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: error: cannot read the configuration: {source}", .file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than the limit.
    #[error(
        "{}: error: the configuration is larger than the {limit} bytes limit ({size} bytes)",
        .file.display()
    )]
    TooLarge {
        file: PathBuf,
        size: u64,
        limit: u64,
    },
    /// An error about the whole file (e.g. no frontend at all).
    #[error("{}: error: {msg}", .file.display())]
    File { file: PathBuf, msg: String },
    /// An error at a place in the file.
    #[error(
        "{}:{line}:{col}: error: {msg}, near '{near}'{}",
        .file.display(),
        hint_suffix(.hint)
    )]
    Invalid {
        file: PathBuf,
        line: usize,
        col: usize,
        msg: String,
        /// The token the error is about, escaped and shortened for display.
        near: String,
        /// A close valid keyword, for unknown ones.
        hint: Option<String>,
    },
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("; did you mean '{h}'?"),
        None => String::new(),
    }
}

impl ConfigError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            Self::Io { file, .. }
            | Self::TooLarge { file, .. }
            | Self::File { file, .. }
            | Self::Invalid { file, .. } => file,
        }
    }

    /// The 1-based line, for errors at a place in the file.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// The 1-based column, for errors at a place in the file.
    pub fn col(&self) -> Option<usize> {
        match self {
            Self::Invalid { col, .. } => Some(*col),
            _ => None,
        }
    }
}

/// Reads and parses a configuration file.
pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let io_err = |source| ConfigError::Io {
        file: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit to tell "too large" (also for files that
    // grow, or special files, whose metadata size means nothing).
    file.take(MAX_CONFIG_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() > MAX_CONFIG_SIZE {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64)
            .max(bytes.len() as u64);
        return Err(too_large(path, size));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let bytes = e.as_bytes();
            let valid = e.utf8_error().valid_up_to();
            let before = bytes.get(..valid).unwrap_or_default();
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let col = std::str::from_utf8(before.get(line_start..).unwrap_or_default())
                .map_or(1, |s| s.chars().count() + 1);
            let near = bytes
                .get(valid..)
                .unwrap_or_default()
                .iter()
                .take(4)
                .map(|b| format!("\\x{b:02x}"))
                .collect::<String>();
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                col,
                msg: "invalid UTF-8".into(),
                near,
                hint: None,
            });
        }
    };
    parse_str(&text, path)
}

/// Parses a configuration from memory; `file` only names it in messages.
///
/// `${VAR}` expands from the process environment.
pub fn parse_str(text: &str, file: &Path) -> Result<Config, ConfigError> {
    parse_with_env(text, file, &|name| std::env::var(name).ok())
}

fn too_large(file: &Path, size: u64) -> ConfigError {
    ConfigError::TooLarge {
        file: file.to_path_buf(),
        size,
        limit: MAX_CONFIG_SIZE as u64,
    }
}

/// [`parse_str`] with the environment given as a lookup function.
pub(crate) fn parse_with_env(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    if text.len() > MAX_CONFIG_SIZE {
        return Err(too_large(file, text.len() as u64));
    }
    let mut p = Parser::new(file);
    for (idx, raw) in text.split('\n').enumerate() {
        let no = idx + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.len() > MAX_LINE_LEN {
            let near: String = raw.chars().take(16).collect();
            return Err(p.err_at(
                no,
                1,
                &near,
                format!(
                    "line too long ({} bytes, at most {MAX_LINE_LEN})",
                    raw.len()
                ),
            ));
        }
        let toks =
            lex_line(raw, MAX_LINE_LEN, env).map_err(|e| p.err_at(no, e.col, &e.near, e.msg))?;
        let mut toks = toks.into_iter();
        if let Some(kw) = toks.next() {
            let line = Line {
                no,
                kw,
                args: toks.collect(),
            };
            p.line(&line)?;
        }
    }
    p.finish()
}

// ---------------------------------------------------------------------------
// Keyword tables.

/// Capabilities: the sections a keyword is valid in.
const DEF: u8 = 1;
const FE: u8 = 2;
const BE: u8 = 4;
const ANY: u8 = DEF | FE | BE;
const LISTEN: u8 = FE | BE;
/// For tables where sections do not matter.
const ALL: u8 = 0xff;

/// One keyword of a table. A `name` ending with `*` matches by prefix.
struct Kw<A: 'static> {
    name: &'static str,
    caps: u8,
    act: A,
}

const fn kw<A>(name: &'static str, caps: u8, act: A) -> Kw<A> {
    Kw { name, caps, act }
}

fn lookup<'t, A>(table: &'t [Kw<A>], word: &str) -> Option<&'t Kw<A>> {
    table.iter().find(|k| match k.name.strip_suffix('*') {
        Some(prefix) => word.starts_with(prefix),
        None => k.name == word,
    })
}

/// Closest candidate to an unknown `word`, if close enough.
fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<String> {
    let len = word.chars().count();
    if len == 0 || len > 64 {
        return None;
    }
    let max = 2.max(len / 3);
    candidates
        .into_iter()
        .map(|c| c.trim_end_matches('*'))
        .filter(|c| !c.is_empty() && *c != word)
        .map(|c| (levenshtein(word, c), c))
        .filter(|&(d, _)| d <= max && d < len)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c.to_string())
}

/// Edit distance (insertions, deletions, substitutions) between two words.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

type Handler = fn(&mut Parser<'_>, &Line) -> Result<(), ConfigError>;

/// What a top-level keyword does.
#[derive(Clone, Copy)]
enum Act {
    /// Parsed by the handler.
    Run(Handler),
    /// Accepted, no effect on this balancer (logging, process settings...).
    Ignore,
    /// An HTTP-mode feature.
    Http,
    /// A TCP feature of HAProxy not implemented yet; the text is an extra hint.
    NotYet(&'static str),
    /// Removed from HAProxy; the text is the replacement.
    Removed(&'static str),
}

/// What a section keyword opens.
#[derive(Clone, Copy)]
enum SecAct {
    Global,
    Defaults,
    /// A proxy section with these capabilities.
    Proxy(u8),
    NotYet,
    Http,
}

const SECTIONS: &[Kw<SecAct>] = &[
    kw("global", ALL, SecAct::Global),
    kw("defaults", ALL, SecAct::Defaults),
    kw("frontend", ALL, SecAct::Proxy(FE)),
    kw("backend", ALL, SecAct::Proxy(BE)),
    kw("listen", ALL, SecAct::Proxy(LISTEN)),
    kw("peers", ALL, SecAct::NotYet),
    kw("resolvers", ALL, SecAct::NotYet),
    kw("userlist", ALL, SecAct::NotYet),
    kw("mailers", ALL, SecAct::NotYet),
    kw("program", ALL, SecAct::NotYet),
    kw("ring", ALL, SecAct::NotYet),
    kw("log-forward", ALL, SecAct::NotYet),
    kw("crt-store", ALL, SecAct::NotYet),
    kw("traces", ALL, SecAct::NotYet),
    kw("http-errors", ALL, SecAct::Http),
    kw("cache", ALL, SecAct::Http),
    kw("fcgi-app", ALL, SecAct::Http),
];

const GLOBAL_KWS: &[Kw<Act>] = &[
    kw("maxconn", ALL, Act::Run(g_maxconn)),
    kw("tune.lb.splice-budget", ALL, Act::Run(g_splice_budget)),
    kw("log", ALL, Act::Ignore),
    kw("daemon", ALL, Act::Ignore),
    kw("nbthread", ALL, Act::Ignore),
    kw("user", ALL, Act::Ignore),
    kw("group", ALL, Act::Ignore),
    kw("pidfile", ALL, Act::Ignore),
    kw("stats", ALL, Act::Ignore),
    kw("chroot", ALL, Act::Ignore),
    kw("hard-stop-after", ALL, Act::Ignore),
    kw("ca-base", ALL, Act::Ignore),
    kw("crt-base", ALL, Act::Ignore),
    kw("ssl-default-*", ALL, Act::Ignore),
];

const CHECK_HINT: &str = " (only plain TCP connect checks, 'check' on 'server', are)";

const PROXY_KWS: &[Kw<Act>] = &[
    // Parsed.
    kw("mode", ANY, Act::Run(p_mode)),
    kw("timeout", ANY, Act::Run(p_timeout)),
    kw("balance", DEF | BE, Act::Run(p_balance)),
    kw("retries", DEF | BE, Act::Run(p_retries)),
    kw("maxconn", DEF | FE, Act::Run(p_maxconn)),
    kw("option", ANY, Act::Run(p_option)),
    kw("default-server", DEF | BE, Act::Run(p_default_server)),
    kw("bind", FE, Act::Run(p_bind)),
    kw("default_backend", DEF | FE, Act::Run(p_default_backend)),
    kw("server", BE, Act::Run(p_server)),
    // Accepted, no effect.
    kw("log", ANY, Act::Ignore),
    kw("description", ANY, Act::Ignore),
    kw("id", LISTEN, Act::Ignore),
    kw("enabled", LISTEN, Act::Ignore),
    // TCP features not implemented yet.
    kw("use_backend", FE, Act::NotYet("")),
    kw("acl", ANY, Act::NotYet("")),
    kw("tcp-request", ANY, Act::NotYet("")),
    kw("tcp-response", DEF | BE, Act::NotYet("")),
    kw("tcp-check", DEF | BE, Act::NotYet(CHECK_HINT)),
    kw("http-check", DEF | BE, Act::NotYet(CHECK_HINT)),
    kw("external-check", DEF | BE, Act::NotYet(CHECK_HINT)),
    kw("use-server", BE, Act::NotYet("")),
    kw("server-template", BE, Act::NotYet("")),
    kw("stick-table", LISTEN, Act::NotYet("")),
    kw("stick", BE, Act::NotYet("")),
    kw("source", DEF | BE, Act::NotYet("")),
    kw("hash-type", DEF | BE, Act::NotYet("")),
    kw("hash-balance-factor", DEF | BE, Act::NotYet("")),
    kw("fullconn", DEF | BE, Act::NotYet("")),
    kw("persist", DEF | BE, Act::NotYet("")),
    kw("dispatch", BE, Act::NotYet("")),
    kw("disabled", ANY, Act::NotYet("")),
    kw("rate-limit", DEF | FE, Act::NotYet("")),
    kw("backlog", DEF | FE, Act::NotYet("")),
    kw("log-format", ANY, Act::NotYet("")),
    kw("error-log-format", ANY, Act::NotYet("")),
    kw("log-tag", ANY, Act::NotYet("")),
    kw("email-alert", ANY, Act::NotYet("")),
    kw("force-persist", LISTEN, Act::NotYet("")),
    kw("ignore-persist", LISTEN, Act::NotYet("")),
    kw("load-server-state-from-file", DEF | BE, Act::NotYet("")),
    kw("server-state-file-name", DEF | BE, Act::NotYet("")),
    kw("filter", LISTEN, Act::NotYet("")),
    kw("guid", LISTEN, Act::NotYet("")),
    // HTTP mode only.
    kw("http-request", ANY, Act::Http),
    kw("http-response", ANY, Act::Http),
    kw("http-after-response", ANY, Act::Http),
    kw("http-error", ANY, Act::Http),
    kw("http-reuse", ANY, Act::Http),
    kw("http-send-name-header", ANY, Act::Http),
    kw("redirect", ANY, Act::Http),
    kw("stats", ANY, Act::Http),
    kw("errorfile", ANY, Act::Http),
    kw("errorfiles", ANY, Act::Http),
    kw("errorloc", ANY, Act::Http),
    kw("errorloc302", ANY, Act::Http),
    kw("errorloc303", ANY, Act::Http),
    kw("cookie", ANY, Act::Http),
    kw("dynamic-cookie-key", ANY, Act::Http),
    kw("capture", ANY, Act::Http),
    kw("declare", ANY, Act::Http),
    kw("monitor-uri", ANY, Act::Http),
    kw("monitor", ANY, Act::Http),
    kw("compression", ANY, Act::Http),
    kw("unique-id-format", ANY, Act::Http),
    kw("unique-id-header", ANY, Act::Http),
    kw("max-keep-alive-queue", ANY, Act::Http),
    kw("retry-on", ANY, Act::Http),
    // Removed from HAProxy.
    kw("contimeout", ANY, Act::Removed("timeout connect")),
    kw("clitimeout", ANY, Act::Removed("timeout client")),
    kw("srvtimeout", ANY, Act::Removed("timeout server")),
    kw("redispatch", ANY, Act::Removed("option redispatch")),
];

/// What an `option` does.
#[derive(Clone, Copy)]
enum OptAct {
    Accept,
    Http,
    NotYet(&'static str),
}

const OPTION_KWS: &[Kw<OptAct>] = &[
    kw("tcplog", DEF | FE, OptAct::Accept),
    kw("dontlognull", DEF | FE, OptAct::Accept),
    kw("dontlog-normal", DEF | FE, OptAct::Accept),
    kw("log-separate-errors", DEF | FE, OptAct::Accept),
    kw("logasap", DEF | FE, OptAct::Accept),
    kw("redispatch", DEF | BE, OptAct::Accept),
    kw("tcpka", ANY, OptAct::Accept),
    kw("clitcpka", DEF | FE, OptAct::Accept),
    kw("srvtcpka", DEF | BE, OptAct::Accept),
    kw("log-health-checks", DEF | BE, OptAct::Accept),
    kw("tcp-smart-accept", DEF | FE, OptAct::Accept),
    kw("tcp-smart-connect", DEF | BE, OptAct::Accept),
    kw("splice-auto", ANY, OptAct::Accept),
    kw("splice-request", ANY, OptAct::Accept),
    kw("splice-response", ANY, OptAct::Accept),
    kw("nolinger", ANY, OptAct::NotYet("")),
    kw("independent-streams", ANY, OptAct::NotYet("")),
    kw("abortonclose", DEF | BE, OptAct::NotYet("")),
    kw("allbackups", DEF | BE, OptAct::NotYet("")),
    kw("persist", DEF | BE, OptAct::NotYet("")),
    kw("transparent", DEF | BE, OptAct::NotYet("")),
    kw("socket-stats", DEF | FE, OptAct::NotYet("")),
    kw("tcp-check", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("httpchk", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("ssl-hello-chk", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("smtpchk", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("mysql-check", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("pgsql-check", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("redis-check", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("ldap-check", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("spop-check", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("external-check", DEF | BE, OptAct::NotYet(CHECK_HINT)),
    kw("forwardfor", ANY, OptAct::Http),
    kw("forwarded", ANY, OptAct::Http),
    kw("originalto", ANY, OptAct::Http),
    kw("httplog", ANY, OptAct::Http),
    kw("httpclose", ANY, OptAct::Http),
    kw("forceclose", ANY, OptAct::Http),
    kw("http-server-close", ANY, OptAct::Http),
    kw("http-keep-alive", ANY, OptAct::Http),
    kw("http-buffer-request", ANY, OptAct::Http),
    kw("http-pretend-keepalive", ANY, OptAct::Http),
    kw("http-no-delay", ANY, OptAct::Http),
    kw("http-use-proxy-header", ANY, OptAct::Http),
    kw("http-ignore-probes", ANY, OptAct::Http),
    kw("http-restrict-req-hdr-names", ANY, OptAct::Http),
    kw("http-drop-request-trailers", ANY, OptAct::Http),
    kw("http-drop-response-trailers", ANY, OptAct::Http),
    kw("http-use-htx", ANY, OptAct::Http),
    kw("accept-invalid-http-request", ANY, OptAct::Http),
    kw("accept-invalid-http-response", ANY, OptAct::Http),
    kw(
        "accept-unsafe-violations-in-http-request",
        ANY,
        OptAct::Http,
    ),
    kw(
        "accept-unsafe-violations-in-http-response",
        ANY,
        OptAct::Http,
    ),
    kw("h1-case-adjust-bogus-client", ANY, OptAct::Http),
    kw("h1-case-adjust-bogus-server", ANY, OptAct::Http),
    kw("checkcache", ANY, OptAct::Http),
    kw("prefer-last-server", ANY, OptAct::Http),
    kw("disable-h2-upgrade", ANY, OptAct::Http),
    kw("idle-close-on-response", ANY, OptAct::Http),
];

/// Where a `timeout` goes.
#[derive(Clone, Copy)]
enum TSlot {
    Client,
    Connect,
    Server,
    /// Accepted and validated; not used by this balancer.
    Unused,
    /// Accepted and validated, with a warning that it is not enforced yet.
    NotEnforced,
    Http,
}

const TIMEOUT_KWS: &[Kw<TSlot>] = &[
    kw("client", DEF | FE, TSlot::Client),
    kw("connect", DEF | BE, TSlot::Connect),
    kw("server", DEF | BE, TSlot::Server),
    kw("queue", DEF | BE, TSlot::Unused),
    kw("check", DEF | BE, TSlot::Unused),
    kw("tunnel", DEF | BE, TSlot::NotEnforced),
    kw("client-fin", DEF | FE, TSlot::NotEnforced),
    kw("server-fin", DEF | BE, TSlot::NotEnforced),
    kw("http-request", ANY, TSlot::Http),
    kw("http-keep-alive", ANY, TSlot::Http),
    kw("tarpit", ANY, TSlot::Http),
];

#[derive(Clone, Copy)]
enum BalAct {
    RoundRobin,
    NotYet,
    Http,
}

const BALANCE_KWS: &[Kw<BalAct>] = &[
    kw("roundrobin", ALL, BalAct::RoundRobin),
    kw("static-rr", ALL, BalAct::NotYet),
    kw("leastconn", ALL, BalAct::NotYet),
    kw("first", ALL, BalAct::NotYet),
    kw("source", ALL, BalAct::NotYet),
    kw("random", ALL, BalAct::NotYet),
    kw("hash", ALL, BalAct::NotYet),
    kw("rdp-cookie", ALL, BalAct::NotYet),
    kw("uri", ALL, BalAct::Http),
    kw("url_param", ALL, BalAct::Http),
    kw("hdr", ALL, BalAct::Http),
];

#[derive(Clone, Copy)]
enum BindAct {
    V6Only,
    V4V6,
    /// Takes one word, ignored.
    Name,
    /// Takes a positive number, validated and ignored.
    Number,
    NotYet,
}

const BIND_KWS: &[Kw<BindAct>] = &[
    kw("v6only", ALL, BindAct::V6Only),
    kw("v4v6", ALL, BindAct::V4V6),
    kw("name", ALL, BindAct::Name),
    kw("backlog", ALL, BindAct::Number),
    kw("maxconn", ALL, BindAct::Number),
    kw("ssl", ALL, BindAct::NotYet),
    kw("crt", ALL, BindAct::NotYet),
    kw("crt-list", ALL, BindAct::NotYet),
    kw("ca-file", ALL, BindAct::NotYet),
    kw("alpn", ALL, BindAct::NotYet),
    kw("verify", ALL, BindAct::NotYet),
    kw("interface", ALL, BindAct::NotYet),
    kw("transparent", ALL, BindAct::NotYet),
    kw("defer-accept", ALL, BindAct::NotYet),
    kw("tfo", ALL, BindAct::NotYet),
    kw("mss", ALL, BindAct::NotYet),
    kw("namespace", ALL, BindAct::NotYet),
    kw("accept-proxy", ALL, BindAct::NotYet),
    kw("accept-netscaler-cip", ALL, BindAct::NotYet),
    kw("tcp-ut", ALL, BindAct::NotYet),
    kw("id", ALL, BindAct::NotYet),
    kw("nice", ALL, BindAct::NotYet),
    kw("process", ALL, BindAct::NotYet),
    kw("thread", ALL, BindAct::NotYet),
    kw("shards", ALL, BindAct::NotYet),
    kw("mode", ALL, BindAct::NotYet),
    kw("uid", ALL, BindAct::NotYet),
    kw("gid", ALL, BindAct::NotYet),
    kw("user", ALL, BindAct::NotYet),
    kw("group", ALL, BindAct::NotYet),
    kw("level", ALL, BindAct::NotYet),
    kw("proto", ALL, BindAct::NotYet),
];

#[derive(Clone, Copy)]
enum SrvAct {
    Check,
    NoCheck,
    Weight,
    Inter,
    Rise,
    Fall,
    Disabled,
    Enabled,
    NotYet,
    Http,
}

const SERVER_KWS: &[Kw<SrvAct>] = &[
    kw("check", ALL, SrvAct::Check),
    kw("no-check", ALL, SrvAct::NoCheck),
    kw("weight", ALL, SrvAct::Weight),
    kw("inter", ALL, SrvAct::Inter),
    kw("rise", ALL, SrvAct::Rise),
    kw("fall", ALL, SrvAct::Fall),
    kw("disabled", ALL, SrvAct::Disabled),
    kw("enabled", ALL, SrvAct::Enabled),
    kw("backup", ALL, SrvAct::NotYet),
    kw("maxconn", ALL, SrvAct::NotYet),
    kw("maxqueue", ALL, SrvAct::NotYet),
    kw("minconn", ALL, SrvAct::NotYet),
    kw("slowstart", ALL, SrvAct::NotYet),
    kw("port", ALL, SrvAct::NotYet),
    kw("addr", ALL, SrvAct::NotYet),
    kw("fastinter", ALL, SrvAct::NotYet),
    kw("downinter", ALL, SrvAct::NotYet),
    kw("agent-check", ALL, SrvAct::NotYet),
    kw("agent-port", ALL, SrvAct::NotYet),
    kw("agent-inter", ALL, SrvAct::NotYet),
    kw("send-proxy", ALL, SrvAct::NotYet),
    kw("send-proxy-v2", ALL, SrvAct::NotYet),
    kw("check-send-proxy", ALL, SrvAct::NotYet),
    kw("ssl", ALL, SrvAct::NotYet),
    kw("check-ssl", ALL, SrvAct::NotYet),
    kw("verify", ALL, SrvAct::NotYet),
    kw("sni", ALL, SrvAct::NotYet),
    kw("ca-file", ALL, SrvAct::NotYet),
    kw("crt", ALL, SrvAct::NotYet),
    kw("alpn", ALL, SrvAct::NotYet),
    kw("resolvers", ALL, SrvAct::NotYet),
    kw("resolve-prefer", ALL, SrvAct::NotYet),
    kw("init-addr", ALL, SrvAct::NotYet),
    kw("on-error", ALL, SrvAct::NotYet),
    kw("on-marked-down", ALL, SrvAct::NotYet),
    kw("on-marked-up", ALL, SrvAct::NotYet),
    kw("observe", ALL, SrvAct::NotYet),
    kw("error-limit", ALL, SrvAct::NotYet),
    kw("track", ALL, SrvAct::NotYet),
    kw("id", ALL, SrvAct::NotYet),
    kw("source", ALL, SrvAct::NotYet),
    kw("tfo", ALL, SrvAct::NotYet),
    kw("namespace", ALL, SrvAct::NotYet),
    kw("proto", ALL, SrvAct::NotYet),
    kw("socks4", ALL, SrvAct::NotYet),
    kw("cookie", ALL, SrvAct::Http),
    kw("redir", ALL, SrvAct::Http),
    kw("pool-max-conn", ALL, SrvAct::Http),
    kw("pool-low-conn", ALL, SrvAct::Http),
    kw("pool-purge-delay", ALL, SrvAct::Http),
    kw("pool-conn-name", ALL, SrvAct::Http),
];

// ---------------------------------------------------------------------------
// Parser state.

/// One non-empty line: its keyword and arguments.
struct Line {
    no: usize,
    kw: Token,
    args: Vec<Token>,
}

/// A word and where it was.
#[derive(Clone, Debug)]
struct Spanned {
    text: String,
    line: usize,
    col: usize,
}

/// What `default-server` presets for the following `server` lines.
#[derive(Clone, Debug)]
struct ServerDefaults {
    check: bool,
    params: CheckParams,
    weight: u32,
    disabled: bool,
}

impl Default for ServerDefaults {
    fn default() -> Self {
        Self {
            check: false,
            params: CheckParams::default(),
            weight: 1,
            disabled: false,
        }
    }
}

/// What a `defaults` section carries into the proxies that follow.
#[derive(Clone, Debug, Default)]
struct Settings {
    timeout_client: Option<Duration>,
    timeout_connect: Option<Duration>,
    timeout_server: Option<Duration>,
    balance: Balance,
    maxconn: Option<u32>,
    default_backend: Option<Spanned>,
    default_server: ServerDefaults,
}

struct Defaults {
    name: Option<String>,
    s: Settings,
}

/// A frontend, backend or listen section being parsed.
struct Proxy {
    caps: u8,
    name: Spanned,
    s: Settings,
    binds: Vec<(Bind, usize, String)>,
    servers: Vec<Server>,
    server_lines: HashMap<String, usize>,
}

impl Proxy {
    fn kind(&self) -> &'static str {
        kind_name(self.caps)
    }
}

fn kind_name(caps: u8) -> &'static str {
    match caps {
        FE => "frontend",
        BE => "backend",
        LISTEN => "listen",
        _ => "defaults",
    }
}

enum Section {
    None,
    Global,
    Defaults(Defaults),
    Proxy(Box<Proxy>),
}

struct Parser<'a> {
    file: &'a Path,
    global: Global,
    warnings: Vec<String>,
    section: Section,
    /// The last `defaults` section, preset of the proxies that follow.
    defaults: Settings,
    named_defaults: HashMap<String, Settings>,
    proxies: Vec<Proxy>,
    frontend_lines: HashMap<String, usize>,
    backend_lines: HashMap<String, usize>,
}

/// Shortens and escapes a token for display.
fn near(text: &str) -> String {
    const MAX: usize = 48;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

impl<'a> Parser<'a> {
    fn new(file: &'a Path) -> Self {
        Self {
            file,
            global: Global::default(),
            warnings: Vec::new(),
            section: Section::None,
            defaults: Settings::default(),
            named_defaults: HashMap::new(),
            proxies: Vec::new(),
            frontend_lines: HashMap::new(),
            backend_lines: HashMap::new(),
        }
    }

    // --- errors ---

    fn err_at(
        &self,
        line: usize,
        col: usize,
        near_text: &str,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            col,
            msg: msg.into(),
            near: near(near_text),
            hint: None,
        }
    }

    fn err(&self, line: usize, tok: &Token, msg: impl Into<String>) -> ConfigError {
        self.err_at(line, tok.col, &tok.text, msg)
    }

    fn err_hint(
        &self,
        line: usize,
        tok: &Token,
        msg: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        match self.err(line, tok, msg) {
            ConfigError::Invalid {
                file,
                line,
                col,
                msg,
                near,
                ..
            } => ConfigError::Invalid {
                file,
                line,
                col,
                msg,
                near,
                hint,
            },
            other => other,
        }
    }

    fn warn(&mut self, line: usize, msg: impl std::fmt::Display) {
        self.warnings
            .push(format!("{}:{line}: warning: {msg}", self.file.display()));
    }

    fn origin(&self, line: usize) -> Origin {
        Origin {
            file: self.file.to_path_buf(),
            line,
        }
    }

    // --- arguments ---

    /// Argument `i`, or an error on the keyword saying what it expects.
    fn arg<'l>(&self, l: &'l Line, i: usize, expects: &str) -> Result<&'l Token, ConfigError> {
        l.args
            .get(i)
            .ok_or_else(|| self.err(l.no, &l.kw, format!("'{}' expects {expects}", l.kw.text)))
    }

    /// Errors on any argument from `n` on.
    fn no_more(&self, l: &Line, n: usize, what: &str) -> Result<(), ConfigError> {
        match l.args.get(n) {
            Some(extra) => Err(self.err(
                l.no,
                extra,
                format!("unexpected extra argument to '{what}'"),
            )),
            None => Ok(()),
        }
    }

    // --- sections ---

    fn caps(&self) -> u8 {
        match &self.section {
            Section::Defaults(_) => DEF,
            Section::Proxy(p) => p.caps,
            Section::None | Section::Global => 0,
        }
    }

    fn settings(&mut self, l: &Line) -> Result<&mut Settings, ConfigError> {
        match &mut self.section {
            Section::Defaults(d) => Ok(&mut d.s),
            Section::Proxy(p) => Ok(&mut p.s),
            Section::None | Section::Global => Err(ConfigError::Invalid {
                file: self.file.to_path_buf(),
                line: l.no,
                col: l.kw.col,
                msg: "internal error: no proxy section".into(),
                near: near(&l.kw.text),
                hint: None,
            }),
        }
    }

    fn proxy(&mut self, l: &Line) -> Result<&mut Proxy, ConfigError> {
        match &mut self.section {
            Section::Proxy(p) => Ok(p),
            _ => Err(ConfigError::Invalid {
                file: self.file.to_path_buf(),
                line: l.no,
                col: l.kw.col,
                msg: "internal error: no frontend/backend section".into(),
                near: near(&l.kw.text),
                hint: None,
            }),
        }
    }

    /// Name of the current section, for messages: `frontend 'x'`.
    fn section_desc(&self) -> String {
        match &self.section {
            Section::Proxy(p) => format!("{} '{}'", p.kind(), p.name.text),
            Section::Defaults(d) => match &d.name {
                Some(n) => format!("defaults '{n}'"),
                None => "defaults section".into(),
            },
            Section::Global => "global section".into(),
            Section::None => "no section".into(),
        }
    }

    fn close_section(&mut self) {
        match std::mem::replace(&mut self.section, Section::None) {
            Section::Defaults(d) => {
                if let Some(name) = d.name {
                    self.named_defaults.insert(name, d.s.clone());
                }
                self.defaults = d.s;
            }
            Section::Proxy(p) => self.proxies.push(*p),
            Section::None | Section::Global => {}
        }
    }

    fn line(&mut self, l: &Line) -> Result<(), ConfigError> {
        if let Some(sec) = lookup(SECTIONS, &l.kw.text) {
            return self.open_section(l, sec.act);
        }
        match self.section {
            Section::None => {
                let hint = suggest(&l.kw.text, SECTIONS.iter().map(|k| k.name));
                Err(self.err_hint(
                    l.no,
                    &l.kw,
                    format!("unknown keyword '{}' out of section", l.kw.text),
                    hint,
                ))
            }
            Section::Global => self.global_line(l),
            Section::Defaults(_) | Section::Proxy(_) => self.proxy_line(l),
        }
    }

    fn open_section(&mut self, l: &Line, act: SecAct) -> Result<(), ConfigError> {
        self.close_section();
        match act {
            SecAct::Global => {
                self.no_more(l, 0, "global")?;
                self.section = Section::Global;
            }
            SecAct::Defaults => {
                let (name, from) = self.header_args(l, false)?;
                // A new defaults section starts from scratch, unless `from`.
                let s = match from {
                    Some(_) => self.defaults_named(l, from)?,
                    None => Settings::default(),
                };
                self.section = Section::Defaults(Defaults {
                    name: name.map(|t| t.text.clone()),
                    s,
                });
            }
            SecAct::Proxy(caps) => {
                let (name, from) = self.header_args(l, true)?;
                let Some(name) = name else {
                    return Err(self.err(
                        l.no,
                        &l.kw,
                        format!("'{}' expects <name> as an argument", l.kw.text),
                    ));
                };
                self.check_duplicate_proxy(l, caps, name)?;
                let s = self.defaults_named(l, from)?;
                if caps & FE != 0 {
                    self.frontend_lines.insert(name.text.clone(), l.no);
                }
                if caps & BE != 0 {
                    self.backend_lines.insert(name.text.clone(), l.no);
                }
                self.section = Section::Proxy(Box::new(Proxy {
                    caps,
                    name: Spanned {
                        text: name.text.clone(),
                        line: l.no,
                        col: name.col,
                    },
                    s,
                    binds: Vec::new(),
                    servers: Vec::new(),
                    server_lines: HashMap::new(),
                }));
            }
            SecAct::NotYet => {
                return Err(self.err(
                    l.no,
                    &l.kw,
                    format!("section '{}' is not supported yet", l.kw.text),
                ))
            }
            SecAct::Http => return Err(self.http_err(l.no, &l.kw, &l.kw.text)),
        }
        Ok(())
    }

    /// `<kw> [name] [from <defaults>]`.
    fn header_args<'l>(
        &self,
        l: &'l Line,
        named: bool,
    ) -> Result<(Option<&'l Token>, Option<&'l Token>), ConfigError> {
        let mut args = l.args.iter().peekable();
        let mut name = None;
        if let Some(t) = args.next_if(|t| t.text != "from" || named) {
            self.check_name(l.no, t, &l.kw.text)?;
            name = Some(t);
        }
        let mut from = None;
        if let Some(f) = args.next_if(|t| t.text == "from") {
            match args.next() {
                Some(d) => from = Some(d),
                None => {
                    return Err(self.err(
                        l.no,
                        f,
                        "'from' expects the name of a 'defaults' section",
                    ))
                }
            }
        }
        if let Some(extra) = args.next() {
            return Err(self.err(
                l.no,
                extra,
                format!("unexpected extra argument to '{}'", l.kw.text),
            ));
        }
        Ok((name, from))
    }

    fn defaults_named(&self, l: &Line, from: Option<&Token>) -> Result<Settings, ConfigError> {
        match from {
            None => Ok(self.defaults.clone()),
            Some(t) => self.named_defaults.get(&t.text).cloned().ok_or_else(|| {
                let hint = suggest(&t.text, self.named_defaults.keys().map(String::as_str));
                self.err_hint(
                    l.no,
                    t,
                    format!("unknown 'defaults' section '{}'", t.text),
                    hint,
                )
            }),
        }
    }

    /// Names of proxies and servers: letters, digits, '-', '_', '.', ':' (as HAProxy).
    fn check_name(&self, line: usize, t: &Token, what: &str) -> Result<(), ConfigError> {
        if t.text.is_empty() {
            return Err(self.err(line, t, format!("empty {what} name")));
        }
        if let Some(c) = t
            .text
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(self.err(
                line,
                t,
                format!(
                    "character '{}' is not permitted in {what} name '{}'",
                    c.escape_debug(),
                    t.text
                ),
            ));
        }
        Ok(())
    }

    fn check_duplicate_proxy(&self, l: &Line, caps: u8, name: &Token) -> Result<(), ConfigError> {
        let clash = |lines: &HashMap<String, usize>, what: &str| match lines.get(&name.text) {
            Some(prev) => Err(self.err(
                l.no,
                name,
                format!(
                    "{} '{}' has the same name as another {what} declared at {}:{prev}",
                    l.kw.text,
                    name.text,
                    self.file.display()
                ),
            )),
            None => Ok(()),
        };
        if caps & FE != 0 {
            clash(&self.frontend_lines, "frontend")?;
        }
        if caps & BE != 0 {
            clash(&self.backend_lines, "backend")?;
        }
        Ok(())
    }

    // --- keyword dispatch ---

    fn global_line(&mut self, l: &Line) -> Result<(), ConfigError> {
        let Some(k) = lookup(GLOBAL_KWS, &l.kw.text) else {
            let cands = GLOBAL_KWS
                .iter()
                .map(|k| k.name)
                .chain(SECTIONS.iter().map(|k| k.name));
            let hint = suggest(&l.kw.text, cands);
            return Err(self.err_hint(
                l.no,
                &l.kw,
                format!("unknown keyword '{}' in 'global' section", l.kw.text),
                hint,
            ));
        };
        self.run(l, k.act, &l.kw.text)
    }

    fn proxy_line(&mut self, l: &Line) -> Result<(), ConfigError> {
        let caps = self.caps();
        if l.kw.text == "no" {
            return self.no_line(l);
        }
        let Some(k) = lookup(PROXY_KWS, &l.kw.text) else {
            let cands = PROXY_KWS
                .iter()
                .filter(|k| k.caps & caps != 0)
                .map(|k| k.name)
                .chain(SECTIONS.iter().map(|k| k.name));
            let hint = suggest(&l.kw.text, cands);
            return Err(self.err_hint(
                l.no,
                &l.kw,
                format!(
                    "unknown keyword '{}' in '{}' section",
                    l.kw.text,
                    kind_name(caps)
                ),
                hint,
            ));
        };
        if k.caps & caps == 0 {
            let allowed: Vec<String> = [(DEF, "defaults"), (FE, "frontend"), (BE, "backend")]
                .iter()
                .filter(|(c, _)| k.caps & c != 0)
                .map(|(_, n)| format!("'{n}'"))
                .chain((k.caps & LISTEN != 0).then(|| "'listen'".to_string()))
                .collect();
            return Err(self.err(
                l.no,
                &l.kw,
                format!(
                    "'{}' is not allowed in a '{}' section (only in {})",
                    l.kw.text,
                    kind_name(caps),
                    allowed.join(", ")
                ),
            ));
        }
        self.run(l, k.act, &l.kw.text)
    }

    fn run(&mut self, l: &Line, act: Act, what: &str) -> Result<(), ConfigError> {
        match act {
            Act::Run(f) => f(self, l),
            Act::Ignore => Ok(()),
            Act::Http => Err(self.http_err(l.no, &l.kw, what)),
            Act::NotYet(hint) => Err(self.not_yet_err(l.no, &l.kw, what, hint)),
            Act::Removed(by) => Err(self.err(
                l.no,
                &l.kw,
                format!("'{what}' was removed from HAProxy, use '{by}' instead"),
            )),
        }
    }

    fn http_err(&self, line: usize, tok: &Token, what: &str) -> ConfigError {
        self.err(
            line,
            tok,
            format!(
                "'{what}' is an HTTP-mode feature, which this L4 (TCP) load balancer does not offer"
            ),
        )
    }

    fn not_yet_err(&self, line: usize, tok: &Token, what: &str, hint: &str) -> ConfigError {
        self.err(line, tok, format!("'{what}' is not supported yet{hint}"))
    }

    /// `no option X`, `no log`: turning off what is off by default here.
    fn no_line(&mut self, l: &Line) -> Result<(), ConfigError> {
        let what = self.arg(l, 0, "'option <name>' or 'log'")?;
        match what.text.as_str() {
            "log" => Ok(()),
            "option" => {
                let o = self.arg(l, 1, "'option <name>'")?;
                if lookup(OPTION_KWS, &o.text).is_none() {
                    let hint = suggest(&o.text, OPTION_KWS.iter().map(|k| k.name));
                    return Err(self.err_hint(
                        l.no,
                        o,
                        format!("unknown option '{}'", o.text),
                        hint,
                    ));
                }
                self.no_more(l, 2, "no option")
            }
            _ => Err(self.err(l.no, what, "'no' only applies to 'option' and 'log'")),
        }
    }
}

// ---------------------------------------------------------------------------
// Value parsers. They return a message without position; the caller places it.

fn parse_uint(s: &str, min: u64, max: u64) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{}' is not a number", near(s)));
    }
    let v = if s.len() > 19 {
        None
    } else {
        s.parse::<u64>().ok()
    };
    match v {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{} is out of range (expected {min}..={max})",
            near(s)
        )),
    }
}

fn parse_u32(s: &str, min: u32) -> Result<u32, String> {
    let v = parse_uint(s, u64::from(min), u64::from(u32::MAX))?;
    u32::try_from(v).map_err(|_| format!("{} is out of range", near(s)))
}

/// Splits `123abc` into `("123", "abc")`.
fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// An HAProxy time: a number with an optional unit (`us`, `ms`, `s`, `m`, `h`,
/// `d`); no unit means milliseconds. At most `INT_MAX` milliseconds.
pub(crate) fn parse_time(s: &str) -> Result<Duration, String> {
    let (digits, unit) = split_number(s);
    if digits.is_empty() {
        return Err(format!(
            "'{}' is not a time (expected a number and an optional unit: us, ms, s, m, h, d)",
            near(s)
        ));
    }
    let micros_per_unit: u64 = match unit {
        "" | "ms" => 1_000,
        "us" => 1,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => {
            return Err(format!(
                "unknown time unit '{}' (expected us, ms, s, m, h or d)",
                near(unit)
            ))
        }
    };
    let overflow = || {
        format!(
            "timer overflow in '{}' (the maximum is {MAX_TIMER_MS} ms, about 24.8 days)",
            near(s)
        )
    };
    let n: u64 = if digits.len() > 19 {
        return Err(overflow());
    } else {
        digits.parse().map_err(|_| overflow())?
    };
    let micros = n.checked_mul(micros_per_unit).ok_or_else(overflow)?;
    if micros > MAX_TIMER_MS * 1_000 {
        return Err(overflow());
    }
    Ok(Duration::from_micros(micros))
}

/// An HAProxy size: a number with an optional `k`, `m` or `g` suffix (any case,
/// powers of 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = split_number(s);
    if digits.is_empty() {
        return Err(format!(
            "'{}' is not a size (expected a number and an optional k, m or g suffix)",
            near(s)
        ));
    }
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit '{}' (expected k, m or g)",
                near(unit)
            ))
        }
    };
    let too_big = || format!("size '{}' is too large", near(s));
    let n: u64 = if digits.len() > 19 {
        return Err(too_big());
    } else {
        digits.parse().map_err(|_| too_big())?
    };
    n.checked_mul(mult).ok_or_else(too_big)
}

fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err("missing port number".into());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port '{}'", near(s)));
    }
    match if s.len() > 10 {
        None
    } else {
        s.parse::<u64>().ok()
    } {
        Some(0) => Err("port 0 is not valid (expected 1-65535)".into()),
        Some(p) => {
            u16::try_from(p).map_err(|_| format!("port {p} is out of range (expected 1-65535)"))
        }
        None => Err(format!(
            "port {} is out of range (expected 1-65535)",
            near(s)
        )),
    }
}

/// Address family forced by an `ipv4@`/`ipv6@` prefix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

/// `[family@]host[:port]` split: `host` None is a wildcard (`*` or empty).
struct HostPort<'s> {
    family: Family,
    host: Option<IpAddr>,
    port: Option<&'s str>,
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

fn split_address(s: &str) -> Result<HostPort<'_>, String> {
    let (family, rest) = match s.split_once('@') {
        None => (Family::Any, s),
        Some((prefix, rest)) => {
            let family = match prefix {
                "ipv4" | "tcp4" => Family::V4,
                "ipv6" | "tcp6" => Family::V6,
                "tcp" => Family::Any,
                "unix" | "abns" | "abnsz" | "fd" | "sockpair" | "udp" | "udp4" | "udp6"
                | "quic4" | "quic6" | "uxst" | "uxdg" | "mptcp" | "mptcp4" | "mptcp6" | "rhttp" => {
                    return Err(format!(
                        "address family '{}@' is not supported (only TCP over IPv4 and IPv6)",
                        near(prefix)
                    ))
                }
                _ => return Err(format!("unknown address family '{}@'", near(prefix))),
            };
            (family, rest)
        }
    };
    if rest.starts_with('/') {
        return Err("UNIX socket addresses are not supported (only TCP over IPv4 and IPv6)".into());
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| "missing ']' after an IPv6 address".to_string())?;
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':').ok_or_else(|| {
                format!("expected ':' and a port after ']', found '{}'", near(after))
            })?)
        };
        let ip: Ipv6Addr = h
            .parse()
            .map_err(|_| format!("invalid IPv6 address '{}'", near(h)))?;
        (Some(IpAddr::V6(ip)), port)
    } else {
        let (h, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let host = match h {
            "" | "*" => None,
            _ => match h.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) if rest.parse::<Ipv6Addr>().is_ok() => {
                    return Err(format!(
                        "missing port: HAProxy reads the last ':' of '{}' as the port separator; \
                         write '[{}]:PORT' or '{}:PORT'",
                        near(rest),
                        near(rest),
                        near(rest)
                    ))
                }
                Err(_) if is_hostname(h) => {
                    return Err(format!(
                        "hostname '{}' not supported yet (use an IP address)",
                        near(h)
                    ))
                }
                Err(_) => return Err(format!("invalid address '{}'", near(h))),
            },
        };
        (host, port)
    };
    match (family, host) {
        (Family::V4, Some(IpAddr::V6(_))) => {
            return Err("an IPv6 address cannot follow 'ipv4@'".into())
        }
        (Family::V6, Some(IpAddr::V4(_))) => {
            return Err("an IPv4 address cannot follow 'ipv6@'".into())
        }
        _ => {}
    }
    Ok(HostPort { family, host, port })
}

/// A `bind` address: `(addr, port_first, port_last)`, `addr` None for IPv4 any.
fn parse_bind_addr(s: &str) -> Result<(Option<IpAddr>, u16, u16), String> {
    let hp = split_address(s)?;
    let addr = match (hp.family, hp.host) {
        (Family::V6, None) => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        (_, Some(IpAddr::V4(ip))) if ip.is_unspecified() => None,
        (_, host) => host,
    };
    let port = match hp.port {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(format!(
                "missing port in '{}' (expected [address]:port)",
                near(s)
            ))
        }
    };
    let (first, last) = match port.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(a)?, parse_port(b)?);
            if a > b {
                return Err(format!(
                    "invalid port range '{}': the first port is above the last",
                    near(port)
                ));
            }
            (a, b)
        }
        None => {
            let p = parse_port(port)?;
            (p, p)
        }
    };
    Ok((addr, first, last))
}

fn parse_server_addr(s: &str) -> Result<SocketAddr, String> {
    let hp = split_address(s)?;
    let ip = match hp.host {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => {
            return Err(format!(
                "server address '{}' must be a specific IP address",
                near(s)
            ))
        }
    };
    let port = match hp.port {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(format!(
                "missing port in '{}' (servers without a port are not supported yet)",
                near(s)
            ))
        }
    };
    if port.starts_with('+') || port.starts_with('-') {
        return Err("port offsets (+N/-N) are not supported yet".into());
    }
    if port.contains('-') {
        return Err("port ranges are not allowed on servers".into());
    }
    Ok(SocketAddr::new(ip, parse_port(port)?))
}

// ---------------------------------------------------------------------------
// Global keywords.

fn g_maxconn(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<number> as an argument")?;
    p.no_more(l, 1, "maxconn")?;
    let n = parse_u32(&v.text, 1).map_err(|m| p.err(l.no, v, format!("invalid 'maxconn': {m}")))?;
    p.global.maxconn = Some(n);
    Ok(())
}

fn g_splice_budget(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<size> as an argument (e.g. 4m)")?;
    p.no_more(l, 1, &l.kw.text)?;
    let size =
        parse_size(&v.text).map_err(|m| p.err(l.no, v, format!("invalid '{}': {m}", l.kw.text)))?;
    if size == 0 {
        return Err(p.err(l.no, v, format!("'{}' must be greater than 0", l.kw.text)));
    }
    p.global.splice_budget = size;
    Ok(())
}

// ---------------------------------------------------------------------------
// Proxy keywords (defaults, frontend, backend, listen).

fn p_mode(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let m = p.arg(l, 0, "'tcp' as an argument")?;
    p.no_more(l, 1, "mode")?;
    match m.text.as_str() {
        "tcp" => Ok(()),
        "http" => Err(p.http_err(l.no, m, "mode http")),
        "log" | "spop" | "health" => Err(p.err(
            l.no,
            m,
            format!(
                "'mode {}' is not supported (this load balancer only offers 'mode tcp')",
                m.text
            ),
        )),
        _ => Err(p.err_hint(
            l.no,
            m,
            format!("unknown proxy mode '{}' (expected 'tcp')", m.text),
            suggest(&m.text, ["tcp", "http"]),
        )),
    }
}

fn p_timeout(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let name = p.arg(
        l,
        0,
        "a timeout name ('client', 'connect', 'server'...) and a time",
    )?;
    let Some(k) = lookup(TIMEOUT_KWS, &name.text) else {
        let hint = suggest(&name.text, TIMEOUT_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(l.no, name, format!("unknown timeout '{}'", name.text), hint));
    };
    let what = format!("timeout {}", k.name);
    if let TSlot::Http = k.act {
        return Err(p.http_err(l.no, name, &what));
    }
    let v = p.arg(l, 1, "a timeout name and a time (e.g. 30s)")?;
    p.no_more(l, 2, &what)?;
    let d = parse_time(&v.text).map_err(|m| p.err(l.no, v, format!("invalid '{what}': {m}")))?;
    // As HAProxy, 0 is no timeout.
    let d = (!d.is_zero()).then_some(d);
    let caps = p.caps();
    if k.caps & caps == 0 {
        let missing = if k.caps & BE != 0 {
            "backend"
        } else {
            "frontend"
        };
        let desc = p.section_desc();
        p.warn(
            l.no,
            format_args!("'{what}' ignored because {desc} has no {missing} capability"),
        );
        return Ok(());
    }
    let s = p.settings(l)?;
    match k.act {
        TSlot::Client => s.timeout_client = d,
        TSlot::Connect => s.timeout_connect = d,
        TSlot::Server => s.timeout_server = d,
        TSlot::Unused | TSlot::Http => {}
        TSlot::NotEnforced => p.warn(
            l.no,
            format_args!("'{what}' is accepted but not enforced yet by this load balancer"),
        ),
    }
    Ok(())
}

fn p_balance(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let a = p.arg(l, 0, "an algorithm ('roundrobin') as an argument")?;
    // `hdr(name)`, `rdp-cookie(name)`: the algorithm is before '('.
    let algo = a.text.split('(').next().unwrap_or_default();
    let Some(k) = lookup(BALANCE_KWS, algo) else {
        let hint = suggest(algo, BALANCE_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(
            l.no,
            a,
            format!("unknown load balancing algorithm '{}'", a.text),
            hint,
        ));
    };
    let what = format!("balance {}", k.name);
    match k.act {
        BalAct::Http => Err(p.http_err(l.no, a, &what)),
        BalAct::NotYet => Err(p.not_yet_err(l.no, a, &what, " (only 'roundrobin' is)")),
        BalAct::RoundRobin => {
            p.no_more(l, 1, &what)?;
            p.settings(l)?.balance = Balance::RoundRobin;
            Ok(())
        }
    }
}

fn p_retries(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<number> as an argument")?;
    p.no_more(l, 1, "retries")?;
    parse_u32(&v.text, 0).map_err(|m| p.err(l.no, v, format!("invalid 'retries': {m}")))?;
    Ok(())
}

fn p_maxconn(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<number> as an argument")?;
    p.no_more(l, 1, "maxconn")?;
    let n = parse_u32(&v.text, 1).map_err(|m| p.err(l.no, v, format!("invalid 'maxconn': {m}")))?;
    p.settings(l)?.maxconn = Some(n);
    Ok(())
}

fn p_option(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let o = p.arg(l, 0, "an option name as an argument")?;
    let Some(k) = lookup(OPTION_KWS, &o.text) else {
        let hint = suggest(&o.text, OPTION_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(l.no, o, format!("unknown option '{}'", o.text), hint));
    };
    let what = format!("option {}", k.name);
    match k.act {
        OptAct::Http => return Err(p.http_err(l.no, o, &what)),
        OptAct::NotYet(hint) => return Err(p.not_yet_err(l.no, o, &what, hint)),
        OptAct::Accept => {}
    }
    p.no_more(l, 1, &what)?;
    let caps = p.caps();
    if k.caps & caps == 0 {
        let missing = if k.caps & BE != 0 {
            "backend"
        } else {
            "frontend"
        };
        let desc = p.section_desc();
        p.warn(
            l.no,
            format_args!("'{what}' ignored because {desc} has no {missing} capability"),
        );
    }
    Ok(())
}

fn p_default_backend(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let b = p.arg(l, 0, "<backend name> as an argument")?;
    p.no_more(l, 1, "default_backend")?;
    p.check_name(l.no, b, "backend")?;
    p.settings(l)?.default_backend = Some(Spanned {
        text: b.text.clone(),
        line: l.no,
        col: b.col,
    });
    Ok(())
}

fn p_bind(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let a = p.arg(l, 0, "[address]:port[,...] as an argument")?;
    let mut binds = Vec::new();
    let mut offset = 0usize;
    for part in a.text.split(',') {
        // Point at the failing address in `a,b,c` when the word was plain.
        let col = if a.verbatim { a.col + offset } else { a.col };
        offset += part.chars().count() + 1;
        let shown = if part.is_empty() {
            a.text.as_str()
        } else {
            part
        };
        let (addr, port_first, port_last) = if part.is_empty() {
            Err("empty address in the list".to_string())
        } else {
            parse_bind_addr(part)
        }
        .map_err(|m| p.err_at(l.no, col, shown, format!("invalid bind address: {m}")))?;
        binds.push((
            Bind {
                addr,
                port_first,
                port_last,
                v6only: false,
                origin: p.origin(l.no),
            },
            col,
            part.to_string(),
        ));
    }
    let mut v6only = false;
    let mut i = 1;
    while let Some(t) = l.args.get(i) {
        let Some(k) = lookup(BIND_KWS, &t.text) else {
            let hint = suggest(&t.text, BIND_KWS.iter().map(|k| k.name));
            return Err(p.err_hint(
                l.no,
                t,
                format!("unknown 'bind' parameter '{}'", t.text),
                hint,
            ));
        };
        match k.act {
            BindAct::V6Only => v6only = true,
            BindAct::V4V6 => v6only = false,
            BindAct::Name => {
                i += 1;
                p.arg(l, i, &format!("a value after '{}'", k.name))?;
            }
            BindAct::Number => {
                i += 1;
                let v = p.arg(l, i, &format!("a number after '{}'", k.name))?;
                parse_u32(&v.text, 1)
                    .map_err(|m| p.err(l.no, v, format!("invalid '{}': {m}", k.name)))?;
            }
            BindAct::NotYet => {
                return Err(p.not_yet_err(l.no, t, &format!("bind ... {}", k.name), ""))
            }
        }
        i += 1;
    }
    let proxy = p.proxy(l)?;
    for (mut b, col, text) in binds {
        b.v6only = v6only;
        proxy.binds.push((b, col, text));
    }
    Ok(())
}

impl Parser<'_> {
    /// `server`/`default-server` parameters from argument `start` on.
    fn server_params(
        &self,
        l: &Line,
        start: usize,
        sd: &mut ServerDefaults,
    ) -> Result<(), ConfigError> {
        let mut i = start;
        while let Some(t) = l.args.get(i) {
            let Some(k) = lookup(SERVER_KWS, &t.text) else {
                let hint = suggest(&t.text, SERVER_KWS.iter().map(|k| k.name));
                return Err(self.err_hint(
                    l.no,
                    t,
                    format!("unknown '{}' parameter '{}'", l.kw.text, t.text),
                    hint,
                ));
            };
            let mut value = || -> Result<&Token, ConfigError> {
                i += 1;
                self.arg(l, i, &format!("a value after '{}'", k.name))
            };
            let invalid =
                |v: &Token, m: String| self.err(l.no, v, format!("invalid '{}': {m}", k.name));
            match k.act {
                SrvAct::Check => sd.check = true,
                SrvAct::NoCheck => sd.check = false,
                SrvAct::Disabled => sd.disabled = true,
                SrvAct::Enabled => sd.disabled = false,
                SrvAct::Weight => {
                    let v = value()?;
                    sd.weight = parse_uint(&v.text, 0, u64::from(MAX_WEIGHT))
                        .and_then(|w| u32::try_from(w).map_err(|e| e.to_string()))
                        .map_err(|m| invalid(v, m))?;
                }
                SrvAct::Inter => {
                    let v = value()?;
                    let d = parse_time(&v.text).map_err(|m| invalid(v, m))?;
                    if d.is_zero() {
                        return Err(invalid(v, "must be greater than 0".into()));
                    }
                    sd.params.inter = d;
                }
                SrvAct::Rise | SrvAct::Fall => {
                    let v = value()?;
                    let n = parse_u32(&v.text, 1).map_err(|m| invalid(v, m))?;
                    if let SrvAct::Rise = k.act {
                        sd.params.rise = n;
                    } else {
                        sd.params.fall = n;
                    }
                }
                SrvAct::NotYet => {
                    return Err(self.not_yet_err(
                        l.no,
                        t,
                        &format!("{} ... {}", l.kw.text, k.name),
                        "",
                    ))
                }
                SrvAct::Http => {
                    return Err(self.http_err(l.no, t, &format!("{} ... {}", l.kw.text, k.name)))
                }
            }
            i += 1;
        }
        Ok(())
    }
}

fn p_default_server(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let mut sd = p.settings(l)?.default_server.clone();
    p.server_params(l, 0, &mut sd)?;
    p.settings(l)?.default_server = sd;
    Ok(())
}

fn p_server(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let name = p.arg(l, 0, "<name> and <address>:<port> as arguments")?;
    p.check_name(l.no, name, "server")?;
    let a = p.arg(l, 1, "<name> and <address>:<port> as arguments")?;
    let addr = parse_server_addr(&a.text)
        .map_err(|m| p.err(l.no, a, format!("invalid server address: {m}")))?;
    let mut sd = p.settings(l)?.default_server.clone();
    p.server_params(l, 2, &mut sd)?;
    let file = p.file;
    let origin = p.origin(l.no);
    let proxy = p.proxy(l)?;
    if let Some(prev) = proxy.server_lines.get(&name.text) {
        let msg = format!(
            "{} '{}': server name '{}' is already used at {}:{prev}",
            proxy.kind(),
            proxy.name.text,
            name.text,
            file.display()
        );
        return Err(p.err(l.no, name, msg));
    }
    proxy.server_lines.insert(name.text.clone(), l.no);
    proxy.servers.push(Server {
        name: name.text.clone(),
        addr,
        check: sd.check,
        check_params: sd.params,
        weight: sd.weight,
        disabled: sd.disabled,
        origin,
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Cross checks and the model.

/// What a bind listens on, for conflict detection: `(kind, addr)` with kind 0
/// for IPv4 any, 1 for IPv6 any, 2 for a specific address.
type BindKey = (u8, IpAddr);

struct BindSlot {
    key: BindKey,
    first: u16,
    last: u16,
    line: usize,
    col: usize,
    text: String,
    frontend: usize,
    /// This IPv4-any slot comes from a dual-stack `::`.
    dual: bool,
}

impl Parser<'_> {
    fn finish(mut self) -> Result<Config, ConfigError> {
        self.close_section();
        let file = self.file.to_path_buf();
        if !self.proxies.iter().any(|p| p.caps & FE != 0) {
            return Err(ConfigError::File {
                file,
                msg: "no 'frontend' or 'listen' section: nothing to do".into(),
            });
        }

        let proxies = std::mem::take(&mut self.proxies);
        let mut backends = Vec::new();
        let mut backend_idx: HashMap<&str, usize> = HashMap::new();
        for p in proxies.iter().filter(|p| p.caps & BE != 0) {
            backend_idx.insert(&p.name.text, backends.len());
            backends.push(Backend {
                name: p.name.text.clone(),
                balance: p.s.balance,
                servers: p.servers.clone(),
                timeout_connect: p.s.timeout_connect,
                timeout_server: p.s.timeout_server,
                origin: self.origin(p.name.line),
            });
        }

        let mut frontends = Vec::new();
        let mut slots = Vec::new();
        for p in proxies.iter().filter(|p| p.caps & FE != 0) {
            if p.binds.is_empty() {
                return Err(self.err_at(
                    p.name.line,
                    p.name.col,
                    &p.name.text,
                    format!(
                        "{} '{}' has no 'bind' directive (declare it as a 'backend' if this was intended)",
                        p.kind(),
                        p.name.text
                    ),
                ));
            }
            // A listen section is its own default backend, unless told otherwise.
            let target = match (&p.s.default_backend, p.caps & BE != 0) {
                (Some(d), _) => Some(d.clone()),
                (None, true) => Some(p.name.clone()),
                (None, false) => None,
            };
            let idx = match &target {
                Some(t) => match backend_idx.get(t.text.as_str()) {
                    Some(&i) => Some(i),
                    None => {
                        let hint = suggest(&t.text, backend_idx.keys().copied());
                        return Err(ConfigError::Invalid {
                            file,
                            line: t.line,
                            col: t.col,
                            msg: format!(
                                "{} '{}': 'default_backend' names unknown backend '{}'",
                                p.kind(),
                                p.name.text,
                                t.text
                            ),
                            near: near(&t.text),
                            hint,
                        });
                    }
                },
                None => {
                    self.warn(
                        p.name.line,
                        format_args!(
                            "frontend '{}' has no 'default_backend': its connections will be closed",
                            p.name.text
                        ),
                    );
                    None
                }
            };
            for (b, col, text) in &p.binds {
                let mut push = |key: BindKey, dual: bool| {
                    slots.push(BindSlot {
                        key,
                        first: b.port_first,
                        last: b.port_last,
                        line: b.origin.line,
                        col: *col,
                        text: text.clone(),
                        frontend: frontends.len(),
                        dual,
                    })
                };
                match b.addr {
                    None => push((0, IpAddr::V4(Ipv4Addr::UNSPECIFIED)), false),
                    Some(ip @ IpAddr::V6(v6)) if v6.is_unspecified() => {
                        push((1, ip), false);
                        if !b.v6only {
                            push((0, IpAddr::V4(Ipv4Addr::UNSPECIFIED)), true);
                        }
                    }
                    Some(ip) => push((2, ip), false),
                }
            }
            frontends.push(Frontend {
                name: p.name.text.clone(),
                binds: p.binds.iter().map(|(b, _, _)| b.clone()).collect(),
                default_backend: target.map(|t| t.text),
                default_backend_idx: idx,
                timeout_client: p.s.timeout_client,
                maxconn: p.s.maxconn,
                origin: self.origin(p.name.line),
            });
        }

        self.check_bind_conflicts(&mut slots, &frontends)?;

        for p in &proxies {
            let fe_missing = p.caps & FE != 0 && p.s.timeout_client.is_none();
            let be_missing =
                p.caps & BE != 0 && (p.s.timeout_connect.is_none() || p.s.timeout_server.is_none());
            if fe_missing || be_missing {
                let kind = if p.caps == LISTEN { "proxy" } else { p.kind() };
                self.warn(
                    p.name.line,
                    format_args!(
                        "missing timeouts for {kind} '{}'. While not properly invalid, you will \
                         certainly encounter various problems with such a configuration. To fix \
                         this, please ensure that all following timeouts are set to a non-zero \
                         value: 'client', 'connect', 'server'.",
                        p.name.text
                    ),
                );
            }
        }

        Ok(Config {
            global: self.global,
            frontends,
            backends,
            warnings: self.warnings,
        })
    }

    /// Two binds (in any frontends) on the same address with overlapping ports.
    fn check_bind_conflicts(
        &self,
        slots: &mut [BindSlot],
        frontends: &[Frontend],
    ) -> Result<(), ConfigError> {
        slots.sort_by_key(|s| (s.key, s.first, s.line, s.col));
        let mut widest: Option<&BindSlot> = None;
        for s in slots.iter() {
            if let Some(w) = widest.filter(|w| w.key == s.key && s.first <= w.last) {
                // Report the one further down the file.
                let (early, late) = if (w.line, w.col) <= (s.line, s.col) {
                    (w, s)
                } else {
                    (s, w)
                };
                let fe_name = |i: usize| frontends.get(i).map_or("?", |f| f.name.as_str());
                let dual = if early.dual || late.dual {
                    " ('::' also takes IPv4 unless 'v6only' is set)"
                } else {
                    ""
                };
                return Err(self.err_at(
                    late.line,
                    late.col,
                    &late.text,
                    format!(
                        "bind '{}' of frontend '{}' conflicts with bind '{}' of frontend '{}' at {}:{}{dual}",
                        late.text,
                        fe_name(late.frontend),
                        early.text,
                        fe_name(early.frontend),
                        self.file.display(),
                        early.line
                    ),
                ));
            }
            if widest.is_none_or(|w| w.key != s.key || s.last > w.last) {
                widest = Some(s);
            }
        }
        Ok(())
    }
}
