//! The git adapter: every git invocation berth makes goes through the git CLI here.
//!
//! The CLI rather than an in-process library: its authentication, config and
//! repository formats are exactly what the user's own git uses, and the
//! commands berth needs (ls-tree, diff -z -M, read-tree) are single fast calls.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_core::changes::{Change, ChangeKind};
use berth_core::tree::{Tree, TreeEntry};

use crate::process::{self, RunError};

mod commit;
mod mirror;
pub use commit::{Committer, Remote};
pub use mirror::Mirror;

const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("git {args}: {message}")]
    Failed { args: String, message: String },
    #[error("unknown revision `{rev}` in {}", repo.display())]
    UnknownRev { rev: String, repo: PathBuf },
    #[error("{0} is not inside a git repository")]
    NotARepo(PathBuf),
}

/// A repository on disk (a checkout with a work tree, or a bare mirror).
#[derive(Debug, Clone)]
pub struct Repo {
    pub root: PathBuf,
    /// berth's own mirror: trust it whoever owns the files (`safe.directory`).
    pub mirror: bool,
}

/// `verify_commit`'s refusal of a commit without a signature.
pub const NO_SIGNATURE: &str = "it has no signature";
/// How `verify_commit`'s refusal of a key the allowed signers do not list ends.
pub const KEY_NOT_LISTED: &str = "which the allowed signers do not list";

/// The all-zero object id a forge sends as `before` for a new branch.
pub fn is_null_rev(rev: &str) -> bool {
    !rev.is_empty() && rev.chars().all(|c| c == '0')
}

impl Repo {
    /// The repository containing `dir` (its top-level folder).
    pub fn discover(dir: &Path) -> Result<Repo, GitError> {
        let out = process::run(Command::new("git").arg("-C").arg(dir).args(["rev-parse", "--show-toplevel"]), TIMEOUT)?;
        if !out.success() {
            return Err(GitError::NotARepo(dir.to_path_buf()));
        }
        Ok(Repo { root: PathBuf::from(out.stdout.trim_end()), mirror: false })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("git");
        self.trust(&mut c);
        c.arg("-C").arg(&self.root).env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C");
        c
    }

    /// The state dir may belong to another user than the one berth runs as.
    /// `-c` settings do not reach the upload-pack git runs for a local remote,
    /// so the setting also comes from a global config file of berth's own that
    /// includes the user's (credential helpers and the like keep working).
    fn trust(&self, c: &mut Command) {
        if self.mirror {
            c.args(["-c", "safe.directory=*"]);
            if let Some(dir) = self.root.parent() {
                c.env("GIT_CONFIG_GLOBAL", dir.join("gitconfig"));
            }
        }
    }

    fn git(&self, args: &[&str]) -> Result<String, GitError> {
        let out = process::run(self.cmd().args(args), TIMEOUT)?;
        if !out.success() {
            return Err(GitError::Failed { args: args.join(" "), message: out.error_summary() });
        }
        Ok(out.stdout)
    }

