//! Proxy-Wasm ABI versions and their detection from a module's exports (reference §2).

use std::fmt;

/// The prefix every ABI version marker export starts with.
pub const ABI_MARKER_PREFIX: &str = "proxy_abi_version_";

/// The marker exports of the supported ABI versions, oldest first (same order as
/// [`AbiVersion::ALL`]). A marker is a no-op `() -> ()` function the host never calls.
pub const ABI_MARKERS: [&str; 3] = [
    "proxy_abi_version_0_1_0",
    "proxy_abi_version_0_2_0",
    "proxy_abi_version_0_2_1",
];

/// A Proxy-Wasm ABI version a module can declare.
///
/// Ordered oldest first, so `version >= AbiVersion::V0_2_0` reads as "0.2.x".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AbiVersion {
    /// ABI 0.1.0: Rust SDK 0.1.x, Envoy's raw C++ tests. Two-argument header callbacks,
    /// `proxy_get_configuration`, `proxy_continue_request`/`_response`.
    V0_1_0,
    /// ABI 0.2.0: both Go SDKs and the Zig SDK. Adds `proxy_continue_stream`,
    /// `proxy_close_stream`, buffer types 6–8 and `proxy_on_foreign_function`.
    V0_2_0,
    /// ABI 0.2.1: Rust SDK >= 0.2 and the C++ SDK. Adds `proxy_get_log_level`.
    V0_2_1,
}

/// Why a module's ABI version could not be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiVersionError {
    /// The module exports no `proxy_abi_version_*` function.
    #[error(
        "missing Proxy-Wasm ABI version: the module exports no proxy_abi_version_* function \
         (supported markers: proxy_abi_version_0_1_0, proxy_abi_version_0_2_0, \
         proxy_abi_version_0_2_1)"
    )]
    Missing,
    /// The module exports only markers of versions this host does not know (for example the
    /// Higress fork's `proxy_abi_version_0_2_100`).
    #[error(
        "unknown Proxy-Wasm ABI version marker `{marker}` (supported markers: \
         proxy_abi_version_0_1_0, proxy_abi_version_0_2_0, proxy_abi_version_0_2_1)"
    )]
    Unknown {
        /// The first unknown marker export found.
        marker: String,
    },
    /// The module exports markers of more than one supported version.
    #[error("conflicting Proxy-Wasm ABI version markers: {}", markers.join(", "))]
    Conflicting {
        /// Every supported marker the module exports, in export order.
        markers: Vec<String>,
    },
}

impl AbiVersion {
    /// Every supported version, oldest first.
    pub const ALL: [AbiVersion; 3] = [AbiVersion::V0_1_0, AbiVersion::V0_2_0, AbiVersion::V0_2_1];

