//! Webhook signatures: each forge's header checked against the shared secret, in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{FORGEJO_SIGNATURE, GITEA_SIGNATURE, GITLAB_TOKEN, HUB_SIGNATURE, Headers, Provider, get};

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused. Messages never include secrets or signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header `{header}`")]
    Missing { header: &'static str },
    #[error("malformed signature header (expected hex HMAC-SHA256)")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

/// Check a delivery against the shared `secret`, in constant time.
///
/// GitHub and generic: `X-Hub-Signature-256: sha256=<hex>`; Gitea:
/// `X-Gitea-Signature: <hex>`; Forgejo: `X-Forgejo-Signature` (falling back to
/// `X-Gitea-Signature`); GitLab: `X-Gitlab-Token` is the secret itself.
/// `body` must be the exact bytes received. An empty secret never verifies:
/// anyone can compute an HMAC under an empty key.
pub fn verify<H: Headers + ?Sized>(
    provider: Provider,
    headers: &H,
    body: &[u8],
    secret: &[u8],
) -> Result<(), SignatureError> {
    let require = |name: &'static str| get(headers, name).ok_or(SignatureError::Missing { header: name });
    match provider {
        Provider::GitHub | Provider::Generic => verify_hub_signature(&require(HUB_SIGNATURE)?, body, secret),
        Provider::Gitea => verify_hex(&require(GITEA_SIGNATURE)?, body, secret),
        Provider::Forgejo => {
            let sig = get(headers, FORGEJO_SIGNATURE)
                .or_else(|| get(headers, GITEA_SIGNATURE))
                .ok_or(SignatureError::Missing { header: FORGEJO_SIGNATURE })?;
            verify_hex(&sig, body, secret)
        }
        Provider::GitLab => verify_token(&require(GITLAB_TOKEN)?, secret),
    }
}

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`): the `X-Hub-Signature-256` value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verify an `X-Hub-Signature-256` value (`sha256=<hex>`) over `body`.
pub fn verify_hub_signature(header_value: &str, body: &[u8], secret: &[u8]) -> Result<(), SignatureError> {
    let hex = header_value.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    verify_hex(hex, body, secret)
}

fn hmac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Verify a bare hex HMAC-SHA256 over `body`.
fn verify_hex(hex: &str, body: &[u8], secret: &[u8]) -> Result<(), SignatureError> {
    // Decoding the attacker's value is not secret-dependent; only the compare must be constant time.
    let sig = hex::decode(hex.trim()).map_err(|_| SignatureError::Malformed)?;
    if sig.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    if secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let mut mac = hmac(secret);
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

/// Compare a plaintext token with the secret without leaking where they differ
/// or the secret's length: both sides go through HMAC under a fixed key, and the
/// fixed-size tags are compared in constant time.
pub fn verify_token(token: &str, secret: &[u8]) -> Result<(), SignatureError> {
    const KEY: &[u8] = b"berth webhook token compare";
    if secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let mut theirs = hmac(KEY);
    theirs.update(token.as_bytes());
    let tag = theirs.finalize().into_bytes();
    let mut ours = hmac(KEY);
    ours.update(secret);
    ours.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}
