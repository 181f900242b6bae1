//! Server state that outlives the daemon.
//!
//! Two sources, applied once at start-up before any connection is served:
//! - HAProxy's server-state file (`server-state-file`, `server-state-base`,
//!   `load-server-state-from-file`, `server-state-file-name`), in the version 1
//!   format `show servers state` prints. lb also writes the global file on a
//!   clean shutdown (lb's own convenience; HAProxy leaves that to a script).
//! - The pinned LB_SRV_META / LB_SRV_STATE maps a daemon killed without
//!   cleaning up left behind (crash recovery). They are newer than any file.
//!
//! A bad file or line never stops start-up: it is reported and skipped, as
//! HAProxy does.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::state::SrvState;
use aya::maps::{Array, Map, MapData};
use lb_common::{adm, maps, ServerMeta, ServerState, MAX_SERVERS};

use crate::config::{Config, LoadServerState};
use crate::state::{read_str, Server, State};

/// `srv_op_state` values (HAProxy's `enum srv_state`).
const OP_STOPPED: u32 = 0;
const OP_RUNNING: u32 = 2;
const OP_STOPPING: u32 = 3;
/// `srv_check_state` bit: checks paused (`disable health`).
const CHK_ST_PAUSED: u32 = 0x08;
/// Fields up to `srv_check_state`: what lb applies (HAProxy 1.6 files have
/// exactly these plus the agent state; later versions add more).
const MIN_FIELDS: usize = 14;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading server-state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing server-state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading pinned map {path}: {msg}")]
    Pinned { path: PathBuf, msg: String },
}

/// Counters only the pinned maps carry (a state file has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub total_conns: u64,
    pub user_bytes_in: u64,
    pub user_bytes_out: u64,
    pub checks_failed: u64,
    pub state_changes: u64,
}

/// One server's saved state: a line of a state file or an entry of the
/// pinned maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `file:line` or `LB_SRV_STATE[i]`, for messages.
    pub origin: String,
    pub be_id: u32,
    pub backend: String,
    pub srv_id: u32,
    pub server: String,
    pub addr: String,
    pub op: u32,
    pub admin: u32,
    pub uweight: u32,
    pub iweight: u32,
    /// Seconds since the last state change (`srv_time_since_last_change`).
    pub since_s: u32,
    pub health: u32,
    pub check_state: u32,
    /// The ids in the file were forced (`id N`): match by id, not name.
    pub be_forced_id: bool,
    pub srv_forced_id: bool,
    pub counters: Option<Counters>,
}

/// Reads a version 1 server-state file: its entries and one warning per line
/// that cannot be used (`file:line: why`).
pub fn parse(file: &str, text: &str) -> (Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    match lines.next() {
        Some((_, "1")) => {}
        Some((no, l)) => {
            warnings.push(format!(
                "{file}:{no}: unsupported server-state file version '{l}' (expected '1' on the first line); file ignored"
            ));
            return (entries, warnings);
        }
        None => {
            warnings.push(format!(
                "{file}: empty server-state file (no version line); nothing restored"
            ));
            return (entries, warnings);
        }
    }
    for (no, l) in lines {
        if l.starts_with('#') {
            continue;
        }
        match parse_line(l) {
            Ok(mut e) => {
                e.origin = format!("{file}:{no}");
                entries.push(e);
            }
            Err(why) => warnings.push(format!("{file}:{no}: {why}; line ignored")),
        }
    }
    (entries, warnings)
}

