//! Commits berth writes itself (image updates): its identity, optional SSH signature, and commits
//! built on any base without touching a work tree, pushed to a branch.

use std::process::Command;

use super::{GitError, Repo, TIMEOUT};
use crate::process;

/// A private index file, removed however the commit ends.
struct TempIndex(std::path::PathBuf);

impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Who commits and how it is signed.
#[derive(Debug, Clone, Default)]
pub struct Committer {
    /// (name, email); `None`: the repository's own identity, else `berth <berth@localhost>`.
    pub author: Option<(String, String)>,
    /// An SSH private key: the commit is signed with it (`gpg.format = ssh`).
    pub signing_key: Option<String>,
}

impl Repo {
    /// A git command that commits as `who` says.
    fn committing(&self, who: &Committer) -> Command {
        let mut cmd = self.cmd();
        let own = self.git(&["config", "user.email"]).map(|e| !e.trim().is_empty()).unwrap_or(false);
        let id = match &who.author {
            Some((n, e)) => Some((n.as_str(), e.as_str())),
            None if own => None,
            None => Some(("berth", "berth@localhost")),
        };
        if let Some((name, email)) = id {
            cmd.env("GIT_AUTHOR_NAME", name).env("GIT_AUTHOR_EMAIL", email);
            cmd.env("GIT_COMMITTER_NAME", name).env("GIT_COMMITTER_EMAIL", email);
        }
        if let Some(key) = &who.signing_key {
            cmd.args(["-c", "gpg.format=ssh", "-c"]).arg(format!("user.signingkey={key}"));
        }
        cmd
    }

    /// Commit `paths` (repo-relative, already written in the work tree) with `message`; returns the commit id.
    pub fn commit_paths(&self, paths: &[String], message: &str, who: &Committer) -> Result<String, GitError> {
        let mut add = vec!["add", "--"];
        add.extend(paths.iter().map(String::as_str));
        self.git(&add)?;
        let mut args = vec!["commit", "--quiet", "-m", message];
        if who.signing_key.is_some() {
            args.push("--gpg-sign");
        }
        args.push("--");
        args.extend(paths.iter().map(String::as_str));
        let out = process::run(self.committing(who).args(&args), TIMEOUT)?;
        if !out.success() {
            return Err(GitError::Failed { args: "commit".into(), message: out.error_summary() });
        }
        self.resolve("HEAD")
    }

    /// A commit on `base` whose tree is `base`'s with `files` (path, new text) replaced; no work
    /// tree or index of the repository is touched (a private index file is used).
    pub fn commit_on(
        &self,
        base: &str,
        files: &[(String, String)],
        message: &str,
        who: &Committer,
    ) -> Result<String, GitError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let index = TempIndex(self.git_dir()?.join(format!("berth-index-{}-{n}", std::process::id())));
        let with_index = |mut c: Command| {
            c.env("GIT_INDEX_FILE", &index.0);
            c
        };
        let run = |c: &mut Command, what: &str| -> Result<String, GitError> {
            let out = process::run(c, TIMEOUT)?;
            if !out.success() {
                return Err(GitError::Failed { args: what.into(), message: out.error_summary() });
            }
            Ok(out.stdout.trim().to_string())
        };
        run(with_index(self.cmd()).args(["read-tree", base]), "read-tree")?;
        for (path, text) in files {
            let listed = self.git(&["ls-tree", base, "--", path])?;
            let mode = listed.split_whitespace().next().unwrap_or("100644").to_string();
            let (out, stdout) = process::run_with_input(
                self.cmd().args(["hash-object", "-w", "--stdin"]),
                text.as_bytes().to_vec(),
                TIMEOUT,
            )?;
            if !out.success() {
                return Err(GitError::Failed { args: "hash-object".into(), message: out.error_summary() });
            }
            let blob = String::from_utf8_lossy(&stdout).trim().to_string();
            run(
                with_index(self.cmd())
                    .args(["update-index", "--add", "--cacheinfo"])
                    .arg(format!("{mode},{blob},{path}")),
                "update-index",
            )?;
        }
        let tree = run(with_index(self.cmd()).args(["write-tree"]), "write-tree")?;
        let mut args = vec!["commit-tree", tree.as_str(), "-p", base, "-m", message];
        if who.signing_key.is_some() {
            args.push("-S");
        }
        run(self.committing(who).args(&args), "commit-tree")
    }
}

/// A repository's `origin`, spoken to with the right credentials: a checkout's own git setup, or
/// a mirror's token.
pub trait Remote {
    /// The local repository objects are written to.
    fn local(&self) -> &Repo;
    /// A git command in the local repository that can reach `origin`.
    fn command(&self) -> Command;
    /// `origin`'s URL.
    fn url(&self) -> Option<String>;

    /// The commit `branch` points at on `origin` (`None`: no such branch).
    fn remote_branch(&self, branch: &str) -> Result<Option<String>, GitError> {
        let out =
            run(self.command().args(["ls-remote", "--heads", "origin", &format!("refs/heads/{branch}")]), "ls-remote")?;
        Ok(out.split_whitespace().next().map(str::to_string))
    }

    /// The tree of `commit`, fetching it from `origin` when it is not here.
    fn tree_of(&self, commit: &str) -> Result<String, GitError> {
        let spec = format!("{commit}^{{tree}}");
        if let Ok(t) = self.local().git(&["rev-parse", "--verify", "--quiet", &spec]) {
            return Ok(t.trim().to_string());
        }
        run(self.command().args(["fetch", "--quiet", "--no-tags", "origin", commit]), "fetch")?;
        Ok(self.local().git(&["rev-parse", "--verify", "--quiet", &spec])?.trim().to_string())
    }

    /// Point `branch` on `origin` at `commit`; `force` replaces what it held, otherwise only a
    /// fast-forward is accepted (the remote's refusal says why).
    fn push_commit(&self, commit: &str, branch: &str, force: bool) -> Result<(), GitError> {
        let spec = format!("{}{commit}:refs/heads/{branch}", if force { "+" } else { "" });
        let mut c = self.command();
        let out =
            process::run(c.args(["-c", "remote.origin.mirror=false", "push", "--quiet", "origin", &spec]), TIMEOUT)?;
        if !out.success() {
            return Err(GitError::Failed {
                args: format!("push origin {branch}"),
                message: super::push_refusal(&out.stderr, || out.error_summary()),
            });
        }
        Ok(())
    }
}

fn run(c: &mut Command, what: &str) -> Result<String, GitError> {
    let out = process::run(c, TIMEOUT)?;
    if !out.success() {
        return Err(GitError::Failed { args: what.into(), message: out.error_summary() });
    }
    Ok(out.stdout)
}

impl Remote for Repo {
    fn local(&self) -> &Repo {
        self
    }
    fn command(&self) -> Command {
        self.cmd()
    }
    fn url(&self) -> Option<String> {
        self.remote_url()
    }
}

impl Remote for super::Mirror {
    fn local(&self) -> &Repo {
        &self.repo
    }
    fn command(&self) -> Command {
        self.git(Some(&self.repo.root))
    }
    fn url(&self) -> Option<String> {
        Some(self.url.clone())
    }
}
