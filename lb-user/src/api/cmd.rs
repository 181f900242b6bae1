//! The runtime API's command language, as HAProxy's stats socket reads it:
//! commands separated by `;` or newlines, words by blanks, `\` escapes the next
//! character. Parsing is pure (names are resolved when a command runs), so it
//! is unit-tested and fuzzed on its own (fuzz/fuzz_targets/runtime_cmd.rs).

/// Access levels, lowest first (`stats socket ... level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    User,
    Operator,
    Admin,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::User => "user",
            Level::Operator => "operator",
            Level::Admin => "admin",
        }
    }
}

/// Output variants of `show stat` / `show info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Typed,
    Json,
}

/// `set server B/S state ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminState {
    Ready,
    Drain,
    Maint,
}

/// `set server B/S health ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    Stopping,
    Down,
}

/// A weight change: absolute (0..=256) or a percentage of the initial weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weight {
    Absolute(u32),
    Percent(u32),
}

/// `backend/server`, unresolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRef {
    pub backend: String,
    pub server: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Prompt,
    Quit,
    /// `user` / `operator`: lower this connection's level.
    Lower(Level),
    ShowCliLevel,
    ShowInfo(Format),
    ShowStat(Format),
    ShowServersState(Option<String>),
    ShowBackend,
    ShowSess,
    /// lb's own: the XDP front door's wire counters.
    ShowXdp(Format),
    SetServerState(SrvRef, AdminState),
    SetServerWeight(SrvRef, Weight),
    /// `set server <b>/<s> addr <ip> [port <port>]`.
    SetServerAddr(SrvRef, std::net::IpAddr, Option<u16>),
    SetServerHealth(SrvRef, Health),
    GetWeight(SrvRef),
    EnableServer(SrvRef),
    DisableServer(SrvRef),
    EnableHealth(SrvRef),
    DisableHealth(SrvRef),
    ShutdownSessionsServer(SrvRef),
    ShutdownSession(u64),
    SetMaxconnServer(SrvRef, u32),
    SetMaxconnFrontend(String, u32),
    SetMaxconnGlobal(u32),
    ClearCounters {
        all: bool,
    },
}

impl Command {
    /// The level a command needs, as in HAProxy.
    pub fn level(&self) -> Level {
        use Command::*;
        match self {
            Help | Prompt | Quit | Lower(_) | ShowCliLevel | ShowInfo(_) | ShowStat(_)
            | ShowServersState(_) | ShowBackend | ShowXdp(_) | GetWeight(_) => Level::User,
            ShowSess | ClearCounters { all: false } => Level::Operator,
            _ => Level::Admin,
        }
    }
}

