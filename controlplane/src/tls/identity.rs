//! Who a client certificate says the peer is, and which node ids that identity may claim.
//!
//! An xDS client names itself with `node.id` in its first request; with mutual TLS the server
//! also knows which certificate it presented. Without a rule tying the two, any proxy holding a
//! certificate of the fleet could claim another proxy's node id and receive its config (and its
//! secrets, over SDS). Istio does the same check (istiod compares the SPIFFE identity of the
//! client certificate with the namespace the node id claims); we offer the rules a user of
//! Envoy certificates expects, chosen with `--node-id-match`:
//!
//! * `san` (the default when client certificates are required): the node id equals one of the
//!   certificate's DNS SANs or URI SANs (`edge-1.proxies.example.com`, or a SPIFFE id
//!   `spiffe://example.org/ns/edge/sa/edge-1`).
//! * `dns-san`, `uri-san`: only that kind of SAN.
//! * `cn`: the subject's common name (older certificates without SANs).
//! * `any`: no restriction; the identity is still shown by the status API.
//!
//! Comparison is exact and case-sensitive: a wildcard DNS SAN (`*.example.com`) allows only the
//! node id `*.example.com`, never every name under it, so one certificate cannot claim a set of
//! node ids it was not issued for.

use std::fmt;

use rustls::pki_types::CertificateDer;
use serde::Serialize;

/// The names a client certificate carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    /// The subject's common name, if any.
    pub subject_cn: Option<String>,
    pub dns_sans: Vec<String>,
    pub uri_sans: Vec<String>,
}

/// Which part of the client certificate a node id must equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeIdMatch {
    /// Any node id (the certificate is only shown in the status API).
    Any,
    /// A DNS SAN or a URI SAN (e.g. a SPIFFE id).
    San,
    /// A DNS SAN.
    DnsSan,
    /// A URI SAN (e.g. a SPIFFE id).
    UriSan,
    /// The subject's common name.
    Cn,
}

impl NodeIdMatch {
    /// The flag's value, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeIdMatch::Any => "any",
            NodeIdMatch::San => "san",
            NodeIdMatch::DnsSan => "dns-san",
            NodeIdMatch::UriSan => "uri-san",
            NodeIdMatch::Cn => "cn",
        }
    }

    /// Whether a peer with `identity` (None: no client certificate) may claim `node_id`.
    pub fn allows(self, identity: Option<&PeerIdentity>, node_id: &str) -> bool {
        let Some(id) = identity else {
            return self == NodeIdMatch::Any;
        };
        let dns = || id.dns_sans.iter().any(|s| s == node_id);
        let uri = || id.uri_sans.iter().any(|s| s == node_id);
        match self {
            NodeIdMatch::Any => true,
            NodeIdMatch::San => dns() || uri(),
            NodeIdMatch::DnsSan => dns(),
            NodeIdMatch::UriSan => uri(),
            NodeIdMatch::Cn => id.subject_cn.as_deref() == Some(node_id),
        }
    }
}

impl PeerIdentity {
    /// Reads the names of a certificate. rustls has verified it already, so a parse failure
    /// here means a certificate webpki accepted for the chain but we cannot read: we say so.
    pub fn from_der(cert: &CertificateDer<'_>) -> Result<Self, String> {
        let parsed = webpki::EndEntityCert::try_from(cert)
            .map_err(|e| format!("unreadable client certificate: {e}"))?;
        Ok(PeerIdentity {
            subject_cn: common_name(parsed.subject()),
            dns_sans: parsed.valid_dns_names().map(str::to_string).collect(),
            uri_sans: parsed.valid_uri_names().map(str::to_string).collect(),
        })
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(cn) = &self.subject_cn {
            parts.push(format!("CN={cn}"));
        }
        parts.extend(self.dns_sans.iter().map(|s| format!("DNS:{s}")));
        parts.extend(self.uri_sans.iter().map(|s| format!("URI:{s}")));
        if parts.is_empty() {
            f.write_str("[no names]")
        } else {
            write!(f, "[{}]", parts.join(", "))
        }
    }
}

