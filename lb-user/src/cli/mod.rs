//! The `lb` command line: `lb run` (the daemon), `lb check`, `lb show ...`,
//! `lb set ...`, `lb maps ...`, `lb xdp status`, `lb top`. Nouns read, verbs
//! write; tables by default, `--json` for scripts.
use std::path::PathBuf;

use crate::kernel::pinned;
use crate::{config, daemon};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

pub mod client;
mod show;
mod table;
pub mod top;

/// An eBPF-accelerated L4 (TCP) load balancer speaking HAProxy's config language.
#[derive(Parser)]
#[command(name = "lb", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the balancer in the foreground (Ctrl-C detaches and unloads everything).
    Run {
        /// Configuration file (HAProxy syntax).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Instance name: maps are pinned under /sys/fs/bpf/lb/INSTANCE.
        #[arg(long, default_value = "default", value_parser = parse_instance)]
        instance: String,
        /// Create this file once the balancer serves (for scripts and tests);
        /// as the configured `user`, when the configuration sets one.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Copy every connection in userspace instead of splicing it in the kernel.
        #[arg(long)]
        no_splice: bool,
        /// Bytes in flight per connection direction on the kernel path (default
        /// 4 MiB, or `tune.lb.splice-budget` from the config).
        #[arg(long, value_parser = parse_size)]
        splice_budget: Option<u64>,
        /// Do not attach the XDP front door to the interfaces the config names
        /// (`xdp-interface`, `bind ... interface`): no per-frontend wire counters,
        /// no SYN rate limit; `tcp-request connection` rules still apply, at accept.
        #[arg(long)]
        no_xdp: bool,
        /// Serve Prometheus metrics (HAProxy exporter names) at
        /// http://ADDR/metrics, e.g. 127.0.0.1:9101.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Validate a configuration like `haproxy -c`: exit 0 if valid, 1 otherwise.
    /// Prints HAProxy's warnings and what `lb run` does not apply yet.
    Check {
        /// Configuration file or directory (its `*.cfg` files, in name order),
        /// several as one configuration.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Read a running instance's state (nouns read): through its runtime API
    /// socket, or from its pinned maps for `stats`.
    Show {
        #[command(subcommand)]
        what: ShowWhat,
    },
    /// The XDP front door of a running instance.
    Xdp {
        #[command(subcommand)]
        what: XdpWhat,
    },
    /// Change a running instance (verbs write), through its runtime API socket.
    Set {
        #[command(subcommand)]
        what: SetWhat,
    },
    /// Close sessions of a running instance, through its runtime API socket.
    Shutdown {
        #[command(subcommand)]
        what: ShutdownWhat,
    },
    /// Remove state a stopped instance left in the kernel on purpose.
    Clear {
        #[command(subcommand)]
        what: ClearWhat,
    },
    /// Read the pinned BPF maps straight from bpffs: works while the daemon
    /// hangs, or after it was killed.
    Maps {
        #[command(subcommand)]
        what: MapsWhat,
    },
    /// A live view (refreshed every second) of frontends, backends and servers:
    /// sessions, connection and byte rates, states, check results. `q` quits.
    Top {
        #[command(flatten)]
        target: Target,
    },
    /// Print a shell completion script, e.g. `lb completions bash >
    /// /etc/bash_completion.d/lb`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `lb man > /usr/local/share/man/man1/lb.1`.
    Man,
}

/// Which running instance to talk to.
#[derive(clap::Args, Clone)]
struct Target {
    /// Instance name given to `lb run` (its socket is /run/lb/INSTANCE.sock).
    #[arg(long, default_value = "default", value_parser = parse_instance)]
    instance: String,
    /// A runtime API socket (`stats socket` path) instead of the instance's.
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl Target {
    fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| client::default_socket(&self.instance))
    }
}

#[derive(Subcommand)]
enum ClearWhat {
    /// Detach `lb_nat` and drop the NAT flow table an instance keeps pinned
    /// across restarts (its running NAT flows end). `lb run` keeps both when
    /// it stops, so that a restart or an upgrade loses no flow.
    Nat {
        /// Instance name given to `lb run`.
        #[arg(long, default_value = "default", value_parser = parse_instance)]
        instance: String,
    },
    /// Detach the connect-time programs (`data-path connect`) an instance
    /// keeps on its cgroup across restarts and drop its table of connected
    /// sockets: this host's clients connect to the frontend addresses as
    /// asked from then on. `lb run` keeps them when it stops, so that local
    /// clients reach the servers while it is down.
    Connect {
        /// Instance name given to `lb run`.
        #[arg(long, default_value = "default", value_parser = parse_instance)]
        instance: String,
    },
}

