//! Image references, parsed and normalised like docker's.
//!
//! The rules follow `ParseNormalizedNamed` from docker's
//! `distribution/reference`, plus docker's default tag:
//!
//! - The first `/`-separated component is a registry only if it is
//!   `localhost` or contains a `.` or a `:` (which includes IPv6 literals
//!   such as `[::1]:5000`). Otherwise the whole name is a Docker Hub
//!   repository: `foo/bar` is `docker.io/foo/bar`.
//! - `index.docker.io` is rewritten to `docker.io`, and a single-component
//!   Docker Hub repository gets `library/`: `alpine` and `docker.io/alpine`
//!   both become `docker.io/library/alpine`. Nothing else is rewritten; in
//!   particular registry hosts keep their case.
//! - Repository path components are lowercase
//!   `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`; registry hosts are DNS-like
//!   labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` joined by dots (or a
//!   bracketed IPv6 literal), with an optional numeric `:port`.
//! - Tags are `[\w][\w.-]{0,127}`; digests are `algorithm:hex`, where
//!   `sha256`, `sha384` and `sha512` need exactly 64, 96 and 128 lowercase
//!   hex digits and other algorithms at least 32.
//! - The normalised name (`registry/repository`, without tag or digest) is at
//!   most 255 characters.
//! - A reference with neither tag nor digest gets the tag `latest`; a
//!   digest-only reference has no tag, and `name:tag@digest` keeps both.
//!
//! [`ImageReference`]'s `Display` prints the canonical form
//! `registry/repository[:tag][@digest]`, which parses back to the same value.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ReferencePart};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's registry API host.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest allowed name (`registry/repository`, after normalisation).
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The longest allowed tag.
pub const TAG_LENGTH_MAX: usize = 128;

/// Docker Hub's old name, still accepted and rewritten to [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Prefix of Docker Hub's official images (`alpine` is `library/alpine`).
const OFFICIAL_REPO_PREFIX: &str = "library/";

/// A normalised image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageReference {
    /// Parses and normalises `input` (see the module docs for the rules).
    ///
    /// Every failure is an [`Error::InvalidReference`] whose `reason` names
    /// the part that is wrong.
    pub fn parse(input: &str) -> Result<Self, Error> {
        parse_reference(input).map_err(|(part, reason)| Error::InvalidReference {
            input: input.to_owned(),
            part,
            reason,
        })
    }

    /// The registry as written after normalisation, e.g. `docker.io`, `ghcr.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to send API requests to (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository path, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, e.g. `3.20`; `latest` when the input named neither tag nor
    /// digest, `None` for a digest-only reference.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, e.g. `sha256:…`.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What to ask the registry for: the digest if there is one, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// The name without tag or digest: `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the image lives on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// Whether the reference names a digest, i.e. always means the same content.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }

    /// The same reference with `tag` as its tag. A digest is kept, as
    /// distribution's `WithTag` does.
    pub fn with_tag(&self, tag: &str) -> Result<Self, Error> {
        validate_tag(tag).map_err(|reason| Error::InvalidReference {
            input: format!("{}:{tag}", self.name()),
            part: ReferencePart::Tag,
            reason,
        })?;
        Ok(Self {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// The same reference pinned to `digest` (`algorithm:hex`). A tag is
    /// kept, as distribution's `WithDigest` does.
    pub fn with_digest(&self, digest: &str) -> Result<Self, Error> {
        validate_digest(digest).map_err(|reason| Error::InvalidReference {
            input: format!("{}@{digest}", self.name()),
            part: ReferencePart::Digest,
            reason,
        })?;
        Ok(Self {
            digest: Some(digest.to_owned()),
            ..self.clone()
        })
    }
}

impl FromStr for ImageReference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// The parser proper; the `Err` is the part that is wrong and the human-readable reason.
///
/// The checks run in the order: bare image ID, registry, repository path,
/// tag, digest, total length. When several parts are wrong the first one
/// found is reported.
fn parse_reference(input: &str) -> Result<ImageReference, (ReferencePart, String)> {
    let name = |reason: String| (ReferencePart::Name, reason);
    if input.is_empty() {
        return Err(name("empty reference".to_owned()));
    }
    // distribution refuses a bare image ID so that `docker pull <id>` is not
    // silently taken for a Docker Hub repository of that name.
    if input.len() == 64 && is_lower_hex(input) {
        return Err(name(
            "a bare 64-character hex string is an image ID, not a repository name".to_owned(),
        ));
    }

    let (registry, remainder) = split_registry(input);
    if let Some(registry) = registry {
        validate_registry(registry).map_err(name)?;
    }

    // Neither the path nor the tag may contain `@`, and neither the path
    // (the registry is already split off) nor the digest algorithm may
    // contain `:`, so the first `@` and then the first `:` are the separators.
    let (name_and_tag, digest) = match remainder.split_once('@') {
        Some((before, digest)) => (before, Some(digest)),
        None => (remainder, None),
    };
    let (path, tag) = match name_and_tag.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (name_and_tag, None),
    };

    validate_path(path).map_err(name)?;
    if let Some(tag) = tag {
        validate_tag(tag).map_err(|reason| (ReferencePart::Tag, reason))?;
    }
    if let Some(digest) = digest {
        validate_digest(digest).map_err(|reason| (ReferencePart::Digest, reason))?;
    }

    let registry = match registry {
        None | Some(LEGACY_DOCKER_HUB) => DOCKER_HUB,
        Some(registry) => registry,
    };
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path.to_owned()
    };

    // distribution measures the name after normalisation, so `docker.io/`
    // and `library/` count too.
    let name_len = registry.len() + 1 + repository.len();
    if name_len > NAME_TOTAL_LENGTH_MAX {
        return Err(name(format!(
            "name is too long: {name_len} characters after normalisation, at most {NAME_TOTAL_LENGTH_MAX} allowed"
        )));
    }

    let tag = match (tag, digest) {
        (None, None) => Some(DEFAULT_TAG.to_owned()),
        (tag, _) => tag.map(str::to_owned),
    };
    Ok(ImageReference {
        registry: registry.to_owned(),
        repository,
        tag,
        digest: digest.map(str::to_owned),
    })
}

