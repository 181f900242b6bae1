//! What the runtime API changes and reports beyond the health-check state:
//! administrative flags and counters per server, per-frontend counters, and the
//! table of live sessions (`show sess`, `shutdown session`, the tcplog line at
//! the end of each one).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::sys;

/// `maxconn_override` value meaning "the configured maxconn applies".
pub const NO_OVERRIDE: u32 = u32::MAX;

/// Sessions the `qtime`/`ctime`/`ttime` averages span, as in HAProxy's manual
/// ("over the 1024 last requests").
pub const TIME_WINDOW: u64 = 1024;

/// Queue, connect and total session times (ms) of one server or backend:
/// averages over the last [`TIME_WINDOW`] sessions and maxima, for `show stat`
/// and the metrics. Exact means until the window is full, then a sliding-window
/// moving average (each sample replaces 1/1024 of the sum), which costs three
/// words instead of a ring of samples.
#[derive(Debug, Default)]
pub struct SessionTimes {
    samples: AtomicU64,
    sums: [AtomicU64; 3],
    maxima: [AtomicU32; 3],
}

impl SessionTimes {
    /// One session that reached its server: `queue` and `connect` from its
    /// start, `total` when it ended.
    pub fn record(&self, queue: u32, connect: u32, total: u32) {
        let n = self.samples.fetch_add(1, Ordering::Relaxed) + 1;
        for (i, v) in [queue, connect, total].into_iter().enumerate() {
            let v = v as u64;
            let _ = self.sums[i].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(if n <= TIME_WINDOW {
                    sum + v
                } else {
                    sum - sum / TIME_WINDOW + v
                })
            });
            self.maxima[i].fetch_max(v as u32, Ordering::Relaxed);
        }
    }

    /// Average queue, connect and total time in ms (0 before any session).
    pub fn averages(&self) -> [u64; 3] {
        let n = self.samples.load(Ordering::Relaxed).clamp(1, TIME_WINDOW);
        std::array::from_fn(|i| self.sums[i].load(Ordering::Relaxed) / n)
    }

    pub fn maxima(&self) -> [u64; 3] {
        std::array::from_fn(|i| self.maxima[i].load(Ordering::Relaxed) as u64)
    }

    /// `clear counters` resets the maxima; `all` the averages too.
    pub fn clear(&self, all: bool) {
        for m in &self.maxima {
            m.store(0, Ordering::Relaxed);
        }
        if all {
            self.samples.store(0, Ordering::Relaxed);
            for s in &self.sums {
                s.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Runtime flags and counters of one server (the part of HAProxy's server
/// struct that the stats socket shows and changes).
#[derive(Debug)]
pub struct ServerAdmin {
    /// The weight from the config (`get weight` reports it as "initial").
    pub initial_weight: u32,
    /// `set server B/S state drain`: effective weight 0, sessions continue.
    pub drain: AtomicBool,
    /// `set server B/S health stopping`: HAProxy's NOLB, no new sessions.
    pub stopping: AtomicBool,
    /// `disable health B/S`: checks paused, the state stays as it is.
    pub checks_disabled: AtomicBool,
    /// `set maxconn server`: replaces the configured maxconn ([`NO_OVERRIDE`]: none).
    pub maxconn_override: AtomicU32,
    /// Highest concurrent connections seen (`smax`).
    pub max_conns: AtomicU32,
    /// Failed connection attempts to the server (`econ`).
    pub econ: AtomicU64,
    /// Retries (`wretr`) and redispatches (`wredis`).
    pub retries: AtomicU64,
    pub redispatches: AtomicU64,
    /// UP -> DOWN transitions (`chkdown`).
    pub downs: AtomicU64,
    /// CLOCK_MONOTONIC ns of the last state change (`lastchg`), of the last
    /// DOWN transition, and the DOWN time accumulated before it (`downtime`).
    pub last_change_ns: AtomicU64,
    pub down_since_ns: AtomicU64,
    pub downtime_ns: AtomicU64,
    /// CLOCK_MONOTONIC ns of the last session sent here (0: never; `lastsess`).
    pub last_sess_ns: AtomicU64,
    /// Queue, connect and total times of the recent sessions (`qtime`...).
    pub times: SessionTimes,
}

impl ServerAdmin {
    pub fn new(initial_weight: u32) -> Self {
        Self {
            initial_weight,
            drain: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            checks_disabled: AtomicBool::new(false),
            maxconn_override: AtomicU32::new(NO_OVERRIDE),
            max_conns: AtomicU32::new(0),
            econ: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            redispatches: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            last_change_ns: AtomicU64::new(sys::monotonic_ns()),
            down_since_ns: AtomicU64::new(0),
            downtime_ns: AtomicU64::new(0),
            last_sess_ns: AtomicU64::new(0),
            times: SessionTimes::default(),
        }
    }

    /// Drained or NOLB: keeps its sessions, takes no new ones.
    pub fn refuses_new(&self) -> bool {
        self.drain.load(Ordering::Relaxed) || self.stopping.load(Ordering::Relaxed)
    }

    /// Records a state change at `now` for `lastchg`, `chkdown` and `downtime`.
    pub fn note_change(&self, up: bool) {
        let now = sys::monotonic_ns();
        self.last_change_ns.store(now, Ordering::Relaxed);
        if up {
            let since = self.down_since_ns.swap(0, Ordering::Relaxed);
            if since > 0 {
                self.downtime_ns
                    .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
            }
        } else if self.down_since_ns.load(Ordering::Relaxed) == 0 {
            self.downs.fetch_add(1, Ordering::Relaxed);
            self.down_since_ns.store(now, Ordering::Relaxed);
        }
    }

    /// `clear counters`: the maxima; `all`: every counter too.
    pub fn clear(&self, all: bool) {
        self.max_conns.store(0, Ordering::Relaxed);
        self.times.clear(all);
        if all {
            self.econ.store(0, Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
            self.redispatches.store(0, Ordering::Relaxed);
            self.downs.store(0, Ordering::Relaxed);
            self.downtime_ns.store(0, Ordering::Relaxed);
        }
    }
}

/// Counters of one frontend.
#[derive(Debug, Default)]
pub struct FrontendStats {
    pub cur: AtomicU32,
    pub max: AtomicU32,
    pub total: AtomicU64,
    /// Bytes of ended sessions, client->server and server->client (live
    /// sessions are added when they are shown).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Sessions closed because no server could take them.
    pub denied: AtomicU64,
    /// Connections a `tcp-request content reject` rule closed (HAProxy's
    /// `dreq`).
    pub denied_req: AtomicU64,
    /// Ended sessions by data path (kernel splice, userspace copy).
    pub ended_spliced: AtomicU64,
    pub ended_userspace: AtomicU64,
}

/// HAProxy's two-letter termination state of a TCP session.
pub type TermState = [u8; 2];
pub const TERM_NORMAL: TermState = *b"--";

/// [`Session::end`]: `shutdown session(s)`, the session is reset.
pub const END_KILLED: u8 = 1;
/// [`Session::end`]: lb stops.
pub const END_STOPPING: u8 = 2;

/// One accepted client connection, from accept to close.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub frontend: usize,
    pub backend: usize,
    pub client: SocketAddr,
    /// Wall clock (ms since the epoch) and CLOCK_MONOTONIC ns of the accept.
    pub accept_unix_ms: u64,
    pub accept_ns: u64,
    /// Server index once chosen (u32::MAX: none yet).
    pub server: AtomicU32,
    /// Time spent in the queue and connecting, ms (u32::MAX: never got there).
    pub tw_ms: AtomicU32,
    pub tc_ms: AtomicU32,
    /// Cookie of the server socket registered in LB_CONN_SRV (0: none), which
    /// releasing the connection hands back.
    pub server_cookie: AtomicU64,
    pub retries: AtomicU32,
    /// Client->server and server->client bytes (final once the session ended).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// 1 while the kernel splices it.
    pub spliced: AtomicBool,
    term: Mutex<TermState>,
    /// Why the userspace copy must end the session now (`END_*`; 0: it
    /// need not), set once by [`Session::end`].
    ended_by: AtomicU8,
    /// Wakes the session's copy to look at `ended_by` (and at its own
    /// flags: a failed side, a promotion). One per session: nothing
    /// shared between sessions is locked on the copy path.
    pub wake: tokio::sync::Notify,
    /// Queue sizes seen when the server was chosen (tcplog's srv_queue and
    /// backend_queue).
    pub srv_queue: AtomicU32,
    pub backend_queue: AtomicU32,
    /// Connections when the session started: of the process, the frontend,
    /// the backend and the server (tcplog's actconn/feconn/beconn/srv_conn).
    pub actconn: AtomicU32,
    pub feconn: AtomicU32,
    pub beconn: AtomicU32,
    pub srv_conn: AtomicU32,
}

impl Session {
    pub fn server_idx(&self) -> Option<u32> {
        Some(self.server.load(Ordering::Relaxed)).filter(|&s| s != u32::MAX)
    }

    /// Ends the session's userspace copy now: `END_KILLED` (`shutdown
    /// session(s)`) resets it, `END_STOPPING` (lb stops) ends it with FINs
    /// if nothing is on its way. The first reason wins.
    pub fn end(&self, why: u8) {
        let _ = self
            .ended_by
            .compare_exchange(0, why, Ordering::SeqCst, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    pub fn ended_by(&self) -> u8 {
        self.ended_by.load(Ordering::SeqCst)
    }

    /// Records why the session ended; the first reason wins.
    pub fn set_term(&self, t: TermState) {
        let mut cur = self.term.lock().unwrap_or_else(|e| e.into_inner());
        if *cur == TERM_NORMAL {
            *cur = t;
        }
    }

    pub fn term(&self) -> TermState {
        *self.term.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Live sessions by id.
#[derive(Debug, Default)]
pub struct Sessions {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Session>>>,
}

impl Sessions {
    pub fn open(&self, frontend: usize, backend: usize, client: SocketAddr) -> Arc<Session> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let s = Arc::new(Session {
            id,
            frontend,
            backend,
            client,
            accept_unix_ms: unix_ms,
            accept_ns: sys::monotonic_ns(),
            server: AtomicU32::new(u32::MAX),
            tw_ms: AtomicU32::new(u32::MAX),
            tc_ms: AtomicU32::new(u32::MAX),
            server_cookie: AtomicU64::new(0),
            retries: AtomicU32::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            spliced: AtomicBool::new(false),
            term: Mutex::new(TERM_NORMAL),
            ended_by: AtomicU8::new(0),
            wake: tokio::sync::Notify::new(),
            srv_queue: AtomicU32::new(0),
            backend_queue: AtomicU32::new(0),
            actconn: AtomicU32::new(0),
            feconn: AtomicU32::new(0),
            beconn: AtomicU32::new(0),
            srv_conn: AtomicU32::new(0),
        });
        self.lock().insert(id, s.clone());
        s
    }

    pub fn close(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn get(&self, id: u64) -> Option<Arc<Session>> {
        self.lock().get(&id).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Session>> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions ever opened.
    pub fn opened(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Session>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Called once when a session ends (counters, tcplog).
pub type OnEnd = Arc<dyn Fn(&Session) + Send + Sync>;

/// Owns a session's entry: dropping it (wherever the connection ends: accept
/// path, userspace copy or the splice manager) closes the session.
pub struct SessionGuard {
    pub session: Arc<Session>,
    on_end: OnEnd,
}

impl SessionGuard {
    pub fn new(session: Arc<Session>, on_end: OnEnd) -> Self {
        Self { session, on_end }
    }

    /// The server socket's registration of this session (0: none).
    pub fn server_cookie(g: Option<&Self>) -> u64 {
        g.map_or(0, |g| g.session.server_cookie.load(Ordering::Relaxed))
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        (self.on_end)(&self.session);
    }
}

impl std::fmt::Debug for SessionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionGuard({})", self.session.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_times_average_then_slide() {
        let t = SessionTimes::default();
        assert_eq!(t.averages(), [0, 0, 0]);
        t.record(0, 2, 100);
        t.record(4, 6, 300);
        assert_eq!(t.averages(), [2, 4, 200]);
        assert_eq!(t.maxima(), [4, 6, 300]);
        // Past the window, old samples fade: 10 windows of 50 ms bring a
        // 200 ms average within a few ms of 50.
        for _ in 0..10 * TIME_WINDOW {
            t.record(0, 1, 50);
        }
        let [_, c, tt] = t.averages();
        assert!((1..=2).contains(&c) && (49..=52).contains(&tt), "{c} {tt}");
        t.clear(false);
        assert_eq!(t.maxima(), [0, 0, 0]);
        assert!(t.averages()[2] > 0);
        t.clear(true);
        assert_eq!(t.averages(), [0, 0, 0]);
    }

    #[test]
    fn sessions_open_list_close() {
        let t = Sessions::default();
        let a = t.open(0, 0, "10.0.0.1:1000".parse().unwrap());
        let b = t.open(0, 0, "10.0.0.1:1001".parse().unwrap());
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(t.len(), 2);
        t.close(a.id);
        assert!(t.get(a.id).is_none());
        assert_eq!(t.list().len(), 1);
        assert_eq!(t.opened(), 2);
    }

    #[test]
    fn first_termination_reason_wins() {
        let t = Sessions::default();
        let s = t.open(0, 0, "10.0.0.1:1000".parse().unwrap());
        assert_eq!(s.term(), TERM_NORMAL);
        s.set_term(*b"KD");
        s.set_term(*b"CD");
        assert_eq!(&s.term(), b"KD");
    }

    #[test]
    fn downtime_accumulates_between_changes() {
        let a = ServerAdmin::new(10);
        a.note_change(false);
        assert_eq!(a.downs.load(Ordering::Relaxed), 1);
        // A second DOWN notice while already down is not another transition.
        a.note_change(false);
        assert_eq!(a.downs.load(Ordering::Relaxed), 1);
        a.note_change(true);
        assert_eq!(a.down_since_ns.load(Ordering::Relaxed), 0);
        a.clear(true);
        assert_eq!(a.downs.load(Ordering::Relaxed), 0);
    }
}
