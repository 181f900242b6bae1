//! What the parser asks of the system: environment variables, name
//! resolution, user and group ids, files (`-f` pattern lists). Tests and the
//! fuzzer substitute their own.
use std::ffi::CString;
use std::io::Read;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

/// Largest `-f` pattern file read, in bytes.
pub(crate) const MAX_PATTERN_FILE: u64 = 16 << 20;

pub(crate) trait Sys {
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
    /// Resolves a host name, in the resolver's order.
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String>;
    /// The uid of a user name.
    fn user(&self, name: &str) -> Option<u32>;
    /// The gid of a group name.
    fn group(&self, name: &str) -> Option<u32>;
    /// Reads a text file (at most [`MAX_PATTERN_FILE`] bytes).
    fn read(&self, path: &Path) -> Result<String, String>;
}

/// The real system.
pub(crate) struct RealSys;

impl Sys for RealSys {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        (host, 0)
            .to_socket_addrs()
            .map(|a| a.map(|a| a.ip()).collect())
            .map_err(|e| e.to_string())
    }

    fn user(&self, name: &str) -> Option<u32> {
        let name = CString::new(name).ok()?;
        let mut buf = vec![0u8; 16 << 10];
        // SAFETY: an all-zero passwd is a valid out-parameter.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf outlives it.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        (rc == 0 && !out.is_null()).then_some(pwd.pw_uid)
    }

    fn group(&self, name: &str) -> Option<u32> {
        let name = CString::new(name).ok()?;
        let mut buf = vec![0u8; 64 << 10];
        // SAFETY: an all-zero group is a valid out-parameter.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf outlives it.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        (rc == 0 && !out.is_null()).then_some(grp.gr_gid)
    }

    fn read(&self, path: &Path) -> Result<String, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        file.take(MAX_PATTERN_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > MAX_PATTERN_FILE {
            return Err(format!("larger than {MAX_PATTERN_FILE} bytes"));
        }
        String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
    }
}

/// No environment, no resolver, no accounts, no files (fuzzing).
pub(crate) struct NullSys;

impl Sys for NullSys {
    fn env(&self, _: &str) -> Option<String> {
        None
    }
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        Err(format!("no resolver ({host})"))
    }
    fn user(&self, _: &str) -> Option<u32> {
        None
    }
    fn group(&self, _: &str) -> Option<u32> {
        None
    }
    fn read(&self, path: &Path) -> Result<String, String> {
        Err(format!("no file system ({})", path.display()))
    }
}
