//! Health checks: what a backend's check options compile to ([`Plan`]), the
//! rule engine that runs them ([`engine`]) and the protocol steps
//! ([`proto`]). The scheduler that runs one task per server and applies the
//! results is [`crate::health`].

use std::net::SocketAddr;
use std::time::Duration;

use lb_common::chk;

use super::engine::{Connect, Exec, Expect, Matcher, Step, Timeouts};
use super::proto::{HttpExpect, HttpMatch, Proto, Role, RoleSpec, Secret};
use crate::config::{
    Backend, CheckExpect, ExpectMatch, HealthCheck, HttpCheckRule, Origin, PasswordSource, PgRole,
    ProxyProtocol, Server, TcpCheckRule,
};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{origin}: {what} is not supported by lb's health checks")]
    Unsupported { origin: Origin, what: String },
    #[error("{0}: check-ssl: {1}")]
    Tls(Origin, String),
    #[error("{origin}: invalid regular expression '{pattern}': {reason}")]
    Regex {
        origin: Origin,
        pattern: String,
        reason: String,
    },
    #[error("{origin}: password-file {path}: {source}")]
    PasswordFile {
        origin: Origin,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: password-env {var}: the variable is not set (or not UTF-8)")]
    PasswordEnv { origin: Origin, var: String },
}

impl PlanError {
    fn unsupported(origin: &Origin, what: impl Into<String>) -> Self {
        Self::Unsupported {
            origin: origin.clone(),
            what: what.into(),
        }
    }
}

/// Everything one server's check needs at run time.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Where checks connect unless a `connect` rule says otherwise (`addr`
    /// and `port` override the server's address).
    pub target: SocketAddr,
    pub steps: Vec<Step>,
    pub timeouts: Timeouts,
    pub rise: u32,
    pub fall: u32,
    /// Interval while changing state or not checked yet (`fastinter`,
    /// default `inter`).
    pub fastinter: Duration,
    /// Interval while DOWN (`downinter`, default `inter`).
    pub downinter: Duration,
    /// `option log-health-checks`: log every change of check result, not
    /// only state changes.
    pub log_checks: bool,
    /// `http-check disable-on-404`: a 404 puts an UP server in NOLB, a 2xx
    /// or 3xx takes it out.
    pub disable_on_404: bool,
    /// `http-check send-state`: the request carries [`STATE_MARK`], replaced
    /// before each check by the server's `X-Haproxy-Server-State` value.
    pub send_state: bool,
    /// `check-ssl`: how the connections marked `tls` start TLS.
    pub tls: Option<super::tls::TlsSetup>,
}

/// Stands in a check request for the server's state (`send-state`).
pub const STATE_MARK: &str = "\u{0}lb-server-state\u{0}";

impl Plan {
    /// HAProxy's srv_getinter(): `inter` at full health, `downinter` at zero
    /// health while DOWN, `fastinter` in between (and before the first check).
    pub fn interval(&self, health: u32, down: bool) -> Duration {
        if health == self.rise + self.fall - 1 {
            self.timeouts.inter
        } else if down && health == 0 {
            self.downinter
        } else {
            self.fastinter
        }
    }
}

/// Reads a password from where the config says (file: its first line).
pub fn read_password(src: &PasswordSource, origin: &Origin) -> Result<Secret, PlanError> {
    match src {
        PasswordSource::Literal(p) => Ok(Secret(p.clone())),
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| PlanError::PasswordFile {
                origin: origin.clone(),
                path: path.clone(),
                source,
            })?;
            Ok(Secret(text.lines().next().unwrap_or("").to_string()))
        }
        PasswordSource::Env(var) => {
            std::env::var(var)
                .map(Secret)
                .map_err(|_| PlanError::PasswordEnv {
                    origin: origin.clone(),
                    var: var.clone(),
                })
        }
    }
}

