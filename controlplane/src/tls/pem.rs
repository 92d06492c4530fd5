//! PEM certificates and keys: reading them with errors that say which file and why, and the
//! check Envoy makes when it loads a certificate: the private key belongs to the certificate.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate of a PEM file, in order (leaf first for a chain).
pub fn certs_from_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    certs(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn key_from_file(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    key(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// The certificates of PEM text; at least one.
pub fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in the PEM".into());
    }
    Ok(certs)
}

/// The private key of PEM text.
pub fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block in the PEM".into(),
        e => format!("invalid PEM: {e}"),
    })
}

/// Whether `key` is the private key of the first (leaf) certificate of `certs`.
pub fn check_pair(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), String> {
    let provider = super::provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("unusable private key: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(certs.to_vec(), signing);
    match certified.keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err("the public keys differ".into())
        }
        // The key type cannot tell its public key (none of ring's can't, but be safe): nothing
        // proves a mismatch, so do not refuse.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_passes_and_a_foreign_key_is_refused() {
        let (cert, key_pem) = pair();
        let (_, other) = pair();
        let certs = certs(cert.as_bytes()).unwrap();
        assert_eq!(
            check_pair(&certs, &key(key_pem.as_bytes()).unwrap()),
            Ok(())
        );
        assert_eq!(
            check_pair(&certs, &key(other.as_bytes()).unwrap()),
            Err("the public keys differ".to_string())
        );
    }

    #[test]
    fn bad_pem_is_named() {
        assert_eq!(
            certs(b"hello").unwrap_err(),
            "no CERTIFICATE block in the PEM"
        );
        assert_eq!(
            key(b"hello").unwrap_err(),
            "no PRIVATE KEY block in the PEM"
        );
        let err = certs_from_file(Path::new("/nonexistent/cert.pem")).unwrap_err();
        assert!(
            err.starts_with("/nonexistent/cert.pem: cannot read:"),
            "{err}"
        );
    }
}
