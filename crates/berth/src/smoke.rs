//! HTTP smoke checks: does the new version answer, through the path users take?

use berth_core::verify::HttpCheck;
use serde::Serialize;
use std::net::SocketAddr;

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub url: String,
    pub ok: bool,
    pub tries: u32,
    /// Why the last try failed (or "HTTP 200").
    pub detail: String,
}

/// Run one check with its retries. Secrets (basic auth) are resolved here and never logged.
pub async fn run(check: &HttpCheck) -> CheckResult {
    let mut last = String::new();
    let client = match client(check) {
        Ok(c) => c,
        Err(e) => return CheckResult { url: check.url.clone(), ok: false, tries: 0, detail: e },
    };
    for attempt in 1..=check.retries {
        match once(&client, check).await {
            Ok(detail) => return CheckResult { url: check.url.clone(), ok: true, tries: attempt, detail },
            Err(e) => last = e,
        }
        if attempt < check.retries {
            tokio::time::sleep(check.interval).await;
        }
    }
    CheckResult { url: check.url.clone(), ok: false, tries: check.retries, detail: last }
}

fn client(check: &HttpCheck) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder().timeout(check.timeout).connect_timeout(check.timeout);
    if let Some(ip) = check.resolve {
        let url = reqwest::Url::parse(&check.url).map_err(|e| format!("invalid url {}: {e}", check.url))?;
        let host = url.host_str().ok_or_else(|| format!("{} has no host", check.url))?.to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        // Like `curl --resolve`: dial `ip`, keep the host for SNI and the Host header.
        b = b.resolve(&host, SocketAddr::new(ip, port));
    }
    if let Some(ca) = &check.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read CA file {ca}: {e}"))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("CA file {ca}: {e}"))?;
        b = b.add_root_certificate(cert);
    }
    if check.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| format!("cannot build an HTTP client: {e}"))
}

async fn once(client: &reqwest::Client, check: &HttpCheck) -> Result<String, String> {
    let mut req = client.get(&check.url);
    if let Some((user, password)) = &check.basic_auth {
        let pw = crate::secrets::resolve(password).map_err(|e| format!("basic auth password: {e}"))?;
        req = req.basic_auth(user, Some(pw));
    }
    let resp = req.send().await.map_err(|e| format!("request failed: {}", without_url(&e)))?;
    let status = resp.status().as_u16();
    let page_scheme = resp.url().scheme().to_string();
    let ok_status = match check.status {
        Some(want) => status == want,
        None => (200..300).contains(&status),
    };
    if !ok_status {
        let want = check.status.map(|s| s.to_string()).unwrap_or_else(|| "2xx".into());
        return Err(format!("HTTP {status}, expected {want}"));
    }
    if check.body.is_none() && !check.assets {
        return Ok(format!("HTTP {status}"));
    }
    let body = resp.text().await.map_err(|e| format!("reading the body failed: {}", without_url(&e)))?;
    if let Some(want) = &check.body
        && !body.contains(want.as_str())
    {
        return Err(format!("HTTP {status} but the body does not contain {want:?}"));
    }
    if check.assets {
        let bad = mixed_assets(&body, &page_scheme);
        if !bad.is_empty() {
            return Err(format!(
                "the {page_scheme} page links {} asset(s) over another scheme, e.g. {} (an app behind a TLS proxy without proxy headers?)",
                bad.len(),
                bad[0]
            ));
        }
    }
    Ok(format!("HTTP {status}"))
}

fn without_url(e: &reqwest::Error) -> String {
    // The URL may carry credentials in its query; the error's source is enough.
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    s
}

/// Absolute stylesheet, script and image URLs in `html` whose scheme differs from `scheme`.
pub fn mixed_assets(html: &str, scheme: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(start) = lower[pos..].find('<').map(|i| pos + i) {
        let end = lower[start..].find('>').map(|i| start + i).unwrap_or(lower.len());
        let tag = &lower[start + 1..end];
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let attr = match name.as_str() {
            "link" => Some("href"),
            "script" | "img" => Some("src"),
            _ => None,
        };
        if let Some(attr) = attr
            && let Some(v) = attribute(&html[start + 1..end], tag, attr)
        {
            let v = v.trim();
            let other = if scheme == "https" { "http://" } else { "https://" };
            if v.to_ascii_lowercase().starts_with(other) {
                out.push(v.to_string());
            }
        }
        pos = end.max(start + 1);
    }
    out
}

/// The value of `attr` in a tag (`orig` is the tag's original text, `lower` its lowercase copy).
fn attribute(orig: &str, lower: &str, attr: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = lower[from..].find(attr).map(|i| from + i) {
        let before_ok = i == 0 || lower.as_bytes()[i - 1].is_ascii_whitespace();
        let rest = lower[i + attr.len()..].trim_start();
        if before_ok && rest.starts_with('=') {
            let vstart = orig.len() - rest.len() + 1;
            let v = orig[vstart..].trim_start();
            return Some(match v.chars().next() {
                Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or("").to_string(),
                _ => v.split(|c: char| c.is_ascii_whitespace()).next().unwrap_or("").to_string(),
            });
        }
        from = i + attr.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_assets_with_another_scheme() {
        let html = r#"<html><head>
            <link rel="stylesheet" href="http://app.example.com/style.css">
            <LINK REL=icon HREF='/favicon.ico'>
            <script src="https://cdn.example.com/x.js"></script>
            <img alt="a" src=http://app.example.com/logo.png>
            <a href="http://elsewhere.example.com/">links are fine</a>
        </head></html>"#;
        assert_eq!(
            mixed_assets(html, "https"),
            ["http://app.example.com/style.css", "http://app.example.com/logo.png"]
        );
        assert_eq!(mixed_assets(html, "http"), ["https://cdn.example.com/x.js"]);
        assert!(mixed_assets("<link href=\"//cdn/x.css\"><img data-src=\"http://x\">", "https").is_empty());
    }
}
