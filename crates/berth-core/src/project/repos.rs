//! `[[repo]]` entries: the repositories `berth serve` mirrors, with their polling and credentials.

use std::time::Duration;

use super::Source;
use super::checks::{NAME_HELP, valid_name};
use crate::config::{ConfigFile, ForgeToml, SecretRef};
use crate::duration;
use crate::error::ConfigError;
use crate::signing::{self, VerifyCommits};

/// Default poll interval of a `[[repo]]`.
pub const DEFAULT_POLL: Duration = Duration::from_secs(300);

/// A repository `berth serve` mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    pub name: String,
    pub url: String,
    pub branch: String,
    /// `None`: never poll.
    pub poll: Option<Duration>,
    pub token: Option<SecretRef>,
    pub webhook_secret: Option<SecretRef>,
    /// Deploy only commits signed by an allowed key, whatever the repository's own `berth.toml` says.
    pub verify_commits: Option<VerifyCommits>,
    /// Plan pull/merge requests and comment the plan on them.
    pub pr_plans: bool,
    /// Plan only pull requests from branches of this repository.
    pub pr_plans_same_repo: bool,
    /// Where PR comments and statuses go (`None`: guessed from the webhook and `url`).
    pub forge: Option<ForgeToml>,
}

/// The forges whose pull-request API berth speaks.
pub const FORGE_PROVIDERS: [&str; 4] = ["github", "gitea", "forgejo", "gitlab"];

/// The `[[repo]]` entries of a parsed file, validated (errors are appended to `errors`).
pub fn repo_specs(file: &str, text: &str, cfg: &ConfigFile, errors: &mut Vec<ConfigError>) -> Vec<RepoSpec> {
    let src = Source { file, text };
    let mut repos: Vec<RepoSpec> = Vec::new();
    for r in &cfg.repo {
        let l = src.at(r.span());
        let r = r.get_ref();
        let at = |m: String| ConfigError::new(m).at(l.clone());
        if !valid_name(&r.name) {
            errors.push(at(format!("invalid repo name `{}`", r.name)).help(NAME_HELP));
        }
        if repos.iter().any(|x| x.name == r.name) {
            errors.push(at(format!("repo `{}` is declared twice", r.name)));
        }
        if url_has_password(&r.url) {
            errors.push(
                at(format!("repo `{}`: the url carries credentials", r.name))
                    .help("remove the password or token from the url and use token = { file = \"...\" } instead"),
            );
        }
        let poll = match r.poll.as_deref().map(duration::parse) {
            None => Some(DEFAULT_POLL),
            Some(Ok(d)) if d.is_zero() => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                errors.push(at(format!("repo `{}` poll: {e}", r.name)));
                None
            }
        };
        for (what, s) in [("token", &r.token), ("webhook_secret", &r.webhook_secret)] {
            if let Some(s) = s
                && s.file.is_some() == s.env.is_some()
            {
                errors.push(at(format!("repo `{}` {what}: give exactly one of file or env", r.name)).help(format!(
                    "{what} = {{ file = \"/run/secrets/{what}\" }} or {what} = {{ env = \"BERTH_{}\" }}",
                    what.to_uppercase()
                )));
            }
        }
        if let Some(f) = &r.forge {
            if let Some(p) = f.provider.as_deref().filter(|p| !FORGE_PROVIDERS.contains(p)) {
                errors.push(
                    at(format!("repo `{}` forge: unknown provider `{p}`", r.name))
                        .help(format!("provider is one of {}", FORGE_PROVIDERS.join(", "))),
                );
            }
            if let Some(u) = f.url.as_deref().filter(|u| !u.starts_with("http://") && !u.starts_with("https://")) {
                errors.push(
                    at(format!("repo `{}` forge: url `{u}` is not an http(s) URL", r.name))
                        .help("url = \"https://git.example.com\" (GitHub: https://api.github.com)"),
                );
            }
            if let Some(s) = &f.token
                && s.file.is_some() == s.env.is_some()
            {
                errors.push(at(format!("repo `{}` forge token: give exactly one of file or env", r.name)));
            }
        }
        let verify_commits = r.verify_commits.as_ref().and_then(|t| {
            signing::resolve(&format!("repo `{}`", r.name), t).map_err(|e| errors.push(e.at(l.clone()))).ok()
        });
        repos.push(RepoSpec {
            verify_commits,
            name: r.name.clone(),
            url: r.url.clone(),
            branch: r.branch.clone().unwrap_or_else(|| "main".into()),
            poll,
            token: r.token.clone(),
            webhook_secret: r.webhook_secret.clone(),
            pr_plans: r.pr_plans.unwrap_or(false),
            pr_plans_same_repo: r.pr_plans_same_repo.unwrap_or(false),
            forge: r.forge.clone(),
        });
    }
    repos
}

