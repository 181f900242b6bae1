//! The typed configuration model: the one place everything else reads.
//!
//! The parser (`parse.rs`) produces it, after cross checks; the map-writing step
//! and the daemon take only this model. Values have HAProxy 2.6's meaning and
//! defaults. Settings the daemon does not apply yet are listed by
//! [`super::runtime_gaps`].
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
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

/// A configured value and the line that set it (for a value inherited from a
/// `defaults` section, the line in that section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Config {
    pub global: Global,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    /// HTTP-mode proxies whose only job is HAProxy's stats page (or
    /// `monitor-uri`): served by lb itself, they carry no traffic.
    pub stats_pages: Vec<StatsPage>,
    /// Warnings HAProxy would print (missing timeouts, ...), already formatted
    /// with file:line.
    pub warnings: Vec<String>,
    /// `resolvers` sections.
    pub resolvers: Vec<Resolvers>,
}

/// Default per-connection in-flight budget of the kernel path, per direction.
pub const DEFAULT_SPLICE_BUDGET: u64 = 4 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    /// `maxconn`: process-wide limit of concurrent connections.
    pub maxconn: Option<u32>,
    /// `tune.lb.splice-budget SIZE`: bytes in flight per direction on the kernel path.
    pub splice_budget: u64,
    /// Where `maxconn` was set.
    pub maxconn_origin: Option<Origin>,
    /// `daemon` / `master-worker`: go to the background.
    pub daemon: Option<Origin>,
    /// `nbthread N`.
    pub nbthread: Option<Located<u32>>,
    /// `spread-checks P`: each check interval moves by up to ±P/2 % at random.
    pub spread_checks: Option<Located<u32>>,
    /// `maxconnrate N` and `maxsessrate N`: new connections (sessions) per
    /// second, process-wide.
    pub maxconnrate: Option<Located<u32>>,
    pub maxsessrate: Option<Located<u32>>,
    /// `ca-base DIR`: where a relative `ca-file` is looked for.
    pub ca_base: Option<PathBuf>,
    /// `ssl-server-verify none|required` (true: required, HAProxy's default).
    pub ssl_server_verify: Option<Located<bool>>,
    /// `user NAME` / `uid N`, resolved to a uid.
    pub user: Option<Located<Account>>,
    /// `group NAME` / `gid N`, resolved to a gid.
    pub group: Option<Located<Account>>,
    pub pidfile: Option<Located<PathBuf>>,
    pub chroot: Option<Located<PathBuf>>,
    /// `hard-stop-after T`: longest soft stop.
    pub hard_stop_after: Option<Located<Duration>>,
    /// `log ...` lines: the global log targets (`log global` in proxies).
    pub logs: Vec<Located<LogTarget>>,
    /// `stats socket ...`: the runtime API sockets.
    pub stats_sockets: Vec<Located<StatsSocket>>,
    /// `stats timeout T` (HAProxy's default 10s).
    pub stats_timeout: Option<Located<Duration>>,
    /// `stats maxconn N` (HAProxy's default 10).
    pub stats_maxconn: Option<Located<u32>>,
    /// Other accepted global settings, which only tune HAProxy's own process
    /// (`tune.*`, `ssl-default-*`, `spread-checks`, ...): the keyword.
    pub other: Vec<Located<String>>,
    /// `xdp-interface IFACE [native|skb|tc]` (lb's own): where the XDP front door
    /// is attached, in order.
    pub xdp_interfaces: Vec<Located<XdpInterface>>,
    /// `xdp-syn-rate N per-source [burst B]` (lb's own): SYNs per second each
    /// client address may send to the frontends.
    pub xdp_syn_rate: Option<Located<SynRate>>,
    /// `xdp-syn-cookies on|off` (lb's own): whether the XDP program answers
    /// SYNs with SYN cookies while a listener's SYN queue is full (unset: on).
    pub xdp_syn_cookies: Option<Located<bool>>,
    /// `server-state-file FILE`: the global server-state file, as written
    /// (resolve with [`Global::state_path`]).
    pub server_state_file: Option<Located<PathBuf>>,
    /// `server-state-base DIR`: where relative server-state file names live.
    pub server_state_base: Option<Located<PathBuf>>,
}

impl Global {
    /// A server-state file name as HAProxy resolves it: absolute as is,
    /// relative under `server-state-base` when set, else under the current
    /// directory.
    pub fn state_path(&self, name: &std::path::Path) -> PathBuf {
        match &self.server_state_base {
            Some(b) if name.is_relative() => b.value.join(name),
            _ => name.to_path_buf(),
        }
    }

    /// The resolved global `server-state-file`, if configured.
    pub fn global_state_file(&self) -> Option<PathBuf> {
        self.server_state_file
            .as_ref()
            .map(|f| self.state_path(&f.value))
    }
}

/// `load-server-state-from-file`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadServerState {
    /// The global `server-state-file`, lines of this backend.
    Global,
    /// This backend's own file (`server-state-file-name`).
    Local,
    None,
}

