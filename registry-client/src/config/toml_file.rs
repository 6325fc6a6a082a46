//! Reading a TOML file into a typed schema, with errors that name the file,
//! the line and the key (`registry[1].mirror[0].location`): the one reader of
//! `registries.conf`, `hosts.toml` and the cache's own configuration file.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::{Error, Result};

/// A TOML file's path and text: what is deserialized, and what errors point into.
#[derive(Debug, Clone, Copy)]
pub struct TomlFile<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl<'a> TomlFile<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        TomlFile { path, text }
    }

    /// Reads the file at `path` (an unreadable file is an error naming it).
    pub fn read(path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.to_owned(),
            line: None,
            key: None,
            message: e.to_string(),
        })
    }

    /// The text as `T`. A syntax error names its line; a value of the wrong
    /// type, a missing or unknown key names the key too.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        let document =
            toml::Deserializer::parse(self.text).map_err(|e| self.error(e.span(), None, e.message()))?;
        serde_path_to_error::deserialize(document).map_err(|e| {
            let key = key_path(e.path());
            self.error(e.inner().span(), key, e.inner().message())
        })
    }

    /// An error at `span` of the text (its line), under `key`.
    pub fn error(&self, span: Option<Range<usize>>, key: Option<String>, message: impl AsRef<str>) -> Error {
        Error::ConfigFile {
            path: self.path.to_owned(),
            line: span.map(|span| self.line(span.start)),
            key,
            message: message.as_ref().trim_end().to_owned(),
        }
    }

    /// The 1-based line of byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        let before = &self.text.as_bytes()[..offset.min(self.text.len())];
        before.iter().filter(|&&b| b == b'\n').count() + 1
    }
}

/// A deserializer's path as TOML writes keys: `host."https://m.example".capabilities[1]`.
/// The segments `toml::Spanned` adds are left out; `None` at the top of the file.
pub fn key_path(path: &serde_path_to_error::Path) -> Option<String> {
    let mut key = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } if name.starts_with("$__serde_spanned") => {}
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(&toml_key(name));
            }
            Segment::Unknown => key.push_str(if key.is_empty() { "?" } else { ".?" }),
        }
    }
    (!key.is_empty()).then_some(key)
}

/// A key as TOML writes it: bare when it can be, else quoted.
pub(crate) fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use toml::Spanned;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Schema {
        route: Vec<Route>,
        #[serde(default)]
        host: BTreeMap<String, Host>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Route {
        name: Spanned<String>,
        port: Option<u16>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Host {
        capabilities: Vec<String>,
    }

    fn error_of(text: &str) -> (Option<usize>, Option<String>, String) {
        let file = TomlFile::new(Path::new("/etc/x.toml"), text);
        match file.deserialize::<Schema>() {
            Err(Error::ConfigFile {
                path,
                line,
                key,
                message,
            }) => {
                assert_eq!(path, Path::new("/etc/x.toml"));
                (line, key, message)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_line_and_the_key_as_toml_writes_it() {
        let (line, key, message) =
            error_of("[[route]]\nname = \"a\"\n\n[[route]]\nname = \"b\"\nport = \"x\"\n");
        assert_eq!(
            (line, key.as_deref()),
            (Some(6), Some("route[1].port")),
            "{message}"
        );
        let (line, key, _) = error_of("route = []\n[host.\"https://m.example\"]\ncapabilities = [1]\n");
        assert_eq!(line, Some(3));
        assert_eq!(key.as_deref(), Some("host.\"https://m.example\".capabilities[0]"));
        let (_, key, message) = error_of("[[route]]\nname = \"a\"\ncolour = 1\n");
        assert_eq!(key.as_deref(), Some("route[0].colour"), "{message}");
        assert!(message.contains("colour"), "{message}");
        // A syntax error has a line but no key.
        let (line, key, _) = error_of("route = [\n  {name = }\n]\n");
        assert_eq!((line, key), (Some(2), None));
    }

    #[test]
    fn spanned_values_keep_their_key() {
        let (_, key, _) = error_of("[[route]]\nname = 3\n");
        assert_eq!(key.as_deref(), Some("route[0].name"));
    }
}
