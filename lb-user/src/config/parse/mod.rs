//! The parser: HAProxy sections and keywords into the typed [`Config`] model.
//!
//! This file holds what every section shares (files, lines, `.if` blocks,
//! the `Parser` state, errors); each section's keyword table sits beside its
//! handlers in its own file: `global`, `proxy` (with `option`, `timeout`,
//! `balance`), `bind`, `server`, `acl` (`acl`, `tcp-request`), `checks`;
//! `build` runs the cross checks and makes the model. Each entry says in which
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
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::host::{RealSys, Sys};
use crate::config::lexer::{env_expand, lex_line, Token};
use crate::config::model::*;
use crate::config::values::*;

mod acl;
mod bind;
mod build;
mod checks;
mod cond;
mod global;
mod proxy;
mod resolvers;
mod server;
mod stats;

use bind::*;
use proxy::*;
use server::*;

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
    Resolvers,
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
    kw("resolvers", ALL, SecAct::Resolvers),
    kw("userlist", ALL, SecAct::NotYet),
    kw("mailers", ALL, SecAct::NotYet),
    kw("program", ALL, SecAct::NotYet),
    kw("ring", ALL, SecAct::NotYet),
    kw("log-forward", ALL, SecAct::NotYet),
    kw("http-errors", ALL, SecAct::Http),
    kw("cache", ALL, SecAct::Http),
    kw("fcgi-app", ALL, SecAct::Http),
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
    pub data_path: Option<Located<DataPath>>,
    pub connect: Option<Located<ConnectPath>>,
    pub timeout_client: Option<Duration>,
    pub timeout_connect: Option<Duration>,
    pub timeout_server: Option<Duration>,
    pub timeout_client_fin: Option<Located<Duration>>,
    /// `tcp-request inspect-delay`: how long content rules may wait for data.
    pub inspect_delay: Option<Located<Duration>>,
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
    pub clitcpka: TcpKeepalive,
    pub srvtcpka: TcpKeepalive,
    pub rate_limit_sessions: Option<Located<u32>>,
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
    /// `mode http` in force here (set in this section or inherited): where
    /// it was set. A proxy that ends up in HTTP mode is refused.
    pub mode_http: Option<Origin>,
    /// Settings only an HTTP-mode proxy uses: a TCP proxy ignores them, with
    /// HAProxy's warning where HAProxy gives one.
    pub http_only: Vec<HttpOnly>,
    /// `stats ...`: used by an HTTP-mode proxy that serves the stats page.
    pub stats: StatsConf,
    /// `monitor-uri PATH`.
    pub monitor_uri: Option<String>,
    /// `external-check command` and `path`.
    pub external_check_command: Option<String>,
    pub external_check_path: Option<String>,
}

/// One setting only HTTP mode uses (`option forwardfor`, `http-request`,
/// `timeout http-request`, `errorfile`...), kept until the proxy's mode is
/// known: a `defaults` in `mode http` often carries them for proxies that
/// all say `mode tcp`.
#[derive(Clone, Debug)]
pub(crate) struct HttpOnly {
    pub what: String,
    pub origin: Origin,
    pub note: HttpNote,
}

/// What HAProxy (2.6) says when a TCP proxy has an [`HttpOnly`] setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HttpNote {
    /// "'http-request' rules ignored for frontend 'f' as they require HTTP mode."
    Rules,
    /// "'option forwardfor' ignored for backend 'b' as it requires HTTP mode."
    Ignored,
    /// "cookie will be ignored for backend 'b' (needs 'mode http')."
    Cookie,
    /// "monitor-uri will be ignored for proxy 'l' (needs 'mode http')."
    MonitorUri,
    /// "'stats' statement ignored for proxy 'l' as it requires HTTP mode."
    Stats,
    /// "'option httplog' not usable with frontend 'f' (needs 'mode http').
    /// Falling back to 'option tcplog'."
    Httplog,
    /// Nothing: HAProxy ignores it without a word (timeouts, error files,
    /// keep-alive options, captures, compression...).
    Silent,
}

impl HttpNote {
    pub(crate) fn for_keyword(kw: &str) -> Self {
        match kw {
            "http-request" | "http-response" | "http-after-response" | "redirect" => Self::Rules,
            "stats" => Self::Stats,
            "cookie" => Self::Cookie,
            "monitor-uri" => Self::MonitorUri,
            _ => Self::Silent,
        }
    }