/// `server-state-file-name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateFileName {
    /// No argument or `use-backend-name`: the backend's name.
    BackendName,
    File(PathBuf),
}

/// How the XDP program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpAttach {
    /// tc on a veth; native (driver) mode where the driver has it; tc
    /// otherwise (with a warning).
    #[default]
    Auto,
    /// `native`: driver mode or fail.
    Native,
    /// `skb`: generic mode.
    Skb,
    /// `tc`: `lb_front` at tc (tcx) ingress, after GRO. What `Auto` picks
    /// on a veth, where native XDP takes GSO away from the peer.
    Tc,
}

/// One interface the XDP front door attaches to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpInterface {
    pub name: String,
    pub mode: XdpAttach,
}

/// `xdp-syn-rate`: a token bucket per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynRate {
    /// SYNs per second, 1..=1_000_000_000.
    pub per_second: u32,
    /// Bucket size (SYNs a quiet source may send at once); defaults to the rate.
    pub burst: u32,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            maxconn: None,
            splice_budget: DEFAULT_SPLICE_BUDGET,
            maxconn_origin: None,
            daemon: None,
            nbthread: None,
            spread_checks: None,
            ca_base: None,
            maxconnrate: None,
            maxsessrate: None,
            ssl_server_verify: None,
            user: None,
            group: None,
            pidfile: None,
            chroot: None,
            hard_stop_after: None,
            logs: Vec::new(),
            stats_sockets: Vec::new(),
            stats_timeout: None,
            stats_maxconn: None,
            other: Vec::new(),
            xdp_interfaces: Vec::new(),
            xdp_syn_rate: None,
            xdp_syn_cookies: None,
            server_state_file: None,
            server_state_base: None,
        }
    }
}

/// A user or group: the name when given by name, and its numeric id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: Option<String>,
    pub id: u32,
}

/// Where a `log` line sends messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogAddress {
    /// Syslog over UDP (default port 514).
    Udp(SocketAddr),
    /// A datagram UNIX socket (e.g. `/dev/log`).
    Unix(PathBuf),
    /// `fd@N`, `stdout` (fd 1), `stderr` (fd 2).
    Fd(i32),
    /// `ring@NAME`.
    Ring(String),
}

/// One `log <address> [len N] [format F] [sample R:S] <facility> [level [minlevel]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub address: LogAddress,
    /// Longest line, 80..=65535 (HAProxy's default 1024).
    pub len: Option<u32>,
    /// `local` (default), `rfc3164`, `rfc5424`, `priority`, `short`, `timed`,
    /// `iso`, `raw`.
    pub format: Option<String>,
    /// `sample <ranges>:<size>`, as written.
    pub sample: Option<String>,
    pub facility: String,
    pub level: Option<String>,
    pub minlevel: Option<String>,
}

/// A proxy's `log` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyLog {
    /// `log global`: the global targets.
    Global,
    Target(LogTarget),
}

/// Where a `stats socket` listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatsAddress {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// Privilege level of a stats socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StatsLevel {
    User,
    /// HAProxy's default.
    #[default]
    Operator,
    Admin,
}

/// `stats socket <address> [params]`: the runtime API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsSocket {
    pub address: StatsAddress,
    /// `mode` (octal permissions of a UNIX socket).
    pub mode: Option<u32>,
    /// `uid`/`user`.
    pub uid: Option<u32>,
    /// `gid`/`group`.
    pub gid: Option<u32>,
    pub level: StatsLevel,
    /// `expose-fd listeners`.
    pub expose_fd_listeners: bool,
    /// `severity-output none|number|string`.
    pub severity_output: Option<String>,
    /// Other bind parameters given (name, maxconn, ...), as written.
    pub other: Vec<String>,
}

/// One `bind` address: `addr` None is `*` (IPv4 any); `::` is `Some(IPv6 unspecified)`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Bind {
    pub addr: Option<IpAddr>,
    pub port_first: u16,
    pub port_last: u16,
    /// `v6only` given: `::` does not also take IPv4.
    pub v6only: bool,
    pub origin: Origin,
    /// The host name the address was resolved from, if any.
    pub fqdn: Option<String>,
    /// `v4v6` given (explicit dual stack; `v6only` wins over it).
    pub v4v6: bool,
    /// `interface NAME`: SO_BINDTODEVICE.
    pub interface: Option<String>,
    /// `backlog N` (0 or unset: the frontend's backlog).
    pub backlog: Option<u32>,
    /// `maxconn N`: concurrent connections per socket.
    pub maxconn: Option<u32>,
    /// `accept-proxy`: a PROXY protocol header (v1 or v2) is required.
    pub accept_proxy: bool,
    /// `name NAME` (stats only).
    pub name: Option<String>,
    /// `id N` (stats only).
    pub id: Option<u32>,
    /// Other socket settings given (`tfo`, `defer-accept`, `mss 1400`, ...), as
    /// written.
    pub other: Vec<String>,
}