fn parse_line(l: &str) -> Result<Entry, String> {
    let f: Vec<&str> = l.split_ascii_whitespace().collect();
    if f.len() < MIN_FIELDS {
        return Err(format!(
            "{} fields, at least {MIN_FIELDS} expected (be_id ... srv_check_state)",
            f.len()
        ));
    }
    let num = |i: usize, name: &str| -> Result<u32, String> {
        f[i].parse::<u32>()
            .map_err(|_| format!("{name} '{}' is not a number", f[i]))
    };
    let flag = |i: usize, name: &str| -> Result<bool, String> {
        match f.get(i) {
            None => Ok(false),
            Some(_) => Ok(num(i, name)? != 0),
        }
    };
    let op = num(5, "srv_op_state")?;
    if op > OP_STOPPING {
        return Err(format!("srv_op_state '{op}' is not 0..3"));
    }
    let uweight = num(7, "srv_uweight")?;
    let iweight = num(8, "srv_iweight")?;
    for (w, name) in [(uweight, "srv_uweight"), (iweight, "srv_iweight")] {
        if w > 256 {
            return Err(format!("{name} '{w}' is above 256"));
        }
    }
    Ok(Entry {
        origin: String::new(),
        be_id: num(0, "be_id")?,
        backend: f[1].to_string(),
        srv_id: num(2, "srv_id")?,
        server: f[3].to_string(),
        addr: f[4].to_string(),
        op,
        admin: num(6, "srv_admin_state")?,
        uweight,
        iweight,
        since_s: num(9, "srv_time_since_last_change")?,
        health: num(12, "srv_check_health")?,
        check_state: num(13, "srv_check_state")?,
        be_forced_id: flag(15, "bk_f_forced_id")?,
        srv_forced_id: flag(16, "srv_f_forced_id")?,
        counters: None,
    })
}

/// Reads the server maps a previous daemon of `instance` pinned, if it left
/// them (it was killed before cleaning up). `Ok(None)`: nothing there.
pub fn read_pinned(dir: &Path) -> Result<Option<Vec<Entry>>, StateError> {
    if !dir.join(maps::SRV_STATE).exists() {
        return Ok(None);
    }
    let open = |name: &str| -> Result<Map, StateError> {
        let path = dir.join(name);
        let err = |msg: String| StateError::Pinned {
            path: path.clone(),
            msg,
        };
        let data = MapData::from_pin(&path).map_err(|e| err(e.to_string()))?;
        Map::from_map_data(data).map_err(|e| err(e.to_string()))
    };
    let pinned_err = |name: &str, msg: String| StateError::Pinned {
        path: dir.join(name),
        msg,
    };
    // A map of another layout (an older lb) fails here, with its size.
    let meta: Array<MapData, ServerMeta> = open(maps::SRV_META)?
        .try_into()
        .map_err(|e: aya::maps::MapError| pinned_err(maps::SRV_META, e.to_string()))?;
    let st: Array<MapData, ServerState> = open(maps::SRV_STATE)?
        .try_into()
        .map_err(|e: aya::maps::MapError| pinned_err(maps::SRV_STATE, e.to_string()))?;
    let mut out = Vec::new();
    for i in 0..MAX_SERVERS {
        let m = meta
            .get(&i, 0)
            .map_err(|e| pinned_err(maps::SRV_META, format!("[{i}]: {e}")))?;
        if m.in_use == 0 {
            break;
        }
        let s = st
            .get(&i, 0)
            .map_err(|e| pinned_err(maps::SRV_STATE, format!("[{i}]: {e}")))?;
        out.push(entry_of_map(i, &m, &s));
    }
    Ok(Some(out))
}

/// The pinned entry as if it were a state-file line.
pub fn entry_of_map(i: u32, m: &ServerMeta, s: &ServerState) -> Entry {
    let op = match SrvState::from_code(s.state) {
        Some(SrvState::Up) if s.admin_flags & adm::STOPPING != 0 => OP_STOPPING,
        Some(SrvState::Up) => OP_RUNNING,
        Some(SrvState::Down) => OP_STOPPED,
        // In maintenance the operational state is what the health says
        // (decided when it leaves maintenance).
        _ => OP_RUNNING,
    };
    Entry {
        origin: format!("{}[{i}]", maps::SRV_STATE),
        be_id: 0,
        backend: read_str(&m.backend),
        srv_id: 0,
        server: read_str(&m.name),
        addr: String::new(),
        op,
        admin: s.admin_flags & (adm::FMAINT | adm::FDRAIN),
        uweight: s.weight,
        iweight: s.iweight,
        // The map has no change time; the crash is the closest bound.
        since_s: 0,
        health: s.health,
        check_state: if s.admin_flags & adm::CHECKS_PAUSED != 0 {
            CHK_ST_PAUSED
        } else {
            0
        },
        be_forced_id: false,
        srv_forced_id: false,
        counters: Some(Counters {
            total_conns: s.total_conns,
            user_bytes_in: s.user_bytes_in,
            user_bytes_out: s.user_bytes_out,
            checks_failed: s.checks_failed,
            state_changes: s.state_changes,
        }),
    }
}

