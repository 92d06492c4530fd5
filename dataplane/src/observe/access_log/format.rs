//! A log format compiled once at translation: text (pieces of literal text and operators) or
//! JSON (keys to values, values typed as Envoy types them), and its rendering into one line.

use super::entry::Entry;
use super::operator::{Kind, Op};

/// Envoy's default access log format (docs: "Default format string").
pub const DEFAULT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Op(Op),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonValue {
    /// A literal (number, bool, string) already written as JSON.
    Raw(String),
    /// A string with operators; a lone operator keeps its type (a number stays a number).
    Pieces(Vec<Piece>),
    /// Keys in the order Envoy writes them (sorted).
    Object(Vec<(String, JsonValue)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub body: Body,
    /// `omit_empty_values`: a missing value is "" in text instead of "-", and its key is left
    /// out in JSON instead of `null`.
    pub omit_empty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(Vec<Piece>),
    Json(Vec<(String, JsonValue)>),
}

impl Format {
    pub fn default_text() -> Format {
        Format {
            body: Body::Text(parse(DEFAULT).unwrap_or_default()),
            omit_empty: false,
        }
    }

    /// Every operator, for what must be captured of a request and its response.
    pub fn ops(&self) -> Vec<&Op> {
        fn pieces<'a>(p: &'a [Piece], out: &mut Vec<&'a Op>) {
            out.extend(p.iter().filter_map(|p| match p {
                Piece::Op(op) => Some(op),
                Piece::Text(_) => None,
            }));
        }
        fn object<'a>(o: &'a [(String, JsonValue)], out: &mut Vec<&'a Op>) {
            for (_, v) in o {
                match v {
                    JsonValue::Raw(_) => {}
                    JsonValue::Pieces(p) => pieces(p, out),
                    JsonValue::Object(o) => object(o, out),
                }
            }
        }
        let mut out = Vec::new();
        match &self.body {
            Body::Text(p) => pieces(p, &mut out),
            Body::Json(o) => object(o, &mut out),
        }
        out
    }

    /// Renders the entry as one line (JSON lines end with a newline; a text format has the
    /// newline only if it ends with one, as in Envoy).
    pub fn render(&self, e: &Entry, out: &mut String) {
        match &self.body {
            Body::Text(pieces) => text(pieces, e, self.omit_empty, out),
            Body::Json(fields) => {
                let mut scratch = String::new();
                object(fields, e, self.omit_empty, out, &mut scratch);
                out.push('\n');
            }
        }
    }
}

/// Parses a format string (Envoy's syntax: `%NAME%`, `%NAME(args)%`, `%NAME(args):max%`).
pub fn parse(format: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut at = 0;
    while let Some(found) = format[at..].find('%') {
        let pos = at + found;
        text.push_str(&format[at..pos]);
        let (op, len) = command(&format[pos..]).ok_or_else(|| {
            format!(
                "Incorrect configuration: {format}. Couldn't find valid command at position {pos}"
            )
        })?;
        let op = op?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Op(op));
        at = pos + len;
    }
    text.push_str(&format[at..]);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

type Command = (Result<Op, String>, usize);

/// One command at the start of `s` (which starts with `%`) and its length; `None` when it is
/// not a command at all.
fn command(s: &str) -> Option<Command> {
    let rest = &s[1..];
    let name_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        .count();
    if name_len == 0 || !rest.as_bytes()[0].is_ascii_uppercase() {
        return None;
    }
    let name = &rest[..name_len];
    let mut after = &rest[name_len..];
    let mut args = None;
    if let Some(a) = after.strip_prefix('(') {
        // Arguments may hold `%` and `)` (a START_TIME format): they end at the first `)`
        // followed by `%` or by `:digits%`.
        let close = a.match_indices(')').map(|(i, _)| i).find(|&i| {
            let tail = &a[i + 1..];
            tail.starts_with('%') || max_suffix(tail).is_some()
        })?;
        args = Some(&a[..close]);
        after = &a[close + 1..];
    }
    let (max, after) = match max_suffix(after) {
        Some((max, len)) => (Some(max), &after[len..]),
        None => (None, after),
    };
    let after = after.strip_prefix('%')?;
    let len = s.len() - after.len();
    Some((Op::parse(name, args, max), len))
}

/// `:123` followed by `%`: (123, length of `:123`).
fn max_suffix(s: &str) -> Option<(usize, usize)> {
    let digits = s.strip_prefix(':')?;
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || !digits[n..].starts_with('%') {
        return None;
    }
    Some((digits[..n].parse().ok()?, n + 1))
}

fn text(pieces: &[Piece], e: &Entry, omit_empty: bool, out: &mut String) {
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Op(op) => {
                if op.write(e, out) == Kind::Missing && !omit_empty {
                    out.push('-');
                }
            }
        }
    }
}

fn object(
    fields: &[(String, JsonValue)],
    e: &Entry,
    omit_empty: bool,
    out: &mut String,
    scratch: &mut String,
) {
    out.push('{');
    let mut first = true;
    for (key, value) in fields {
        let mark = out.len();
        if !first {
            out.push(',');
        }
        json_string(key, out);
        out.push(':');
        let written = match value {
            JsonValue::Raw(raw) => {
                out.push_str(raw);
                true
            }
            JsonValue::Object(inner) => {
                object(inner, e, omit_empty, out, scratch);
                true
            }
            JsonValue::Pieces(pieces) => typed(pieces, e, omit_empty, out, scratch),
        };
        if written {
            first = false;
        } else {
            out.truncate(mark);
        }
    }
    out.push('}');
}

/// A value: a lone operator keeps its type (`null` when missing); text with operators is a
/// string. `false` when the key is to be left out (omit_empty_values).
fn typed(
    pieces: &[Piece],
    e: &Entry,
    omit_empty: bool,
    out: &mut String,
    scratch: &mut String,
) -> bool {
    scratch.clear();
    if let [Piece::Op(op)] = pieces {
        match op.write(e, scratch) {
            Kind::Missing if omit_empty => return false,
            Kind::Missing => out.push_str("null"),
            Kind::Number => out.push_str(scratch),
            Kind::Text => json_string(scratch, out),
        }
        return true;
    }
    text(pieces, e, omit_empty, scratch);
    json_string(scratch, out);
    true
}

/// `s` as a JSON string.
pub fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
