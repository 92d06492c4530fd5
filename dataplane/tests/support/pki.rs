//! Certificates for TLS tests, made with rcgen when the test runs: a CA and leaf certificates
//! (ECDSA P-256 keys, or the one RSA key below: ring cannot generate RSA keys, so a fixed
//! 2048-bit key, made with `openssl genpkey` for these tests only, signs RSA certificates).

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

const RSA_KEY: &str = include_str!("rsa_key.pem");

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A leaf certificate and its key, PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf with DNS names and URIs as SANs; `rsa` picks the RSA key instead of a new ECDSA one.
    pub fn leaf(&self, cn: &str, dns: &[&str], uris: &[&str], rsa: bool) -> Leaf {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().expect("URI SAN")));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = if rsa {
            KeyPair::from_pem(RSA_KEY).expect("RSA key")
        } else {
            KeyPair::generate().expect("leaf key")
        };
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A YAML double-quoted string for PEM text (inline_string).
pub fn yaml(pem: &str) -> String {
    format!("{pem:?}")
}
