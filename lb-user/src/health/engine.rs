//! The rule engine behind every health check: `connect`, `send` and `expect`
//! steps (plus protocol-specific steps) run in order over a stream, with
//! HAProxy 2.6's `tcp-check` semantics:
//! - an `expect` looks at everything received since the last `send` (at most
//!   [`BUF_SIZE`] bytes) and waits for more while the answer is not conclusive
//!   (shorter than the pattern or `min-recv`, or no match yet without
//!   `min-recv`), until the connection closes, the buffer is full or the check
//!   times out;
//! - the first failing step decides the status, with its step number in the
//!   info text.
//!
//! The engine is generic over a [`Connector`], so unit tests drive it over
//! in-memory pipes and the daemon over TCP.
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use lb_common::chk;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::proto::{self, Proto};

/// Most bytes an `expect` looks at (HAProxy's `tune.bufsize` default).
pub const BUF_SIZE: usize = 16 * 1024;

/// Result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// A [`chk`] code.
    pub status: u32,
    /// Layer-7 code (HTTP status, ...), 0: none.
    pub code: u32,
    /// What happened, for `lb show servers` and the state-change log line.
    pub info: String,
}

impl Outcome {
    pub fn new(status: u32, info: impl Into<String>) -> Self {
        Self {
            status,
            code: 0,
            info: info.into(),
        }
    }

    pub fn with_code(mut self, code: u32) -> Self {
        self.code = code;
        self
    }

    pub fn passed(&self) -> bool {
        matches!(
            self.status,
            chk::L4OK | chk::L6OK | chk::L7OK | chk::L7OKC | chk::PROCOK
        )
    }
}

/// HAProxy's description of a status ("Layer4 connection problem", ...).
pub use lb_common::chk::desc as status_desc;

/// A status code by HAProxy's name (`L7RSP`, ...).
pub fn status_by_name(name: &str) -> Option<u32> {
    chk::NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// `connect` options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connect {
    pub port: Option<u16>,
    pub addr: Option<IpAddr>,
    /// Send a PROXY header first (`send-proxy`, `check-send-proxy`).
    pub send_proxy: Option<crate::datapath::proxy_proto::Version>,
    /// Close with a FIN instead of an RST.
    pub linger: bool,
    /// TLS over the connection (`check-ssl`): a handshake failure is L6RSP,
    /// one that outlasts the check timeout L6TOUT; a plain connect check
    /// that shook hands is L6OK.
    pub tls: bool,
}

/// How an `expect` matches the received bytes.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// `string` / `binary`: the bytes appear somewhere.
    Bytes(Vec<u8>),
    /// `rstring`: a regex over the bytes.
    Regex(regex::bytes::Regex),
    /// `rbinary`: a regex over the hex form of the bytes (case-insensitive).
    HexRegex(regex::Regex),
}

#[derive(Clone, Debug)]
pub struct Expect {
    pub negate: bool,
    /// -1: not set.
    pub min_recv: i32,
    pub matcher: Matcher,
    /// "string '+PONG'", for messages.
    pub what: String,
    pub ok_status: u32,
    pub error_status: u32,
    pub tout_status: u32,
    /// Info text on success / failure instead of the generated one.
    pub on_success: Option<String>,
    pub on_error: Option<String>,
    /// Without `on_error`: show the reply from this offset up to its first
    /// line end (HAProxy's `res.payload(N,0),cut_crlf`).
    pub error_payload: Option<usize>,
}

impl Expect {
    /// An expect with HAProxy's default statuses.
    pub fn new(negate: bool, matcher: Matcher, what: impl Into<String>) -> Self {
        Self {
            negate,
            min_recv: -1,
            matcher,
            what: what.into(),
            ok_status: chk::L7OK,
            error_status: chk::L7RSP,
            tout_status: chk::L7TOUT,
            on_success: None,
            on_error: None,
            error_payload: None,
        }
    }
}