    /// The marker export that declares this version, e.g. `"proxy_abi_version_0_2_1"`.
    pub fn marker(self) -> &'static str {
        ABI_MARKERS[self.index()]
    }

    /// The version number, e.g. `"0.2.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        }
    }

    /// The version a marker export name declares, or `None` for any other name (including
    /// unknown `proxy_abi_version_*` markers).
    pub fn from_marker(name: &str) -> Option<AbiVersion> {
        AbiVersion::ALL.into_iter().find(|v| v.marker() == name)
    }

    /// Detects the ABI version from a module's exported function names.
    ///
    /// Exactly one supported marker decides the version; unknown `proxy_abi_version_*`
    /// markers next to it are ignored, as cpp-host does (it takes the first known marker).
    /// Without a supported marker, an unknown marker gives [`AbiVersionError::Unknown`] and
    /// no marker at all [`AbiVersionError::Missing`]. Two supported markers are
    /// [`AbiVersionError::Conflicting`]: cpp-host would silently take the first one.
    ///
    /// Pass only *function* exports: a global or memory named like a marker is no marker.
    pub fn detect<'a>(
        exports: impl IntoIterator<Item = &'a str>,
    ) -> Result<AbiVersion, AbiVersionError> {
        let mut known: Vec<(AbiVersion, &str)> = Vec::new();
        let mut first_unknown: Option<&str> = None;
        for name in exports {
            if let Some(version) = AbiVersion::from_marker(name) {
                if !known.iter().any(|(v, _)| *v == version) {
                    known.push((version, name));
                }
            } else if name.starts_with(ABI_MARKER_PREFIX) && first_unknown.is_none() {
                first_unknown = Some(name);
            }
        }
        match (known.as_slice(), first_unknown) {
            ([(version, _)], _) => Ok(*version),
            ([], Some(marker)) => Err(AbiVersionError::Unknown {
                marker: marker.to_owned(),
            }),
            ([], None) => Err(AbiVersionError::Missing),
            (many, _) => Err(AbiVersionError::Conflicting {
                markers: many.iter().map(|(_, name)| (*name).to_owned()).collect(),
            }),
        }
    }

    /// Whether this is a 0.2.x version (`proxy_continue_stream`, three-argument header
    /// callbacks, NOT_FOUND for a missing header).
    pub const fn is_v0_2(self) -> bool {
        !matches!(self, AbiVersion::V0_1_0)
    }

    const fn index(self) -> usize {
        match self {
            AbiVersion::V0_1_0 => 0,
            AbiVersion::V0_2_0 => 1,
            AbiVersion::V0_2_1 => 2,
        }
    }
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_marker() {
        for version in AbiVersion::ALL {
            let exports = ["memory", "_initialize", version.marker(), "proxy_on_log"];
            assert_eq!(AbiVersion::detect(exports), Ok(version));
        }
    }

    #[test]
    fn markers_and_names_agree() {
        assert_eq!(AbiVersion::V0_2_1.marker(), "proxy_abi_version_0_2_1");
        assert_eq!(AbiVersion::V0_1_0.to_string(), "0.1.0");
        for version in AbiVersion::ALL {
            let suffix = version.as_str().replace('.', "_");
            assert_eq!(version.marker(), format!("{ABI_MARKER_PREFIX}{suffix}"));
            assert_eq!(AbiVersion::from_marker(version.marker()), Some(version));
        }
        assert!(AbiVersion::V0_1_0 < AbiVersion::V0_2_0);
        assert!(AbiVersion::V0_2_0 < AbiVersion::V0_2_1);
        assert!(!AbiVersion::V0_1_0.is_v0_2());
        assert!(AbiVersion::V0_2_0.is_v0_2());
    }

    #[test]
    fn missing_marker() {
        let err = AbiVersion::detect(["memory", "proxy_on_log"]).unwrap_err();
        assert_eq!(err, AbiVersionError::Missing);
        let msg = err.to_string();
        for marker in ABI_MARKERS {
            assert!(msg.contains(marker), "{msg}");
        }
    }

    #[test]
    fn unknown_marker() {
        let err = AbiVersion::detect(["proxy_abi_version_0_2_100", "malloc"]).unwrap_err();
        assert_eq!(
            err,
            AbiVersionError::Unknown {
                marker: "proxy_abi_version_0_2_100".into()
            }
        );
        assert!(err.to_string().contains("proxy_abi_version_0_2_100"));
    }

    #[test]
    fn known_marker_wins_over_unknown() {
        let exports = ["proxy_abi_version_0_2_100", "proxy_abi_version_0_2_1"];
        assert_eq!(AbiVersion::detect(exports), Ok(AbiVersion::V0_2_1));
    }

    #[test]
    fn two_markers_conflict() {
        let exports = ["proxy_abi_version_0_2_1", "x", "proxy_abi_version_0_1_0"];
        let err = AbiVersion::detect(exports).unwrap_err();
        assert_eq!(
            err,
            AbiVersionError::Conflicting {
                markers: vec![
                    "proxy_abi_version_0_2_1".into(),
                    "proxy_abi_version_0_1_0".into()
                ]
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("proxy_abi_version_0_2_1") && msg.contains("proxy_abi_version_0_1_0"));
    }
}
