//! API keys: creation (the secret is shown once), verification and scopes.

use sha2::{Digest, Sha256};

use crate::state::{ApiKey, State, StateError};

/// What a key may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Deploy,
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "deploy" => Some(Scope::Deploy),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Deploy => "deploy",
            Scope::Admin => "admin",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
    stacks: globset::GlobMatcher,
}

impl Caller {
    /// May this caller deploy `stack`?
    pub fn may_deploy(&self, stack: &str) -> bool {
        self.scope >= Scope::Deploy && (self.scope == Scope::Admin || self.stacks.is_match(stack))
    }
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Create a key; returns the stored record and the secret (never stored, shown once).
pub fn create(state: &State, name: &str, scope: Scope, stacks: &str) -> Result<(ApiKey, String), String> {
    berth_core::changes::glob(stacks)?;
    let rand = |n| crate::secrets::random_hex(n).map_err(|e| format!("no randomness: {e}"));
    let key = format!("bk_{}", rand(12)?);
    let secret = format!("bs_{}", rand(32)?);
    let record = ApiKey {
        key,
        name: name.to_string(),
        scope: scope.as_str().to_string(),
        stacks: stacks.to_string(),
        secret_hash: digest(&secret),
        created_at: crate::state::now(),
    };
    state.add_key(&record).map_err(|e| match e {
        StateError::Sqlite { source, .. } if source.to_string().contains("UNIQUE") => {
            format!("a key named `{name}` exists already; remove it first with `berth keys delete {name}`")
        }
        other => other.to_string(),
    })?;
    Ok((record, secret))
}

/// Check a key and secret. Comparison of the secret's digest is constant-time.
pub fn verify(state: &State, key: &str, secret: &str) -> Result<Option<Caller>, StateError> {
    let Some(k) = state.key(key)? else { return Ok(None) };
    let given = digest(secret);
    let equal = given.len() == k.secret_hash.len()
        && given.bytes().zip(k.secret_hash.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !equal {
        return Ok(None);
    }
    let Some(scope) = Scope::parse(&k.scope) else { return Ok(None) };
    let Ok(stacks) = berth_core::changes::glob(&k.stacks) else { return Ok(None) };
    Ok(Some(Caller { name: k.name, scope, stacks }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_verify_and_scope() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        let (k, secret) = create(&st, "ci", Scope::Deploy, "app-*").unwrap();
        assert!(!st.keys().unwrap()[0].secret_hash.contains(&secret));
        let c = verify(&st, &k.key, &secret).unwrap().unwrap();
        assert!(c.may_deploy("app-web"));
        assert!(!c.may_deploy("db"));
        assert!(verify(&st, &k.key, "bs_wrong").unwrap().is_none());
        assert!(verify(&st, "bk_nope", &secret).unwrap().is_none());
        assert!(create(&st, "ci", Scope::Read, "*").unwrap_err().contains("exists already"));
        let (r, rs) = create(&st, "reader", Scope::Read, "*").unwrap();
        assert!(!verify(&st, &r.key, &rs).unwrap().unwrap().may_deploy("app-web"));
    }
}