/// `option external-check`: the command HAProxy would run, its arguments
/// and environment.
#[derive(Clone, Debug)]
pub struct Exec {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub enum Step {
    /// Runs a command instead of a connection: exit 0 passes (PROCOK),
    /// another code or a signal fails (PROCERR), the check timeout kills it
    /// (PROCTOUT).
    Exec(Exec),
    Connect(Connect),
    Send(Vec<u8>),
    Expect(Expect),
    Proto(Proto),
}

/// Opens check connections (TCP in the daemon, pipes in tests).
pub trait Connector: Sync {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send;
    fn connect(&self, c: &Connect) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Starts TLS on a connected stream (`Connect::tls`).
    fn start_tls(&self, s: Self::Stream) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        async { Ok(s) }
    }
    /// Closes a check connection; `linger`: gracefully, else with an RST.
    fn close(&self, s: Self::Stream, linger: bool) {
        let _ = linger;
        drop(s);
    }
}

/// HAProxy's `timeout check` rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub inter: Duration,
    /// `timeout connect` (None: unset).
    pub connect: Option<Duration>,
    /// `timeout check` (None: unset).
    pub check: Option<Duration>,
}

impl Timeouts {
    /// How long a connect may take: with `timeout check`, min(`timeout
    /// connect`, `inter`); without, the whole check is bounded by `inter`.
    pub fn connect_limit(&self) -> Duration {
        match self.check {
            Some(_) => self.connect.map_or(self.inter, |c| c.min(self.inter)),
            None => self.inter,
        }
    }
}

/// Why reading stopped.
pub(crate) enum ReadErr {
    Timeout,
    Io(io::Error),
}

/// The connection of a running check and what it received.
pub struct Session<S> {
    stream: Option<S>,
    pub(crate) buf: Vec<u8>,
    pub(crate) eof: bool,
    deadline: Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// True when no more bytes can come into the buffer.
    pub(crate) fn last_read(&self) -> bool {
        self.eof || self.buf.len() >= BUF_SIZE
    }

