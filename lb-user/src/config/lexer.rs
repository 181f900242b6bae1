//! HAProxy-style line lexing.
//!
//! One configuration line becomes a list of words, following HAProxy's
//! `parse_line()` rules:
//!
//! * spaces and tabs separate words;
//! * `#` outside quotes starts a comment running to the end of the line, even in
//!   the middle of a word;
//! * `"double quotes"` group a word and still expand `${VAR}` and backslash
//!   escapes; `'single quotes'` group a word and keep everything verbatim;
//! * outside single quotes, `\` escapes the next character: `\ `, `\\`, `\#`,
//!   `\$`, `\'`, `\"` give that character, `\r`, `\n`, `\t` and `\xHH` give the
//!   control character / byte; any other `\c` is kept as is (backslash included);
//! * `${NAME}` (and `${NAME-default}`) expands to the environment variable, or to
//!   the default / empty string if unset; an unquoted word that expands to nothing
//!   is dropped, a quoted one stays as an empty word;
//! * there is no backslash line continuation (HAProxy has none).
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

fn is_sep(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

fn is_var_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits one line (without its end of line) into words.
///
/// `env` looks environment variables up; `max_len` bounds the total size of
/// the words after expansion.
pub(crate) fn lex_line(
    line: &str,
    max_len: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Token>, LexError> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks: Vec<Token> = Vec::new();
    let mut total = 0usize;
    let mut i = 0usize;

    loop {
        while chars.get(i).copied().is_some_and(is_sep) {
            i += 1;
        }
        match chars.get(i) {
            None | Some('#') => break,
            Some(_) => {}
        }

        let start = i;
        let mut text = String::new();
        let mut verbatim = true;
        let mut quoted = false;
        let mut expanded = false;
        // Column of the opening quote still open, if any.
        let mut squote: Option<usize> = None;
        let mut dquote: Option<usize> = None;

        while let Some(&c) = chars.get(i) {
            if squote.is_some() {
                if c == '\'' {
                    squote = None;
                } else if c == '\0' {
                    return Err(lex_err(i + 1, "NUL character not allowed", ""));
                } else {
                    text.push(c);
                }
                i += 1;
                continue;
            }
            match c {
                '\'' if dquote.is_none() => {
                    squote = Some(i + 1);
                    quoted = true;
                    verbatim = false;
                    i += 1;
                }
                '"' => {
                    dquote = match dquote {
                        Some(_) => None,
                        None => Some(i + 1),
                    };
                    quoted = true;
                    verbatim = false;
                    i += 1;
                }
                c if dquote.is_none() && (is_sep(c) || c == '#') => break,
                '\\' => {
                    verbatim = false;
                    i += 1;
                    match chars.get(i).copied() {
                        Some(e @ (' ' | '\\' | '#' | '$' | '\'' | '"')) => {
                            text.push(e);
                            i += 1;
                        }
                        Some('r') => {
                            text.push('\r');
                            i += 1;
                        }
                        Some('n') => {
                            text.push('\n');
                            i += 1;
                        }
                        Some('t') => {
                            text.push('\t');
                            i += 1;
                        }
                        Some('x') => {
                            let hex: String = chars.iter().skip(i + 1).take(2).collect();
                            let byte = if hex.len() == 2 {
                                u8::from_str_radix(&hex, 16).ok()
                            } else {
                                None
                            };
                            match byte {
                                Some(0) => {
                                    return Err(lex_err(i, "NUL character not allowed", "\\x00"))
                                }
                                Some(b) => {
                                    text.push(char::from(b));
                                    i += 3;
                                }
                                None => {
                                    return Err(lex_err(
                                        i,
                                        "invalid hexadecimal escape, expected '\\xHH'",
                                        format!("\\x{hex}"),
                                    ))
                                }
                            }
                        }
                        // Unknown escape or backslash at the end: kept as is.
                        _ => text.push('\\'),
                    }
                }
                '$' if chars.get(i + 1) == Some(&'{') => {
                    verbatim = false;
                    expanded = true;
                    let var_col = i + 1;
                    i += 2;
                    let name_start = i;
                    while chars.get(i).copied().is_some_and(is_var_char) {
                        i += 1;
                    }
                    let name: String = chars
                        .get(name_start..i)
                        .unwrap_or_default()
                        .iter()
                        .collect();
                    if name.is_empty() {
                        return Err(lex_err(
                            var_col,
                            "missing environment variable name after '${'",
                            "${",
                        ));
                    }
                    let mut default = None;
                    if chars.get(i) == Some(&'-') {
                        i += 1;
                        let d_start = i;
                        while chars.get(i).is_some_and(|&c| c != '}') {
                            i += 1;
                        }
                        default = Some(
                            chars
                                .get(d_start..i)
                                .unwrap_or_default()
                                .iter()
                                .collect::<String>(),
                        );
                    }
                    if chars.get(i) != Some(&'}') {
                        return Err(lex_err(
                            var_col,
                            format!("missing closing '}}' after environment variable '{name}'"),
                            format!("${{{name}"),
                        ));
                    }
                    i += 1;
                    let value = env(&name).or(default).unwrap_or_default();
                    if value.contains('\0') {
                        return Err(lex_err(
                            var_col,
                            format!("environment variable '{name}' contains a NUL character"),
                            format!("${{{name}}}"),
                        ));
                    }
                    total = total.saturating_add(value.len());
                    if total > max_len {
                        return Err(lex_err(
                            var_col,
                            format!("line longer than {max_len} bytes after environment expansion"),
                            format!("${{{name}}}"),
                        ));
                    }
                    text.push_str(&value);
                }
                '\0' => return Err(lex_err(i + 1, "NUL character not allowed", "")),
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
        total = total.saturating_add(text.len());
        if total > max_len {
            return Err(lex_err(
                start + 1,
                format!("line longer than {max_len} bytes after environment expansion"),
                text,
            ));
        }
        if text.is_empty() && expanded && !quoted {
            // An unquoted word made only of empty variables disappears.
            continue;
        }
        if toks.len() >= MAX_WORDS {
            return Err(lex_err(
                start + 1,
                format!("too many words on this line (at most {MAX_WORDS})"),
                text,
            ));
        }
        toks.push(Token {
            text,
            col: start + 1,
            verbatim,
        });
    }
    Ok(toks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("5432".into()),
            "HOST" => Some("10.0.0.1".into()),
            "SPACED" => Some("a b".into()),
            "EMPTY" => Some(String::new()),
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
        assert!(words("").is_empty());
        assert!(words(" \t ").is_empty());
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
        assert_eq!(words("a \"\" ''"), ["a", "", ""]);
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
    }

    #[test]
    fn env_expansion() {
        assert_eq!(words("${HOST}:${PORT}"), ["10.0.0.1:5432"]);
        assert_eq!(words("\"${HOST}:${PORT}\""), ["10.0.0.1:5432"]);
        assert_eq!(words("'${HOST}'"), ["${HOST}"]);
        assert_eq!(words("\\${HOST}"), ["${HOST}"]);
        assert_eq!(words("${SPACED}"), ["a b"]);
        assert_eq!(words("a ${UNSET} b"), ["a", "b"]);
        assert_eq!(words("a \"${UNSET}\" b"), ["a", "", "b"]);
        assert_eq!(words("a ${EMPTY}x"), ["a", "x"]);
        assert_eq!(words("${UNSET-def ault}"), ["def ault"]);
        assert_eq!(words("${PORT-1}"), ["5432"]);
        assert_eq!(words("$HOST $ {"), ["$HOST", "$", "{"]);
        let t = lex_line("x ${HOST}", 100, &env).unwrap();
        assert!(!t[1].verbatim);
        assert!(t[0].verbatim);
    }

    #[test]
    fn errors() {
        assert_eq!(err("a \"bc").col, 3);
        assert!(err("a \"bc").msg.contains("unterminated double quote"));
        assert_eq!(err("ab 'c").col, 4);
        assert_eq!(err("a ${HOST").col, 3);
        assert!(err("a ${HOST").msg.contains("missing closing '}'"));
        assert!(err("${}").msg.contains("missing environment variable name"));
        assert!(err("a \\xZZ").msg.contains("hexadecimal"));
        assert!(err("a \\x0").msg.contains("hexadecimal"));
        assert!(err("a\0").msg.contains("NUL"));
        let many = vec!["w"; MAX_WORDS + 1].join(" ");
        assert!(err(&many).msg.contains("too many words"));
        assert_eq!(words(&vec!["w"; MAX_WORDS].join(" ")).len(), MAX_WORDS);
        let e = lex_line("${HOST}${HOST}", 10, &env).unwrap_err();
        assert!(e.msg.contains("after environment expansion"));
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(cols("é  b"), [1, 4]);
    }
}