/// Does a URL carry a password or token (`https://user:secret@host/...`)?
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::super::testing::check;
    use super::*;

    const ONYX: &str = "[[server]]\nname = \"onyx\"\n";

    #[test]
    fn repos_default_to_main_and_polling() {
        let p = check(
            &format!(
                "{ONYX}[[repo]]\nname = \"homelab\"\nurl = \"https://git.example.com/me/homelab.git\"\n\
                 webhook_secret = {{ env = \"HOOK\" }}\n[[repo]]\nname = \"quiet\"\nurl = \"ssh://git@h/q\"\n\
                 branch = \"prod\"\npoll = \"0s\"\n"
            ),
            &[],
        )
        .unwrap();
        assert_eq!((p.repos[0].branch.as_str(), p.repos[0].poll), ("main", Some(DEFAULT_POLL)));
        assert_eq!((p.repos[1].branch.as_str(), p.repos[1].poll), ("prod", None));
    }

    #[test]
    fn bad_repos_are_reported() {
        check(
            &format!(
                "{ONYX}[[repo]]\nname = \"r\"\nurl = \"https://me:tok@git.example.com/x.git\"\n\
                 token = {{ file = \"a\", env = \"B\" }}\n[[repo]]\nname = \"r\"\nurl = \"https://h/x\"\npoll = \"often\"\n"
            ),
            &[
                "berth.toml:3:1: repo `r`: the url carries credentials",
                "repo `r` token: give exactly one of file or env (help: token = { file",
                "berth.toml:7:1: repo `r` is declared twice",
                "repo `r` poll: ",
            ],
        );
    }

    #[test]
    fn a_repo_pins_verify_commits() {
        let toml = |keys: &str| {
            format!(
                "{ONYX}[[repo]]\nname = \"q\"\nurl = \"ssh://git@h/q\"\n\
                 verify_commits = {{ format = \"ssh\", allowed_signers = \"{keys}\" }}\n"
            )
        };
        let p = check(&toml("/etc/berth/allowed_signers"), &[]).unwrap();
        assert_eq!(p.repos[0].verify_commits.as_ref().map(|v| v.format), Some(signing::Format::Ssh));
        check(&toml("keys"), &["berth.toml:3:1: repo `q` verify_commits: `allowed_signers` must be an absolute path"]);
    }

    #[test]
    fn pr_plans_and_the_forge_api() {
        let p = check(
            &format!(
                "{ONYX}[[repo]]\nname = \"q\"\nurl = \"https://h/me/q.git\"\npr_plans = true\npr_plans_same_repo = true\n\
                 forge = {{ provider = \"gitea\", url = \"https://h\", token = {{ env = \"T\" }} }}\n"
            ),
            &[],
        )
        .unwrap();
        assert!(p.repos[0].pr_plans && p.repos[0].pr_plans_same_repo);
        assert_eq!(p.repos[0].forge.as_ref().and_then(|f| f.provider.as_deref()), Some("gitea"));
        check(
            &format!(
                "{ONYX}[[repo]]\nname = \"q\"\nurl = \"https://h/q\"\nforge = {{ provider = \"svn\", url = \"h\" }}\n"
            ),
            &["repo `q` forge: unknown provider `svn`", "repo `q` forge: url `h` is not an http(s) URL"],
        );
    }

    #[test]
    fn credentials_in_urls_are_found() {
        assert!(url_has_password("https://u:p@h/x"));
        assert!(!url_has_password("ssh://git@h/x"));
        assert!(!url_has_password("https://h/x@y"));
    }
}