    /// Reads once more into the buffer (EOF sets `eof`).
    pub(crate) async fn fill(&mut self) -> Result<(), ReadErr> {
        let Some(s) = self.stream.as_mut() else {
            return Err(ReadErr::Io(io::ErrorKind::NotConnected.into()));
        };
        let start = self.buf.len();
        // Small reads first: most answers are a few bytes.
        let room = BUF_SIZE.saturating_sub(start).min(start.max(2048));
        if room == 0 {
            return Ok(());
        }
        self.buf.resize(start + room, 0);
        let r = tokio::time::timeout_at(self.deadline, s.read(&mut self.buf[start..])).await;
        let n = match r {
            Err(_) => {
                self.buf.truncate(start);
                return Err(ReadErr::Timeout);
            }
            Ok(Err(e)) => {
                self.buf.truncate(start);
                return Err(ReadErr::Io(e));
            }
            Ok(Ok(n)) => n,
        };
        self.buf.truncate(start + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Reads until the buffer holds `n` bytes or nothing more can come.
    pub(crate) async fn need(&mut self, n: usize) -> Result<(), ReadErr> {
        while self.buf.len() < n && !self.last_read() {
            self.fill().await?;
        }
        Ok(())
    }

    /// Sends `data`; a new request starts a new answer, so the buffer is cleared.
    pub(crate) async fn send(&mut self, data: &[u8]) -> Result<(), ReadErr> {
        self.buf.clear();
        let Some(s) = self.stream.as_mut() else {
            return Err(ReadErr::Io(io::ErrorKind::NotConnected.into()));
        };
        match tokio::time::timeout_at(self.deadline, s.write_all(data)).await {
            Err(_) => Err(ReadErr::Timeout),
            Ok(Err(e)) => Err(ReadErr::Io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Drops the first `n` bytes of the buffer (a parsed message).
    pub(crate) fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }
}

/// The OS error text without Rust's " (os error N)" suffix, as HAProxy shows
/// strerror().
pub fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

enum Eval {
    Wait,
    Pass,
    Fail,
}

fn eval(e: &Expect, buf: &[u8], last_read: bool) -> Eval {
    if !last_read {
        if let Matcher::Bytes(p) = &e.matcher {
            if buf.len() < p.len() {
                return Eval::Wait;
            }
        }
        if e.min_recv > 0 && buf.len() < e.min_recv as usize {
            return Eval::Wait;
        }
    }
    let matched = match &e.matcher {
        Matcher::Bytes(p) => p.is_empty() || buf.windows(p.len()).any(|w| w == p.as_slice()),
        Matcher::Regex(r) => r.is_match(buf),
        Matcher::HexRegex(r) => {
            let hex: String = buf.iter().map(|b| format!("{b:02X}")).collect();
            r.is_match(&hex)
        }
    };
    // Without min-recv, a mismatch is not conclusive while more may come.
    if !matched && !last_read && e.min_recv == -1 {
        return Eval::Wait;
    }
    if matched != e.negate {
        Eval::Pass
    } else {
        Eval::Fail
    }
}

/// Runs an external check command with a deadline; killed (and reaped)
/// past it. HAProxy's statuses and texts.
async fn exec(x: &Exec, deadline: Instant) -> Outcome {
    let mut cmd = tokio::process::Command::new(&x.command);
    cmd.args(&x.args)
        .env_clear()
        .envs(x.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::new(chk::PROCERR, format!("{}: {e}", x.command)),
    };
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            Outcome::new(chk::PROCTOUT, "")
        }
        Ok(Err(e)) => Outcome::new(chk::PROCERR, e.to_string()),
        Ok(Ok(st)) => match st.code() {
            Some(0) => Outcome::new(chk::PROCOK, ""),
            Some(c) => Outcome::new(chk::PROCERR, format!("exit code {c}")),
            None => Outcome::new(chk::PROCERR, "killed by a signal"),
        },
    }
}

/// Runs `steps` (the first must be a connect, or an exec). `ruleset`: name shown in info
/// texts ("tcp-check"); a plain connect check (one step) gets none.
pub async fn run<C: Connector>(steps: &[Step], conn: &C, t: &Timeouts) -> Outcome {
    let start = Instant::now();
    // Without `timeout check`, `inter` bounds the whole check.
    let overall = match t.check {
        None => start + t.inter,
        Some(c) => start + t.connect_limit() + c,
    };
    let plain = steps.len() == 1;
    let at = |n: usize, what: &str| {
        if plain {
            String::new()
        } else {
            format!(" at step {n} of tcp-check ({what})")
        }
    };
    let mut s: Session<C::Stream> = Session {
        stream: None,
        // Grown on demand: a plain connect check never reads.
        buf: Vec::new(),
        eof: false,
        deadline: overall,
    };
    let mut linger = false;
    let mut ok = Outcome::new(chk::L4OK, "");
    let result = 'steps: {
        for (i, step) in steps.iter().enumerate() {
            let n = i + 1;
            match step {
                Step::Connect(c) => {
                    if let Some(old) = s.stream.take() {
                        conn.close(old, linger);
                    }
                    let dl = (Instant::now() + t.connect_limit()).min(overall);
                    match tokio::time::timeout_at(dl, conn.connect(c)).await {
                        Err(_) => {
                            let info = at(n, "connect");
                            break 'steps Outcome::new(chk::L4TOUT, info.trim_start());
                        }
                        Ok(Err(e)) => {
                            break 'steps Outcome::new(
                                chk::L4CON,
                                format!("{}{}", io_text(&e), at(n, "connect")),
                            );
                        }
                        Ok(Ok(stream)) => {
                            s.buf.clear();
                            s.eof = false;
                            s.deadline = match t.check {
                                Some(c) => Instant::now() + c,
                                None => overall,
                            };
                            linger = c.linger;
                            if !c.tls {
                                s.stream = Some(stream);
                                continue;
                            }
                            match tokio::time::timeout_at(s.deadline, conn.start_tls(stream)).await
                            {
                                Err(_) => {
                                    let info = format!("SSL handshake timeout{}", at(n, "connect"));
                                    break 'steps Outcome::new(chk::L6TOUT, info);
                                }
                                Ok(Err(e)) => {
                                    break 'steps Outcome::new(
                                        chk::L6RSP,
                                        format!("SSL handshake failure ({e}){}", at(n, "connect")),
                                    );
                                }
                                Ok(Ok(stream)) => {
                                    s.stream = Some(stream);
                                    if ok.status == chk::L4OK {
                                        ok = Outcome::new(chk::L6OK, "");
                                    }
                                }
                            }
                        }
                    }
                }
                Step::Send(data) => match s.send(data).await {
                    Ok(()) => {}
                    Err(ReadErr::Timeout) => {
                        break 'steps Outcome::new(chk::L7TOUT, format!("timeout{}", at(n, "send")))
                    }
                    Err(ReadErr::Io(e)) => {
                        break 'steps Outcome::new(
                            chk::L4CON,
                            format!("{}{}", io_text(&e), at(n, "send")),
                        )
                    }
                },
                Step::Expect(e) => loop {
                    match eval(e, &s.buf, s.last_read()) {
                        Eval::Pass => {
                            ok = Outcome::new(
                                e.ok_status,
                                e.on_success.clone().unwrap_or_else(|| {
                                    if plain {
                                        String::new()
                                    } else {
                                        "(tcp-check)".into()
                                    }
                                }),
                            );
                            break;
                        }
                        Eval::Fail => {
                            let payload = e.error_payload.map(|off| {
                                let rest = s.buf.get(off..).unwrap_or(&[]);
                                let end = rest
                                    .iter()
                                    .position(|&b| b == b'\r' || b == b'\n')
                                    .unwrap_or(rest.len());
                                String::from_utf8_lossy(&rest[..end]).trim().to_string()
                            });
                            let info = e.on_error.clone().or(payload).unwrap_or_else(|| {
                                if s.buf.is_empty() && s.eof {
                                    format!("TCPCHK got an empty response at step {n}")
                                } else if e.negate {
                                    format!(
                                        "TCPCHK matched unwanted content {} at step {n}",
                                        e.what
                                    )
                                } else {
                                    format!("TCPCHK did not match content {} at step {n}", e.what)
                                }
                            });
                            break 'steps Outcome::new(e.error_status, info);
                        }
                        Eval::Wait => match s.fill().await {
                            Ok(()) => {}
                            Err(ReadErr::Timeout) => {
                                break 'steps Outcome::new(
                                    e.tout_status,
                                    format!("timeout{}", at(n, &format!("expect {}", e.what))),
                                )
                            }
                            Err(ReadErr::Io(err)) => {
                                break 'steps Outcome::new(
                                    chk::L7RSP,
                                    format!(
                                        "{}{}",
                                        io_text(&err),
                                        at(n, &format!("expect {}", e.what))
                                    ),
                                )
                            }
                        },
                    }
                },
                Step::Exec(x) => break 'steps exec(x, overall).await,
                Step::Proto(p) => match proto::run(p, &mut s, n).await {
                    Ok(o) => ok = o,
                    Err(o) => break 'steps o,
                },
            }
        }
        ok
    };
    if let Some(old) = s.stream.take() {
        conn.close(old, linger);
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{duplex, DuplexStream};

    /// Hands out the client ends of pipes whose server ends a script drives.
    pub struct Pipes {
        pub ends: Mutex<Vec<io::Result<DuplexStream>>>,
        pub delay: Duration,
    }

    impl Connector for Pipes {
        type Stream = DuplexStream;
        async fn connect(&self, _c: &Connect) -> io::Result<DuplexStream> {
            tokio::time::sleep(self.delay).await;
            let mut v = self.ends.lock().unwrap();
            if v.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
            }
            v.remove(0)
        }
    }

    /// One pipe whose server side runs `script` (reads what is sent, writes
    /// replies, as the peer would).
    pub fn pipe<F, Fut>(script: F) -> Pipes
    where
        F: FnOnce(DuplexStream) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (a, b) = duplex(64 * 1024);
        tokio::spawn(script(b));
        Pipes {
            ends: Mutex::new(vec![Ok(a)]),
            delay: Duration::ZERO,
        }
    }

    pub fn t(inter_ms: u64) -> Timeouts {
        Timeouts {
            inter: Duration::from_millis(inter_ms),
            connect: None,
            check: None,
        }
    }

    fn string(s: &str) -> Step {
        Step::Expect(Expect::new(
            false,
            Matcher::Bytes(s.as_bytes().to_vec()),
            format!("string '{s}'"),
        ))
    }

    fn connect() -> Step {
        Step::Connect(Connect::default())
    }

    #[tokio::test]
    async fn plain_connect_is_l4ok_refused_is_l4con() {
        let p = pipe(|_b| async {});
        let o = run(&[connect()], &p, &t(1000)).await;
        assert_eq!(o, Outcome::new(chk::L4OK, ""));
        let o = run(&[connect()], &p, &t(1000)).await;
        assert_eq!(o.status, chk::L4CON);
        assert_eq!(o.info, "Connection refused");
    }

    #[tokio::test(start_paused = true)]
    async fn connect_timeout_is_l4tout_bounded_by_inter() {
        let mut p = pipe(|_b| async {});
        p.delay = Duration::from_secs(10);
        let start = Instant::now();
        let o = run(&[connect()], &p, &t(1000)).await;
        assert_eq!(o.status, chk::L4TOUT);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // With `timeout check`: min(timeout connect, inter).
        let tm = Timeouts {
            inter: Duration::from_secs(2),
            connect: Some(Duration::from_millis(300)),
            check: Some(Duration::from_secs(5)),
        };
        let start = Instant::now();
        let o = run(&[connect()], &p, &tm).await;
        assert_eq!(o.status, chk::L4TOUT);
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test]
    async fn partial_replies_are_awaited() {
        let p = pipe(|mut b| async move {
            let mut q = [0u8; 6];
            b.read_exact(&mut q).await.unwrap();
            assert_eq!(&q, b"PING\r\n");
            for part in [&b"+PO"[..], b"N", b"G\r\n"] {
                b.write_all(part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = b.read(&mut q).await;
        });
        let steps = [connect(), Step::Send(b"PING\r\n".to_vec()), string("+PONG")];
        let o = run(&steps, &p, &t(2000)).await;
        assert_eq!(o, Outcome::new(chk::L7OK, "(tcp-check)"));
    }

    #[tokio::test(start_paused = true)]
    async fn read_timeout_uses_timeout_check_and_is_l7tout() {
        let p = pipe(|mut b| async move {
            b.write_all(b"+PO").await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let tm = Timeouts {
            inter: Duration::from_secs(10),
            connect: None,
            check: Some(Duration::from_millis(500)),
        };
        let start = Instant::now();
        let o = run(&[connect(), string("+PONG")], &p, &tm).await;
        assert_eq!(o.status, chk::L7TOUT, "{o:?}");
        assert_eq!(
            o.info,
            "timeout at step 2 of tcp-check (expect string '+PONG')"
        );
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn mismatch_after_close_is_l7rsp() {
        let p = pipe(|mut b| async move {
            b.write_all(b"-ERR nope\r\n").await.unwrap();
        });
        let o = run(&[connect(), string("+PONG")], &p, &t(2000)).await;
        assert_eq!(o.status, chk::L7RSP);
        assert_eq!(
            o.info,
            "TCPCHK did not match content string '+PONG' at step 2"
        );
    }

    #[tokio::test]
    async fn min_recv_makes_a_mismatch_conclusive() {
        let p = pipe(|mut b| async move {
            b.write_all(b"XXXXX").await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let mut e = Expect::new(
            false,
            Matcher::Regex(regex::bytes::Regex::new("^R").unwrap()),
            "rstring '^R'",
        );
        e.min_recv = 5;
        let o = run(&[connect(), Step::Expect(e)], &p, &t(5000)).await;
        assert_eq!(o.status, chk::L7RSP);
    }

    #[tokio::test]
    async fn nul_bytes_binary_and_rbinary() {
        let p = pipe(|mut b| async move {
            b.write_all(&[0x00, 0x01, 0x00, 0xff, b'a']).await.unwrap();
        });
        let bin = Step::Expect(Expect::new(
            false,
            Matcher::Bytes(vec![0x00, 0xff]),
            "binary '00ff'",
        ));
        let rbin = Step::Expect(Expect::new(
            false,
            Matcher::HexRegex(regex::Regex::new("(?i)^000100ff61$").unwrap()),
            "rbinary",
        ));
        let o = run(&[connect(), bin, rbin], &p, &t(2000)).await;
        assert_eq!(o.status, chk::L7OK, "{o:?}");
    }

    #[tokio::test]
    async fn negated_expect_fails_on_match() {
        let p = pipe(|mut b| async move {
            b.write_all(b"Efatal").await.unwrap();
        });
        let e = Expect::new(
            true,
            Matcher::Regex(regex::bytes::Regex::new("^E").unwrap()),
            "rstring '^E'",
        );
        let o = run(&[connect(), Step::Expect(e)], &p, &t(2000)).await;
        assert_eq!(o.status, chk::L7RSP);
        assert_eq!(
            o.info,
            "TCPCHK matched unwanted content rstring '^E' at step 2"
        );
    }

    #[tokio::test]
    async fn buffer_full_is_conclusive() {
        let p = pipe(|mut b| async move {
            b.write_all(&vec![b'x'; BUF_SIZE + 100]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let o = run(&[connect(), string("never")], &p, &t(5000)).await;
        assert_eq!(o.status, chk::L7RSP, "{o:?}");
    }

    #[tokio::test]
    async fn send_clears_previous_answer() {
        let p = pipe(|mut b| async move {
            b.write_all(b"hello\n").await.unwrap();
            let mut q = [0u8; 3];
            b.read_exact(&mut q).await.unwrap();
            b.write_all(b"ok\n").await.unwrap();
        });
        let steps = [
            connect(),
            string("hello"),
            Step::Send(b"go\n".to_vec()),
            // "hello" is gone once a new request was sent.
            Step::Expect(Expect::new(
                true,
                Matcher::Bytes(b"hello".to_vec()),
                "string 'hello'",
            )),
        ];
        let o = run(&steps, &p, &t(2000)).await;
        assert_eq!(o.status, chk::L7OK, "{o:?}");
    }

    #[tokio::test]
    async fn external_check_exit_codes_timeout_and_environment() {
        let sh = |script: &str| Exec {
            command: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("HAPROXY_SERVER_NAME".into(), "s1".into())],
        };
        let soon = || Instant::now() + Duration::from_secs(5);
        assert_eq!(exec(&sh("exit 0"), soon()).await.status, chk::PROCOK);
        let o = exec(&sh("exit 3"), soon()).await;
        assert_eq!((o.status, o.info.as_str()), (chk::PROCERR, "exit code 3"));
        let o = exec(&sh("test \"$HAPROXY_SERVER_NAME\" = s1"), soon()).await;
        assert_eq!(o.status, chk::PROCOK);
        // The environment is only what the check is given.
        let o = exec(&sh("test -z \"$HOME\""), soon()).await;
        assert_eq!(o.status, chk::PROCOK);
        let t = Instant::now();
        let o = exec(&sh("sleep 5"), Instant::now() + Duration::from_millis(200)).await;
        assert_eq!(o.status, chk::PROCTOUT);
        assert!(t.elapsed() < Duration::from_secs(2));
        let o = exec(
            &Exec {
                command: "/nonexistent".into(),
                args: vec![],
                env: vec![],
            },
            soon(),
        )
        .await;
        assert_eq!(o.status, chk::PROCERR);
    }
}
