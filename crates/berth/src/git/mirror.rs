//! A bare mirror of a remote repository that `berth serve` fetches into: fetching with a forge
//! token sent as a header through git's environment, pushing release tags, reading the tip.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{GitError, Repo, push_tag};
use crate::process;

#[derive(Debug, Clone)]
pub struct Mirror {
    pub url: String,
    pub branch: String,
    pub repo: Repo,
    /// An HTTP token, sent as a header through git's environment (never in the URL or argv).
    pub token: Option<String>,
}

impl Mirror {
    pub(super) fn git(&self, dir: Option<&Path>) -> Command {
        let mut c = Command::new("git");
        self.repo.trust(&mut c);
        if let Some(d) = dir {
            c.arg("-C").arg(d);
        }
        c.args(["-c", "core.hooksPath=/dev/null"]).env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C");
        if let Some(t) = &self.token {
            c.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", auth_header(t));
        }
        c
    }

    /// Clone the mirror if it does not exist yet, then fetch: branches pruned as they go away
    /// on the remote, tags added or moved but never pruned, so the release tags berth made here
    /// and could not push survive every fetch.
    pub fn fetch(&self) -> Result<(), GitError> {
        let dir = &self.repo.root;
        self.write_global_config()?;
        if !dir.join("HEAD").exists() {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(|e| GitError::Failed {
                    args: "clone".into(),
                    message: format!("cannot create {}: {e}", parent.display()),
                })?;
            }
            let tmp = dir.with_extension("tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            let out = process::run(
                self.git(None).args(["clone", "--mirror", "--quiet", "--", &self.url]).arg(&tmp),
                Duration::from_secs(600),
            )?;
            if !out.success() {
                return Err(GitError::Failed {
                    args: format!("clone --mirror {}", self.url),
                    message: out.error_summary(),
                });
            }
            std::fs::rename(&tmp, dir)
                .map_err(|e| GitError::Failed { args: "clone".into(), message: e.to_string() })?;
            return Ok(());
        }
        let out = process::run(
            // `--tags` (not a `refs/tags/*` refspec) keeps local tags out of pruning; `--force`
            // lets a tag moved on the remote win.
            self.git(Some(dir)).args([
                "fetch",
                "--prune",
                "--tags",
                "--force",
                "--quiet",
                "origin",
                "+refs/heads/*:refs/heads/*",
            ]),
            Duration::from_secs(600),
        )?;
        if !out.success() {
            return Err(GitError::Failed { args: format!("fetch {}", self.url), message: out.error_summary() });
        }
        Ok(())
    }

    fn write_global_config(&self) -> Result<(), GitError> {
        let Some(parent) = self.repo.root.parent() else { return Ok(()) };
        let path = parent.join("gitconfig");
        if path.exists() {
            return Ok(());
        }
        let text = "# Written by berth: the user's own git config, plus trust in berth's mirrors.\n\
                    [include]\n\tpath = ~/.gitconfig\n\tpath = ~/.config/git/config\n[safe]\n\tdirectory = *\n";
        std::fs::create_dir_all(parent).and_then(|_| std::fs::write(&path, text)).map_err(|e| GitError::Failed {
            args: "config".into(),
            message: format!("cannot write {}: {e}", path.display()),
        })
    }

    /// Fetch a pull request's head by the ref the forge keeps it under (`refs/pull/7/head`)
    /// into `refs/berth/pulls/<number>`, outside what the branch fetch prunes; `commit` must
    /// then be there (the ref may have moved on: the head is also asked for by its id).
    pub fn fetch_pull(&self, git_ref: &str, number: u64, commit: &str) -> Result<(), GitError> {
        if !self.repo.root.join("HEAD").exists() {
            self.fetch()?;
        }
        let dest = format!("+{git_ref}:refs/berth/pulls/{number}");
        let fetch = |spec: &str| {
            process::run(
                self.git(Some(&self.repo.root)).args(["fetch", "--quiet", "--no-tags", "origin", spec]),
                Duration::from_secs(600),
            )
        };
        let out = fetch(&dest)?;
        if self.repo.resolve(commit).is_ok() {
            return Ok(());
        }
        // Servers that allow fetching any reachable commit (uploadpack.allowReachableSHA1InWant).
        let by_id = fetch(commit)?;
        if by_id.success() && self.repo.resolve(commit).is_ok() {
            return Ok(());
        }
        let why = if out.success() { format!("{git_ref} no longer points at it") } else { out.error_summary() };
        Err(GitError::Failed { args: format!("fetch {git_ref} of {}", self.url), message: format!("{commit}: {why}") })
    }

    /// Push one tag to the remote (with the mirror's credentials).
    pub fn push_tag(&self, name: &str) -> Result<(), GitError> {
        push_tag(self.git(Some(&self.repo.root)), name)
    }

    /// The commit at the tip of the tracked branch.
    pub fn tip(&self) -> Result<String, GitError> {
        let name = format!("refs/heads/{}", self.branch);
        match read_ref(&self.repo.root, &name) {
            Some(id) => Ok(id),
            None => self.repo.resolve(&name),
        }
    }
}

/// A branch's commit read from the mirror's files (a loose ref, else `packed-refs`), saving a git
/// process on every push. `None` whenever it is not that plain (a symbolic ref, another ref
/// storage): the caller asks git.
fn read_ref(git_dir: &Path, name: &str) -> Option<String> {
    let is_id = |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    match std::fs::read_to_string(git_dir.join(name)) {
        // A loose ref wins over a packed one.
        Ok(text) => return is_id(text.trim()).then(|| text.trim().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return None,
        Err(_) => {}
    }
    let packed = std::fs::read_to_string(git_dir.join("packed-refs")).ok()?;
    packed.lines().filter(|l| !l.starts_with('#') && !l.starts_with('^')).find_map(|l| {
        let (id, n) = l.split_once(' ')?;
        (n == name && is_id(id)).then(|| id.to_string())
    })
}

/// The `http.extraHeader` that authenticates git over HTTPS with a forge token.
fn auth_header(token: &str) -> String {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    format!("Authorization: Basic {basic}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_read_loose_first_then_packed_and_anything_else_is_left_to_git() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        std::fs::write(
            dir.path().join("packed-refs"),
            format!("# pack-refs with: peeled\n{a} refs/heads/main\n^{b}\n"),
        )
        .unwrap();
        assert_eq!(read_ref(dir.path(), "refs/heads/main"), Some(a.clone()));
        assert_eq!(read_ref(dir.path(), "refs/heads/other"), None);
        std::fs::create_dir_all(dir.path().join("refs/heads")).unwrap();
        std::fs::write(dir.path().join("refs/heads/main"), format!("{b}\n")).unwrap();
        assert_eq!(read_ref(dir.path(), "refs/heads/main"), Some(b));
        std::fs::write(dir.path().join("refs/heads/main"), "ref: refs/heads/other\n").unwrap();
        assert_eq!(read_ref(dir.path(), "refs/heads/main"), None, "a symbolic ref is git's to resolve");
    }

    #[test]
    fn token_becomes_a_basic_auth_header() {
        assert_eq!(auth_header("abc"), "Authorization: Basic eC1hY2Nlc3MtdG9rZW46YWJj");
        // Padding, as RFC 4648 writes it.
        assert_eq!(auth_header("a"), "Authorization: Basic eC1hY2Nlc3MtdG9rZW46YQ==");
    }
}
