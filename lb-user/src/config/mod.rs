//! The configuration: HAProxy 2.6's language (TCP mode) parsed into a typed
//! model.
//!
//! [`parse_files`] reads the files (a directory stands for its `*.cfg` files,
//! in byte order, as `haproxy -f DIR`), lexes each line ([`lexer`]),
//! dispatches it through per-section keyword tables ([`parse`], [`global`],
//! [`acl`], [`checks`]), runs the cross checks and returns the [`Config`]
//! model, or the first error with `file:line:col`. [`runtime_gaps`] lists
//! what a valid configuration asks for that `lb run` does not apply yet.
pub mod model;

mod binds;
mod gaps;
mod host;
pub mod l4acl;
mod lexer;
mod limits;
pub mod matching;
pub mod nat;
mod parse;
mod reload;
mod values;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod features_tests;
#[cfg(test)]
mod tests;

pub use binds::always_local;
pub use gaps::{runtime_gaps, runtime_ignored};
pub use limits::{self_steering, MAX_SERVERS};
pub use model::*;
pub use parse::{expand_paths, parse_file, parse_files, parse_str, ConfigError};
pub use reload::reload_pending;

/// Fuzzing entry point: parses `text` against a fake system (no environment,
/// no name resolution, no files), so that only the parser is exercised.
#[doc(hidden)]
pub fn parse_for_fuzzing(text: &str) -> Result<Config, ConfigError> {
    parse::parse_with(&[(text, std::path::Path::new("fuzz.cfg"))], &host::NullSys)
}