/// Splits off the registry, if the first component is one.
///
/// Like distribution's `splitDockerDomain`, the first component counts as a
/// registry only if it is `localhost` or contains `.` or `:`; otherwise
/// `foo/bar` would be ambiguous between a host `foo` and a Docker Hub user
/// `foo`, and Docker Hub wins. A reference without `/` is always on Docker
/// Hub (`localhost:5000` is the image `localhost` with tag `5000`).
fn split_registry(input: &str) -> (Option<&str>, &str) {
    match input.split_once('/') {
        Some((first, rest)) if first == "localhost" || first.contains('.') || first.contains(':') => {
            (Some(first), rest)
        }
        _ => (None, input),
    }
}

/// Checks `host[:port]`, where host is DNS-like labels or `[ipv6]`.
///
/// The port is only checked to be digits, and the IPv6 literal only to be
/// hex digits and colons, exactly as distribution does.
fn validate_registry(registry: &str) -> Result<(), String> {
    let port = if let Some(bracketed) = registry.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "registry {}: IPv6 address is missing its closing ']'",
                excerpt(registry)
            ));
        };
        if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!(
                "registry {}: invalid IPv6 address {} (only hex digits and ':' allowed)",
                excerpt(registry),
                excerpt(address)
            ));
        }
        match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => {
                return Err(format!(
                    "registry {}: unexpected {} after the IPv6 address",
                    excerpt(registry),
                    excerpt(after)
                ));
            }
        }
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        validate_host(registry, host)?;
        port
    };
    match port {
        Some("") => Err(format!("registry {}: empty port after ':'", excerpt(registry))),
        Some(port) if !port.bytes().all(|b| b.is_ascii_digit()) => Err(format!(
            "registry {}: invalid port {} (must be digits)",
            excerpt(registry),
            excerpt(port)
        )),
        _ => Ok(()),
    }
}

/// Checks a host name: labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
/// joined by dots. Upper case is allowed (and kept) as in distribution.
fn validate_host(registry: &str, host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("registry {}: empty host name", excerpt(registry)));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!(
                "registry {}: empty label in host name (leading, trailing or doubled '.')",
                excerpt(registry)
            ));
        }
        if let Some(bad) = label.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-')) {
            return Err(format!(
                "registry {}: invalid character {bad:?} in host name",
                excerpt(registry)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "registry {}: host name label {} must not start or end with '-'",
                excerpt(registry),
                excerpt(label)
            ));
        }
    }
    Ok(())
}

