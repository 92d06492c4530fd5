//! HTTP/1 message heads: requests parsed with `httparse` into `http` types (header values
//! share the bytes read, no copy per header), the framing of a body (RFC 9112 section 6), and
//! heads written into one buffer.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

/// At most this many header fields in a head (Envoy's `max_headers_count` default, 100).
pub const MAX_HEADERS: usize = 100;

/// The largest request head (Envoy's `max_request_headers_kb` default, 60 KiB).
pub const MAX_HEAD: usize = 60 * 1024;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    Close,
}

/// Why a head was refused, and so the status Envoy answers with and the
/// `%RESPONSE_CODE_DETAILS%` it logs (checked against Envoy 1.40 on the wire and in its access
/// log: every malformed request is a 400 "Bad Request" and a close, except the ones below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed: 400.
    Bad,
    /// A control byte in a header value: 400.
    InvalidCharacters,
    /// Both `Transfer-Encoding` and `Content-Length`: 400.
    ChunkedAndLength,
    /// A version other than HTTP/1.0 or 1.1 (`HTTP/1.2`, `HTTP/2.0`): 426.
    Version,
    /// Over [`MAX_HEAD`] bytes: 431.
    TooLarge,
    /// Over [`MAX_HEADERS`] fields: 431.
    TooManyHeaders,
    /// A transfer coding other than one `chunked`: 501.
    NotImplemented,
}

impl HeadError {
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::Bad | HeadError::InvalidCharacters | HeadError::ChunkedAndLength => {
                StatusCode::BAD_REQUEST
            }
            HeadError::Version => StatusCode::UPGRADE_REQUIRED,
            HeadError::TooLarge | HeadError::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HeadError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for it.
    pub fn details(self) -> &'static str {
        match self {
            HeadError::Bad => CODEC_ERROR,
            HeadError::InvalidCharacters => "http1.invalid_characters",
            HeadError::ChunkedAndLength => "http1.content_length_and_chunked_not_allowed",
            HeadError::Version => "low_version",
            HeadError::TooLarge => "http1.headers_too_large",
            HeadError::TooManyHeaders => "http1.too_many_headers",
            HeadError::NotImplemented => "http1.invalid_transfer_encoding",
        }
    }
}

/// Envoy's details of a malformed HTTP/1 message (a head, or a chunked body).
pub const CODEC_ERROR: &str = "http1.codec_error";

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: http::request::Parts,
    pub framing: Framing,
    /// The client allows the connection to stay open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (and removed from the headers: we answer it).
    pub expect_continue: bool,
}

/// Parses a request head from the start of `buf`: `Ok(None)` when more bytes are needed.
/// On success the head's bytes are split off `buf`.
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    let len = buf.len();
    match parse_request_head(buf) {
        // httparse refuses obs-fold in requests, Envoy 1.40 accepts it: refused before the
        // head was split off (so not by a later check), joined, parsed again.
        Err(HeadError::Bad | HeadError::InvalidCharacters) if buf.len() == len && unfold(buf) => {
            parse_request_head(buf)
        }
        parsed => parsed,
    }
}

