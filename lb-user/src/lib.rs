//! lb: an eBPF-accelerated L4 (TCP) load balancer that speaks HAProxy's config
//! language. See docs/ARCHITECTURE.md for the maps, programs and the life of one
//! connection.
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod health;
pub mod kernel;
pub mod state;
pub mod sys;
