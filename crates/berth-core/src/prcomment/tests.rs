use super::*;
use crate::diff::{ServiceDiff, StackDiff};

fn svc(name: &str, status: Status, diff: &str) -> ServiceDiff {
    ServiceDiff { name: name.into(), status, image: None, bind_files: vec![], diff: diff.into() }
}

fn web() -> StackOutcome {
    StackOutcome {
        name: "web".into(),
        server: "local".into(),
        state: "changed",
        action: Some("deploy".into()),
        diff: Some(StackDiff {
            services: vec![
                svc("app", Status::Recreate, "@@ -3 +3 @@\n-    \"COLOR\": \"red\"\n+    \"COLOR\": \"blue\"\n"),
                svc("cache", Status::Unchanged, ""),
            ],
            project: String::new(),
        }),
        files: vec![],
        error: None,
    }
}

fn comment(stacks: &[StackOutcome]) -> Comment<'_> {
    Comment { base: "aaaaaaaaaaaaaaaa", head: "bbbbbbbbbbbbbbbb", stacks, fork: false, error: None, full: None }
}

#[test]
fn a_table_then_each_diff_folded() {
    let text = render(&comment(&[web()]), 65_536);
    assert!(text.starts_with(MARKER), "{text}");
    assert!(text.contains("| web | local | deploy | `app` |"), "{text}");
    assert!(!text.contains("`cache`"), "unchanged services are not recreated: {text}");
    assert!(text.contains("<details><summary><b>web</b> on local: 1 recreate, 1 unchanged</summary>"), "{text}");
    assert!(text.contains("```diff\n@@ -3 +3 @@\n-    \"COLOR\": \"red\"\n+    \"COLOR\": \"blue\"\n```"), "{text}");
    assert!(text.contains("`aaaaaaaaaaaa` → `bbbbbbbbbbbb`"), "{text}");
}

#[test]
fn errors_and_markup_stay_in_their_cells() {
    let broken = StackOutcome {
        name: "db".into(),
        server: "onyx".into(),
        state: "error",
        action: None,
        diff: None,
        files: vec![],
        error: Some("compose config rejected: a | b\n<script>".into()),
    };
    let text = render(&comment(&[broken]), 65_536);
    assert!(text.contains("| db | onyx | ❌ error | compose config rejected: a \\| b &lt;script&gt; |"), "{text}");
    let head = Comment { error: Some("berth.toml:3:1: unknown key"), ..comment(&[]) };
    assert!(render(&head, 65_536).contains("cannot be planned"));
    let fork = Comment { fork: true, ..comment(&[]) };
    assert!(render(&fork, 65_536).contains("(secret reference)"));
    assert!(render(&comment(&[]), 65_536).contains("No stack changes."));
}

#[test]
fn a_diff_with_backticks_cannot_close_its_fence() {
    let mut w = web();
    if let Some(d) = w.diff.as_mut() {
        d.services[0].diff = "+ command: ```rm```\n".into();
    }
    let text = render(&comment(&[w]), 65_536);
    assert!(text.contains("````diff\n+ command: ```rm```\n````"), "{text}");
}

#[test]
fn a_long_plan_is_capped_with_a_link_to_the_full_one() {
    let mut stacks = Vec::new();
    for i in 0..40 {
        let mut w = web();
        w.name = format!("web{i}");
        if let Some(d) = w.diff.as_mut() {
            d.services[0].diff = "+ line\n".repeat(200);
        }
        stacks.push(w);
    }
    let c = Comment { full: Some("https://berth.example.com/plans/stacks/7"), ..comment(&stacks) };
    let text = render(&c, 8_000);
    assert!(text.len() <= 8_000, "{}", text.len());
    assert!(text.contains("| web39 | local | deploy | `app` |"), "the table is whole");
    assert!(text.contains("[the full plan](https://berth.example.com/plans/stacks/7)"), "{text}");
    assert!(text.contains("left out here: web"), "{text}");
    assert!(text.contains("<details><summary><b>web0</b>"), "what fits is shown");
    assert!(text.starts_with(MARKER));
    // Even a tiny limit keeps the marker and stays under the limit.
    let tiny = render(&c, 300);
    assert!(tiny.len() <= 300 && tiny.starts_with(MARKER), "{tiny}");
}
