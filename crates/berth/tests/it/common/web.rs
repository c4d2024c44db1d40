//! A plain HTTP client for the dashboard's pages and forms, and readers of what they show.

use std::time::Duration;

pub type Client = reqwest::blocking::Client;

/// A client that never follows redirects, optionally connecting from `from` (a loopback address).
pub fn client(from: Option<&str>) -> Client {
    let mut b = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120));
    if let Some(ip) = from {
        b = b.local_address(ip.parse::<std::net::IpAddr>().unwrap());
    }
    b.build().unwrap()
}

fn location(r: &reqwest::blocking::Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// GET with extra headers: (status, body, Location).
pub fn get(c: &Client, url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = c.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let location = location(&r);
    (r.status().as_u16(), r.text().unwrap(), location)
}

/// POST a form with extra headers: (status, Location).
pub fn post(c: &Client, url: &str, headers: &[(&str, &str)], form: &str) -> (u16, String) {
    let mut req = c.post(url).header("Content-Type", "application/x-www-form-urlencoded").body(form.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (r.status().as_u16(), location(&r))
}

/// Log in with an API key; returns the `Cookie` header value. The session cookie is HttpOnly,
/// SameSite=Strict, and carries neither the key nor its secret.
pub fn login(c: &Client, base: &str, key: &str, secret: &str) -> String {
    let r = c
        .post(format!("{base}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("key={key}&secret={secret}&next=/"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303, "login with a valid key");
    let set = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains(secret) && !set.contains(key), "the cookie carries the key: {set}");
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token of the first form that has one.
pub fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no CSRF field in {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The overview's table row of `stack`.
pub fn row<'a>(html: &'a str, stack: &str) -> &'a str {
    let at = html.find(&format!("data-stack=\"{stack}\"")).unwrap_or_else(|| panic!("no row for {stack}: {html}"));
    let rest = &html[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

/// The text between the element with `id` and the next `</div>`.
pub fn card<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[at..];
    &rest[..rest.find("</div>").unwrap()]
}
