//! The typed configuration model: the one place everything else reads.
//!
//! The parser (`parse.rs`) produces it, after cross checks; the map-writing step
//! and the daemon take only this model.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Where a directive came from, for error messages naming `file:line`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Config {
    pub global: Global,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    /// Warnings HAProxy would print (missing timeouts, ...), already formatted
    /// with file:line.
    pub warnings: Vec<String>,
}

/// Default per-connection in-flight budget of the kernel path, per direction.
pub const DEFAULT_SPLICE_BUDGET: u64 = 4 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    pub maxconn: Option<u32>,
    /// `tune.lb.splice-budget SIZE`: bytes in flight per direction on the kernel path.
    pub splice_budget: u64,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            maxconn: None,
            splice_budget: DEFAULT_SPLICE_BUDGET,
        }
    }
}

/// One `bind` address: `addr` None is `*` (IPv4 any); `::` is `Some(IPv6 unspecified)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub addr: Option<IpAddr>,
    pub port_first: u16,
    pub port_last: u16,
    /// `v6only` given: `::` does not also take IPv4.
    pub v6only: bool,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Frontend {
    pub name: String,
    pub binds: Vec<Bind>,
    /// Name of the default backend, resolved by the cross checks.
    pub default_backend: Option<String>,
    /// Index into `Config::backends` of `default_backend`.
    pub default_backend_idx: Option<usize>,
    pub timeout_client: Option<Duration>,
    pub maxconn: Option<u32>,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub name: String,
    pub balance: Balance,
    pub servers: Vec<Server>,
    pub timeout_connect: Option<Duration>,
    pub timeout_server: Option<Duration>,
    pub origin: Origin,
}

/// Health-check parameters, with HAProxy's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckParams {
    pub inter: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for CheckParams {
    fn default() -> Self {
        Self {
            inter: Duration::from_millis(2000),
            rise: 2,
            fall: 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    /// `check` given.
    pub check: bool,
    pub check_params: CheckParams,
    /// 0..=256, default 1.
    pub weight: u32,
    /// `disabled`: starts in maintenance.
    pub disabled: bool,
    pub origin: Origin,
}