/// The backend index an entry names, by id when the file says the id was
/// forced, else by name.
fn find_backend(cfg: &Config, e: &Entry) -> Option<usize> {
    if e.be_forced_id {
        cfg.backends
            .iter()
            .position(|b| b.id.as_ref().is_some_and(|id| id.value == e.be_id))
    } else {
        cfg.backends.iter().position(|b| b.name == e.backend)
    }
}

fn find_server<'a>(state: &'a State, bi: usize, e: &Entry) -> Option<&'a Server> {
    let mut it = state.backends[bi]
        .servers
        .iter()
        .map(|&i| &state.servers[i as usize]);
    if e.srv_forced_id {
        it.find(|s| s.id == e.srv_id)
    } else {
        it.find(|s| s.name() == e.server)
    }
}

/// Sets one server to a saved state; the log line describing what it has now.
pub fn apply(s: &Server, e: &Entry) -> String {
    let config_maint = s.state.get() == SrvState::Maint;
    let maint = config_maint || e.admin & adm::FMAINT != 0;
    let drain = e.admin & adm::FDRAIN != 0;
    let up = e.op != OP_STOPPED;
    let mut notes = Vec::new();
    if let Some(p) = s.check() {
        let max = p.rise + p.fall - 1;
        let mut h = e.health.min(max);
        // Make the counter agree with the saved operational state, which
        // is what the file says the server was.
        if !maint {
            if up && h < p.rise {
                h = p.rise;
            } else if !up && h >= p.rise {
                h = 0;
            }
        }
        s.health.store(h, Ordering::Relaxed);
        let paused = e.check_state & CHK_ST_PAUSED != 0;
        s.admin.checks_disabled.store(paused, Ordering::Relaxed);
        notes.push(format!("health {h}/{max}"));
        if paused {
            notes.push("checks paused".into());
        }
    }
    let st = if maint {
        SrvState::Maint
    } else if up {
        SrvState::Up
    } else {
        SrvState::Down
    };
    s.state.set(st);
    s.touch();
    // `lastchg` goes on counting from where the previous process left it.
    // (Never 0: a zero `down_since_ns` means "not down".)
    let changed = crate::sys::monotonic_ns()
        .saturating_sub(e.since_s as u64 * 1_000_000_000)
        .max(1);
    s.admin.last_change_ns.store(changed, Ordering::Relaxed);
    if st == SrvState::Down {
        s.admin.down_since_ns.store(changed, Ordering::Relaxed);
    }
    s.admin.drain.store(drain && !maint, Ordering::Relaxed);
    s.admin
        .stopping
        .store(e.op == OP_STOPPING && st == SrvState::Up, Ordering::Relaxed);
    if e.iweight == s.admin.initial_weight {
        s.weight.store(e.uweight, Ordering::Relaxed);
    } else {
        notes.push(format!(
            "weight {} kept: the configured weight changed from {} to {}",
            s.admin.initial_weight, e.iweight, s.admin.initial_weight
        ));
    }
    if let Some(c) = e.counters {
        s.total_conns.store(c.total_conns, Ordering::Relaxed);
        s.user_bytes_in.store(c.user_bytes_in, Ordering::Relaxed);
        s.user_bytes_out.store(c.user_bytes_out, Ordering::Relaxed);
        s.checks_failed.store(c.checks_failed, Ordering::Relaxed);
        s.state_changes.store(c.state_changes, Ordering::Relaxed);
        notes.push("counters".into());
    }
    let state = match st {
        SrvState::Maint => "MAINT",
        SrvState::Up if s.admin.drain.load(Ordering::Relaxed) => "DRAIN",
        SrvState::Up if s.admin.stopping.load(Ordering::Relaxed) => "NOLB",
        SrvState::Up => "UP",
        _ => "DOWN",
    };
    format!(
        "server {}/{} restored from {}: {state}, weight {}{}{}",
        s.backend,
        s.name(),
        e.origin,
        s.weight.load(Ordering::Relaxed),
        if notes.is_empty() { "" } else { ", " },
        notes.join(", ")
    )
}

/// What a restore did: the log lines, restored servers first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub restored: Vec<String>,
    pub warnings: Vec<String>,
}

