//! Whole-project checks of the merged stacks: names, servers, `after`, tiers and cycles.

use std::collections::HashMap;

use super::{Server, Stack};
use crate::dag;
use crate::error::{ConfigError, did_you_mean};

/// Is `name` a valid stack or server name (`[a-z0-9][a-z0-9_-]*`)?
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

pub(super) const NAME_HELP: &str = "names use lowercase letters, digits, `-` and `_`, and start with a letter or digit";

/// Each stack has a valid, unique name, a compose file, a declared server and known `after` stacks.
pub(super) fn stacks(stacks: &[Stack], servers: &[Server], errors: &mut Vec<ConfigError>) {
    let mut by_name: HashMap<&str, &Stack> = HashMap::new();
    for s in stacks {
        if !valid_name(&s.name) {
            errors.push(
                ConfigError::new(format!("invalid stack name `{}` ({})", s.name, s.origin))
                    .at(s.location.clone())
                    .help(NAME_HELP),
            );
        }
        if let Some(other) = by_name.insert(&s.name, s) {
            errors.push(
                ConfigError::new(format!("two stacks are named `{}`: `{}` and `{}`", s.name, other.path, s.path))
                    .help("give one of them another name with [[stack]] name = \"...\" and path = \"...\""),
            );
        }
        if s.compose_files.is_empty() {
            errors.push(
                ConfigError::new(format!("stack `{}` has no compose file in `{}`", s.name, s.path))
                    .help("add compose.yaml to the folder or list files with compose = [\"...\"]"),
            );
        }
        if !servers.iter().any(|x| x.name == s.server) {
            let hint = match did_you_mean(&s.server, servers.iter().map(|x| x.name.as_str())) {
                Some(best) => format!("did you mean `{best}`? Or declare it: [[server]] name = \"{}\"", s.server),
                None => format!("declare it in berth.toml: [[server]] name = \"{}\"", s.server),
            };
            errors.push(
                ConfigError::new(format!("stack `{}` targets server `{}`, which is not declared", s.name, s.server))
                    .at(s.location.clone())
                    .help(hint),
            );
        }
        for d in &s.after {
            if d == &s.name {
                errors.push(ConfigError::new(format!("stack `{}` lists itself in `after`", s.name)));
            }
        }
    }
    for s in stacks {
        for d in &s.after {
            if !by_name.contains_key(d.as_str()) {
                let e = ConfigError::new(format!("stack `{}` comes after unknown stack `{d}`", s.name))
                    .at(s.location.clone());
                errors.push(match did_you_mean(d, by_name.keys().copied()) {
                    Some(best) => e.help(format!("did you mean `{best}`?")),
                    None => e,
                });
            }
        }
    }
}

/// Every stack's tier is listed in `[berth] tiers`; then tiers order whole groups: each stack comes after
/// every stack of the nearest earlier, non-empty tier.
pub(super) fn tiers(stacks: &mut [Stack], tiers: &[String], errors: &mut Vec<ConfigError>) {
    for s in stacks.iter() {
        if let Some(t) = &s.tier
            && !tiers.contains(t)
        {
            let e = ConfigError::new(format!("stack `{}` is in unknown tier `{t}`", s.name)).at(s.location.clone());
            errors.push(match did_you_mean(t, tiers.iter().map(String::as_str)) {
                Some(best) => e.help(format!("did you mean `{best}`? Tiers are listed in [berth] tiers")),
                None => e.help("list it in [berth] tiers = [...]"),
            });
        }
    }
    let rank = |s: &Stack| s.tier.as_ref().and_then(|t| tiers.iter().position(|x| x == t));
    let ranks: Vec<Option<usize>> = stacks.iter().map(rank).collect();
    for i in 0..stacks.len() {
        let Some(r) = ranks[i] else { continue };
        let earlier = (0..r).rev().find_map(|k| {
            let members: Vec<String> =
                stacks.iter().zip(&ranks).filter(|(_, rr)| **rr == Some(k)).map(|(s, _)| s.name.clone()).collect();
            (!members.is_empty()).then_some(members)
        });
        for d in earlier.unwrap_or_default() {
            if !stacks[i].after.contains(&d) {
                stacks[i].after.push(d);
            }
        }
    }
}

