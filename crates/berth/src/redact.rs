//! The secret values this process knows, and their removal from every text berth writes out:
//! log lines (text and JSON, at every level, of every crate), deploy logs, notifications, errors.
//!
//! Values are registered as soon as they are read (secret references, decrypted files, a
//! deploy's resolved variables, `--set` of secret-named variables) and stay registered for the
//! life of the process, because the engine may echo them back at any time (container inspections).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::RwLock;

use aho_corasick::AhoCorasick;
use berth_core::vars::REDACTED;

/// Shorter values are not redacted: "1" or "on" would blank half of every log line.
const MIN_LEN: usize = 3;
/// Values shorter than this are redacted only where they stand as a token of their own (not inside
/// a longer word or number), so a short secret does not mangle timestamps and ids.
const SHORT: usize = 8;
/// Each line of a multi-line secret (a PEM key, an identity file) of at least this length is
/// redacted on its own too, since logs often carry such values line by line.
const LINE_MIN_LEN: usize = 8;
/// Values that say yes or no rather than hold a secret (`DISABLE_PASSWORD=true`).
const TRIVIAL: [&str; 6] = ["true", "false", "null", "none", "yes", "off"];

struct Known {
    forms: BTreeSet<String>,
    /// The same forms in matcher order; `None` while nothing is registered.
    matcher: Option<(AhoCorasick, Vec<usize>)>,
}

static KNOWN: RwLock<Known> = RwLock::new(Known { forms: BTreeSet::new(), matcher: None });

