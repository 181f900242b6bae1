//! The parser: HAProxy sections and keywords into the typed [`Config`] model.
//!
//! Every section dispatches its lines through a keyword table ([`GLOBAL_KWS`],
//! [`PROXY_KWS`], and the sub-keyword tables for `option`, `timeout`,
//! `balance`, `bind` and `server` parameters). Each entry says in which
//! sections the keyword is valid (HAProxy's "capabilities": defaults,
//! frontend, backend; `listen` has both frontend and backend) and what to do
//! with it: parse it, accept and ignore it, reject it as an HTTP-mode feature,
//! or reject it as "not supported yet".
//!
//! Several files are parsed in order into one configuration (a file ends the
//! section it is in); the cross checks run once at the end. The first error
//! stops the parse; it names `file:line:col` and the token.
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::host::{RealSys, Sys};
use super::lexer::{env_expand, lex_line, Token};
use super::model::*;
use super::values::*;

/// Largest configuration accepted, in bytes (per file).
pub(crate) const MAX_CONFIG_SIZE: usize = 16 << 20;
/// Longest line accepted, in bytes (before and after environment expansion).
pub(crate) const MAX_LINE_LEN: usize = 64 << 10;
/// Most configuration files (after expanding directories).
pub(crate) const MAX_FILES: usize = 1000;
/// Most nested `.if` blocks.
const MAX_COND_DEPTH: usize = 64;
/// Largest server weight, as HAProxy.
pub(crate) const MAX_WEIGHT: u32 = 256;

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
    parse_files(&[path.to_path_buf()])
}

/// Reads and parses several configuration files (or directories) in order,
/// as `haproxy -f A -f B ...`: a directory stands for its regular files named
/// `*.cfg`, not hidden, in byte order.
pub fn parse_files(paths: &[PathBuf]) -> Result<Config, ConfigError> {
    let files = expand_paths(paths)?;
    let mut p = Parser::new(&RealSys);
    for f in &files {
        let text = read_config(f)?;
        p.feed(&text, f)?;
    }
    p.finish()
}

/// The files `-f` arguments stand for, in HAProxy's order.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for path in paths {
        let io_err = |source| ConfigError::Io {
            file: path.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if meta.is_file() {
            out.push(path.clone());
            continue;
        }
        if !meta.is_dir() {
            // Opening a FIFO would wait for a writer forever, and a device
            // is no configuration either.
            return Err(ConfigError::File {
                file: path.clone(),
                msg: format!(
                    "not a regular file or a directory of '*.cfg' files (a {})",
                    file_kind(&meta)
                ),
            });
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let bytes = name.as_encoded_bytes();
            if bytes.first() == Some(&b'.') || !bytes.ends_with(b".cfg") {
                continue;
            }
            let full = path.join(&name);
            // As HAProxy's stat(): symbolic links are followed.
            if std::fs::metadata(&full).is_ok_and(|m| m.is_file()) {
                names.push(name);
            }
        }
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        out.extend(names.into_iter().map(|n| path.join(n)));
    }
    if out.len() > MAX_FILES {
        return Err(ConfigError::File {
            file: paths.first().cloned().unwrap_or_default(),
            msg: format!(
                "too many configuration files ({}, at most {MAX_FILES})",
                out.len()
            ),
        });
    }
    if out.is_empty() {
        return Err(ConfigError::File {
            file: paths.first().cloned().unwrap_or_default(),
            msg: "no configuration file (a directory holds no '*.cfg' file)".into(),
        });
    }
    Ok(out)
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Reads one configuration file, bounded, as UTF-8.
fn read_config(path: &Path) -> Result<String, ConfigError> {
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
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
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
            Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                line,
                col,
                msg: "invalid UTF-8".into(),
                near,
                hint: None,
            })
        }
    }
}

/// Parses a configuration from memory; `file` only names it in messages.
///
/// `${VAR}` expands from the process environment.
pub fn parse_str(text: &str, file: &Path) -> Result<Config, ConfigError> {
    parse_with(&[(text, file)], &RealSys)
}

fn too_large(file: &Path, size: u64) -> ConfigError {
    ConfigError::TooLarge {
        file: file.to_path_buf(),
        size,
        limit: MAX_CONFIG_SIZE as u64,
    }
}

/// Parses several in-memory files, in order, against `sys`.
pub(crate) fn parse_with(files: &[(&str, &Path)], sys: &dyn Sys) -> Result<Config, ConfigError> {
    let mut p = Parser::new(sys);
    for (text, file) in files {
        p.feed(text, file)?;
    }
    p.finish()
}

// ---------------------------------------------------------------------------
// Keyword tables.

/// Capabilities: the sections a keyword is valid in.
pub(crate) const DEF: u8 = 1;
pub(crate) const FE: u8 = 2;
pub(crate) const BE: u8 = 4;
pub(crate) const ANY: u8 = DEF | FE | BE;
pub(crate) const LISTEN: u8 = FE | BE;
/// For tables where sections do not matter.
pub(crate) const ALL: u8 = 0xff;

/// One keyword of a table. A `name` ending with `*` matches by prefix.
pub(crate) struct Kw<A: 'static> {
    pub name: &'static str,
    pub caps: u8,
    pub act: A,
}

pub(crate) const fn kw<A>(name: &'static str, caps: u8, act: A) -> Kw<A> {
    Kw { name, caps, act }
}

pub(crate) fn lookup<'t, A>(table: &'t [Kw<A>], word: &str) -> Option<&'t Kw<A>> {
    table.iter().find(|k| match k.name.strip_suffix('*') {
        Some(prefix) => word.starts_with(prefix),
        None => k.name == word,
    })
}

