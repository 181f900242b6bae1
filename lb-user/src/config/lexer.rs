//! HAProxy-style line lexing.
//!
//! One configuration line becomes a list of words, following HAProxy 2.6's
//! `parse_line()` (as called by `readcfgfile()`):
//!
//! * spaces, tabs, vertical tabs and form feeds separate words; a carriage
//!   return ends the line;
//! * `#` outside quotes starts a comment running to the end of the line, even in
//!   the middle of a word;
//! * `"double quotes"` group a word and expand environment variables;
//!   `'single quotes'` group a word and keep everything verbatim;
//! * outside single quotes, `\` escapes the next character: `\ `, `\\`, `\#`,
//!   `\'`, `\"` give that character, `\r`, `\n`, `\t` and `\xHH` give the
//!   control character / byte, `\$` gives `$` inside double quotes only; any
//!   other `\c` is kept as is (backslash included);
//! * inside double quotes only, `$NAME`, `${NAME}`, `${NAME-default}` and
//!   `${NAME[*]}` (the value split into several words) expand environment
//!   variables; `.FILE`, `.LINE` and `.SECTION` are pseudo-variables. Outside
//!   double quotes `$` is an ordinary character (addresses expand variables
//!   themselves, see [`env_expand`]);
//! * an empty last word (`a ""`) is dropped, an empty word elsewhere stays;
//! * there is no line continuation (HAProxy has none).
//!
//! Each word keeps the 1-based column (in characters) where it starts, for
//! error messages.

/// Most words on one line, as HAProxy's `MAX_LINE_ARGS`.
pub(crate) const MAX_WORDS: usize = 64;

/// One word of a configuration line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// The word after unquoting, unescaping and environment expansion.
    pub text: String,
    /// 1-based column (in characters) of the word's first character.
    pub col: usize,
    /// The word was written as is (no quote, escape or expansion), so
    /// `col + n` is the column of its `n`-th character.
    pub verbatim: bool,
}

/// A lexing error at a 1-based column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LexError {
    pub col: usize,
    pub msg: String,
    /// The text the error is about.
    pub near: String,
}

fn lex_err(col: usize, msg: impl Into<String>, near: impl Into<String>) -> LexError {
    LexError {
        col,
        msg: msg.into(),
        near: near.into(),
    }
}

/// C's `isspace()` minus the line ends, which end the line before.
fn is_sep(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c')
}

