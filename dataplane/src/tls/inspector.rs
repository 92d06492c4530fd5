//! The `envoy.filters.listener.tls_inspector` listener filter: read the first bytes of a
//! connection and, if they are a TLS ClientHello, its SNI and ALPN, so filter chains can be
//! matched on `server_names`, `transport_protocol` and `application_protocols` before any
//! chain (or any TLS) is chosen. Nothing is lost: the bytes read are replayed to whatever
//! serves the connection ([`super::rewind::Rewind`]).
//!
//! Like Envoy's inspector, a first byte that is not a TLS handshake record means
//! `raw_buffer` (plaintext on the same port), and a ClientHello that does not parse closes the
//! connection. Envoy caps the ClientHello at 64 KiB (`max_client_hello_size`); so do we.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Envoy's tls_inspector limit on the ClientHello it buffers.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

const HANDSHAKE_RECORD: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not TLS: the transport protocol is `raw_buffer`.
    Plaintext,
    /// A TLS ClientHello: the server name (lowercased) and the offered ALPN protocols.
    Tls {
        sni: Option<String>,
        alpn: Vec<Vec<u8>>,
    },
}

/// Why a connection is closed during inspection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    #[error("the client closed the connection before its ClientHello was complete")]
    Closed,
    #[error("reading the ClientHello: {0}")]
    Io(String),
}

/// Reads from `stream` until the first bytes are classified; returns what they are and the
/// bytes read (to be replayed).
pub async fn inspect(
    stream: &mut (impl AsyncRead + Unpin),
) -> Result<(Hello, Vec<u8>), InspectError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        match parse(&buf) {
            Ok(Some(hello)) => return Ok((hello, buf)),
            Ok(None) => {}
            Err(e) => return Err(InspectError::Malformed(e)),
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| InspectError::Io(e.to_string()))?;
        if n == 0 {
            // Envoy hands a plaintext connection that closes early to the chain anyway; a
            // partial ClientHello cannot be served.
            return match buf.first() {
                None | Some(&HANDSHAKE_RECORD) => Err(InspectError::Closed),
                Some(_) => Ok((Hello::Plaintext, buf)),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Classifies the bytes so far: `Ok(None)` means more are needed.
pub fn parse(buf: &[u8]) -> Result<Option<Hello>, &'static str> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != HANDSHAKE_RECORD {
        return Ok(Some(Hello::Plaintext));
    }
    // The handshake message may span records: join their fragments.
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        let Some(header) = rest.get(..5) else {
            return more(buf);
        };
        if header[0] != HANDSHAKE_RECORD {
            return Err("a non-handshake record inside the ClientHello");
        }
        if header[1] != 3 {
            return Err("not a TLS record version");
        }
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if len == 0 {
            return Err("an empty handshake record");
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            return more(buf);
        };
        handshake.extend_from_slice(fragment);
        rest = &rest[5 + len..];
        if let Some(header) = handshake.get(..4) {
            if header[0] != CLIENT_HELLO {
                return Err("the first handshake message is not a ClientHello");
            }
            let body_len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
            if body_len > MAX_CLIENT_HELLO {
                return Err("ClientHello too large");
            }
            if let Some(body) = handshake.get(4..4 + body_len) {
                return client_hello(body).map(Some);
            }
        }
    }
}

fn more(buf: &[u8]) -> Result<Option<Hello>, &'static str> {
    if buf.len() > MAX_CLIENT_HELLO + 5 * 16 {
        Err("ClientHello too large")
    } else {
        Ok(None)
    }
}

/// A bounds-checked cursor.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let out = self.0.get(..n).ok_or("truncated ClientHello")?;
        self.0 = &self.0[n..];
        Ok(out)
    }
    fn u8(&mut self) -> Result<usize, &'static str> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Result<usize, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    /// A vector with a 1- or 2-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// RFC 8446 4.1.2: version, random, session id, cipher suites, compression, extensions.
fn client_hello(body: &[u8]) -> Result<Hello, &'static str> {
    let mut c = Cursor(body);
    c.take(2 + 32)?;
    c.vec8()?;
    let suites = c.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("bad cipher_suites");
    }
    c.vec8()?;
    let mut sni = None;
    let mut alpn = Vec::new();
    if c.0.is_empty() {
        return Ok(Hello::Tls { sni, alpn });
    }
    let mut extensions = Cursor(c.vec16()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()? as u16;
        let data = extensions.vec16()?;
        match kind {
            EXT_SERVER_NAME => sni = server_name(data)?,
            EXT_ALPN => {
                let mut list = Cursor(Cursor(data).vec16()?);
                while !list.0.is_empty() {
                    alpn.push(list.vec8()?.to_vec());
                }
            }
            _ => {}
        }
    }
    Ok(Hello::Tls { sni, alpn })
}

/// RFC 6066 3: the host_name entry of the server_name list.
fn server_name(data: &[u8]) -> Result<Option<String>, &'static str> {
    let mut list = Cursor(Cursor(data).vec16()?);
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 {
            let name = std::str::from_utf8(name).map_err(|_| "server_name is not UTF-8")?;
            return Ok(Some(name.trim_end_matches('.').to_ascii_lowercase()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as a record, with SNI and ALPN extensions.
    fn hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = sni.as_bytes();
        let mut list = vec![0u8];
        list.extend((name.len() as u16).to_be_bytes());
        list.extend(name);
        let mut sni_ext = (list.len() as u16).to_be_bytes().to_vec();
        sni_ext.extend(list);
        ext.extend(0u16.to_be_bytes());
        ext.extend((sni_ext.len() as u16).to_be_bytes());
        ext.extend(sni_ext);
        let mut protos = Vec::new();
        for p in alpn {
            protos.push(p.len() as u8);
            protos.extend(p.as_bytes());
        }
        let mut alpn_ext = (protos.len() as u16).to_be_bytes().to_vec();
        alpn_ext.extend(protos);
        ext.extend(16u16.to_be_bytes());
        ext.extend((alpn_ext.len() as u16).to_be_bytes());
        ext.extend(alpn_ext);
        let mut body = vec![3, 3];
        body.extend([0u8; 32]);
        body.push(0);
        body.extend([0, 2, 0x13, 0x01]);
        body.extend([1, 0]);
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut hs = vec![CLIENT_HELLO, 0];
        hs.extend((body.len() as u16).to_be_bytes());
        hs.extend(body);
        let mut rec = vec![HANDSHAKE_RECORD, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn reads_sni_and_alpn_and_waits_for_more() {
        let rec = hello("WWW.Example.com", &["h2", "http/1.1"]);
        for cut in 0..rec.len() {
            assert_eq!(parse(&rec[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse(&rec),
            Ok(Some(Hello::Tls {
                sni: Some("www.example.com".into()),
                alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            }))
        );
    }

    #[test]
    fn plaintext_and_garbage() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(Some(Hello::Plaintext)));
        assert!(parse(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0]).is_err());
        assert!(parse(&[0x16, 0x07, 0x01, 0x00, 0x04]).is_err());
        // A ClientHello whose inner lengths lie.
        let mut rec = hello("a.example", &[]);
        let at = rec.len() - 8;
        rec[at] = 0xff;
        assert!(parse(&rec).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let rec = hello("x.example", &["h2"]);
        for i in 5..rec.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut m = rec.clone();
                m[i] = b;
                let _ = parse(&m);
            }
        }
    }
}
