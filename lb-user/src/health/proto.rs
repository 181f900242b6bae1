//! Protocol steps that a plain `expect` cannot express: PostgreSQL (startup
//! reply, and the role check that logs in and queries), HTTP, MySQL, LDAP.
//! Each reads from and writes to the check's [`Session`] and returns the
//! passing outcome or the failing one.
use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use lb_common::chk;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncRead, AsyncWrite};

use super::engine::{io_text, Outcome, ReadErr, Session};

#[derive(Clone, Debug)]
pub enum Proto {
    /// Reply to the StartupMessage `option pgsql-check` sent: UP on any
    /// authentication request, DOWN on an ErrorResponse.
    PgsqlReply,
    /// `option pgsql-role-check`: log in, query the role, compare.
    PgRole(Box<RoleSpec>),
    /// `option httpchk` response, checked against the `http-check expect`
    /// rules; `true`: `http-check disable-on-404` (a 404 is L7OKC, a soft
    /// stop, before any rule).
    Http(Vec<HttpExpect>, bool),
    /// `option mysql-check`: the greeting, then with a user the reply to the
    /// login packet sent here (and a QUIT).
    Mysql { user: Option<String>, post41: bool },
    /// `option ldap-check`: the reply to an anonymous bind.
    LdapBind,
}

pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin + Send>(
    p: &Proto,
    s: &mut Session<S>,
    step: usize,
) -> Result<Outcome, Outcome> {
    match p {
        Proto::PgsqlReply => pgsql_reply(s, step).await,
        Proto::PgRole(spec) => pg_role(spec, s, step).await,
        Proto::Http(expects, on404) => http(expects, *on404, s, step).await,
        Proto::Mysql { user, post41 } => mysql(user.as_deref(), *post41, s, step).await,
        Proto::LdapBind => ldap(s, step).await,
    }
}

fn read_failed(e: ReadErr, step: usize, what: &str) -> Outcome {
    match e {
        ReadErr::Timeout => Outcome::new(
            chk::L7TOUT,
            format!("timeout at step {step} of tcp-check ({what})"),
        ),
        ReadErr::Io(e) => Outcome::new(
            chk::L7RSP,
            format!("{} at step {step} of tcp-check ({what})", io_text(&e)),
        ),
    }
}

/// The StartupMessage HAProxy's `option pgsql-check` sends: protocol 3.0 and
/// only the user.
pub fn pgsql_startup(user: &str) -> Vec<u8> {
    let len = (4 + 4 + 5 + user.len() + 1 + 1) as u32;
    let mut m = len.to_be_bytes().to_vec();
    m.extend_from_slice(&[0, 3, 0, 0]);
    m.extend_from_slice(b"user\0");
    m.extend_from_slice(user.as_bytes());
    m.extend_from_slice(&[0, 0]);
    m
}

/// The text of an ErrorResponse: "FATAL: message (SQLSTATE code)".
fn pg_error_text(e: &backend::ErrorResponseBody) -> String {
    let (mut sev, mut msg, mut code) = (String::new(), String::new(), String::new());
    let mut fields = e.fields();
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'S' => sev = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => msg = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    if code.is_empty() {
        format!("{sev}: {msg}")
    } else {
        format!("{sev}: {msg} (SQLSTATE {code})")
    }
}

/// Reads one backend message (None when the peer closed first).
async fn pg_message<S: AsyncRead + AsyncWrite + Unpin + Send>(
    s: &mut Session<S>,
    step: usize,
    what: &str,
) -> Result<backend::Message, Outcome> {
    loop {
        let mut b = BytesMut::from(&s.buf[..]);
        let before = b.len();
        match backend::Message::parse(&mut b) {
            Ok(Some(m)) => {
                s.consume(before - b.len());
                return Ok(m);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(Outcome::new(
                    chk::L7RSP,
                    format!("invalid PostgreSQL message ({e}) at step {step}"),
                ))
            }
        }
        if s.last_read() {
            return Err(Outcome::new(
                chk::L7RSP,
                format!("PostgreSQL closed the connection ({what}) at step {step}"),
            ));
        }
        s.fill().await.map_err(|e| read_failed(e, step, what))?;
    }
}

