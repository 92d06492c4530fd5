//! Body decoding: `Content-Length`, chunked (RFC 9112 section 7.1) and close-delimited, from
//! whatever bytes have been read so far; a chunk split across reads resumes where it stopped.

use bytes::{Bytes, BytesMut};

use super::codec::Framing;

/// The longest chunk-size line (hex digits, extensions) or trailer section accepted.
const MAX_LINE: u64 = 4096;

/// What one step of decoding produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// Everything buffered is used: read more.
    NeedMore,
    /// The body is complete.
    End,
}

/// A malformed chunked body (or a body cut short by the peer closing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid chunk size")]
    ChunkSize,
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    #[error("chunk extension or trailer too long")]
    LineTooLong,
    #[error("connection closed before the body ended")]
    Incomplete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of the size (`digits` so far).
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: extensions or whitespace up to CR LF (`seen` bytes).
    Extension {
        size: u64,
        seen: u64,
    },
    /// The LF ending the size line.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines up to an empty line (`line` bytes in the current
    /// line, `seen` in all).
    Trailer {
        line: u64,
        seen: u64,
    },
    TrailerLf {
        line: u64,
        seen: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// A body decoder for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder(State);

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        Decoder(match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Framing::Close => State::Close,
        })
    }

    pub fn is_done(&self) -> bool {
        self.0 == State::Done
    }

    /// Body bytes still expected, when known (`Content-Length` left).
    pub fn remaining(&self) -> Option<u64> {
        match self.0 {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Decodes from the front of `buf`, consuming what it uses. Returns data as soon as any
    /// is available; call again until `NeedMore` or `End`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, DecodeError> {
        loop {
            match &mut self.0 {
                State::Done => return Ok(Decoded::End),
                State::Close if buf.is_empty() => return Ok(Decoded::NeedMore),
                State::Close => return Ok(Decoded::Data(buf.split().freeze())),
                State::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.0 = State::Done;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::Chunked(chunk) => {
                    if let Chunk::Data { left } = chunk {
                        if buf.is_empty() {
                            return Ok(Decoded::NeedMore);
                        }
                        let n = (*left).min(buf.len() as u64) as usize;
                        *left -= n as u64;
                        if *left == 0 {
                            *chunk = Chunk::DataCr;
                        }
                        return Ok(Decoded::Data(buf.split_to(n).freeze()));
                    }
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::NeedMore);
                    };
                    let _ = buf.split_to(1);
                    match step(*chunk, byte)? {
                        Some(next) => *chunk = next,
                        None => self.0 = State::Done,
                    }
                }
            }
        }
    }

    /// The peer closed the connection: the end of a close-delimited body, else an error when
    /// the body was not complete.
    pub fn eof(&mut self) -> Result<(), DecodeError> {
        match self.0 {
            State::Close | State::Done => {
                self.0 = State::Done;
                Ok(())
            }
            _ => Err(DecodeError::Incomplete),
        }
    }
}

/// One byte of chunked framing outside chunk data; `None` once the body is complete.
fn step(chunk: Chunk, b: u8) -> Result<Option<Chunk>, DecodeError> {
    Ok(Some(match chunk {
        Chunk::Size { size, digits } => match hex(b) {
            Some(d) if digits < 16 => Chunk::Size {
                size: size << 4 | u64::from(d),
                digits: digits + 1,
            },
            Some(_) => return Err(DecodeError::ChunkSize),
            None if digits == 0 => return Err(DecodeError::ChunkSize),
            None => return size_end(size, b, 0),
        },
        Chunk::Extension { size, seen } => return size_end(size, b, seen),
        Chunk::SizeLf { size } => match (b, size) {
            (b'\n', 0) => Chunk::Trailer { line: 0, seen: 0 },
            (b'\n', size) => Chunk::Data { left: size },
            _ => return Err(DecodeError::ChunkSize),
        },
        Chunk::Data { .. } => unreachable_data(),
        Chunk::DataCr if b == b'\r' => Chunk::DataLf,
        Chunk::DataLf if b == b'\n' => Chunk::Size { size: 0, digits: 0 },
        Chunk::DataCr | Chunk::DataLf => return Err(DecodeError::ChunkEnd),
        Chunk::Trailer { line, seen } if seen >= MAX_LINE => {
            let _ = line;
            return Err(DecodeError::LineTooLong);
        }
        Chunk::Trailer { line, seen } if b == b'\r' => Chunk::TrailerLf { line, seen },
        Chunk::Trailer { line: 0, .. } if b == b'\n' => return Ok(None),
        Chunk::Trailer { seen, .. } if b == b'\n' => Chunk::Trailer { line: 0, seen },
        Chunk::Trailer { line, seen } => Chunk::Trailer {
            line: line + 1,
            seen: seen + 1,
        },
        Chunk::TrailerLf { line: 0, .. } if b == b'\n' => return Ok(None),
        Chunk::TrailerLf { seen, .. } if b == b'\n' => Chunk::Trailer { line: 0, seen },
        Chunk::TrailerLf { .. } => return Err(DecodeError::ChunkEnd),
    }))
}

