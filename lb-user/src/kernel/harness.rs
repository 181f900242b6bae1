//! `lb_xdp` outside the daemon, for the packet tests and benchmarks: the
//! program loaded with its maps filled from a configuration, attached nowhere
//! (or natively to a test interface), and packets run through it with
//! `BPF_PROG_TEST_RUN`. Built only with the `test-harness` feature.
use aya::maps::MapData;
use aya::Ebpf;

use lb_common::maps;

use super::xdp::{
    attach, load, program, syn_cookies_on, tc_program, FrontDoor, IfaceReq, XdpError, XdpMaps,
};
use crate::config::l4acl::Table;
use crate::config::{Config, Origin, XdpAttach};

/// `lb_xdp` loaded with its maps filled from a configuration, attached nowhere:
/// for running packets through it with `BPF_PROG_TEST_RUN` (tests, benchmarks).
pub struct Standalone {
    pub runner: Runner,
    pub front: FrontDoor,
    pub tables: Vec<Option<Table>>,
}

/// The loaded program and its counters.
pub struct Runner {
    pub ebpf: Ebpf,
    /// Packets run through `lb_front` (tc) instead of `lb_xdp`.
    pub tc: bool,
    stats: aya::maps::PerCpuArray<MapData, u64>,
    fe_stats: aya::maps::PerCpuArray<MapData, lb_common::XdpFeStats>,
}

impl Standalone {
    pub fn new(cfg: &Config) -> Result<Self, crate::kernel::BpfError> {
        use crate::kernel::BpfError;
        if crate::kernel::OBJECT.is_empty() {
            return Err(BpfError::NoObject);
        }
        let mut ebpf = aya::EbpfLoader::new().load(crate::kernel::OBJECT)?;
        let xdp_err = |e: XdpError| BpfError::Xdp(Box::new(e));
        load(&mut ebpf).map_err(xdp_err)?;
        let mut binds: aya::maps::HashMap<MapData, lb_common::BindKey, lb_common::BindTarget> =
            ebpf.take_map(maps::BINDS)
                .ok_or(BpfError::MissingMap { name: maps::BINDS })?
                .try_into()
                .map_err(|source| BpfError::Map {
                    name: maps::BINDS,
                    source,
                })?;
        for (fe, f) in cfg.frontends.iter().enumerate() {
            for k in f.bind_keys() {
                let t = lb_common::BindTarget {
                    listener: fe as u32 * 2 + (k.family == lb_common::AF_INET6) as u32,
                    ifindex: 0,
                };
                binds.insert(k, t, 0).map_err(|source| BpfError::Map {
                    name: maps::BINDS,
                    source,
                })?;
            }
        }
        fn percpu<V: aya::Pod>(
            ebpf: &mut Ebpf,
            name: &'static str,
        ) -> Result<aya::maps::PerCpuArray<MapData, V>, BpfError> {
            ebpf.take_map(name)
                .ok_or(BpfError::MissingMap { name })?
                .try_into()
                .map_err(|source| BpfError::Map { name, source })
        }
        let stats = percpu(&mut ebpf, maps::STATS)?;
        let fe_stats = percpu(&mut ebpf, maps::XDP_FE_STATS)?;
        let mut front = FrontDoor::new(XdpMaps::take(&mut ebpf).map_err(xdp_err)?);
        let tables: Vec<Option<Table>> = cfg
            .frontends
            .iter()
            .map(|f| crate::config::l4acl::compile(&f.tcp_request_connection))
            .collect();
        let refs: Vec<Option<&Table>> = tables.iter().map(|t| t.as_ref()).collect();
        front.install_acls(&refs).map_err(xdp_err)?;
        front
            .set_syn_rate(cfg.global.xdp_syn_rate.as_ref().map(|r| r.value))
            .map_err(xdp_err)?;
        front
            .set_syn_cookies(syn_cookies_on(cfg))
            .map_err(xdp_err)?;
        Ok(Self {
            runner: Runner {
                ebpf,
                tc: false,
                stats,
                fe_stats,
            },
            front,
            tables,
        })
    }
}

impl Runner {
    /// Runs one packet (a whole Ethernet frame) through `lb_xdp` `repeat` times;
    /// returns the XDP action and the run's mean duration.
    pub fn run(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), aya::programs::ProgramError> {
        self.run_out(frame, repeat).map(|(a, d, _)| (a, d))
    }