/// Checks a repository path that is not part of a reference (a mirror's
/// namespace, a prefix in `registries.conf`).
pub(crate) fn check_repository_path(path: &str) -> Result<(), String> {
    validate_path(path)
}

/// Checks a registry `host[:port]` that is not part of a reference.
pub(crate) fn check_registry(registry: &str) -> Result<(), String> {
    validate_registry(registry)
}

/// Checks the repository path as written (before `library/` is added).
fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("missing repository name".to_owned());
    }
    // Checked before anything else, as distribution does, because upper case
    // is by far the most common mistake and deserves the clearest message.
    if path.chars().any(char::is_uppercase) {
        return Err(format!("repository name {} must be lowercase", excerpt(path)));
    }
    for component in path.split('/') {
        validate_path_component(path, component)?;
    }
    Ok(())
}

/// Checks one component against `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`:
/// lowercase alphanumeric runs joined by exactly one of `.`, `_`, `__` or a
/// run of `-`, never at either end.
fn validate_path_component(path: &str, component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err(format!(
            "repository {}: empty path component (leading, trailing or doubled '/')",
            excerpt(path)
        ));
    }
    if let Some(bad) = component
        .chars()
        .find(|&c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        return Err(format!(
            "repository {}: invalid character {bad:?} in path component",
            excerpt(path)
        ));
    }
    let is_alnum = |c: char| c.is_ascii_alphanumeric();
    if !component.starts_with(is_alnum) {
        return Err(format!(
            "repository {}: path component {} must start with a lowercase letter or digit",
            excerpt(path),
            excerpt(component)
        ));
    }
    if !component.ends_with(is_alnum) {
        return Err(format!(
            "repository {}: path component {} must end with a lowercase letter or digit",
            excerpt(path),
            excerpt(component)
        ));
    }
    // What is left between the alphanumeric runs are the separators.
    for separator in component.split(is_alnum).filter(|s| !s.is_empty()) {
        let allowed = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return Err(format!(
                "repository {}: invalid separator {separator:?} in path component {} \
                 (allowed: '.', '_', '__' or one or more '-')",
                excerpt(path),
                excerpt(component)
            ));
        }
    }
    Ok(())
}

/// Checks a tag against `[\w][\w.-]{0,127}` (`\w` being ASCII `[A-Za-z0-9_]`).
fn validate_tag(tag: &str) -> Result<(), String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if tag.is_empty() {
        return Err("invalid tag: empty tag after ':'".to_owned());
    }
    if let Some(bad) = tag.chars().find(|&c| !(is_word(c) || c == '.' || c == '-')) {
        return Err(format!(
            "invalid tag {}: invalid character {bad:?} (allowed: letters, digits, '_', '.', '-')",
            excerpt(tag)
        ));
    }
    if !tag.starts_with(is_word) {
        return Err(format!(
            "invalid tag {}: must start with a letter, digit or '_'",
            excerpt(tag)
        ));
    }
    // All ASCII by now, so bytes are characters.
    if tag.len() > TAG_LENGTH_MAX {
        return Err(format!(
            "invalid tag: {} characters long, at most {TAG_LENGTH_MAX} allowed",
            tag.len()
        ));
    }
    Ok(())
}

/// Checks `algorithm:hex`.
///
/// The algorithm follows the OCI grammar `[a-z0-9]+(?:[.+_-][a-z0-9]+)*`.
/// The registered algorithms need their exact length of lowercase hex (as
/// go-digest checks); others only need 32 or more hex digits, the minimum
/// distribution's reference grammar asks of any digest.
fn validate_digest(digest: &str) -> Result<(), String> {
    if digest.is_empty() {
        return Err("invalid digest: empty digest after '@'".to_owned());
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!(
            "invalid digest {}: expected ALGORITHM:HEX",
            excerpt(digest)
        ));
    };
    validate_digest_algorithm(algorithm)?;
    if hex.is_empty() {
        return Err(format!("invalid digest: no hex digits after '{algorithm}:'"));
    }
    if let Some(bad) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        let what = if bad.is_ascii_hexdigit() {
            "hex digits must be lowercase".to_owned()
        } else {
            format!("invalid character {bad:?} in hex")
        };
        return Err(format!("invalid digest {}: {what}", excerpt(digest)));
    }
    // All ASCII by now, so bytes are characters.
    match expected_hex_len(algorithm) {
        Some(expected) if hex.len() != expected => Err(format!(
            "invalid digest: {algorithm} needs exactly {expected} hex digits, got {}",
            hex.len()
        )),
        None if hex.len() < 32 => Err(format!(
            "invalid digest: at least 32 hex digits needed, got {}",
            hex.len()
        )),
        _ => Ok(()),
    }
}