    /// Resolve a revision to a full commit id.
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        let spec = format!("{rev}^{{commit}}");
        let out =
            process::run(self.cmd().args(["rev-parse", "--verify", "--quiet", "--end-of-options", &spec]), TIMEOUT)?;
        if !out.success() {
            return Err(self.unknown(rev));
        }
        Ok(out.stdout.trim().to_string())
    }

    fn unknown(&self, rev: &str) -> GitError {
        GitError::UnknownRev { rev: rev.to_string(), repo: self.root.clone() }
    }

    /// The URL of `origin`, if there is one.
    pub fn remote_url(&self) -> Option<String> {
        self.git(&["remote", "get-url", "origin"]).ok().map(|u| u.trim().to_string()).filter(|u| !u.is_empty())
    }

    /// Every tag with the commit it points at (annotated tags peeled).
    pub fn tags(&self) -> Result<Vec<(String, String)>, GitError> {
        let out =
            self.git(&["for-each-ref", "refs/tags", "--format=%(refname:short)%00%(objectname)%00%(*objectname)"])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\0');
                let (name, obj, peeled) = (f.next()?, f.next()?, f.next().unwrap_or(""));
                Some((name.to_string(), if peeled.is_empty() { obj } else { peeled }.to_string()))
            })
            .collect())
    }

    /// Create an annotated tag on `commit`.
    pub fn create_tag(&self, name: &str, commit: &str, message: &str) -> Result<(), GitError> {
        let mut cmd = self.cmd();
        // berth's own identity when the repository has none configured.
        if self.git(&["config", "user.email"]).map(|e| e.trim().is_empty()).unwrap_or(true) {
            cmd.env("GIT_COMMITTER_NAME", "berth").env("GIT_COMMITTER_EMAIL", "berth@localhost");
        }
        let out = process::run(cmd.args(["tag", "-a", "-m", message, "--", name, commit]), TIMEOUT)?;
        if !out.success() {
            return Err(GitError::Failed { args: format!("tag {name}"), message: out.error_summary() });
        }
        Ok(())
    }

    /// Push the current branch to `origin`.
    pub fn push_branch(&self, branch: &str) -> Result<(), GitError> {
        self.git(&["push", "--quiet", "origin", &format!("HEAD:refs/heads/{branch}")]).map(|_| ())
    }

    /// Push one tag to `origin`; the error text says why the remote refused.
    pub fn push_tag(&self, name: &str) -> Result<(), GitError> {
        push_tag(self.cmd(), name)
    }

    /// The branch checked out (for following a local checkout).
    pub fn current_branch(&self) -> Result<String, GitError> {
        Ok(self.git(&["symbolic-ref", "--short", "HEAD"])?.trim().to_string())
    }

    pub fn git_dir(&self) -> Result<PathBuf, GitError> {
        // A mirror is a bare repository: its root is its git dir (no process on the deploy path).
        if self.mirror
            && let Ok(dir) = std::path::absolute(&self.root)
        {
            return Ok(dir);
        }
        Ok(PathBuf::from(self.git(&["rev-parse", "--absolute-git-dir"])?.trim_end()))
    }

    /// Every file of `commit` with its blob id.
    pub fn tree(&self, commit: &str) -> Result<Tree, GitError> {
        let out =
            self.git(&["ls-tree", "-r", "-z", "--full-tree", commit]).map_err(|e| match self.resolve(commit) {
                // A full commit id skips `rev-parse`; git's own answer for a missing one is "not a tree object".
                Err(unknown @ GitError::UnknownRev { .. }) => unknown,
                _ => e,
            })?;
        let mut entries = Vec::new();
        for rec in out.split('\0').filter(|r| !r.is_empty()) {
            // "<mode> <type> <oid>\t<path>"
            let Some((meta, path)) = rec.split_once('\t') else { continue };
            let Some(oid) = meta.rsplit(' ').next() else { continue };
            entries.push(TreeEntry { path: path.to_string(), oid: oid.to_string() });
        }
        Ok(Tree::new(entries))
    }

    /// Files of the work tree (tracked and untracked, minus ignored), for validating uncommitted edits.
    pub fn worktree_files(&self) -> Result<Tree, GitError> {
        let out = self.git(&["ls-files", "-z", "--cached", "--others", "--exclude-standard"])?;
        Ok(Tree::new(
            out.split('\0')
                .filter(|p| !p.is_empty() && self.root.join(p).exists())
                .map(|p| TreeEntry { path: p.to_string(), oid: String::new() })
                .collect(),
        ))
    }

    /// Contents of `path` at `commit`, or `None` when it does not exist there.
    pub fn read(&self, commit: &str, path: &str) -> Result<Option<String>, GitError> {
        let spec = format!("{commit}:{path}");
        let out = process::run(self.cmd().args(["cat-file", "-p", &spec]), TIMEOUT)?;
        Ok(out.success().then_some(out.stdout))
    }

    /// The text of several blobs in one `git cat-file --batch`, in the order asked; `None` for a
    /// blob git does not have or whose content is not UTF-8.
    pub fn blobs(&self, oids: &[&str]) -> Result<Vec<Option<String>>, GitError> {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = Vec::new();
        for oid in oids {
            input.extend_from_slice(oid.as_bytes());
            input.push(b'\n');
        }
        let (out, stdout) = process::run_with_input(self.cmd().args(["cat-file", "--batch"]), input, TIMEOUT)?;
        if !out.success() {
            return Err(GitError::Failed { args: "cat-file --batch".into(), message: out.error_summary() });
        }
        // "<oid> <type> <size>\n<content>\n", or "<oid> missing\n".
        let mut texts = Vec::with_capacity(oids.len());
        let mut rest = stdout.as_slice();
        for _ in oids {
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else { break };
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            rest = &rest[nl + 1..];
            let size = header.split(' ').nth(2).and_then(|s| s.parse::<usize>().ok());
            match size {
                Some(n) if n <= rest.len() => {
                    texts.push(String::from_utf8(rest[..n].to_vec()).ok());
                    rest = rest.get(n + 1..).unwrap_or_default();
                }
                _ => texts.push(None),
            }
        }
        texts.resize(oids.len(), None);
        Ok(texts)
    }

    /// Is `ancestor` an ancestor of `commit`?
    pub fn is_ancestor(&self, ancestor: &str, commit: &str) -> Result<bool, GitError> {
        let out = process::run(self.cmd().args(["merge-base", "--is-ancestor", ancestor, commit]), TIMEOUT)?;
        Ok(out.success())
    }

    /// A commit's subject, author name and author time (unix seconds), for display.
    pub fn commit_info(&self, commit: &str) -> Result<CommitInfo, GitError> {
        let out = self.git(&["show", "-s", "--format=%s%x00%an%x00%at", "--end-of-options", commit])?;
        let mut f = out.trim_end_matches('\n').splitn(3, '\0');
        let (subject, author, at) = (f.next().unwrap_or(""), f.next().unwrap_or(""), f.next().unwrap_or("0"));
        Ok(CommitInfo { subject: subject.to_string(), author: author.to_string(), at: at.trim().parse().unwrap_or(0) })
    }

    /// Is `commit` signed by one of `signers`? git's own `verify-commit` decides; `Ok(Err(why))`
    /// is a refusal in git's (or gpg's) words.
    pub fn verify_commit(&self, commit: &str, signers: &Signers) -> Result<Result<(), String>, GitError> {
        let mut c = self.cmd();
        match signers {
            Signers::Ssh(file) => {
                c.args(["-c", "gpg.format=ssh", "-c"]).arg(format!("gpg.ssh.allowedSignersFile={}", file.display()));
            }
            Signers::Gpg(home) => {
                c.args(["-c", "gpg.format=openpgp"]).env("GNUPGHOME", home);
            }
        }
        let out = process::run(c.args(["verify-commit", "--end-of-options", commit]), TIMEOUT)?;
        if out.success() {
            return Ok(Ok(()));
        }
        let said: Vec<&str> =
            out.stderr.lines().chain(out.stdout.lines()).map(str::trim).filter(|l| !l.is_empty()).collect();
        Ok(Err(if said.is_empty() {
            NO_SIGNATURE.to_string()
        } else if said.iter().any(|l| l.contains("No principal matched")) {
            let key = said.iter().find_map(|l| l.split_once(" key ").map(|(_, k)| k)).unwrap_or("its key");
            format!("signed with key {key}, {KEY_NOT_LISTED}")
        } else {
            said.join("; ")
        }))
    }

    /// How many commits `to` has that `from` has not (`git rev-list --count from..to`).
    pub fn count_between(&self, from: &str, to: &str) -> Result<usize, GitError> {
        let out = self.git(&["rev-list", "--count", &format!("{from}..{to}"), "--"])?;
        Ok(out.trim().parse().unwrap_or(0))
    }

    /// Paths changed between two commits, renames detected, both sides kept.
    pub fn diff(&self, from: &str, to: &str) -> Result<Vec<Change>, GitError> {
        let out = self.git(&["diff", "--name-status", "-z", "-M", "--no-ext-diff", from, to, "--"])?;
        Ok(parse_name_status(&out))
    }

    /// The text diff of one path between two commits (empty when it did not change).
    pub fn file_diff(&self, from: &str, to: &str, path: &str) -> Result<String, GitError> {
        self.git(&["diff", "--no-ext-diff", "--no-color", "-M", from, to, "--", path])
    }

    /// The best common ancestor of two revisions.
    pub fn merge_base(&self, a: &str, b: &str) -> Result<String, GitError> {
        Ok(self.git(&["merge-base", "--end-of-options", a, b])?.trim().to_string())
    }

    /// What a branch is compared with: its upstream (`@{upstream}`), else `main`, else `master`.
    pub fn default_base(&self) -> Option<String> {
        let upstream = self.git(&["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"]).ok();
        let candidates = upstream.map(|u| u.trim().to_string()).into_iter().chain(["main".into(), "master".into()]);
        candidates.into_iter().find(|c| !c.is_empty() && self.resolve(c).is_ok())
    }

    /// Make `dir` an exact copy of `commit`'s tree, using a private index next to it,
    /// without touching the repository's own index or work tree. Files that the
    /// previous checkout had and `commit` lacks are removed; the kept index lets git
    /// rewrite only the files that changed (one process, no `rev-parse` first).
    pub fn checkout_into(&self, commit: &str, dir: &Path) -> Result<(), GitError> {
        let failed = |e: std::io::Error| GitError::Failed {
            args: "checkout".into(),
            message: format!("cannot create {}: {e}", dir.display()),
        };
        std::fs::create_dir_all(dir).map_err(failed)?;
        // Absolute: git resolves them after `-C`.
        let dir = std::path::absolute(dir).map_err(failed)?;
        let index = dir.with_extension("index");
        let mut git = Command::new("git");
        self.trust(&mut git);
        if self.mirror {
            git.arg("--git-dir").arg(self.git_dir()?);
        } else {
            git.arg("-C").arg(&self.root);
        }
        let out = process::run(
            git.arg("--work-tree")
                .arg(&dir)
                .args(["-c", "core.hooksPath=/dev/null", "read-tree", "--reset", "-u", commit])
                .env("GIT_INDEX_FILE", &index)
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("LC_ALL", "C"),
            TIMEOUT,
        )?;
        if !out.success() {
            return Err(GitError::Failed { args: format!("read-tree {commit}"), message: out.error_summary() });
        }
        Ok(())
    }
}