/// What `-lf` formats may use: `%%` and `%[fetch(,conv)*]` with the fetches
/// `srv_name`, `be_name`, `srv_port` and the converters `hex`, `lower`, `upper`.
fn expand_lf(
    fmt: &str,
    b: &Backend,
    s: &Server,
    target: SocketAddr,
    origin: &Origin,
) -> Result<String, PlanError> {
    let mut out = String::new();
    let mut rest = fmt;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(t) = tail.strip_prefix('%') {
            out.push('%');
            rest = t;
            continue;
        }
        let Some(expr) = tail.strip_prefix('[') else {
            return Err(PlanError::unsupported(
                origin,
                format!("log-format '{fmt}' (only %[...] expressions and %% are)"),
            ));
        };
        let Some(end) = expr.find(']') else {
            return Err(PlanError::unsupported(
                origin,
                format!("log-format '{fmt}' (missing ']')"),
            ));
        };
        let mut parts = expr[..end].split(',');
        let mut v = match parts.next().unwrap_or("") {
            "srv_name" => s.name.clone(),
            "be_name" => b.name.clone(),
            "srv_port" => target.port().to_string(),
            f => {
                return Err(PlanError::unsupported(
                    origin,
                    format!(
                        "sample fetch '{f}' in a log-format (srv_name, be_name and srv_port are)"
                    ),
                ))
            }
        };
        for c in parts {
            v = match c {
                "hex" => v.bytes().map(|b| format!("{b:02X}")).collect(),
                "lower" => v.to_lowercase(),
                "upper" => v.to_uppercase(),
                _ => {
                    return Err(PlanError::unsupported(
                        origin,
                        format!("converter '{c}' in a log-format (hex, lower and upper are)"),
                    ))
                }
            }
        }
        out.push_str(&v);
        rest = &expr[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn hex_decode(s: &str, origin: &Origin) -> Result<Vec<u8>, PlanError> {
    let s = s.trim();
    // Byte slicing below needs ASCII.
    if !s.is_ascii() {
        return Err(PlanError::unsupported(
            origin,
            format!("'{s}' as hexadecimal (not ASCII)"),
        ));
    }
    if !s.len().is_multiple_of(2) {
        return Err(PlanError::unsupported(
            origin,
            format!("'{s}' as hexadecimal (odd number of digits)"),
        ));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| PlanError::unsupported(origin, format!("'{s}' as hexadecimal")))
        })
        .collect()
}

fn regex_err(origin: &Origin, pattern: &str, e: regex::Error) -> PlanError {
    PlanError::Regex {
        origin: origin.clone(),
        pattern: pattern.to_string(),
        reason: e.to_string(),
    }
}

struct Ctx<'a> {
    b: &'a Backend,
    s: &'a Server,
    target: SocketAddr,
}