fn parse_request_head(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(&buf[..], &mut slots);
    let Some(len) = head_length(parsed, buf)? else {
        return Ok(None);
    };
    let version = version_of(req.version);
    let method =
        Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| HeadError::Bad)?;
    let path = req.path.unwrap_or("");
    // Offsets into the buffer, so the frozen head can be sliced without copying.
    let base = buf.as_ptr() as usize;
    let path_at = path.as_ptr() as usize - base;
    let path_len = path.len();
    let mut fields = [(0, 0, 0, 0); MAX_HEADERS];
    let count = field_offsets(base, req.headers, &mut fields);
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path_at..path_at + path_len))
        .map_err(|_| HeadError::Bad)?;
    let mut headers = header_map(&head, &fields[..count], REQUEST_ROOM, false, None)?;
    let framing = request_framing(&headers)?;
    let keep_alive = keep_alive(&headers, version);
    let expect_continue = match headers.get(header::EXPECT) {
        Some(v)
            if v.as_bytes().eq_ignore_ascii_case(b"100-continue")
                && version == Version::HTTP_11 =>
        {
            headers.remove(header::EXPECT);
            true
        }
        _ => false,
    };
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// Joins the obs-fold continuation lines (RFC 9112 section 5.2) of the head at the start of
/// `buf`, in place: the line break before a line starting with a space or a tab is removed and
/// the whitespace kept, as Envoy 1.40 forwards them (`a CRLF SP b` is `a b`). Only the header
/// section (after the request line, up to the empty line) is looked at; true when something
/// was joined.
fn unfold(buf: &mut BytesMut) -> bool {
    let limit = buf.len().min(MAX_HEAD + 1);
    let Some(first) = buf[..limit].iter().position(|&b| b == b'\n') else {
        return false;
    };
    let (mut read, mut write) = (first + 1, first + 1);
    while read < limit {
        let at_break = match buf[read] {
            b'\n' => Some(1),
            b'\r' if buf.get(read + 1) == Some(&b'\n') => Some(2),
            _ => None,
        };
        if let Some(n) = at_break {
            match buf.get(read + n) {
                Some(b' ' | b'\t') => {
                    read += n;
                    continue;
                }
                // The empty line ending the head, or not known yet.
                Some(b'\r' | b'\n') | None => break,
                Some(_) => {}
            }
        }
        buf[write] = buf[read];
        read += 1;
        write += 1;
    }
    if read == write {
        return false;
    }
    let len = buf.len();
    buf.copy_within(read..len, write);
    buf.truncate(len - (read - write));
    true
}

/// The length of a parsed head; `None` when more bytes are needed. Over [`MAX_HEAD`] bytes or
/// [`MAX_HEADERS`] fields is 431.
fn head_length(parsed: httparse::Result<usize>, buf: &[u8]) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(httparse::Error::HeaderValue) => Err(HeadError::InvalidCharacters),
        Err(httparse::Error::Version) => Err(version_error(buf)),
        Err(_) => Err(HeadError::Bad),
    }
}

/// httparse's minor version: 0 is HTTP/1.0, anything else it accepted HTTP/1.1.
fn version_of(minor: Option<u8>) -> Version {
    match minor {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    }
}

/// A request line whose version httparse refused: 426 when it is another `HTTP/x.y` (Envoy
/// asks for an upgrade), 400 when the line is malformed (`GET /a b HTTP/1.1`).
fn version_error(buf: &[u8]) -> HeadError {
    let line = buf.split(|b| *b == b'\n').next().unwrap_or(b"");
    let mut words = line.trim_ascii().split(|b| *b == b' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some(_), Some(_), Some(v), None) if v.starts_with(b"HTTP/") => HeadError::Version,
        _ => HeadError::Bad,
    }
}

/// Where a header field's name and value are in a head: (name at, name length, value at,
/// value length). A head is at most [`MAX_HEAD`] bytes, so 16 bits hold any offset: the
/// array of them, made per head, stays small (800 bytes, not 3.2 KB to zero).
type Field = (u16, u16, u16, u16);
const _: () = assert!(MAX_HEAD <= u16::MAX as usize);