/// What the dashboard shows of a commit.
#[derive(Debug, Clone, Default)]
pub struct CommitInfo {
    pub subject: String,
    pub author: String,
    pub at: i64,
}

/// A bare mirror of a remote repository, kept under the state dir.
/// The keys a commit signature is checked against.
pub enum Signers<'a> {
    /// git's allowed-signers file (`gpg.format=ssh`).
    Ssh(&'a Path),
    /// A GNUPGHOME folder holding the allowed public keys (`gpg.format=openpgp`).
    Gpg(&'a Path),
}

/// Import the public keys of `file` (a keyring file or exported keys, binary or armored) into the
/// GNUPGHOME `home`, with the `gpg` git itself runs for OpenPGP signatures.
pub fn import_gpg_keys(home: &Path, file: &Path) -> Result<(), String> {
    let mut c = Command::new("gpg");
    c.args(["--batch", "--quiet", "--homedir"]).arg(home).arg("--import").arg(file).env("LC_ALL", "C");
    let out = process::run(&mut c, TIMEOUT).map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("cannot read the keys of {}: {}", file.display(), out.error_summary()));
    }
    Ok(())
}

/// Push tag `name` to `origin` with `git` (a command set up for the repository). A mirror clone
/// has `remote.origin.mirror=true`, which refuses refspecs: switched off for this push.
fn push_tag(mut git: Command, name: &str) -> Result<(), GitError> {
    let spec = format!("refs/tags/{name}:refs/tags/{name}");
    let out =
        process::run(git.args(["-c", "remote.origin.mirror=false", "push", "--quiet", "origin", &spec]), TIMEOUT)?;
    if !out.success() {
        return Err(GitError::Failed {
            args: format!("push origin {name}"),
            message: push_refusal(&out.stderr, || out.error_summary()),
        });
    }
    Ok(())
}

