//! The configuration: HAProxy's language (TCP subset) parsed into a typed model.
//!
//! [`parse_file`] / [`parse_str`] lex each line ([`lexer`]), dispatch it through
//! per-section keyword tables ([`parse`]), run the cross checks and return the
//! [`Config`] model, or the first error with `file:line:col`.
pub mod model;

mod lexer;
mod parse;

#[cfg(test)]
mod tests;

pub use model::*;
pub use parse::{parse_file, parse_str, ConfigError};