/// The `after` graph has no cycle. Checked only when nothing else is wrong: an unknown or misnamed stack
/// would make the cycle meaningless.
pub(super) fn cycles(stacks: &[Stack], errors: &mut Vec<ConfigError>) {
    if errors.is_empty()
        && let Err(cycle) = dag::order(stacks)
    {
        errors.push(
            ConfigError::new(format!("dependency cycle: {}", cycle.join(" → ")))
                .help("remove one of these `after` entries"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, check_in};
    use super::*;

    const ONYX: &str = "[[server]]\nname = \"onyx\"\n";

    #[test]
    fn names_are_validated() {
        assert!(valid_name("a-b_9"));
        assert!(!valid_name("-a"));
        assert!(!valid_name("A"));
        assert!(!valid_name(""));
    }

    #[test]
    fn reports_every_error_at_once() {
        check(
            r#"
[[server]]
name = "onyx"
[[stack]]
name = "Bad Name"
path = "stacks/web"
[[stack]]
name = "escape"
path = "../outside"
[[stack]]
name = "caddy"
after = ["quatermaster"]
server = "nowhere"
"#,
            &[
                "berth.toml:7:1: stack path `../outside` leaves",
                "berth.toml:10:1: stack `caddy` targets server `nowhere`",
                "berth.toml:4:1: invalid stack name `Bad Name`",
                "unknown stack `quatermaster` (help: did you mean `quartermaster`?",
            ],
        );
    }

    #[test]
    fn duplicate_discovered_names_need_disambiguation() {
        let t = ["nodes/a/caddy/compose.yaml", "nodes/b/caddy/compose.yaml"];
        let text = "[[server]]\nname = \"a\"\n[[server]]\nname = \"b\"\n";
        check_in(&t, text, &["two stacks are named `caddy`: `nodes/a/caddy` and `nodes/b/caddy`"]);
        check_in(&t, &format!("{text}[[stack]]\nname = \"caddy-b\"\npath = \"nodes/b/caddy\"\n"), &[]).unwrap();
    }

    #[test]
    fn a_stack_needs_a_compose_file_and_not_itself_after() {
        check(
            &format!("{ONYX}[[stack]]\nname = \"libs\"\npath = \"libs\"\nafter = [\"libs\"]\n"),
            &["stack `libs` has no compose file in `libs`", "stack `libs` lists itself in `after`"],
        );
    }

    #[test]
    fn cycles_are_named() {
        check(
            &format!(
                "{ONYX}[[stack]]\nname = \"caddy\"\nafter = [\"web\"]\n[[stack]]\nname = \"web\"\n\
                 after = [\"quartermaster\"]\n[[stack]]\nname = \"quartermaster\"\nafter = [\"caddy\"]\n"
            ),
            &["dependency cycle: caddy → web → quartermaster → caddy"],
        );
    }

    #[test]
    fn tiers_order_whole_groups() {
        let t = [
            "stacks/db/compose.yaml",
            "stacks/proxy/compose.yaml",
            "stacks/app/compose.yaml",
            "stacks/free/compose.yaml",
        ];
        let cfg = "[berth]\ntiers = [\"infra\", \"platform\", \"apps\"]\n[[stack]]\nname = \"db\"\ntier = \"infra\"\n[[stack]]\nname = \"proxy\"\ntier = \"infra\"\n[[stack]]\nname = \"app\"\ntier = \"apps\"\n";
        let p = check_in(&t, cfg, &[]).unwrap();
        assert_eq!(p.stack("app").unwrap().after, ["db", "proxy"]);
        assert!(p.stack("free").unwrap().after.is_empty());
        check_in(
            &t,
            &cfg.replace("tier = \"apps\"", "tier = \"aps\""),
            &["stack `app` is in unknown tier `aps` (help: did you mean `apps`?"],
        );
    }
}
