//! TCP connect health checks with HAProxy's timing and state machine.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::state::{apply_check, state_name, State};
use crate::sys;

/// Starts one task per server with `check`. The first check of each server is
/// spread over its first interval so a large farm is not probed in one burst.
pub fn spawn_all(state: &Arc<State>, on_change: Arc<dyn Fn(u32) + Send + Sync>) {
    let n = state.servers.len().max(1) as u64;
    for s in &state.servers {
        let Some(params) = s.check else { continue };
        let state = state.clone();
        let idx = s.idx;
        let on_change = on_change.clone();
        let offset = params.inter.as_millis() as u64 * idx as u64 / n;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(offset)).await;
            loop {
                let s = &state.servers[idx as usize];
                if s.admin.checks_disabled.load(Ordering::Relaxed) {
                    // `disable health`: the state stays as it is until enabled.
                    tokio::time::sleep(params.inter).await;
                    continue;
                }
                let start = Instant::now();
                // Without `timeout check`, HAProxy bounds the whole check by `inter`.
                let ok = match tokio::time::timeout(params.inter, TcpStream::connect(s.addr)).await
                {
                    Ok(Ok(conn)) => {
                        // Close with an RST, as HAProxy does, so checks leave no
                        // TIME_WAIT behind.
                        let _ = sys::set_linger_reset(&conn);
                        true
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("check {}/{}: {e}", s.backend, s.name);
                        false
                    }
                    Err(_) => false,
                };
                let took = start.elapsed();
                s.check_us.store(
                    took.as_micros().min(u32::MAX as u128) as u32,
                    Ordering::Relaxed,
                );
                if let Some(new) = apply_check(s, ok, &params) {
                    let reason = if ok {
                        "Layer4 check passed".to_string()
                    } else if took >= params.inter {
                        "Layer4 timeout".to_string()
                    } else {
                        "Layer4 connection problem".to_string()
                    };
                    let up = state
                        .backends
                        .iter()
                        .find(|b| b.name == s.backend)
                        .map(|b| {
                            b.servers
                                .iter()
                                .filter(|&&i| state.servers[i as usize].is_up())
                                .count()
                        })
                        .unwrap_or(0);
                    tracing::warn!(
                        "Server {}/{} is {}, reason: {}, check duration: {}ms. {} active servers left.",
                        s.backend,
                        s.name,
                        state_name(new),
                        reason,
                        took.as_millis(),
                        up
                    );
                    on_change(idx);
                }
                tokio::time::sleep(params.inter.saturating_sub(took)).await;
            }
        });
    }
}
