//! Value parsers: numbers, times, sizes, ports, addresses. They return a
//! message without position; the caller places it.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Largest timer HAProxy accepts: `INT_MAX` milliseconds (about 24.8 days).
pub(crate) const MAX_TIMER_MS: u64 = i32::MAX as u64;

/// Shortens and escapes a token for display.
pub(crate) fn near(text: &str) -> String {
    const MAX: usize = 48;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

pub(crate) fn parse_uint(s: &str, min: u64, max: u64) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{}' is not a number", near(s)));
    }
    let v = if s.len() > 19 {
        None
    } else {
        s.parse::<u64>().ok()
    };
    match v {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{} is out of range (expected {min}..={max})",
            near(s)
        )),
    }
}

pub(crate) fn parse_u32(s: &str, min: u32) -> Result<u32, String> {
    let v = parse_uint(s, u64::from(min), u64::from(u32::MAX))?;
    u32::try_from(v).map_err(|_| format!("{} is out of range", near(s)))
}

/// A signed integer in `min..=max`.
pub(crate) fn parse_int(s: &str, min: i64, max: i64) -> Result<i64, String> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{}' is not a number", near(s)));
    }
    match (digits.len() <= 18)
        .then(|| s.parse::<i64>().ok())
        .flatten()
    {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{} is out of range (expected {min}..={max})",
            near(s)
        )),
    }
}

/// Splits `123abc` into `("123", "abc")`.
fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// An HAProxy time: a number with an optional unit (`us`, `ms`, `s`, `m`, `h`,
/// `d`); no unit means milliseconds. At most `INT_MAX` milliseconds.
pub(crate) fn parse_time(s: &str) -> Result<Duration, String> {
    let (digits, unit) = split_number(s);
    if digits.is_empty() {
        return Err(format!(
            "'{}' is not a time (expected a number and an optional unit: us, ms, s, m, h, d)",
            near(s)
        ));
    }
    if unit.starts_with('.') {
        return Err(format!(
            "'{}': fractions are not allowed (write 1500ms, not 1.5s)",
            near(s)
        ));
    }
    // As HAProxy 2.6: the unit is read, whatever follows it is ignored with
    // a warning (`time_trailing`).
    let (micros_per_unit, _) = time_unit(unit).ok_or_else(|| {
        format!(
            "unknown time unit '{}' (expected us, ms, s, m, h or d)",
            near(unit)
        )
    })?;
    let overflow = || {
        format!(
            "timer overflow in '{}' (the maximum is {MAX_TIMER_MS} ms, about 24.8 days)",
            near(s)
        )
    };
    let n: u64 = if digits.len() > 19 {
        return Err(overflow());
    } else {
        digits.parse().map_err(|_| overflow())?
    };
    let micros = n.checked_mul(micros_per_unit).ok_or_else(overflow)?;
    if micros > MAX_TIMER_MS * 1_000 {
        return Err(overflow());
    }
    Ok(Duration::from_micros(micros))
}

/// A time in whole seconds, seconds when no unit is given (HAProxy's
/// `TIME_UNIT_S`, for the `*tcpka-idle|intvl` settings); a part of a second
/// counts as a whole one.
pub(crate) fn parse_time_secs(s: &str) -> Result<u32, String> {
    let (digits, unit) = split_number(s);
    let d = if unit.is_empty() && !digits.is_empty() {
        parse_time(&format!("{digits}s"))?
    } else {
        parse_time(s)?
    };
    Ok(u32::try_from(d.as_micros().div_ceil(1_000_000)).unwrap_or(u32::MAX))
}

/// The unit at the start of `u`: (microseconds per unit, its length).
fn time_unit(u: &str) -> Option<(u64, usize)> {
    let b = u.as_bytes();
    Some(match (b.first(), b.get(1)) {
        (None, _) => (1_000, 0),
        (Some(b'u'), Some(b's')) => (1, 2),
        (Some(b'm'), Some(b's')) => (1_000, 2),
        (Some(b's'), _) => (1_000_000, 1),
        (Some(b'm'), _) => (60_000_000, 1),
        (Some(b'h'), _) => (3_600_000_000, 1),
        (Some(b'd'), _) => (86_400_000_000, 1),
        _ => return None,
    })
}