async fn pgsql_reply<S: AsyncRead + AsyncWrite + Unpin + Send>(
    s: &mut Session<S>,
    step: usize,
) -> Result<Outcome, Outcome> {
    s.need(5)
        .await
        .map_err(|e| read_failed(e, step, "expect PostgreSQL reply"))?;
    match s.buf.first() {
        Some(b'R') => Ok(Outcome::new(chk::L7OK, "PostgreSQL server is ok")),
        Some(b'E') => match pg_message(s, step, "error").await? {
            backend::Message::ErrorResponse(e) => Err(Outcome::new(chk::L7RSP, pg_error_text(&e))),
            _ => Err(Outcome::new(chk::L7RSP, "PostgreSQL unknown error")),
        },
        _ => Err(Outcome::new(chk::L7RSP, "PostgreSQL unknown error")),
    }
}

/// A password that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
    Any,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RoleSpec {
    pub user: String,
    pub password: Option<Secret>,
    pub database: String,
    pub role: Role,
    /// Standbys replaying more than this behind are not UP.
    pub max_lag: Option<Duration>,
}

/// Replay lag is 0 on a primary and on a standby that replayed all it received
/// (an idle primary produces no transactions, so the last replay timestamp alone
/// would grow forever); behind that, the age of the last replayed commit, or
/// the time since start-up when none was replayed yet.
pub const ROLE_QUERY: &str = "SELECT pg_is_in_recovery()::text, \
     (CASE WHEN NOT pg_is_in_recovery() THEN 0 \
     WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
     ELSE EXTRACT(EPOCH FROM now() - COALESCE(pg_last_xact_replay_timestamp(), \
     pg_postmaster_start_time())) END)::float8::text";

async fn pg_send<S: AsyncRead + AsyncWrite + Unpin + Send>(
    s: &mut Session<S>,
    m: &BytesMut,
    step: usize,
    what: &str,
) -> Result<(), Outcome> {
    // Sending clears the receive buffer: keep any bytes not parsed yet.
    let pending = std::mem::take(&mut s.buf);
    let r = s.send(m).await;
    s.buf = pending;
    r.map_err(|e| match e {
        ReadErr::Timeout => Outcome::new(chk::L7TOUT, format!("timeout sending {what}")),
        ReadErr::Io(e) => Outcome::new(
            chk::L4CON,
            format!("{} sending {what} at step {step}", io_text(&e)),
        ),
    })
}

fn encode(f: impl FnOnce(&mut BytesMut) -> std::io::Result<()>) -> Result<BytesMut, Outcome> {
    let mut b = BytesMut::new();
    f(&mut b).map_err(|e| Outcome::new(chk::L7RSP, format!("encoding a message: {e}")))?;
    Ok(b)
}

