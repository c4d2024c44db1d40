//! Headless Chromium driven over the DevTools protocol (one websocket, flattened page session).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use super::{need, wait_for};

pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start Chromium (installing Debian's package when missing) with one blank page.
    pub fn start() -> Browser {
        need("chromium", "chromium");
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .args([
                "--disable-background-networking",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            // Names other than loopback fail at once instead of waiting on DNS.
            .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).expect("chromium did not announce its DevTools endpoint");
        let addr = url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
        let stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools websocket handshake");
        let mut b = Browser { child, ws, session: String::new(), next: 0, _profile: profile };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}))["targetId"].clone();
        let attached = b.call("Target.attachToTarget", json!({"targetId": target, "flatten": true}));
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.page("Page.enable", json!({}));
        b.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 760, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    fn send(&mut self, method: &str, params: Value, session: Option<String>) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let m = self.ws.read().unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "DevTools {method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// A browser-level command.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// A command to the page.
    pub fn page(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(method, params, Some(s))
    }

    /// Evaluate JavaScript in the page; returns its (JSON) value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.page("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}));
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Navigate and wait until the page (and whatever it redirected to on the same origin) finished loading.
    pub fn open(&mut self, url: &str) -> String {
        let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        self.page("Page.navigate", json!({"url": url}));
        self.loaded(|h| h.starts_with(&format!("{origin}/")))
    }

    /// Wait until the document is complete at a location `ok` accepts; returns the location.
    pub fn loaded(&mut self, ok: impl Fn(&str) -> bool) -> String {
        wait_for("the page to load", Duration::from_secs(60), || {
            let v = self.eval("document.readyState + ' ' + location.href");
            let (state, href) = v.as_str()?.split_once(' ')?;
            (state == "complete" && href != "about:blank" && ok(href)).then(|| href.to_string())
        })
    }

    /// Every link, script, stylesheet and form target of the page.
    pub fn urls(&mut self) -> Vec<String> {
        let v = self.eval(
            "Array.from(document.querySelectorAll('[href],[src],form[action]'))\
             .map(e => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action'))",
        );
        v.as_array().unwrap().iter().map(|u| u.as_str().unwrap_or_default().to_string()).collect()
    }

    /// Resize the viewport (CSS pixels); `mobile` also emulates a phone's viewport handling.
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Prefer a dark (or light) color scheme, as the operating system would say.
    pub fn dark(&mut self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.page(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": value}]}),
        );
    }

    /// Press Tab once (a real key event, so focus moves as for a keyboard user).
    pub fn tab(&mut self) {
        for kind in ["rawKeyDown", "keyUp"] {
            self.page(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9}),
            );
        }
    }

    /// A PNG of the whole page, beyond the viewport.
    pub fn screenshot_full(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self.page("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}));
        base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self.page("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