/// `data-path` (lb's own keyword): how a frontend's connections move their
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DataPath {
    /// Copied first, then spliced in the kernel once long-lived (the default).
    #[default]
    Splice,
    /// Copied by userspace to the end (`--no-splice` for this frontend).
    Copy,
    /// Remote clients' packets rewritten by `lb_nat` (tc) toward the server,
    /// no socket on the balancer; clients the program does not see (this
    /// host) take the splice path.
    Nat,
}

/// `data-path ... connect [cgroup PATH]`: this host's own clients are
/// connected straight to a server at `connect()` (lb_connect4/6).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConnectPath {
    /// The cgroup v2 directory whose processes are balanced (absolute,
    /// under the cgroup2 mount); None: the root, every process.
    pub cgroup: Option<String>,
}

impl Frontend {
    /// The accept queue of this frontend's listeners: `backlog`, else the
    /// largest `bind ... backlog` (the binds of a frontend share its
    /// listeners, so one queue), else 4096; the kernel caps it at
    /// `net.core.somaxconn`.
    pub fn listen_backlog(&self) -> u32 {
        let binds = self
            .binds
            .iter()
            .filter_map(|b| b.backlog)
            .filter(|&n| n > 0)
            .max();
        self.backlog
            .as_ref()
            .map(|b| b.value)
            .filter(|&n| n > 0)
            .or(binds)
            .unwrap_or(4096)
    }

    /// The frontend's data path (`splice` unless `data-path` says).
    pub fn path(&self) -> DataPath {
        self.data_path
            .as_ref()
            .map_or(DataPath::Splice, |d| d.value)
    }
}

/// The TLS of a server's health checks (`check-ssl`, `verify`, `ca-file`,
/// `check-sni`, `verifyhost`, `no-verifyhost`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CheckTls {
    /// `check-ssl` (`no-check-ssl` clears it).
    pub enabled: bool,
    /// `verify required|none`; None: global `ssl-server-verify`.
    pub verify: Option<bool>,
    /// `ca-file FILE`, as written (relative to `ca-base`).
    pub ca_file: Option<PathBuf>,
    /// `check-sni NAME`: the name sent in the ClientHello.
    pub sni: Option<String>,
    /// `verifyhost NAME`: the name the certificate must hold (else the SNI;
    /// neither: the chain is verified, not the name).
    pub verifyhost: Option<String>,
    /// `no-verifyhost`.
    pub no_verifyhost: bool,
}

/// A `resolvers` section: the name servers asked at run time for the
/// addresses of the servers that name it, and HAProxy's timers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolvers {
    pub name: String,
    pub origin: Origin,
    /// `nameserver <name> <addr>[:port]` (UDP), `parse-resolv-conf`'s.
    pub nameservers: Vec<(String, SocketAddr)>,
    /// `resolve_retries` (3): queries sent before giving up.
    pub resolve_retries: u32,
    /// `timeout resolve` (1s): between two resolutions of a name.
    pub timeout_resolve: Duration,
    /// `timeout retry` (1s): before asking again when no valid answer came.
    pub timeout_retry: Duration,
    pub hold: Hold,
    /// `accepted_payload_size` (512): the EDNS0 size announced.
    pub payload_size: u16,
}

/// `hold <status> <period>`: how long a server keeps its address after a
/// failed resolution (since the last valid one); `obsolete`: how long an
/// address missing from the answers is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub nx: Duration,
    pub refused: Duration,
    pub timeout: Duration,
    pub other: Duration,
    pub valid: Duration,
    pub obsolete: Duration,
}

impl Resolvers {
    /// HAProxy's defaults.
    pub fn new(name: &str, origin: Origin) -> Self {
        let s30 = Duration::from_secs(30);
        Resolvers {
            name: name.to_string(),
            origin,
            nameservers: Vec::new(),
            resolve_retries: 3,
            timeout_resolve: Duration::from_secs(1),
            timeout_retry: Duration::from_secs(1),
            hold: Hold {
                nx: s30,
                refused: s30,
                timeout: s30,
                other: s30,
                valid: Duration::from_secs(10),
                obsolete: Duration::ZERO,
            },
            payload_size: 512,
        }
    }
}

