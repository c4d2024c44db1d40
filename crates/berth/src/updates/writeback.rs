//! Updates written into their files: the minimal edit of each version's span, and `mode =
//! "commit"` committing them on the current branch and pushing it.

use std::collections::BTreeMap;

use berth_core::images::UpdateMode;
use berth_core::images::source;

use super::Row;
use crate::error::{Error, Result};
use crate::git::{Committer, Remote};
use crate::workspace::{Snapshot, Workspace};

/// The edited files (path, new text) and one line per update, for a commit message.
pub struct Edits {
    pub files: Vec<(String, String)>,
    pub lines: Vec<String>,
}

impl Edits {
    /// `Update 1 image` / `Update N images`, a blank line, the lines.
    pub fn message(&self, subject_suffix: &str) -> String {
        let n = self.lines.len();
        let subject = if n == 1 { "Update 1 image".to_string() } else { format!("Update {n} images") };
        format!("{subject}{subject_suffix}\n\n{}\n", self.lines.join("\n"))
    }
}

/// Write `rows`' updates into the text `read` gives for each file.
pub fn edit(rows: &[&Row], read: impl Fn(&str) -> Result<String>) -> Result<Edits> {
    let mut by_file: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        if let (Some(_), Some(spot)) = (&r.update, &r.spot) {
            by_file.entry(spot.file.as_str()).or_default().push(r);
        }
    }
    let mut out = Edits { files: Vec::new(), lines: Vec::new() };
    for (file, mut edits) in by_file {
        let mut text = read(file)?;
        // From the end: earlier ranges keep their offsets. One range written for several services once.
        edits.sort_by_key(|r| r.spot.as_ref().map(|s| std::cmp::Reverse(s.start)));
        edits.dedup_by_key(|r| r.spot.as_ref().map(|s| s.start));
        for row in edits {
            let (Some(update), Some(spot)) = (&row.update, &row.spot) else { continue };
            text = source::edit(&text, spot.start, spot.end, &spot.replacement(update))
                .ok_or_else(|| Error::Io(format!("{file}: the version's place moved")))?;
            let notes = row.notes.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            out.lines
                .push(format!("- {} ({}/{}): {} -> {update}{notes}", row.image, row.stack, row.service, row.current));
        }
        out.files.push((file.to_string(), text));
    }
    out.lines.sort();
    Ok(out)
}

/// The rows of `mode` with an update berth can write.
pub fn to_write(rows: &[Row], mode: UpdateMode) -> Vec<&Row> {
    rows.iter()
        .filter(|r| r.mode == Some(mode) && r.error.is_none() && r.update.is_some() && r.spot.is_some())
        .collect()
}

/// Files' text as `snap`'s commit has it, for edits made on top of that commit.
pub fn committed(snap: &Snapshot) -> impl Fn(&str) -> Result<String> + '_ {
    |file| snap.text(file).map(str::to_string).ok_or_else(|| Error::Io(format!("{file}: not in {}", snap.commit)))
}

/// Who commits updates, from `[updates]`.
pub fn committer(project: &berth_core::Project) -> Committer {
    Committer { author: project.updates.author.clone(), signing_key: project.updates.signing_key.clone() }
}

/// Edit every `mode = "commit"` update into the work tree and commit them in one commit. A file
/// that differs from the commit checked (uncommitted edits) is refused, never overwritten.
pub fn commit(ws: &Workspace, snap: &Snapshot, who: &Committer, rows: &[Row]) -> Result<Option<String>> {
    let chosen = to_write(rows, UpdateMode::Commit);
    if chosen.is_empty() {
        return Ok(None);
    }
    let edits = edit(&chosen, |file| {
        let text = std::fs::read_to_string(ws.repo.root.join(file)).map_err(|e| Error::Io(format!("{file}: {e}")))?;
        if Some(text.as_str()) != snap.text(file) {
            return Err(Error::Usage(format!("{file} has uncommitted changes: commit or stash them before --apply")));
        }
        Ok(text)
    })?;
    for (file, text) in &edits.files {
        std::fs::write(ws.repo.root.join(file), text).map_err(|e| Error::Io(format!("{file}: {e}")))?;
    }
    let paths: Vec<String> = edits.files.iter().map(|(f, _)| f.clone()).collect();
    let commit = ws.repo.commit_paths(&paths, &edits.message(""), who)?;
    if ws.repo.remote_url().is_some() {
        let branch = ws.repo.current_branch()?;
        if let Err(e) = ws.repo.push_branch(&branch) {
            eprintln!("warning: committed but not pushed: {e}");
        }
    }
    Ok(Some(commit))
}

/// `berth serve`'s `mode = "commit"`: the updates committed on top of `snap` (no work tree) and
/// pushed to `branch` as a fast-forward; a branch that moved meanwhile refuses it, and the next
/// check starts from its new head.
pub fn commit_to(
    remote: &dyn Remote,
    snap: &Snapshot,
    branch: &str,
    who: &Committer,
    rows: &[Row],
) -> Result<Option<String>> {
    let chosen = to_write(rows, UpdateMode::Commit);
    if chosen.is_empty() {
        return Ok(None);
    }
    let edits = edit(&chosen, committed(snap))?;
    let commit = remote.local().commit_on(&snap.commit, &edits.files, &edits.message(""), who)?;
    remote.push_commit(&commit, branch, false)?;
    Ok(Some(commit))
}
