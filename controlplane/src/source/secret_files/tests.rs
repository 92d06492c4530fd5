#![allow(clippy::unwrap_used)]

use super::*;
use crate::source::{LoadOptions, load_dir};

struct Pair {
    cert: String,
    key: String,
}

fn pair() -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["server.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

const SECRET: &str = r#"resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: server
  tls_certificate:
    certificate_chain: { filename: CHAIN }
    private_key: { filename: KEY }
"#;

fn dir_with(chain: &str, key: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let yaml = SECRET.replace("CHAIN", chain).replace("KEY", key);
    std::fs::write(dir.path().join("secrets.yaml"), yaml).unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

fn served_secret(dir: &Path) -> Secret {
    let loaded = load_dir(dir, LoadOptions::default()).unwrap();
    let any = &loaded.groups[0].2[0];
    Secret::decode(any.value.as_slice()).unwrap()
}

#[test]
fn relative_files_are_read_checked_and_sent_inline() {
    let p = pair();
    let dir = dir_with(
        "cert.pem",
        "key.pem",
        &[("cert.pem", &p.cert), ("key.pem", &p.key)],
    );
    let Some(Type::TlsCertificate(c)) = served_secret(dir.path()).r#type else {
        panic!("not a tls_certificate")
    };
    let inline = |d: Option<DataSource>| match d.unwrap().specifier {
        Some(Specifier::InlineBytes(b)) => String::from_utf8(b).unwrap(),
        other => panic!("not inlined: {other:?}"),
    };
    assert_eq!(inline(c.certificate_chain), p.cert);
    assert_eq!(inline(c.private_key), p.key);
}

#[test]
fn absolute_files_are_the_proxys_and_left_alone() {
    let dir = dir_with("/etc/envoy/cert.pem", "/etc/envoy/key.pem", &[]);
    let Some(Type::TlsCertificate(c)) = served_secret(dir.path()).r#type else {
        panic!("not a tls_certificate")
    };
    assert_eq!(
        c.certificate_chain.unwrap().specifier,
        Some(Specifier::Filename("/etc/envoy/cert.pem".into()))
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused_naming_file_resource_and_field() {
    let (p, other) = (pair(), pair());
    let dir = dir_with(
        "cert.pem",
        "key.pem",
        &[("cert.pem", &p.cert), ("key.pem", &other.key)],
    );
    let errors = load_dir(dir.path(), LoadOptions::default()).unwrap_err();
    let d = dir.path().display();
    assert_eq!(
        errors,
        vec![format!(
            "{d}/secrets.yaml: resources[0] SDS \"server\": tls_certificate.private_key \
             ({d}/key.pem): does not match the certificate in tls_certificate.certificate_chain \
             ({d}/cert.pem): the public keys differ"
        )]
    );
}

#[test]
fn an_unreadable_or_non_pem_file_is_refused_by_name() {
    let p = pair();
    let dir = dir_with("missing.pem", "key.pem", &[("key.pem", &p.key)]);
    let errors = load_dir(dir.path(), LoadOptions::default()).unwrap_err();
    let d = dir.path().display();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "{d}/secrets.yaml: resources[0] SDS \"server\": tls_certificate.certificate_chain.filename: {d}/missing.pem: cannot read:"
        )),
        "{errors:?}"
    );
    let dir = dir_with("key.pem", "key.pem", &[("key.pem", &p.key)]);
    let errors = load_dir(dir.path(), LoadOptions::default()).unwrap_err();
    assert_eq!(
        errors,
        vec![format!(
            "{}/secrets.yaml: resources[0] SDS \"server\": tls_certificate.certificate_chain ({}/key.pem): no CERTIFICATE block in the PEM",
            dir.path().display(),
            dir.path().display()
        )]
    );
}

#[test]
fn inline_pem_is_checked_too() {
    let (p, other) = (pair(), pair());
    let secret = Secret {
        name: "s".into(),
        r#type: Some(Type::TlsCertificate(
            xds_types::pb::envoy::extensions::transport_sockets::tls::v3::TlsCertificate {
                certificate_chain: Some(DataSource {
                    specifier: Some(Specifier::InlineString(p.cert.clone())),
                    ..Default::default()
                }),
                private_key: Some(DataSource {
                    specifier: Some(Specifier::InlineString(other.key.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    };
    let any = Any {
        type_url: type_url::SECRET.into(),
        value: secret.encode_to_vec(),
    };
    let errors = crate::source::check::secrets::check_secret(&any, Path::new("SetGroup(\"g\")"));
    assert_eq!(
        errors,
        vec![
            "tls_certificate.private_key (inline_string): does not match the certificate in \
             tls_certificate.certificate_chain (inline_string): the public keys differ"
        ]
    );
}
