//! One `[[stack]]` entry applied to the stack it declares or refines: every key checked and merged.

use super::defaults::secret_files;
use super::environments::check_ci;
use super::stack::{Stack, parse_mode};
use crate::config::{EnvValue, StackToml};
use crate::discovery;
use crate::duration;
use crate::error::{ConfigError, Location};
use crate::tree::{self, Tree};
use crate::verify::{self, Rollback};

/// Apply entry `st` (at `l`) to `stack`. `path` is the entry's own path, already resolved in the repository.
pub(super) fn apply(
    stack: &mut Stack,
    st: &StackToml,
    path: Option<String>,
    tree: &Tree,
    l: &Option<Location>,
    errors: &mut Vec<ConfigError>,
) {
    let at = |m: String| ConfigError::new(m).at(l.clone());
    stack.location = l.clone();
    if let Some(n) = &st.name {
        stack.name = n.clone();
    }
    if let Some(p) = path
        && p != stack.path
    {
        stack.compose_files = discovery::default_compose_files(tree, &p);
        stack.secrets = secret_files(tree, &p);
        stack.path = p;
    }
    if tree.under(&stack.path).is_empty() {
        errors.push(at(format!("stack `{}`: folder `{}` does not exist in the repository", stack.name, stack.path)));
    }
    if let Some(files) = &st.compose {
        stack.compose_files.clear();
        stack.compose_declared = true;
        for f in files {
            match tree::join(&stack.path, f) {
                Some(p) if tree.contains(&p) => stack.compose_files.push(p),
                Some(p) => errors.push(at(format!("stack `{}`: compose file `{p}` does not exist", stack.name))),
                None => errors.push(at(format!("stack `{}`: compose file `{f}` leaves the repository", stack.name))),
            }
        }
    }
    for f in &st.env_files {
        match tree::join(&stack.path, f) {
            Some(p) if tree.contains(&p) => stack.env_files.push(p),
            Some(p) => errors.push(at(format!("stack `{}`: env file `{p}` does not exist", stack.name))),
            None => errors.push(at(format!("stack `{}`: env file `{f}` leaves the repository", stack.name))),
        }
    }
    if let Some(s) = &st.server {
        stack.server = s.clone();
    }
    if st.mode.is_some() {
        match parse_mode(st.mode.as_deref()) {
            Ok(m) => stack.mode = m,
            Err(e) => errors.push(at(format!("stack `{}`: {e}", stack.name))),
        }
    }
    if let Some(t) = &st.timeout {
        match duration::parse(t) {
            Ok(d) => stack.timeout = d,
            Err(e) => errors.push(at(format!("stack `{}` timeout: {e}", stack.name))),
        }
    }
    let mut verr = Vec::new();
    stack.verify = verify::resolve(&stack.verify, st.verify.as_ref(), &mut verr);
    if let Some(r) = &st.rollback {
        match Rollback::parse(r) {
            Ok(r) => stack.rollback = r,
            Err(e) => verr.push(e),
        }
    }
    errors.extend(verr.into_iter().map(|e| at(format!("stack `{}`: {e}", stack.name))));
    for g in st.watch.iter().chain(&st.ignore) {
        if let Err(e) = crate::changes::glob(g) {
            errors.push(at(format!("stack `{}`: {e}", stack.name)));
        }
    }
    for k in st.env.keys() {
        if !crate::vars::valid_key(k) {
            errors.push(at(format!("stack `{}`: `{k}` is not a valid variable name", stack.name)));
        }
    }
    for (which, toml, hook) in [
        ("pre_deploy", &st.pre_deploy, &mut stack.pre_deploy),
        ("post_deploy", &st.post_deploy, &mut stack.post_deploy),
    ] {
        let Some(toml) = toml else { continue };
        match super::hooks::resolve(which, &stack.path, toml, tree) {
            Ok(h) => *hook = h,
            Err(es) => errors.extend(es.into_iter().map(|e| at(format!("stack `{}`: {e}", stack.name)))),
        }
    }
    if let Some(p) = &st.pull {
        match super::stack::parse_pull(p) {
            Ok(p) => stack.pull = Some(p),
            Err(e) => errors.push(at(format!("stack `{}`: {e}", stack.name))),
        }
    }
    if let Some(r) = &st.rollout {
        let mut rerr = Vec::new();
        stack.rollout = crate::rollout::Rollout::resolve(&stack.rollout, r, &mut rerr);
        errors.extend(rerr.into_iter().map(|e| at(format!("stack `{}`: {e}", stack.name))));
    }
    if st.tier.is_some() {
        stack.tier = st.tier.clone();
    }
    if let Some(h) = st.self_heal {
        stack.self_heal = h;
    }
    if let Some(ci) = &st.require_ci {
        if let Err(m) = check_ci(ci) {
            errors.push(at(format!("stack `{}` require_ci: {m}", stack.name)));
        }
        stack.require_ci = Some(ci.clone());
    }
    stack.after.extend(st.after.iter().cloned());
    stack.watch.extend(st.watch.iter().cloned());
    stack.ignore.extend(st.ignore.iter().cloned());
    for (k, v) in &st.env {
        match v {
            EnvValue::Plain(v) => {
                stack.env.insert(k.clone(), v.clone());
            }
            EnvValue::Secret(r) => {
                if r.file.is_some() == r.env.is_some() {
                    errors.push(at(format!("stack `{}` env `{k}`: give exactly one of file or env", stack.name)));
                }
                stack.secret_env.insert(k.clone(), r.clone());
            }
        }
    }
    for f in &st.secrets {
        match tree::join(&stack.path, f) {
            Some(p) if tree.contains(&p) => {
                if !stack.secrets.contains(&p) {
                    stack.secrets.push(p);
                }
            }
            Some(p) => errors.push(at(format!("stack `{}`: secret file `{p}` does not exist", stack.name))),
            None => errors.push(at(format!("stack `{}`: secret file `{f}` leaves the repository", stack.name))),
        }
    }
    if let Some(m) = st.manual {
        stack.manual = m;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_in;

    const TREE: &[&str] = &[
        "stacks/web/compose.yaml",
        "stacks/web/extra.yaml",
        "stacks/web/app.env.age",
        "stacks/web/check.sh",
        "libs/x.env",
    ];

    #[test]
    fn every_key_is_applied() {
        let p = check_in(
            TREE,
            r#"
[[stack]]
name = "web"
compose = ["compose.yaml", "extra.yaml"]
env_files = ["../../libs/x.env"]
env = { TAG = "1", TOKEN = { file = "/run/token" } }
pre_deploy = ["sh", "check.sh"]
pull = "always"
rollout = { order = "start-first", services = { db = "recreate" }, drain = "2s" }
timeout = "2m"
manual = true
self_heal = true
rollback = "manual"
require_ci = { provider = "github", repo = "me/web" }
"#,
            &[],
        )
        .unwrap();
        let w = p.stack("web").unwrap();
        assert_eq!(w.compose_files, ["stacks/web/compose.yaml", "stacks/web/extra.yaml"]);
        assert_eq!(w.env_files, ["libs/x.env"]);
        assert_eq!(w.env["TAG"], "1");
        assert_eq!(w.secret_env["TOKEN"].file.as_deref(), Some("/run/token"));
        assert_eq!(w.secrets, ["stacks/web/app.env.age"]);
        assert_eq!(w.pre_deploy.run, ["sh", "check.sh"]);
        assert_eq!(w.pre_deploy.script, Some((1, "stacks/web/check.sh".to_string())));
        assert_eq!(w.pull, Some(super::super::stack::Pull::Always));
        assert_eq!(w.rollout.order_of("web"), crate::rollout::Order::StartFirst);
        assert_eq!(w.rollout.order_of("db"), crate::rollout::Order::Recreate);
        assert_eq!(w.rollout.drain.as_secs(), 2);
        assert_eq!(w.timeout.as_secs(), 120);
        assert!(w.manual && w.self_heal && w.require_ci.is_some());
        assert_eq!(w.location.as_ref().unwrap().line, 2);
    }

    #[test]
    fn every_bad_key_is_reported() {
        check_in(
            TREE,
            r#"[[stack]]
name = "web"
compose = ["gone.yaml", "../../../x.yaml"]
env_files = ["none.env"]
mode = "kube"
timeout = "later"
env = { "bad key" = "1", S = { file = "a", env = "B" } }
post_deploy = []
pre_deploy = ["sh", "gone.sh"]
pull = "sometimes"
rollout = "blue-green"
secrets = ["gone.env.age"]
require_ci = { provider = "jenkins" }
"#,
            &[
                "berth.toml:1:1: stack `web`: compose file `stacks/web/gone.yaml` does not exist",
                "stack `web`: compose file `../../../x.yaml` leaves the repository",
                "stack `web`: env file `stacks/web/none.env` does not exist",
                "stack `web`: unknown mode `kube`",
                "stack `web` timeout: ",
                "stack `web`: `bad key` is not a valid variable name",
                "stack `web`: pre_deploy: script `gone.sh` does not exist in the commit (looked for `stacks/web/gone.sh` and `gone.sh`)",
                "stack `web`: post_deploy needs a program",
                "stack `web`: unknown pull `sometimes`",
                "stack `web`: unknown rollout `blue-green`",
                "stack `web` require_ci: unknown provider `jenkins`",
                "stack `web` env `S`: give exactly one of file or env",
                "stack `web`: secret file `stacks/web/gone.env.age` does not exist",
                "stack `web` has no compose file in `stacks/web`",
            ],
        );
    }

    #[test]
    fn a_declared_folder_must_exist() {
        check_in(
            TREE,
            "[[stack]]\nname = \"db\"\npath = \"stacks/db\"\n",
            &["stack `db`: folder `stacks/db` does not exist", "stack `db` has no compose file in `stacks/db`"],
        );
    }
}