/// HAProxy 2.6's warning for characters after a time's unit (`30min`:
/// read as 30m), or None.
pub(crate) fn time_trailing(s: &str) -> Option<String> {
    let (digits, unit) = split_number(s);
    let (_, len) = time_unit(unit)?;
    let rest = &unit[len..];
    let c = rest.chars().next()?;
    (!digits.is_empty()).then(|| {
        format!(
            "unexpected character '{c}' after the timer value '{s}', only \
             (us=microseconds,ms=milliseconds,s=seconds,m=minutes,h=hours,d=days) are supported. \
             This will be reported as an error in next versions."
        )
    })
}

/// An HAProxy size: a number with an optional `k`, `m` or `g` suffix (any case,
/// powers of 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = split_number(s);
    if digits.is_empty() {
        return Err(format!(
            "'{}' is not a size (expected a number and an optional k, m or g suffix)",
            near(s)
        ));
    }
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit '{}' (expected k, m or g)",
                near(unit)
            ))
        }
    };
    let too_big = || format!("size '{}' is too large", near(s));
    let n: u64 = if digits.len() > 19 {
        return Err(too_big());
    } else {
        digits.parse().map_err(|_| too_big())?
    };
    n.checked_mul(mult).ok_or_else(too_big)
}

/// A port, 1..=65535.
pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err("missing port number".into());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port '{}'", near(s)));
    }
    match if s.len() > 10 {
        None
    } else {
        s.parse::<u64>().ok()
    } {
        Some(0) => Err("port 0 is not valid (expected 1-65535)".into()),
        Some(p) => {
            u16::try_from(p).map_err(|_| format!("port {p} is out of range (expected 1-65535)"))
        }
        None => Err(format!(
            "port {} is out of range (expected 1-65535)",
            near(s)
        )),
    }
}

/// Address family forced by an `ipv4@`/`ipv6@` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Any,
    V4,
    V6,
}

/// The host part of an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    /// `*`, empty, `0.0.0.0` or `::`.
    Wildcard(Option<IpAddr>),
    Ip(IpAddr),
    Name(String),
}

/// `[family@]host[:port]`, split.
#[derive(Clone, Debug)]
pub(crate) struct HostPort<'s> {
    pub family: Family,
    pub host: Host,
    pub port: Option<&'s str>,
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

/// Splits `[family@]host[:port]`; UNIX sockets and other families are
/// refused.
pub(crate) fn split_address(s: &str) -> Result<HostPort<'_>, String> {
    let (family, rest) = match s.split_once('@') {
        None => (Family::Any, s),
        Some((prefix, rest)) => {
            let family = match prefix {
                "ipv4" | "tcp4" => Family::V4,
                "ipv6" | "tcp6" => Family::V6,
                "tcp" => Family::Any,
                "unix" | "abns" | "abnsz" | "fd" | "sockpair" | "udp" | "udp4" | "udp6"
                | "quic4" | "quic6" | "uxst" | "uxdg" | "mptcp" | "mptcp4" | "mptcp6" | "rhttp" => {
                    return Err(format!(
                        "address family '{}@' is not supported (only TCP over IPv4 and IPv6)",
                        near(prefix)
                    ))
                }
                _ => return Err(format!("unknown address family '{}@'", near(prefix))),
            };
            (family, rest)
        }
    };
    if rest.starts_with('/') {
        return Err("UNIX socket addresses are not supported (only TCP over IPv4 and IPv6)".into());
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner
            .split_once(']')
            .ok_or_else(|| "missing ']' after an IPv6 address".to_string())?;
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':').ok_or_else(|| {
                format!("expected ':' and a port after ']', found '{}'", near(after))
            })?)
        };
        let ip: Ipv6Addr = h
            .parse()
            .map_err(|_| format!("invalid IPv6 address '{}'", near(h)))?;
        let host = if ip.is_unspecified() {
            Host::Wildcard(Some(IpAddr::V6(ip)))
        } else {
            Host::Ip(IpAddr::V6(ip))
        };
        (host, port)
    } else {
        let (h, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let host = match h {
            "" | "*" => Host::Wildcard(None),
            _ => match h.parse::<IpAddr>() {
                Ok(ip) if ip.is_unspecified() => Host::Wildcard(Some(ip)),
                Ok(ip) => Host::Ip(ip),
                Err(_) if rest.parse::<Ipv6Addr>().is_ok() => {
                    return Err(format!(
                        "missing port: HAProxy reads the last ':' of '{}' as the port separator; \
                         write '[{}]:PORT' or '{}:PORT'",
                        near(rest),
                        near(rest),
                        near(rest)
                    ))
                }
                Err(_) if is_hostname(h) => Host::Name(h.to_string()),
                Err(_) => return Err(format!("invalid address '{}'", near(h))),
            },
        };
        (host, port)
    };
    match (family, &host) {
        (Family::V4, Host::Ip(IpAddr::V6(_)) | Host::Wildcard(Some(IpAddr::V6(_)))) => {
            return Err("an IPv6 address cannot follow 'ipv4@'".into())
        }
        (Family::V6, Host::Ip(IpAddr::V4(_)) | Host::Wildcard(Some(IpAddr::V4(_)))) => {
            return Err("an IPv4 address cannot follow 'ipv6@'".into())
        }
        _ => {}
    }
    Ok(HostPort { family, host, port })
}