impl Ctx<'_> {
    fn lf(&self, fmt: &str, origin: &Origin) -> Result<String, PlanError> {
        expand_lf(fmt, self.b, self.s, self.target, origin)
    }

    fn proxy_version(&self) -> crate::datapath::proxy_proto::Version {
        match self.s.params.send_proxy {
            Some(ProxyProtocol::V2) => crate::datapath::proxy_proto::Version::V2,
            _ => crate::datapath::proxy_proto::Version::V1,
        }
    }

    fn connect(
        &self,
        c: &crate::config::CheckConnect,
        origin: &Origin,
    ) -> Result<Connect, PlanError> {
        if let Some(o) = c.other.first() {
            return Err(PlanError::unsupported(origin, format!("connect {o}")));
        }
        Ok(Connect {
            port: c.port,
            addr: c.addr,
            send_proxy: (c.send_proxy || (c.default && self.s.params.check_send_proxy))
                .then(|| self.proxy_version()),
            linger: c.linger,
            // `default`: the server's settings, `check-ssl` among them.
            tls: c.default && self.s.params.check_tls.enabled,
        })
    }

    fn expect(&self, e: &CheckExpect, origin: &Origin) -> Result<Expect, PlanError> {
        let (matcher, what) = match &e.matcher {
            ExpectMatch::String(s) => (
                Matcher::Bytes(s.as_bytes().to_vec()),
                format!("string '{s}'"),
            ),
            ExpectMatch::StringLf(f) => {
                let s = self.lf(f, origin)?;
                (
                    Matcher::Bytes(s.clone().into_bytes()),
                    format!("string '{s}'"),
                )
            }
            ExpectMatch::Binary(v) => (
                Matcher::Bytes(v.clone()),
                format!(
                    "binary '{}'",
                    v.iter().map(|b| format!("{b:02X}")).collect::<String>()
                ),
            ),
            ExpectMatch::BinaryLf(f) => {
                let h = self.lf(f, origin)?;
                (
                    Matcher::Bytes(hex_decode(&h, origin)?),
                    format!("binary '{h}'"),
                )
            }
            ExpectMatch::Rstring(r) => (
                Matcher::Regex(regex::bytes::Regex::new(r).map_err(|e| regex_err(origin, r, e))?),
                format!("rstring '{r}'"),
            ),
            ExpectMatch::Rbinary(r) => (
                Matcher::HexRegex(
                    regex::Regex::new(&format!("(?i){r}")).map_err(|e| regex_err(origin, r, e))?,
                ),
                format!("rbinary '{r}'"),
            ),
            m => {
                return Err(PlanError::unsupported(
                    origin,
                    format!("tcp-check expect {m:?}"),
                ))
            }
        };
        let mut x = Expect::new(e.negate, matcher, what);
        x.min_recv = e.min_recv.unwrap_or(-1);
        for o in &e.other {
            let (k, v) = o.split_once(' ').unwrap_or((o, ""));
            let status = || {
                super::engine::status_by_name(v)
                    .ok_or_else(|| PlanError::unsupported(origin, format!("status '{v}'")))
            };
            match k {
                "ok-status" => x.ok_status = status()?,
                "error-status" => x.error_status = status()?,
                "tout-status" => x.tout_status = status()?,
                "on-success" => x.on_success = Some(self.lf(v, origin)?),
                "on-error" => x.on_error = Some(self.lf(v, origin)?),
                _ => return Err(PlanError::unsupported(origin, format!("expect {o}"))),
            }
        }
        Ok(x)
    }
}

/// A server's numeric id: `id`, else its position in the backend.
fn server_id(b: &Backend, s: &Server) -> String {
    s.params
        .id
        .or_else(|| {
            b.servers
                .iter()
                .position(|x| x.name == s.name)
                .map(|i| i as u32 + 1)
        })
        .unwrap_or(0)
        .to_string()
}

fn rx(p: &str) -> regex::bytes::Regex {
    regex::bytes::Regex::new(p).expect("built-in pattern")
}