    /// As [`Runner::run`], also returning the frame as the program left it.
    pub fn run_out(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration, Vec<u8>), aya::programs::ProgramError> {
        use aya::programs::{TestRun, TestRunOptions};
        let unwrap = |e| match e {
            XdpError::Program { source, .. } => *source,
            _ => aya::programs::ProgramError::NotLoaded,
        };
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::new()
        };
        let r = if self.tc {
            tc_program(&mut self.ebpf).map_err(unwrap)?.test_run(opts)?
        } else {
            program(&mut self.ebpf).map_err(unwrap)?.test_run(opts)?
        };
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, r.duration, out))
    }

    /// Attaches the program in native mode to `iface` of the calling thread's
    /// network namespace (until the runner is dropped).
    pub fn attach_native(&mut self, iface: &str) -> Result<(), XdpError> {
        let req = IfaceReq {
            name: iface.to_string(),
            mode: XdpAttach::Native,
            origin: Origin::default(),
        };
        attach(&mut self.ebpf, &[req]).map(|_| ())
    }

    /// Puts a listening socket in `LB_LISTENERS` at `index` (the frontend's
    /// index * 2, + 1 for IPv6), as the daemon does for its binds.
    pub fn set_listener(
        &mut self,
        index: u32,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), aya::maps::MapError> {
        let map = self
            .ebpf
            .map_mut(maps::LISTENERS)
            .ok_or(aya::maps::MapError::InvalidName {
                name: maps::LISTENERS.to_string(),
            })?;
        let mut m = aya::maps::SockMap::try_from(map)?;
        m.set(index, &fd, 0)
    }

    /// A global counter (`lb_common::stat::*`), summed over CPUs.
    pub fn stat(&self, idx: u32) -> Result<u64, aya::maps::MapError> {
        Ok(self.stats.get(&idx, 0)?.iter().sum())
    }

    /// A frontend's counters, summed over CPUs.
    pub fn frontend(&self, fe: u32) -> Result<lb_common::XdpFeStats, aya::maps::MapError> {
        let mut t = lb_common::XdpFeStats::default();
        for s in self.fe_stats.get(&fe, 0)?.iter() {
            t.add(s);
        }
        Ok(t)
    }
}

/// `lb_nat` loaded with NAT maps written by hand, attached nowhere: packets
/// run through it with `BPF_PROG_TEST_RUN` (the packet fixtures).
pub struct NatRunner {
    pub ebpf: Ebpf,
    pub maps: crate::kernel::nat::NatMaps,
    stats: aya::maps::PerCpuArray<MapData, u64>,
}

impl NatRunner {
    pub fn new() -> Result<Self, crate::kernel::BpfError> {
        use crate::kernel::BpfError;
        if crate::kernel::OBJECT.is_empty() {
            return Err(BpfError::NoObject);
        }
        let nat_err = |e| BpfError::Nat(Box::new(e));
        let mut loader = aya::EbpfLoader::new();
        loader.map_max_entries(maps::NAT_FLOWS, 1024);
        let mut ebpf = loader.load(crate::kernel::OBJECT)?;
        crate::kernel::nat::load(&mut ebpf).map_err(nat_err)?;
        let maps = crate::kernel::nat::NatMaps::take(&mut ebpf).map_err(nat_err)?;
        let stats = ebpf
            .take_map(maps::STATS)
            .ok_or(BpfError::MissingMap { name: maps::STATS })?
            .try_into()
            .map_err(|source| BpfError::Map {
                name: maps::STATS,
                source,
            })?;
        Ok(Self { ebpf, maps, stats })
    }

    /// Runs one frame through `lb_nat` as if it arrived on `ingress_ifindex`;
    /// returns the tc action, the frame as the program left it, and the
    /// interface a redirect names (0: none).
    pub fn run(
        &mut self,
        frame: &[u8],
        ingress_ifindex: u32,
    ) -> Result<(i32, Vec<u8>), aya::programs::ProgramError> {
        use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(lb_common::progs::NAT)
            .ok_or(aya::programs::ProgramError::NotLoaded)?
            .try_into()?;
        // struct __sk_buff: ingress_ifindex at byte 36 (the only field set).
        let mut ctx = [0u8; 192];
        ctx[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        })?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value as i32, out))
    }

    /// A global counter (`lb_common::stat::*`), summed over CPUs.
    pub fn stat(&self, idx: u32) -> Result<u64, aya::maps::MapError> {
        Ok(self.stats.get(&idx, 0)?.iter().sum())
    }
}
