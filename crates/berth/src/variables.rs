//! A stack's variables as compose interpolates them, resolved once for deploys, `adopt` and
//! `diff`: env files, encrypted env files, `env`, secret references, then the overrides.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use berth_core::{Stack, vars};

/// The resolved variables of one stack at one checkout.
#[derive(Debug, Default)]
pub struct Variables {
    pub values: BTreeMap<String, String>,
    /// Names whose values came from secrets (encrypted files, secret references).
    pub secret_keys: BTreeSet<String>,
    /// One line per decrypted file, for the deploy log.
    pub notes: Vec<String>,
}

/// Resolve `stack`'s variables in its checkout `dir`, `overrides` last. The secret values are
/// registered for redaction ([`crate::redact`]): whatever this process logs or records from now
/// on hides them. Decrypted text stays in memory. `Err` says which file or variable failed.
pub fn resolve(stack: &Stack, dir: &Path, overrides: &BTreeMap<String, String>) -> Result<Variables, String> {
    let mut v = Variables::default();
    for f in &stack.env_files {
        let text = std::fs::read_to_string(dir.join(f)).map_err(|e| format!("cannot read env file {f}: {e}"))?;
        v.values.extend(vars::parse_env_file(&text).map_err(|(line, m)| format!("{f}:{line}: {m}"))?);
    }
    if !stack.secrets.is_empty() {
        let identity = crate::secrets::age_identity(stack.age_identity.as_ref());
        for f in &stack.secrets {
            let cipher = std::fs::read(dir.join(f)).map_err(|e| format!("cannot read {f}: {e}"))?;
            let plain = match crate::secrets::sops_format(f, &cipher) {
                Some(kind) => crate::secrets::decrypt_sops(&dir.join(f), kind, identity.as_deref().ok()),
                None => match &identity {
                    Ok(id) => crate::secrets::decrypt_age(&cipher, id),
                    Err(e) => Err(format!("stack `{}` has age-encrypted secrets but no age identity: {e}", stack.name)),
                },
            }
            .map_err(|e| format!("{f}: {e}"))?;
            let text = String::from_utf8(plain).map_err(|_| format!("{f}: the decrypted text is not UTF-8"))?;
            let parsed = vars::parse_env_file(&text).map_err(|(line, m)| format!("{f} (decrypted):{line}: {m}"))?;
            v.notes.push(format!("decrypted {f} ({} variables)", parsed.len()));
            for (k, value) in parsed {
                v.secret_keys.insert(k.clone());
                v.values.insert(k, value);
            }
        }
    }
    v.values.extend(stack.env.clone());
    for (k, reference) in &stack.secret_env {
        let value = crate::secrets::resolve(reference).map_err(|e| format!("variable {k}: {e}"))?;
        v.secret_keys.insert(k.clone());
        v.values.insert(k.clone(), value);
    }
    v.values.extend(overrides.clone());
    crate::redact::register(v.secrets());
    Ok(v)
}

/// What a secret variable renders as when its secret is not read (a fork's pull request).
pub const SECRET_REFERENCE: &str = "(secret reference)";

/// Like [`resolve`] but without reading a single secret: no file is decrypted and no secret
/// reference is read. A secret reference's variable, and each variable of an encrypted env file
/// whose names are readable without its key (SOPS dotenv), renders as [`SECRET_REFERENCE`].
pub fn resolve_references(
    stack: &Stack,
    dir: &Path,
    overrides: &BTreeMap<String, String>,
) -> Result<Variables, String> {
    let mut v = Variables::default();
    for f in &stack.env_files {
        let text = std::fs::read_to_string(dir.join(f)).map_err(|e| format!("cannot read env file {f}: {e}"))?;
        v.values.extend(vars::parse_env_file(&text).map_err(|(line, m)| format!("{f}:{line}: {m}"))?);
    }
    for f in &stack.secrets {
        // SOPS dotenv keeps its names in clear (`KEY=ENC[...]`); an age file hides them too.
        let names: Vec<String> = std::fs::read_to_string(dir.join(f))
            .ok()
            .and_then(|t| vars::parse_env_file(&t).ok())
            .map(|m| m.into_iter().map(|(k, _)| k).filter(|k| !k.starts_with("sops_")).collect())
            .unwrap_or_default();
        v.notes.push(format!("{f} not decrypted ({} names readable)", names.len()));
        for k in names {
            v.values.insert(k, SECRET_REFERENCE.to_string());
        }
    }
    v.values.extend(stack.env.clone());
    for k in stack.secret_env.keys() {
        v.values.insert(k.clone(), SECRET_REFERENCE.to_string());
    }
    v.values.extend(overrides.clone());
    Ok(v)
}

impl Variables {
    /// Whether `key` holds a secret: its name says so, or its value came from a secret.
    pub fn is_secret(&self, key: &str) -> bool {
        vars::is_secret_key(key) || self.secret_keys.contains(key)
    }

    /// The secret values worth hiding (shorter ones would hide common text).
    pub fn secrets(&self) -> Vec<String> {
        self.values.iter().filter(|(k, v)| self.is_secret(k) && v.len() >= 3).map(|(_, v)| v.clone()).collect()
    }
}

/// `values` as a deploy records them: secret ones redacted.
pub fn recorded(values: &BTreeMap<String, String>, secret_keys: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = vars::redact(values);
    for k in secret_keys {
        if let Some(v) = out.get_mut(k) {
            *v = vars::REDACTED.to_string();
        }
    }
    out
}