/// Lines of `help`, in HAProxy's layout: usage padded to 40 columns, description.
pub const HELP: &[(&str, &str)] = &[
    ("help [<command>]", "list matching or all commands"),
    ("prompt", "toggle interactive mode with prompt"),
    ("quit", "disconnect"),
    (
        "operator",
        "lower the level of the current CLI session to operator",
    ),
    ("user", "lower the level of the current CLI session to user"),
    (
        "show cli level",
        "display the level of the current CLI session",
    ),
    (
        "show info [typed|json]",
        "report information about the running process",
    ),
    (
        "show stat [typed|json]",
        "report counters for each proxy and server",
    ),
    (
        "show servers state [<backend>]",
        "dump volatile server information for all known backends or for a specific backend",
    ),
    (
        "show backend",
        "list backends in the current running config",
    ),
    ("show sess", "report the list of current sessions"),
    (
        "show xdp [json]",
        "lb: XDP front door interfaces and per-frontend wire counters",
    ),
    ("get weight <bk>/<srv>", "report a server's current weight"),
    (
        "set weight <bk>/<srv> <w>[%]",
        "change a server's weight (use 'set server' instead)",
    ),
    (
        "set server <bk>/<srv> state <st>",
        "set a server's administrative state: ready, drain or maint",
    ),
    (
        "set server <bk>/<srv> weight <w>[%]",
        "change a server's weight",
    ),
    (
        "set server <bk>/<srv> addr <ip> [port <p>]",
        "change a server's address (and port)",
    ),
    (
        "set server <bk>/<srv> health <h>",
        "force a server's health: up, stopping or down",
    ),
    (
        "enable server <bk>/<srv>",
        "enable a disabled server (use 'set server' instead)",
    ),
    (
        "disable server <bk>/<srv>",
        "disable a server for maintenance (use 'set server' instead)",
    ),
    ("enable health <bk>/<srv>", "enable health checks"),
    ("disable health <bk>/<srv>", "disable health checks"),
    ("shutdown session <id>", "kill a specific session"),
    (
        "shutdown sessions server <bk>/<srv>",
        "kill sessions on a server",
    ),
    (
        "set maxconn server <bk>/<srv> <n>",
        "change a server's maxconn setting",
    ),
    (
        "set maxconn frontend <fe> <n>",
        "change a frontend's maxconn setting",
    ),
    (
        "set maxconn global <n>",
        "change the per-process maxconn setting",
    ),
    (
        "clear counters [all]",
        "clear max statistics counters (or all counters)",
    ),
];

/// The most words one command may have (HAProxy's MAX_CLI_ARGS).
pub const MAX_WORDS: usize = 64;
/// The longest input line accepted (HAProxy's default tune.bufsize is 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Splits one input line into commands (`;`) and words (blanks), honouring
/// `\` escapes. Empty commands are dropped.
pub fn split(line: &str) -> Result<Vec<Vec<String>>, String> {
    if line.len() > MAX_LINE {
        return Err(format!("Command line too long (over {MAX_LINE} bytes)."));
    }
    let mut cmds = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    word.push(n);
                    in_word = true;
                }
            }
            ' ' | '\t' | '\r' | '\n' | ';' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                    if words.len() > MAX_WORDS {
                        return Err("Too many words on command line.".into());
                    }
                }
                if (c == ';' || c == '\n') && !words.is_empty() {
                    cmds.push(std::mem::take(&mut words));
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.len() > MAX_WORDS {
        return Err("Too many words on command line.".into());
    }
    if !words.is_empty() {
        cmds.push(words);
    }
    Ok(cmds)
}

fn srv(arg: Option<&String>) -> Result<SrvRef, String> {
    let a = arg.ok_or("Require 'backend/server'.")?;
    match a.split_once('/') {
        Some((b, s)) if !b.is_empty() && !s.is_empty() => Ok(SrvRef {
            backend: b.to_string(),
            server: s.to_string(),
        }),
        _ => Err("Require 'backend/server'.".into()),
    }
}

/// HAProxy's weight syntax: `N` (0..=256) or `N%` of the initial weight.
pub fn parse_weight(arg: Option<&String>) -> Result<Weight, String> {
    let a = arg.ok_or("Require <weight> or <weight%>.")?;
    let (num, pct) = match a.strip_suffix('%') {
        Some(n) => (n, true),
        None => (a.as_str(), false),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Empty weight string empty or preceded by garbage".into());
    }
    let n: u32 = num
        .parse()
        .map_err(|_| "Weight value too large.".to_string())?;
    if pct {
        Ok(Weight::Percent(n))
    } else if n > 256 {
        Err("Absolute weight can only be between 0 and 256 inclusive.".into())
    } else {
        Ok(Weight::Absolute(n))
    }
}

fn count(arg: Option<&String>, what: &str) -> Result<u32, String> {
    let a = arg.ok_or_else(|| format!("{what} expects an integer value."))?;
    if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} expects an integer value."));
    }
    a.parse()
        .map_err(|_| format!("{what}: value '{a}' is too large."))
}

fn format(arg: Option<&String>) -> Format {
    match arg.map(String::as_str) {
        Some("typed") => Format::Typed,
        Some("json") => Format::Json,
        _ => Format::Csv,
    }
}

