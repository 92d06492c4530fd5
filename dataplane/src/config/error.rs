//! Why a resource was refused: which resource, which field, why. This string is the NACK's
//! `error_detail`, the log line and the admin API's entry.

/// A resource we refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} \"{name}\": {path}{}{reason}", if path.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
    pub reason: String,
}

/// A field-level error before the resource it belongs to is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Puts `prefix` in front of the path (`routes[2]` + `match.prefix`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() {
            prefix.to_string()
        } else if self.path.starts_with('[') {
            format!("{prefix}{}", self.path)
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }

    /// `path: reason`, or the reason alone when the path is empty.
    pub fn path_and_reason(&self) -> String {
        if self.path.is_empty() {
            self.reason.clone()
        } else {
            format!("{}: {}", self.path, self.reason)
        }
    }

    pub fn of(self, kind: &'static str, name: &str) -> ConfigError {
        ConfigError {
            kind,
            name: name.to_string(),
            path: self.path,
            reason: self.reason,
        }
    }
}

pub type FieldResult<T> = Result<T, FieldError>;