pub(crate) type Handler = fn(&mut Parser<'_>, &Line) -> Result<(), ConfigError>;

/// What a top-level keyword does.
#[derive(Clone, Copy)]
pub(crate) enum Act {
    /// Parsed by the handler.
    Run(Handler),
    /// Accepted, no effect on this balancer (comments, deprecated no-ops).
    Ignore,
    /// Accepted and recorded in the proxy's (or global) `other` list: a
    /// setting of HAProxy's own process or of a feature the daemon does not
    /// apply.
    Other,
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
    kw("http-errors", ALL, SecAct::Http),
    kw("cache", ALL, SecAct::Http),
    kw("fcgi-app", ALL, SecAct::Http),
];

const PROXY_KWS: &[Kw<Act>] = &[
    // Parsed.
    kw("mode", ANY, Act::Run(p_mode)),
    kw("timeout", ANY, Act::Run(p_timeout)),
    kw("balance", DEF | BE, Act::Run(p_balance)),
    kw("hash-type", DEF | BE, Act::Run(p_hash_type)),
    kw("retries", DEF | BE, Act::Run(p_retries)),
    kw("maxconn", DEF | FE, Act::Run(p_maxconn)),
    kw("backlog", DEF | FE, Act::Run(p_backlog)),
    kw("fullconn", DEF | BE, Act::Run(p_fullconn)),
    kw(
        "load-server-state-from-file",
        DEF | BE,
        Act::Run(p_load_server_state),
    ),
    kw(
        "server-state-file-name",
        DEF | BE,
        Act::Run(p_server_state_file_name),
    ),
    kw("option", ANY, Act::Run(p_option)),
    kw("default-server", DEF | BE, Act::Run(p_default_server)),
    kw("bind", FE, Act::Run(p_bind)),
    kw("default_backend", DEF | FE, Act::Run(p_default_backend)),
    kw("use_backend", FE, Act::Run(p_use_backend)),
    kw("server", BE, Act::Run(p_server)),
    kw("acl", ANY, Act::Run(p_acl)),
    kw("tcp-request", ANY, Act::Run(p_tcp_request)),
    kw("tcp-check", DEF | BE, Act::Run(p_tcp_check)),
    kw("http-check", DEF | BE, Act::Run(p_http_check)),
    kw("log", ANY, Act::Run(p_log)),
    kw("id", LISTEN, Act::Run(p_id)),
    kw("description", LISTEN, Act::Run(p_description)),
    kw("disabled", ANY, Act::Run(p_disabled)),
    kw("enabled", ANY, Act::Run(p_enabled)),
    // Accepted, recorded.
    kw("log-format", DEF | FE, Act::Other),
    kw("log-format-sd", DEF | FE, Act::Other),
    kw("error-log-format", DEF | FE, Act::Other),
    kw("log-tag", ANY, Act::Other),
    kw("clitcpka-cnt", DEF | FE, Act::Other),
    kw("clitcpka-idle", DEF | FE, Act::Other),
    kw("clitcpka-intvl", DEF | FE, Act::Other),
    kw("srvtcpka-cnt", DEF | BE, Act::Other),
    kw("srvtcpka-idle", DEF | BE, Act::Other),
    kw("srvtcpka-intvl", DEF | BE, Act::Other),
    kw("bind-process", ANY, Act::Ignore),
    // TCP features not implemented yet.
    kw("tcp-response", DEF | BE, Act::NotYet("")),
    kw("external-check", DEF | BE, Act::NotYet("")),
    kw("use-server", BE, Act::NotYet("")),
    kw("server-template", BE, Act::NotYet("")),
    kw("stick-table", LISTEN, Act::NotYet("")),
    kw("stick", BE, Act::NotYet("")),
    kw("source", DEF | BE, Act::NotYet("")),
    kw("hash-balance-factor", DEF | BE, Act::NotYet("")),
    kw("persist", DEF | BE, Act::NotYet("")),
    kw("dispatch", BE, Act::NotYet("")),
    kw("transparent", DEF | BE, Act::NotYet("")),
    kw("rate-limit", DEF | FE, Act::NotYet("")),
    kw("email-alert", ANY, Act::NotYet("")),
    kw("force-persist", BE, Act::NotYet("")),
    kw("ignore-persist", BE, Act::NotYet("")),
    kw("filter", LISTEN, Act::NotYet("")),
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
    kw("use-fcgi-app", ANY, Act::Http),
    // Removed from HAProxy.
    kw("contimeout", ANY, Act::Removed("timeout connect")),
    kw("clitimeout", ANY, Act::Removed("timeout client")),
    kw("srvtimeout", ANY, Act::Removed("timeout server")),
    kw("redispatch", ANY, Act::Removed("option redispatch")),
    kw("reqadd", ANY, Act::Removed("http-request add-header")),
    kw("reqrep", ANY, Act::Removed("http-request replace-header")),
    kw("block", ANY, Act::Removed("http-request deny")),
];

/// What an `option` does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptAct {
    /// A flag option (maybe with an argument), recorded.
    Flag,
    /// A health-check method (`option httpchk`, ...).
    Check,
    Http,
    NotYet(&'static str),
}

/// `(name, caps, act, negatable)`: `no option X` / `default option X` only
/// for the options HAProxy marks with (*).
pub(crate) struct OptKw {
    pub name: &'static str,
    pub caps: u8,
    pub act: OptAct,
    pub negatable: bool,
}

const fn opt(name: &'static str, caps: u8, act: OptAct, negatable: bool) -> OptKw {
    OptKw {
        name,
        caps,
        act,
        negatable,
    }
}

pub(crate) const OPTION_KWS: &[OptKw] = &[
    opt("tcplog", ANY, OptAct::Flag, false),
    opt("dontlognull", DEF | FE, OptAct::Flag, true),
    opt("dontlog-normal", DEF | FE, OptAct::Flag, true),
    opt("log-separate-errors", DEF | FE, OptAct::Flag, true),
    opt("logasap", DEF | FE, OptAct::Flag, true),
    opt("log-health-checks", DEF | BE, OptAct::Flag, true),
    opt("redispatch", DEF | BE, OptAct::Flag, true),
    opt("allbackups", DEF | BE, OptAct::Flag, true),
    opt("tcpka", ANY, OptAct::Flag, false),
    opt("clitcpka", DEF | FE, OptAct::Flag, true),
    opt("srvtcpka", DEF | BE, OptAct::Flag, true),
    opt("tcp-smart-accept", DEF | FE, OptAct::Flag, true),
    opt("tcp-smart-connect", DEF | BE, OptAct::Flag, true),
    opt("splice-auto", ANY, OptAct::Flag, true),
    opt("splice-request", ANY, OptAct::Flag, true),
    opt("splice-response", ANY, OptAct::Flag, true),
    opt("nolinger", ANY, OptAct::Flag, true),
    opt("independent-streams", ANY, OptAct::Flag, true),
    opt("abortonclose", DEF | BE, OptAct::Flag, true),
    opt("contstats", DEF | FE, OptAct::Flag, true),
    opt("socket-stats", DEF | FE, OptAct::Flag, true),
    opt("persist", DEF | BE, OptAct::NotYet(""), true),
    opt("transparent", DEF | BE, OptAct::NotYet(""), true),
    opt("tcp-check", DEF | BE, OptAct::Check, false),
    opt("httpchk", DEF | BE, OptAct::Check, false),
    opt("ssl-hello-chk", DEF | BE, OptAct::Check, false),
    opt("smtpchk", DEF | BE, OptAct::Check, false),
    opt("mysql-check", DEF | BE, OptAct::Check, false),
    opt("pgsql-check", DEF | BE, OptAct::Check, false),
    opt("pgsql-role-check", DEF | BE, OptAct::Check, false),
    opt("redis-check", DEF | BE, OptAct::Check, false),
    opt("ldap-check", DEF | BE, OptAct::Check, false),
    opt("spop-check", DEF | BE, OptAct::Check, false),
    opt("external-check", DEF | BE, OptAct::NotYet(""), false),
    opt("forwardfor", ANY, OptAct::Http, false),
    opt("forwarded", ANY, OptAct::Http, false),
    opt("originalto", ANY, OptAct::Http, false),
    opt("httplog", ANY, OptAct::Http, false),
    opt("httpslog", ANY, OptAct::Http, false),
    opt("httpclose", ANY, OptAct::Http, true),
    opt("forceclose", ANY, OptAct::Http, true),
    opt("http-server-close", ANY, OptAct::Http, true),
    opt("http-keep-alive", ANY, OptAct::Http, true),
    opt("http-buffer-request", ANY, OptAct::Http, true),
    opt("http-pretend-keepalive", ANY, OptAct::Http, true),
    opt("http-no-delay", ANY, OptAct::Http, true),
    opt("http-use-proxy-header", ANY, OptAct::Http, true),
    opt("http-ignore-probes", ANY, OptAct::Http, true),
    opt("http-restrict-req-hdr-names", ANY, OptAct::Http, false),
    opt("http-use-htx", ANY, OptAct::Http, true),
    opt("accept-invalid-http-request", ANY, OptAct::Http, true),
    opt("accept-invalid-http-response", ANY, OptAct::Http, true),
    opt("h1-case-adjust-bogus-client", ANY, OptAct::Http, true),
    opt("h1-case-adjust-bogus-server", ANY, OptAct::Http, true),
    opt("checkcache", ANY, OptAct::Http, true),
    opt("prefer-last-server", ANY, OptAct::Http, true),
    opt("disable-h2-upgrade", ANY, OptAct::Http, true),
    opt("idle-close-on-response", ANY, OptAct::Http, true),
];

/// Where a `timeout` goes.
#[derive(Clone, Copy)]
enum TSlot {
    Client,
    Connect,
    Server,
    ClientFin,
    ServerFin,
    Queue,
    Check,
    Tunnel,
    Http,
}

const TIMEOUT_KWS: &[Kw<TSlot>] = &[
    kw("client", DEF | FE, TSlot::Client),
    kw("connect", DEF | BE, TSlot::Connect),
    kw("server", DEF | BE, TSlot::Server),
    kw("queue", DEF | BE, TSlot::Queue),
    kw("check", DEF | BE, TSlot::Check),
    kw("tunnel", DEF | BE, TSlot::Tunnel),
    kw("client-fin", DEF | FE, TSlot::ClientFin),
    kw("server-fin", DEF | BE, TSlot::ServerFin),
    kw("http-request", ANY, TSlot::Http),
    kw("http-keep-alive", ANY, TSlot::Http),
    kw("tarpit", ANY, TSlot::Http),
];

#[derive(Clone, Copy)]
enum BalAct {
    Algo(Balance),
    Random,
    NotYet,
    Http,
}

const BALANCE_KWS: &[Kw<BalAct>] = &[
    kw("roundrobin", ALL, BalAct::Algo(Balance::RoundRobin)),
    kw("static-rr", ALL, BalAct::Algo(Balance::StaticRr)),
    kw("leastconn", ALL, BalAct::Algo(Balance::LeastConn)),
    kw("first", ALL, BalAct::Algo(Balance::First)),
    kw("source", ALL, BalAct::Algo(Balance::Source)),
    kw("random", ALL, BalAct::Random),
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
    Name,
    Id,
    Backlog,
    Maxconn,
    Interface,
    AcceptProxy,
    /// A socket setting recorded in `other`, taking no value.
    Other0,
    /// A socket setting recorded in `other`, taking one value.
    Other1,
    /// UNIX-socket (or stats-socket) setting: no effect on TCP sockets, as in
    /// HAProxy; takes one value.
    Unix1,
    Tls0,
    Tls1,
    NotYet,
}

const BIND_KWS: &[Kw<BindAct>] = &[
    kw("v6only", ALL, BindAct::V6Only),
    kw("v4v6", ALL, BindAct::V4V6),
    kw("name", ALL, BindAct::Name),
    kw("id", ALL, BindAct::Id),
    kw("backlog", ALL, BindAct::Backlog),
    kw("maxconn", ALL, BindAct::Maxconn),
    kw("interface", ALL, BindAct::Interface),
    kw("accept-proxy", ALL, BindAct::AcceptProxy),
    kw("tfo", ALL, BindAct::Other0),
    kw("defer-accept", ALL, BindAct::Other0),
    kw("transparent", ALL, BindAct::Other0),
    kw("mss", ALL, BindAct::Other1),
    kw("nice", ALL, BindAct::Other1),
    kw("tcp-ut", ALL, BindAct::Other1),
    kw("namespace", ALL, BindAct::Other1),
    kw("process", ALL, BindAct::Other1),
    kw("thread", ALL, BindAct::Other1),
    kw("shards", ALL, BindAct::Other1),
    kw("proto", ALL, BindAct::Other1),
    kw("accept-netscaler-cip", ALL, BindAct::Other1),
    kw("mode", ALL, BindAct::Unix1),
    kw("uid", ALL, BindAct::Unix1),
    kw("gid", ALL, BindAct::Unix1),
    kw("user", ALL, BindAct::Unix1),
    kw("group", ALL, BindAct::Unix1),
    kw("level", ALL, BindAct::Unix1),
    kw("severity-output", ALL, BindAct::Unix1),
    kw("expose-fd", ALL, BindAct::Unix1),
    kw("ssl", ALL, BindAct::Tls0),
    kw("crt", ALL, BindAct::Tls1),
    kw("crt-list", ALL, BindAct::Tls1),
    kw("ca-file", ALL, BindAct::Tls1),
    kw("alpn", ALL, BindAct::Tls1),
    kw("npn", ALL, BindAct::Tls1),
    kw("verify", ALL, BindAct::Tls1),
    kw("ciphers", ALL, BindAct::Tls1),
    kw("ciphersuites", ALL, BindAct::Tls1),
    kw("curves", ALL, BindAct::Tls1),
    kw("ecdhe", ALL, BindAct::Tls1),
    kw("crl-file", ALL, BindAct::Tls1),
    kw("ssl-min-ver", ALL, BindAct::Tls1),
    kw("ssl-max-ver", ALL, BindAct::Tls1),
    kw("strict-sni", ALL, BindAct::Tls0),
    kw("allow-0rtt", ALL, BindAct::Tls0),
    kw("prefer-client-ciphers", ALL, BindAct::Tls0),
    kw("generate-certificates", ALL, BindAct::Tls0),
    kw("no-ca-names", ALL, BindAct::Tls0),
    kw("no-tls-tickets", ALL, BindAct::Tls0),
    kw("no-sslv3", ALL, BindAct::Tls0),
    kw("no-tlsv1*", ALL, BindAct::Tls0),
    kw("force-*", ALL, BindAct::Tls0),
    kw("tls-ticket-keys", ALL, BindAct::Tls1),
    kw("ca-*", ALL, BindAct::Tls1),
    kw("crt-ignore-err", ALL, BindAct::Tls1),
    kw("quic-*", ALL, BindAct::NotYet),
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SrvAct {
    Check,
    NoCheck,
    Weight,
    Inter,
    FastInter,
    DownInter,
    Rise,
    Fall,
    Disabled,
    Enabled,
    Backup,
    NoBackup,
    Maxconn,
    Minconn,
    Maxqueue,
    Id,
    Slowstart,
    Port,
    Addr,
    SendProxy,
    SendProxyV2,
    NoSendProxy,
    NoSendProxyV2,
    CheckSendProxy,
    OnMarkedDown,
    OnMarkedUp,
    OnError,
    ErrorLimit,
    Observe,
    AgentCheck,
    NoAgentCheck,
    AgentPort,
    AgentInter,
    AgentSend,
    AgentAddr,
    InitAddr,
    /// A connection setting recorded in `other`, no value.
    Other0,
    /// Same, one value.
    Other1,
    Tls0,
    Tls1,
    NotYet,
    Http,
}

pub(crate) const SERVER_KWS: &[Kw<SrvAct>] = &[
    kw("check", ALL, SrvAct::Check),
    kw("no-check", ALL, SrvAct::NoCheck),
    kw("weight", ALL, SrvAct::Weight),
    kw("inter", ALL, SrvAct::Inter),
    kw("fastinter", ALL, SrvAct::FastInter),
    kw("downinter", ALL, SrvAct::DownInter),
    kw("rise", ALL, SrvAct::Rise),
    kw("fall", ALL, SrvAct::Fall),
    kw("disabled", ALL, SrvAct::Disabled),
    kw("enabled", ALL, SrvAct::Enabled),
    kw("backup", ALL, SrvAct::Backup),
    kw("no-backup", ALL, SrvAct::NoBackup),
    kw("maxconn", ALL, SrvAct::Maxconn),
    kw("minconn", ALL, SrvAct::Minconn),
    kw("maxqueue", ALL, SrvAct::Maxqueue),
    kw("id", ALL, SrvAct::Id),
    kw("slowstart", ALL, SrvAct::Slowstart),
    kw("port", ALL, SrvAct::Port),
    kw("addr", ALL, SrvAct::Addr),
    kw("send-proxy", ALL, SrvAct::SendProxy),
    kw("send-proxy-v2", ALL, SrvAct::SendProxyV2),
    kw("no-send-proxy", ALL, SrvAct::NoSendProxy),
    kw("no-send-proxy-v2", ALL, SrvAct::NoSendProxyV2),
    kw("check-send-proxy", ALL, SrvAct::CheckSendProxy),
    kw("on-marked-down", ALL, SrvAct::OnMarkedDown),
    kw("on-marked-up", ALL, SrvAct::OnMarkedUp),
    kw("on-error", ALL, SrvAct::OnError),
    kw("error-limit", ALL, SrvAct::ErrorLimit),
    kw("observe", ALL, SrvAct::Observe),
    kw("agent-check", ALL, SrvAct::AgentCheck),
    kw("no-agent-check", ALL, SrvAct::NoAgentCheck),
    kw("agent-port", ALL, SrvAct::AgentPort),
    kw("agent-inter", ALL, SrvAct::AgentInter),
    kw("agent-send", ALL, SrvAct::AgentSend),
    kw("agent-addr", ALL, SrvAct::AgentAddr),
    kw("init-addr", ALL, SrvAct::InitAddr),
    kw("tfo", ALL, SrvAct::Other0),
    kw("no-tfo", ALL, SrvAct::Other0),
    kw("non-stick", ALL, SrvAct::Other0),
    kw("stick", ALL, SrvAct::Other0),
    kw("tcp-ut", ALL, SrvAct::Other1),
    kw("namespace", ALL, SrvAct::Other1),
    kw("proto", ALL, SrvAct::Other1),
    kw("max-reuse", ALL, SrvAct::Other1),
    kw("ssl", ALL, SrvAct::Tls0),
    kw("no-ssl", ALL, SrvAct::Tls0),
    kw("check-ssl", ALL, SrvAct::Tls0),
    kw("no-check-ssl", ALL, SrvAct::Tls0),
    kw("ssl-reuse", ALL, SrvAct::Tls0),
    kw("no-ssl-reuse", ALL, SrvAct::Tls0),
    kw("tls-tickets", ALL, SrvAct::Tls0),
    kw("no-tls-tickets", ALL, SrvAct::Tls0),
    kw("no-sslv3", ALL, SrvAct::Tls0),
    kw("no-tlsv1*", ALL, SrvAct::Tls0),
    kw("force-*", ALL, SrvAct::Tls0),
    kw("no-verifyhost", ALL, SrvAct::Tls0),
    kw("allow-0rtt", ALL, SrvAct::Tls0),
    kw("send-proxy-v2-ssl", ALL, SrvAct::Tls0),
    kw("send-proxy-v2-ssl-cn", ALL, SrvAct::Tls0),
    kw("no-send-proxy-v2-ssl", ALL, SrvAct::Tls0),
    kw("no-send-proxy-v2-ssl-cn", ALL, SrvAct::Tls0),
    kw("check-via-socks4", ALL, SrvAct::Tls0),
    kw("verify", ALL, SrvAct::Tls1),
    kw("verifyhost", ALL, SrvAct::Tls1),
    kw("sni", ALL, SrvAct::Tls1),
    kw("check-sni", ALL, SrvAct::Tls1),
    kw("ca-file", ALL, SrvAct::Tls1),
    kw("crl-file", ALL, SrvAct::Tls1),
    kw("crt", ALL, SrvAct::Tls1),
    kw("alpn", ALL, SrvAct::Tls1),
    kw("check-alpn", ALL, SrvAct::Tls1),
    kw("npn", ALL, SrvAct::Tls1),
    kw("ciphers", ALL, SrvAct::Tls1),
    kw("ciphersuites", ALL, SrvAct::Tls1),
    kw("ssl-min-ver", ALL, SrvAct::Tls1),
    kw("ssl-max-ver", ALL, SrvAct::Tls1),
    kw("proxy-v2-options", ALL, SrvAct::Tls1),
    kw("check-proto", ALL, SrvAct::Tls1),
    kw("socks4", ALL, SrvAct::NotYet),
    kw("resolvers", ALL, SrvAct::NotYet),
    kw("resolve-prefer", ALL, SrvAct::NotYet),
    kw("resolve-net", ALL, SrvAct::NotYet),
    kw("resolve-opts", ALL, SrvAct::NotYet),
    kw("track", ALL, SrvAct::NotYet),
    kw("source", ALL, SrvAct::NotYet),
    kw("log-proto", ALL, SrvAct::NotYet),
    kw("cookie", ALL, SrvAct::Http),
    kw("redir", ALL, SrvAct::Http),
    kw("ws", ALL, SrvAct::Http),
    kw("pool-max-conn", ALL, SrvAct::Http),
    kw("pool-low-conn", ALL, SrvAct::Http),
    kw("pool-purge-delay", ALL, SrvAct::Http),
    kw("pool-conn-name", ALL, SrvAct::Http),
];

// ---------------------------------------------------------------------------
// Parser state.

/// One non-empty line: its keyword and arguments.
pub(crate) struct Line {
    pub no: usize,
    pub kw: Token,
    pub args: Vec<Token>,
}

/// A word and where it was.
#[derive(Clone, Debug)]
pub(crate) struct Spanned {
    pub text: String,
    pub origin: Origin,
    pub col: usize,
}

/// An `option` in effect.
#[derive(Clone, Debug)]
pub(crate) struct OptSet {
    pub name: &'static str,
    pub origin: Origin,
    /// `option redispatch <interval>`.
    pub arg: Option<i32>,
}

/// What a `defaults` section carries into the proxies that follow, and what a
/// proxy holds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub timeout_client: Option<Duration>,
    pub timeout_connect: Option<Duration>,
    pub timeout_server: Option<Duration>,
    pub timeout_client_fin: Option<Located<Duration>>,
    pub timeout_server_fin: Option<Located<Duration>>,
    pub timeout_queue: Option<Located<Duration>>,
    pub timeout_check: Option<Located<Duration>>,
    pub timeout_tunnel: Option<Located<Duration>>,
    pub balance: Balance,
    pub balance_origin: Option<Origin>,
    pub hash_type: Option<Located<HashType>>,
    pub maxconn: Option<u32>,
    pub maxconn_origin: Option<Origin>,
    pub backlog: Option<Located<u32>>,
    pub retries: Option<Located<u32>>,
    pub fullconn: Option<Located<u32>>,
    pub default_backend: Option<Spanned>,
    pub default_server: ServerParams,
    pub options: Vec<OptSet>,
    pub logs: Vec<Located<ProxyLog>>,
    pub health_check: Option<Located<HealthCheck>>,
    pub tcp_check_rules: Vec<Located<TcpCheckRule>>,
    /// The rules were set in this section (not inherited).
    pub tcp_check_own: bool,
    pub http_check_rules: Vec<Located<HttpCheckRule>>,
    pub http_check_own: bool,
    pub disabled: Option<Origin>,
    pub load_server_state: Option<Located<LoadServerState>>,
    pub server_state_file_name: Option<Located<StateFileName>>,
    pub other: Vec<Located<String>>,
}

impl Settings {
    pub(crate) fn option(&self, name: &str) -> Option<&OptSet> {
        self.options.iter().find(|o| o.name == name)
    }
}

/// A closed or open `defaults` section.
#[derive(Clone, Debug)]
pub(crate) struct Defaults {
    pub name: Option<String>,
    pub origin: Origin,
    pub s: Settings,
    /// ACLs, private to the section's own rules.
    pub acls: Vec<Acl>,
    /// ACL name -> index in `acls`.
    pub acl_index: HashMap<String, usize>,
    /// `tcp-request connection` rules (named sections only).
    pub tcp_rules: Vec<TcpRequestRule>,
    /// Terms of the rules' conditions naming ACLs, resolved on close.
    pub pending: Vec<PendingCond>,
}

/// Which rule a condition naming ACLs belongs to, to fill the ACLs' tests in
/// once the section is complete (an `acl` line after the rule still counts).
#[derive(Clone, Copy, Debug)]
pub(crate) enum PendingCond {
    UseBackend(usize),
    TcpRequest(usize),
}

/// How a proxy got its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DefaultsRef {
    None,
    Implicit(usize),
    Explicit(usize),
}