/// The OID of commonName (2.5.4.3), DER-encoded with its tag and length.
const CN_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];

/// The last CN of a DER `Name` (the content of its SEQUENCE, as webpki gives it).
/// `Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }` (RFC 5280, 4.1.2.4).
fn common_name(mut name: &[u8]) -> Option<String> {
    let mut found = None;
    while let Some((_, set, rest)) = tlv(name) {
        name = rest;
        let mut set = set;
        while let Some((_, attribute, rest)) = tlv(set) {
            set = rest;
            let Some(value) = attribute.strip_prefix(CN_OID) else {
                continue;
            };
            // UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1 would be
            // more exact, but CNs there are ASCII in practice).
            if let Some((0x0c | 0x13 | 0x16 | 0x14, text, _)) = tlv(value) {
                found = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    found
}

/// One DER tag-length-value: `(tag, content, rest)`. `None` on anything malformed.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return None;
        }
        let (bytes, rest) = input.split_at_checked(octets)?;
        input = rest;
        bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
    };
    let (content, rest) = input.split_at_checked(len)?;
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cert(cn: &str, sans: &[&str]) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn reads_cn_and_sans() {
        let mut params = rcgen::CertificateParams::new(vec!["edge-1.example".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge-cn");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Org");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org/edge-1".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        let id = PeerIdentity::from_der(&der).unwrap();
        assert_eq!(id.subject_cn.as_deref(), Some("edge-cn"));
        assert_eq!(id.dns_sans, ["edge-1.example"]);
        assert_eq!(id.uri_sans, ["spiffe://example.org/edge-1"]);
        assert_eq!(
            id.to_string(),
            "[CN=edge-cn, DNS:edge-1.example, URI:spiffe://example.org/edge-1]"
        );
    }

    #[test]
    fn the_rules() {
        let id = PeerIdentity {
            subject_cn: Some("cn-1".into()),
            dns_sans: vec!["edge-1".into(), "*.wild.example".into()],
            uri_sans: vec!["spiffe://td/edge-2".into()],
        };
        let m = |mode: NodeIdMatch, node: &str| mode.allows(Some(&id), node);
        assert!(m(NodeIdMatch::San, "edge-1"));
        assert!(m(NodeIdMatch::San, "spiffe://td/edge-2"));
        assert!(!m(NodeIdMatch::San, "cn-1"));
        assert!(
            !m(NodeIdMatch::San, "a.wild.example"),
            "wildcards are literal"
        );
        assert!(m(NodeIdMatch::DnsSan, "edge-1"));
        assert!(!m(NodeIdMatch::DnsSan, "spiffe://td/edge-2"));
        assert!(m(NodeIdMatch::UriSan, "spiffe://td/edge-2"));
        assert!(!m(NodeIdMatch::UriSan, "edge-1"));
        assert!(m(NodeIdMatch::Cn, "cn-1"));
        assert!(!m(NodeIdMatch::Cn, "Cn-1"), "case-sensitive");
        assert!(m(NodeIdMatch::Any, "whatever"));
        assert!(NodeIdMatch::Any.allows(None, "x"));
        assert!(!NodeIdMatch::San.allows(None, "x"));
    }

    #[test]
    fn garbage_and_odd_names_do_not_panic() {
        assert_eq!(common_name(&[0x31, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(common_name(&[0x31, 0x10, 0x30]), None);
        assert_eq!(tlv(&[]), None);
        assert!(PeerIdentity::from_der(&CertificateDer::from(vec![0x30, 0x00])).is_err());
        let id = PeerIdentity::from_der(&cert("only-cn", &[])).unwrap();
        assert_eq!(id.subject_cn.as_deref(), Some("only-cn"));
        assert!(id.dns_sans.is_empty());
    }
}
