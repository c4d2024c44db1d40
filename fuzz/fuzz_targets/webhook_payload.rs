//! Fuzz target: a webhook delivery (headers and body) through every provider's classification and push parsing.
//!
//! Input: `Name: value` header lines, a blank line, then the body (like HTTP); without a blank line the whole
//! input is the body and there are no headers.
#![no_main]

use berth_core::webhook::{EventKind, Provider, delivery_id, event_kind, parse_push};
use libfuzzer_sys::fuzz_target;

const PROVIDERS: [Provider; 5] =
    [Provider::GitHub, Provider::Gitea, Provider::Forgejo, Provider::GitLab, Provider::Generic];

fn split(data: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else { return (Vec::new(), data) };
    let headers = String::from_utf8_lossy(&data[..end])
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    (headers, &data[end + 2..])
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let (owned, body) = split(data);
    let headers: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let headers = &headers[..];
    let detected = Provider::detect(headers);
    assert!(PROVIDERS.contains(&detected));
    for p in PROVIDERS {
        if let EventKind::Other(name) = event_kind(p, headers, body) {
            assert!(!name.is_empty() || p == Provider::Generic, "{p}: empty event name");
        }
        if let Some(id) = delivery_id(p, headers) {
            assert!(!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()), "{id:?}");
        }
        let Ok(push) = parse_push(p, body) else { continue };
        // What reaches git's command line: a ref that cannot be an option or a revision expression, hex ids.
        let r = &push.git_ref;
        assert!(r.starts_with("refs/") && !r.contains("..") && !r.contains(char::is_whitespace), "{r:?}");
        assert!(!r.chars().any(|c| c.is_control() || "~^:?*[\\".contains(c)), "{r:?}");
        assert!(is_oid(&push.before) && is_oid(&push.after), "{push:?}");
        assert_eq!(push.branch.as_deref(), r.strip_prefix("refs/heads/"));
        assert!(push.delivery.is_none());
        if push.after.bytes().all(|b| b == b'0') {
            assert!(push.deleted);
        }
        for s in [&push.repo_url, &push.repo_full_name, &push.pusher].into_iter().flatten() {
            assert!(!s.is_empty() && s.trim() == s, "{s:?}");
        }
    }
});
