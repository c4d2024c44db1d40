//! `berth freeze` / `berth unfreeze`: stop deploys until a time, and lift that again.

use crate::error::{Error, Result, exit};
use crate::windows::{self, show};
use crate::workspace::Workspace;

pub fn freeze(ws: &Workspace, stacks: &[String], env: Option<&str>, until: &str, reason: &str) -> Result<i32> {
    let snap = ws.snapshot("HEAD")?;
    let scopes = windows::scopes(&snap.project, stacks, env).map_err(Error::Unknown)?;
    let now = windows::now();
    let until = windows::parse_until(until, now).map_err(|e| Error::Usage(format!("--until {e}")))?;
    if reason.trim().is_empty() {
        return Err(Error::Usage("--reason: say why (it is shown to whoever is refused)".into()));
    }
    let state = ws.state()?;
    let by = crate::release::actor();
    for s in &scopes {
        state.freeze(s, until, reason, &by, now)?;
        println!("froze {s} until {}: {reason}", show(until));
    }
    println!("deploys wait (berth serve) or are refused (apply, deploy) until then; self-heal and rollbacks still run");
    Ok(exit::OK)
}

pub fn unfreeze(ws: &Workspace, stacks: &[String], env: Option<&str>) -> Result<i32> {
    let snap = ws.snapshot("HEAD")?;
    let all = stacks.is_empty() && env.is_none();
    let scopes = if all { Vec::new() } else { windows::scopes(&snap.project, stacks, env).map_err(Error::Unknown)? };
    let lifted = ws.state()?.unfreeze(&scopes, windows::now())?;
    if lifted.is_empty() {
        println!("nothing was frozen");
    }
    for f in &lifted {
        println!("unfroze {} (frozen by {} until {}: {})", f.scope, f.by, show(f.until), f.reason);
    }
    Ok(exit::OK)
}
