//! A listing of the repository's files at one commit, as git reports it.

/// One file of the tree: its repo-relative path and its git blob id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub oid: String,
}

/// Every file of a commit, sorted by path. The blob ids make hashing content
/// addressed without reading any file.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    entries: Vec<TreeEntry>,
}

impl Tree {
    pub fn new(mut entries: Vec<TreeEntry>) -> Tree {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Tree { entries }
    }

    /// Build a tree from paths alone (tests, benchmarks): the oid is derived from the path.
    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Tree {
        Tree::new(paths.into_iter().map(|p| TreeEntry { path: p.to_string(), oid: format!("oid-{p}") }).collect())
    }

    pub fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    /// The files that differ from `old`, as `git diff` reports them without rename detection (a moved
    /// file is a deletion and an addition, which touch the same stacks as a rename).
    pub fn changes_since(&self, old: &Tree) -> Vec<crate::changes::Change> {
        use crate::changes::{Change, ChangeKind};
        use std::cmp::Ordering;
        let change = |kind, path: &str| Change { kind, path: path.to_string(), old_path: None };
        let (mut a, mut b) = (old.entries.iter().peekable(), self.entries.iter().peekable());
        let mut out = Vec::new();
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => return out,
                (Some(o), None) => {
                    out.push(change(ChangeKind::Deleted, &o.path));
                    a.next();
                }
                (None, Some(n)) => {
                    out.push(change(ChangeKind::Added, &n.path));
                    b.next();
                }
                (Some(o), Some(n)) => match o.path.cmp(&n.path) {
                    Ordering::Less => {
                        out.push(change(ChangeKind::Deleted, &o.path));
                        a.next();
                    }
                    Ordering::Greater => {
                        out.push(change(ChangeKind::Added, &n.path));
                        b.next();
                    }
                    Ordering::Equal => {
                        if o.oid != n.oid {
                            out.push(change(ChangeKind::Modified, &n.path));
                        }
                        a.next();
                        b.next();
                    }
                },
            }
        }
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.binary_search_by(|e| e.path.as_str().cmp(path)).is_ok()
    }

    /// Every file under folder `dir` (a contiguous run of the sorted entries).
    pub fn under(&self, dir: &str) -> &[TreeEntry] {
        let prefix = format!("{dir}/");
        let start = self.entries.partition_point(|e| e.path.as_str() < prefix.as_str());
        let len = self.entries[start..].partition_point(|e| e.path.starts_with(&prefix));
        &self.entries[start..start + len]
    }

    pub fn get(&self, path: &str) -> Option<&TreeEntry> {
        self.entries.binary_search_by(|e| e.path.as_str().cmp(path)).ok().map(|i| &self.entries[i])
    }
}

/// Parent directory of a repo-relative path ("" for top-level files).
pub fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

/// Normalise a path relative to `base` (both repo-relative), resolving `.` and `..`.
/// Returns `None` when the result would leave the repository or `rel` is absolute.
pub fn join(base: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/')
        || rel.starts_with('\\')
        || rel.contains('\\')
        || rel.contains(':') && rel.len() > 1 && rel.as_bytes()[1] == b':'
    {
        return None;
    }
    // `base` goes through the same normalisation: a `..` in it may not climb out either.
    let mut parts: Vec<&str> = Vec::new();
    for seg in base.split('/').chain(rel.split('/')) {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_between_trees_are_what_git_diff_reports_without_renames() {
        let e = |p: &str, o: &str| TreeEntry { path: p.into(), oid: o.into() };
        let old = Tree::new(vec![e("a/keep", "1"), e("a/edit", "2"), e("b/gone", "3"), e("c/moved", "4")]);
        let new = Tree::new(vec![e("a/keep", "1"), e("a/edit", "9"), e("d/moved", "4"), e("e/new", "5")]);
        let got: Vec<(String, String)> =
            new.changes_since(&old).iter().map(|c| (format!("{:?}", c.kind), c.path.clone())).collect();
        let want = [
            ("Modified", "a/edit"),
            ("Deleted", "b/gone"),
            ("Deleted", "c/moved"),
            ("Added", "d/moved"),
            ("Added", "e/new"),
        ];
        assert_eq!(got, want.map(|(k, p)| (k.to_string(), p.to_string())));
        assert!(new.changes_since(&new).is_empty());
    }

    #[test]
    fn joins_stay_inside_the_repo() {
        assert_eq!(join("nodes/onyx/app", "../../libs/common.env").as_deref(), Some("nodes/libs/common.env"));
        assert_eq!(join("stacks/app", "./compose.yaml").as_deref(), Some("stacks/app/compose.yaml"));
        assert_eq!(join("stacks/app", "../../../etc/passwd"), None);
        assert_eq!(join("", "/etc/passwd"), None);
        assert_eq!(join("", "stacks/app/"), Some("stacks/app".into()));
        // Found by fuzzing: a `..` in the base was kept, so the result started with `../`.
        assert_eq!(join("..", "x"), None);
        assert_eq!(join("a/../..", "x"), None);
        assert_eq!(join("a/./b/..", "c").as_deref(), Some("a/c"));
    }

    #[test]
    fn lookups_use_sorted_paths() {
        let t = Tree::from_paths(["b/x", "a/y"]);
        assert_eq!(t.entries()[0].path, "a/y");
        assert!(t.contains("b/x"));
        let t2 = Tree::from_paths(["a/x", "a/y/z", "a-b/q", "ab", "b/x"]);
        let under: Vec<_> = t2.under("a").iter().map(|e| e.path.as_str()).collect();
        assert_eq!(under, ["a/x", "a/y/z"]);
        assert!(t2.under("c").is_empty());
        assert!(!t.contains("b"));
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("c"), "");
    }
}