/// Remember secret values: from now on [`apply`] (and so every log line) hides them.
pub fn register<I, S>(values: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let new: Vec<String> = values
        .into_iter()
        .flat_map(|v| forms(v.as_ref()))
        .filter(|f| !KNOWN.read().unwrap_or_else(|p| p.into_inner()).forms.contains(f))
        .collect();
    if new.is_empty() {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    known.forms.extend(new);
    let patterns: Vec<&String> = known.forms.iter().collect();
    let lens = patterns.iter().map(|p| p.len()).collect();
    // Building from plain literals cannot fail short of absurd sizes; then the old matcher stays
    // and the values that do not fit it are at least in `forms` for the next build.
    if let Ok(ac) = AhoCorasick::new(&patterns) {
        known.matcher = Some((ac, lens));
    }
}

/// Every form in which `value` can show up in a log line: as is, JSON-escaped (a JSON log line,
/// an engine answer), `{:?}`-escaped (a Debug dump), and those escaped once more (an engine
/// answer inside a JSON log line); the same for each long line of a multi-line value.
fn forms(value: &str) -> Vec<String> {
    let mut bases = Vec::new();
    if worth_hiding(value) {
        bases.push(value.to_string());
    }
    if value.contains('\n') {
        bases.extend(value.lines().map(str::trim).filter(|l| l.len() >= LINE_MIN_LEN).map(str::to_string));
    }
    let mut out = BTreeSet::new();
    for b in bases {
        let json = json_escaped(&b);
        let debug = debug_escaped(&b);
        out.insert(json_escaped(&json));
        out.insert(json_escaped(&debug));
        out.extend([json, debug, b]);
    }
    out.into_iter().collect()
}

fn worth_hiding(value: &str) -> bool {
    value.len() >= MIN_LEN && !TRIVIAL.iter().any(|t| value.eq_ignore_ascii_case(t))
}

fn json_escaped(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

fn debug_escaped(s: &str) -> String {
    let quoted = format!("{s:?}");
    quoted[1..quoted.len() - 1].to_string()
}

/// `text` with every registered secret replaced by `********`.
pub fn apply(text: &str) -> Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(|p| p.into_inner());
    let Some((ac, lens)) = &known.matcher else { return Cow::Borrowed(text) };
    let bytes = text.as_bytes();
    let word = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric());
    // Overlapping matches, merged below: one secret inside or across another is hidden whole.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for m in ac.find_overlapping_iter(text) {
        let (start, end) = (m.start(), m.end());
        if lens[m.pattern().as_usize()] < SHORT && ((start > 0 && word(start - 1)) || word(end)) {
            continue;
        }
        spans.push((start, end));
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if end <= at {
            continue;
        }
        if start >= at {
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// The log writer: wraps another (stderr) so that every formatted line, text or JSON, whichever
/// crate logged it, passes through [`apply`] first; no call site can leak a registered value.
pub struct Redacting<M>(pub M);

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a> for Redacting<M> {
    type Writer = Line<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Line { buf: Vec::new(), out: self.0.make_writer() }
    }
}

/// One formatted event, written out redacted when the formatter is done with it (a secret is
/// never split between two writes).
pub struct Line<W: Write> {
    buf: Vec<u8>,
    out: W,
}

impl<W: Write> Write for Line<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Line<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        // Nowhere to report a failing log writer: the line is lost, as with the plain writer.
        let _ = self.out.write_all(apply(&text).as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The set is process-wide: each test uses values of its own.

    #[test]
    fn registered_values_are_hidden_in_every_form() {
        register(["s3cr3t-\"quoted\"\\back"]);
        let raw = "pw=s3cr3t-\"quoted\"\\back end";
        assert_eq!(apply(raw), "pw=******** end");
        let json = serde_json::json!({ "Env": ["DB_PASSWORD=s3cr3t-\"quoted\"\\back"] }).to_string();
        assert!(!apply(&json).contains("s3cr3t"), "{}", apply(&json));
        let nested = serde_json::json!({ "message": json }).to_string();
        assert!(!apply(&nested).contains("s3cr3t"), "{}", apply(&nested));
        let debug = format!("{:?}", vec!["s3cr3t-\"quoted\"\\back"]);
        assert!(!apply(&debug).contains("s3cr3t"), "{}", apply(&debug));
        let debug_in_json = serde_json::json!({ "fields": debug }).to_string();
        assert!(!apply(&debug_in_json).contains("s3cr3t"), "{}", apply(&debug_in_json));
    }

    #[test]
    fn unknown_text_is_untouched_and_not_copied() {
        register(["another-registered-value"]);
        assert!(matches!(apply("nothing to see here"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_and_trivial_values_are_not_registered() {
        register(["ab", "true", "FALSE", ""]);
        assert_eq!(apply("ab true FALSE"), "ab true FALSE");
    }

    #[test]
    fn short_values_are_hidden_only_as_tokens() {
        register(["k9x"]);
        assert_eq!(apply("key=k9x, id=ak9x7 \"k9x\""), "key=********, id=ak9x7 \"********\"");
        register(["long-enough-secret"]);
        assert_eq!(apply("xlong-enough-secretx"), "x********x");
    }

    #[test]
    fn overlapping_secrets_are_hidden_whole() {
        register(["overlap-one-AAAA", "AAAA-overlap-two"]);
        assert_eq!(apply("<overlap-one-AAAA-overlap-two>"), "<********>");
        register(["outer-secret-with-inner-part", "inner-part"]);
        assert_eq!(apply("[outer-secret-with-inner-part]"), "[********]");
    }

    #[test]
    fn lines_of_a_multi_line_secret_are_hidden_one_by_one() {
        register(["-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----\n"]);
        assert_eq!(apply("line: MIIEvQIBADANBgkqhkiG9w0B"), "line: ********");
    }

    #[test]
    fn log_lines_are_redacted_in_text_and_json() {
        use std::sync::{Arc, Mutex};
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        register(["log-\"planted\"-value"]);
        let inspection = serde_json::json!({ "Env": ["DB_PASSWORD=log-\"planted\"-value"] }).to_string();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let writer = Redacting(move || Sink(sink.clone()));
        let json = tracing_subscriber::fmt().json().with_writer(writer).finish();
        tracing::subscriber::with_default(json, || {
            tracing::info!(env = ?["log-\"planted\"-value"], "Decoded into string: {inspection}");
        });
        let sink = out.clone();
        let text =
            tracing_subscriber::fmt().with_ansi(false).with_writer(Redacting(move || Sink(sink.clone()))).finish();
        tracing::subscriber::with_default(text, || tracing::warn!("cannot start log-\"planted\"-value"));
        let written = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 2, "{written}");
        assert!(!written.contains("planted"), "{written}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert!(first["fields"]["message"].as_str().unwrap().contains("DB_PASSWORD=********"), "{first}");
        assert!(lines[1].ends_with("cannot start ********"), "{}", lines[1]);
    }
}
