//! Human output: aligned tables, short ids and ages.

use std::time::Duration;

/// Print rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// The first 10 characters of a commit id.
pub fn short(commit: &str) -> String {
    commit.chars().take(10).collect()
}

/// "3m12s ago" for a unix timestamp.
pub fn age(unix: i64) -> String {
    let secs = (crate::state::now() - unix).max(0) as u64;
    format!("{} ago", berth_core::duration::human(Duration::from_secs(secs)))
}
