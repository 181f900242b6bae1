//! Privileged test harness for lb: network namespaces, the lb daemon,
//! PostgreSQL backends and in-process traffic generators.
//!
//! Integration tests live in `tests/` and are all `#[ignore]`: they need
//! root and are run by `cargo xtask test`
//! (`cargo test -p lb-tests -- --ignored --test-threads=1`). They fail, never
//! skip, when something is missing.
//!
//! Network rule: every byte goes only to addresses inside the namespaces a
//! [`Topology`] creates (10.210.1.0/24, 10.210.2.0/24, fd10:210:1::/64,
//! fd10:210:2::/64 on veth pairs with no route out).

pub mod cfg;
pub mod flood;
pub mod haproxy;
pub mod lb;
pub mod mem;
pub mod netns;
pub mod packet;
pub mod postgres;
pub mod rawtcp;
pub mod report;
pub mod scenario;
pub mod syslog;
pub mod topology;
pub mod traffic;
pub mod util;

pub use cfg::{pgsql_config, tcp_config, write_cfg, SEED_PGSQL};
pub use lb::{lb_bin, Lb, ServerRow};
pub use netns::{in_netns, spawn_in_netns, Netns};
pub use postgres::{pgbench, psql, psql_ok, Postgres};
pub use report::run_test;
pub use topology::*;
pub use traffic::{BlastServer, BlastSpec, ClientMode, ProbeServer, Rng};