fn is_var_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits one line (without its end of line) into words.
///
/// `env` looks environment variables up (and the `.FILE`, `.LINE`, `.SECTION`
/// pseudo-variables, `None` for an unknown one); `max_len` bounds the total
/// size of the words after expansion.
pub(crate) fn lex_line(
    line: &str,
    max_len: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Token>, LexError> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks: Vec<Token> = Vec::new();
    let mut total = 0usize;
    let mut i = 0usize;
    let push =
        |toks: &mut Vec<Token>, text: String, col: usize, verbatim: bool, total: &mut usize| {
            *total = total.saturating_add(text.len());
            if *total > max_len {
                return Err(lex_err(
                    col,
                    format!("line longer than {max_len} bytes after environment expansion"),
                    text,
                ));
            }
            if toks.len() >= MAX_WORDS {
                return Err(lex_err(
                    col,
                    format!("too many words on this line (at most {MAX_WORDS})"),
                    text,
                ));
            }
            toks.push(Token {
                text,
                col,
                verbatim,
            });
            Ok(())
        };

    while chars.get(i).copied().is_some_and(is_sep) {
        i += 1;
    }
    let mut start = i;
    let mut text = String::new();
    let mut verbatim = true;
    // Column of the opening quote still open, if any.
    let mut squote: Option<usize> = None;
    let mut dquote: Option<usize> = None;

    while let Some(&c) = chars.get(i) {
        if c == '\r' || c == '\n' {
            break;
        }
        if c == '\0' {
            return Err(lex_err(i + 1, "NUL character not allowed", ""));
        }
        if squote.is_some() {
            if c == '\'' {
                squote = None;
            } else {
                text.push(c);
            }
            i += 1;
            continue;
        }
        match c {
            '#' if dquote.is_none() => break,
            '"' => {
                dquote = match dquote {
                    Some(_) => None,
                    None => Some(i + 1),
                };
                verbatim = false;
                i += 1;
            }
            '\'' if dquote.is_none() => {
                squote = Some(i + 1);
                verbatim = false;
                i += 1;
            }
            c if dquote.is_none() && is_sep(c) => {
                while chars.get(i).copied().is_some_and(is_sep) {
                    i += 1;
                }
                push(
                    &mut toks,
                    std::mem::take(&mut text),
                    start + 1,
                    verbatim,
                    &mut total,
                )?;
                start = i;
                verbatim = true;
            }
            '\\' => {
                verbatim = false;
                let next = chars.get(i + 1).copied();
                match next {
                    Some(e @ (' ' | '\\' | '#' | '\'' | '"')) => {
                        text.push(e);
                        i += 2;
                    }
                    Some('$') if dquote.is_some() => {
                        text.push('$');
                        i += 2;
                    }
                    Some('t') => {
                        text.push('\t');
                        i += 2;
                    }
                    Some('n') => {
                        text.push('\n');
                        i += 2;
                    }
                    Some('r') => {
                        text.push('\r');
                        i += 2;
                    }
                    Some('x') => {
                        let h1 = chars.get(i + 2).and_then(|c| c.to_digit(16));
                        let h2 = chars.get(i + 3).and_then(|c| c.to_digit(16));
                        match (h1, h2) {
                            (Some(0), Some(0)) => {
                                return Err(lex_err(i + 1, "NUL character not allowed", "\\x00"))
                            }
                            (Some(a), Some(b)) => {
                                // Both digits are below 16.
                                text.push(char::from((a * 16 + b) as u8));
                                i += 4;
                            }
                            _ => {
                                let shown: String = chars.iter().skip(i).take(4).collect();
                                return Err(lex_err(
                                    i + 1,
                                    "invalid hexadecimal escape, expected '\\xHH'",
                                    shown,
                                ));
                            }
                        }
                    }
                    // Not an escape sequence: the backslash stays, the next
                    // character is read normally.
                    _ => {
                        text.push('\\');
                        i += 1;
                    }
                }
            }
            '$' if dquote.is_some() => {
                verbatim = false;
                let dollar_col = i + 1;
                i += 1;
                let brace = if chars.get(i) == Some(&'{') {
                    i += 1;
                    Some(i)
                } else {
                    None
                };
                let first = chars.get(i).copied();
                if !first.is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '.') {
                    return Err(lex_err(
                        i + 1,
                        "forbidden first character in environment variable name",
                        first.map(String::from).unwrap_or_default(),
                    ));
                }
                let name_start = i;
                if first == Some('.') {
                    i += 1;
                }
                while chars.get(i).copied().is_some_and(is_var_char) {
                    i += 1;
                }
                let name: String = chars
                    .get(name_start..i)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                let mut value = env(&name);
                if name.starts_with('.') && value.is_none() {
                    return Err(lex_err(
                        name_start + 1,
                        format!(
                            "unsupported pseudo-variable '{name}' (expected .FILE, .LINE or .SECTION)"
                        ),
                        name,
                    ));
                }
                let mut split = false;
                if let Some(b) = brace {
                    if chars.get(i) == Some(&'[') {
                        if chars.get(i + 1) != Some(&'*') || chars.get(i + 2) != Some(&']') {
                            return Err(lex_err(
                                i + 1,
                                "invalid word expansion, expected '[*]'",
                                "[",
                            ));
                        }
                        split = true;
                        i += 3;
                    }
                    if chars.get(i) == Some(&'-') {
                        let d_start = i + 1;
                        let mut j = d_start;
                        while chars.get(j).is_some_and(|&c| c != '}') {
                            j += 1;
                        }
                        if chars.get(j).is_none() {
                            return Err(lex_err(
                                b - 1,
                                format!("unmatched brace in environment variable name '{name}'"),
                                format!("${{{name}"),
                            ));
                        }
                        if value.is_none() {
                            value = Some(chars[d_start..j].iter().collect());
                        }
                        i = j;
                    }
                    if chars.get(i) != Some(&'}') {
                        return Err(lex_err(
                            b - 1,
                            format!("unmatched brace in environment variable name '{name}'"),
                            format!("${{{name}"),
                        ));
                    }
                    i += 1;
                }
                let value = value.unwrap_or_default();
                if value.contains('\0') {
                    return Err(lex_err(
                        dollar_col,
                        format!("environment variable '{name}' contains a NUL character"),
                        format!("${name}"),
                    ));
                }
                if split {
                    let mut v = value.chars().peekable();
                    while let Some(c) = v.next() {
                        if c.is_ascii_whitespace() {
                            while v.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                                v.next();
                            }
                            push(
                                &mut toks,
                                std::mem::take(&mut text),
                                start + 1,
                                false,
                                &mut total,
                            )?;
                        } else {
                            text.push(c);
                        }
                    }
                } else {
                    text.push_str(&value);
                }
                if total.saturating_add(text.len()) > max_len {
                    return Err(lex_err(
                        dollar_col,
                        format!("line longer than {max_len} bytes after environment expansion"),
                        format!("${name}"),
                    ));
                }
            }
            _ => {
                text.push(c);
                i += 1;
            }
        }
    }

    if let Some(col) = squote {
        return Err(lex_err(col, "unterminated single quote", "'"));
    }
    if let Some(col) = dquote {
        return Err(lex_err(col, "unterminated double quote", "\""));
    }
    // As HAProxy, an empty last word is not a word.
    if !text.is_empty() {
        push(&mut toks, text, start + 1, verbatim, &mut total)?;
    }
    Ok(toks)
}

