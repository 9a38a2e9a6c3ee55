//! The one error type of the crate: which file, which key, what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration was rejected.
///
/// Displays as `<file>: <key path>: <what is wrong>`, for example
/// ``conf/gw.yaml: routes[0].plugins[1]: no plugin named `missing` ``; errors not about one key
/// (an unreadable file, a YAML syntax error) display as `<file>: <what is wrong>`, and
/// syntax errors carry the line and column in the message.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{}", .file.display(), KeyPrefix(.key_path), .message)]
pub struct ConfigError {
    file: PathBuf,
    key_path: String,
    message: String,
    location: Option<(usize, usize)>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Io,
    Syntax,
    Invalid,
}

/// Renders `key: ` for a key path, or nothing for the empty one.
struct KeyPrefix<'a>(&'a str);

impl ConfigError {
    /// The configuration file (or the inline source name) the error is about.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The key path the error is about, as `plugins[2].failure_policy`; empty when the
    /// error is not about one key.
    pub fn key_path(&self) -> &str {
        &self.key_path
    }

    /// What is wrong, without the file and key path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The 1-based line and column in the file the YAML parser blamed, when it did.
    /// Validation errors found after parsing (an unknown cluster) carry only a key path.
    pub fn location(&self) -> Option<(usize, usize)> {
        self.location
    }

    /// Whether the file could not be read.
    pub fn is_io(&self) -> bool {
        self.kind == Kind::Io
    }

    /// Whether the text is not a single well-formed YAML document (a syntax error, a key
    /// given twice in one mapping, an unknown alias, several documents).
    pub fn is_syntax(&self) -> bool {
        self.kind == Kind::Syntax
    }

    pub(crate) fn io(file: &Path, err: &std::io::Error) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            key_path: String::new(),
            message: format!("could not read the file: {err}"),
            location: None,
            kind: Kind::Io,
        }
    }

    pub(crate) fn syntax(file: &Path, err: &serde_yaml::Error) -> ConfigError {
        let message = err.to_string();
        // Some parse errors (a key given twice) carry no position; serde_yaml then reports
        // the start of the file, which would mislead.
        let location = err
            .location()
            .map(|loc| (loc.line(), loc.column()))
            .filter(|_| message.contains(" at line "));
        ConfigError {
            file: file.to_path_buf(),
            key_path: String::new(),
            message,
            location,
            kind: Kind::Syntax,
        }
    }

    /// A type error from deserializing, with the key path serde_path_to_error tracked.
    pub(crate) fn schema(
        file: &Path,
        err: &serde_path_to_error::Error<serde_yaml::Error>,
    ) -> ConfigError {
        let key_path = key_path(err.path());
        let inner = err.inner();
        let location = inner.location().map(|loc| (loc.line(), loc.column()));
        ConfigError {
            file: file.to_path_buf(),
            message: bare_message(inner, location, &key_path),
            key_path,
            location,
            kind: Kind::Invalid,
        }
    }

    /// A semantic error found by validation.
    pub(crate) fn invalid(
        file: &Path,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            key_path: key_path.into(),
            message: message.into(),
            location: None,
            kind: Kind::Invalid,
        }
    }
}

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

/// Formats a tracked path as `a[2].b.c`; the root is the empty string.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;

    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            // A key that is not a string (`1: x` where a field name belongs).
            Segment::Unknown => push_key(&mut out, "?"),
        }
    }
    out
}

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(key);
}

/// serde_yaml decorates its messages with its own path (`plugins[1]: `, sometimes the
/// parent of ours) and position (` at line 4 column 5`); both are reported separately, so
/// take them off.
fn bare_message(
    err: &serde_yaml::Error,
    location: Option<(usize, usize)>,
    key_path: &str,
) -> String {
    let mut message = err.to_string();
    if let Some((line, column)) = location {
        let suffix = format!(" at line {line} column {column}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message.truncate(stripped.len());
        }
    }
    if let Some((prefix, rest)) = message.split_once(": ") {
        let is_our_path = key_path
            .strip_prefix(prefix)
            .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']));
        if is_our_path {
            message = rest.to_owned();
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_key_path() {
        let err = ConfigError::invalid(Path::new("conf/gw.yaml"), "routes[0].cluster", "nope");
        assert_eq!(err.to_string(), "conf/gw.yaml: routes[0].cluster: nope");
        let err = ConfigError::invalid(Path::new("conf/gw.yaml"), "", "nope");
        assert_eq!(err.to_string(), "conf/gw.yaml: nope");
        assert!(!err.is_io() && !err.is_syntax());
        assert_eq!(err.location(), None);
    }
}