/// Checks a digest algorithm against `[a-z0-9]+(?:[.+_-][a-z0-9]+)*`.
fn validate_digest_algorithm(algorithm: &str) -> Result<(), String> {
    let valid = algorithm
        .split(['.', '+', '_', '-'])
        .all(|part| !part.is_empty() && part.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9')));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid digest algorithm {} (expected lowercase like 'sha256')",
            excerpt(algorithm)
        ))
    }
}

/// The hex length of the algorithms go-digest knows.
fn expected_hex_len(algorithm: &str) -> Option<usize> {
    match algorithm {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `s` quoted for an error reason, cut to a readable length so that a huge
/// input does not make a huge reason (the input itself is in the error).
fn excerpt(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = DOCKER_HUB_API_HOST;

    /// Replaces the placeholders used in the tables below, which keep the
    /// long digests and names readable.
    fn expand(s: &str) -> String {
        let hex = |n: usize| "0123456789abcdef".chars().cycle().take(n).collect::<String>();
        s.replace("<sha256>", &hex(64))
            .replace("<SHA256>", &hex(64).to_uppercase())
            .replace("<sha384>", &hex(96))
            .replace("<sha512>", &hex(128))
            .replace("<hex32>", &hex(32))
            .replace(
                "<tag128>",
                &format!("T{}", "a.b-c_".repeat(22).chars().take(127).collect::<String>()),
            )
            .replace("<tag129>", &"t".repeat(129))
            // `example.com/` is 12 characters, so this name is exactly 255.
            .replace("<path243>", &"a".repeat(243))
            .replace("<path244>", &"a".repeat(244))
    }

    struct Valid {
        input: &'static str,
        registry: &'static str,
        repository: &'static str,
        tag: Option<&'static str>,
        digest: Option<&'static str>,
        api_host: &'static str,
        display: &'static str,
    }

    const fn ok(
        input: &'static str,
        registry: &'static str,
        repository: &'static str,
        tag: Option<&'static str>,
        digest: Option<&'static str>,
        api_host: &'static str,
        display: &'static str,
    ) -> Valid {
        Valid {
            input,
            registry,
            repository,
            tag,
            digest,
            api_host,
            display,
        }
    }

    const L: Option<&str> = Some("latest");

    #[rustfmt::skip]
    const VALID: &[Valid] = &[
        ok("alpine", "docker.io", "library/alpine", L, None, HUB, "docker.io/library/alpine:latest"),
        ok("alpine:3.20", "docker.io", "library/alpine", Some("3.20"), None, HUB, "docker.io/library/alpine:3.20"),
        ok("library/alpine", "docker.io", "library/alpine", L, None, HUB, "docker.io/library/alpine:latest"),
        ok("docker.io/alpine", "docker.io", "library/alpine", L, None, HUB, "docker.io/library/alpine:latest"),
        ok("docker.io/library/alpine:latest", "docker.io", "library/alpine", L, None, HUB, "docker.io/library/alpine:latest"),
        ok("index.docker.io/library/alpine", "docker.io", "library/alpine", L, None, HUB, "docker.io/library/alpine:latest"),
        ok("index.docker.io/alpine", "docker.io", "library/alpine", L, None, HUB, "docker.io/library/alpine:latest"),
        ok("index.docker.io/foo/bar:1", "docker.io", "foo/bar", Some("1"), None, HUB, "docker.io/foo/bar:1"),
        ok("foo/bar", "docker.io", "foo/bar", L, None, HUB, "docker.io/foo/bar:latest"),
        ok("docker.io/foo/bar", "docker.io", "foo/bar", L, None, HUB, "docker.io/foo/bar:latest"),
        ok("foo/bar/baz", "docker.io", "foo/bar/baz", L, None, HUB, "docker.io/foo/bar/baz:latest"),
        ok("0/1", "docker.io", "0/1", L, None, HUB, "docker.io/0/1:latest"),
        ok("a", "docker.io", "library/a", L, None, HUB, "docker.io/library/a:latest"),
        // No `/`: never a registry, even when it looks like one.
        ok("localhost", "docker.io", "library/localhost", L, None, HUB, "docker.io/library/localhost:latest"),
        ok("localhost:5000", "docker.io", "library/localhost", Some("5000"), None, HUB, "docker.io/library/localhost:5000"),
        ok("foo.bar", "docker.io", "library/foo.bar", L, None, HUB, "docker.io/library/foo.bar:latest"),
        ok("ghcr.io/owner/repo:v1", "ghcr.io", "owner/repo", Some("v1"), None, "ghcr.io", "ghcr.io/owner/repo:v1"),
        ok("localhost/foo", "localhost", "foo", L, None, "localhost", "localhost/foo:latest"),
        ok("localhost:5000/foo:tag", "localhost:5000", "foo", Some("tag"), None, "localhost:5000", "localhost:5000/foo:tag"),
        ok("localhost/foo@sha256:<sha256>", "localhost", "foo", None, Some("sha256:<sha256>"), "localhost", "localhost/foo@sha256:<sha256>"),
        ok("127.0.0.1:5000/a/b/c/d", "127.0.0.1:5000", "a/b/c/d", L, None, "127.0.0.1:5000", "127.0.0.1:5000/a/b/c/d:latest"),
        ok("9.9.9.9/x", "9.9.9.9", "x", L, None, "9.9.9.9", "9.9.9.9/x:latest"),
        ok("[::1]:5000/foo", "[::1]:5000", "foo", L, None, "[::1]:5000", "[::1]:5000/foo:latest"),
        ok("[::1]/foo", "[::1]", "foo", L, None, "[::1]", "[::1]/foo:latest"),
        ok("[2001:DB8::1]:443/a/b:c", "[2001:DB8::1]:443", "a/b", Some("c"), None, "[2001:DB8::1]:443", "[2001:DB8::1]:443/a/b:c"),
        ok("registry.example.com:443/ns/img@sha256:<sha256>", "registry.example.com:443", "ns/img", None, Some("sha256:<sha256>"), "registry.example.com:443", "registry.example.com:443/ns/img@sha256:<sha256>"),
        ok("img:tag@sha256:<sha256>", "docker.io", "library/img", Some("tag"), Some("sha256:<sha256>"), HUB, "docker.io/library/img:tag@sha256:<sha256>"),
        ok("alpine@sha256:<sha256>", "docker.io", "library/alpine", None, Some("sha256:<sha256>"), HUB, "docker.io/library/alpine@sha256:<sha256>"),
        ok("alpine:latest@sha256:<sha256>", "docker.io", "library/alpine", L, Some("sha256:<sha256>"), HUB, "docker.io/library/alpine:latest@sha256:<sha256>"),
        ok("foo/bar@sha512:<sha512>", "docker.io", "foo/bar", None, Some("sha512:<sha512>"), HUB, "docker.io/foo/bar@sha512:<sha512>"),
        ok("foo@sha384:<sha384>", "docker.io", "library/foo", None, Some("sha384:<sha384>"), HUB, "docker.io/library/foo@sha384:<sha384>"),
        ok("foo@multihash+base58:<hex32>", "docker.io", "library/foo", None, Some("multihash+base58:<hex32>"), HUB, "docker.io/library/foo@multihash+base58:<hex32>"),
        ok("foo@blake3:<sha256>", "docker.io", "library/foo", None, Some("blake3:<sha256>"), HUB, "docker.io/library/foo@blake3:<sha256>"),
        // A 64-hex path component is fine; only a bare 64-hex reference is refused.
        ok("foo/<sha256>", "docker.io", "foo/<sha256>", L, None, HUB, "docker.io/foo/<sha256>:latest"),
        ok("a.b/c_d/e__f/g-h/i---j", "a.b", "c_d/e__f/g-h/i---j", L, None, "a.b", "a.b/c_d/e__f/g-h/i---j:latest"),
        ok("foo_bar/baz__qux.x", "docker.io", "foo_bar/baz__qux.x", L, None, HUB, "docker.io/foo_bar/baz__qux.x:latest"),
        ok("my--repo", "docker.io", "library/my--repo", L, None, HUB, "docker.io/library/my--repo:latest"),
        ok("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.2.3", "123456789012.dkr.ecr.us-east-1.amazonaws.com", "team/app", Some("1.2.3"), None, "123456789012.dkr.ecr.us-east-1.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.2.3"),
        ok("us-docker.pkg.dev/p/r/i", "us-docker.pkg.dev", "p/r/i", L, None, "us-docker.pkg.dev", "us-docker.pkg.dev/p/r/i:latest"),
        ok("quay.io/coreos/etcd:v3.5.0", "quay.io", "coreos/etcd", Some("v3.5.0"), None, "quay.io", "quay.io/coreos/etcd:v3.5.0"),
        ok("gcr.io/distroless/static-debian12:nonroot", "gcr.io", "distroless/static-debian12", Some("nonroot"), None, "gcr.io", "gcr.io/distroless/static-debian12:nonroot"),
        ok("mcr.microsoft.com/dotnet/sdk:8.0", "mcr.microsoft.com", "dotnet/sdk", Some("8.0"), None, "mcr.microsoft.com", "mcr.microsoft.com/dotnet/sdk:8.0"),
        ok("registry.gitlab.com/group/sub/project/image:main", "registry.gitlab.com", "group/sub/project/image", Some("main"), None, "registry.gitlab.com", "registry.gitlab.com/group/sub/project/image:main"),
        ok("my-registry.local:5000/team/app:v1.0.0-rc.1", "my-registry.local:5000", "team/app", Some("v1.0.0-rc.1"), None, "my-registry.local:5000", "my-registry.local:5000/team/app:v1.0.0-rc.1"),
        ok("xn--bcher-kva.example/foo", "xn--bcher-kva.example", "foo", L, None, "xn--bcher-kva.example", "xn--bcher-kva.example/foo:latest"),
        // Only `index.docker.io` is rewritten; other hosts keep their spelling and case.
        ok("sub.docker.io/foo", "sub.docker.io", "foo", L, None, "sub.docker.io", "sub.docker.io/foo:latest"),
        ok("Example.COM/foo", "Example.COM", "foo", L, None, "Example.COM", "Example.COM/foo:latest"),
        ok("alpine:_tag", "docker.io", "library/alpine", Some("_tag"), None, HUB, "docker.io/library/alpine:_tag"),
        ok("alpine:UPPER-Tag.1", "docker.io", "library/alpine", Some("UPPER-Tag.1"), None, HUB, "docker.io/library/alpine:UPPER-Tag.1"),
        ok("alpine:<tag128>", "docker.io", "library/alpine", Some("<tag128>"), None, HUB, "docker.io/library/alpine:<tag128>"),
        ok("example.com/<path243>", "example.com", "<path243>", L, None, "example.com", "example.com/<path243>:latest"),
    ];

    /// Input → a word the reason must contain.
    #[rustfmt::skip]
    const INVALID: &[(&str, &str)] = &[
        ("", "empty reference"),
        ("UPPER/case", "lowercase"),
        ("Alpine", "lowercase"),
        ("docker.io/Library/alpine", "lowercase"),
        ("LOCALHOST/foo", "lowercase"),
        ("FÖÖ", "lowercase"),
        ("foo:", "empty tag"),
        ("foo@", "empty digest"),
        ("foo@sha256", "ALGORITHM:HEX"),
        ("foo@sha256:", "no hex"),
        ("foo@sha256:short", "invalid character 's'"),
        ("foo@sha256:abc123", "exactly 64"),
        ("foo@sha256:<sha256>0", "exactly 64"),
        ("foo@sha256:<SHA256>", "lowercase"),
        ("foo@sha512:<sha256>", "exactly 128"),
        ("foo@SHA256:<sha256>", "algorithm"),
        ("foo@:<sha256>", "algorithm"),
        ("foo@sha..256:<sha256>", "algorithm"),
        ("foo@md5:abcdef", "at least 32"),
        ("foo@sha256:<sha256>@sha256:<sha256>", "invalid character '@'"),
        ("foo:<tag129>", "at most 128"),
        ("foo:-tag", "must start"),
        ("foo:.tag", "must start"),
        ("foo:t!g", "invalid character '!'"),
        ("foo:tag:tag2", "invalid character ':'"),
        ("foo/bar:ta/g", "invalid character '/'"),
        (":tag", "missing repository"),
        ("@sha256:<sha256>", "missing repository"),
        ("docker.io/", "missing repository"),
        ("/foo", "empty path component"),
        ("foo/", "empty path component"),
        ("foo//bar", "empty path component"),
        ("-foo", "must start"),
        ("foo-", "must end"),
        ("_foo", "must start"),
        ("foo.", "must end"),
        ("foo..bar", "separator"),
        ("foo___bar", "separator"),
        ("foo._bar", "separator"),
        ("foo-.bar", "separator"),
        ("host:port:bad/x", "invalid port"),
        ("localhost:abc/foo", "invalid port"),
        ("localhost:/foo", "empty port"),
        (":5000/foo", "empty host"),
        ("ex_ample.com/foo", "invalid character '_'"),
        ("-bad.com/foo", "'-'"),
        ("bad-.com/foo", "'-'"),
        ("a..b.com/foo", "empty label"),
        (".com/foo", "empty label"),
        ("exämple.com/foo", "invalid character 'ä'"),
        ("[::1/foo", "IPv6"),
        ("[zz::1]:5000/foo", "IPv6"),
        ("[]:5000/foo", "IPv6"),
        ("[::1]x/foo", "IPv6"),
        ("[::1]:x/foo", "invalid port"),
        ("foo bar", "invalid character ' '"),
        (" foo", "invalid character ' '"),
        ("foo\n", "invalid character '\\n'"),
        ("foo\0", "invalid character '\\0'"),
        ("föö", "invalid character 'ö'"),
        ("🐳/whale", "invalid character '🐳'"),
        ("foo!", "invalid character '!'"),
        ("<sha256>", "image ID"),
        ("example.com/<path244>", "too long"),
    ];

    #[test]
    fn the_error_names_the_part_that_is_wrong() {
        let part = |input: &str| match ImageReference::parse(input) {
            Err(Error::InvalidReference { part, .. }) => part,
            other => panic!("{input:?}: {other:?}"),
        };
        assert_eq!(part("alpine:-x"), ReferencePart::Tag);
        assert_eq!(part("alpine@sha256:abc"), ReferencePart::Digest);
        assert_eq!(part("Alpine"), ReferencePart::Name);
        assert_eq!(part("example.com:x/alpine"), ReferencePart::Name);
        // A name reason may quote a name that says "tag": the part is still the name.
        assert_eq!(part("invalid tag/x!"), ReferencePart::Name);
    }

    fn reason_of(input: &str) -> String {
        match ImageReference::parse(input) {
            Err(Error::InvalidReference {
                input: got, reason, ..
            }) => {
                assert_eq!(got, input, "error must carry the input");
                reason
            }
            Err(other) => panic!("{input:?}: wrong error kind {other:?}"),
            Ok(r) => panic!("{input:?}: expected an error, parsed as {r}"),
        }
    }

    #[test]
    fn reference_valid_table() {
        assert!(VALID.len() >= 45, "{} valid cases", VALID.len());
        for case in VALID {
            let input = expand(case.input);
            let r = ImageReference::parse(&input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert_eq!(r.registry(), expand(case.registry), "registry of {input:?}");
            assert_eq!(r.repository(), expand(case.repository), "repository of {input:?}");
            assert_eq!(
                r.tag().map(str::to_owned),
                case.tag.map(expand),
                "tag of {input:?}"
            );
            assert_eq!(
                r.digest().map(str::to_owned),
                case.digest.map(expand),
                "digest of {input:?}"
            );
            assert_eq!(r.api_host(), expand(case.api_host), "api_host of {input:?}");
            assert_eq!(r.to_string(), expand(case.display), "display of {input:?}");
            assert_eq!(r.is_pinned(), case.digest.is_some());
            assert_eq!(r.name(), format!("{}/{}", r.registry(), r.repository()));
            assert_eq!(r.reference(), r.digest().or(r.tag()).unwrap());
            assert_eq!(
                input.parse::<ImageReference>().unwrap(),
                r,
                "FromStr of {input:?}"
            );
        }
    }

    #[test]
    fn reference_round_trips() {
        for case in VALID {
            let r = ImageReference::parse(&expand(case.input)).unwrap();
            let again = ImageReference::parse(&r.to_string())
                .unwrap_or_else(|e| panic!("{r} does not parse back: {e}"));
            assert_eq!(again, r);
            assert_eq!(again.to_string(), r.to_string());
        }
    }

    #[test]
    fn reference_invalid_table() {
        assert!(INVALID.len() >= 15, "{} invalid cases", INVALID.len());
        for &(input, word) in INVALID {
            let input = expand(input);
            let reason = reason_of(&input);
            assert!(
                reason.contains(word),
                "{input:?}: reason {reason:?} lacks {word:?}"
            );
        }
    }

    #[test]
    fn reference_name_length_counts_normalised_name() {
        // 237 + "docker.io/library/" (18) = 255: allowed.
        let r = ImageReference::parse(&"a".repeat(237)).unwrap();
        assert_eq!(r.name().len(), 255);
        // 238 characters as typed, 256 once normalised: refused.
        assert!(reason_of(&"a".repeat(238)).contains("too long"));
    }

    #[test]
    fn reference_huge_input_gives_short_reason() {
        for input in [
            "a".repeat(100_000),
            "A".repeat(100_000),
            format!("foo:{}", "t".repeat(100_000)),
        ] {
            let reason = reason_of(&input);
            assert!(reason.len() < 300, "reason is {} bytes", reason.len());
        }
        let reason = reason_of(&format!("{}!", "é".repeat(50_000)));
        assert!(reason.contains("invalid character 'é'"), "{reason}");
    }

    /// Every short string over an alphabet of the interesting characters:
    /// no panics, every error is an `InvalidReference` with a reason, and
    /// everything accepted round-trips through `Display`.
    #[test]
    fn reference_exhaustive_short_inputs_round_trip_or_fail_cleanly() {
        const ALPHABET: &[&str] = &["a", "1", "A", "/", ":", "@", ".", "-", "_", "[", "]", "ö", " "];
        let mut inputs = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            frontier = frontier
                .iter()
                .flat_map(|prefix| ALPHABET.iter().map(move |c| format!("{prefix}{c}")))
                .collect();
            inputs.extend(frontier.iter().cloned());
        }
        let mut accepted = 0;
        for input in &inputs {
            match ImageReference::parse(input) {
                Ok(r) => {
                    accepted += 1;
                    assert_eq!(ImageReference::parse(&r.to_string()).unwrap(), r, "{input:?}");
                }
                Err(Error::InvalidReference { reason, .. }) => assert!(!reason.is_empty()),
                Err(other) => panic!("{input:?}: {other:?}"),
            }
        }
        assert!(accepted > 100, "only {accepted} accepted");
    }

    #[test]
    fn reference_with_tag_and_digest() {
        let digest = expand("sha256:<sha256>");
        let r = ImageReference::parse("ghcr.io/o/r:v1").unwrap();
        assert!(!r.is_pinned());
        assert!(!r.is_docker_hub());

        let pinned = r.with_digest(&digest).unwrap();
        assert!(pinned.is_pinned());
        assert_eq!(pinned.tag(), Some("v1"), "with_digest keeps the tag");
        assert_eq!(pinned.reference(), digest);
        assert_eq!(pinned.to_string(), format!("ghcr.io/o/r:v1@{digest}"));

        let retagged = pinned.with_tag("v2").unwrap();
        assert_eq!(
            retagged.digest(),
            Some(digest.as_str()),
            "with_tag keeps the digest"
        );
        assert_eq!(retagged.to_string(), format!("ghcr.io/o/r:v2@{digest}"));
        assert_eq!(ImageReference::parse(&retagged.to_string()).unwrap(), retagged);

        let Err(Error::InvalidReference {
            input, part, reason, ..
        }) = r.with_tag("-bad")
        else {
            panic!("bad tag accepted");
        };
        assert_eq!(input, "ghcr.io/o/r:-bad");
        assert_eq!(part, ReferencePart::Tag);
        assert!(reason.contains("tag"), "{reason}");
        let Err(Error::InvalidReference { reason, .. }) = r.with_digest("sha256:abc") else {
            panic!("bad digest accepted");
        };
        assert!(reason.contains("digest"), "{reason}");

        let hub = ImageReference::parse("alpine").unwrap();
        assert!(hub.is_docker_hub());
        assert_eq!(hub.api_host(), DOCKER_HUB_API_HOST);
        assert_eq!(hub.with_digest(&digest).unwrap().reference(), digest);
    }

    #[test]
    fn reference_error_display_names_input_and_reason() {
        let err = ImageReference::parse("UPPER/case").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"UPPER/case\"") && text.contains("lowercase"),
            "{text}"
        );
    }
}
