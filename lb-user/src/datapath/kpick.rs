//! The kernel's pick tables, kept in step with the servers' state: what the
//! paths that balance without a proxy (`data-path nat`, `data-path connect`)
//! read on a new connection. Each path has its own maps (`TableSink`); what
//! to write is decided here, once.
use anyhow::Result;
use lb_common::{NatBackend, NatServer};

use super::nat::table::{self, Slot};
use crate::state::balance::Member;
use crate::state::State;

/// Where a path's tables go.
pub trait TableSink {
    fn set_server(&mut self, idx: u32, s: &NatServer) -> Result<()>;
    fn set_backend(&mut self, nb: u32, be: &NatBackend, table: &[u32]) -> Result<()>;
}

/// What a path last wrote, to write only what changed.
pub struct Tables {
    /// Config backend index of each of the path's backends (its index in
    /// the path's backend map).
    pub backends: Vec<usize>,
    /// Per server index: its entry as last written (None: not on this path).
    pub servers: Vec<Option<NatServer>>,
    written: Vec<Option<(NatBackend, Vec<u32>)>>,
}

impl Tables {
    pub fn new(backends: Vec<usize>, servers: Vec<Option<NatServer>>) -> Self {
        Self {
            written: vec![None; backends.len()],
            backends,
            servers,
        }
    }

    /// Writes what changed of the servers (usable, maxconn) and the tables
    /// since the last call. `usable`: whether this path may send a new
    /// connection to the server, given its member view (weight 0: DOWN,
    /// drained, in maintenance).
    pub fn refresh(
        &mut self,
        state: &State,
        sink: &mut dyn TableSink,
        usable: &dyn Fn(&NatServer, &Member) -> bool,
    ) -> Result<()> {
        for (nb, &bi) in self.backends.iter().enumerate() {
            let b = &state.backends[bi];
            let (members, _) = state.members_of(bi);
            let names: Vec<String> = b
                .servers
                .iter()
                .map(|&i| state.servers[i as usize].name().to_string())
                .collect();
            let slots: Vec<Slot<'_>> = b
                .servers
                .iter()
                .zip(&members)
                .zip(&names)
                .map(|((&idx, m), n)| Slot {
                    idx,
                    member: *m,
                    name: n,
                })
                .collect();
            for s in &slots {
                let Some(mut ns) = self.servers[s.idx as usize] else {
                    continue;
                };
                ns.usable = usable(&ns, &s.member) as u32;
                ns.maxconn = s.member.maxconn;
                if self.servers[s.idx as usize] != Some(ns) {
                    sink.set_server(s.idx, &ns)?;
                    self.servers[s.idx as usize] = Some(ns);
                }
            }
            let usable: Vec<Slot<'_>> = slots
                .into_iter()
                .map(|mut s| {
                    if self.servers[s.idx as usize].is_none_or(|n| n.usable == 0) {
                        s.member.weight = 0;
                    }
                    s
                })
                .collect();
            let built = table::build(b.algo, &usable);
            if self.written[nb].as_ref() != Some(&built) {
                sink.set_backend(nb as u32, &built.0, &built.1)?;
                self.written[nb] = Some(built);
            }
        }
        Ok(())
    }

    /// Connections the kernel balanced end in the kernel (`lb_conns`,
    /// `lb_nat`), which the proxy's backend queue does not hear: a queued
    /// client of one of the path's backends is woken here every refresh to
    /// look again (one that finds no room waits on).
    pub fn wake_queues(&self, state: &State) {
        for &bi in &self.backends {
            let b = &state.backends[bi];
            if b.queued.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                b.slot_freed.notify_waiters();
            }
        }
    }
}