/// The fields' offsets from `base`, the start of the buffer they were parsed from.
fn field_offsets(
    base: usize,
    parsed: &[httparse::Header<'_>],
    out: &mut [Field; MAX_HEADERS],
) -> usize {
    for (slot, h) in out.iter_mut().zip(parsed) {
        let at = |p: *const u8| (p as usize - base) as u16;
        *slot = (
            at(h.name.as_ptr()),
            h.name.len() as u16,
            at(h.value.as_ptr()),
            h.value.len() as u16,
        );
    }
    parsed.len().min(MAX_HEADERS)
}

/// Room left in a request's header map for what the connection manager and the router add
/// (x-forwarded-proto, x-request-id, x-envoy-expected-rq-timeout-ms, route additions), so
/// adding them does not grow and rehash the map.
const REQUEST_ROOM: usize = 6;
/// The same for a response (x-envoy-upstream-service-time, server, route additions).
const RESPONSE_ROOM: usize = 4;

/// The header map of a frozen head, values sharing its bytes, with `room` for more. With
/// `unfold`, an obsolete line folding (responses only) loses its line break and keeps the
/// whitespace after it, as Envoy 1.40 forwards it (`a CRLF SP SP b` is `a  b`; compared in
/// tests/http_edge_parity.rs), and as [`unfold`] does for requests.
fn header_map(
    head: &Bytes,
    fields: &[Field],
    room: usize,
    unfold: bool,
    mut hop: Option<&mut Hop>,
) -> Result<HeaderMap, HeadError> {
    let mut headers = super::io::take_headers(fields.len() + room);
    for &(n, nl, v, vl) in fields {
        let (n, nl, v, vl) = (n as usize, nl as usize, v as usize, vl as usize);
        let name = HeaderName::from_bytes(&head[n..n + nl]).map_err(|_| HeadError::Bad)?;
        if let Some(hop) = hop.as_deref_mut()
            && hop.left_out(&name, &head[v..v + vl], (v, vl))
        {
            continue;
        }
        let raw = head.slice(v..v + vl);
        let value = match HeaderValue::from_maybe_shared(raw.clone()) {
            Ok(value) => value,
            Err(_) if unfold => {
                let joined: Vec<u8> = raw
                    .iter()
                    .copied()
                    .filter(|&b| b != b'\r' && b != b'\n')
                    .collect();
                HeaderValue::from_bytes(&joined).map_err(|_| HeadError::Bad)?
            }
            Err(_) => return Err(HeadError::Bad),
        };
        headers.append(name, value);
    }
    Ok(headers)
}

/// The framing of a request body (RFC 9112 section 6.3), refusing what Envoy refuses: both
/// `Transfer-Encoding` and `Content-Length` (400, a smuggling vector), a transfer coding that
/// is not a single `chunked` (501), and a `Content-Length` that is not one number (400, even
/// when repeated with the same value, as Envoy).
fn request_framing(headers: &HeaderMap) -> Result<Framing, HeadError> {
    let te = headers.get(header::TRANSFER_ENCODING);
    let mut cl = headers.get_all(header::CONTENT_LENGTH).iter();
    let length = match (cl.next(), cl.next()) {
        (None, _) => None,
        (Some(v), None) => Some(parse_length(v.as_bytes()).ok_or(HeadError::Bad)?),
        (Some(_), Some(_)) => return Err(HeadError::Bad),
    };
    match (te, length) {
        (Some(_), Some(_)) => Err(HeadError::ChunkedAndLength),
        (Some(te), None)
            if headers.get_all(header::TRANSFER_ENCODING).iter().count() == 1
                && te.as_bytes().eq_ignore_ascii_case(b"chunked") =>
        {
            Ok(Framing::Chunked)
        }
        (Some(_), None) => Err(HeadError::NotImplemented),
        (None, Some(0)) | (None, None) => Ok(Framing::Empty),
        (None, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// The framing of a response body (RFC 9112 section 6.3): none for HEAD, 1xx, 204 and 304;
/// then `Transfer-Encoding` (chunked last, else read to close), `Content-Length`, and
/// otherwise until the server closes.
pub fn response_framing(
    headers: &HeaderMap,
    status: StatusCode,
    head_request: bool,
) -> Result<Framing, HeadError> {
    let te = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .map(HeaderValue::as_bytes);
    framing_of(te, headers, status, head_request)
}

/// [`response_framing`] with the last `Transfer-Encoding` value given apart (a response's
/// map no longer holds it).
fn framing_of(
    te: Option<&[u8]>,
    headers: &HeaderMap,
    status: StatusCode,
    head_request: bool,
) -> Result<Framing, HeadError> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if let Some(te) = te {
        let last = te.rsplit(|b| *b == b',').next().unwrap_or(b"");
        return Ok(if trim(last).eq_ignore_ascii_case(b"chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut cl = headers.get_all(header::CONTENT_LENGTH).iter();
    match (cl.next(), cl.next()) {
        (None, _) => Ok(Framing::Close),
        (Some(v), None) => match parse_length(v.as_bytes()).ok_or(HeadError::Bad)? {
            0 => Ok(Framing::Empty),
            n => Ok(Framing::Length(n)),
        },
        (Some(a), Some(b)) if a == b => match parse_length(a.as_bytes()).ok_or(HeadError::Bad)? {
            0 => Ok(Framing::Empty),
            n => Ok(Framing::Length(n)),
        },
        _ => Err(HeadError::Bad),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// A `Content-Length` value: decimal digits only, no sign, no list, no overflow.
pub fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Whether the sender of a message with these headers lets the connection stay open:
/// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
pub fn keep_alive(headers: &HeaderMap, version: Version) -> bool {
    let mut hop = Hop::default();
    for v in headers.get_all(header::CONNECTION) {
        hop.connection(v.as_bytes());
    }
    hop.keep_alive(version)
}

/// What a response head's hop-by-hop fields said (RFC 9110 section 7.6.1), read while its
/// header map is built and the fields left out of it: the router would strip every one of
/// them (as Envoy does), and leaving them out costs nothing where inserting and then
/// removing them meant hashing each name twice more. `te` stays (the router keeps
/// `te: trailers`), and so does a `Connection` naming other fields, for the router to strip
/// them with it.
#[derive(Default)]
struct Hop {
    close: bool,
    keep: bool,
    /// `Connection: close`: a field named `close` is hop-by-hop too.
    names_close: bool,
    /// Where the last `Transfer-Encoding` value is in the head (framing).
    transfer_encoding: Option<(usize, usize)>,
}

impl Hop {
    /// Notes a field (its value, and where that is in the head); `true` when it is left
    /// out of the map.
    fn left_out(&mut self, name: &HeaderName, value: &[u8], at: (usize, usize)) -> bool {
        if name == header::CONNECTION {
            return !self.connection(value);
        }
        if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = Some(at);
            return true;
        }
        name == header::UPGRADE
            || name == crate::http::headers::KEEP_ALIVE
            || name == crate::http::headers::PROXY_CONNECTION
    }

    /// Reads a `Connection` value's tokens; `true` when it names a field other than the
    /// hop-by-hop ones (and `close`).
    fn connection(&mut self, value: &[u8]) -> bool {
        let mut names_other = false;
        for token in value.split(|b| *b == b',') {
            let token = trim(token);
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
                self.names_close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep = true;
            } else {
                names_other |= !token.is_empty() && !token.eq_ignore_ascii_case(b"upgrade");
            }
        }
        names_other
    }

    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    fn keep_alive(&self, version: Version) -> bool {
        match version {
            Version::HTTP_11 => !self.close,
            _ => self.keep && !self.close,
        }
    }
}

/// A parsed response head (upstream side).
#[derive(Debug)]
pub struct ResponseHead {
    pub parts: http::response::Parts,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response_with_uninit_headers(&mut resp, &buf[..], &mut slots);
    let Some(len) = head_length(parsed, buf)? else {
        return Ok(None);
    };
    let version = version_of(resp.version);
    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| HeadError::Bad)?;
    let mut fields = [(0, 0, 0, 0); MAX_HEADERS];
    let count = field_offsets(buf.as_ptr() as usize, resp.headers, &mut fields);
    let head = buf.split_to(len).freeze();
    // A 101's connection and upgrade fields go on to the downstream: the router sorts them.
    let mut hop = Hop::default();
    let recorder = (status != StatusCode::SWITCHING_PROTOCOLS).then_some(&mut hop);
    let recorded = recorder.is_some();
    let mut headers = header_map(&head, &fields[..count], RESPONSE_ROOM, true, recorder)?;
    let (framing, keep_alive) = if recorded {
        if hop.names_close {
            // `Connection: close` names a `close` field, hop-by-hop as well.
            headers.remove("close");
        }
        let framing = framing_of(
            hop.transfer_encoding.map(|(at, len)| &head[at..at + len]),
            &headers,
            status,
            head_request,
        )?;
        (framing, hop.keep_alive(version))
    } else {
        (
            response_framing(&headers, status, head_request)?,
            keep_alive(&headers, version),
        )
    };
    let keep_alive = keep_alive && framing != Framing::Close;
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(ResponseHead {
        parts,
        framing,
        keep_alive,
    }))
}

/// Writes a response status line and headers (without the final empty line).
pub fn write_status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes every header but the `skip`ped ones as `name: value\r\n`.
pub fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap, skip: impl Fn(&HeaderName) -> bool) {
    for (name, value) in headers {
        if skip(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes `name: n\r\n` for a decimal number without allocating.
pub fn write_number_header(out: &mut Vec<u8>, name: &[u8], n: u64) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    write_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes a chunk's size line into `out`.
pub fn write_chunk_size(out: &mut Vec<u8>, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}