/// TCP keepalive timing of one side (`clitcpka-*`, `srvtcpka-*`): seconds
/// of idleness before the first probe, seconds between probes, probes
/// unanswered before the connection is dropped. None: the kernel's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpKeepalive {
    pub idle_s: Option<u32>,
    pub intvl_s: Option<u32>,
    pub cnt: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Frontend {
    pub name: String,
    /// `data-path splice|copy` (from the frontend or its defaults).
    pub data_path: Option<Located<DataPath>>,
    /// `data-path ... connect`: connect-time balancing for local clients.
    pub connect: Option<Located<ConnectPath>>,
    pub binds: Vec<Bind>,
    /// Name of the default backend, resolved by the cross checks.
    pub default_backend: Option<String>,
    /// Index into `Config::backends` of `default_backend`.
    pub default_backend_idx: Option<usize>,
    pub timeout_client: Option<Duration>,
    pub maxconn: Option<u32>,
    pub origin: Origin,
    /// Where `maxconn` was set.
    pub maxconn_origin: Option<Origin>,
    /// `use_backend` rules, in order: the first whose condition holds picks the
    /// backend; `default_backend` otherwise.
    pub use_backends: Vec<UseBackend>,
    /// `tcp-request connection` rules, in order (a named defaults section's
    /// first).
    pub tcp_request_connection: Vec<TcpRequestRule>,
    /// `tcp-request inspect-delay`: how long the content rules may wait for
    /// the client's first bytes (None: they decide on what is there at once).
    pub inspect_delay: Option<Duration>,
    /// `tcp-request content accept|reject` rules, in order.
    pub tcp_request_content: Vec<TcpRequestRule>,
    /// Content rules, or `use_backend` conditions on the first bytes: the
    /// accept path peeks at them (worked out once, not per connection).
    pub inspects: bool,
    /// ACLs declared in this section.
    pub acls: Vec<Acl>,
    /// `backlog N`: listen backlog of the binds without their own.
    pub backlog: Option<Located<u32>>,
    /// `timeout client-fin T`.
    pub timeout_client_fin: Option<Located<Duration>>,
    /// `option clitcpka` (or `option tcpka`): SO_KEEPALIVE on client sockets.
    pub clitcpka: Option<Origin>,
    /// `clitcpka-idle`/`-intvl`/`-cnt`: the probes' timing (else the
    /// kernel's `net.ipv4.tcp_keepalive_*`).
    pub clitcpka_tune: TcpKeepalive,
    /// `log` lines (`no log` clears them).
    pub logs: Vec<Located<ProxyLog>>,
    /// `option tcplog`.
    pub tcplog: Option<Origin>,
    /// `option dontlognull`.
    pub dontlognull: Option<Origin>,
    /// `disabled`: the proxy is not started.
    pub disabled: Option<Origin>,
    /// `id N`.
    pub id: Option<Located<u32>>,
    pub description: Option<String>,
    /// Other accepted settings in effect, not modelled by a field: `option`s
    /// (`option nolinger`, ...) and keywords (`log-format`, `clitcpka-idle`,
    /// ...), as `"option nolinger"` / `"log-format"`.
    pub other: Vec<Located<String>>,
    /// `rate-limit sessions N`: new sessions per second on this frontend.
    pub rate_limit_sessions: Option<Located<u32>>,
}

/// `balance` algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// Smooth weighted round robin, dynamic weights (the default).
    #[default]
    RoundRobin,
    /// Weighted round robin, static weights.
    StaticRr,
    /// Fewest connections, round robin among equals.
    LeastConn,
    /// First server (by id) with a free connection slot.
    First,
    /// Hash of the client's source address over the running servers' weights.
    Source,
    /// Power of `draws` random choices (default 2) on the consistent hash ring.
    Random { draws: u32 },
}

/// `hash-type` method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashMethod {
    #[default]
    MapBased,
    Consistent,
}

/// `hash-type` function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashFunction {
    #[default]
    Sdbm,
    Djb2,
    Wt6,
    Crc32,
}