/// A `use_backend` rule being parsed.
#[derive(Clone, Debug)]
pub(crate) struct UseDraft {
    pub backend: Spanned,
    pub cond: Option<Condition>,
    pub origin: Origin,
}

/// A `server` being parsed: its host name is resolved at the end, as HAProxy.
#[derive(Clone, Debug)]
pub(crate) struct ServerDraft {
    pub server: Server,
    /// Host name to resolve, with the forced family and the column of the address.
    pub host: Option<(String, Family, usize)>,
    pub addr_col: usize,
    /// The address as written.
    pub addr_text: String,
}

/// A frontend, backend or listen section being parsed.
pub(crate) struct Proxy {
    pub caps: u8,
    pub name: Spanned,
    pub s: Settings,
    pub binds: Vec<(Bind, usize, String)>,
    pub servers: Vec<ServerDraft>,
    pub server_lines: HashMap<String, usize>,
    pub acls: Vec<Acl>,
    /// ACL name -> index in `acls`.
    pub acl_index: HashMap<String, usize>,
    pub use_backends: Vec<UseDraft>,
    pub tcp_rules: Vec<TcpRequestRule>,
    pub pending: Vec<PendingCond>,
    pub defaults_ref: DefaultsRef,
    pub id: Option<(Located<u32>, usize)>,
    pub description: Option<String>,
}

impl Proxy {
    pub(crate) fn kind(&self) -> &'static str {
        kind_name(self.caps)
    }
}

pub(crate) fn kind_name(caps: u8) -> &'static str {
    match caps {
        FE => "frontend",
        BE => "backend",
        LISTEN => "listen",
        _ => "defaults",
    }
}

pub(crate) enum Section {
    None,
    Global,
    Defaults(Box<Defaults>),
    Proxy(Box<Proxy>),
}

/// State of one `.if` block.
struct CondFrame {
    /// Lines are taken in the current branch.
    active: bool,
    /// A branch was already taken (later `.elif`/`.else` are skipped).
    taken: bool,
    /// The enclosing block is active.
    parent_active: bool,
    /// `.else` was seen.
    seen_else: bool,
    line: usize,
}

pub(crate) struct Parser<'s> {
    pub sys: &'s dyn Sys,
    /// `setenv`/`unsetenv`... on top of the process environment.
    pub env_overlay: HashMap<String, Option<String>>,
    /// `resetenv`: variables of the process environment still visible.
    pub env_keep: Option<HashSet<String>>,
    pub file: PathBuf,
    pub global: Global,
    pub global_seen: bool,
    pub warnings: Vec<String>,
    pub section: Section,
    /// Index in `defaults_list` of the last `defaults` section.
    pub last_defaults: Option<usize>,
    pub defaults_list: Vec<Defaults>,
    /// Name -> indexes in `defaults_list`.
    pub defaults_by_name: HashMap<String, Vec<usize>>,
    pub proxies: Vec<Proxy>,
    pub frontend_lines: HashMap<String, Origin>,
    pub backend_lines: HashMap<String, Origin>,
    conds: Vec<CondFrame>,
}

impl<'s> Parser<'s> {
    pub(crate) fn new(sys: &'s dyn Sys) -> Self {
        Self {
            sys,
            env_overlay: HashMap::new(),
            env_keep: None,
            file: PathBuf::new(),
            global: Global::default(),
            global_seen: false,
            warnings: Vec::new(),
            section: Section::None,
            last_defaults: None,
            defaults_list: Vec::new(),
            defaults_by_name: HashMap::new(),
            proxies: Vec::new(),
            frontend_lines: HashMap::new(),
            backend_lines: HashMap::new(),
            conds: Vec::new(),
        }
    }

    /// An environment variable, with `setenv`/`unsetenv`/`resetenv` applied.
    pub(crate) fn env(&self, name: &str) -> Option<String> {
        if let Some(v) = self.env_overlay.get(name) {
            return v.clone();
        }
        if self.env_keep.as_ref().is_some_and(|k| !k.contains(name)) {
            return None;
        }
        self.sys.env(name)
    }

    /// `${VAR}` expansion of an address word, as HAProxy's `env_expand()`.
    pub(crate) fn expand(&self, s: &str) -> String {
        env_expand(s, &|n| self.env(n))
    }

    fn section_pseudo_name(&self) -> String {
        match &self.section {
            Section::None => String::new(),
            Section::Global => "global".into(),
            Section::Defaults(d) => d.name.clone().unwrap_or_else(|| "defaults".into()),
            Section::Proxy(p) => p.name.text.clone(),
        }
    }

    /// Parses one file's text.
    pub(crate) fn feed(&mut self, text: &str, file: &Path) -> Result<(), ConfigError> {
        self.file = file.to_path_buf();
        if text.len() > MAX_CONFIG_SIZE {
            return Err(too_large(file, text.len() as u64));
        }
        let depth = self.conds.len();
        for (idx, raw) in text.split('\n').enumerate() {
            let no = idx + 1;
            if raw.len() > MAX_LINE_LEN {
                let near: String = raw.chars().take(16).collect();
                return Err(self.err_at(
                    no,
                    1,
                    &near,
                    format!(
                        "line too long ({} bytes, at most {MAX_LINE_LEN})",
                        raw.len()
                    ),
                ));
            }
            let section = self.section_pseudo_name();
            let file_name = self.file.display().to_string();
            let toks = lex_line(raw, MAX_LINE_LEN, &|name| match name {
                ".LINE" => Some(no.to_string()),
                ".FILE" => Some(file_name.clone()),
                ".SECTION" => Some(section.clone()),
                n if n.starts_with('.') => None,
                n => self.env(n),
            })
            .map_err(|e| self.err_at(no, e.col, &e.near, e.msg))?;
            let mut toks = toks.into_iter();
            let Some(kw) = toks.next() else { continue };
            let line = Line {
                no,
                kw,
                args: toks.collect(),
            };
            if line.kw.text.starts_with('.') && self.directive(&line)? {
                continue;
            }
            if self.conds.last().is_some_and(|c| !c.active) {
                continue;
            }
            self.line(&line)?;
        }
        if self.conds.len() > depth {
            let line = self.conds.last().map_or(1, |c| c.line);
            return Err(self.err_at(
                line,
                1,
                ".if",
                "'.if' block not terminated by '.endif' at the end of the file",
            ));
        }
        // A file ends the section it is in.
        self.close_section()?;
        Ok(())
    }

