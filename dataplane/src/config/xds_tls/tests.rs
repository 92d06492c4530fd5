#![allow(clippy::unwrap_used)]

use super::*;

fn socket(yaml: &str) -> FieldResult<Option<XdsTls>> {
    let ts: TransportSocket = xds_types::format::from_yaml_str(yaml).unwrap();
    translate(&ts)
}

const MTLS: &str = r#"
name: envoy.transport_sockets.tls
typed_config:
  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
  sni: xds.example
  common_tls_context:
    tls_certificates:
    - certificate_chain: { filename: /certs/client.pem }
      private_key: { inline_string: "KEY" }
    validation_context:
      trusted_ca: { filename: /certs/ca.pem }
      match_typed_subject_alt_names:
      - { san_type: DNS, matcher: { exact: xds.example } }
"#;

#[test]
fn mutual_tls_with_files_inline_and_san_matchers() {
    let tls = socket(MTLS).unwrap().unwrap();
    assert_eq!(tls.sni.as_deref(), Some("xds.example"));
    assert_eq!(
        tls.trusted_ca,
        Some(DataSource::File("/certs/ca.pem".into()))
    );
    assert_eq!(
        tls.client_cert,
        Some((
            DataSource::File("/certs/client.pem".into()),
            DataSource::Inline(b"KEY".to_vec())
        ))
    );
    assert_eq!(tls.san_matchers.len(), 1);
    assert_eq!(
        tls.san_matchers[0].kind,
        crate::config::secret::SanKind::Dns
    );
    assert_eq!(tls.alpn, vec![b"h2".to_vec()]);
}

#[test]
fn raw_buffer_is_plaintext() {
    let raw = r#"
name: envoy.transport_sockets.raw_buffer
typed_config: { "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer }
"#;
    assert!(socket(raw).unwrap().is_none());
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    let params = MTLS.replace(
        "  sni: xds.example\n",
        "  sni: xds.example\n  max_session_keys: 3\n",
    );
    let e = socket(&params).unwrap_err();
    assert_eq!(e.path, "typed_config.max_session_keys", "{e:?}");
    let tls_params = MTLS.replace(
        "    tls_certificates:",
        "    tls_params: { tls_minimum_protocol_version: TLSv1_3 }\n    tls_certificates:",
    );
    let e = socket(&tls_params).unwrap_err();
    assert_eq!(
        e.path, "typed_config.common_tls_context.tls_params",
        "{e:?}"
    );
    assert!(e.reason.contains("not supported"), "{e:?}");
    let sds = r#"
name: envoy.transport_sockets.tls
typed_config:
  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
  common_tls_context:
    validation_context_sds_secret_config: { name: ca }
"#;
    let e = socket(sds).unwrap_err();
    assert_eq!(
        e.path,
        "typed_config.common_tls_context.validation_context_sds_secret_config"
    );
    let other = MTLS.replace("san_type: DNS", "san_type: SAN_TYPE_UNSPECIFIED");
    let e = socket(&other).unwrap_err();
    assert!(
        e.path
            .ends_with("match_typed_subject_alt_names[0].san_type"),
        "{e:?}"
    );
    let downstream = r#"
name: envoy.transport_sockets.tls
typed_config: { "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext }
"#;
    let e = socket(downstream).unwrap_err();
    assert!(e.reason.contains("UpstreamTlsContext"), "{e:?}");
}
