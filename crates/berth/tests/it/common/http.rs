//! A small HTTP server on loopback answering like a CI provider's API, scripted per test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One HTTP/1.1 request as a loopback test server reads it.
pub struct Request {
    pub method: String,
    /// The path and query.
    pub target: String,
    /// The header lines, lowercased.
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// Read one request off `stream` (its body by `Content-Length`); None when the client sent none.
    pub fn read(stream: &TcpStream) -> Option<Request> {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
        let (mut length, mut head) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                break;
            }
            let h = h.to_ascii_lowercase();
            if let Some(v) = h.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&h);
        }
        let mut body = vec![0u8; length];
        let _ = reader.read_exact(&mut body);
        Some(Request { method, target, head, body })
    }
}

/// Answers: (status, body) for a request path and how many times that path was asked before.
pub type Script = Box<dyn Fn(&str, usize) -> (u16, String) + Send + Sync>;

pub struct Api {
    pub base: String,
    pub hits: Arc<Mutex<Vec<String>>>,
    /// POST requests, as `path body` then the lowercased header lines.
    pub posts: Arc<Mutex<Vec<String>>>,
}

impl Api {
    pub fn start(script: Script) -> Api {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let posts = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        let posted = posts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Some(Request { method, target: path, head, body }) = Request::read(&stream) else { continue };
                if method == "POST" {
                    posted.lock().unwrap().push(format!("{path} {}\n{head}", String::from_utf8_lossy(&body)));
                }
                let n = {
                    let mut s = seen.lock().unwrap();
                    let n = s.iter().filter(|p| **p == path).count();
                    s.push(path.clone());
                    n
                };
                let (status, body) = script(&path, n);
                // A status of 0 stands for "no answer": hold the connection a while, then drop it.
                if status == 0 {
                    std::thread::spawn(move || {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        drop(stream);
                    });
                    continue;
                }
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Api { base, hits, posts }
    }
}