/// `hash-type <method> [<function>] [avalanche]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HashType {
    pub method: HashMethod,
    pub function: HashFunction,
    /// As documented: `consistent` without a function is sdbm with avalanche.
    pub avalanche: bool,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Backend {
    pub name: String,
    pub balance: Balance,
    pub servers: Vec<Server>,
    pub timeout_connect: Option<Duration>,
    pub timeout_server: Option<Duration>,
    /// `external-check command` (with `option external-check`).
    pub external_check_command: Option<String>,
    /// `external-check path`: the command's PATH.
    pub external_check_path: Option<String>,
    /// A `listen` section's first bind (its external checks are told it).
    pub first_listener: Option<SocketAddr>,
    /// `tcp-request inspect-delay` for this backend's content rules.
    pub inspect_delay: Option<Duration>,
    /// `tcp-request content` rules run once the backend is chosen (a
    /// `listen` section's run as frontend rules).
    pub tcp_request_content: Vec<TcpRequestRule>,
    pub origin: Origin,
    /// Where `balance` was set (None: the default round robin).
    pub balance_origin: Option<Origin>,
    pub hash_type: Option<Located<HashType>>,
    /// `retries N` (HAProxy's default 3 when unset).
    pub retries: Option<Located<u32>>,
    /// `option redispatch [interval]`: the interval (1: every retry, -1 (the
    /// default): the last one).
    pub redispatch: Option<Located<i32>>,
    /// `option allbackups`.
    pub allbackups: Option<Origin>,
    /// `option srvtcpka` (or `option tcpka`).
    pub srvtcpka: Option<Origin>,
    /// `srvtcpka-idle`/`-intvl`/`-cnt`.
    pub srvtcpka_tune: TcpKeepalive,
    pub timeout_queue: Option<Located<Duration>>,
    pub timeout_check: Option<Located<Duration>>,
    pub timeout_tunnel: Option<Located<Duration>>,
    pub timeout_server_fin: Option<Located<Duration>>,
    /// `fullconn N`.
    pub fullconn: Option<Located<u32>>,
    /// The application-level health check (None: TCP connect only).
    pub health_check: Option<Located<HealthCheck>>,
    /// `tcp-check` rules (with `option tcp-check`).
    pub tcp_check_rules: Vec<Located<TcpCheckRule>>,
    /// `http-check` rules (with `option httpchk`).
    pub http_check_rules: Vec<Located<HttpCheckRule>>,
    /// ACLs of a `backend` section (a `listen` section's are its frontend's).
    pub acls: Vec<Acl>,
    /// `log` lines.
    pub logs: Vec<Located<ProxyLog>>,
    /// `option log-health-checks`.
    pub log_health_checks: Option<Origin>,
    /// `disabled`: the proxy is not started.
    pub disabled: Option<Origin>,
    /// `id N`.
    pub id: Option<Located<u32>>,
    pub description: Option<String>,
    /// `load-server-state-from-file` (None: not set, HAProxy's `none`).
    pub load_server_state: Option<Located<LoadServerState>>,
    /// `server-state-file-name` (None: not set, the backend's name).
    pub server_state_file_name: Option<Located<StateFileName>>,
    /// Other accepted settings in effect, not modelled by a field (see
    /// [`Frontend::other`]).
    pub other: Vec<Located<String>>,
    /// `use-server` rules, in order.
    pub use_servers: Vec<UseServer>,
    /// `force-persist`/`ignore-persist` rules, in order.
    pub persist_rules: Vec<PersistRule>,
    /// A server takes the client's destination port (no port, or an
    /// offset): the accept path then needs the connection's local address.
    pub port_from_client: bool,
}

impl Backend {
    /// The server-state file this backend loads at start-up, if any: `None`
    /// for `none` (the default), and for `global` without a global
    /// `server-state-file`.
    pub fn state_file(&self, g: &Global) -> Option<PathBuf> {
        match self.load_server_state.as_ref()?.value {
            LoadServerState::None => None,
            LoadServerState::Global => g.global_state_file(),
            LoadServerState::Local => Some(match self.server_state_file_name.as_ref() {
                Some(Located {
                    value: StateFileName::File(f),
                    ..
                }) => g.state_path(f),
                _ => g.state_path(std::path::Path::new(&self.name)),
            }),
        }
    }
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

/// PROXY protocol version sent to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

/// How the server's port is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServerPort {
    /// The port in `addr`.
    #[default]
    Fixed,
    /// No port (or 0): the port the client connected to (`addr` has port 0).
    SameAsClient,
    /// `+N` / `-N`: the client's destination port plus N (`addr` has port 0).
    Offset(i32),
}

/// `init-addr` methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitAddr {
    /// The address in the server-state file.
    Last,
    /// The system resolver.
    Libc,
    /// Start without an address, in maintenance.
    None,
    Ip(IpAddr),
}

/// `on-error` mode of `observe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    FastInter,
    FailCheck,
    SuddenDeath,
    MarkDown,
}

/// `agent-check` settings.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AgentCheck {
    /// `agent-check` given.
    pub enabled: bool,
    pub port: Option<u16>,
    /// `agent-inter` (default: 2s).
    pub inter: Option<Duration>,
    /// `agent-send` string.
    pub send: Option<String>,
    /// `agent-addr`.
    pub addr: Option<IpAddr>,
}

impl AgentCheck {
    /// Any agent setting given.
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }
}

/// One `server` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub name: String,
    /// Address and port; port 0 unless `port_mode` is `Fixed`.
    pub addr: SocketAddr,
    pub origin: Origin,
    pub port_mode: ServerPort,
    /// The host name `addr` was resolved from (at start-up), if any.
    pub fqdn: Option<String>,
    /// The address is `0.0.0.0`/`::`: connect to the address the client
    /// connected to.
    pub addr_from_client: bool,
    /// No address could be found and `init-addr none` allowed it: the server
    /// starts in maintenance, `addr` is unspecified.
    pub unresolved: bool,
    /// Everything `default-server` could have preset.
    pub params: ServerParams,
}