/// Why a push was refused, in the remote's words: its `remote:` lines and the `! [rejected]`
/// reason (git's own last line only says "failed to push some refs").
fn push_refusal(stderr: &str, fallback: impl FnOnce() -> String) -> String {
    let said: Vec<&str> = stderr
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("remote:").map(str::trim).or_else(|| l.strip_prefix("! ").map(str::trim))
        })
        .filter(|l| !l.is_empty())
        .collect();
    if said.is_empty() { fallback() } else { said.join("; ") }
}

/// Parse `git diff --name-status -z` output: `S\0path\0`, or `R100\0old\0new\0` for renames and copies.
pub fn parse_name_status(out: &str) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut it = out.split('\0').filter(|s| !s.is_empty());
    while let Some(status) = it.next() {
        let kind = ChangeKind::from_status(status);
        match kind {
            ChangeKind::Renamed | ChangeKind::Copied => {
                let (Some(old), Some(new)) = (it.next(), it.next()) else { break };
                changes.push(Change { kind, path: new.to_string(), old_path: Some(old.to_string()) });
            }
            _ => {
                let Some(path) = it.next() else { break };
                changes.push(Change { kind, path: path.to_string(), old_path: None });
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_status_with_renames() {
        let out = "M\0a/b\0R087\0old/x\0new/x\0D\0gone\0A\0with space\0";
        let c = parse_name_status(out);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1], Change { kind: ChangeKind::Renamed, path: "new/x".into(), old_path: Some("old/x".into()) });
        assert_eq!(c[2].kind, ChangeKind::Deleted);
        assert_eq!(c[3].path, "with space");
    }

    #[test]
    fn a_refused_push_says_why_in_the_remotes_words() {
        let stderr = "remote: tags are protected\nTo /srv/stacks.git\n ! [remote rejected] v1 -> v1 (pre-receive hook declined)\nerror: failed to push some refs to '/srv/stacks.git'\n";
        assert_eq!(
            push_refusal(stderr, || "fallback".into()),
            "tags are protected; [remote rejected] v1 -> v1 (pre-receive hook declined)"
        );
        assert_eq!(push_refusal("fatal: no route\n", || "fallback".into()), "fallback");
    }

    #[test]
    fn null_revs() {
        assert!(is_null_rev("0000000000000000000000000000000000000000"));
        assert!(!is_null_rev("00a"));
        assert!(!is_null_rev(""));
    }
}