/// Chunk data is consumed in bulk by [`Decoder::decode`], never byte by byte; a state that
/// cannot occur here is treated as a framing error rather than a panic.
fn unreachable_data() -> Chunk {
    Chunk::DataCr
}

/// After the size's digits: an extension (`;name=value`, ignored), optional whitespace, CR LF.
fn size_end(size: u64, b: u8, seen: u64) -> Result<Option<Chunk>, DecodeError> {
    if seen >= MAX_LINE {
        return Err(DecodeError::LineTooLong);
    }
    Ok(Some(match b {
        b'\r' => Chunk::SizeLf { size },
        b'\n' => return step(Chunk::SizeLf { size }, b),
        b';' | b' ' | b'\t' => Chunk::Extension {
            size,
            seen: seen + 1,
        },
        _ if seen > 0 && b != b'\n' => Chunk::Extension {
            size,
            seen: seen + 1,
        },
        _ => return Err(DecodeError::ChunkSize),
    }))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; the body, or the first error.
    fn feed(framing: Framing, input: &[u8], step: usize) -> Result<(Vec<u8>, bool), DecodeError> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match d.decode(&mut buf)? {
                    Decoded::Data(b) => out.extend_from_slice(&b),
                    Decoded::NeedMore => break,
                    Decoded::End => return Ok((out, true)),
                }
            }
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn chunked_body_split_at_every_byte_decodes_the_same() {
        let input = b"3\r\nabc\r\nA;ext=1\r\n0123456789\r\n0\r\nx-trailer: y\r\n\r\n";
        for step in 1..input.len() {
            let (body, done) = feed(Framing::Chunked, input, step).unwrap();
            assert_eq!(body, b"abc0123456789", "step {step}");
            assert!(done, "step {step}");
        }
    }

    #[test]
    fn chunked_end_leaves_the_next_request_in_the_buffer() {
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"a")))
        );
        assert_eq!(d.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn bad_chunk_sizes_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"fffffffffffffffff\r\n",
            b"3\rx",
            b"-1\r\n",
        ] {
            assert_eq!(
                feed(Framing::Chunked, bad, 1).map(|_| ()),
                Err(DecodeError::ChunkSize),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            feed(Framing::Chunked, b"3\r\nabcX\r\n", 64).map(|_| ()),
            Err(DecodeError::ChunkEnd)
        );
        let long = [b"1;".as_slice(), &[b'x'; 5000]].concat();
        assert_eq!(
            feed(Framing::Chunked, &long, 64).map(|_| ()),
            Err(DecodeError::LineTooLong)
        );
    }

    #[test]
    fn length_body_stops_at_its_length() {
        let mut d = Decoder::new(Framing::Length(5));
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abc")))
        );
        assert_eq!(d.decode(&mut buf), Ok(Decoded::NeedMore));
        assert_eq!(d.remaining(), Some(2));
        buf.extend_from_slice(b"deGET");
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"de")))
        );
        assert_eq!(d.decode(&mut buf), Ok(Decoded::End));
        assert_eq!(&buf[..], b"GET");
        assert_eq!(d.eof(), Ok(()));
    }

    #[test]
    fn eof_ends_only_close_delimited_bodies() {
        let mut d = Decoder::new(Framing::Close);
        let mut buf = BytesMut::from(&b"xyz"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"xyz")))
        );
        assert_eq!(d.eof(), Ok(()));
        assert!(d.is_done());
        assert_eq!(
            Decoder::new(Framing::Length(3)).eof(),
            Err(DecodeError::Incomplete)
        );
        assert_eq!(
            Decoder::new(Framing::Chunked).eof(),
            Err(DecodeError::Incomplete)
        );
    }
}