/// HAProxy's `env_expand()`, applied to addresses (bind, server, log, stats
/// socket) after lexing: `$NAME` and `${NAME}` are replaced by the variable's
/// value (empty if unset), anywhere in the word, quoted or not. No default
/// value: in `${NAME-x}` only `${NAME` is the variable.
pub(crate) fn env_expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let braced = chars.get(i) == Some(&'{');
        if braced {
            i += 1;
        }
        let start = i;
        while chars.get(i).copied().is_some_and(is_var_char) {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if braced && chars.get(i) == Some(&'}') {
            i += 1;
        }
        if !name.is_empty() {
            out.push_str(&env(&name).unwrap_or_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("5432".into()),
            "HOST" => Some("10.0.0.1".into()),
            "SPACED" => Some("a b".into()),
            "LIST" => Some("weight 3  check".into()),
            "EMPTY" => Some(String::new()),
            ".LINE" => Some("7".into()),
            _ => None,
        }
    }

    fn words(line: &str) -> Vec<String> {
        lex_line(line, 1 << 16, &env)
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    fn cols(line: &str) -> Vec<usize> {
        lex_line(line, 1 << 16, &env)
            .unwrap()
            .into_iter()
            .map(|t| t.col)
            .collect()
    }

    fn err(line: &str) -> LexError {
        lex_line(line, 1 << 16, &env).unwrap_err()
    }

    #[test]
    fn splits_on_spaces_and_tabs() {
        assert_eq!(words("  bind\t*:80   v6only "), ["bind", "*:80", "v6only"]);
        assert_eq!(cols("  bind\t*:80   v6only "), [3, 8, 15]);
        assert_eq!(words("a\x0bb\x0cc"), ["a", "b", "c"]);
        assert!(words("").is_empty());
        assert!(words(" \t ").is_empty());
        // A carriage return ends the line.
        assert_eq!(words("a b\rc d"), ["a", "b"]);
    }

    #[test]
    fn comments() {
        assert!(words("# a comment").is_empty());
        assert_eq!(words("bind *:80 # comment"), ["bind", "*:80"]);
        assert_eq!(words("bind *:80#comment"), ["bind", "*:80"]);
        assert_eq!(words("a \"b # c\" 'd # e'"), ["a", "b # c", "d # e"]);
        assert_eq!(words("a b\\#c"), ["a", "b#c"]);
    }

    #[test]
    fn quotes() {
        assert_eq!(words("a \"b c\" d"), ["a", "b c", "d"]);
        assert_eq!(words("a 'b c' d"), ["a", "b c", "d"]);
        assert_eq!(words("x\"y z\"w"), ["xy zw"]);
        assert_eq!(words("'it\"s' \"it's\""), ["it\"s", "it's"]);
        // An empty word stays, except at the end of the line.
        assert_eq!(words("a \"\" '' b"), ["a", "", "", "b"]);
        assert_eq!(words("a \"\""), ["a"]);
        assert_eq!(cols("a \"b c\" d"), [1, 3, 9]);
    }

    #[test]
    fn escapes() {
        assert_eq!(words("a\\ b"), ["a b"]);
        assert_eq!(words("\\\"x\\\""), ["\"x\""]);
        assert_eq!(words("a\\\\b"), ["a\\b"]);
        assert_eq!(words("\\x41\\t"), ["A\t"]);
        assert_eq!(words("\"a\\\"b\""), ["a\"b"]);
        // Unknown escapes and a final backslash are kept.
        assert_eq!(words("a\\qb c\\"), ["a\\qb", "c\\"]);
        // No escapes inside single quotes.
        assert_eq!(words("'a\\ b'"), ["a\\ b"]);
        // '\$' is an escape inside double quotes only.
        assert_eq!(words("\\$HOST \"\\$HOST\""), ["\\$HOST", "$HOST"]);
    }

    #[test]
    fn env_expansion_in_double_quotes_only() {
        assert_eq!(words("\"${HOST}:${PORT}\""), ["10.0.0.1:5432"]);
        assert_eq!(words("\"$HOST:$PORT\""), ["10.0.0.1:5432"]);
        assert_eq!(words("${HOST} $HOST"), ["${HOST}", "$HOST"]);
        assert_eq!(words("'${HOST}'"), ["${HOST}"]);
        assert_eq!(words("\"${SPACED}\""), ["a b"]);
        assert_eq!(words("a \"${UNSET}\" b"), ["a", "", "b"]);
        assert_eq!(words("\"${UNSET-def ault}\""), ["def ault"]);
        assert_eq!(words("\"${EMPTY-x}\""), Vec::<String>::new());
        assert_eq!(words("\"${PORT-1}\""), ["5432"]);
        assert_eq!(
            words("s \"${LIST[*]}\" x"),
            ["s", "weight", "3", "check", "x"]
        );
        assert_eq!(words("\"$.LINE\""), ["7"]);
        let t = lex_line("x \"${HOST}\"", 100, &env).unwrap();
        assert!(!t[1].verbatim);
        assert!(t[0].verbatim);
    }

    #[test]
    fn address_expansion() {
        let e = |s: &str| env_expand(s, &env);
        assert_eq!(e("$HOST:$PORT"), "10.0.0.1:5432");
        assert_eq!(e("${HOST}:${PORT}"), "10.0.0.1:5432");
        assert_eq!(e("${NOPE}:80"), ":80");
        assert_eq!(e("${HOST:80"), "10.0.0.1:80");
        assert_eq!(e("${NOPE-1.2.3.4}:80"), "-1.2.3.4}:80");
        assert_eq!(e("x$HOST"), "x10.0.0.1");
        assert_eq!(e("plain"), "plain");
    }

    #[test]
    fn errors() {
        assert_eq!(err("a \"bc").col, 3);
        assert!(err("a \"bc").msg.contains("unterminated double quote"));
        assert_eq!(err("ab 'c").col, 4);
        assert_eq!(err("a \"${HOST\"").col, 4);
        assert!(err("a \"${HOST\"").msg.contains("unmatched brace"));
        assert!(err("\"${}\"").msg.contains("forbidden first character"));
        assert!(err("\"$1\"").msg.contains("forbidden first character"));
        assert!(err("\"${.NOPE}\"").msg.contains("pseudo-variable"));
        assert!(err("\"${HOST[x]}\"").msg.contains("'[*]'"));
        assert!(err("a \\xZZ").msg.contains("hexadecimal"));
        assert!(err("a \\x0").msg.contains("hexadecimal"));
        assert!(err("a\0").msg.contains("NUL"));
        assert!(err("a\\x00").msg.contains("NUL"));
        let many = vec!["w"; MAX_WORDS + 1].join(" ");
        assert!(err(&many).msg.contains("too many words"));
        assert_eq!(words(&vec!["w"; MAX_WORDS].join(" ")).len(), MAX_WORDS);
        let e = lex_line("\"${HOST}${HOST}\"", 10, &env).unwrap_err();
        assert!(e.msg.contains("after environment expansion"));
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(cols("é  b"), [1, 4]);
    }
}