    pub(crate) fn for_option(name: &str) -> Self {
        match name {
            "httplog" | "httpslog" => Self::Httplog,
            "forwardfor" | "originalto" | "forwarded" => Self::Ignored,
            _ => Self::Silent,
        }
    }
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
    UseServer(usize),
    Persist(usize),
    TcpRequest(usize),
    TcpContent(usize),
    StatsAdmin,
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
    /// `use-server NAME COND`: the name is checked once every server line is read.
    pub use_servers: Vec<(Spanned, Condition, Origin)>,
    pub persist_rules: Vec<PersistRule>,
    pub tcp_rules: Vec<TcpRequestRule>,
    /// `tcp-request content` rules.
    pub content_rules: Vec<TcpRequestRule>,
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
    Resolvers(Box<Resolvers>),
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
    pub resolvers: Vec<Resolvers>,
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
            resolvers: Vec::new(),
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
            Section::Resolvers(r) => r.name.clone(),
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
        cond::eval(&text, &|n| self.env(n)).map_err(|m| {
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
            Section::None | Section::Global | Section::Resolvers(_) => 0,
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
            Section::None | Section::Global | Section::Resolvers(_) => Err(err),
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
            Section::Resolvers(r) => format!("resolvers '{}'", r.name),
            Section::None => "no section".into(),
        }
    }

    fn close_section(&mut self) -> Result<(), ConfigError> {
        match std::mem::replace(&mut self.section, Section::None) {
            Section::Defaults(mut d) => {
                acl::resolve_defaults(&mut d);
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
                acl::resolve_proxy(&mut p);
                self.proxies.push(*p);
            }
            Section::Resolvers(r) => {
                if r.nameservers.is_empty() {
                    return Err(ConfigError::Invalid {
                        file: r.origin.file.clone(),
                        line: r.origin.line,
                        col: 1,
                        msg: format!("resolvers '{}': no nameserver found", r.name),
                        near: r.name.clone(),
                        hint: None,
                    });
                }
                self.resolvers.push(*r);
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
            Section::Global => global::global_line(self, l),
            Section::Resolvers(_) => resolvers::resolvers_line(self, l),
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
                    use_servers: Vec::new(),
                    persist_rules: Vec::new(),
                    tcp_rules: if caps & FE != 0 {
                        tcp_rules
                    } else {
                        Vec::new()
                    },
                    content_rules: Vec::new(),
                    pending: Vec::new(),
                    defaults_ref,
                    id: None,
                    description: None,
                }));
            }
            SecAct::Resolvers => {
                let name = self.arg(l, 0, "<name> as an argument")?;
                self.no_more(l, 1, "resolvers")?;
                if let Some(r) = self.resolvers.iter().find(|r| r.name == name.text) {
                    return Err(self.err(
                        l.no,
                        name,
                        format!(
                            "resolvers section '{}' has the same name as another resolvers section declared at {}",
                            name.text, r.origin
                        ),
                    ));
                }
                self.section =
                    Section::Resolvers(Box::new(Resolvers::new(&name.text, self.origin(l.no))));
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
            // HAProxy 1.x put listening addresses there.
            if matches!(l.kw.text.as_str(), "listen" | "frontend") && extra.text.contains(':') {
                return Err(self.err(
                    l.no,
                    extra,
                    "please use the 'bind' keyword for listening addresses",
                ));
            }
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
            Some(prev) => {
                // The earlier section's own kind: a name in both tables at
                // one line was a listen.
                let both = self.frontend_lines.get(&name.text) == Some(prev)
                    && self.backend_lines.get(&name.text) == Some(prev);
                let kind = if both { "listen" } else { what };
                Err(self.err(
                    l.no,
                    name,
                    format!(
                        "{} '{}' has the same name as {kind} '{}' declared at {prev}",
                        l.kw.text, name.text, name.text
                    ),
                ))
            }
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
                    Section::None | Section::Resolvers(_) => {}
                }
                Ok(())
            }
            Act::Http => self.http_only(l, what, HttpNote::for_keyword(what)),
            Act::NotYet(hint) => Err(self.not_yet_err(l.no, &l.kw, what, hint)),
            Act::Removed(by) => Err(self.err(
                l.no,
                &l.kw,
                format!("'{what}' was removed from HAProxy, use '{by}' instead"),
            )),
        }
    }

    /// Keeps an HTTP-only setting of a `defaults` or proxy section for the
    /// mode check at the end (see [`HttpOnly`]); anywhere else it is an error.
    pub(crate) fn http_only(
        &mut self,
        l: &Line,
        what: &str,
        note: HttpNote,
    ) -> Result<(), ConfigError> {
        if !matches!(self.section, Section::Defaults(_) | Section::Proxy(_)) {
            return Err(self.http_err(l.no, &l.kw, what));
        }
        let origin = self.origin(l.no);
        self.settings(l)?.http_only.push(HttpOnly {
            what: what.to_string(),
            origin,
            note,
        });
        Ok(())
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
                        let what = format!("option {}", k.name);
                        self.settings(l)?.http_only.retain(|h| h.what != what);
                        return Ok(());
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