impl Default for Server {
    /// A server with HAProxy's defaults at `0.0.0.0:0` (for building models
    /// in tests: `Server { name, addr, ..Default::default() }`).
    fn default() -> Self {
        Self {
            name: String::new(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            origin: Origin::default(),
            port_mode: ServerPort::Fixed,
            fqdn: None,
            addr_from_client: false,
            unresolved: false,
            params: ServerParams::default(),
        }
    }
}

/// What `default-server` presets and a `server` line sets: the parser fills
/// one from the section's defaults and the line's keywords, and the model
/// keeps it as is.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerParams {
    pub check: bool,
    pub check_params: CheckParams,
    pub weight: u32,
    pub disabled: bool,
    pub backup: bool,
    pub maxconn: Option<u32>,
    pub minconn: Option<u32>,
    pub maxqueue: Option<u32>,
    pub id: Option<u32>,
    pub slowstart: Option<Duration>,
    pub check_port: Option<u16>,
    pub check_addr: Option<IpAddr>,
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub send_proxy: Option<ProxyProtocol>,
    pub check_send_proxy: bool,
    /// `check-ssl` and what the TLS of the checks verifies.
    pub check_tls: CheckTls,
    pub on_marked_down_shutdown: bool,
    pub on_marked_up_shutdown_backup: bool,
    pub observe_layer4: bool,
    pub on_error: Option<OnError>,
    pub error_limit: Option<u32>,
    pub agent: AgentCheck,
    pub init_addr: Option<Vec<InitAddr>>,
    pub other: Vec<String>,
    /// `resolvers NAME`: the address follows that section's answers for
    /// the server's host name at run time.
    pub resolvers: Option<String>,
    /// `resolve-prefer ipv4|ipv6` (HAProxy's default: ipv6): true for ipv4.
    pub resolve_prefer_v4: bool,
}

impl Default for ServerParams {
    fn default() -> Self {
        Self {
            check: false,
            check_params: CheckParams::default(),
            weight: 1,
            disabled: false,
            backup: false,
            maxconn: None,
            minconn: None,
            maxqueue: None,
            id: None,
            slowstart: None,
            check_port: None,
            check_addr: None,
            fastinter: None,
            downinter: None,
            send_proxy: None,
            check_send_proxy: false,
            check_tls: CheckTls::default(),
            resolvers: None,
            resolve_prefer_v4: false,
            on_marked_down_shutdown: false,
            on_marked_up_shutdown_backup: false,
            observe_layer4: false,
            on_error: None,
            error_limit: None,
            agent: AgentCheck::default(),
            init_addr: None,
            other: Vec::new(),
        }
    }
}

/// The application-level health check of a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheck {
    /// `option tcp-check`: the `tcp-check` rules (connect only without rules).
    TcpCheck,
    /// `option httpchk [[<method>] <uri> [<version>]]`, refined by `http-check`
    /// rules.
    HttpChk {
        method: String,
        uri: String,
        version: String,
    },
    /// `option pgsql-check user <name>`.
    PgsqlCheck { user: String },
    /// `option pgsql-role-check user U [password P|password-file F|password-env V]
    /// [database D] role primary|standby|any [max-lag S]` (lb's own).
    PgsqlRoleCheck(PgRoleCheck),
    /// `option mysql-check [user <name> [post-41|pre-41]]`.
    MysqlCheck { user: Option<String>, post41: bool },
    /// `option redis-check`.
    RedisCheck,
    /// `option ssl-hello-chk`.
    SslHelloChk,
    /// `option smtpchk [<hello> <domain>]`.
    SmtpChk { hello: String, domain: String },
    /// `option ldap-check`.
    LdapCheck,
    /// `option spop-check`.
    SpopCheck,
    /// `option external-check`.
    ExternalCheck,
}

impl HealthCheck {
    /// The option's name, for messages.
    pub fn option_name(&self) -> &'static str {
        match self {
            Self::TcpCheck => "tcp-check",
            Self::HttpChk { .. } => "httpchk",
            Self::PgsqlCheck { .. } => "pgsql-check",
            Self::PgsqlRoleCheck(_) => "pgsql-role-check",
            Self::MysqlCheck { .. } => "mysql-check",
            Self::RedisCheck => "redis-check",
            Self::SslHelloChk => "ssl-hello-chk",
            Self::SmtpChk { .. } => "smtpchk",
            Self::LdapCheck => "ldap-check",
            Self::SpopCheck => "spop-check",
            Self::ExternalCheck => "external-check",
        }
    }
}

/// Where the password of `option pgsql-role-check` comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password P`, in the config.
    Literal(String),
    /// `password-file F`: the file's first line, read at start-up.
    File(std::path::PathBuf),
    /// `password-env V`: the environment variable, read at start-up.
    Env(String),
}

impl std::fmt::Debug for PasswordSource {
    /// Never shows a literal password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(_) => f.write_str("Literal(..)"),
            Self::File(p) => write!(f, "File({})", p.display()),
            Self::Env(v) => write!(f, "Env({v})"),
        }
    }
}

/// The role `option pgsql-role-check` wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgRole {
    Primary,
    Standby,
    Any,
}

/// `option pgsql-role-check` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgRoleCheck {
    pub user: String,
    pub password: Option<PasswordSource>,
    /// Default: the user name, as libpq.
    pub database: Option<String>,
    pub role: PgRole,
    pub max_lag: Option<Duration>,
}