    /// Conditional blocks and messages (`.if`, `.elif`, `.else`, `.endif`,
    /// `.diag`, `.notice`, `.warning`, `.alert`). Returns false for other words
    /// starting with a dot.
    fn directive(&mut self, l: &Line) -> Result<bool, ConfigError> {
        let active = self.conds.last().is_none_or(|c| c.active);
        match l.kw.text.as_str() {
            ".if" => {
                if self.conds.len() >= MAX_COND_DEPTH {
                    return Err(self.err(
                        l.no,
                        &l.kw,
                        format!("too many nested '.if' (at most {MAX_COND_DEPTH})"),
                    ));
                }
                let v = if active { self.eval_cond(l)? } else { false };
                self.conds.push(CondFrame {
                    active: active && v,
                    taken: v,
                    parent_active: active,
                    seen_else: false,
                    line: l.no,
                });
            }
            ".elif" => {
                let Some(top) = self.conds.last() else {
                    return Err(self.err(l.no, &l.kw, "'.elif' without a matching '.if'"));
                };
                if top.seen_else {
                    return Err(self.err(l.no, &l.kw, "'.elif' after '.else'"));
                }
                let (parent, taken) = (top.parent_active, top.taken);
                let v = if parent && !taken {
                    self.eval_cond(l)?
                } else {
                    false
                };
                if let Some(top) = self.conds.last_mut() {
                    top.active = parent && !taken && v;
                    top.taken |= v;
                }
            }
            ".else" => {
                let Some(top) = self.conds.last_mut() else {
                    return Err(self.err(l.no, &l.kw, "'.else' without a matching '.if'"));
                };
                if top.seen_else {
                    return Err(self.err(l.no, &l.kw, "several '.else' in one '.if' block"));
                }
                top.seen_else = true;
                top.active = top.parent_active && !top.taken;
                top.taken = true;
            }
            ".endif" => {
                if self.conds.pop().is_none() {
                    return Err(self.err(l.no, &l.kw, "'.endif' without a matching '.if'"));
                }
            }
            ".diag" | ".notice" => {}
            ".warning" if active => {
                let msg = l.args.iter().map(|t| t.text.as_str()).collect::<Vec<_>>();
                self.warn(l.no, msg.join(" "));
            }
            ".alert" if active => {
                let msg = l.args.iter().map(|t| t.text.as_str()).collect::<Vec<_>>();
                return Err(self.err(l.no, &l.kw, format!(".alert: {}", msg.join(" "))));
            }
            ".warning" | ".alert" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn eval_cond(&self, l: &Line) -> Result<bool, ConfigError> {
        let text: Vec<&str> = l.args.iter().map(|t| t.text.as_str()).collect();
        let text = text.join(" ");
        super::cond::eval(&text, &|n| self.env(n)).map_err(|m| {
            let tok = l.args.first().unwrap_or(&l.kw);
            self.err(l.no, tok, format!("invalid '{}' condition: {m}", l.kw.text))
        })
    }

    // --- errors ---

    pub(crate) fn err_at(
        &self,
        line: usize,
        col: usize,
        near_text: &str,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line,
            col,
            msg: msg.into(),
            near: near(near_text),
            hint: None,
        }
    }

    pub(crate) fn err(&self, line: usize, tok: &Token, msg: impl Into<String>) -> ConfigError {
        self.err_at(line, tok.col, &tok.text, msg)
    }

    pub(crate) fn err_hint(
        &self,
        line: usize,
        tok: &Token,
        msg: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        with_hint(self.err(line, tok, msg), hint)
    }

    pub(crate) fn warn(&mut self, line: usize, msg: impl std::fmt::Display) {
        self.warnings
            .push(format!("{}:{line}: warning: {msg}", self.file.display()));
    }

    pub(crate) fn warn_at(&mut self, origin: &Origin, msg: impl std::fmt::Display) {
        self.warnings.push(format!("{origin}: warning: {msg}"));
    }

    pub(crate) fn origin(&self, line: usize) -> Origin {
        Origin {
            file: self.file.clone(),
            line,
        }
    }

    pub(crate) fn spanned(&self, line: usize, tok: &Token) -> Spanned {
        Spanned {
            text: tok.text.clone(),
            origin: self.origin(line),
            col: tok.col,
        }
    }

    // --- arguments ---

    /// Argument `i`, or an error on the keyword saying what it expects.
    pub(crate) fn arg<'l>(
        &self,
        l: &'l Line,
        i: usize,
        expects: &str,
    ) -> Result<&'l Token, ConfigError> {
        l.args
            .get(i)
            .ok_or_else(|| self.err(l.no, &l.kw, format!("'{}' expects {expects}", l.kw.text)))
    }

    /// Errors on any argument from `n` on.
    pub(crate) fn no_more(&self, l: &Line, n: usize, what: &str) -> Result<(), ConfigError> {
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

    pub(crate) fn caps(&self) -> u8 {
        match &self.section {
            Section::Defaults(_) => DEF,
            Section::Proxy(p) => p.caps,
            Section::None | Section::Global => 0,
        }
    }

    pub(crate) fn internal(&self, l: &Line, what: &str) -> ConfigError {
        self.err(l.no, &l.kw, format!("internal error: {what}"))
    }

    pub(crate) fn settings(&mut self, l: &Line) -> Result<&mut Settings, ConfigError> {
        let err = self.internal(l, "no proxy section");
        match &mut self.section {
            Section::Defaults(d) => Ok(&mut d.s),
            Section::Proxy(p) => Ok(&mut p.s),
            Section::None | Section::Global => Err(err),
        }
    }

    pub(crate) fn proxy(&mut self, l: &Line) -> Result<&mut Proxy, ConfigError> {
        let err = self.internal(l, "no frontend/backend section");
        match &mut self.section {
            Section::Proxy(p) => Ok(p),
            _ => Err(err),
        }
    }

    /// Name of the current section, for messages: `frontend 'x'`.
    pub(crate) fn section_desc(&self) -> String {
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

    fn close_section(&mut self) -> Result<(), ConfigError> {
        match std::mem::replace(&mut self.section, Section::None) {
            Section::Defaults(mut d) => {
                super::acl::resolve_defaults(&mut d);
                if let Some(name) = &d.name {
                    self.defaults_by_name
                        .entry(name.clone())
                        .or_default()
                        .push(self.defaults_list.len());
                }
                self.defaults_list.push(*d);
                self.last_defaults = Some(self.defaults_list.len() - 1);
            }
            Section::Proxy(mut p) => {
                super::acl::resolve_proxy(&mut p);
                self.proxies.push(*p);
            }
            Section::None | Section::Global => {}
        }
        Ok(())
    }

    pub(crate) fn line(&mut self, l: &Line) -> Result<(), ConfigError> {
        if let Some(sec) = lookup(SECTIONS, &l.kw.text) {
            return self.open_section(l, sec.act);
        }
        match self.section {
            Section::None => {
                if lookup(PROXY_KWS, &l.kw.text).is_some() {
                    return Err(self.err(
                        l.no,
                        &l.kw,
                        format!(
                            "unknown keyword '{}' out of section: it belongs in a 'defaults', \
                             'frontend', 'backend' or 'listen' section",
                            l.kw.text
                        ),
                    ));
                }
                let hint = suggest(&l.kw.text, SECTIONS.iter().map(|k| k.name));
                Err(self.err_hint(
                    l.no,
                    &l.kw,
                    format!("unknown keyword '{}' out of section", l.kw.text),
                    hint,
                ))
            }
            Section::Global => super::global::global_line(self, l),
            Section::Defaults(_) | Section::Proxy(_) => self.proxy_line(l),
        }
    }

    fn open_section(&mut self, l: &Line, act: SecAct) -> Result<(), ConfigError> {
        self.close_section()?;
        match act {
            SecAct::Global => {
                self.no_more(l, 0, "global")?;
                self.global_seen = true;
                self.section = Section::Global;
            }
            SecAct::Defaults => {
                let (name, from) = self.header_args(l, false)?;
                // A new defaults section starts from scratch, unless `from`.
                let mut s = match from {
                    Some(f) => {
                        let idx = self.defaults_named(l, f)?;
                        self.defaults_list[idx].s.clone()
                    }
                    None => Settings::default(),
                };
                // Check rules are inherited until the section sets its own.
                s.tcp_check_own = false;
                s.http_check_own = false;
                self.section = Section::Defaults(Box::new(Defaults {
                    name: name.map(|t| t.text.clone()),
                    origin: self.origin(l.no),
                    s,
                    acls: Vec::new(),
                    acl_index: HashMap::new(),
                    tcp_rules: Vec::new(),
                    pending: Vec::new(),
                }));
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
                let (s, defaults_ref) = match from {
                    Some(f) => {
                        let idx = self.defaults_named(l, f)?;
                        (
                            self.defaults_list[idx].s.clone(),
                            DefaultsRef::Explicit(idx),
                        )
                    }
                    None => match self.last_defaults {
                        Some(idx) => (
                            self.defaults_list[idx].s.clone(),
                            DefaultsRef::Implicit(idx),
                        ),
                        None => (Settings::default(), DefaultsRef::None),
                    },
                };
                let origin = self.origin(l.no);
                if caps & FE != 0 {
                    self.frontend_lines
                        .insert(name.text.clone(), origin.clone());
                }
                if caps & BE != 0 {
                    self.backend_lines.insert(name.text.clone(), origin.clone());
                }
                let tcp_rules = match defaults_ref {
                    DefaultsRef::Explicit(i) | DefaultsRef::Implicit(i) => {
                        self.defaults_list[i].tcp_rules.clone()
                    }
                    DefaultsRef::None => Vec::new(),
                };
                let mut s = s;
                s.tcp_check_own = false;
                s.http_check_own = false;
                // Rules of a defaults section are inherited only by proxies with
                // the matching capability (checked at the end).
                if caps & FE == 0 {
                    s.default_backend = None;
                }
                self.section = Section::Proxy(Box::new(Proxy {
                    caps,
                    name: self.spanned(l.no, name),
                    s,
                    binds: Vec::new(),
                    servers: Vec::new(),
                    server_lines: HashMap::new(),
                    acls: Vec::new(),
                    acl_index: HashMap::new(),
                    use_backends: Vec::new(),
                    tcp_rules: if caps & FE != 0 {
                        tcp_rules
                    } else {
                        Vec::new()
                    },
                    pending: Vec::new(),
                    defaults_ref,
                    id: None,
                    description: None,
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

    /// The `defaults` section `from` names: exactly one with that name.
    fn defaults_named(&self, l: &Line, t: &Token) -> Result<usize, ConfigError> {
        let found = self
            .defaults_by_name
            .get(&t.text)
            .map_or(&[][..], Vec::as_slice);
        match found {
            [one] => Ok(*one),
            [] => {
                let hint = suggest(
                    &t.text,
                    self.defaults_list.iter().filter_map(|d| d.name.as_deref()),
                );
                Err(self.err_hint(
                    l.no,
                    t,
                    format!("unknown 'defaults' section '{}'", t.text),
                    hint,
                ))
            }
            [a, b, ..] => Err(self.err(
                l.no,
                t,
                format!(
                    "ambiguous defaults section name '{}': it names the sections at {} and {}",
                    t.text, self.defaults_list[*a].origin, self.defaults_list[*b].origin
                ),
            )),
        }
    }

    /// Names of proxies and servers: letters, digits, '-', '_', '.', ':' (as HAProxy).
    pub(crate) fn check_name(&self, line: usize, t: &Token, what: &str) -> Result<(), ConfigError> {
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
        let clash = |lines: &HashMap<String, Origin>, what: &str| match lines.get(&name.text) {
            Some(prev) => Err(self.err(
                l.no,
                name,
                format!(
                    "{} '{}' has the same name as another {what} declared at {prev}",
                    l.kw.text, name.text
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

    fn proxy_line(&mut self, l: &Line) -> Result<(), ConfigError> {
        let caps = self.caps();
        if l.kw.text == "no" || l.kw.text == "default" {
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
            // As HAProxy: a keyword a proxy lacks the capability for is
            // ignored with a warning, except servers in a frontend and
            // anything a defaults section cannot hold.
            let fatal = caps == DEF
                || matches!(
                    k.name,
                    "server" | "default-server" | "server-template" | "dispatch"
                );
            if fatal || !matches!(k.act, Act::Run(_) | Act::Other | Act::Ignore) {
                return Err(self.err(
                    l.no,
                    &l.kw,
                    format!(
                        "'{}' is not allowed in a '{}' section (only in {})",
                        l.kw.text,
                        kind_name(caps),
                        allowed_sections(k.caps)
                    ),
                ));
            }
            self.warn_caps(l, k.caps, &l.kw.text);
            return Ok(());
        }
        self.run(l, k.act, &l.kw.text)
    }

    pub(crate) fn run(&mut self, l: &Line, act: Act, what: &str) -> Result<(), ConfigError> {
        match act {
            Act::Run(f) => f(self, l),
            Act::Ignore => Ok(()),
            Act::Other => {
                let origin = self.origin(l.no);
                let value = Located {
                    value: what.to_string(),
                    origin,
                };
                match &mut self.section {
                    Section::Global => self.global.other.push(value),
                    Section::Defaults(d) => d.s.other.push(value),
                    Section::Proxy(p) => p.s.other.push(value),
                    Section::None => {}
                }
                Ok(())
            }
            Act::Http => Err(self.http_err(l.no, &l.kw, what)),
            Act::NotYet(hint) => Err(self.not_yet_err(l.no, &l.kw, what, hint)),
            Act::Removed(by) => Err(self.err(
                l.no,
                &l.kw,
                format!("'{what}' was removed from HAProxy, use '{by}' instead"),
            )),
        }
    }

    pub(crate) fn http_err(&self, line: usize, tok: &Token, what: &str) -> ConfigError {
        self.err(
            line,
            tok,
            format!(
                "'{what}' is an HTTP-mode feature, which this L4 (TCP) load balancer does not offer"
            ),
        )
    }

    pub(crate) fn tls_err(&self, line: usize, tok: &Token, what: &str) -> ConfigError {
        self.err(
            line,
            tok,
            format!("'{what}' is a TLS feature, which this L4 (TCP) load balancer does not offer"),
        )
    }

    pub(crate) fn not_yet_err(
        &self,
        line: usize,
        tok: &Token,
        what: &str,
        hint: &str,
    ) -> ConfigError {
        self.err(line, tok, format!("'{what}' is not supported yet{hint}"))
    }

    /// `no option X`, `default option X`, `no log`.
    fn no_line(&mut self, l: &Line) -> Result<(), ConfigError> {
        let prefix = l.kw.text.clone();
        let what = self.arg(l, 0, "'option <name>' or 'log'")?;
        match what.text.as_str() {
            "log" if prefix == "no" => {
                self.no_more(l, 1, "no log")?;
                self.settings(l)?.logs.clear();
                Ok(())
            }
            "option" => {
                let o = self.arg(l, 1, "'option <name>'")?;
                let Some(k) = OPTION_KWS.iter().find(|k| k.name == o.text) else {
                    let hint = suggest(&o.text, OPTION_KWS.iter().map(|k| k.name));
                    return Err(self.err_hint(
                        l.no,
                        o,
                        format!("unknown option '{}'", o.text),
                        hint,
                    ));
                };
                if !k.negatable {
                    return Err(self.err(
                        l.no,
                        &l.kw,
                        format!("negation/default is not supported for option '{}'", k.name),
                    ));
                }
                self.no_more(l, 2, &format!("{prefix} option"))?;
                match k.act {
                    OptAct::Http => {
                        return Err(self.http_err(l.no, o, &format!("option {}", k.name)))
                    }
                    OptAct::NotYet(_) | OptAct::Check | OptAct::Flag => {}
                }
                let s = self.settings(l)?;
                s.options.retain(|x| x.name != k.name);
                Ok(())
            }
            _ => Err(self.err(
                l.no,
                what,
                format!("'{prefix}' only applies to 'option' and 'log'"),
            )),
        }
    }

    /// Warns (as HAProxy) when a keyword has no effect in this section.
    pub(crate) fn warn_caps(&mut self, l: &Line, kw_caps: u8, what: &str) -> bool {
        let caps = self.caps();
        if kw_caps & caps != 0 {
            return false;
        }
        let missing = if kw_caps & BE != 0 {
            "backend"
        } else {
            "frontend"
        };
        let desc = self.section_desc();
        self.warn(
            l.no,
            format_args!("'{what}' ignored because {desc} has no {missing} capability"),
        );
        true
    }
}

pub(crate) fn with_hint(e: ConfigError, hint: Option<String>) -> ConfigError {
    match e {
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

fn allowed_sections(caps: u8) -> String {
    let allowed: Vec<String> = [(DEF, "defaults"), (FE, "frontend"), (BE, "backend")]
        .iter()
        .filter(|(c, _)| caps & c != 0)
        .map(|(_, n)| format!("'{n}'"))
        .chain((caps & LISTEN != 0).then(|| "'listen'".to_string()))
        .collect();
    allowed.join(", ")
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
    if p.warn_caps(l, k.caps, &what) {
        return Ok(());
    }
    // As HAProxy, 0 is no timeout.
    let d = (!d.is_zero()).then_some(d);
    let origin = p.origin(l.no);
    let located = d.map(|value| Located { value, origin });
    let s = p.settings(l)?;
    match k.act {
        TSlot::Client => s.timeout_client = d,
        TSlot::Connect => s.timeout_connect = d,
        TSlot::Server => s.timeout_server = d,
        TSlot::ClientFin => s.timeout_client_fin = located,
        TSlot::ServerFin => s.timeout_server_fin = located,
        TSlot::Queue => s.timeout_queue = located,
        TSlot::Check => s.timeout_check = located,
        TSlot::Tunnel => s.timeout_tunnel = located,
        TSlot::Http => {}
    }
    Ok(())
}

fn p_balance(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let a = p.arg(
        l,
        0,
        "an algorithm ('roundrobin', 'leastconn'...) as an argument",
    )?;
    // `hdr(name)`, `rdp-cookie(name)`, `random(2)`: the algorithm is before '('.
    let (algo, paren) = match a.text.split_once('(') {
        Some((algo, rest)) => (algo, Some(rest)),
        None => (a.text.as_str(), None),
    };
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
    let balance = match k.act {
        BalAct::Http => return Err(p.http_err(l.no, a, &what)),
        BalAct::NotYet => return Err(p.not_yet_err(l.no, a, &what, "")),
        BalAct::Algo(b) => {
            if paren.is_some() {
                return Err(p.err(
                    l.no,
                    a,
                    format!("'{what}' takes no argument in parentheses"),
                ));
            }
            b
        }
        BalAct::Random => {
            let draws = match paren {
                None => 2,
                Some(rest) => {
                    let n = rest.strip_suffix(')').ok_or_else(|| {
                        p.err(
                            l.no,
                            a,
                            "balance random: missing ')' after the number of draws",
                        )
                    })?;
                    let n = parse_u32(n, 0)
                        .map_err(|m| p.err(l.no, a, format!("balance random: {m}")))?;
                    if n == 0 {
                        return Err(p.err(
                            l.no,
                            a,
                            "balance random: the number of draws must be at least 1",
                        ));
                    }
                    n
                }
            };
            Balance::Random { draws }
        }
    };
    p.no_more(l, 1, &what)?;
    let origin = p.origin(l.no);
    let s = p.settings(l)?;
    s.balance = balance;
    s.balance_origin = Some(origin);
    Ok(())
}

fn p_hash_type(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let m = p.arg(l, 0, "'map-based' or 'consistent' as an argument")?;
    let method = match m.text.as_str() {
        "map-based" => HashMethod::MapBased,
        "consistent" => HashMethod::Consistent,
        _ => {
            return Err(p.err_hint(
                l.no,
                m,
                format!(
                    "unknown hash method '{}' (expected 'map-based' or 'consistent')",
                    m.text
                ),
                suggest(&m.text, ["map-based", "consistent"]),
            ))
        }
    };
    let mut ht = HashType {
        method,
        function: HashFunction::Sdbm,
        // As documented, consistent hashing without a function is sdbm with avalanche.
        avalanche: method == HashMethod::Consistent && l.args.len() == 1,
    };
    if let Some(f) = l.args.get(1) {
        ht.function = match f.text.as_str() {
            "sdbm" => HashFunction::Sdbm,
            "djb2" => HashFunction::Djb2,
            "wt6" => HashFunction::Wt6,
            "crc32" => HashFunction::Crc32,
            "avalanche" => {
                return Err(p.err(
                    l.no,
                    f,
                    "'avalanche' is a modifier: it follows a hash function \
                     (e.g. 'hash-type consistent sdbm avalanche')",
                ))
            }
            _ => {
                return Err(p.err_hint(
                    l.no,
                    f,
                    format!(
                        "unknown hash function '{}' (expected 'sdbm', 'djb2', 'wt6' or 'crc32')",
                        f.text
                    ),
                    suggest(&f.text, ["sdbm", "djb2", "wt6", "crc32"]),
                ))
            }
        };
    }
    if let Some(m) = l.args.get(2) {
        if m.text != "avalanche" {
            return Err(p.err(
                l.no,
                m,
                format!("unknown hash modifier '{}' (expected 'avalanche')", m.text),
            ));
        }
        ht.avalanche = true;
    }
    p.no_more(l, 3, "hash-type")?;
    let origin = p.origin(l.no);
    p.settings(l)?.hash_type = Some(Located { value: ht, origin });
    Ok(())
}

fn located_u32(
    p: &Parser<'_>,
    l: &Line,
    min: u32,
    what: &str,
) -> Result<Located<u32>, ConfigError> {
    let v = p.arg(l, 0, "<number> as an argument")?;
    p.no_more(l, 1, what)?;
    let n =
        parse_u32(&v.text, min).map_err(|m| p.err(l.no, v, format!("invalid '{what}': {m}")))?;
    Ok(Located {
        value: n,
        origin: p.origin(l.no),
    })
}

fn p_retries(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = located_u32(p, l, 0, "retries")?;
    p.settings(l)?.retries = Some(v);
    Ok(())
}

fn p_load_server_state(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "one of 'global', 'local' or 'none' as an argument")?;
    p.no_more(l, 1, &l.kw.text)?;
    let mode = match v.text.as_str() {
        "global" => LoadServerState::Global,
        "local" => LoadServerState::Local,
        "none" => LoadServerState::None,
        other => {
            return Err(p.err(
                l.no,
                v,
                format!(
                    "'{}' expects 'global', 'local' or 'none'. Got '{other}'",
                    l.kw.text
                ),
            ))
        }
    };
    p.settings(l)?.load_server_state = Some(Located {
        value: mode,
        origin: p.origin(l.no),
    });
    Ok(())
}

fn p_server_state_file_name(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let name = match l.args.first() {
        None => StateFileName::BackendName,
        Some(v) if v.text == "use-backend-name" => StateFileName::BackendName,
        Some(v) if v.text.is_empty() => {
            return Err(p.err(l.no, v, format!("'{}' expects a file name", l.kw.text)))
        }
        Some(v) => StateFileName::File(std::path::PathBuf::from(&v.text)),
    };
    p.no_more(l, 1, &l.kw.text)?;
    p.settings(l)?.server_state_file_name = Some(Located {
        value: name,
        origin: p.origin(l.no),
    });
    Ok(())
}

fn p_fullconn(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = located_u32(p, l, 0, "fullconn")?;
    p.settings(l)?.fullconn = Some(v);
    Ok(())
}

fn p_backlog(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = located_u32(p, l, 0, "backlog")?;
    p.settings(l)?.backlog = Some(v);
    Ok(())
}

fn p_maxconn(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = located_u32(p, l, 1, "maxconn")?;
    let s = p.settings(l)?;
    s.maxconn = Some(v.value);
    s.maxconn_origin = Some(v.origin);
    Ok(())
}

fn p_option(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let o = p.arg(l, 0, "an option name as an argument")?;
    let Some(k) = OPTION_KWS.iter().find(|k| k.name == o.text) else {
        let hint = suggest(&o.text, OPTION_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(l.no, o, format!("unknown option '{}'", o.text), hint));
    };
    let what = format!("option {}", k.name);
    match k.act {
        OptAct::Http => return Err(p.http_err(l.no, o, &what)),
        OptAct::NotYet(hint) => return Err(p.not_yet_err(l.no, o, &what, hint)),
        OptAct::Check => return super::checks::option_check(p, l, k.name),
        OptAct::Flag => {}
    }
    let mut arg = None;
    if k.name == "redispatch" {
        if let Some(v) = l.args.get(1) {
            let n = parse_int(&v.text, i64::from(i32::MIN), i64::from(i32::MAX))
                .map_err(|m| p.err(l.no, v, format!("invalid '{what}' interval: {m}")))?;
            // Both bounds are i32's.
            arg = Some(n as i32);
        }
        p.no_more(l, 2, &what)?;
    } else {
        p.no_more(l, 1, &what)?;
    }
    if p.warn_caps(l, k.caps, &what) {
        return Ok(());
    }
    let origin = p.origin(l.no);
    let s = p.settings(l)?;
    s.options.retain(|x| x.name != k.name);
    s.options.push(OptSet {
        name: k.name,
        origin,
        arg,
    });
    Ok(())
}

fn p_default_backend(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let b = p.arg(l, 0, "<backend name> as an argument")?;
    p.no_more(l, 1, "default_backend")?;
    p.check_name(l.no, b, "backend")?;
    let sp = p.spanned(l.no, b);
    p.settings(l)?.default_backend = Some(sp);
    Ok(())
}

fn p_use_backend(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let b = p.arg(l, 0, "<backend name> [{if | unless} <condition>]")?;
    if b.text.contains("%[") || b.text.contains('%') {
        return Err(p.not_yet_err(
            l.no,
            b,
            "use_backend with a log-format (dynamic) backend name",
            "",
        ));
    }
    p.check_name(l.no, b, "backend")?;
    let cond = match l.args.get(1) {
        None => None,
        Some(_) => Some(super::acl::parse_condition(p, l, 1, "use_backend")?),
    };
    let backend = p.spanned(l.no, b);
    let origin = p.origin(l.no);
    let proxy = p.proxy(l)?;
    let idx = proxy.use_backends.len();
    proxy.use_backends.push(UseDraft {
        backend,
        cond,
        origin,
    });
    proxy.pending.push(PendingCond::UseBackend(idx));
    Ok(())
}

fn p_id(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a positive number as an argument")?;
    p.no_more(l, 1, "id")?;
    let n = parse_u32(&v.text, 1).map_err(|m| p.err(l.no, v, format!("invalid 'id': {m}")))?;
    let origin = p.origin(l.no);
    let col = v.col;
    p.proxy(l)?.id = Some((Located { value: n, origin }, col));
    Ok(())
}

fn p_description(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    p.arg(l, 0, "a string as an argument")?;
    let text: Vec<&str> = l.args.iter().map(|t| t.text.as_str()).collect();
    p.proxy(l)?.description = Some(text.join(" "));
    Ok(())
}

fn p_disabled(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    p.no_more(l, 0, "disabled")?;
    let origin = p.origin(l.no);
    p.settings(l)?.disabled = Some(origin);
    Ok(())
}

fn p_enabled(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    p.no_more(l, 0, "enabled")?;
    p.settings(l)?.disabled = None;
    Ok(())
}

fn p_log(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let first = p.arg(
        l,
        0,
        "'global' or <address> [len <n>] [format <f>] <facility> [level [minlevel]]",
    )?;
    let origin = p.origin(l.no);
    let value = if first.text == "global" {
        p.no_more(l, 1, "log global")?;
        ProxyLog::Global
    } else {
        ProxyLog::Target(super::global::parse_log_target(p, l)?)
    };
    p.settings(l)?.logs.push(Located { value, origin });
    Ok(())
}

fn p_acl(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    super::acl::p_acl(p, l)
}

fn p_tcp_request(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    super::acl::p_tcp_request(p, l)
}

fn p_tcp_check(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    super::checks::p_tcp_check(p, l)
}

fn p_http_check(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    super::checks::p_http_check(p, l)
}

fn p_bind(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let a = p.arg(l, 0, "[address]:port[,...] as an argument")?;
    let expanded = p.expand(&a.text);
    // Columns point into the word only when it was written as is.
    let plain = a.verbatim && expanded == a.text;
    let mut binds = Vec::new();
    let mut offset = 0usize;
    for part in expanded.split(',') {
        // Point at the failing address in `a,b,c` when the word was plain.
        let col = if plain { a.col + offset } else { a.col };
        offset += part.chars().count() + 1;
        let shown = if part.is_empty() {
            expanded.as_str()
        } else {
            part
        };
        let (addr, fqdn, port_first, port_last) = if part.is_empty() {
            Err("empty address in the list".to_string())
        } else {
            bind_addr(p, part)
        }
        .map_err(|m| p.err_at(l.no, col, shown, format!("invalid bind address: {m}")))?;
        binds.push((
            Bind {
                addr,
                port_first,
                port_last,
                v6only: false,
                origin: p.origin(l.no),
                fqdn,
                v4v6: false,
                interface: None,
                backlog: None,
                maxconn: None,
                accept_proxy: false,
                name: None,
                id: None,
                other: Vec::new(),
            },
            col,
            part.to_string(),
        ));
    }
    let mut proto = binds
        .first()
        .map(|(b, _, _)| b.clone())
        .ok_or_else(|| p.internal(l, "no address"))?;
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
        let what = format!("bind ... {}", t.text);
        let mut value = || -> Result<&Token, ConfigError> {
            i += 1;
            p.arg(l, i, &format!("a value after '{}'", t.text))
        };
        match k.act {
            BindAct::V6Only => proto.v6only = true,
            BindAct::V4V6 => proto.v4v6 = true,
            BindAct::AcceptProxy => proto.accept_proxy = true,
            BindAct::Name => proto.name = Some(value()?.text.clone()),
            BindAct::Interface => proto.interface = Some(value()?.text.clone()),
            BindAct::Id => {
                let v = value()?;
                let n = parse_u32(&v.text, 1)
                    .map_err(|m| p.err(l.no, v, format!("invalid 'id': {m}")))?;
                let sockets: usize = binds
                    .iter()
                    .map(|(b, _, _)| usize::from(b.port_last - b.port_first) + 1)
                    .sum();
                if sockets > 1 {
                    return Err(p.err(
                        l.no,
                        t,
                        "'id' can only be set on a 'bind' line declaring a single socket",
                    ));
                }
                proto.id = Some(n);
            }
            BindAct::Backlog | BindAct::Maxconn => {
                let v = value()?;
                let n = parse_u32(&v.text, 0)
                    .map_err(|m| p.err(l.no, v, format!("invalid '{}': {m}", k.name)))?;
                if let BindAct::Backlog = k.act {
                    proto.backlog = Some(n);
                } else {
                    proto.maxconn = Some(n);
                }
            }
            BindAct::Other0 => proto.other.push(t.text.clone()),
            BindAct::Other1 => {
                let v = value()?;
                proto.other.push(format!("{} {}", t.text, v.text));
            }
            BindAct::Unix1 => {
                value()?;
            }
            BindAct::Tls0 | BindAct::Tls1 => return Err(p.tls_err(l.no, t, &what)),
            BindAct::NotYet => return Err(p.not_yet_err(l.no, t, &what, "")),
        }
        i += 1;
    }
    let proxy = p.proxy(l)?;
    for (b, col, text) in binds {
        let b = Bind {
            addr: b.addr,
            port_first: b.port_first,
            port_last: b.port_last,
            fqdn: b.fqdn,
            ..proto.clone()
        };
        proxy.binds.push((b, col, text));
    }
    Ok(())
}

/// A `bind` address: `(addr, fqdn, port_first, port_last)`, `addr` None for IPv4 any.
fn bind_addr(
    p: &Parser<'_>,
    s: &str,
) -> Result<(Option<IpAddr>, Option<String>, u16, u16), String> {
    let hp = split_address(s)?;
    let port = match hp.port {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(format!(
                "missing port in '{}' (expected [address]:port)",
                near(s)
            ))
        }
    };
    let (first, last) = parse_port_range(port)?;
    let (addr, fqdn) = match (hp.family, hp.host) {
        (Family::V6, Host::Wildcard(_)) => (Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), None),
        (_, Host::Wildcard(Some(IpAddr::V6(a)))) => (Some(IpAddr::V6(a)), None),
        (_, Host::Wildcard(_)) => (None, None),
        (_, Host::Ip(ip)) => (Some(ip), None),
        (family, Host::Name(name)) => {
            let ip = resolve_one(p, &name, family)?;
            let addr = if ip.is_unspecified() && ip.is_ipv4() {
                None
            } else {
                Some(ip)
            };
            (addr, Some(name))
        }
    };
    Ok((addr, fqdn, first, last))
}

/// Resolves a host name as HAProxy's `str2ip2()`: the first address (of the
/// forced family, if any).
pub(crate) fn resolve_one(p: &Parser<'_>, name: &str, family: Family) -> Result<IpAddr, String> {
    let addrs = p
        .sys
        .resolve(name)
        .map_err(|e| format!("could not resolve address '{}': {e}", near(name)))?;
    let first = addrs.iter().copied().find(|a| match family {
        Family::Any => true,
        Family::V4 => a.is_ipv4(),
        Family::V6 => a.is_ipv6(),
    });
    first.ok_or_else(|| format!("could not resolve address '{}'", near(name)))
}

impl Parser<'_> {
    /// `server`/`default-server` parameters from argument `start` on.
    fn server_params(
        &self,
        l: &Line,
        start: usize,
        sd: &mut ServerParams,
    ) -> Result<(), ConfigError> {
        let is_default = l.kw.text == "default-server";
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
            let what = format!("{} ... {}", l.kw.text, t.text);
            let mut value = || -> Result<&Token, ConfigError> {
                i += 1;
                self.arg(l, i, &format!("a value after '{}'", t.text))
            };
            let invalid =
                |v: &Token, m: String| self.err(l.no, v, format!("invalid '{}': {m}", t.text));
            let time = |v: &Token| -> Result<Duration, ConfigError> {
                let d = parse_time(&v.text).map_err(|m| invalid(v, m))?;
                if d.is_zero() {
                    return Err(invalid(v, "must be greater than 0".into()));
                }
                Ok(d)
            };
            match k.act {
                SrvAct::Check => sd.check = true,
                SrvAct::NoCheck => sd.check = false,
                SrvAct::Disabled => sd.disabled = true,
                SrvAct::Enabled => sd.disabled = false,
                SrvAct::Backup => sd.backup = true,
                SrvAct::NoBackup => sd.backup = false,
                SrvAct::SendProxy => sd.send_proxy = Some(ProxyProtocol::V1),
                SrvAct::SendProxyV2 => sd.send_proxy = Some(ProxyProtocol::V2),
                SrvAct::NoSendProxy | SrvAct::NoSendProxyV2 => sd.send_proxy = None,
                SrvAct::CheckSendProxy => sd.check_send_proxy = true,
                SrvAct::AgentCheck => sd.agent.enabled = true,
                SrvAct::NoAgentCheck => sd.agent.enabled = false,
                SrvAct::Weight => {
                    let v = value()?;
                    sd.weight = parse_uint(&v.text, 0, u64::from(MAX_WEIGHT))
                        .and_then(|w| u32::try_from(w).map_err(|e| e.to_string()))
                        .map_err(|m| invalid(v, m))?;
                }
                SrvAct::Inter => sd.check_params.inter = time(value()?)?,
                SrvAct::FastInter => sd.fastinter = Some(time(value()?)?),
                SrvAct::DownInter => sd.downinter = Some(time(value()?)?),
                SrvAct::AgentInter => sd.agent.inter = Some(time(value()?)?),
                SrvAct::Slowstart => {
                    let v = value()?;
                    let d = parse_time(&v.text).map_err(|m| invalid(v, m))?;
                    sd.slowstart = (!d.is_zero()).then_some(d);
                }
                SrvAct::Rise | SrvAct::Fall | SrvAct::ErrorLimit => {
                    let v = value()?;
                    let n = parse_u32(&v.text, 1).map_err(|m| invalid(v, m))?;
                    match k.act {
                        SrvAct::Rise => sd.check_params.rise = n,
                        SrvAct::Fall => sd.check_params.fall = n,
                        _ => sd.error_limit = Some(n),
                    }
                }
                SrvAct::Maxconn | SrvAct::Minconn | SrvAct::Maxqueue => {
                    let v = value()?;
                    let n = parse_u32(&v.text, 0).map_err(|m| invalid(v, m))?;
                    match k.act {
                        SrvAct::Maxconn => sd.maxconn = Some(n),
                        SrvAct::Minconn => sd.minconn = Some(n),
                        _ => sd.maxqueue = Some(n),
                    }
                }
                SrvAct::Id => {
                    if is_default {
                        return Err(self.err(
                            l.no,
                            t,
                            "'id' is not allowed on 'default-server' (ids are unique per server)",
                        ));
                    }
                    let v = value()?;
                    sd.id = Some(parse_u32(&v.text, 1).map_err(|m| invalid(v, m))?);
                }
                SrvAct::Port | SrvAct::AgentPort => {
                    let v = value()?;
                    let port = parse_port(&v.text).map_err(|m| invalid(v, m))?;
                    if let SrvAct::Port = k.act {
                        sd.check_port = Some(port);
                    } else {
                        sd.agent.port = Some(port);
                    }
                }
                SrvAct::Addr | SrvAct::AgentAddr => {
                    let v = value()?;
                    let ip = self.plain_ip(&v.text).map_err(|m| invalid(v, m))?;
                    if let SrvAct::Addr = k.act {
                        sd.check_addr = Some(ip);
                    } else {
                        sd.agent.addr = Some(ip);
                    }
                }
                SrvAct::AgentSend => sd.agent.send = Some(value()?.text.clone()),
                SrvAct::OnMarkedDown => {
                    let v = value()?;
                    if v.text != "shutdown-sessions" {
                        return Err(invalid(
                            v,
                            format!(
                                "unknown action '{}' (expected 'shutdown-sessions')",
                                near(&v.text)
                            ),
                        ));
                    }
                    sd.on_marked_down_shutdown = true;
                }
                SrvAct::OnMarkedUp => {
                    let v = value()?;
                    if v.text != "shutdown-backup-sessions" {
                        return Err(invalid(
                            v,
                            format!(
                                "unknown action '{}' (expected 'shutdown-backup-sessions')",
                                near(&v.text)
                            ),
                        ));
                    }
                    sd.on_marked_up_shutdown_backup = true;
                }
                SrvAct::OnError => {
                    let v = value()?;
                    sd.on_error = Some(match v.text.as_str() {
                        "fastinter" => OnError::FastInter,
                        "fail-check" => OnError::FailCheck,
                        "sudden-death" => OnError::SuddenDeath,
                        "mark-down" => OnError::MarkDown,
                        _ => {
                            return Err(invalid(
                                v,
                                format!(
                                    "unknown mode '{}' (expected 'fastinter', 'fail-check', \
                                     'sudden-death' or 'mark-down')",
                                    near(&v.text)
                                ),
                            ))
                        }
                    });
                }
                SrvAct::Observe => {
                    let v = value()?;
                    match v.text.as_str() {
                        "layer4" => sd.observe_layer4 = true,
                        "layer7" => return Err(self.http_err(l.no, v, "observe layer7")),
                        _ => {
                            return Err(invalid(
                                v,
                                format!("unknown mode '{}' (expected 'layer4')", near(&v.text)),
                            ))
                        }
                    }
                }
                SrvAct::InitAddr => {
                    let v = value()?;
                    let mut methods = Vec::new();
                    for m in v.text.split(',') {
                        methods.push(match m {
                            "last" => InitAddr::Last,
                            "libc" => InitAddr::Libc,
                            "none" => InitAddr::None,
                            _ => InitAddr::Ip(self.plain_ip(m).map_err(|_| {
                                invalid(
                                    v,
                                    format!(
                                        "'{}' is not 'last', 'libc', 'none' or an IP address",
                                        near(m)
                                    ),
                                )
                            })?),
                        });
                    }
                    sd.init_addr = Some(methods);
                }
                SrvAct::Other0 => sd.other.push(t.text.clone()),
                SrvAct::Other1 => {
                    let v = value()?;
                    sd.other.push(format!("{} {}", t.text, v.text));
                }
                SrvAct::Tls0 | SrvAct::Tls1 => return Err(self.tls_err(l.no, t, &what)),
                SrvAct::NotYet => return Err(self.not_yet_err(l.no, t, &what, "")),
                SrvAct::Http => return Err(self.http_err(l.no, t, &what)),
            }
            i += 1;
        }
        Ok(())
    }

    /// An IPv4 or IPv6 address, no port, no host name.
    fn plain_ip(&self, s: &str) -> Result<IpAddr, String> {
        let s = self.expand(s);
        let inner = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(&s);
        inner
            .parse()
            .map_err(|_| format!("'{}' is not an IP address", near(&s)))
    }
}

fn p_default_server(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let mut sd = p.settings(l)?.default_server.clone();
    p.server_params(l, 0, &mut sd)?;
    p.settings(l)?.default_server = sd;
    Ok(())
}

/// A parsed server address: the address (unspecified for a host name), how
/// the port is chosen, the host name to resolve with its family, and whether
/// the address is the client's destination.
type ServerAddr = (SocketAddr, ServerPort, Option<(String, Family)>, bool);

/// A server address: `(addr, port mode, host name to resolve)`.
fn server_addr(p: &Parser<'_>, s: &str) -> Result<ServerAddr, String> {
    let hp = split_address(s)?;
    let (port, mode) = match hp.port {
        None | Some("") => (0, ServerPort::SameAsClient),
        Some(port) if port.starts_with('+') || port.starts_with('-') => {
            let n = parse_int(port.trim_start_matches('+'), -65535, 65535)
                .map_err(|m| format!("invalid port offset: {m}"))?;
            // Within ±65535.
            (0, ServerPort::Offset(n as i32))
        }
        Some(port) if port.contains('-') => {
            return Err("port ranges are not allowed on servers".into())
        }
        Some("0") => (0, ServerPort::SameAsClient),
        Some(port) => (parse_port(port)?, ServerPort::Fixed),
    };
    let (ip, host, from_client) = match (hp.family, hp.host) {
        (_, Host::Ip(ip)) => (ip, None, false),
        (Family::V6, Host::Wildcard(_)) | (_, Host::Wildcard(Some(IpAddr::V6(_)))) => {
            (IpAddr::V6(Ipv6Addr::UNSPECIFIED), None, true)
        }
        (_, Host::Wildcard(_)) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), None, true),
        (family, Host::Name(name)) => {
            let _ = p;
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some((name, family)),
                false,
            )
        }
    };
    Ok((SocketAddr::new(ip, port), mode, host, from_client))
}

fn p_server(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let name = p.arg(l, 0, "<name> and <address>:<port> as arguments")?;
    p.check_name(l.no, name, "server")?;
    let a = p.arg(l, 1, "<name> and <address>:<port> as arguments")?;
    let expanded = p.expand(&a.text);
    let (addr, port_mode, host, from_client) = server_addr(p, &expanded)
        .map_err(|m| p.err(l.no, a, format!("invalid server address: {m}")))?;
    let mut sd = p.settings(l)?.default_server.clone();
    p.server_params(l, 2, &mut sd)?;
    if sd.agent.enabled && sd.agent.port.is_none() {
        return Err(p.err(
            l.no,
            name,
            format!(
                "server '{}' has 'agent-check' but no 'agent-port'",
                name.text
            ),
        ));
    }
    let origin = p.origin(l.no);
    let file = p.file.clone();
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
    let server = Server {
        name: name.text.clone(),
        addr,
        origin,
        port_mode,
        fqdn: host.as_ref().map(|(h, _)| h.clone()),
        addr_from_client: from_client,
        unresolved: false,
        params: sd,
    };
    proxy.servers.push(ServerDraft {
        server,
        host: host.map(|(h, f)| (h, f, a.col)),
        addr_col: a.col,
        addr_text: a.text.clone(),
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Cross checks and the model.

/// What a bind listens on, for conflict detection: `(kind, addr)` with kind 0
/// for IPv4 any, 1 for IPv6 any, 2 for a specific address.
type BindKey = (u8, IpAddr, Option<String>);

struct BindSlot {
    key: BindKey,
    first: u16,
    last: u16,
    origin: Origin,
    col: usize,
    text: String,
    frontend: usize,
    /// This IPv4-any slot comes from a dual-stack `::`.
    dual: bool,
}

fn invalid_at(sp: &Spanned, msg: String, hint: Option<String>) -> ConfigError {
    ConfigError::Invalid {
        file: sp.origin.file.clone(),
        line: sp.origin.line,
        col: sp.col,
        msg,
        near: near(&sp.text),
        hint,
    }
}

impl Parser<'_> {
    pub(crate) fn finish(mut self) -> Result<Config, ConfigError> {
        self.close_section()?;
        if !self.proxies.iter().any(|p| p.caps & FE != 0) {
            return Err(ConfigError::File {
                file: self.file.clone(),
                msg: "no 'frontend' or 'listen' section: nothing to do".into(),
            });
        }
        self.check_defaults_use()?;
        self.check_ids()?;

        let mut proxies = std::mem::take(&mut self.proxies);
        for p in &mut proxies {
            self.resolve_servers(p)?;
        }
        let mut backends = Vec::new();
        let mut backend_idx: HashMap<&str, usize> = HashMap::new();
        for p in proxies.iter().filter(|p| p.caps & BE != 0) {
            backend_idx.insert(&p.name.text, backends.len());
            backends.push(self.backend(p));
        }

        let mut frontends = Vec::new();
        let mut slots = Vec::new();
        for p in proxies.iter().filter(|p| p.caps & FE != 0) {
            if p.binds.is_empty() {
                return Err(invalid_at(
                    &p.name,
                    format!(
                        "{} '{}' has no 'bind' directive (declare it as a 'backend' if this was intended)",
                        p.kind(),
                        p.name.text
                    ),
                    None,
                ));
            }
            let find_backend = |t: &Spanned, what: &str| match backend_idx.get(t.text.as_str()) {
                Some(&i) => Ok(i),
                None => {
                    let hint = suggest(&t.text, backend_idx.keys().copied());
                    Err(invalid_at(
                        t,
                        format!(
                            "{} '{}': '{what}' names unknown backend '{}'",
                            p.kind(),
                            p.name.text,
                            t.text
                        ),
                        hint,
                    ))
                }
            };
            // A listen section is its own default backend, unless told otherwise.
            let target = match (&p.s.default_backend, p.caps & BE != 0) {
                (Some(d), _) => Some(d.clone()),
                (None, true) => Some(p.name.clone()),
                (None, false) => None,
            };
            let idx = match &target {
                Some(t) => Some(find_backend(t, "default_backend")?),
                None => None,
            };
            let mut use_backends = Vec::new();
            for u in &p.use_backends {
                let i = find_backend(&u.backend, "use_backend")?;
                use_backends.push(UseBackend {
                    backend: u.backend.text.clone(),
                    backend_idx: i,
                    cond: u.cond.clone(),
                    origin: u.origin.clone(),
                });
            }
            if idx.is_none() {
                let msg = if use_backends.is_empty() {
                    format!(
                        "frontend '{}' has no 'default_backend': its connections will be closed",
                        p.name.text
                    )
                } else {
                    format!(
                        "frontend '{}' has no 'default_backend': connections no 'use_backend' \
                         rule matches will be closed",
                        p.name.text
                    )
                };
                self.warn_at(&p.name.origin, msg);
            }
            for (b, col, text) in &p.binds {
                let mut push = |key: BindKey, dual: bool| {
                    slots.push(BindSlot {
                        key,
                        first: b.port_first,
                        last: b.port_last,
                        origin: b.origin.clone(),
                        col: *col,
                        text: text.clone(),
                        frontend: frontends.len(),
                        dual,
                    })
                };
                let dev = b.interface.clone();
                match b.addr {
                    None => push((0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), dev), false),
                    Some(ip @ IpAddr::V6(v6)) if v6.is_unspecified() => {
                        push((1, ip, dev.clone()), false);
                        if !b.v6only {
                            push((0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), dev), true);
                        }
                    }
                    Some(ip) => push((2, ip, dev), false),
                }
            }
            let opt = |name: &str| p.s.option(name).map(|o| o.origin.clone());
            frontends.push(Frontend {
                name: p.name.text.clone(),
                binds: p.binds.iter().map(|(b, _, _)| b.clone()).collect(),
                default_backend: target.map(|t| t.text),
                default_backend_idx: idx,
                timeout_client: p.s.timeout_client,
                maxconn: p.s.maxconn,
                origin: p.name.origin.clone(),
                maxconn_origin: p.s.maxconn_origin.clone(),
                use_backends,
                tcp_request_connection: p.tcp_rules.clone(),
                acls: p.acls.clone(),
                backlog: p.s.backlog.clone(),
                timeout_client_fin: p.s.timeout_client_fin.clone(),
                clitcpka: opt("clitcpka").or_else(|| opt("tcpka")),
                logs: p.s.logs.clone(),
                tcplog: opt("tcplog"),
                dontlognull: opt("dontlognull"),
                disabled: p.s.disabled.clone(),
                id: p.id.as_ref().map(|(v, _)| v.clone()),
                description: p.description.clone(),
                other: other_settings(&p.s, FE),
            });
        }

        self.check_bind_conflicts(&mut slots, &frontends)?;
        super::limits::capacity(&frontends, &backends)?;

        for p in &proxies {
            let fe_missing = p.caps & FE != 0 && p.s.timeout_client.is_none();
            let be_missing =
                p.caps & BE != 0 && (p.s.timeout_connect.is_none() || p.s.timeout_server.is_none());
            if fe_missing || be_missing {
                let kind = if p.caps == LISTEN { "proxy" } else { p.kind() };
                self.warn_at(
                    &p.name.origin,
                    format_args!(
                        "missing timeouts for {kind} '{}'. While not properly invalid, you will \
                         certainly encounter various problems with such a configuration. To fix \
                         this, please ensure that all following timeouts are set to a non-zero \
                         value: 'client', 'connect', 'server'.",
                        p.name.text
                    ),
                );
            }
            if p.caps & BE != 0 {
                self.backend_warnings(p);
            }
        }

        let cfg = Config {
            global: self.global,
            frontends,
            backends,
            warnings: self.warnings,
        };
        super::limits::self_steering(&cfg, &super::always_local)?;
        Ok(cfg)
    }

    fn backend(&self, p: &Proxy) -> Backend {
        let opt = |name: &str| p.s.option(name).map(|o| o.origin.clone());
        Backend {
            name: p.name.text.clone(),
            balance: p.s.balance,
            servers: p.servers.iter().map(|d| d.server.clone()).collect(),
            timeout_connect: p.s.timeout_connect,
            timeout_server: p.s.timeout_server,
            origin: p.name.origin.clone(),
            balance_origin: p.s.balance_origin.clone(),
            hash_type: p.s.hash_type.clone(),
            retries: p.s.retries.clone(),
            redispatch: p.s.option("redispatch").map(|o| Located {
                value: o.arg.unwrap_or(-1),
                origin: o.origin.clone(),
            }),
            allbackups: opt("allbackups"),
            srvtcpka: opt("srvtcpka").or_else(|| opt("tcpka")),
            timeout_queue: p.s.timeout_queue.clone(),
            timeout_check: p.s.timeout_check.clone(),
            timeout_tunnel: p.s.timeout_tunnel.clone(),
            timeout_server_fin: p.s.timeout_server_fin.clone(),
            fullconn: p.s.fullconn.clone(),
            health_check: p.s.health_check.clone(),
            tcp_check_rules: p.s.tcp_check_rules.clone(),
            http_check_rules: p.s.http_check_rules.clone(),
            acls: if p.caps & FE == 0 {
                p.acls.clone()
            } else {
                Vec::new()
            },
            logs: p.s.logs.clone(),
            log_health_checks: opt("log-health-checks"),
            disabled: p.s.disabled.clone(),
            id: p.id.as_ref().map(|(v, _)| v.clone()),
            description: p.description.clone(),
            load_server_state: p.s.load_server_state.clone(),
            server_state_file_name: p.s.server_state_file_name.clone(),
            other: other_settings(&p.s, BE),
        }
    }

    fn backend_warnings(&mut self, p: &Proxy) {
        let origin = &p.name.origin;
        let hc = p.s.health_check.as_ref().map(|h| &h.value);
        if !p.s.tcp_check_rules.is_empty() && hc != Some(&HealthCheck::TcpCheck) {
            self.warn_at(
                origin,
                format_args!(
                    "backend '{}' uses tcp-check rules without 'option tcp-check', so the rules are ignored",
                    p.name.text
                ),
            );
        }
        if !p.s.http_check_rules.is_empty() && !matches!(hc, Some(HealthCheck::HttpChk { .. })) {
            self.warn_at(
                origin,
                format_args!(
                    "backend '{}' uses http-check rules without 'option httpchk', so the rules are ignored",
                    p.name.text
                ),
            );
        }
        if p.s.balance == Balance::First {
            let without: Vec<&str> = p
                .servers
                .iter()
                .filter(|s| !s.server.params.backup && s.server.params.maxconn.unwrap_or(0) == 0)
                .map(|s| s.server.name.as_str())
                .collect();
            if !without.is_empty() {
                let at = p.s.balance_origin.clone().unwrap_or_else(|| origin.clone());
                self.warn_at(
                    &at,
                    format_args!(
                        "backend '{}' uses 'balance first' but server(s) {} have no 'maxconn': \
                         the first one will take every connection",
                        p.name.text,
                        without.join(", ")
                    ),
                );
            }
        }
    }

    /// Resolves host names of servers (HAProxy does it once the whole
    /// configuration is read, following `init-addr`).
    fn resolve_servers(&self, p: &mut Proxy) -> Result<(), ConfigError> {
        let (kind, proxy_name) = (p.kind(), p.name.text.clone());
        // A `tcp-check connect port N` first gives checks a port of their own.
        let rules_port =
            p.s.health_check
                .as_ref()
                .is_some_and(|h| h.value == HealthCheck::TcpCheck)
                && p.s.tcp_check_rules.iter().find_map(|r| match &r.value {
                    TcpCheckRule::Comment(_) | TcpCheckRule::Var(_) => None,
                    TcpCheckRule::Connect(c) => Some(c.port.is_some()),
                    _ => Some(false),
                }) == Some(true);
        for d in &p.servers {
            let s = &d.server;
            if s.params.check
                && s.port_mode != ServerPort::Fixed
                && s.params.check_port.is_none()
                && !rules_port
            {
                return Err(ConfigError::Invalid {
                    file: s.origin.file.clone(),
                    line: s.origin.line,
                    col: d.addr_col,
                    msg: format!(
                        "{kind} '{proxy_name}': server '{}' has neither service port nor check port \
                         (add 'port N' for its checks)",
                        s.name
                    ),
                    near: near(&d.addr_text),
                    hint: None,
                });
            }
        }
        for d in &mut p.servers {
            let Some((host, family, col)) = d.host.clone() else {
                continue;
            };
            let methods = d
                .server
                .params
                .init_addr
                .clone()
                .unwrap_or_else(|| vec![InitAddr::Last, InitAddr::Libc]);
            let mut found = None;
            let mut last_err = String::new();
            for m in &methods {
                match m {
                    // No server-state file is read.
                    InitAddr::Last => {}
                    InitAddr::Libc => match resolve_one(self, &host, family) {
                        Ok(ip) => {
                            found = Some(ip);
                            break;
                        }
                        Err(e) => last_err = e,
                    },
                    InitAddr::Ip(ip) => {
                        found = Some(*ip);
                        break;
                    }
                    InitAddr::None => {
                        d.server.unresolved = true;
                        d.server.params.disabled = true;
                        break;
                    }
                }
            }
            match found {
                Some(ip) => d.server.addr.set_ip(ip),
                None if d.server.unresolved => {}
                None => {
                    if last_err.is_empty() {
                        last_err = format!("could not resolve address '{}'", near(&host));
                    }
                    return Err(ConfigError::Invalid {
                        file: d.server.origin.file.clone(),
                        line: d.server.origin.line,
                        col,
                        msg: format!(
                            "{kind} '{proxy_name}': server '{}': {last_err}",
                            d.server.name
                        ),
                        near: near(&host),
                        hint: None,
                    });
                }
            }
        }
        Ok(())
    }

    /// Proxy ids (frontends and backends share them) and server ids (per
    /// backend) are unique.
    fn check_ids(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<u32, (String, Origin)> = HashMap::new();
        for p in &self.proxies {
            if let Some((id, col)) = &p.id {
                if let Some((other, at)) = seen.get(&id.value) {
                    return Err(ConfigError::Invalid {
                        file: id.origin.file.clone(),
                        line: id.origin.line,
                        col: *col,
                        msg: format!(
                            "{} '{}' reuses the id {} of {other} (declared at {at})",
                            p.kind(),
                            p.name.text,
                            id.value
                        ),
                        near: id.value.to_string(),
                        hint: None,
                    });
                }
                seen.insert(
                    id.value,
                    (format!("{} '{}'", p.kind(), p.name.text), id.origin.clone()),
                );
            }
            if p.caps & BE == 0 {
                continue;
            }
            let mut ids: HashMap<u32, &Server> = HashMap::new();
            for d in &p.servers {
                let Some(id) = d.server.params.id else {
                    continue;
                };
                if let Some(prev) = ids.get(&id) {
                    return Err(ConfigError::Invalid {
                        file: d.server.origin.file.clone(),
                        line: d.server.origin.line,
                        col: d.addr_col,
                        msg: format!(
                            "{} '{}': server '{}': id {id} is already used by server '{}' at {}",
                            p.kind(),
                            p.name.text,
                            d.server.name,
                            prev.name,
                            prev.origin
                        ),
                        near: format!("id {id}"),
                        hint: None,
                    });
                }
                ids.insert(id, &d.server);
            }
        }
        Ok(())
    }

    /// HAProxy's rules about named `defaults` sections: one used both
    /// explicitly (`from`) and implicitly is a warning; one defining
    /// `tcp-request` rules cannot serve both frontends and backends, nor a
    /// `listen`.
    fn check_defaults_use(&mut self) -> Result<(), ConfigError> {
        let explicit: HashSet<usize> = self
            .proxies
            .iter()
            .filter_map(|p| match p.defaults_ref {
                DefaultsRef::Explicit(i) => Some(i),
                _ => None,
            })
            .collect();
        let mut warnings = Vec::new();
        let mut users: HashMap<usize, (u8, &Proxy)> = HashMap::new();
        for p in &self.proxies {
            let idx = match p.defaults_ref {
                DefaultsRef::Explicit(i) => i,
                DefaultsRef::Implicit(i) => {
                    if explicit.contains(&i) {
                        let d = &self.defaults_list[i];
                        warnings.push((
                            p.name.origin.clone(),
                            format!(
                                "defaults section '{}' (declared at {}) is explicitly referenced \
                                 by another proxy and implicitly used here. To avoid any \
                                 ambiguity don't mix both usage. Add a last defaults section not \
                                 explicitly used or always use explicit references.",
                                d.name.as_deref().unwrap_or(""),
                                d.origin
                            ),
                        ));
                    }
                    i
                }
                DefaultsRef::None => continue,
            };
            let d = &self.defaults_list[idx];
            if d.tcp_rules.is_empty() {
                continue;
            }
            if p.caps == LISTEN {
                return Err(invalid_at(
                    &p.name,
                    format!(
                        "a listen section cannot inherit from a defaults section defining TCP \
                         rules (defaults section at {})",
                        d.origin
                    ),
                    None,
                ));
            }
            match users.get(&idx) {
                Some((caps, _)) if *caps != p.caps => {
                    return Err(invalid_at(
                        &p.name,
                        format!(
                            "frontends and backends cannot inherit from the same defaults section \
                             if it defines TCP rules (defaults section at {})",
                            d.origin
                        ),
                        None,
                    ));
                }
                Some(_) => {}
                None => {
                    users.insert(idx, (p.caps, p));
                }
            }
        }
        for (o, w) in warnings {
            self.warn_at(&o, w);
        }
        Ok(())
    }

    /// Two binds (in any frontends) on the same address with overlapping ports.
    fn check_bind_conflicts(
        &self,
        slots: &mut [BindSlot],
        frontends: &[Frontend],
    ) -> Result<(), ConfigError> {
        slots.sort_by(|a, b| {
            (&a.key, a.first, &a.origin.file, a.origin.line, a.col).cmp(&(
                &b.key,
                b.first,
                &b.origin.file,
                b.origin.line,
                b.col,
            ))
        });
        let mut widest: Option<&BindSlot> = None;
        for s in slots.iter() {
            if let Some(w) = widest.filter(|w| w.key == s.key && s.first <= w.last) {
                // Report the later one.
                let pos = |b: &BindSlot| (b.origin.file.clone(), b.origin.line, b.col);
                let (early, late) = if pos(w) <= pos(s) { (w, s) } else { (s, w) };
                let fe_name = |i: usize| frontends.get(i).map_or("?", |f| f.name.as_str());
                let dual = if early.dual || late.dual {
                    " ('::' also takes IPv4 unless 'v6only' is set)"
                } else {
                    ""
                };
                return Err(ConfigError::Invalid {
                    file: late.origin.file.clone(),
                    line: late.origin.line,
                    col: late.col,
                    msg: format!(
                        "bind '{}' of frontend '{}' conflicts with bind '{}' of frontend '{}' at {}{dual}",
                        late.text,
                        fe_name(late.frontend),
                        early.text,
                        fe_name(early.frontend),
                        early.origin
                    ),
                    near: near(&late.text),
                    hint: None,
                });
            }
            if widest.is_none_or(|w| w.key != s.key || s.last > w.last) {
                widest = Some(s);
            }
        }
        Ok(())
    }
}

/// The `other` settings of a proxy for one side: accepted keywords and the
/// options not modelled by a field.
fn other_settings(s: &Settings, side: u8) -> Vec<Located<String>> {
    const MODELLED: &[&str] = &[
        "tcplog",
        "dontlognull",
        "clitcpka",
        "srvtcpka",
        "tcpka",
        "redispatch",
        "allbackups",
        "log-health-checks",
    ];
    let mut out: Vec<Located<String>> = Vec::new();
    for o in &s.options {
        if MODELLED.contains(&o.name) {
            continue;
        }
        let caps = OPTION_KWS
            .iter()
            .find(|k| k.name == o.name)
            .map_or(ANY, |k| k.caps);
        if caps & side != 0 {
            out.push(Located {
                value: format!("option {}", o.name),
                origin: o.origin.clone(),
            });
        }
    }
    for x in &s.other {
        let caps = lookup(PROXY_KWS, &x.value).map_or(ANY, |k| k.caps);
        if caps & side != 0 {
            out.push(x.clone());
        }
    }
    out
}