/// Applies the pinned maps' entries: every server they name that the config
/// still has (by backend and server name), whatever the backends' modes.
pub fn apply_pinned(cfg: &Config, state: &State, entries: &[Entry]) -> Report {
    let mut r = Report::default();
    for e in entries {
        match find_backend(cfg, e).and_then(|bi| find_server(state, bi, e)) {
            Some(s) => r.restored.push(apply(s, e)),
            None => r.warnings.push(format!(
                "{}: server {}/{} is not in the configuration any more; not restored",
                e.origin, e.backend, e.server
            )),
        }
    }
    r
}

/// Applies the state files the backends ask for (`load-server-state-from-file`);
/// `read` returns a file's text (the daemon reads the filesystem).
pub fn apply_files(
    cfg: &Config,
    state: &State,
    read: &dyn Fn(&Path) -> Result<String, StateError>,
) -> Report {
    let mut r = Report::default();
    // Backends by file, so each file is read once.
    let mut by_file: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    for (bi, b) in cfg.backends.iter().enumerate() {
        match (b.state_file(&cfg.global), &b.load_server_state) {
            (Some(f), _) => by_file.entry(f).or_default().push(bi),
            (None, Some(l)) if l.value == LoadServerState::Global => r.warnings.push(format!(
                "{}: backend '{}' loads the global server-state file, but 'global' sets no 'server-state-file'; nothing restored",
                l.origin, b.name
            )),
            _ => {}
        }
    }
    for (path, backends) in by_file {
        let text = match read(&path) {
            Ok(t) => t,
            Err(e) => {
                r.warnings.push(format!("{e}; nothing restored from it"));
                continue;
            }
        };
        let (entries, warnings) = parse(&path.display().to_string(), &text);
        r.warnings.extend(warnings);
        let global = cfg.global.global_state_file().as_ref() == Some(&path);
        for e in &entries {
            let Some(bi) = find_backend(cfg, e) else {
                r.warnings.push(format!(
                    "{}: backend '{}' (id {}) is not in the configuration; line ignored",
                    e.origin, e.backend, e.be_id
                ));
                continue;
            };
            if !backends.contains(&bi) {
                // The global file holds every backend; only a backend's own
                // file naming another one is worth a word.
                if !global {
                    r.warnings.push(format!(
                        "{}: backend '{}' does not load this file; line ignored",
                        e.origin, e.backend
                    ));
                }
                continue;
            }
            match find_server(state, bi, e) {
                Some(s) => r.restored.push(apply(s, e)),
                None => r.warnings.push(format!(
                    "{}: backend '{}' has no server '{}' (id {}); line ignored",
                    e.origin, cfg.backends[bi].name, e.server, e.srv_id
                )),
            }
        }
    }
    r
}

