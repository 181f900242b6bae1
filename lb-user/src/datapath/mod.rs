//! The data paths a connection can take once a frontend accepted it: the
//! in-kernel splice (SOCKHASH + verdict), the userspace copy, and what both
//! share (PROXY protocol, connection limits, the tcplog line at the end).
pub mod accept;
pub mod connect;
pub mod copy;
pub mod kpick;
pub mod limits;
pub mod local;
pub mod nat;
pub mod proxy_proto;
pub mod splice;
pub mod tcplog;

use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::state::State;
use limits::Limit;
use splice::Splicer;

/// Everything the daemon serves with, shared by the accept path and the API.
pub struct Live {
    pub cfg: Config,
    /// Per frontend: its `tcp-request connection` rules, compiled; applied at
    /// accept to connections the XDP program did not see. Replaced whole by a
    /// reload (SIGHUP).
    pub acls: std::sync::RwLock<Vec<Option<crate::config::l4acl::Table>>>,
    pub state: Arc<State>,
    pub splicer: Option<Splicer>,
    /// `maxconn` in global and per frontend: accept pauses while used up.
    pub global_limit: Limit,
    pub frontend_limits: Vec<Limit>,
    /// `maxconnrate`/`maxsessrate` (the lower), and each frontend's
    /// `rate-limit sessions`: accept waits while over.
    pub global_rate: Option<limits::Rate>,
    pub frontend_rates: Vec<Option<limits::Rate>>,
    /// Where server state changes go (the maps, and what they trigger).
    pub publisher: Arc<dyn crate::state::Publish>,
    pub kernel: Option<Mutex<crate::kernel::Counters>>,
    pub instance: String,
    pub splice_on: bool,
    pub start_unix: u64,
    pub start_ns: u64,
    /// `option tcplog` per frontend (where to write the lines), if set.
    pub tcplog: Vec<Option<Arc<tcplog::Sink>>>,
}

/// When a copied pair moves to the kernel path: after 64 KiB one way or
/// 100 ms, whichever first. Measured (`cargo xtask bench`): short
/// connections end well before either.
pub const PROMOTE: copy::Promote = copy::Promote {
    bytes: 64 << 10,
    after: std::time::Duration::from_millis(100),
};

/// How long the bytes a failed socket (an RST) received before may take to
/// reach the other side before both are reset, when the session has no
/// inactivity timeout (with one, that timeout is the bound). Both paths.
pub const DELIVER_BEFORE_RESET: std::time::Duration = std::time::Duration::from_secs(10);

/// Resets every session of server `idx`, on both data paths (HAProxy's
/// `shutdown sessions server`, used by `on-marked-down shutdown-sessions`).
pub fn shutdown_sessions(state: &State, splicer: Option<&Splicer>, idx: u32) {
    for s in state.sessions.list() {
        if s.server_idx() == Some(idx) {
            s.end(crate::state::admin::END_KILLED);
        }
    }
    if let Some(sp) = splicer {
        sp.shutdown_server(idx);
    }
    state.kill_kernel_sessions(idx);
}

#[cfg(test)]
impl Live {
    /// A context over `cfg` with no kernel, splicer or limits, for tests of
    /// what reads it (metrics, stats page).
    pub fn for_tests(cfg: crate::config::Config) -> Self {
        let state = Arc::new(crate::state::State::from_config(&cfg));
        Live {
            acls: Default::default(),
            global_limit: limits::Limit::new(None),
            global_rate: None,
            frontend_rates: cfg.frontends.iter().map(|_| None).collect(),
            frontend_limits: cfg
                .frontends
                .iter()
                .map(|_| limits::Limit::new(None))
                .collect(),
            cfg,
            state,
            splicer: None,
            publisher: Arc::new(crate::state::NoPublish),
            kernel: None,
            instance: "t".into(),
            splice_on: true,
            start_unix: 1,
            start_ns: 0,
            tcplog: vec![None],
        }
    }
}
