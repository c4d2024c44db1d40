//! `[berth]` settings of the controller and the run, `[[notify]]` targets and `[dashboard]`.

use std::time::Duration;

use super::Source;
use crate::config::{ConfigFile, NOTIFY_EVENTS, NotifyToml, SecretRef};
use crate::dashboard::{self, Dashboard};
use crate::duration;
use crate::error::{ConfigError, did_you_mean};
use crate::signing::{self, VerifyCommits};

/// Stacks deployed at once when none is configured.
pub const DEFAULT_MAX_PARALLEL: usize = 4;
/// Default listen address of `berth serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default request body limit of `berth serve`.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// How often the controller checks for drift when not configured.
const DEFAULT_DRIFT_INTERVAL: Duration = Duration::from_secs(300);

/// The project-wide settings, resolved.
pub(super) struct Settings {
    pub state_dir: Option<String>,
    pub max_parallel: usize,
    pub listen: String,
    pub max_body: usize,
    pub drift_interval: Option<Duration>,
    pub notify: Vec<NotifyToml>,
    pub prune: bool,
    pub age_identity: Option<SecretRef>,
    pub dashboard: Dashboard,
    pub verify_commits: Option<VerifyCommits>,
}

pub(super) fn resolve(src: &Source, cfg: &ConfigFile, errors: &mut Vec<ConfigError>) -> Settings {
    let drift_interval = match cfg.berth.drift_interval.as_deref().map(duration::parse) {
        None => Some(DEFAULT_DRIFT_INTERVAL),
        Some(Ok(d)) if d.is_zero() => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            errors.push(ConfigError::new(format!("[berth] drift_interval: {e}")));
            None
        }
    };
    check_notify(src, cfg, errors);
    let dashboard = dashboard::resolve(cfg.dashboard.as_ref().map(|d| d.get_ref()), errors);
    let max_parallel = cfg.berth.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL);
    if max_parallel == 0 {
        errors.push(ConfigError::new("[berth] max_parallel must be at least 1"));
    }
    let verify_commits =
        cfg.berth.verify_commits.as_ref().and_then(|t| signing::resolve("[berth]", t).map_err(|e| errors.push(e)).ok());
    Settings {
        verify_commits,
        state_dir: cfg.berth.state_dir.clone(),
        max_parallel,
        listen: cfg.berth.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.into()),
        max_body: cfg.berth.max_body.unwrap_or(DEFAULT_MAX_BODY),
        drift_interval,
        notify: cfg.notify.iter().map(|n| n.get_ref().clone()).collect(),
        prune: cfg.berth.prune.unwrap_or(false),
        age_identity: cfg.berth.age_identity.clone(),
        dashboard,
    }
}

/// Each `[[notify]]` has a known kind, an http(s) url and known events.
fn check_notify(src: &Source, cfg: &ConfigFile, errors: &mut Vec<ConfigError>) {
    for n in &cfg.notify {
        let l = src.at(n.span());
        let n = n.get_ref();
        if !["webhook", "ntfy", "slack", "discord", "gotify"].contains(&n.kind.as_str()) {
            errors.push(
                ConfigError::new(format!("unknown notify kind `{}`", n.kind))
                    .at(l.clone())
                    .help("use webhook, ntfy, slack, discord or gotify"),
            );
        }
        if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
            errors.push(ConfigError::new(format!("notify url `{}` must be http(s)", n.url)).at(l.clone()));
        }
        for e in n.events.iter().flatten() {
            if !NOTIFY_EVENTS.contains(&e.as_str()) {
                let err = ConfigError::new(format!("unknown notify event `{e}`")).at(l.clone());
                errors.push(match did_you_mean(e, NOTIFY_EVENTS) {
                    Some(best) => err.help(format!("did you mean `{best}`?")),
                    None => err.help(format!("events: {}", NOTIFY_EVENTS.join(", "))),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_in;
    use super::*;

    const TREE: &[&str] = &["stacks/web/compose.yaml"];

    #[test]
    fn settings_have_defaults() {
        let p = check_in(TREE, "", &[]).unwrap();
        assert_eq!(
            (p.max_parallel, p.listen.as_str(), p.max_body),
            (DEFAULT_MAX_PARALLEL, DEFAULT_LISTEN, DEFAULT_MAX_BODY)
        );
        assert_eq!(p.drift_interval, Some(DEFAULT_DRIFT_INTERVAL));
        assert!(!p.prune && p.state_dir.is_none() && p.notify.is_empty());
        let p = check_in(
            TREE,
            "[berth]\nmax_parallel = 2\nlisten = \"0.0.0.0:9000\"\nprune = true\ndrift_interval = \"0s\"\n\
             [[notify]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/berth\"\n",
            &[],
        )
        .unwrap();
        assert_eq!((p.max_parallel, p.listen.as_str(), p.drift_interval), (2, "0.0.0.0:9000", None));
        assert!(p.prune && p.configured);
        assert_eq!(p.notify[0].kind, "ntfy");
    }

    #[test]
    fn verify_commits_is_read() {
        let p = check_in(TREE, "[berth]\nverify_commits = { format = \"ssh\", allowed_signers = \"/etc/s\" }\n", &[])
            .unwrap();
        assert_eq!(p.verify_commits.map(|v| v.format), Some(signing::Format::Ssh));
        check_in(
            TREE,
            "[berth]\nverify_commits = { format = \"gpg\", keyring = { env = \"K\" }, signers = \"x\" }\n",
            &["unknown key `signers`"],
        );
        check_in(
            TREE,
            "[berth]\nverify_commits = { format = \"gpg\" }\n",
            &["[berth] verify_commits: format `gpg` needs `keyring`"],
        );
    }

    #[test]
    fn bad_settings_are_reported() {
        let event = NOTIFY_EVENTS[0];
        let typo = &event[..event.len() - 1];
        check_in(
            TREE,
            &format!(
                "[berth]\nmax_parallel = 0\ndrift_interval = \"sometimes\"\n\
                 [[notify]]\nkind = \"pager\"\nurl = \"ftp://x\"\nevents = [\"{typo}\"]\n"
            ),
            &[
                "[berth] drift_interval: ",
                "berth.toml:4:1: unknown notify kind `pager`",
                "notify url `ftp://x` must be http(s)",
                &format!("unknown notify event `{typo}` (help: did you mean `{event}`?"),
                "[berth] max_parallel must be at least 1",
            ],
        );
    }
}