/// A port range `N` or `N-M`.
pub(crate) fn parse_port_range(port: &str) -> Result<(u16, u16), String> {
    match port.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(a)?, parse_port(b)?);
            if a > b {
                return Err(format!(
                    "invalid port range '{}': the first port is above the last",
                    near(port)
                ));
            }
            Ok((a, b))
        }
        None => {
            let p = parse_port(port)?;
            Ok((p, p))
        }
    }
}

/// An IPv4 address in `inet_aton()`'s forms, as HAProxy's ACL patterns accept
/// them: `a.b.c.d`, `a.b.d` (d is 16 bits), `a.d` (24 bits) and `d`; decimal only.
pub(crate) fn parse_ipv4_loose(s: &str) -> Option<Ipv4Addr> {
    if s.is_empty() || s.len() > 15 {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 10 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 255) {
        return None;
    }
    let bits = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << bits {
        return None;
    }
    let mut v: u32 = 0;
    for (i, &n) in head.iter().enumerate() {
        v |= (n as u32) << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(v | *last as u32))
}

/// Decodes an even-length hexadecimal string.
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return Err(format!(
            "'{}' is not an even number of hexadecimal digits",
            near(s)
        ));
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("'{}' is not hexadecimal", near(s)))
        })
        .collect()
}

/// Edit distance (insertions, deletions, substitutions) between two words.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Closest candidate to an unknown `word`, if close enough.
pub(crate) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<String> {
    let len = word.chars().count();
    if len == 0 || len > 64 {
        return None;
    }
    let max = 2.max(len / 3);
    candidates
        .into_iter()
        .map(|c| c.trim_end_matches('*'))
        .filter(|c| !c.is_empty() && *c != word)
        .map(|c| (levenshtein(word, c), c))
        .filter(|&(d, _)| d <= max && d < len)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_ipv4() {
        let p = |s: &str| parse_ipv4_loose(s).map(|a| a.to_string());
        assert_eq!(p("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(p("10.12").as_deref(), Some("10.0.0.12"));
        assert_eq!(p("192.168.1").as_deref(), Some("192.168.0.1"));
        assert_eq!(p("1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(p("1.2.3.256"), None);
        assert_eq!(p("1.2.3.4.5"), None);
        assert_eq!(p("1..2"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("50494e470d0a"), Ok(b"PING\r\n".to_vec()));
        assert_eq!(parse_hex("2b504F4e47"), Ok(b"+PONG".to_vec()));
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("").is_err());
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int("-1", -10, 10), Ok(-1));
        assert!(parse_int("-", -10, 10).is_err());
        assert!(parse_int("11", -10, 10).is_err());
        assert!(parse_int("99999999999999999999", i64::MIN, i64::MAX).is_err());
    }
}
