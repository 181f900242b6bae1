//! The `lb` command line: `lb run` (the daemon), `lb check`, `lb show ...`.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lb_user::{config, daemon, show};

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
        /// Create this file once the balancer serves (for scripts and tests).
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
    },
    /// Validate a configuration like `haproxy -c`: exit 0 if valid, 1 otherwise.
    /// Prints HAProxy's warnings and what `lb run` does not apply yet.
    Check {
        /// Configuration file or directory (its `*.cfg` files, in name order),
        /// several as one configuration.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Read the state of a running instance from its pinned maps.
    Show {
        #[command(subcommand)]
        what: ShowWhat,
    },
    /// The XDP front door of a running instance.
    Xdp {
        #[command(subcommand)]
        what: XdpWhat,
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
    /// Servers: state, weight, connections, bytes, last check.
    Servers {
        /// Instance name given to `lb run`.
        #[arg(long, default_value = "default", value_parser = parse_instance)]
        instance: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Kernel-side event counters (sk_lookup hits, verdicts, budget hits), summed
    /// over CPUs.
    Stats {
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

fn main() {
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
        } => daemon::run(daemon::RunOpts {
            files,
            instance,
            ready_file,
            no_splice,
            splice_budget,
            no_xdp,
        }),
        Cmd::Xdp {
            what: XdpWhat::Status { instance, json },
        } => {
            let s = show::xdp_status(&instance)?;
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
                    for (origin, what) in lb_user::check::runtime_gaps(&cfg) {
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
        Cmd::Show { what } => match what {
            ShowWhat::Servers { instance, json } => {
                let rows = show::servers(&instance)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows).context("json")?);
                } else {
                    show::print_servers(&rows);
                }
                Ok(())
            }
            ShowWhat::Stats { instance, json } => {
                let rows = show::stats(&instance)?;
                if json {
                    let m: serde_json::Map<String, serde_json::Value> = rows
                        .iter()
                        .map(|(k, v)| (k.to_string(), (*v).into()))
                        .collect();
                    println!("{}", serde_json::Value::Object(m));
                } else {
                    let cells: Vec<[String; 2]> = rows
                        .iter()
                        .map(|(k, v)| [k.to_string(), v.to_string()])
                        .collect();
                    show::print_table(&["COUNTER", "VALUE"], &cells);
                }
                Ok(())
            }
        },
    }
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
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
