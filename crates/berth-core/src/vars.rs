//! Deploy variables: names, env-file parsing, `--set` parsing and redaction of secret values.

use std::collections::BTreeMap;

/// Placeholder stored and printed instead of a secret value.
pub const REDACTED: &str = "********";

/// Is `key` a valid environment variable name?
pub fn valid_key(key: &str) -> bool {
    let mut c = key.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Does the variable's name say it holds a secret (PASSWORD, SECRET, TOKEN, KEY, ...)?
pub fn is_secret_key(key: &str) -> bool {
    const WORDS: [&str; 9] =
        ["PASSWORD", "PASSWD", "PASS", "SECRET", "TOKEN", "KEY", "APIKEY", "CREDENTIALS", "PRIVATE"];
    key.to_ascii_uppercase().split(['_', '-', '.']).any(|w| WORDS.contains(&w))
}

/// A copy of `vars` whose secret values are replaced by [`REDACTED`].
pub fn redact(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    vars.iter().map(|(k, v)| (k.clone(), if is_secret_key(k) { REDACTED.to_string() } else { v.clone() })).collect()
}

/// The variables a later deploy may replay: every one but the secret-named, whose
/// values are stored redacted.
pub fn replayable(vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    vars.iter().filter(|(k, _)| !is_secret_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Parse `KEY=VALUE` from the command line.
pub fn parse_set(arg: &str) -> Result<(String, String), String> {
    let (k, v) = arg.split_once('=').ok_or_else(|| format!("`{arg}` is not KEY=VALUE"))?;
    if !valid_key(k) {
        return Err(format!("`{k}` is not a valid variable name"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parse a dotenv file the way Compose reads one: `KEY=VALUE` lines, `#` comments,
/// optional `export `, single or double quotes around the value.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=').ok_or_else(|| (n + 1, format!("`{line}` is not KEY=VALUE")))?;
        let k = k.trim();
        if !valid_key(k) {
            return Err((n + 1, format!("`{k}` is not a valid variable name")));
        }
        let v = v.trim();
        let v = if v.len() >= 2 && (v.starts_with('"') && v.ends_with('"') || v.starts_with('\'') && v.ends_with('\''))
        {
            &v[1..v.len() - 1]
        } else {
            v.split(" #").next().unwrap_or(v).trim_end()
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_redacted() {
        let mut v = BTreeMap::new();
        v.insert("DB_PASSWORD".to_string(), "hunter2".to_string());
        v.insert("API_KEY".to_string(), "k".to_string());
        v.insert("MONKEY".to_string(), "banana".to_string());
        v.insert("APP_TAG".to_string(), "abc".to_string());
        let r = redact(&v);
        assert_eq!(r["DB_PASSWORD"], REDACTED);
        assert_eq!(r["API_KEY"], REDACTED);
        assert_eq!(r["MONKEY"], "banana");
        assert_eq!(r["APP_TAG"], "abc");
    }

    #[test]
    fn env_files_parse_like_compose() {
        let vars = parse_env_file("# c\nA=1\nexport B=\"two words\"\nC='x' \nD=v # note\n").unwrap();
        assert_eq!(
            vars,
            [("A", "1"), ("B", "two words"), ("C", "x"), ("D", "v")].map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(parse_env_file("A=1\nnope\n").unwrap_err().0, 2);
    }

    #[test]
    fn set_arguments_are_checked() {
        assert_eq!(parse_set("APP_TAG=a=b").unwrap(), ("APP_TAG".into(), "a=b".into()));
        assert!(parse_set("1X=y").is_err());
        assert!(parse_set("novalue").is_err());
    }
}