/// Error text for a command that is not known: HAProxy's wording, with the
/// help lines that share a word with it.
pub fn unknown(words: &[String]) -> String {
    let mut out =
        String::from("Unknown command, but maybe one of the following ones is a better match:\n");
    let first = words.first().map(String::as_str).unwrap_or("");
    let mut any = false;
    for (usage, desc) in HELP {
        if !first.is_empty() && usage.split_whitespace().next() == Some(first) {
            out.push_str(&help_line(usage, desc));
            any = true;
        }
    }
    if !any {
        for (usage, desc) in &HELP[..3] {
            out.push_str(&help_line(usage, desc));
        }
    }
    out
}

pub fn help_line(usage: &str, desc: &str) -> String {
    format!("  {usage:<40}: {desc}\n")
}

/// Parses the words of one command.
pub fn parse(words: &[String]) -> Result<Command, String> {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let arg = |i: usize| words.get(i);
    use Command::*;
    Ok(match (w(0), w(1)) {
        ("help", _) => Help,
        ("prompt", _) => Prompt,
        ("quit", _) => Quit,
        ("user", "") => Lower(Level::User),
        ("operator", "") => Lower(Level::Operator),
        ("show", "cli") if w(2) == "level" => ShowCliLevel,
        ("show", "info") => ShowInfo(format(arg(2))),
        ("show", "stat") => ShowStat(format(arg(2))),
        ("show", "servers") if w(2) == "state" => ShowServersState(arg(3).cloned()),
        ("show", "backend") => ShowBackend,
        ("show", "sess") => ShowSess,
        ("show", "xdp") => ShowXdp(format(arg(2))),
        ("get", "weight") => GetWeight(srv(arg(2))?),
        ("set", "weight") => {
            let s = srv(arg(2))?;
            SetServerWeight(s, parse_weight(arg(3))?)
        }
        ("set", "server") => {
            let s = srv(arg(2))?;
            match w(3) {
                "state" => {
                    SetServerState(
                        s,
                        match w(4) {
                            "ready" => AdminState::Ready,
                            "drain" => AdminState::Drain,
                            "maint" => AdminState::Maint,
                            _ => return Err(
                                "'set server <srv> state' expects 'ready', 'drain' and 'maint'."
                                    .into(),
                            ),
                        },
                    )
                }
                "weight" => SetServerWeight(s, parse_weight(arg(4))?),
                "health" => {
                    SetServerHealth(
                        s,
                        match w(4) {
                            "up" => Health::Up,
                            "stopping" => Health::Stopping,
                            "down" => Health::Down,
                            _ => return Err(
                                "'set server <srv> health' expects 'up', 'stopping', or 'down'."
                                    .into(),
                            ),
                        },
                    )
                }
                "addr" => {
                    let ip = w(4)
                        .parse()
                        .map_err(|_| format!("Invalid addr '{}'.", w(4)))?;
                    let port = match w(5) {
                        "" => None,
                        "port" => Some(
                            w(6).parse()
                                .ok()
                                .filter(|&p: &u16| p > 0)
                                .ok_or_else(|| format!("Invalid port '{}'.", w(6)))?,
                        ),
                        other => {
                            return Err(format!("'set server addr' expects 'port', not '{other}'."))
                        }
                    };
                    SetServerAddr(s, ip, port)
                }
                "agent" | "agent-addr" | "agent-port" | "agent-send" | "check-addr"
                | "check-port" | "fqdn" | "ssl" => {
                    return Err(format!(
                        "'set server <srv> {}' is not supported by lb.",
                        w(3)
                    ))
                }
                _ => {
                    return Err(
                        "usage: set server <backend>/<server> health | state | weight".into(),
                    )
                }
            }
        }
        ("enable", "server") => EnableServer(srv(arg(2))?),
        ("disable", "server") => DisableServer(srv(arg(2))?),
        ("enable", "health") => EnableHealth(srv(arg(2))?),
        ("disable", "health") => DisableHealth(srv(arg(2))?),
        ("shutdown", "sessions") if w(2) == "server" => ShutdownSessionsServer(srv(arg(3))?),
        ("shutdown", "session") => {
            let id = w(2);
            let parsed = match id.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => id.parse().ok(),
            };
            match parsed {
                Some(n) => ShutdownSession(n),
                None if id.is_empty() => {
                    return Err("Session pointer expected (use 'show sess').".into())
                }
                None => return Err("No such session (use 'show sess').".into()),
            }
        }
        ("set", "maxconn") => match w(2) {
            "server" => {
                let s = srv(arg(3))?;
                SetMaxconnServer(s, count(arg(4), "'set maxconn server'")?)
            }
            "frontend" => {
                let fe = arg(3).ok_or("A frontend name is expected.")?;
                SetMaxconnFrontend(fe.clone(), count(arg(4), "'set maxconn frontend'")?)
            }
            "global" => SetMaxconnGlobal(count(arg(3), "'set maxconn global'")?),
            _ => {
                return Err(
                    "'set maxconn' only supports 'frontend', 'server', and 'global'.".into(),
                )
            }
        },
        ("clear", "counters") => match w(2) {
            "" => ClearCounters { all: false },
            "all" => ClearCounters { all: true },
            _ => return Err(unknown(words)),
        },
        _ => return Err(unknown(words)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Vec<Result<Command, String>> {
        split(line).unwrap().iter().map(|w| parse(w)).collect()
    }

    fn one(line: &str) -> Result<Command, String> {
        let mut v = p(line);
        assert_eq!(v.len(), 1, "{line}");
        v.remove(0)
    }

    fn sr(b: &str, s: &str) -> SrvRef {
        SrvRef {
            backend: b.into(),
            server: s.into(),
        }
    }

    #[test]
    fn splits_on_semicolons_newlines_and_escapes() {
        assert_eq!(
            split("show info; show stat\nhelp").unwrap(),
            vec![vec!["show", "info"], vec!["show", "stat"], vec!["help"]]
        );
        assert_eq!(
            split("set server a\\;b/c state ready").unwrap()[0][2],
            "a;b/c"
        );
        assert_eq!(split(" ;; \t ").unwrap(), Vec::<Vec<String>>::new());
        let many = vec!["x"; MAX_WORDS + 1].join(" ");
        assert!(split(&many).is_err());
        // Found by the fuzzer: the limit holds when a `;` ends the command.
        assert!(split(&format!("{many};")).is_err());
        assert_eq!(
            split(&vec!["x"; MAX_WORDS].join(" ")).unwrap()[0].len(),
            MAX_WORDS
        );
        assert!(split(&"a".repeat(MAX_LINE + 1)).is_err());
    }

    #[test]
    fn reads_every_command() {
        use Command::*;
        assert_eq!(one("show stat"), Ok(ShowStat(Format::Csv)));
        assert_eq!(one("show stat typed"), Ok(ShowStat(Format::Typed)));
        assert_eq!(one("show stat json"), Ok(ShowStat(Format::Json)));
        assert_eq!(one("show info"), Ok(ShowInfo(Format::Csv)));
        assert_eq!(one("show servers state"), Ok(ShowServersState(None)));
        assert_eq!(
            one("show servers state be"),
            Ok(ShowServersState(Some("be".into())))
        );
        assert_eq!(one("show backend"), Ok(ShowBackend));
        assert_eq!(one("show xdp"), Ok(ShowXdp(Format::Csv)));
        assert_eq!(one("show xdp json"), Ok(ShowXdp(Format::Json)));
        assert_eq!(one("show sess"), Ok(ShowSess));
        assert_eq!(
            one("set server be/s1 state drain"),
            Ok(SetServerState(sr("be", "s1"), AdminState::Drain))
        );
        assert_eq!(
            one("set server be/s1 weight 50%"),
            Ok(SetServerWeight(sr("be", "s1"), Weight::Percent(50)))
        );
        assert_eq!(
            one("set weight be/s1 7"),
            Ok(SetServerWeight(sr("be", "s1"), Weight::Absolute(7)))
        );
        assert_eq!(one("get weight be/s1"), Ok(GetWeight(sr("be", "s1"))));
        assert_eq!(
            one("set server be/s1 health stopping"),
            Ok(SetServerHealth(sr("be", "s1"), Health::Stopping))
        );
        assert_eq!(
            one("disable server be/s1"),
            Ok(DisableServer(sr("be", "s1")))
        );
        assert_eq!(one("enable health be/s1"), Ok(EnableHealth(sr("be", "s1"))));
        assert_eq!(
            one("shutdown sessions server be/s1"),
            Ok(ShutdownSessionsServer(sr("be", "s1")))
        );
        assert_eq!(one("shutdown session 0x1f"), Ok(ShutdownSession(31)));
        assert_eq!(one("shutdown session 12"), Ok(ShutdownSession(12)));
        assert_eq!(
            one("set maxconn server be/s1 10"),
            Ok(SetMaxconnServer(sr("be", "s1"), 10))
        );
        assert_eq!(
            one("set maxconn frontend fe 100"),
            Ok(SetMaxconnFrontend("fe".into(), 100))
        );
        assert_eq!(one("set maxconn global 5"), Ok(SetMaxconnGlobal(5)));
        assert_eq!(one("clear counters"), Ok(ClearCounters { all: false }));
        assert_eq!(one("clear counters all"), Ok(ClearCounters { all: true }));
        assert_eq!(one("user"), Ok(Lower(Level::User)));
    }

    #[test]
    fn errors_use_haproxy_wording() {
        assert_eq!(
            one("get weight be").unwrap_err(),
            "Require 'backend/server'."
        );
        assert_eq!(
            one("set server be/s1 state foo").unwrap_err(),
            "'set server <srv> state' expects 'ready', 'drain' and 'maint'."
        );
        assert_eq!(
            one("set server be/s1 weight 300").unwrap_err(),
            "Absolute weight can only be between 0 and 256 inclusive."
        );
        assert_eq!(
            one("set server be/s1 weight abc").unwrap_err(),
            "Empty weight string empty or preceded by garbage"
        );
        assert_eq!(
            one("set weight be/s1").unwrap_err(),
            "Require <weight> or <weight%>."
        );
        assert!(one("foo").unwrap_err().starts_with("Unknown command"));
        assert!(one("set maxconn server be/s1 -1").is_err());
        assert!(one("set maxconn server be/s1 99999999999").is_err());
        assert!(one("shutdown session zz").is_err());
    }

    #[test]
    fn levels_follow_haproxy() {
        assert_eq!(one("show stat").unwrap().level(), Level::User);
        assert_eq!(one("get weight a/b").unwrap().level(), Level::User);
        assert_eq!(one("show sess").unwrap().level(), Level::Operator);
        assert_eq!(one("clear counters").unwrap().level(), Level::Operator);
        assert_eq!(one("clear counters all").unwrap().level(), Level::Admin);
        assert_eq!(one("set weight a/b 1").unwrap().level(), Level::Admin);
        assert_eq!(one("shutdown session 1").unwrap().level(), Level::Admin);
    }

    #[test]
    fn never_panics_on_odd_input() {
        for line in [
            "\\",
            "set",
            "set server",
            "set server /",
            "set server a/",
            "shutdown session 0x",
            "set maxconn",
            "set maxconn frontend",
            "\u{0}\u{ffff}",
            "show servers",
            "é;é;é",
        ] {
            for c in split(line).unwrap_or_default() {
                let _ = parse(&c);
            }
        }
    }
}
