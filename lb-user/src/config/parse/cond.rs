//! Conditions of `.if` / `.elif` blocks, as HAProxy 2.6 evaluates them:
//! `0`, a non-zero integer, `defined(NAME)`, `feature(NAME)`,
//! `streq(A,B)`, `strneq(A,B)`, `version_atleast(V)`, `version_before(V)`,
//! combined with `!`, `&&`, `||` and parentheses. An empty condition is false.

/// The HAProxy version `lb` answers `version_*()` predicates with: the one
/// whose configuration language it speaks.
pub(crate) const HAPROXY_VERSION: &str = "2.6.12";

/// Deepest nesting of parentheses and negations.
const MAX_DEPTH: usize = 64;

struct P<'a> {
    s: &'a [u8],
    i: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    depth: usize,
}

pub(crate) fn eval(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
        env,
        depth: 0,
    };
    p.ws();
    if p.i == p.s.len() {
        return Ok(false);
    }
    let v = p.or()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected '{}'", &text[p.i..]));
    }
    Ok(v)
}

impl P<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(tok.as_bytes()) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<bool, String> {
        let mut v = self.and()?;
        while self.eat("||") {
            let r = self.and()?;
            v = v || r;
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut v = self.term()?;
        while self.eat("&&") {
            let r = self.term()?;
            v = v && r;
        }
        Ok(v)
    }

    fn term(&mut self) -> Result<bool, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("condition nested too deeply".into());
        }
        let v = if self.eat("!") {
            !self.term()?
        } else if self.eat("(") {
            let v = self.or()?;
            if !self.eat(")") {
                return Err("missing ')'".into());
            }
            v
        } else {
            self.atom()?
        };
        self.depth -= 1;
        Ok(v)
    }

    fn atom(&mut self) -> Result<bool, String> {
        self.ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        {
            self.i += 1;
        }
        let word = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        if word.is_empty() {
            return Err("expected a predicate or a number".into());
        }
        if word.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            let n: i64 = word
                .parse()
                .map_err(|_| format!("'{word}' is not a number"))?;
            return Ok(n != 0);
        }
        if self.s.get(self.i) != Some(&b'(') {
            return Err(format!(
                "unknown predicate '{word}' (expected an argument list)"
            ));
        }
        self.i += 1;
        let args_start = self.i;
        while self.s.get(self.i).is_some_and(|&c| c != b')') {
            self.i += 1;
        }
        if self.s.get(self.i).is_none() {
            return Err(format!("missing ')' after '{word}('"));
        }
        let args = String::from_utf8_lossy(&self.s[args_start..self.i]).into_owned();
        self.i += 1;
        let args: Vec<&str> = args.split(',').collect();
        let want = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("'{word}' expects {n} argument(s)"))
            }
        };
        match word.as_str() {
            "defined" => {
                want(1)?;
                Ok((self.env)(args[0]).is_some())
            }
            // No HAProxy build feature is claimed.
            "feature" => {
                want(1)?;
                Ok(false)
            }
            "streq" => {
                want(2)?;
                Ok(args[0] == args[1])
            }
            "strneq" => {
                want(2)?;
                Ok(args[0] != args[1])
            }
            "version_atleast" => {
                want(1)?;
                Ok(version(HAPROXY_VERSION) >= version(args[0]))
            }
            "version_before" => {
                want(1)?;
                Ok(version(HAPROXY_VERSION) < version(args[0]))
            }
            _ => Err(format!("unknown predicate '{word}'")),
        }
    }
}

/// `2.4-dev19` → comparable: numeric components, then a release marker
/// (development versions sort before the release), then the dev number.
fn version(v: &str) -> (Vec<u64>, u8, u64) {
    let (main, suffix) = v.split_once('-').unwrap_or((v, ""));
    let mut nums: Vec<u64> = main.split('.').map(|n| n.parse().unwrap_or(0)).collect();
    while nums.len() < 3 {
        nums.push(0);
    }
    match suffix.strip_prefix("dev") {
        Some(n) => (nums, 0, n.parse().unwrap_or(0)),
        None => (nums, 1, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Result<bool, String> {
        eval(s, &|n| (n == "SET").then(|| "1".to_string()))
    }

    #[test]
    fn conditions() {
        assert_eq!(ev(""), Ok(false));
        assert_eq!(ev("0"), Ok(false));
        assert_eq!(ev("1"), Ok(true));
        assert_eq!(ev("defined(SET)"), Ok(true));
        assert_eq!(ev("defined(UNSET)"), Ok(false));
        assert_eq!(ev("!defined(UNSET) && streq(a,a)"), Ok(true));
        assert_eq!(ev("strneq(a,a) || (1 && !0)"), Ok(true));
        assert_eq!(ev("feature(OPENSSL)"), Ok(false));
        assert_eq!(ev("version_atleast(2.4-dev19)"), Ok(true));
        assert_eq!(ev("version_atleast(2.6)"), Ok(true));
        assert_eq!(ev("version_before(2.7)"), Ok(true));
        assert_eq!(ev("version_before(2.6.12)"), Ok(false));
        assert!(ev("nope(x)").is_err());
        assert!(ev("(1").is_err());
        assert!(ev("1 2").is_err());
        assert!(ev(&"!".repeat(1000)).is_err());
        assert!(ev(&"(".repeat(1000)).is_err());
    }
}
