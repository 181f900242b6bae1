//! The publisher of server state changes: every change reaches the pinned
//! maps (what `lb show`, `lb maps` and a restarted daemon read) and triggers
//! what HAProxy ties to it.
use std::sync::{Arc, Mutex};

use aya::maps::{Array, MapData};
use lb_common::{ServerCheck, ServerState};

use crate::datapath::splice::Splicer;
use crate::state::{Publish, State};

pub struct Publisher {
    pub(super) state: Arc<State>,
    pub(super) srv_state: Mutex<Array<MapData, ServerState>>,
    pub(super) srv_check: Mutex<Array<MapData, ServerCheck>>,
    pub(super) splicer: Option<Splicer>,
}

impl Publish for Publisher {
    fn state(&self, idx: u32) {
        let snap = self.state.servers[idx as usize].snapshot();
        let mut m = self.srv_state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = m.set(idx, snap, 0) {
            tracing::error!("writing LB_SRV_STATE[{idx}]: {e}");
        }
    }

    fn changed(&self, idx: u32) {
        self.state(idx);
        on_server_change(&self.state, self.splicer.as_ref(), idx);
    }

    fn check(&self, idx: u32, c: &ServerCheck) {
        let mut m = self.srv_check.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = m.set(idx, *c, 0) {
            tracing::error!("writing LB_SRV_CHECK[{idx}]: {e}");
        }
    }
}

/// What a server's state change triggers besides the maps: HAProxy's
/// `on-marked-down shutdown-sessions` and `on-marked-up shutdown-backup-sessions`.
fn on_server_change(state: &State, splicer: Option<&Splicer>, idx: u32) {
    let Some(s) = state.servers.get(idx as usize) else {
        return;
    };
    if !s.is_up() && s.conf.params.on_marked_down_shutdown {
        crate::datapath::shutdown_sessions(state, splicer, idx);
    }
    if s.is_up() && !s.backup() && s.conf.params.on_marked_up_shutdown_backup {
        if let Some(b) = state.backend_of(idx) {
            for &i in &b.servers {
                if state.servers[i as usize].backup() {
                    crate::datapath::shutdown_sessions(state, splicer, i);
                }
            }
        }
    }
}