/// The check plan of server `s` of backend `b` (its `check` is set).
/// `secret` turns a password source into the password (the daemon reads
/// files and the environment; `lb check` passes a placeholder).
pub fn compile(
    b: &Backend,
    s: &Server,
    secret: &dyn Fn(&PasswordSource, &Origin) -> Result<Secret, PlanError>,
) -> Result<Plan, PlanError> {
    let target = SocketAddr::new(
        s.params.check_addr.unwrap_or(s.addr.ip()),
        s.params.check_port.unwrap_or(s.addr.port()),
    );
    let cx = Ctx { b, s, target };
    let inter = s.params.check_params.inter;
    let default_connect = Connect {
        send_proxy: s.params.check_send_proxy.then(|| cx.proxy_version()),
        tls: s.params.check_tls.enabled,
        ..Connect::default()
    };
    let tls = if s.params.check_tls.enabled {
        Some(
            super::tls::setup(&s.params.check_tls, target.ip())
                .map_err(|e| PlanError::Tls(s.origin.clone(), e))?,
        )
    } else {
        None
    };
    let mut steps = vec![Step::Connect(default_connect.clone())];
    // `http-check disable-on-404` and `send-state` (httpchk only).
    let (mut disable_on_404, mut send_state) = (false, false);
    let hc = b.health_check.as_ref();
    match hc.map(|h| (&h.value, &h.origin)) {
        None => {}
        Some((HealthCheck::TcpCheck, _)) => {
            let mut rules = Vec::new();
            for r in &b.tcp_check_rules {
                let o = &r.origin;
                match &r.value {
                    TcpCheckRule::Comment(_) => {}
                    TcpCheckRule::Connect(c) => rules.push(Step::Connect(cx.connect(c, o)?)),
                    TcpCheckRule::Send(d) => rules.push(Step::Send(d.clone())),
                    TcpCheckRule::SendLf(f) => rules.push(Step::Send(cx.lf(f, o)?.into_bytes())),
                    TcpCheckRule::SendBinaryLf(f) => {
                        rules.push(Step::Send(hex_decode(&cx.lf(f, o)?, o)?))
                    }
                    TcpCheckRule::Expect(e) => rules.push(Step::Expect(cx.expect(e, o)?)),
                    TcpCheckRule::Var(v) => {
                        return Err(PlanError::unsupported(o, format!("tcp-check {v}")))
                    }
                }
            }
            // An implicit connect comes first unless the rules start with one.
            if matches!(rules.first(), Some(Step::Connect(_))) {
                steps.clear();
            }
            steps.extend(rules);
        }
        Some((HealthCheck::RedisCheck, _)) => {
            steps.push(Step::Send(b"PING\r\n".to_vec()));
            let mut e = Expect::new(false, Matcher::Bytes(b"+PONG".to_vec()), "string '+PONG'");
            e.error_status = chk::L7STS;
            e.on_success = Some("Redis server is ok".into());
            e.error_payload = Some(0);
            steps.push(Step::Expect(e));
        }
        Some((HealthCheck::PgsqlCheck { user }, _)) => {
            steps.push(Step::Send(super::proto::pgsql_startup(user)));
            steps.push(Step::Proto(Proto::PgsqlReply));
        }
        Some((HealthCheck::PgsqlRoleCheck(rc), origin)) => {
            let password = match &rc.password {
                Some(p) => Some(secret(p, origin)?),
                None => None,
            };
            steps.push(Step::Proto(Proto::PgRole(Box::new(RoleSpec {
                user: rc.user.clone(),
                password,
                database: rc.database.clone().unwrap_or_else(|| rc.user.clone()),
                role: match rc.role {
                    PgRole::Primary => Role::Primary,
                    PgRole::Standby => Role::Standby,
                    PgRole::Any => Role::Any,
                },
                max_lag: rc.max_lag,
            }))));
        }
        Some((HealthCheck::MysqlCheck { user, post41 }, _)) => {
            steps.push(Step::Proto(Proto::Mysql {
                user: user.clone(),
                post41: *post41,
            }));
        }
        Some((HealthCheck::SslHelloChk, _)) => {
            // HAProxy's check: an SSLv3 ClientHello, then any TLS record
            // back (an alert from a server that refuses SSLv3 counts: the
            // TLS layer answered) within 5 bytes.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32);
            steps.push(Step::Send(super::proto::sslv3_client_hello(now)));
            let mut e = Expect::new(
                false,
                Matcher::HexRegex(regex::Regex::new("(?i)^1[56]").expect("built-in pattern")),
                "a TLS record",
            );
            e.min_recv = 5;
            e.ok_status = chk::L6OK;
            e.error_status = chk::L6RSP;
            e.tout_status = chk::L6TOUT;
            steps.push(Step::Expect(e));
        }
        Some((HealthCheck::LdapCheck, _)) => {
            steps.push(Step::Send(super::proto::LDAP_BIND.to_vec()));
            steps.push(Step::Proto(Proto::LdapBind));
        }
        Some((HealthCheck::SmtpChk { hello, domain }, _)) => {
            let mut banner =
                Expect::new(false, Matcher::Regex(rx("^[0-9]{3}[ \r]")), "SMTP banner");
            banner.min_recv = 4;
            steps.push(Step::Expect(banner));
            let mut ok = Expect::new(
                false,
                Matcher::Regex(rx("^2[0-9]{2}[ \r]")),
                "SMTP 2xx banner",
            );
            // As HAProxy: min-recv 4 makes each answer conclusive, and a
            // refusal shows the server's text.
            ok.min_recv = 4;
            ok.error_status = chk::L7STS;
            ok.error_payload = Some(0);
            steps.push(Step::Expect(ok));
            steps.push(Step::Send(format!("{hello} {domain}\r\n").into_bytes()));
            let mut hi = Expect::new(
                false,
                Matcher::Regex(rx("^2[0-9]{2}[- \r]")),
                format!("2xx reply to {hello}"),
            );
            hi.min_recv = 4;
            hi.error_status = chk::L7STS;
            hi.error_payload = Some(0);
            steps.push(Step::Expect(hi));
            steps.push(Step::Send(b"QUIT\r\n".to_vec()));
        }
        Some((
            HealthCheck::HttpChk {
                method,
                uri,
                version,
            },
            _,
        )) => {
            let (mut method, mut uri, mut version) = (method.clone(), uri.clone(), version.clone());
            let mut headers: Vec<(String, String)> = Vec::new();
            let mut body = String::new();
            let mut expects = Vec::new();
            let mut sends = 0;
            for r in &b.http_check_rules {
                let o = &r.origin;
                match &r.value {
                    HttpCheckRule::Comment(_) => {}
                    HttpCheckRule::Connect(c) => {
                        if sends > 0 || steps.len() > 1 {
                            return Err(PlanError::unsupported(o, "a second http-check connect"));
                        }
                        steps[0] = Step::Connect(cx.connect(c, o)?);
                    }
                    HttpCheckRule::Send {
                        method: m,
                        uri: u,
                        version: v,
                        headers: h,
                        body: bd,
                    } => {
                        sends += 1;
                        if sends > 1 || !expects.is_empty() {
                            return Err(PlanError::unsupported(o, "a second http-check send"));
                        }
                        method = m.clone().unwrap_or(method);
                        uri = u.clone().unwrap_or(uri);
                        version = v.clone().unwrap_or(version);
                        headers.extend(h.iter().cloned());
                        body = bd.clone().unwrap_or_default();
                    }
                    HttpCheckRule::Expect(e) => {
                        let kind = match &e.matcher {
                            ExpectMatch::Status(list) => HttpMatch::Status(
                                super::proto::parse_status_list(list).ok_or_else(|| {
                                    PlanError::unsupported(o, format!("status list '{list}'"))
                                })?,
                            ),
                            ExpectMatch::Rstatus(r) => HttpMatch::Rstatus(
                                regex::Regex::new(r).map_err(|e| regex_err(o, r, e))?,
                            ),
                            ExpectMatch::String(s) => HttpMatch::String(s.clone().into_bytes()),
                            ExpectMatch::StringLf(f) => {
                                HttpMatch::String(cx.lf(f, o)?.into_bytes())
                            }
                            ExpectMatch::Rstring(r) => HttpMatch::Rstring(
                                regex::bytes::Regex::new(r).map_err(|e| regex_err(o, r, e))?,
                            ),
                            m => {
                                return Err(PlanError::unsupported(
                                    o,
                                    format!("http-check expect {m:?}"),
                                ))
                            }
                        };
                        if let Some(x) = e.other.first() {
                            return Err(PlanError::unsupported(
                                o,
                                format!("http-check expect {x}"),
                            ));
                        }
                        expects.push(HttpExpect {
                            negate: e.negate,
                            kind,
                        });
                    }
                    HttpCheckRule::DisableOn404 => disable_on_404 = true,
                    HttpCheckRule::SendState => send_state = true,
                    HttpCheckRule::Var(v) => {
                        return Err(PlanError::unsupported(o, format!("http-check {v}")))
                    }
                }
            }
            let mut req = format!("{method} {uri} {version}\r\n");
            for (k, v) in &headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            if send_state {
                req.push_str(&format!("X-Haproxy-Server-State: {STATE_MARK}\r\n"));
            }
            if !body.is_empty() {
                req.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            req.push_str("Connection: close\r\n\r\n");
            req.push_str(&body);
            steps.push(Step::Send(req.into_bytes()));
            steps.push(Step::Proto(Proto::Http(expects, disable_on_404)));
        }
        Some((HealthCheck::ExternalCheck, origin)) => {
            let command = b.external_check_command.clone().ok_or_else(|| {
                PlanError::unsupported(origin, "option external-check without a command")
            })?;
            // HAProxy's arguments: the proxy's first listener (NOT_USED for
            // a backend, which has none), then the server.
            let (paddr, pport) = match b.first_listener {
                Some(a) => (a.ip().to_string(), a.port().to_string()),
                None => ("NOT_USED".to_string(), "NOT_USED".to_string()),
            };
            let (saddr, sport) = (target.ip().to_string(), target.port().to_string());
            let env = vec![
                (
                    "PATH".into(),
                    b.external_check_path.clone().unwrap_or_default(),
                ),
                ("HAPROXY_PROXY_ADDR".into(), paddr.clone()),
                (
                    "HAPROXY_PROXY_ID".into(),
                    b.id.as_ref().map_or(String::new(), |i| i.value.to_string()),
                ),
                ("HAPROXY_PROXY_NAME".into(), b.name.clone()),
                ("HAPROXY_PROXY_PORT".into(), pport.clone()),
                ("HAPROXY_SERVER_ADDR".into(), saddr.clone()),
                ("HAPROXY_SERVER_CURCONN".into(), STATE_MARK.into()),
                ("HAPROXY_SERVER_ID".into(), server_id(b, s)),
                (
                    "HAPROXY_SERVER_MAXCONN".into(),
                    s.params.maxconn.unwrap_or(0).to_string(),
                ),
                ("HAPROXY_SERVER_NAME".into(), s.name.clone()),
                ("HAPROXY_SERVER_PORT".into(), sport.clone()),
                ("HAPROXY_SERVER_SSL".into(), "0".into()),
                ("HAPROXY_SERVER_PROTO".into(), "tcp".into()),
            ];
            steps = vec![Step::Exec(Exec {
                command,
                args: vec![paddr, pport, saddr, sport],
                env,
            })];
        }
        Some((other, origin)) => {
            return Err(PlanError::unsupported(
                origin,
                format!("option {}", other.option_name()),
            ))
        }
    }
    Ok(Plan {
        target,
        steps,
        timeouts: Timeouts {
            inter,
            connect: b.timeout_connect,
            check: b.timeout_check.as_ref().map(|t| t.value),
        },
        rise: s.params.check_params.rise,
        fall: s.params.check_params.fall,
        fastinter: s.params.fastinter.unwrap_or(inter),
        downinter: s.params.downinter.unwrap_or(inter),
        log_checks: b.log_health_checks.is_some(),
        disable_on_404,
        send_state,
        tls,
    })
}

/// [`crate::config::runtime_gaps`] plus the check settings [`compile`] refuses,
/// in file order: what `lb run` refuses and `lb check` lists.
pub fn runtime_gaps(cfg: &crate::config::Config) -> Vec<(Origin, String)> {
    let mut out = crate::config::runtime_gaps(cfg);
    for b in &cfg.backends {
        out.extend(gaps(b));
    }
    out.sort_by(|a, b| (&a.0.file, a.0.line).cmp(&(&b.0.file, b.0.line)));
    out
}

/// What `compile` would refuse in `b`, for `lb check` and `lb run`'s gap list
/// (passwords are not read here).
pub fn gaps(b: &Backend) -> Vec<(Origin, String)> {
    let placeholder = |_: &PasswordSource, _: &Origin| Ok(Secret(String::new()));
    let mut out = Vec::new();
    for s in b.servers.iter().filter(|s| s.params.check) {
        if let Err(e) = compile(b, s, &placeholder) {
            let (o, what) = match e {
                PlanError::Unsupported { origin, what } => (origin, what),
                PlanError::Regex {
                    origin,
                    pattern,
                    reason,
                } => (origin, format!("regular expression '{pattern}' ({reason})")),
                _ => continue,
            };
            if !out.iter().any(|(a, w)| *a == o && *w == what) {
                out.push((o, format!("{what} (backend '{}')", b.name)));
            }
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn plan(text: &str) -> Result<Plan, PlanError> {
        let cfg = parse_str(text, std::path::Path::new("t.cfg")).unwrap();
        let b = &cfg.backends[0];
        compile(b, &b.servers[0], &|p, o| read_password(p, o))
    }

    const HEAD: &str = "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\nlisten b\n  bind 127.0.0.1:65000\n";

    #[test]
    fn intervals_follow_haproxy() {
        let p = plan(&format!(
            "{HEAD}  server s 127.0.0.1:1 check inter 2s fastinter 500ms downinter 10s rise 2 fall 3\n"
        ))
        .unwrap();
        // Full health: inter; transitions and not yet checked (health = rise): fastinter.
        assert_eq!(p.interval(4, false), Duration::from_secs(2));
        assert_eq!(p.interval(2, false), Duration::from_millis(500));
        assert_eq!(p.interval(1, true), Duration::from_millis(500));
        assert_eq!(p.interval(0, true), Duration::from_secs(10));
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.timeouts.connect_limit(), Duration::from_secs(2));
    }

    #[test]
    fn spread_checks_is_parsed_within_haproxys_range() {
        let path = std::path::Path::new("t.cfg");
        let cfg = parse_str(&format!("global\n  spread-checks 5\n{HEAD}"), path).unwrap();
        assert_eq!(cfg.global.spread_checks.map(|s| s.value), Some(5));
        let e = parse_str(&format!("global\n  spread-checks 60\n{HEAD}"), path).unwrap_err();
        assert!(e.to_string().contains("between 0 and 50"), "{e}");
    }

    #[test]
    fn port_addr_and_timeout_check() {
        let p = plan(&format!(
            "{HEAD}  timeout check 700ms\n  server s 127.0.0.1:1 check port 8008 addr 127.0.0.2\n"
        ))
        .unwrap();
        assert_eq!(p.target, "127.0.0.2:8008".parse().unwrap());
        assert_eq!(p.timeouts.check, Some(Duration::from_millis(700)));
        // min(timeout connect 5s, inter 2s).
        assert_eq!(p.timeouts.connect_limit(), Duration::from_secs(2));
    }

    #[test]
    fn tcp_check_rules_compile_with_implicit_connect() {
        let p = plan(&format!(
            "{HEAD}  option tcp-check\n  tcp-check send-binary 0000000804d2162f\n  tcp-check expect rbinary ^(53|4e)\n  tcp-check send-lf %[srv_name,upper]\\r\\n\n  server s 127.0.0.1:1 check\n"
        ))
        .unwrap();
        assert!(matches!(p.steps[0], Step::Connect(_)));
        assert!(matches!(&p.steps[1], Step::Send(d) if d == &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]));
        assert!(matches!(&p.steps[3], Step::Send(d) if d == b"S\r\n"));
        assert_eq!(p.steps.len(), 4);
    }

    #[test]
    fn bad_hex_from_a_format_is_an_error_not_a_panic() {
        let o = Origin::default();
        assert!(hex_decode("é1", &o).is_err());
        assert!(hex_decode("0g", &o).is_err());
        assert!(hex_decode("abc", &o).is_err());
        assert_eq!(hex_decode(" 0aFF ", &o).unwrap(), vec![0x0a, 0xff]);
    }

    #[test]
    fn unsupported_rules_are_named_with_their_line() {
        let cfg = parse_str(
            &format!(
            "{HEAD}  option tcp-check\n  tcp-check send-lf %[date]\n  server s 127.0.0.1:1 check\n"
        ),
            std::path::Path::new("t.cfg"),
        )
        .unwrap();
        // As `lb check` and `lb run` see them.
        let g = runtime_gaps(&cfg);
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].0.line, 9);
        assert!(g[0].1.contains("sample fetch 'date'"), "{g:?}");
    }

    #[test]
    fn role_check_password_from_env_never_in_debug() {
        std::env::set_var("LB_TEST_PG_PW", "s3cret");
        let p = plan(&format!(
            "{HEAD}  option pgsql-role-check user lb password-env LB_TEST_PG_PW role standby max-lag 5\n  server s 127.0.0.1:1 check\n"
        ))
        .unwrap();
        let Step::Proto(Proto::PgRole(spec)) = &p.steps[1] else {
            panic!("{:?}", p.steps)
        };
        assert_eq!(spec.password, Some(Secret("s3cret".into())));
        assert_eq!(spec.max_lag, Some(Duration::from_secs(5)));
        assert_eq!(spec.database, "lb");
        assert!(!format!("{p:?}").contains("s3cret"));
        let e = plan(&format!(
            "{HEAD}  option pgsql-role-check user lb password-env LB_TEST_UNSET_VAR role primary\n  server s 127.0.0.1:1 check\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("LB_TEST_UNSET_VAR"), "{e}");
    }
}
