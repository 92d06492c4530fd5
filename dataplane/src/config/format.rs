//! Envoy's command operators in header values (`request_headers_to_add` and
//! `response_headers_to_add`): `%DOWNSTREAM_PEER_URI_SAN%` and friends, from the connection
//! a request came on. Only the operators below are known; any other is refused rather than
//! sent as literal text (Envoy would substitute it).

use super::{FieldError, FieldResult};

/// A header value with operators: text and substitutions in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Op(Operator),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// The client certificate's URI SANs, comma-separated.
    DownstreamPeerUriSan,
    /// The client certificate's DNS SANs, comma-separated.
    DownstreamPeerDnsSan,
    /// The SNI the client sent.
    RequestedServerName,
    /// The client's address and port.
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    /// Our address and port the client connected to.
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
}

impl Operator {
    /// The operator of that name (also the access log formats' connection operators).
    pub fn named(name: &str) -> Option<Operator> {
        Some(match name {
            "DOWNSTREAM_PEER_URI_SAN" => Operator::DownstreamPeerUriSan,
            "DOWNSTREAM_PEER_DNS_SAN" => Operator::DownstreamPeerDnsSan,
            "REQUESTED_SERVER_NAME" => Operator::RequestedServerName,
            "DOWNSTREAM_REMOTE_ADDRESS" => Operator::DownstreamRemoteAddress,
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                Operator::DownstreamRemoteAddressWithoutPort
            }
            "DOWNSTREAM_LOCAL_ADDRESS" => Operator::DownstreamLocalAddress,
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Operator::DownstreamLocalAddressWithoutPort,
            _ => return None,
        })
    }
}

/// `None` for a plain value (no `%`), the common case kept as a ready `HeaderValue`.
/// `%%` is a literal `%`, as in Envoy's header formatter.
pub fn parse(value: &str) -> FieldResult<Option<Vec<Piece>>> {
    if !value.contains('%') {
        return Ok(None);
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        text.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('%') {
            text.push('%');
            rest = r;
            continue;
        }
        let Some(end) = after.find('%') else {
            return Err(FieldError::new(
                "header.value",
                format!("\"{value}\": unterminated %OPERATOR%"),
            ));
        };
        let name = &after[..end];
        let Some(op) = Operator::named(name) else {
            return Err(FieldError::new(
                "header.value",
                format!("operator %{name}% is not supported"),
            ));
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Op(op));
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(Some(pieces))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_text_and_escapes() {
        assert_eq!(parse("plain"), Ok(None));
        assert_eq!(
            parse("id=%DOWNSTREAM_PEER_URI_SAN%;100%%"),
            Ok(Some(vec![
                Piece::Text("id=".into()),
                Piece::Op(Operator::DownstreamPeerUriSan),
                Piece::Text(";100%".into()),
            ]))
        );
        assert!(parse("%UPSTREAM_HOST%").is_err());
        assert!(parse("50% off").is_err());
    }
}
