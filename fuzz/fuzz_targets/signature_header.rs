//! Fuzz target: signature verification with arbitrary headers, bodies and secrets, for every provider.
#![no_main]

use arbitrary::Arbitrary;
use berth_core::webhook::{Provider, sign, verify, verify_hub_signature};
use libfuzzer_sys::fuzz_target;

const PROVIDERS: [Provider; 5] =
    [Provider::GitHub, Provider::Gitea, Provider::Forgejo, Provider::GitLab, Provider::Generic];

#[derive(Debug, Arbitrary)]
struct Input {
    headers: Vec<(String, String)>,
    /// A raw `X-Hub-Signature-256` value.
    hub: String,
    body: Vec<u8>,
    secret: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let Input { headers, hub, body, secret } = input;
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let good = sign(&secret, &body);
    let good_hex = &good["sha256=".len()..];
    // Only the true HMAC verifies, and never under an empty secret.
    let matches_good = |v: &str| v.trim().to_ascii_lowercase() == good_hex;
    if verify_hub_signature(&hub, &body, &secret).is_ok() {
        assert!(!secret.is_empty());
        assert!(hub.trim().strip_prefix("sha256=").is_some_and(matches_good), "{hub:?}");
    }
    for p in PROVIDERS {
        if verify(p, &headers[..], &body, &secret).is_ok() {
            assert!(!secret.is_empty(), "{p} verified under an empty secret");
            let value = |name: &str| {
                headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()).unwrap_or("")
            };
            match p {
                Provider::GitHub | Provider::Generic => {
                    assert!(value("x-hub-signature-256").strip_prefix("sha256=").is_some_and(matches_good))
                }
                Provider::GitLab => assert_eq!(value("x-gitlab-token").as_bytes(), &secret[..]),
                Provider::Gitea | Provider::Forgejo => {
                    assert!(["x-forgejo-signature", "x-gitea-signature"].iter().any(|h| matches_good(value(h))))
                }
            }
        }
    }
    // And the true HMAC always verifies, for every header that carries one.
    if !secret.is_empty() {
        let sigs = [
            (Provider::GitHub, "X-Hub-Signature-256", good.as_str()),
            (Provider::Generic, "x-hub-signature-256", &good),
            (Provider::Gitea, "X-Gitea-Signature", good_hex),
            (Provider::Forgejo, "X-Forgejo-Signature", good_hex),
        ];
        for (p, name, value) in sigs {
            assert_eq!(verify(p, &[(name, value)][..], &body, &secret), Ok(()), "{p}");
        }
    }
});
