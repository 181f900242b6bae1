//! SIGHUP: what a new configuration file can change while connections run.
use anyhow::{bail, Context, Result};

use super::{acl_meta, check_xdp, Ctx, RunOpts};
use crate::config::{self, l4acl, Config};
use crate::kernel::xdp::{self, FrontDoor};

/// SIGHUP: reads the configuration files again and puts in force, at once and
/// together, what can change while connections run: every frontend's
/// `tcp-request connection` rules (XDP tries swapped by generation, so a
/// packet meets the old rules or the new ones, never none; then the tables
/// the accept path uses), `xdp-syn-rate` and `xdp-syn-cookies`. A file that
/// does not parse, or that adds, removes or renames frontends, changes
/// nothing. Other differences are reported and wait for a restart (which
/// keeps the server state).
pub(super) fn reload(
    opts: &RunOpts,
    ctx: &Ctx,
    front: &mut FrontDoor,
    xdp_reqs: &[xdp::IfaceReq],
) -> Result<String> {
    let new = config::parse_files(&opts.files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let names =
        |c: &Config| -> Vec<String> { c.frontends.iter().map(|f| f.name.clone()).collect() };
    if names(&ctx.cfg) != names(&new) {
        bail!(
            "the frontends changed ({:?} -> {:?}); adding, removing or renaming one needs a restart",
            names(&ctx.cfg),
            names(&new)
        );
    }
    check_xdp(&new, opts.no_xdp)?;
    let tables: Vec<Option<l4acl::Table>> = new
        .frontends
        .iter()
        .map(|f| l4acl::compile(&f.tcp_request_connection))
        .collect();
    let refs: Vec<Option<&l4acl::Table>> = tables.iter().map(|t| t.as_ref()).collect();
    front
        .install_acls(&refs)
        .context("writing the new tcp-request connection rules to the ACL tries")?;
    front
        .set_syn_rate(new.global.xdp_syn_rate.as_ref().map(|r| r.value))
        .context("writing LB_XDP_CFG")?;
    let (cookies, why_not) = xdp::syn_cookies_for(&new, xdp_reqs);
    front
        .set_syn_cookies(cookies)
        .context("writing LB_XDP_CFG")?;
    let meta = acl_meta(&new, &tables);
    front.set_frontends(&meta).context("writing LB_FE_META")?;
    let rules: usize = meta.iter().map(|(_, n)| n).sum();
    *ctx.acls.write().unwrap_or_else(|e| e.into_inner()) = tables;
    let mut done = format!(
        "{rules} tcp-request connection rules in force (ACL generation {}), xdp-syn-rate {}, \
         xdp-syn-cookies {}",
        front.generation(),
        new.global
            .xdp_syn_rate
            .as_ref()
            .map_or("off".to_string(), |r| format!(
                "{}/s burst {}",
                r.value.per_second, r.value.burst
            )),
        match (cookies, why_not) {
            (true, _) => "on".to_string(),
            (false, None) => "off".to_string(),
            (false, Some(why)) => format!("off ({why})"),
        }
    );
    let rest = crate::config::reload_pending(&ctx.cfg, &new);
    if !rest.is_empty() {
        done.push_str(&format!(
            "; not applied until a restart: {}",
            rest.join(", ")
        ));
    }
    Ok(done)
}