async fn pg_role<S: AsyncRead + AsyncWrite + Unpin + Send>(
    spec: &RoleSpec,
    s: &mut Session<S>,
    step: usize,
) -> Result<Outcome, Outcome> {
    let startup = encode(|b| {
        frontend::startup_message(
            [
                ("user", spec.user.as_str()),
                ("database", spec.database.as_str()),
                ("application_name", "lb-health-check"),
            ],
            b,
        )
    })?;
    pg_send(s, &startup, step, "StartupMessage").await?;
    let password = || {
        spec.password
            .as_ref()
            .map(|p| p.0.as_bytes())
            .ok_or_else(|| {
                Outcome::new(
                    chk::L7STS,
                    "the server asks for a password and none is configured",
                )
            })
    };
    let mut scram: Option<sasl::ScramSha256> = None;
    // Authentication, then the start-up messages up to ReadyForQuery.
    loop {
        let m = pg_message(s, step, "login").await?;
        let reply = match m {
            backend::Message::AuthenticationOk => None,
            backend::Message::AuthenticationCleartextPassword => {
                let p = password()?;
                Some(encode(|b| frontend::password_message(p, b))?)
            }
            backend::Message::AuthenticationMd5Password(body) => {
                let h = md5_hash(spec.user.as_bytes(), password()?, body.salt());
                Some(encode(|b| frontend::password_message(h.as_bytes(), b))?)
            }
            backend::Message::AuthenticationSasl(body) => {
                let mut mechs = body.mechanisms();
                let mut scram_ok = false;
                while let Ok(Some(m)) = mechs.next() {
                    scram_ok |= m == sasl::SCRAM_SHA_256;
                }
                if !scram_ok {
                    return Err(Outcome::new(
                        chk::L7STS,
                        "the server offers no SASL mechanism lb supports (SCRAM-SHA-256)",
                    ));
                }
                let sc = sasl::ScramSha256::new(password()?, sasl::ChannelBinding::unsupported());
                let msg = encode(|b| {
                    frontend::sasl_initial_response(sasl::SCRAM_SHA_256, sc.message(), b)
                })?;
                scram = Some(sc);
                Some(msg)
            }
            backend::Message::AuthenticationSaslContinue(body) => {
                let sc = scram
                    .as_mut()
                    .ok_or_else(|| Outcome::new(chk::L7RSP, "SASLContinue before SASL start"))?;
                sc.update(body.data())
                    .map_err(|e| Outcome::new(chk::L7RSP, format!("SCRAM exchange failed: {e}")))?;
                let msg = sc.message().to_vec();
                Some(encode(|b| frontend::sasl_response(&msg, b))?)
            }
            backend::Message::AuthenticationSaslFinal(body) => {
                let sc = scram
                    .as_mut()
                    .ok_or_else(|| Outcome::new(chk::L7RSP, "SASLFinal before SASL start"))?;
                sc.finish(body.data()).map_err(|e| {
                    Outcome::new(
                        chk::L7RSP,
                        format!("the server's SCRAM signature is invalid: {e}"),
                    )
                })?;
                None
            }
            backend::Message::ErrorResponse(e) => {
                return Err(Outcome::new(chk::L7STS, pg_error_text(&e)))
            }
            backend::Message::ReadyForQuery(_) => break,
            backend::Message::ParameterStatus(_)
            | backend::Message::BackendKeyData(_)
            | backend::Message::NoticeResponse(_) => None,
            _ => {
                return Err(Outcome::new(
                    chk::L7RSP,
                    "unsupported authentication request or message during login",
                ))
            }
        };
        if let Some(r) = reply {
            pg_send(s, &r, step, "authentication").await?;
        }
    }
    let q = encode(|b| frontend::query(ROLE_QUERY, b))?;
    pg_send(s, &q, step, "query").await?;
    let mut row: Option<(String, String)> = None;
    loop {
        match pg_message(s, step, "query").await? {
            backend::Message::DataRow(d) => {
                let buf = d.buffer();
                let mut vals = Vec::new();
                let mut ranges = d.ranges();
                while let Ok(Some(r)) = ranges.next() {
                    vals.push(
                        r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())
                            .unwrap_or_default(),
                    );
                }
                if let [a, b] = vals.as_slice() {
                    row = Some((a.clone(), b.clone()));
                }
            }
            backend::Message::ErrorResponse(e) => {
                return Err(Outcome::new(chk::L7STS, pg_error_text(&e)))
            }
            backend::Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    let mut x = BytesMut::new();
    frontend::terminate(&mut x);
    let _ = pg_send(s, &x, step, "Terminate").await;
    let Some((recovery, lag)) = row else {
        return Err(Outcome::new(chk::L7RSP, "the role query returned no row"));
    };
    let standby = recovery == "true";
    let lag: f64 = lag.parse().unwrap_or(0.0);
    judge_role(spec, standby, lag)
}

/// UP only in the wanted role (and within max-lag for standbys).
pub fn judge_role(spec: &RoleSpec, standby: bool, lag: f64) -> Result<Outcome, Outcome> {
    let now = if standby {
        format!("standby, replay lag {lag:.1}s")
    } else {
        "primary".to_string()
    };
    match (spec.role, standby) {
        (Role::Primary, true) => Err(Outcome::new(chk::L7STS, format!("{now}: not the primary"))),
        (Role::Standby, false) => Err(Outcome::new(chk::L7STS, "primary: not a standby")),
        (_, true) => match spec.max_lag {
            Some(max) if lag > max.as_secs_f64() => Err(Outcome::new(
                chk::L7STS,
                format!("{now}: over max-lag {}s", max.as_secs_f64()),
            )),
            _ => Ok(Outcome::new(chk::L7OK, now)),
        },
        (_, false) => Ok(Outcome::new(chk::L7OK, now)),
    }
}

/// One `http-check expect` rule.
#[derive(Clone, Debug)]
pub struct HttpExpect {
    pub negate: bool,
    pub kind: HttpMatch,
}

#[derive(Clone, Debug)]
pub enum HttpMatch {
    /// Inclusive status ranges.
    Status(Vec<(u16, u16)>),
    Rstatus(regex::Regex),
    String(Vec<u8>),
    Rstring(regex::bytes::Regex),
}

/// `200`, `200-399`, `200,301-302`.
pub fn parse_status_list(s: &str) -> Option<Vec<(u16, u16)>> {
    s.split(',')
        .map(|p| {
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn http<S: AsyncRead + AsyncWrite + Unpin + Send>(
    expects: &[HttpExpect],
    disable_on_404: bool,
    s: &mut Session<S>,
    step: usize,
) -> Result<Outcome, Outcome> {
    // Headers first.
    let head_end = loop {
        if let Some(i) = find(&s.buf, b"\r\n\r\n") {
            break i + 4;
        }
        if s.last_read() {
            if s.buf.is_empty() {
                return Err(Outcome::new(chk::L7RSP, "Empty response"));
            }
            break s.buf.len();
        }
        s.fill()
            .await
            .map_err(|e| read_failed(e, step, "HTTP response"))?;
    };
    let head = String::from_utf8_lossy(&s.buf[..head_end]).into_owned();
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (ver, code, reason) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    let code: u16 = match (ver, code.and_then(|c| c.parse().ok())) {
        (Some(v), Some(c)) if v.starts_with("HTTP/") && (100..1000).contains(&c) => c,
        _ => return Err(Outcome::new(chk::L7RSP, "Invalid http response")),
    };
    let reason = reason.trim().to_string();
    let code32 = u32::from(code);
    if disable_on_404 && code == 404 {
        return Ok(Outcome::new(chk::L7OKC, reason).with_code(code32));
    }
    if expects.is_empty() {
        // HAProxy's default: 2xx and 3xx pass.
        return if (200..400).contains(&code) {
            Ok(Outcome::new(chk::L7OK, reason).with_code(code32))
        } else {
            Err(Outcome::new(chk::L7STS, reason).with_code(code32))
        };
    }
    let content_length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    let mut body_read = false;
    for e in expects {
        let matched = match &e.kind {
            HttpMatch::Status(ranges) => ranges.iter().any(|&(a, b)| (a..=b).contains(&code)),
            HttpMatch::Rstatus(r) => r.is_match(&code.to_string()),
            HttpMatch::String(_) | HttpMatch::Rstring(_) => {
                if !body_read {
                    let want = content_length.map(|n| head_end + n);
                    while want.is_none_or(|w| s.buf.len() < w) && !s.last_read() {
                        s.fill()
                            .await
                            .map_err(|e| read_failed(e, step, "HTTP body"))?;
                    }
                    body_read = true;
                }
                let end = content_length.map_or(s.buf.len(), |n| (head_end + n).min(s.buf.len()));
                let body = &s.buf[head_end.min(end)..end];
                match &e.kind {
                    HttpMatch::String(p) => find(body, p).is_some(),
                    HttpMatch::Rstring(r) => r.is_match(body),
                    _ => unreachable!(),
                }
            }
        };
        if matched == e.negate {
            return Err(match e.kind {
                HttpMatch::Status(_) | HttpMatch::Rstatus(_) => Outcome::new(
                    chk::L7STS,
                    format!("HTTP status check returned code <{code}>"),
                ),
                _ => Outcome::new(chk::L7RSP, "HTTP content check did not match"),
            }
            .with_code(code32));
        }
    }
    Ok(Outcome::new(chk::L7OK, reason).with_code(code32))
}

/// The login packet HAProxy's `option mysql-check user U` sends (no password,
/// sequence id 1).
pub fn mysql_login(user: &str, post41: bool) -> Vec<u8> {
    let mut p = Vec::new();
    if post41 {
        // CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION, max packet, utf8.
        p.extend_from_slice(&[0x00, 0x82, 0x00, 0x00]);
        p.extend_from_slice(&[0x00, 0x80, 0x00, 0x01]);
        p.push(0x21);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(0);
    } else {
        p.extend_from_slice(&[0x00, 0x80]);
        p.extend_from_slice(&[0x00, 0x00, 0x01]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
    }
    let mut m = (p.len() as u32).to_le_bytes()[..3].to_vec();
    m.push(1);
    m.extend_from_slice(&p);
    m
}

/// Reads one MySQL packet; returns its payload.
async fn mysql_packet<S: AsyncRead + AsyncWrite + Unpin + Send>(
    s: &mut Session<S>,
    step: usize,
    what: &str,
) -> Result<Vec<u8>, Outcome> {
    s.need(4).await.map_err(|e| read_failed(e, step, what))?;
    if s.buf.len() < 4 {
        return Err(Outcome::new(
            chk::L7RSP,
            format!("MySQL: short packet ({what})"),
        ));
    }
    let len = u32::from_le_bytes([s.buf[0], s.buf[1], s.buf[2], 0]) as usize;
    s.need(4 + len)
        .await
        .map_err(|e| read_failed(e, step, what))?;
    if s.buf.len() < 4 + len {
        return Err(Outcome::new(
            chk::L7RSP,
            format!("MySQL: short packet ({what})"),
        ));
    }
    let payload = s.buf[4..4 + len].to_vec();
    s.consume(4 + len);
    Ok(payload)
}

fn mysql_error(p: &[u8]) -> Outcome {
    let code = if p.len() >= 3 {
        u16::from_le_bytes([p[1], p[2]])
    } else {
        0
    };
    // Post-4.1 errors carry '#' and a 5-byte SQL state before the text.
    let text = if p.len() > 9 && p[3] == b'#' {
        &p[9..]
    } else {
        p.get(3..).unwrap_or(&[])
    };
    Outcome::new(
        chk::L7STS,
        format!("{code}: {}", String::from_utf8_lossy(text)),
    )
}

async fn mysql<S: AsyncRead + AsyncWrite + Unpin + Send>(
    user: Option<&str>,
    post41: bool,
    s: &mut Session<S>,
    step: usize,
) -> Result<Outcome, Outcome> {
    let greeting = mysql_packet(s, step, "MySQL greeting").await?;
    let version = match greeting.first() {
        Some(0xff) => return Err(mysql_error(&greeting)),
        Some(10) => {
            let end = greeting[1..]
                .iter()
                .position(|&b| b == 0)
                .map_or(greeting.len(), |i| i + 1);
            String::from_utf8_lossy(&greeting[1..end]).into_owned()
        }
        _ => {
            return Err(Outcome::new(
                chk::L7RSP,
                "MySQL: not a protocol 10 greeting",
            ))
        }
    };
    let Some(user) = user else {
        return Ok(Outcome::new(chk::L7OK, version));
    };
    s.send(&mysql_login(user, post41))
        .await
        .map_err(|e| read_failed(e, step, "MySQL login"))?;
    let reply = mysql_packet(s, step, "MySQL login reply").await?;
    let out = match reply.first() {
        Some(0x00) => Ok(Outcome::new(chk::L7OK, version)),
        Some(0xff) => Err(mysql_error(&reply)),
        _ => Err(Outcome::new(
            chk::L7RSP,
            "MySQL: unexpected reply to the login (authentication plugin switch?)",
        )),
    };
    // COM_QUIT, sequence 0.
    let _ = s.send(&[1, 0, 0, 0, 1]).await;
    out
}

/// An anonymous LDAPv3 simple bind, message id 1 (HAProxy's `ldap-check`).
pub const LDAP_BIND: [u8; 14] = [
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
];

/// A BER length at `p[i..]`: (length, bytes used).
fn ber_len(p: &[u8], i: usize) -> Option<(usize, usize)> {
    let b = *p.get(i)?;
    if b & 0x80 == 0 {
        return Some((b as usize, 1));
    }
    let n = (b & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let mut v = 0usize;
    for k in 0..n {
        v = (v << 8) | *p.get(i + 1 + k)? as usize;
    }
    Some((v, 1 + n))
}

/// The resultCode of a BindResponse (None: not one).
pub fn ldap_bind_result(p: &[u8]) -> Option<u8> {
    if *p.first()? != 0x30 {
        return None;
    }
    let (_, l) = ber_len(p, 1)?;
    let mut i = 1 + l;
    // messageID INTEGER
    if *p.get(i)? != 0x02 {
        return None;
    }
    let (idl, l) = ber_len(p, i + 1)?;
    i += 1 + l + idl;
    // [APPLICATION 1] BindResponse
    if *p.get(i)? != 0x61 {
        return None;
    }
    let (_, l) = ber_len(p, i + 1)?;
    i += 1 + l;
    // resultCode ENUMERATED
    if *p.get(i)? != 0x0a || *p.get(i + 1)? != 0x01 {
        return None;
    }
    p.get(i + 2).copied()
}

async fn ldap<S: AsyncRead + AsyncWrite + Unpin + Send>(
    s: &mut Session<S>,
    step: usize,
) -> Result<Outcome, Outcome> {
    // Wait for the whole message: its length is in its header.
    loop {
        if let Some((len, l)) = ber_len(&s.buf, 1) {
            if s.buf.len() >= 1 + l + len {
                break;
            }
        }
        if s.last_read() {
            break;
        }
        s.fill()
            .await
            .map_err(|e| read_failed(e, step, "LDAP bind response"))?;
    }
    if s.buf.first() != Some(&0x30) {
        return Err(Outcome::new(chk::L7RSP, "Not LDAPv3 protocol"));
    }
    match ldap_bind_result(&s.buf) {
        Some(0) => Ok(Outcome::new(chk::L7OK, "Success")),
        Some(c) => Err(Outcome::new(
            chk::L7STS,
            format!("LDAP bind failed, result code {c}"),
        )),
        None => Err(Outcome::new(chk::L7RSP, "Not a LDAPv3 bind response")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::tests::{pipe, t};
    use super::super::engine::{run, Connect, Step};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn pgsql_startup_is_haproxys_bytes() {
        // HAProxy: length, 3.0, "user\0", name, "\0\0".
        let m = pgsql_startup("haproxy");
        let mut want = vec![0, 0, 0, 22, 0, 3, 0, 0];
        want.extend_from_slice(b"user\0haproxy\0\0");
        assert_eq!(m, want);
    }

    async fn pg_answer(reply: Vec<u8>) -> Outcome {
        let p = pipe(move |mut b| async move {
            let mut q = [0u8; 20];
            b.read_exact(&mut q).await.unwrap();
            b.write_all(&reply).await.unwrap();
            let _ = b.read(&mut q).await;
        });
        let steps = [
            Step::Connect(Connect::default()),
            Step::Send(pgsql_startup("checker")),
            Step::Proto(Proto::PgsqlReply),
        ];
        run(&steps, &p, &t(2000)).await
    }

    #[tokio::test]
    async fn pgsql_any_auth_request_is_up_error_is_down_with_text() {
        // AuthenticationOk, MD5 (salt), SASL SCRAM-SHA-256.
        for r in [
            hex("520000000800000000"),
            hex("520000000c0000000501020304"),
            hex("52000000170000000A534352414D2D5348412D3235360000"),
        ] {
            let o = pg_answer(r).await;
            assert_eq!(o.status, chk::L7OK, "{o:?}");
        }
        let mut e = vec![b'E'];
        let body = b"SFATAL\0C28000\0Mrole \"checker\" does not exist\0\0";
        e.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        e.extend_from_slice(body);
        let o = pg_answer(e).await;
        assert_eq!(o.status, chk::L7RSP);
        assert_eq!(
            o.info,
            "FATAL: role \"checker\" does not exist (SQLSTATE 28000)"
        );
        let o = pg_answer(b"HTTP/1.0 400 Bad\r\n".to_vec()).await;
        assert_eq!(o.status, chk::L7RSP);
        assert_eq!(o.info, "PostgreSQL unknown error");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn role_judgement() {
        let mut spec = RoleSpec {
            user: "u".into(),
            password: None,
            database: "d".into(),
            role: Role::Primary,
            max_lag: None,
        };
        assert!(judge_role(&spec, false, 0.0).is_ok());
        assert!(judge_role(&spec, true, 0.0).is_err());
        spec.role = Role::Standby;
        assert!(judge_role(&spec, false, 0.0).is_err());
        assert!(judge_role(&spec, true, 100.0).is_ok());
        spec.max_lag = Some(Duration::from_secs(5));
        assert!(judge_role(&spec, true, 4.9).is_ok());
        let e = judge_role(&spec, true, 7.25).unwrap_err();
        assert_eq!(e.info, "standby, replay lag 7.2s: over max-lag 5s");
        spec.role = Role::Any;
        assert!(judge_role(&spec, false, 0.0).is_ok());
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(..)");
    }

    async fn http_answer(reply: &'static [u8], expects: Vec<HttpExpect>) -> Outcome {
        let p = pipe(move |mut b| async move {
            let mut q = vec![0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = b.read(&mut q).await.unwrap();
                got.extend_from_slice(&q[..n]);
            }
            assert!(got.starts_with(b"OPTIONS /primary HTTP/1.0\r\n"));
            for c in reply.chunks(7) {
                b.write_all(c).await.unwrap();
            }
        });
        let steps = [
            Step::Connect(Connect::default()),
            Step::Send(b"OPTIONS /primary HTTP/1.0\r\n\r\n".to_vec()),
            Step::Proto(Proto::Http(expects, false)),
        ];
        run(&steps, &p, &t(2000)).await
    }

    #[tokio::test]
    async fn http_default_status_and_expects() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\nrunning";
        let down = b"HTTP/1.0 503 Service Unavailable\r\n\r\nreplica";
        let o = http_answer(ok, vec![]).await;
        assert_eq!((o.status, o.code, o.info.as_str()), (chk::L7OK, 200, "OK"));
        let o = http_answer(down, vec![]).await;
        assert_eq!((o.status, o.code), (chk::L7STS, 503));
        let st = |s| HttpExpect {
            negate: false,
            kind: HttpMatch::Status(parse_status_list(s).unwrap()),
        };
        let o = http_answer(down, vec![st("200")]).await;
        assert_eq!(o.status, chk::L7STS);
        assert_eq!(o.info, "HTTP status check returned code <503>");
        let o = http_answer(down, vec![st("500-599")]).await;
        assert_eq!(o.status, chk::L7OK);
        let s = HttpExpect {
            negate: false,
            kind: HttpMatch::String(b"running".to_vec()),
        };
        assert_eq!(http_answer(ok, vec![s.clone()]).await.status, chk::L7OK);
        assert_eq!(http_answer(down, vec![s]).await.status, chk::L7RSP);
        let o = http_answer(b"garbage\r\n\r\n", vec![]).await;
        assert_eq!(o.status, chk::L7RSP);
    }

    #[test]
    fn mysql_login_bytes() {
        let m = mysql_login("haproxy", true);
        assert_eq!(&m[..4], &[41, 0, 0, 1]);
        assert_eq!(m.len(), 45);
        assert!(m.ends_with(b"haproxy\0\0"));
        let m = mysql_login("u", false);
        assert_eq!(m, vec![7, 0, 0, 1, 0, 0x80, 0, 0, 1, b'u', 0]);
    }

    #[tokio::test]
    async fn mysql_greeting_login_and_error() {
        let greeting = |b: &mut Vec<u8>| {
            let mut p = vec![10];
            p.extend_from_slice(b"10.11.6-MariaDB\0");
            p.extend_from_slice(&[0; 20]);
            b.extend_from_slice(&(p.len() as u32).to_le_bytes()[..3]);
            b.push(0);
            b.extend_from_slice(&p);
        };
        let p = pipe(move |mut b| async move {
            let mut g = Vec::new();
            greeting(&mut g);
            b.write_all(&g).await.unwrap();
            let mut q = vec![0u8; 45];
            b.read_exact(&mut q).await.unwrap();
            let mut err = vec![0xff, 0x15, 0x04, b'#'];
            err.extend_from_slice(b"28000Access denied for user 'x'");
            let mut m = (err.len() as u32).to_le_bytes()[..3].to_vec();
            m.push(2);
            m.extend_from_slice(&err);
            b.write_all(&m).await.unwrap();
            let _ = b.read(&mut q).await;
        });
        let steps = [
            Step::Connect(Connect::default()),
            Step::Proto(Proto::Mysql {
                user: Some("haproxy".into()),
                post41: true,
            }),
        ];
        let o = run(&steps, &p, &t(2000)).await;
        assert_eq!(o.status, chk::L7STS);
        assert_eq!(o.info, "1045: Access denied for user 'x'");
    }

    #[test]
    fn ldap_bind_response() {
        // Success.
        let ok = [
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(ldap_bind_result(&ok), Some(0));
        let mut bad = ok;
        bad[9] = 49;
        assert_eq!(ldap_bind_result(&bad), Some(49));
        assert_eq!(ldap_bind_result(b"HTTP"), None);
        // Long-form length.
        let long = [
            0x30, 0x84, 0, 0, 0, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00,
        ];
        assert_eq!(ldap_bind_result(&long), Some(0));
    }
}

/// `option ssl-hello-chk`'s probe: an SSLv3 ClientHello record (client
/// version 3.0, `unix_time` in the random's first 4 bytes, no session,
/// 39 classic cipher suites, null compression). Any server with a TLS stack
/// answers it with a record: a ServerHello or, these days, an alert.
pub fn sslv3_client_hello(unix_time: u32) -> Vec<u8> {
    let ciphers: Vec<u16> = (0x0001..=0x001b).chain(0x002f..=0x003a).collect();
    let mut hello = vec![0x03, 0x00];
    hello.extend_from_slice(&unix_time.to_be_bytes());
    // The rest of the 32-byte random: any bytes; these say who asked.
    hello.extend_from_slice(b"lb ssl-hello-chk, lb ssl-hc\n");
    hello.push(0); // no session id
    hello.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
    for c in ciphers {
        hello.extend_from_slice(&c.to_be_bytes());
    }
    hello.extend_from_slice(&[0x01, 0x00]); // one method: null
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&hello);
    let mut rec = vec![0x16, 0x03, 0x00];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod ssl_hello_tests {
    #[test]
    fn sslv3_hello_is_a_well_formed_record() {
        let r = super::sslv3_client_hello(0x5f00_0000);
        // HAProxy's probe has the same lengths: 0x79 after the record
        // header, 0x75 after the handshake header, 78 bytes of suites.
        assert_eq!(&r[..5], &[0x16, 0x03, 0x00, 0x00, 0x79]);
        assert_eq!(&r[5..9], &[0x01, 0x00, 0x00, 0x75]);
        assert_eq!(r.len(), 5 + 0x79);
        assert_eq!(&r[11..15], &[0x5f, 0, 0, 0]);
        assert_eq!(r[43], 0);
        assert_eq!(&r[44..46], &[0x00, 0x4e]);
        assert_eq!(&r[r.len() - 2..], &[0x01, 0x00]);
    }
}
