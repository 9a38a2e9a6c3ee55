//! What a module source names: a SHA-256 digest, an OCI reference, and whether a host may be
//! spoken to in cleartext.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest, shown as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

/// An OCI reference as written after `oci://`: `registry[:port]/repository[:tag][@sha256:hex]`.
/// The registry is always the first component (there is no default registry); a reference
/// with neither tag nor digest means the tag `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OciReference {
    /// `host` or `host:port` (IPv6 in brackets).
    pub registry: String,
    /// The repository path, `filters/add_header`.
    pub repository: String,
    /// The tag, when one was written (or `latest` when neither tag nor digest was).
    pub tag: Option<String>,
    /// The manifest digest after `@sha256:`, which wins over the tag.
    pub digest: Option<Digest>,
}

/// Why a text is not a digest or an OCI reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The OCI form, `sha256:<hex>`.
    pub fn oci(&self) -> String {
        format!("sha256:{}", self.hex())
    }

    /// Parses the OCI form `sha256:<hex>`.
    pub fn parse_oci(text: &str) -> Result<Digest, ParseError> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| {
            ParseError(format!(
                "`{text}` is not a sha256 digest (`sha256:` and 64 hex digits)"
            ))
        })?;
        hex.parse()
    }

    /// The raw 32 bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = ParseError;

    /// 64 lowercase hex digits, as `sha256sum` prints them.
    fn from_str(text: &str) -> Result<Digest, ParseError> {
        let bad = || {
            ParseError(format!(
                "`{text}` is not a sha256 digest: expected 64 lowercase hex digits"
            ))
        };
        if text.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(bad());
            };
            out[i] = hi << 4 | lo;
        }
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl OciReference {
    /// Parses `oci://registry[:port]/repository[:tag][@sha256:hex]` (the `oci://` prefix
    /// is optional here).
    pub fn parse(text: &str) -> Result<OciReference, ParseError> {
        let bad = |why: &str| ParseError(format!("invalid OCI reference `{text}`: {why}"));
        let rest = text.strip_prefix("oci://").unwrap_or(text);
        let (rest, digest) = match rest.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(Digest::parse_oci(digest).map_err(|e| bad(&e.to_string()))?),
            ),
            None => (rest, None),
        };
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected registry/repository[:tag]"))?;
        if registry.is_empty() || !is_registry(registry) {
            return Err(bad("the registry must be host or host:port"));
        }
        // A colon after the last slash starts the tag.
        let (repository, tag) = match path.rfind(':') {
            Some(colon) if !path[colon..].contains('/') => {
                (&path[..colon], Some(path[colon + 1..].to_string()))
            }
            _ => (path, None),
        };
        if !is_repository(repository) {
            return Err(bad(
                "the repository must be lowercase letters, digits and `._-` separators, in \
                 `/`-separated components",
            ));
        }
        if let Some(tag) = &tag
            && !is_tag(tag)
        {
            return Err(bad(
                "a tag is 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag,
        };
        Ok(OciReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What the registry is asked for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.oci(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The registry's host without the port or IPv6 brackets.
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{}", digest.oci())?;
        }
        Ok(())
    }
}

/// Whether `host` (a name or an address, IPv6 with or without brackets) is this machine:
/// `localhost`, `127.0.0.0/8` or `::1`. Only such hosts are spoken to in cleartext.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of `host[:port]` (IPv6 in brackets), brackets removed.
pub(crate) fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn is_registry(text: &str) -> bool {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, port.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(text), None),
        }
    };
    let host_ok = host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    host_ok && port_ok
}

/// The distribution spec's repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` components
/// separated by `/`.
fn is_repository(text: &str) -> bool {
    !text.is_empty()
        && text.split('/').all(|component| {
            let bytes = component.as_bytes();
            let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            !bytes.is_empty()
                && bytes.first().is_some_and(alnum)
                && bytes.last().is_some_and(alnum)
                && bytes
                    .iter()
                    .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
                && !component.contains("..")
                && !component.contains("___")
        })
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_tag(text: &str) -> bool {
    let bytes = text.as_bytes();
    (1..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "3b1f4f5e8bb2f3b0c1a2d3e4f5061728394a5b6c7d8e9f00112233445566778f";

    #[test]
    fn digests_are_64_lowercase_hex_digits() {
        let d: Digest = HEX.parse().expect("digest");
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.oci(), format!("sha256:{HEX}"));
        assert_eq!(Digest::parse_oci(&d.oci()), Ok(d));
        assert!(HEX.to_uppercase().parse::<Digest>().is_err());
        assert!(HEX[1..].parse::<Digest>().is_err());
        assert!(format!("{HEX}0").parse::<Digest>().is_err());
        assert!(format!("{}g", &HEX[1..]).parse::<Digest>().is_err());
        assert!(Digest::parse_oci(HEX).is_err());
        assert_eq!(
            Digest::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn references_with_port_path_and_tag() {
        let r = OciReference::parse("oci://127.0.0.1:5000/filters/add_header:v1").expect("ref");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "filters/add_header");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest, None);
        assert_eq!(r.manifest_reference(), "v1");
        assert_eq!(r.host(), "127.0.0.1");
        assert_eq!(r.to_string(), "oci://127.0.0.1:5000/filters/add_header:v1");
    }

    #[test]
    fn references_default_to_latest() {
        let r = OciReference::parse("oci://ghcr.io/acme/filter").expect("ref");
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "acme/filter");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.manifest_reference(), "latest");
    }

    #[test]
    fn references_by_digest() {
        let r =
            OciReference::parse(&format!("oci://localhost:5000/a/b@sha256:{HEX}")).expect("ref");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.map(|d| d.hex()), Some(HEX.to_string()));
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        let r =
            OciReference::parse(&format!("oci://localhost:5000/a/b:v2@sha256:{HEX}")).expect("ref");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        let r = OciReference::parse("oci://[::1]:5000/a").expect("ref");
        assert_eq!(r.host(), "::1");
        assert!(is_loopback(r.host()));
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "oci://registry-only",
            "oci:///repo:tag",
            "oci://host/Upper:tag",
            "oci://host/repo:",
            "oci://host/repo:-tag",
            "oci://host/repo@sha256:abc",
            "oci://host/repo@md5:abc",
            "oci://host:99999/repo",
            "oci://host/a//b",
            "oci://ho st/repo",
        ] {
            assert!(OciReference::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.3.2.1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("example.com"));
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("[::1]:5000"), "::1");
    }
}