/// `tcp-check connect` / `http-check connect` options.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CheckConnect {
    /// `default`: the server line's settings.
    pub default: bool,
    pub port: Option<u16>,
    pub addr: Option<IpAddr>,
    pub send_proxy: bool,
    pub linger: bool,
    /// `ssl`, `sni`, `alpn`, `via-socks4`, `proto` given, as written.
    pub other: Vec<String>,
}

/// How an `expect` rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectMatch {
    /// `string <s>`: the bytes are in the response.
    String(String),
    /// `rstring <regex>`.
    Rstring(String),
    /// `binary <hex>`, decoded.
    Binary(Vec<u8>),
    /// `rbinary <regex>` on the hex form of the response.
    Rbinary(String),
    /// `string-lf <fmt>` / `binary-lf <fmt>`: log-format, as written.
    StringLf(String),
    BinaryLf(String),
    /// HTTP: `status <codes>` (`200`, `200-399`, `200,301`...).
    Status(String),
    /// HTTP: `rstatus <regex>`.
    Rstatus(String),
    /// HTTP: `hdr`/`fhdr` matches, as written.
    Header(Vec<String>),
}

/// An `expect` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckExpect {
    /// `!` given.
    pub negate: bool,
    pub matcher: ExpectMatch,
    /// `min-recv N`.
    pub min_recv: Option<i32>,
    pub comment: Option<String>,
    /// `ok-status`, `error-status`, `tout-status`, `on-success`, `on-error`,
    /// `status-code` given, as written.
    pub other: Vec<String>,
}

/// One `tcp-check` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpCheckRule {
    Connect(CheckConnect),
    /// `send <data>` (unescaped by the lexer) / `send-binary <hex>` (decoded).
    Send(Vec<u8>),
    /// `send-lf <fmt>` / `send-binary-lf <hexfmt>`, as written.
    SendLf(String),
    SendBinaryLf(String),
    Expect(CheckExpect),
    Comment(String),
    /// `set-var(...)` / `set-var-fmt(...)` / `unset-var(...)`, as written.
    Var(String),
}

/// One `http-check` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpCheckRule {
    Connect(CheckConnect),
    Send {
        method: Option<String>,
        uri: Option<String>,
        version: Option<String>,
        headers: Vec<(String, String)>,
        body: Option<String>,
    },
    Expect(CheckExpect),
    Comment(String),
    DisableOn404,
    SendState,
    Var(String),
}

/// A sample an ACL tests: a connection's layer-4 facts, or (content
/// inspection) the bytes the client sent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// The client's address.
    Src,
    /// The address the client connected to.
    Dst,
    SrcPort,
    DstPort,
    /// `always_true` / `TRUE`.
    AlwaysTrue,
    /// `always_false` / `FALSE`.
    AlwaysFalse,
    /// `req.len`: bytes received so far.
    ReqLen,
    /// `req.payload(off,len)`: `len` 0 takes the rest of what was received.
    ReqPayload {
        off: u32,
        len: u32,
    },
    /// `req.payload_lv(off1,len1[,off2])`: a block whose big-endian length
    /// (`len1` bytes, 1 to 4) is at `off1`; it starts at `off2` (absolute,
    /// or relative to the end of the length with a sign) or right after it.
    ReqPayloadLv {
        off: u32,
        size: u8,
        start: LvStart,
    },
    /// `req.ssl_hello_type`: the handshake type of a TLS handshake record.
    ReqSslHelloType,
    /// `req.ssl_ver`: the TLS version the client announces, `major << 16 | minor`.
    ReqSslVer,
    /// `req.ssl_sni`: the server name of a TLS ClientHello.
    ReqSslSni,
    /// `wait_end` / `WAIT_END`: true once the inspection may wait no more
    /// (the delay expired, the client closed, the buffer is full).
    WaitEnd,
}

impl Fetch {
    /// Whether it reads the request's contents (`tcp-request content`
    /// inspection), not only the connection's addresses.
    pub fn needs_content(&self) -> bool {
        matches!(
            self,
            Fetch::ReqLen
                | Fetch::ReqPayload { .. }
                | Fetch::ReqPayloadLv { .. }
                | Fetch::ReqSslHelloType
                | Fetch::ReqSslVer
                | Fetch::ReqSslSni
                | Fetch::WaitEnd
        )
    }
}

/// Where the block of a `req.payload_lv` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LvStart {
    AfterLength,
    At(u32),
    /// Relative to the end of the length field.
    Shift(i32),
}

/// How an ACL compares its sample with its patterns (`-m`), or the fetch's
/// own method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Ip,
    Int,
    /// A fetch that is a boolean by itself (`always_true`).
    Bool,
    /// `found`: the sample exists, whatever it is.
    Found,
    Str,
    Beg,
    End,
    Sub,
    /// `dom`: a patterns' words delimited by '/', '?', '.' or ':' in the sample.
    Dom,
    /// `dir`: the same with '/' and '?' only.
    Dir,
    Reg,
    /// `len`: the sample's length against integer patterns.
    Len,
    /// `bin`: the sample's bytes against hexadecimal patterns.
    Bin,
}

