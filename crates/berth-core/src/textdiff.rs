//! Line diffs: the longest common subsequence of two texts' lines, rendered as unified hunks.

use serde::Serialize;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", content = "text", rename_all = "lowercase")]
pub enum Line {
    Same(String),
    Removed(String),
    Added(String),
}

/// Above this many cells the table would cost too much memory: show a full replacement instead.
const MAX_CELLS: usize = 4_000_000;

/// Every line of `old` and `new`, in order, marked kept, removed or added.
pub fn lines(old: &str, new: &str) -> Vec<Line> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Common head and tail need no table.
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..].iter().rev().zip(b[head..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out: Vec<Line> = a[..head].iter().map(|l| Line::Same(l.to_string())).collect();
    if (ma.len() + 1).saturating_mul(mb.len() + 1) > MAX_CELLS {
        out.extend(ma.iter().map(|l| Line::Removed(l.to_string())));
        out.extend(mb.iter().map(|l| Line::Added(l.to_string())));
    } else {
        // lcs[i][j]: length of the common subsequence of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                out.push(Line::Same(ma[i].to_string()));
                (i, j) = (i + 1, j + 1);
            } else if j == mb.len() || (i < ma.len() && lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                out.push(Line::Removed(ma[i].to_string()));
                i += 1;
            } else {
                out.push(Line::Added(mb[j].to_string()));
                j += 1;
            }
        }
    }
    out.extend(a[a.len() - tail..].iter().map(|l| Line::Same(l.to_string())));
    out
}

/// Whether any line differs.
pub fn changed(lines: &[Line]) -> bool {
    lines.iter().any(|l| !matches!(l, Line::Same(_)))
}

/// Unified hunks (`@@ -a,b +c,d @@`) with `context` kept lines around each change.
pub fn unified(lines: &[Line], context: usize) -> String {
    let mut out = String::new();
    let changes: Vec<usize> = (0..lines.len()).filter(|&i| !matches!(lines[i], Line::Same(_))).collect();
    let mut k = 0;
    while k < changes.len() {
        let start = changes[k].saturating_sub(context);
        let mut end = changes[k];
        // Changes closer than twice the context share a hunk.
        while k < changes.len() && changes[k] <= end + 2 * context + 1 {
            end = changes[k];
            k += 1;
        }
        let end = (end + context + 1).min(lines.len());
        let before = |i: usize| lines[..i].iter().filter(|l| !matches!(l, Line::Added(_))).count();
        let after = |i: usize| lines[..i].iter().filter(|l| !matches!(l, Line::Removed(_))).count();
        let (a0, a1, b0, b1) = (before(start), before(end), after(start), after(end));
        let from = |s: usize, n: usize| if n == 0 { s } else { s + 1 };
        out.push_str(&format!("@@ -{},{} +{},{} @@\n", from(a0, a1 - a0), a1 - a0, from(b0, b1 - b0), b1 - b0));
        for l in &lines[start..end] {
            let (mark, text) = match l {
                Line::Same(t) => (' ', t),
                Line::Removed(t) => ('-', t),
                Line::Added(t) => ('+', t),
            };
            out.push(mark);
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_smallest_change() {
        let d = lines("a\nb\nc\nd\n", "a\nB\nc\nd\ne\n");
        assert_eq!(
            d,
            vec![
                Line::Same("a".into()),
                Line::Removed("b".into()),
                Line::Added("B".into()),
                Line::Same("c".into()),
                Line::Same("d".into()),
                Line::Added("e".into()),
            ]
        );
        assert!(changed(&d));
        assert!(!changed(&lines("x\ny", "x\ny")));
    }

    #[test]
    fn renders_unified_hunks_with_context() {
        let old: String = (1..=20).map(|i| format!("{i}\n")).collect();
        let new: String = (1..=20)
            .filter(|&i| i != 18)
            .map(|i| if i == 3 { "three\n".to_string() } else { format!("{i}\n") })
            .collect();
        let u = unified(&lines(&old, &new), 2);
        assert_eq!(u, "@@ -1,5 +1,5 @@\n 1\n 2\n-3\n+three\n 4\n 5\n@@ -16,5 +16,4 @@\n 16\n 17\n-18\n 19\n 20\n");
        // A text from nothing: one hunk of additions.
        assert_eq!(unified(&lines("", "a\nb"), 3), "@@ -0,0 +1,2 @@\n+a\n+b\n");
    }

    #[test]
    fn interleaved_edits_keep_the_common_lines() {
        let d = lines("x\na\ny\nb\nz", "a\nq\nb");
        let kept: Vec<_> =
            d.iter().filter_map(|l| if let Line::Same(t) = l { Some(t.as_str()) } else { None }).collect();
        assert_eq!(kept, ["a", "b"]);
    }
}