#[derive(Subcommand)]
enum XdpWhat {
    /// Interfaces (mode, program id), per-frontend counters summed over CPUs
    /// (packets, bytes, SYNs, ACL and SYN-rate drops) and the program's global
    /// counters.
    Status {
        /// Instance name given to `lb run`.
        #[arg(long, default_value = "default", value_parser = parse_instance)]
        instance: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ShowWhat {
    /// Process information (HAProxy's `show info`).
    Info {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Servers: status, weight, sessions, bytes, last check. Falls back to the
    /// pinned maps when the daemon does not answer.
    Servers {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Frontends: status, sessions, limit, bytes.
    Frontends {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Backends: status, algorithm, active/backup servers, sessions, queue.
    Backends {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Live sessions (client, frontend, server, age, data path).
    Sessions {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// HAProxy's `show stat` CSV (every column, in HAProxy 2.6's order).
    Stat {
        #[command(flatten)]
        target: Target,
        /// Print HAProxy's `show stat json` instead of CSV.
        #[arg(long)]
        json: bool,
    },
    /// Kernel-side event counters (sk_lookup hits, verdicts, budget hits), summed
    /// over CPUs, read from the pinned maps.
    Stats {
        /// Instance name given to `lb run`.
        #[arg(long, default_value = "default", value_parser = parse_instance)]
        instance: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SetWhat {
    /// Change a server: `lb set server BACKEND/SERVER state|weight|health|addr VALUE`.
    Server {
        /// BACKEND/SERVER.
        server: String,
        /// What to change.
        #[arg(value_enum)]
        setting: ServerSetting,
        /// state: ready|drain|maint; weight: N or N%; health: up|stopping|down; addr: IP or IP:PORT.
        value: String,
        #[command(flatten)]
        target: Target,
    },
}

/// What `lb set server` changes.
#[derive(clap::ValueEnum, Clone, Copy)]
enum ServerSetting {
    /// ready, drain (no new sessions, existing ones continue) or maint.
    State,
    /// 0-256, or a percentage of the configured weight (`50%`).
    Weight,
    /// Force the health: up, stopping (no new sessions) or down.
    Health,
    /// A new address: IP, or IP:PORT ([IPv6]:PORT) to change the port too.
    /// New connections and checks go there; sessions continue.
    Addr,
}

#[derive(Subcommand)]
enum ShutdownWhat {
    /// Reset every session of BACKEND/SERVER.
    Sessions {
        /// BACKEND/SERVER.
        server: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum MapsWhat {
    /// The pinned maps of an instance (type, sizes), straight from bpffs.
    List {
        /// Instance name given to `lb run`.
        #[arg(long, default_value = "default", value_parser = parse_instance)]
        instance: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every entry of one pinned map, decoded (per-CPU values summed).
    Dump {
        /// Map name, e.g. LB_SRV_STATE (see `lb maps list`).
        name: String,
        /// Instance name given to `lb run`.
        #[arg(long, default_value = "default", value_parser = parse_instance)]
        instance: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_instance(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !s.starts_with('.')
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid instance name '{s}': use 1-64 of [A-Za-z0-9._-], not starting with '.'"
        ))
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size '{s}': expected a number with an optional k, m or g"))?;
    let v = n
        .checked_mul(mul)
        .filter(|&v| (4096..=(1u64 << 31)).contains(&v))
        .ok_or_else(|| format!("size '{s}' out of range (4k to 2g)"))?;
    Ok(v)
}

pub fn main() {
    if let Err(e) = real_main() {
        eprintln!("lb: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.cmd {
        Cmd::Run {
            files,
            instance,
            ready_file,
            no_splice,
            splice_budget,
            no_xdp,
            metrics,
        } => daemon::run(daemon::RunOpts {
            files,
            instance,
            ready_file,
            no_splice,
            splice_budget,
            no_xdp,
            metrics,
        }),
        Cmd::Xdp {
            what: XdpWhat::Status { instance, json },
        } => {
            let s = pinned::xdp_status(&instance)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).context("json")?);
            } else {
                show::print_xdp_status(&s);
            }
            Ok(())
        }
        Cmd::Check { files } => {
            // The files (and directories) form one configuration, as
            // `haproxy -c -f A -f B`.
            match config::parse_files(&files) {
                Ok(cfg) => {
                    for w in &cfg.warnings {
                        eprintln!("[WARNING] {w}");
                    }
                    for (origin, what) in crate::health::runtime_gaps(&cfg) {
                        eprintln!("[WARNING] {origin}: parsed; not applied by lb run yet: {what}");
                    }
                    for (origin, what) in config::runtime_ignored(&cfg) {
                        eprintln!("[NOTICE] {origin}: accepted, no effect in lb: {what}");
                    }
                    println!("Configuration file is valid");
                    Ok(())
                }
                Err(e) => {
                    eprintln!("[ALERT] {e}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::Show { what } => show::show_cmd(what),
        Cmd::Clear {
            what: ClearWhat::Nat { instance },
        } => {
            let dir = crate::kernel::nat::nat_dir(&instance);
            if !dir.exists() {
                println!("instance '{instance}' has no NAT state ({})", dir.display());
                return Ok(());
            }
            crate::kernel::nat::remove(&dir)?;
            println!(
                "NAT state of instance '{instance}' removed ({})",
                dir.display()
            );
            Ok(())
        }
        Cmd::Clear {
            what: ClearWhat::Connect { instance },
        } => {
            let dir = crate::kernel::connect::connect_dir(&instance);
            if !dir.exists() {
                println!(
                    "instance '{instance}' has no connect state ({})",
                    dir.display()
                );
                return Ok(());
            }
            crate::kernel::connect::remove(&dir)?;
            println!(
                "connect state of instance '{instance}' removed ({}): the programs are detached",
                dir.display()
            );
            Ok(())
        }
        Cmd::Top { target } => top::run(&target.socket()),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "lb", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man => {
            let mut out = Vec::new();
            man_page(&mut out).context("rendering the man page")?;
            std::io::Write::write_all(&mut std::io::stdout(), &out).context("stdout")?;
            Ok(())
        }
        Cmd::Set {
            what:
                SetWhat::Server {
                    server,
                    setting,
                    value,
                    target,
                },
        } => {
            for arg in [&server, &value] {
                // One command per request: nothing that would split it.
                if arg.is_empty()
                    || arg.contains(|c: char| c.is_whitespace() || c == ';' || c == '\\')
                {
                    anyhow::bail!("invalid argument '{arg}': no blanks, ';' or '\\' allowed");
                }
            }
            let (what, value) = match setting {
                ServerSetting::State => ("state", value),
                ServerSetting::Weight => ("weight", value),
                ServerSetting::Health => ("health", value),
                ServerSetting::Addr => (
                    "addr",
                    match value.parse::<std::net::SocketAddr>() {
                        Ok(a) => format!("{} port {}", a.ip(), a.port()),
                        Err(_) => value,
                    },
                ),
            };
            // The daemon validates the value and answers HAProxy's error text.
            client::command(
                &target.socket(),
                &format!("set server {server} {what} {value}"),
            )
        }
        Cmd::Shutdown {
            what: ShutdownWhat::Sessions { server, target },
        } => {
            if server.contains(|c: char| c.is_whitespace() || c == ';' || c == '\\') {
                anyhow::bail!("invalid server '{server}': no blanks, ';' or '\\' allowed");
            }
            client::command(
                &target.socket(),
                &format!("shutdown sessions server {server}"),
            )
        }
        Cmd::Maps { what } => match what {
            MapsWhat::List { instance, json } => {
                let rows = pinned::maps_list(&instance)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows).context("json")?);
                } else {
                    let cells: Vec<[String; 6]> = rows
                        .iter()
                        .map(|r| {
                            [
                                r.name.clone(),
                                r.kind.clone(),
                                r.key_size.to_string(),
                                r.value_size.to_string(),
                                r.max_entries.to_string(),
                                r.id.to_string(),
                            ]
                        })
                        .collect();
                    table::print(
                        &["NAME", "TYPE", "KEY", "VALUE", "MAX_ENTRIES", "ID"],
                        &cells,
                    );
                }
                Ok(())
            }
            MapsWhat::Dump {
                name,
                instance,
                json,
            } => {
                let rows = pinned::maps_dump(&instance, &name)?;
                if json {
                    let v: Vec<serde_json::Value> = rows
                        .into_iter()
                        .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v).context("json")?);
                } else {
                    let cells: Vec<[String; 2]> = rows
                        .into_iter()
                        .map(|(k, v)| {
                            let fields = match v {
                                serde_json::Value::Object(m) => m
                                    .into_iter()
                                    .map(|(f, x)| {
                                        format!("{f}={}", x.to_string().trim_matches('"'))
                                    })
                                    .collect::<Vec<_>>()
                                    .join(" "),
                                other => other.to_string(),
                            };
                            [k, fields]
                        })
                        .collect();
                    table::print(&["KEY", "VALUE"], &cells);
                }
                Ok(())
            }
        },
    }
}

/// `lb(1)`: the top-level page followed by a section per subcommand, all from
/// the clap definitions.
fn man_page(out: &mut Vec<u8>) -> std::io::Result<()> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    fn walk(c: &clap::Command, prefix: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
        for sub in c.get_subcommands() {
            let name = format!("{prefix} {}", sub.get_name());
            let sub = sub.clone().name(name.clone());
            writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
            let m = clap_mangen::Man::new(sub.clone());
            m.render_synopsis_section(out)?;
            m.render_description_section(out)?;
            m.render_options_section(out)?;
            walk(&sub, &name, out)?;
        }
        Ok(())
    }
    use std::io::Write;
    walk(&cmd, "lb", out)?;
    man.render_version_section(out)
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v).context("json")?);
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("1").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999g").is_err());
    }

    #[test]
    fn instances() {
        assert!(parse_instance("default").is_ok());
        assert!(parse_instance("../x").is_err());
        assert!(parse_instance("").is_err());
    }

    #[test]
    fn completions_and_man_page_cover_every_command() {
        use clap::CommandFactory;
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "lb",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("maps") && bash.contains("--socket"));
        let mut man = Vec::new();
        man_page(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        for section in ["LB SHOW SERVERS", "LB SET SERVER", "LB MAPS DUMP", "LB RUN"] {
            assert!(man.contains(section), "{section} missing");
        }
        assert!(man.contains("metrics"));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
