//! An error and the errors that caused it.
//!
//! Clients' errors say little at the top ("transport error", "client error (Connect)"); the
//! reason an operator needs (the TLS alert, "connection refused") is further down their
//! `source()` chain.

use std::error::Error;

/// The errors `e` reports as its causes, nearest first (not `e` itself).
pub fn sources<'a>(
    e: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(e.source(), |&s| s.source())
}

/// `e` and its causes on one line: `e: cause: cause of the cause`.
pub fn with_causes(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    for s in sources(e) {
        line.push_str(": ");
        line.push_str(&s.to_string());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    #[test]
    fn the_chain_is_one_line_nearest_cause_first() {
        let e = Layer(
            "transport error",
            Some(Box::new(Layer(
                "tls handshake",
                Some(Box::new(Layer("UnknownIssuer", None))),
            ))),
        );
        assert_eq!(
            with_causes(&e),
            "transport error: tls handshake: UnknownIssuer"
        );
        assert_eq!(sources(&e).count(), 2);
        assert_eq!(with_causes(&Layer("alone", None)), "alone");
    }
}
