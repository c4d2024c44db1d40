//! Commit signature policy: the `verify_commits` settings, which of them a commit must pass, and which deploys skip the check.

use crate::config::{KeyRef, VerifyCommitsToml};
use crate::error::ConfigError;

/// How commits are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ssh,
    Gpg,
}

impl Format {
    /// The value of git's `gpg.format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Ssh => "ssh",
            Format::Gpg => "gpg",
        }
    }
}

/// Resolved `verify_commits`: the format and the keys a commit must be signed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyCommits {
    pub format: Format,
    /// `ssh`: the allowed-signers file; `gpg`: a GNUPGHOME folder, a keyring file or armored public keys.
    pub keys: KeyRef,
}

const HELP: &str = "verify_commits = { format = \"ssh\", allowed_signers = \"/etc/berth/allowed_signers\" } or \
                    { format = \"gpg\", keyring = \"/etc/berth/gnupg\" }";

/// Check one `verify_commits` table (`what` names where it is, for messages).
pub fn resolve(what: &str, t: &VerifyCommitsToml) -> Result<VerifyCommits, ConfigError> {
    let err = |m: String| ConfigError::new(format!("{what} verify_commits: {m}")).help(HELP);
    let (format, keys, key, other) = match t.format.as_str() {
        "ssh" => (Format::Ssh, &t.allowed_signers, "allowed_signers", ("keyring", &t.keyring)),
        "gpg" => (Format::Gpg, &t.keyring, "keyring", ("allowed_signers", &t.allowed_signers)),
        f => return Err(err(format!("unknown format `{f}` (use ssh or gpg)"))),
    };
    if other.1.is_some() {
        return Err(err(format!("`{}` belongs to the other format; format `{}` reads `{key}`", other.0, t.format)));
    }
    let Some(keys) = keys else {
        return Err(err(format!("format `{}` needs `{key}`", t.format)));
    };
    match keys {
        // A relative path would depend on where berth runs, and a file inside the repository could be
        // changed by the very commit it is meant to check.
        KeyRef::Path(p) if !p.starts_with('/') => {
            return Err(err(format!("`{key}` must be an absolute path on the host, not `{p}`")));
        }
        KeyRef::Secret(s) if s.file.is_some() == s.env.is_some() => {
            return Err(err(format!("`{key}`: give exactly one of file or env")));
        }
        _ => {}
    }
    Ok(VerifyCommits { format, keys: keys.clone() })
}

/// The settings a commit must pass, each once: the ones pinned outside the repository (a `[[repo]]` of
/// `berth serve`), those of every configuration that runs now, and the commit's own. Checking against
/// the running ones means a commit that changes or removes `verify_commits` must itself be signed by a
/// key the configuration before it allowed. Empty: nothing asks for signatures.
pub fn required<'a>(
    pinned: Option<&'a VerifyCommits>,
    running: impl IntoIterator<Item = Option<&'a VerifyCommits>>,
    new: Option<&'a VerifyCommits>,
) -> Vec<&'a VerifyCommits> {
    let mut out: Vec<&VerifyCommits> = Vec::new();
    for v in std::iter::once(pinned).chain(running).chain(std::iter::once(new)).flatten() {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Is this request a rollback (CLI `rollback`, the API's `rollback:<caller>`) or a self-heal, which put back what ran?
pub fn restores(trigger: &str) -> bool {
    crate::record::is_rollback(trigger) || trigger == "heal"
}

/// Does a deploy of `commit` skip the signature check? Only when it puts back (`restores`) a commit
/// berth already deployed successfully: that commit was checked when it deployed.
pub fn skips_check(trigger: &str, commit: &str, deployed_before: impl Fn(&str) -> bool) -> bool {
    restores(trigger) && deployed_before(commit)
}

/// What a refused commit is recorded and shown as.
pub fn refusal(commit: &str, reason: &str) -> String {
    format!("commit {} is not signed by an allowed key: {reason}", &commit[..commit.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    fn toml(format: &str, signers: Option<KeyRef>, keyring: Option<KeyRef>) -> VerifyCommitsToml {
        VerifyCommitsToml { format: format.into(), allowed_signers: signers, keyring }
    }

    fn path(p: &str) -> Option<KeyRef> {
        Some(KeyRef::Path(p.into()))
    }

    #[test]
    fn settings_are_checked() {
        let ssh = resolve("[berth]", &toml("ssh", path("/etc/signers"), None)).unwrap();
        assert_eq!(ssh, VerifyCommits { format: Format::Ssh, keys: KeyRef::Path("/etc/signers".into()) });
        let env = Some(KeyRef::Secret(SecretRef { file: None, env: Some("KEYS".into()) }));
        assert_eq!(resolve("[berth]", &toml("gpg", None, env)).unwrap().format, Format::Gpg);
        for (t, msg) in [
            (toml("x509", path("/a"), None), "unknown format `x509`"),
            (toml("ssh", None, None), "format `ssh` needs `allowed_signers`"),
            (toml("ssh", path("/a"), path("/b")), "`keyring` belongs to the other format"),
            (toml("gpg", None, path("keys")), "`keyring` must be an absolute path on the host"),
            (
                toml("ssh", Some(KeyRef::Secret(SecretRef { file: Some("/a".into()), env: Some("B".into()) })), None),
                "give exactly one of file or env",
            ),
        ] {
            let e = resolve("repo `r`", &t).unwrap_err();
            assert!(e.message.contains(msg) && e.message.starts_with("repo `r` verify_commits: "), "{e}");
        }
    }

    #[test]
    fn a_commit_passes_every_configuration_that_asks() {
        let a = VerifyCommits { format: Format::Ssh, keys: KeyRef::Path("/a".into()) };
        let b = VerifyCommits { format: Format::Gpg, keys: KeyRef::Path("/b".into()) };
        assert!(required(None, [None, None], None).is_empty());
        // Removing the setting does not remove the check: the running configuration still asks.
        assert_eq!(required(None, [Some(&a)], None), vec![&a]);
        // Changing it needs both the old and the new keys' approval.
        assert_eq!(required(None, [Some(&a), Some(&a)], Some(&b)), vec![&a, &b]);
        // Pinned outside the repository: always asked, once.
        assert_eq!(required(Some(&b), [None], Some(&b)), vec![&b]);
        // The first deploy: the commit's own settings.
        assert_eq!(required(None, [], Some(&a)), vec![&a]);
    }

    #[test]
    fn only_restoring_a_deployed_commit_skips_the_check() {
        let deployed = |c: &str| c == "aaa";
        assert!(skips_check("rollback", "aaa", deployed));
        assert!(skips_check("rollback:ops", "aaa", deployed));
        assert!(skips_check("heal", "aaa", deployed));
        assert!(!skips_check("rollback", "bbb", deployed));
        for t in ["apply", "deploy", "webhook:github", "promote", "bootstrap", "api:ops"] {
            assert!(!skips_check(t, "aaa", deployed), "{t}");
        }
        assert_eq!(
            refusal("0123456789abcdef", "no signature"),
            "commit 0123456789ab is not signed by an allowed key: no signature"
        );
    }
}
