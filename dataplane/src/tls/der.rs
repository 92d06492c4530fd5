//! Just enough DER to read a certificate's subject alternative names.
//!
//! rustls/webpki verify chains and DNS/IP names but do not expose URI or email SANs, which
//! Envoy's `match_typed_subject_alt_names` and `%DOWNSTREAM_PEER_URI_SAN%` need. The reader
//! is bounds-checked everywhere: a peer's certificate must never make it panic.

use std::net::IpAddr;

/// One subject alternative name (RFC 5280 4.2.1.6), of the kinds Envoy matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Uri(String),
    Email(String),
    Ip(IpAddr),
}

/// A tag-length-value cursor over DER bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next element: (tag, value). Only single-byte tags (all X.509 uses here).
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let tag = *self.0.first()?;
        let first = *self.0.get(1)?;
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return None;
            }
            let bytes = self.0.get(2..2 + n)?;
            let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        };
        let value = self.0.get(header..header.checked_add(len)?)?;
        self.0 = self.0.get(header + len..)?;
        Some((tag, value))
    }
}

const SEQUENCE: u8 = 0x30;
const EXTENSIONS: u8 = 0xa3;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// 2.5.29.17, id-ce-subjectAltName.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// The SANs of a DER certificate; empty when it has none or does not parse.
pub fn subject_alt_names(cert: &[u8]) -> Vec<San> {
    san_extension(cert).map(names).unwrap_or_default()
}

fn san_extension(cert: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, certificate) = Reader(cert).next()? else {
        return None;
    };
    let (SEQUENCE, tbs) = Reader(certificate).next()? else {
        return None;
    };
    let mut fields = Reader(tbs);
    while let Some((tag, value)) = fields.next() {
        if tag != EXTENSIONS {
            continue;
        }
        let (SEQUENCE, list) = Reader(value).next()? else {
            return None;
        };
        let mut extensions = Reader(list);
        while let Some((SEQUENCE, extension)) = extensions.next() {
            let mut parts = Reader(extension);
            let (OID, oid) = parts.next()? else {
                continue;
            };
            if oid != SAN_OID {
                continue;
            }
            let mut next = parts.next()?;
            if next.0 == BOOLEAN {
                next = parts.next()?;
            }
            return (next.0 == OCTET_STRING).then_some(next.1);
        }
    }
    None
}

fn names(extension: &[u8]) -> Vec<San> {
    let Some((SEQUENCE, list)) = Reader(extension).next() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut general_names = Reader(list);
    while let Some((tag, value)) = general_names.next() {
        let text = || String::from_utf8(value.to_vec()).ok();
        let name = match tag {
            0x81 => text().map(San::Email),
            0x82 => text().map(San::Dns),
            0x86 => text().map(San::Uri),
            0x87 => match value.len() {
                4 => <[u8; 4]>::try_from(value).ok().map(|b| San::Ip(b.into())),
                16 => <[u8; 16]>::try_from(value).ok().map(|b| San::Ip(b.into())),
                _ => None,
            },
            _ => None,
        };
        out.extend(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real certificate's SANs, and every one-byte corruption of it parsed without a panic.
    #[test]
    fn reads_sans_and_survives_corruption() {
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example".to_string(), "10.0.0.1".to_string()])
                .unwrap_or_else(|e| panic!("{e}"));
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://t/x"
                .try_into()
                .unwrap_or_else(|e| panic!("{e:?}")),
        ));
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let der = cert.der().to_vec();
        assert_eq!(
            subject_alt_names(&der),
            vec![
                San::Dns("a.example".into()),
                San::Ip([10, 0, 0, 1].into()),
                San::Uri("spiffe://t/x".into()),
            ]
        );
        for i in 0..der.len() {
            for b in [0x00, 0x30, 0x80, 0x84, 0xff] {
                let mut m = der.clone();
                m[i] = b;
                let _ = subject_alt_names(&m);
            }
            let _ = subject_alt_names(&der[..i]);
        }
    }

    #[test]
    fn garbage_gives_nothing() {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x02, 0x30],
        ] {
            assert!(subject_alt_names(bytes).is_empty());
        }
    }
}
