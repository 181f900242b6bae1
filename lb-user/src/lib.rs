//! lb: an eBPF-accelerated L4 (TCP) load balancer that speaks HAProxy's config
//! language. See docs/ARCHITECTURE.md for the maps, programs and the life of one
//! connection.
pub mod admin;
pub mod balance;
pub mod bpf;
pub mod btf;
pub mod check;
pub mod client;
pub mod config;
pub mod daemon;
pub mod health;
pub mod l4acl;
pub mod metrics;
pub mod proxy_proto;
pub mod runtime;
pub mod show;
pub mod splice;
pub mod srvstate;
pub mod state;
pub mod sys;
pub mod top;
pub mod userpath;
pub mod xdp;