/// Reads a state file from disk.
pub fn read_file(path: &Path) -> Result<String, StateError> {
    std::fs::read_to_string(path).map_err(|source| StateError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `text` to `path` through a temporary file in the same directory and
/// a rename, so that a crash leaves the old file or the new one, never half.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(std::io::Error::other("not a file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";

    fn cfg() -> Config {
        pc(
            "global\n    server-state-file /s/global\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
             \x20   load-server-state-from-file global\n\
             backend b\n    server s1 10.0.0.1:80 weight 10\n    server s2 10.0.0.2:80 check\n\
             backend c\n    id 40\n    load-server-state-from-file local\n    server-state-file-name c.state\n    server x 10.0.0.3:80 id 7\n\
             backend d\n    load-server-state-from-file none\n    server y 10.0.0.4:80\n",
        )
    }

    fn pc(text: &str) -> Config {
        // A frontend at the end keeps the line numbers and makes it valid.
        let text = format!("{text}frontend zz\n    bind 127.0.0.1:1\n");
        crate::config::parse_str(&text, Path::new("t.cfg")).unwrap()
    }

    fn line(be: &str, srv: &str, op: u32, admin: u32, uw: u32, iw: u32, health: u32) -> String {
        format!("3 {be} 1 {srv} 10.9.9.9 {op} {admin} {uw} {iw} 5 6 3 {health} 6 0 0 0 - 80 - 0 0 - - 0\n")
    }

    #[test]
    fn reads_show_servers_state_lines() {
        let text = format!("{HEADER}{}", line("b", "s2", 2, 8, 7, 1, 3));
        let (e, w) = parse("f", &text);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(e.len(), 1);
        let e = &e[0];
        assert_eq!((e.backend.as_str(), e.server.as_str()), ("b", "s2"));
        assert_eq!(
            (e.op, e.admin, e.uweight, e.iweight, e.health),
            (2, 8, 7, 1, 3)
        );
        assert_eq!(e.origin, "f:3");
        assert!(!e.be_forced_id && !e.srv_forced_id);
    }

    #[test]
    fn version_line_is_required() {
        let (e, w) = parse("f", &line("b", "s1", 2, 0, 1, 1, 0));
        assert!(e.is_empty());
        assert!(
            w[0].starts_with("f:1: unsupported server-state file version"),
            "{w:?}"
        );
        let (e, w) = parse("f", "2\n");
        assert!(e.is_empty() && w[0].contains("'2'"), "{w:?}");
        let (e, w) = parse("f", "\n\n");
        assert!(e.is_empty() && w[0].contains("no version line"), "{w:?}");
    }

    #[test]
    fn malformed_lines_are_reported_and_skipped() {
        let text = format!(
            "{HEADER}3 b 1 s1 1.2.3.4 2 0\n{}3 b 1 s1 1.2.3.4 x 0 1 1 0 6 3 0 6 0\n3 b 1 s1 1.2.3.4 9 0 1 1 0 6 3 0 6 0\n3 b 1 s1 1.2.3.4 2 0 300 1 0 6 3 0 6 0\n",
            line("b", "s2", 0, 0, 1, 1, 0)
        );
        let (e, w) = parse("f", &text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].starts_with("f:3: 7 fields, at least 14"), "{w:?}");
        assert!(
            w[1].starts_with("f:5: srv_op_state 'x' is not a number"),
            "{w:?}"
        );
        assert!(
            w[2].starts_with("f:6: srv_op_state '9' is not 0..3"),
            "{w:?}"
        );
        assert!(
            w[3].starts_with("f:7: srv_uweight '300' is above 256"),
            "{w:?}"
        );
    }

    #[test]
    fn keywords_report_file_and_line() {
        let err = |text: &str| {
            crate::config::parse_str(text, Path::new("t.cfg"))
                .unwrap_err()
                .to_string()
        };
        let e = err("backend b\n    load-server-state-from-file sometimes\n");
        assert!(e.starts_with("t.cfg:2:"), "{e}");
        assert!(
            e.contains("expects 'global', 'local' or 'none'. Got 'sometimes'"),
            "{e}"
        );
        let e = err("backend b\n    load-server-state-from-file\n");
        assert!(
            e.starts_with("t.cfg:2:") && e.contains("expects one of"),
            "{e}"
        );
        let e = err("global\n    server-state-file\n");
        assert!(
            e.starts_with("t.cfg:2:") && e.contains("a file name"),
            "{e}"
        );
        let e = err("global\n    server-state-base /a /b\n");
        assert!(e.starts_with("t.cfg:2:"), "{e}");
        let e = err("defaults\n    server-state-file-name a b\n");
        assert!(e.starts_with("t.cfg:2:"), "{e}");
        // As HAProxy: a warning in a frontend.
        let c = pc("frontend f\n    bind :1\n    load-server-state-from-file global\n");
        assert!(
            c.warnings[0].starts_with("t.cfg:3: warning: 'load-server-state-from-file' ignored"),
            "{:?}",
            c.warnings
        );
        // Inherited from defaults, overridden per backend.
        let c = pc(
            "defaults\n    load-server-state-from-file local\n    server-state-file-name x\n\
                    backend b\n    server s 1.1.1.1:1\n\
                    backend c\n    load-server-state-from-file none\n    server s 1.1.1.1:1\n",
        );
        assert_eq!(
            c.backends[0].load_server_state.as_ref().map(|l| l.value),
            Some(LoadServerState::Local)
        );
        assert_eq!(
            c.backends[0].state_file(&c.global),
            Some(PathBuf::from("x"))
        );
        assert_eq!(c.backends[1].state_file(&c.global), None);
        assert_eq!(
            crate::kernel::pinned::admin_words(adm::FDRAIN | adm::CHECKS_PAUSED),
            "DRAIN CHECKS-PAUSED"
        );
    }

    #[test]
    fn backends_resolve_their_files() {
        let c = cfg();
        let g = &c.global;
        assert_eq!(
            c.backends[0].state_file(g),
            Some(PathBuf::from("/s/global"))
        );
        assert_eq!(c.backends[1].state_file(g), Some(PathBuf::from("c.state")));
        assert_eq!(c.backends[2].state_file(g), None);
        let c = pc(
            "global\n    server-state-base /base\n    server-state-file g\n\
             backend b\n    load-server-state-from-file local\n    server-state-file-name\n    server s 1.1.1.1:1\n\
             backend e\n    load-server-state-from-file local\n    server-state-file-name /abs/e\n    server s 1.1.1.1:1\n\
             backend f\n    load-server-state-from-file global\n    server s 1.1.1.1:1\n",
        );
        let g = &c.global;
        assert_eq!(c.backends[0].state_file(g), Some(PathBuf::from("/base/b")));
        assert_eq!(c.backends[1].state_file(g), Some(PathBuf::from("/abs/e")));
        assert_eq!(c.backends[2].state_file(g), Some(PathBuf::from("/base/g")));
    }

    #[test]
    fn applies_admin_op_weight_and_health() {
        let c = cfg();
        let st = State::from_config(&c);
        let global = format!(
            "{HEADER}{}{}{}{}{}",
            line("b", "s1", 2, 8, 7, 10, 0),
            line("b", "s2", 0, 1, 1, 1, 2),
            line("b", "gone", 2, 0, 1, 1, 0),
            line("nob", "s1", 2, 0, 1, 1, 0),
            // d loads nothing: its line in the global file is skipped quietly.
            line("d", "y", 0, 1, 1, 1, 0),
        );
        // c matches by forced backend id 40 and server id 7 despite the names.
        let local = format!(
            "{HEADER}40 other 7 other 1.1.1.1 2 8 0 1 0 6 3 0 6 0 1 1\n{}",
            line("b", "s1", 2, 0, 1, 1, 0)
        );
        let r = apply_files(&c, &st, &|p: &Path| match p.to_str() {
            Some("/s/global") => Ok(global.clone()),
            Some("c.state") => Ok(local.clone()),
            _ => unreachable!("{p:?}"),
        });
        let s = |n: usize| &st.servers[n];
        assert_eq!(r.restored.len(), 3, "{r:?}");
        assert_eq!(
            r.restored[0],
            "server b/s1 restored from /s/global:3: DRAIN, weight 7"
        );
        assert!(s(0).admin.drain.load(Ordering::Relaxed));
        assert_eq!(s(0).weight.load(Ordering::Relaxed), 7);
        assert_eq!(s(0).effective_weight(), 0);
        let age = crate::sys::monotonic_ns() - s(0).admin.last_change_ns.load(Ordering::Relaxed);
        assert!(
            age >= 5_000_000_000,
            "lastchg continues from the file: {age}"
        );
        // MAINT with health 2 of 2+3-1.
        assert_eq!(s(1).state.get(), SrvState::Maint);
        assert_eq!(s(1).health.load(Ordering::Relaxed), 2);
        assert!(
            r.restored[1].contains("MAINT, weight 1, health 2/4"),
            "{r:?}"
        );
        assert!(s(2).admin.drain.load(Ordering::Relaxed));
        assert_eq!(s(2).weight.load(Ordering::Relaxed), 0);
        assert_eq!(s(3).state.get(), SrvState::Up, "d untouched");
        assert_eq!(r.warnings.len(), 3, "{r:?}");
        assert!(
            r.warnings[0].starts_with("/s/global:5: backend 'b' has no server 'gone'"),
            "{r:?}"
        );
        assert!(
            r.warnings[1].starts_with("/s/global:6: backend 'nob' (id 3) is not in"),
            "{r:?}"
        );
        assert!(
            r.warnings[2].starts_with("c.state:4: backend 'b' does not load this file"),
            "{r:?}"
        );
    }

    #[test]
    fn down_and_changed_weight() {
        let c = cfg();
        let st = State::from_config(&c);
        let s2 = &st.servers[1];
        // DOWN with an inconsistent health counter: the op state wins.
        let r = apply(s2, &parse_line(&line("b", "s2", 0, 0, 1, 1, 4)).unwrap());
        assert_eq!(s2.state.get(), SrvState::Down);
        assert_eq!(s2.health.load(Ordering::Relaxed), 0);
        assert!(r.contains(": DOWN,"), "{r}");
        // The config's weight went from 5 to 10: the saved 3 is not applied.
        let s1 = &st.servers[0];
        let r = apply(s1, &parse_line(&line("b", "s1", 2, 0, 3, 5, 0)).unwrap());
        assert_eq!(s1.weight.load(Ordering::Relaxed), 10);
        assert!(r.contains("weight 10 kept"), "{r}");
    }

    #[test]
    fn nolb_paused_checks_and_a_moved_address() {
        let c = cfg();
        let st = State::from_config(&c);
        // s2 moved from 10.0.0.2 to 10.9.9.9 in the file: still matched by name.
        let e =
            parse_line(&line("b", "s2", 3, 0, 1, 1, 3).replace(" 6 0 0 0 - 80", " 14 0 0 0 - 80"))
                .unwrap();
        assert_eq!((e.addr.as_str(), e.check_state), ("10.9.9.9", 14));
        let r = apply_pinned(&c, &st, &[e]);
        let s = &st.servers[1];
        assert_eq!(
            s.addr().to_string(),
            "10.0.0.2:80",
            "the config's address stays"
        );
        assert!(s.admin.stopping.load(Ordering::Relaxed));
        assert!(s.admin.checks_disabled.load(Ordering::Relaxed));
        assert_eq!(s.effective_weight(), 0);
        assert_eq!(
            crate::kernel::pinned::admin_words(s.admin_flags()),
            "NOLB CHECKS-PAUSED"
        );
        assert!(
            r.restored[0].contains(": NOLB, weight 1, health 3/4, checks paused"),
            "{r:?}"
        );
    }

    #[test]
    fn unreadable_file_and_missing_global_file() {
        let c = pc(
            "backend b\n    load-server-state-from-file global\n    server s 1.1.1.1:1\n\
             backend e\n    load-server-state-from-file local\n    server s 1.1.1.1:1\n",
        );
        let st = State::from_config(&c);
        let r = apply_files(&c, &st, &|p: &Path| {
            Err(StateError::Read {
                path: p.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        });
        assert!(r.restored.is_empty());
        assert_eq!(r.warnings.len(), 2, "{r:?}");
        assert!(
            r.warnings[0].starts_with("t.cfg:2: backend 'b' loads the global"),
            "{r:?}"
        );
        assert!(
            r.warnings[1].starts_with("reading server-state file e:"),
            "{r:?}"
        );
    }

    #[test]
    fn map_entries_round_trip() {
        let c = cfg();
        let st = State::from_config(&c);
        let s = &st.servers[1];
        s.admin.drain.store(true, Ordering::Relaxed);
        s.admin.checks_disabled.store(true, Ordering::Relaxed);
        s.weight.store(0, Ordering::Relaxed);
        s.total_conns.store(42, Ordering::Relaxed);
        let e = entry_of_map(1, &s.meta(), &s.snapshot());
        assert_eq!((e.backend.as_str(), e.server.as_str()), ("b", "s2"));
        let fresh = State::from_config(&c);
        let r = apply_pinned(&c, &fresh, &[e]);
        let t = &fresh.servers[1];
        assert!(t.admin.drain.load(Ordering::Relaxed));
        assert!(t.admin.checks_disabled.load(Ordering::Relaxed));
        assert_eq!(t.weight.load(Ordering::Relaxed), 0);
        assert_eq!(t.total_conns.load(Ordering::Relaxed), 42);
        assert_eq!(t.snapshot().admin_flags, s.snapshot().admin_flags);
        assert_eq!(
            r.restored,
            ["server b/s2 restored from LB_SRV_STATE[1]: DRAIN, weight 0, health 2/4, checks paused, counters"]
        );
    }

    #[test]
    fn writes_atomically() {
        let dir = std::env::temp_dir().join(format!("lb-srvstate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state");
        write_atomic(&p, "1\nold\n").unwrap();
        write_atomic(&p, "1\nnew\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1\nnew\n");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
        let e = write_atomic(&dir.join("no/such/dir"), "x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
