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

/// Compose's interpolation of `text` (`$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?err}`, `${VAR?err}`, `${VAR:+alt}`, `${VAR+alt}`), with `lookup` giving the known values.
/// `Err(name)`: a variable whose value is not known here (and that has no default), or a malformed
/// expression (its text).
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            // The closing brace of this expression, nested `${...}` in a default included.
            let mut depth = 1;
            let end = r
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(j, _)| j)
                .ok_or_else(|| format!("${{{r}"))?;
            out.push_str(&expression(&r[..end], lookup)?);
            rest = &r[end + 1..];
        } else {
            let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            if len == 0 {
                out.push('$');
                continue;
            }
            out.push_str(&lookup(&rest[..len]).ok_or_else(|| rest[..len].to_string())?);
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${...}` body.
fn expression(body: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let len = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
    let (name, op) = body.split_at(len);
    if !valid_key(name) {
        return Err(format!("${{{body}}}"));
    }
    let value = lookup(name);
    let sub = |t: &str| interpolate(t, lookup);
    let unknown = || name.to_string();
    match op {
        "" => value.ok_or_else(unknown),
        _ if op.starts_with(":-") => match value {
            Some(v) if !v.is_empty() => Ok(v),
            _ => sub(&op[2..]),
        },
        _ if op.starts_with(":+") => match value {
            Some(v) if !v.is_empty() => sub(&op[2..]),
            _ => Ok(String::new()),
        },
        _ if op.starts_with(":?") || op.starts_with('?') => value.ok_or_else(unknown),
        _ if op.starts_with('-') => value.map_or_else(|| sub(&op[1..]), Ok),
        _ if op.starts_with('+') => value.map_or(Ok(String::new()), |_| sub(&op[1..])),
        _ => Err(format!("${{{body}}}")),
    }
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

    #[test]
    fn interpolation_follows_compose() {
        let known = |k: &str| match k {
            "DIR" => Some("conf".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let i = |t: &str| interpolate(t, &known);
        assert_eq!(i("./${DIR}/a.conf").unwrap(), "./conf/a.conf");
        assert_eq!(i("./$DIR/x").unwrap(), "./conf/x");
        assert_eq!(i("${NOPE:-./def}").unwrap(), "./def");
        assert_eq!(i("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(i("${EMPTY-d}").unwrap(), "");
        assert_eq!(i("${NOPE-${DIR}}/y").unwrap(), "conf/y");
        assert_eq!(i("${DIR:+set}${NOPE:+no}").unwrap(), "set");
        assert_eq!(i("$$HOME/x").unwrap(), "$HOME/x");
        assert_eq!(i("./${NOPE}/x").unwrap_err(), "NOPE");
        assert_eq!(i("${NOPE:?required}").unwrap_err(), "NOPE");
        assert!(i("${DIR").is_err());
    }
}