/// A compiled regular expression pattern, compared by its source.
#[derive(Clone, Debug)]
pub struct AclRegex(pub regex::bytes::Regex);

impl PartialEq for AclRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for AclRegex {}

/// An IP network pattern: `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    /// 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix: u8,
}

/// An ACL pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    Net(IpNet),
    /// An inclusive integer range (`80`, `1024:65535`, `:1023`, `gt 1024`...).
    /// `lo > hi` never matches.
    Int {
        lo: i64,
        hi: i64,
    },
    /// Bytes for `str`, `beg`, `end`, `sub`, `dom`, `dir` (lower-cased
    /// with `-i`) and `bin` (decoded from hexadecimal).
    Bytes(Vec<u8>),
    Regex(AclRegex),
}

/// One `acl` line (or inline `{ }` ACL): a fetch and its patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclTest {
    pub fetch: Fetch,
    pub method: Match,
    /// `-i`: patterns and samples compared case-insensitively.
    pub icase: bool,
    /// Patterns, from the line and then from `-f` files in their order.
    pub patterns: Vec<Pattern>,
    /// `-f` files the patterns were read from.
    pub files: Vec<PathBuf>,
    pub origin: Origin,
}

/// A named ACL: every `acl <name>` line adds a test; it matches when any test
/// matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub name: String,
    pub tests: Vec<AclTest>,
}

/// One term of a condition: `[!]acl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondTerm {
    pub negate: bool,
    /// The ACL name (`TRUE`, `LOCALHOST`... for predefined ones), None for an
    /// inline `{ }` ACL.
    pub name: Option<String>,
    /// The tests: the term holds when any test matches. Shared by every term
    /// naming the same ACL.
    pub tests: Arc<Vec<AclTest>>,
}

/// `if|unless <terms> [or <terms>]...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `unless`: the rule applies when the expression is false.
    pub unless: bool,
    /// Alternatives (OR) of conjunctions (AND) of terms.
    pub any_of: Vec<Vec<CondTerm>>,
}

/// `use-server <name> if|unless <cond>` in a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseServer {
    pub server: String,
    /// Index into the backend's `servers`.
    pub server_pos: usize,
    pub cond: Condition,
    pub origin: Origin,
}

/// `force-persist|ignore-persist if|unless <cond>`: the first whose
/// condition holds decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRule {
    /// `force-persist` (else `ignore-persist`).
    pub force: bool,
    pub cond: Condition,
    pub origin: Origin,
}

/// `use_backend <name> [if|unless <cond>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseBackend {
    pub backend: String,
    /// Index into `Config::backends`.
    pub backend_idx: usize,
    pub cond: Option<Condition>,
    pub origin: Origin,
}

/// Action of a `tcp-request connection` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpRequestAction {
    Accept,
    Reject,
    /// `expect-proxy layer4`.
    ExpectProxy,
}

/// `tcp-request connection <action> [if|unless <cond>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRequestRule {
    pub action: TcpRequestAction,
    pub cond: Option<Condition>,
    pub origin: Origin,
}

/// `stats ...` settings of a proxy (HAProxy's `stats` keyword family).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StatsConf {
    /// `stats enable` (or any other `stats` line, which implies it).
    pub enabled: Option<Origin>,
    /// `stats uri PREFIX` (HAProxy's default `/haproxy?stats`).
    pub uri: Option<String>,
    /// `stats refresh T`: the page reloads itself.
    pub refresh: Option<Duration>,
    /// `stats realm R` (default `HAProxy Statistics`).
    pub realm: Option<String>,
    /// `stats auth USER:PASS`, in order.
    pub auth: Vec<(String, String)>,
    /// `stats admin if|unless COND`: who may change server states.
    pub admin: Option<Condition>,
    pub hide_version: bool,
    pub show_legends: bool,
    /// `stats show-node [NAME]`: Some("") for the host name.
    pub show_node: Option<String>,
    pub show_desc: Option<String>,
    /// `stats scope NAME`: only these proxies (all when empty).
    pub scope: Vec<String>,
}

/// An HTTP-mode `listen`/`frontend` that serves HAProxy's stats page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsPage {
    pub name: String,
    pub binds: Vec<Bind>,
    pub stats: StatsConf,
    /// `monitor-uri PATH`: answers 200 while lb runs.
    pub monitor_uri: Option<String>,
    pub origin: Origin,
}

impl StatsPage {
    /// The page's path prefix.
    pub fn uri(&self) -> &str {
        self.stats.uri.as_deref().unwrap_or("/haproxy?stats")
    }

    pub fn realm(&self) -> &str {
        self.stats.realm.as_deref().unwrap_or("HAProxy Statistics")
    }
}
