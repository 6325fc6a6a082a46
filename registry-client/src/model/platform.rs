//! Platforms (`os/arch[/variant][:os.version]`) and how index entries match them.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A normalised platform: `linux/arm64/v8`, `linux/amd64`, `windows/amd64:10.0.17763`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub os_version: Option<String>,
}

impl Platform {
    /// Builds a platform, normalising names the way containerd does:
    /// `x86_64`→`amd64`, `aarch64`→`arm64` (variant `v8`), `armhf`→`arm/v7`,
    /// `arm` defaults to `v7`.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let os = os.to_ascii_lowercase();
        let arch = architecture.to_ascii_lowercase();
        let variant = variant.filter(|v| !v.is_empty()).map(str::to_ascii_lowercase);
        let (architecture, variant) = match (arch.as_str(), variant) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
            ("i386" | "386" | "x86", v) => ("386", v),
            ("aarch64" | "arm64", v) => ("arm64", Some(v.unwrap_or_else(|| "v8".into()))),
            ("armhf", _) => ("arm", Some("v7".into())),
            ("armel", _) => ("arm", Some("v6".into())),
            ("arm", v) => ("arm", Some(v.unwrap_or_else(|| "v7".into()))),
            (other, v) => (other, v),
        };
        Platform {
            os,
            architecture: architecture.to_owned(),
            variant,
            os_version: None,
        }
    }

    /// The platform this program runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let variant = match arch {
            "arm" => Some("v7"),
            _ => None,
        };
        // Images are built for Linux (or Windows); on macOS and elsewhere
        // docker runs them in a Linux VM, so it asks for Linux too.
        let os = match std::env::consts::OS {
            "windows" => "windows",
            _ => "linux",
        };
        Platform::new(os, arch, variant)
    }

    /// Whether an index entry describing `other` serves this platform.
    /// The OS version only has to match when this platform names one.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self.variant == other.variant
            && self
                .os_version
                .as_ref()
                .is_none_or(|v| other.os_version.as_ref() == Some(v))
    }

    /// From an OCI descriptor's platform.
    pub fn from_oci(p: &oci_spec::image::Platform) -> Self {
        let mut platform = Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        );
        platform.os_version = p.os_version().clone();
        platform
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidConfig(format!("invalid platform {s:?}: {reason}"));
        let (spec, os_version) = match s.split_once(':') {
            Some((spec, v)) if !v.is_empty() => (spec, Some(v.to_owned())),
            Some(_) => return Err(invalid("empty OS version after ':'")),
            None => (s, None),
        };
        let parts: Vec<&str> = spec.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid("expected os/arch[/variant]"));
        }
        let mut platform = match parts.as_slice() {
            [os, arch] => Platform::new(os, arch, None),
            [os, arch, variant] => Platform::new(os, arch, Some(variant)),
            _ => return Err(invalid("expected os/arch[/variant]")),
        };
        platform.os_version = os_version;
        Ok(platform)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        if let Some(v) = &self.os_version {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64/v8"),
            ("linux/arm64", "linux/arm64/v8"),
            ("linux/arm64/v8", "linux/arm64/v8"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("Linux/ARM64", "linux/arm64/v8"),
            ("windows/amd64:10.0.17763.1", "windows/amd64:10.0.17763.1"),
            ("linux/s390x", "linux/s390x"),
        ];
        for (input, want) in cases {
            let p: Platform = input.parse().unwrap();
            assert_eq!(p.to_string(), want, "{input}");
            assert_eq!(want.parse::<Platform>().unwrap(), p, "round trip {want}");
        }
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/amd64:"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_ignores_os_version_unless_asked() {
        let index_entry: Platform = "windows/amd64:10.0.17763.1".parse().unwrap();
        assert!("windows/amd64".parse::<Platform>().unwrap().matches(&index_entry));
        assert!(index_entry.matches(&index_entry));
        assert!(
            !"windows/amd64:10.0.20348.1"
                .parse::<Platform>()
                .unwrap()
                .matches(&index_entry)
        );
        assert!(
            !"linux/arm/v6"
                .parse::<Platform>()
                .unwrap()
                .matches(&"linux/arm".parse().unwrap())
        );
    }

    #[test]
    fn host_platform_is_normalised() {
        let host = Platform::host();
        assert_eq!(host, host.to_string().parse().unwrap());
    }
}
