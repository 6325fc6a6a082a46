//! podman's and CRI-O's `registries.conf` (containers-registries.conf(5)):
//! the `[[registry]]` tables of version 2 (prefixes, remapped locations,
//! mirrors, `insecure`, `blocked`) and the `[registries.insecure]` and
//! `[registries.block]` lists of the deprecated version 1, read as
//! [`RegistrySources`] rules. [`load_system`] reads the files podman reads,
//! drop-ins in `registries.conf.d` included (containers-registries.conf.d(5)).
//!
//! Short names are not resolved here, so `unqualified-search-registries`,
//! `[aliases]`, `short-name-mode` and `credential-helpers` are only checked
//! for their types. Unknown keys are ignored, as podman ignores them.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::{fs, io};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;

use super::toml_file::TomlFile;
use crate::driver::sources::{Mirror, Prefix, RegistrySources, Serves};
use crate::error::{Error, Result};
use crate::model::reference::{check_registry, check_repository_path};

/// Names the main file instead of the usual ones (podman's override).
const ENV_FILE: &str = "CONTAINERS_REGISTRIES_CONF";
const SYSTEM_DIR: &str = "/etc/containers";
/// Under `$HOME`.
const USER_DIR: &str = ".config/containers";
const FILE_NAME: &str = "registries.conf";
const DROP_IN_DIR: &str = "registries.conf.d";

/// Reads one `registries.conf` file (version 2, or the deprecated version
/// 1), without drop-ins. A missing file is an error: it was asked for.
pub fn load(path: &Path) -> Result<Vec<RegistrySources>> {
    let text = fs::read_to_string(path).map_err(|e| io_error(path, &e))?;
    parse(path, &text, Format::AnyVersion)
}

/// Reads the files podman reads. The main file is
/// `$CONTAINERS_REGISTRIES_CONF` if set, else
/// `$HOME/.config/containers/registries.conf` if it exists, else
/// `/etc/containers/registries.conf`. Then the `*.conf` drop-ins, in name
/// order, of `/etc/containers/registries.conf.d` and of
/// `$HOME/.config/containers/registries.conf.d` (only the latter when the
/// main file is the user's). A later file's rule replaces an earlier one
/// with the same prefix. Missing files and directories are skipped, except
/// a main file named by the environment.
pub fn load_system() -> Result<Vec<RegistrySources>> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    load_system_from(
        non_empty(ENV_FILE).as_deref(),
        non_empty("HOME").as_deref(),
        Path::new(SYSTEM_DIR),
    )
}

/// [`load_system`] with its roots given: the environment's file, the home
/// directory, and the directory standing for `/etc/containers`.
fn load_system_from(named: Option<&Path>, home: Option<&Path>, etc: &Path) -> Result<Vec<RegistrySources>> {
    let files = SystemFiles::find(named, home, etc);
    let mut rules = if files.main_required {
        load(&files.main)?
    } else {
        load_if_exists(&files.main, Format::AnyVersion)?
    };
    for dir in &files.drop_in_dirs {
        for path in drop_in_files(dir)? {
            // One removed since the directory was listed is skipped, as podman does.
            merge(&mut rules, load_if_exists(&path, Format::Version2Only)?);
        }
    }
    Ok(rules)
}

/// Reads `path` if it exists; no rules if it does not.
fn load_if_exists(path: &Path, format: Format) -> Result<Vec<RegistrySources>> {
    match fs::read_to_string(path) {
        Ok(text) => parse(path, &text, format),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error(path, &e)),
    }
}

/// The files podman reads, in order.
#[derive(Debug, PartialEq)]
struct SystemFiles {
    main: PathBuf,
    /// Whether a missing main file is an error (when the environment names it).
    main_required: bool,
    drop_in_dirs: Vec<PathBuf>,
}

impl SystemFiles {
    fn find(named: Option<&Path>, home: Option<&Path>, etc: &Path) -> SystemFiles {
        let user_dir = home.map(|home| home.join(USER_DIR));
        let user_drop_ins = user_dir.as_ref().map(|dir| dir.join(DROP_IN_DIR));
        let both_drop_ins = || {
            std::iter::once(etc.join(DROP_IN_DIR))
                .chain(user_drop_ins.clone())
                .collect()
        };
        if let Some(named) = named {
            return SystemFiles {
                main: named.to_owned(),
                main_required: true,
                drop_in_dirs: both_drop_ins(),
            };
        }
        if let Some(user_file) = user_dir.map(|dir| dir.join(FILE_NAME))
            && user_file.exists()
        {
            // The user's own file replaces the system's, drop-ins included.
            return SystemFiles {
                main: user_file,
                main_required: false,
                drop_in_dirs: user_drop_ins.into_iter().collect(),
            };
        }
        SystemFiles {
            main: etc.join(FILE_NAME),
            main_required: false,
            drop_in_dirs: both_drop_ins(),
        }
    }
}

/// The `*.conf` files directly in `dir`, in name order; none if it is missing.
fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, &e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, &e))?;
        let path = entry.path();
        let is_dir = entry.file_type().map_err(|e| io_error(&path, &e))?.is_dir();
        if !is_dir && entry.file_name().as_encoded_bytes().ends_with(b".conf") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A later file's rules: one with a prefix already seen replaces that rule
/// where it stands, a new one goes last.
fn merge(rules: &mut Vec<RegistrySources>, later: Vec<RegistrySources>) {
    for rule in later {
        match rules.iter_mut().find(|r| r.prefix == rule.prefix) {
            Some(earlier) => *earlier = rule,
            None => rules.push(rule),
        }
    }
}

fn io_error(path: &Path, error: &io::Error) -> Error {
    Error::ConfigFile {
        path: path.to_owned(),
        line: None,
        key: None,
        message: error.to_string(),
    }
}

/// Which versions of the format a file may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    AnyVersion,
    /// Drop-ins (containers-registries.conf.d(5)).
    Version2Only,
}

/// A whole file, both versions at once (a file uses one or the other).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfFile {
    registry: Option<Vec<Spanned<RegistryTable>>>,
    #[serde(rename = "registries")]
    version1: Version1Tables,
    // Short-name and credential settings, unused here but typed, so that a
    // wrong type is reported as podman reports it.
    #[serde(rename = "unqualified-search-registries")]
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(rename = "credential-helpers")]
    credential_helpers: Option<Vec<String>>,
    #[serde(rename = "short-name-mode")]
    short_name_mode: Option<String>,
    aliases: Option<BTreeMap<String, String>>,
}

impl ConfFile {
    /// Whether anything of version 2 is set (podman counts every key).
    fn has_version2_settings(&self) -> bool {
        self.registry.is_some()
            || self.unqualified_search_registries.is_some()
            || self.credential_helpers.is_some()
            || self
                .short_name_mode
                .as_deref()
                .is_some_and(|mode| !mode.is_empty())
            || self.aliases.is_some()
    }
}

/// One `[[registry]]` table.
#[derive(Deserialize)]
struct RegistryTable {
    prefix: Option<Spanned<String>>,
    location: Option<Spanned<String>>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(rename = "mirror-by-digest-only", default)]
    mirror_by_digest_only: bool,
    /// Only for mirrors; read to refuse it here, as podman does.
    #[serde(rename = "pull-from-mirror")]
    pull_from_mirror: Option<Spanned<String>>,
    #[serde(rename = "mirror", default)]
    mirrors: Vec<Spanned<MirrorTable>>,
}

/// One `[[registry.mirror]]` table.
#[derive(Deserialize)]
struct MirrorTable {
    location: Option<Spanned<String>>,
    #[serde(default)]
    insecure: bool,
    #[serde(rename = "pull-from-mirror")]
    pull_from_mirror: Option<Spanned<String>>,
}

/// Version 1: `[registries.search]`, `[registries.insecure]`, `[registries.block]`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Version1Tables {
    search: Version1List,
    insecure: Version1List,
    block: Version1List,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Version1List {
    registries: Option<Spanned<Vec<Spanned<String>>>>,
}

impl Version1Tables {
    /// The first list that is set, with its key: where the file is version 1.
    fn first_list(&self) -> Option<Place> {
        [
            ("search", &self.search),
            ("insecure", &self.insecure),
            ("block", &self.block),
        ]
        .into_iter()
        .find_map(|(name, list)| {
            let registries = list.registries.as_ref()?;
            Some(Place::new(
                format!("registries.{name}.registries"),
                registries.span(),
            ))
        })
    }
}

/// Reads the text of `path` as a `registries.conf`.
fn parse(path: &Path, text: &str, format: Format) -> Result<Vec<RegistrySources>> {
    tracing::debug!(path = %path.display(), "reading registries.conf");
    let file = ConfText { path, text };
    let conf: ConfFile = file.deserialize()?;
    let rules = match conf.version1.first_list() {
        None => version2_rules(&file, conf.registry.unwrap_or_default())?,
        Some(list) if format == Format::Version2Only => {
            return Err(file.error(
                &list,
                "a drop-in file must use the version 2 format ([[registry]] tables), \
                 not version 1's [registries.*] lists",
            ));
        }
        Some(list) if conf.has_version2_settings() => {
            return Err(file.error(
                &list,
                "mixing version 1 ([registries.*] lists) and version 2 ([[registry]] tables, \
                 top-level settings) in one file is not supported",
            ));
        }
        Some(_) => version1_rules(&file, conf.version1)?,
    };
    let origin = path.display().to_string();
    Ok(rules
        .into_iter()
        .map(|rule| rule.with_origin(origin.clone()))
        .collect())
}

/// The `[[registry]]` tables, in file order.
fn version2_rules(file: &ConfText, tables: Vec<Spanned<RegistryTable>>) -> Result<Vec<RegistrySources>> {
    let mut prefixes: HashMap<String, Place> = HashMap::new();
    let mut locations: HashMap<String, LocationUse> = HashMap::new();
    let mut rules = Vec::with_capacity(tables.len());
    for (index, table) in tables.into_iter().enumerate() {
        let checked = registry_rule(file, index, table)?;
        let rule = checked.rule;
        if let Some(earlier) = prefixes.get(&rule.prefix) {
            // podman keeps the first table and ignores the others (refusing
            // them would break files it accepts); we say so.
            tracing::warn!(
                path = %file.path.display(),
                "{} repeats prefix {:?} of {}; it is ignored, as podman ignores it",
                file.describe(&checked.table_place),
                rule.prefix,
                file.describe(earlier)
            );
            continue;
        }
        prefixes.insert(rule.prefix.clone(), checked.table_place.clone());
        let used = LocationUse {
            table: checked.table_place,
            insecure: rule.insecure,
            blocked: rule.blocked,
        };
        match locations.get(&checked.physical) {
            Some(earlier) => check_same_settings(file, &checked.physical, earlier, &used)?,
            None => {
                locations.insert(checked.physical, used);
            }
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// A `[[registry]]` table as a rule, with what the file-wide checks need.
struct CheckedRegistry {
    rule: RegistrySources,
    /// The `[[registry]]` table.
    table_place: Place,
    /// Where its requests go: the location, or the prefix when there is none.
    physical: String,
}

fn registry_rule(file: &ConfText, index: usize, table: Spanned<RegistryTable>) -> Result<CheckedRegistry> {
    let key = format!("registry[{index}]");
    let table_place = Place::new(key.clone(), table.span());
    let table = table.into_inner();
    let location_field = Field::of(&table.location, format!("{key}.location"), &table_place);
    let location = file.trimmed(&location_field, "location")?;
    let prefix_field = Field::of(&table.prefix, format!("{key}.prefix"), &table_place);
    let given_prefix = file.trimmed(&prefix_field, "prefix")?;
    // A missing prefix is the location (the usual way to write a table).
    let (prefix, prefix_place) = match (given_prefix, location) {
        ("", "") => return Err(file.error(&table_place, "both prefix and location are unset or empty")),
        ("", location) => (location, location_field.place.clone()),
        (prefix, _) => (prefix, prefix_field.place),
    };
    let wildcard = file.prefix_is_wildcard(prefix, &prefix_place)?;
    if location.is_empty() && !wildcard {
        // podman's rule: only a wildcard prefix may leave the location unset.
        return Err(file.error(
            &location_field.place,
            format!("location is unset and prefix {prefix:?} is not of the form *.example.com"),
        ));
    }
    if let Some(value) = &table.pull_from_mirror
        && !value.get_ref().is_empty()
    {
        let place = Place::new(format!("{key}.pull-from-mirror"), value.span());
        return Err(file.error(
            &place,
            "pull-from-mirror belongs in a [[registry.mirror]] table, not the registry",
        ));
    }
    let mut rule = RegistrySources::new(prefix)
        .insecure(table.insecure)
        .blocked(table.blocked);
    if !location.is_empty() && (wildcard || location != prefix) {
        rule = rule.location(moved_location(file, location, &location_field.place)?);
    }
    for (mirror_index, mirror) in table.mirrors.into_iter().enumerate() {
        let mirror_key = format!("{key}.mirror[{mirror_index}]");
        rule = rule.mirror(mirror_of(file, &mirror_key, mirror, table.mirror_by_digest_only)?);
    }
    let physical = if location.is_empty() { prefix } else { location }.to_owned();
    Ok(CheckedRegistry {
        rule,
        table_place,
        physical,
    })
}

/// Where the registry moved (podman's remapping: prefix `example.com/foo`,
/// location `internal.example.net/bar`; for `*.example.com`, the matching
/// host is replaced).
fn moved_location(file: &ConfText, location: &str, place: &Place) -> Result<Mirror> {
    file.check_location(location, place)?;
    Ok(Mirror::new(location))
}

/// One `[[registry.mirror]]` table. `by_digest_only` is the registry's
/// `mirror-by-digest-only`.
fn mirror_of(
    file: &ConfText,
    key: &str,
    table: Spanned<MirrorTable>,
    by_digest_only: bool,
) -> Result<Mirror> {
    let table_place = Place::new(key.to_owned(), table.span());
    let table = table.into_inner();
    let location_field = Field::of(&table.location, format!("{key}.location"), &table_place);
    let location = file.trimmed(&location_field, "location")?;
    if location.is_empty() {
        return Err(file.error(&location_field.place, "a mirror needs a location"));
    }
    file.check_location(location, &location_field.place)?;
    let serves = match &table.pull_from_mirror {
        Some(value) => {
            let place = Place::new(format!("{key}.pull-from-mirror"), value.span());
            pull_from_mirror(file, value.get_ref(), &place, by_digest_only)?
        }
        None if by_digest_only => Serves::DigestPulls,
        None => Serves::All,
    };
    Ok(Mirror::new(location).insecure(table.insecure).serves(serves))
}

/// A mirror's `pull-from-mirror`.
fn pull_from_mirror(file: &ConfText, value: &str, place: &Place, by_digest_only: bool) -> Result<Serves> {
    if by_digest_only && !value.is_empty() {
        return Err(file.error(
            place,
            "cannot be set when the registry sets mirror-by-digest-only; use one or the other",
        ));
    }
    match value {
        "" if by_digest_only => Ok(Serves::DigestPulls),
        "" | "all" => Ok(Serves::All),
        "digest-only" => Ok(Serves::DigestPulls),
        "tag-only" => Ok(Serves::TagPulls),
        other => Err(file.error(
            place,
            format!("unsupported value {other:?} (expected \"all\", \"digest-only\" or \"tag-only\")"),
        )),
    }
}

/// A registry's settings as one `[[registry]]` table gives them.
struct LocationUse {
    table: Place,
    insecure: bool,
    blocked: bool,
}

/// podman refuses a registry reached through several tables with different
/// `insecure` or `blocked` settings: which one applies would be a guess.
fn check_same_settings(
    file: &ConfText,
    location: &str,
    earlier: &LocationUse,
    later: &LocationUse,
) -> Result<()> {
    let conflict = |setting: &str, value: bool| {
        let place = Place {
            key: format!("{}.{setting}", later.table.key),
            span: later.table.span.clone(),
        };
        let message = format!(
            "registry {location:?} is also used by {} with {setting} = {}; \
             the tables of one registry must agree",
            file.describe(&earlier.table),
            !value
        );
        file.error(&place, message)
    };
    if later.insecure != earlier.insecure {
        return Err(conflict("insecure", later.insecure));
    }
    if later.blocked != earlier.blocked {
        return Err(conflict("blocked", later.blocked));
    }
    Ok(())
}

/// Version 1's lists: a rule for each host, blocked hosts first (podman's
/// order); a host in both lists is both. `search` is for short names only.
fn version1_rules(file: &ConfText, tables: Version1Tables) -> Result<Vec<RegistrySources>> {
    // (host, blocked, insecure), in first-seen order.
    let mut hosts: Vec<(String, bool, bool)> = Vec::new();
    for (name, list, blocks) in [
        ("block", tables.block, true),
        ("insecure", tables.insecure, false),
    ] {
        let entries = list.registries.map(Spanned::into_inner).unwrap_or_default();
        for (index, entry) in entries.iter().enumerate() {
            let field = Field {
                value: entry.get_ref(),
                place: Place::new(format!("registries.{name}.registries[{index}]"), entry.span()),
            };
            let host = file.trimmed(&field, "registry")?;
            if host.is_empty() {
                return Err(file.error(&field.place, "empty registry"));
            }
            if file.prefix_is_wildcard(host, &field.place)? {
                return Err(file.error(
                    &field.place,
                    "a wildcard needs the version 2 format ([[registry]] prefix)",
                ));
            }
            let at = match hosts.iter().position(|(h, _, _)| h == host) {
                Some(at) => at,
                None => {
                    hosts.push((host.to_owned(), false, false));
                    hosts.len() - 1
                }
            };
            if blocks {
                hosts[at].1 = true;
            } else {
                hosts[at].2 = true;
            }
        }
    }
    Ok(hosts
        .into_iter()
        .map(|(host, blocked, insecure)| RegistrySources::new(host).blocked(blocked).insecure(insecure))
        .collect())
}

/// Where a value is: its key path and its bytes in the file.
#[derive(Debug, Clone)]
struct Place {
    key: String,
    span: Option<Range<usize>>,
}

impl Place {
    fn new(key: String, span: Range<usize>) -> Place {
        Place {
            key,
            span: Some(span),
        }
    }
}

/// A string value and where it is; an absent key is empty, and placed at
/// its table (so an error still has a line).
struct Field<'a> {
    value: &'a str,
    place: Place,
}

impl<'a> Field<'a> {
    fn of(value: &'a Option<Spanned<String>>, key: String, table: &Place) -> Field<'a> {
        match value {
            Some(value) => Field {
                value: value.get_ref(),
                place: Place::new(key, value.span()),
            },
            None => Field {
                value: "",
                place: Place {
                    key,
                    span: table.span.clone(),
                },
            },
        }
    }
}

/// A file being read, for errors that name its path, line and key.
struct ConfText<'a> {
    path: &'a Path,
    text: &'a str,
}

impl ConfText<'_> {
    fn deserialize<T: DeserializeOwned>(&self) -> Result<T> {
        TomlFile::new(self.path, self.text).deserialize()
    }

    fn error(&self, place: &Place, message: impl Into<String>) -> Error {
        Error::ConfigFile {
            path: self.path.to_owned(),
            line: place.span.as_ref().map(|span| self.line(span)),
            key: Some(place.key.clone()),
            message: message.into(),
        }
    }

    /// `registry[0] (line 3)`, for messages about another table.
    fn describe(&self, place: &Place) -> String {
        match &place.span {
            Some(span) => format!("{} (line {})", place.key, self.line(span)),
            None => place.key.clone(),
        }
    }

    /// The 1-based line a span starts on.
    fn line(&self, span: &Range<usize>) -> usize {
        TomlFile::new(self.path, self.text).line(span.start)
    }

    /// podman's rules for a `prefix` or `location`: trailing slashes go, a
    /// URI scheme is refused (the scheme follows from `insecure`).
    fn trimmed<'v>(&self, field: &Field<'v>, what: &str) -> Result<&'v str> {
        let trimmed = field.value.trim_end_matches('/');
        if trimmed.contains("://") {
            return Err(self.error(
                &field.place,
                format!(
                    "invalid {what} {:?}: URI schemes are not supported \
                     (write host[:port][/namespace]; use insecure = true for plain HTTP)",
                    field.value
                ),
            ));
        }
        Ok(trimmed)
    }

    /// Checks a prefix as the rule table will; whether it is `*.domain`.
    fn prefix_is_wildcard(&self, prefix: &str, place: &Place) -> Result<bool> {
        match Prefix::parse(prefix) {
            Ok(Prefix::Subdomains(_)) => Ok(true),
            Ok(Prefix::Name { .. }) => Ok(false),
            // containerd's catch-all; podman has none, and would match it literally.
            Ok(Prefix::Any) => Err(self.error(
                place,
                format!("invalid prefix {prefix:?} (expected host[:port][/namespace…] or *.domain)"),
            )),
            Err(reason) => Err(self.error(place, reason)),
        }
    }

    /// A location is `host[:port][/namespace…]`, no tag, digest or wildcard.
    fn check_location(&self, location: &str, place: &Place) -> Result<()> {
        let (registry, path) = match location.split_once('/') {
            Some((registry, path)) => (registry, Some(path)),
            None => (location, None),
        };
        check_registry(registry)
            .and_then(|()| path.map_or(Ok(()), check_repository_path))
            .map_err(|reason| self.error(place, format!("invalid location {location:?}: {reason}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::ImageReference;
    use crate::portable::client::RepositoryClient;

    /// Writes `text` to `dir/name`, creating directories on the way.
    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }

    /// The sources a client configured by `path` tries for `reference`.
    fn sources(path: &Path, reference: &str) -> Result<Vec<String>> {
        let client = RepositoryClient::builder("oci").registries_conf(path).build()?;
        client.sources_for(&ImageReference::parse(reference).unwrap())
    }

    fn digest_of(name: &str) -> String {
        format!("{name}@sha256:{}", "a".repeat(64))
    }

    /// Loads `text` as a file that must be refused, returning its error's
    /// line, key and display.
    fn refused(text: &str) -> (Option<usize>, Option<String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "registries.conf", text);
        let error = load(&path).unwrap_err();
        let display = error.to_string();
        assert!(display.starts_with(&path.display().to_string()), "{display}");
        match error {
            Error::ConfigFile { line, key, .. } => (line, key, display),
            other => panic!("not a ConfigFile error: {other}"),
        }
    }

    const MAN_PAGE_EXAMPLE: &str = r#"
unqualified-search-registries = ["example.com"]

[[registry]]
prefix = "example.com/foo"
insecure = false
blocked = false
location = "internal-registry-for-example.com/bar"

[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true

[[registry]]
location = "registry.com"

[[registry.mirror]]
location = "mirror.registry.com"
"#;

    #[test]
    fn man_page_example_gives_the_documented_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "registries.conf", MAN_PAGE_EXAMPLE);
        assert_eq!(
            sources(&path, "example.com/foo/image:latest").unwrap(),
            [
                "example-mirror-0.local/mirror-for-foo",
                "example-mirror-1.local/mirrors/foo",
                "internal-registry-for-example.com/bar",
            ]
        );
        assert_eq!(
            sources(&path, "registry.com/image:latest").unwrap(),
            ["mirror.registry.com", "registry.com"],
            "a mirror belongs to its own [[registry]] only"
        );
        assert_eq!(
            sources(&path, "example.com/other:latest").unwrap(),
            ["example.com"]
        );

        let rules = load(&path).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].prefix(), "example.com/foo");
        assert!(rules[0].mirrors()[1].is_insecure() && !rules[0].mirrors()[0].is_insecure());
        assert_eq!(
            rules[1].prefix(),
            "registry.com",
            "a missing prefix is the location"
        );
        assert!(rules[1].uses_registry());
        let origin = path.display().to_string();
        assert!(rules.iter().all(|r| r.origin.as_deref() == Some(origin.as_str())));
    }

    #[test]
    fn the_longest_prefix_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registries.conf",
            r#"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "hub-mirror.example.com"

[[registry]]
prefix = "docker.io/library"
location = "docker.io/library/"
[[registry.mirror]]
location = "library-mirror.example.com/library/"
"#,
        );
        assert_eq!(
            sources(&path, "docker.io/library/alpine:3").unwrap(),
            ["library-mirror.example.com/library", "docker.io"]
        );
        assert_eq!(
            sources(&path, "docker.io/grafana/grafana:11").unwrap(),
            ["hub-mirror.example.com", "docker.io"]
        );
    }

    #[test]
    fn pull_from_mirror_picks_mirrors_by_kind_of_pull() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registries.conf",
            r#"
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "digests.example.com"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.example.com"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "all.example.com"
pull-from-mirror = "all"
[[registry.mirror]]
location = "default.example.com"
pull-from-mirror = ""

[[registry]]
location = "ghcr.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "one.example.com"
[[registry.mirror]]
location = "two.example.com"
"#,
        );
        assert_eq!(
            sources(&path, "quay.io/app/server:1").unwrap(),
            [
                "tags.example.com",
                "all.example.com",
                "default.example.com",
                "quay.io"
            ]
        );
        assert_eq!(
            sources(&path, &digest_of("quay.io/app/server")).unwrap(),
            [
                "digests.example.com",
                "all.example.com",
                "default.example.com",
                "quay.io"
            ]
        );
        assert_eq!(
            sources(&path, "ghcr.io/app/server:1").unwrap(),
            ["ghcr.io"],
            "mirror-by-digest-only leaves tags to the registry"
        );
        assert_eq!(
            sources(&path, &digest_of("ghcr.io/app/server")).unwrap(),
            ["one.example.com", "two.example.com", "ghcr.io"]
        );
    }

    #[test]
    fn wildcard_prefixes_and_registry_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registries.conf",
            r#"
[[registry]]
prefix = "*.example.com"
insecure = true
[[registry.mirror]]
location = "cache.internal:5000/example"

[[registry]]
location = "registry.lan:5000"
insecure = true
"#,
        );
        let rules = load(&path).unwrap();
        assert!(rules.iter().all(|r| r.insecure));
        assert!(matches!(
            rules[0].registry,
            crate::driver::sources::RegistryTarget::Itself
        ));
        assert_eq!(
            sources(&path, "a.b.example.com/team/app:1").unwrap(),
            ["cache.internal:5000/example", "a.b.example.com"]
        );
    }

    #[test]
    fn blocked_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registries.conf",
            "[[registry]]\nlocation = \"registry.untrusted.com\"\nblocked = true\n",
        );
        let error = sources(&path, "registry.untrusted.com/app:1").unwrap_err();
        match &error {
            Error::Blocked { name, rule } => {
                assert!(name.contains("registry.untrusted.com/app"), "{error}");
                assert!(
                    rule.contains(&path.display().to_string()),
                    "names the file: {error}"
                );
            }
            other => panic!("expected Blocked, got {other}"),
        }
        assert_eq!(sources(&path, "quay.io/app:1").unwrap(), ["quay.io"]);
    }

    #[test]
    fn version_1_lists_become_insecure_and_blocked_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registries.conf",
            r#"
[registries.search]
registries = ['registry1.com', 'registry2.com']

[registries.insecure]
registries = ['registry3.com', 'both.example.com/']

[registries.block]
registries = ['registry.untrusted.com', 'both.example.com']
"#,
        );
        let rules = load(&path).unwrap();
        let summary: Vec<_> = rules
            .iter()
            .map(|r| (r.prefix(), r.is_blocked(), r.insecure))
            .collect();
        assert_eq!(
            summary,
            [
                ("registry.untrusted.com", true, false),
                ("both.example.com", true, true),
                ("registry3.com", false, true),
            ],
            "blocked hosts first, as podman converts them; search is not a rule"
        );
        assert!(matches!(
            sources(&path, "registry.untrusted.com/x:1"),
            Err(Error::Blocked { .. })
        ));
        assert_eq!(sources(&path, "registry1.com/x:1").unwrap(), ["registry1.com"]);
    }

    #[test]
    fn short_name_settings_and_unknown_keys_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registries.conf",
            r#"
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]
credential-helpers = ["containers-auth.json"]
short-name-mode = "enforcing"
some-future-setting = { anything = 1 }

[[registry]]
location = "docker.io"
some-future-key = "x"
[[registry.mirror]]
location = "mirror.gcr.io"
another-future-key = 1

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"#,
        );
        assert_eq!(
            sources(&path, "docker.io/library/alpine:3").unwrap(),
            ["mirror.gcr.io", "docker.io"]
        );

        let shortnames = write(
            dir.path(),
            "shortnames.conf",
            "[aliases]\n  \"almalinux\" = \"docker.io/library/almalinux\"\n  \"ubi9\" = \"registry.access.redhat.com/ubi9\"\n",
        );
        assert!(load(&shortnames).unwrap().is_empty());

        let (line, key, display) = refused("short-name-mode = 1\n");
        assert_eq!(
            (line, key.as_deref()),
            (Some(1), Some("short-name-mode")),
            "{display}"
        );
        let (_, key, display) = refused("[aliases]\nfedora = 1\n");
        assert_eq!(key.as_deref(), Some("aliases.fedora"), "{display}");
    }

    /// A file [`load`] refuses: the line and key the error names, and what it says besides.
    struct Refusal {
        text: &'static str,
        line: Option<usize>,
        key: Option<&'static str>,
        says: &'static [&'static str],
    }

    /// Each of `refusals` is refused, naming the file, its line and its key.
    fn assert_refused(refusals: &[Refusal]) {
        for refusal in refusals {
            let (line, key, display) = refused(refusal.text);
            assert_eq!(
                (line, key.as_deref()),
                (refusal.line, refusal.key),
                "{display}\nfor:\n{}",
                refusal.text
            );
            for said in refusal.says {
                assert!(display.contains(said), "does not say {said:?}: {display}");
            }
        }
    }

    #[test]
    fn refuses_bad_toml_with_its_line() {
        assert_refused(&[Refusal {
            text: "[[registry]]\nlocation = \"docker.io\"\ninsecure = tru\n",
            line: Some(3),
            key: None,
            says: &[", line 3: "],
        }]);
    }

    #[test]
    fn refuses_a_wrong_type_with_key_and_line() {
        assert_refused(&[
            Refusal {
                text: "[[registry]]\nlocation = \"docker.io\"\n\n[[registry]]\nlocation = \"quay.io\"\ninsecure = \"yes\"\n",
                line: Some(6),
                key: Some("registry[1].insecure"),
                // ...and what was expected.
                says: &[", line 6, registry[1].insecure: ", "bool"],
            },
            Refusal {
                text: "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = 5\n",
                line: Some(4),
                key: Some("registry[0].mirror[0].location"),
                says: &[],
            },
        ]);
    }

    #[test]
    fn refuses_an_unknown_pull_from_mirror() {
        assert_refused(&[Refusal {
            text: r#"[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "a.example.com"
[[registry.mirror]]
location = "b.example.com"
pull-from-mirror = "digests"
"#,
            line: Some(7),
            key: Some("registry[0].mirror[1].pull-from-mirror"),
            says: &["\"digests\"", "digest-only"],
        }]);
    }

    #[test]
    fn refuses_pull_from_mirror_with_mirror_by_digest_only() {
        assert_refused(&[
            Refusal {
                text: "[[registry]]\nlocation = \"quay.io\"\nmirror-by-digest-only = true\n\
                       [[registry.mirror]]\nlocation = \"a.example.com\"\npull-from-mirror = \"tag-only\"\n",
                line: Some(6),
                key: Some("registry[0].mirror[0].pull-from-mirror"),
                says: &["mirror-by-digest-only"],
            },
            Refusal {
                text: "[[registry]]\nlocation = \"quay.io\"\npull-from-mirror = \"all\"\n",
                line: Some(3),
                key: Some("registry[0].pull-from-mirror"),
                says: &[],
            },
        ]);
    }

    #[test]
    fn refuses_uri_schemes_in_locations() {
        assert_refused(&[
            Refusal {
                text: "[[registry]]\nprefix = \"quay.io\"\nlocation = \"https://quay.io\"\n",
                line: Some(3),
                key: Some("registry[0].location"),
                says: &["URI schemes are not supported"],
            },
            Refusal {
                text: "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"http://mirror.lan\"\n",
                line: Some(4),
                key: Some("registry[0].mirror[0].location"),
                says: &["\"http://mirror.lan\""],
            },
        ]);
    }

    #[test]
    fn a_prefix_given_twice_keeps_its_first_table_like_podman() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registries.conf",
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"first.lan\"\n\n\
             [[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\
             [[registry.mirror]]\nlocation = \"second.lan\"\n",
        );
        assert_eq!(
            sources(&path, "docker.io/library/alpine:3").unwrap(),
            ["first.lan", "docker.io"]
        );
    }

    #[test]
    fn a_wildcard_prefix_with_a_location_moves_every_matching_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registries.conf",
            "[[registry]]\nprefix = \"*.example.com\"\nlocation = \"mirror.example.net/all\"\n",
        );
        assert_eq!(
            sources(&path, "a.example.com/team/app:1").unwrap(),
            ["mirror.example.net/all"]
        );
        let (_, key, display) = refused("[[registry]]\nlocation = \"*.example.com\"\n");
        assert_eq!(key.as_deref(), Some("registry[0].location"), "{display}");
    }

    #[test]
    fn refuses_a_prefix_without_a_location_unless_it_is_a_wildcard() {
        assert_refused(&[Refusal {
            text: "[[registry]]\nprefix = \"quay.io\"\ninsecure = true\n",
            line: Some(1),
            key: Some("registry[0].location"),
            says: &["*.example.com"],
        }]);
    }

    #[test]
    fn refuses_a_table_without_prefix_or_location() {
        assert_refused(&[
            Refusal {
                text: "[[registry]]\nlocation = \"quay.io\"\n\n[[registry]]\nprefix = \"\"\ninsecure = true\n",
                line: Some(4),
                key: Some("registry[1]"),
                says: &["prefix and location"],
            },
            Refusal {
                text: "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\ninsecure = true\n",
                line: Some(3),
                key: Some("registry[0].mirror[0].location"),
                says: &[],
            },
        ]);
    }

    #[test]
    fn refuses_bad_prefixes_and_locations_where_they_are_written() {
        assert_refused(&[
            Refusal {
                text: "[[registry]]\nprefix = \"Docker.io/Library\"\nlocation = \"docker.io\"\n",
                line: Some(2),
                key: Some("registry[0].prefix"),
                says: &[],
            },
            Refusal {
                text: "[[registry]]\nprefix = \"*\"\n",
                line: Some(2),
                key: Some("registry[0].prefix"),
                says: &[],
            },
            Refusal {
                text: "[[registry]]\nprefix = \"quay.io/a\"\nlocation = \"internal.lan/UPPER\"\n",
                line: Some(3),
                key: Some("registry[0].location"),
                says: &["invalid location \"internal.lan/UPPER\""],
            },
        ]);
    }

    #[test]
    fn refuses_conflicting_settings_for_one_registry() {
        assert_refused(&[Refusal {
            text: r#"[[registry]]
prefix = "example.com/a"
location = "internal.lan/shared"

[[registry]]
prefix = "example.com/b"
location = "internal.lan/shared"
insecure = true
"#,
            // The table that disagrees.
            line: Some(5),
            key: Some("registry[1].insecure"),
            says: &["registry[0] (line 1)"],
        }]);
    }

    #[test]
    fn refuses_mixing_versions_1_and_2() {
        assert_refused(&[
            Refusal {
                text: "[[registry]]\nlocation = \"quay.io\"\n\n[registries.insecure]\nregistries = [\"registry.lan\"]\n",
                line: Some(5),
                key: Some("registries.insecure.registries"),
                says: &["mixing version 1"],
            },
            Refusal {
                text: "unqualified-search-registries = [\"docker.io\"]\n[registries.block]\nregistries = [\"x.lan\"]\n",
                line: Some(3),
                key: Some("registries.block.registries"),
                says: &["mixing version 1"],
            },
            // Not mixed, but a version 1 entry with a scheme: named down to its index.
            Refusal {
                text: "[registries.block]\nregistries = [\"ok.lan\", \"https://x.lan\"]\n",
                line: Some(2),
                key: Some("registries.block.registries[1]"),
                says: &[],
            },
        ]);
    }

    #[test]
    fn load_refuses_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere.conf");
        let error = load(&path).unwrap_err();
        assert!(
            matches!(
                &error,
                Error::ConfigFile {
                    line: None,
                    key: None,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error.to_string().starts_with(&path.display().to_string()),
            "{error}"
        );
    }

    /// A home and an `/etc/containers` in a temporary directory.
    struct Roots {
        _dir: tempfile::TempDir,
        home: PathBuf,
        etc: PathBuf,
    }

    impl Roots {
        fn new() -> Roots {
            let dir = tempfile::tempdir().unwrap();
            let home = dir.path().join("home");
            let etc = dir.path().join("etc/containers");
            fs::create_dir_all(&home).unwrap();
            Roots { _dir: dir, home, etc }
        }

        fn user(&self) -> PathBuf {
            self.home.join(".config/containers")
        }

        fn load(&self, named: Option<&Path>) -> Result<Vec<RegistrySources>> {
            load_system_from(named, Some(&self.home), &self.etc)
        }
    }

    fn mirror_list(rule: &RegistrySources) -> Vec<&str> {
        rule.mirrors().iter().map(Mirror::location).collect()
    }

    #[test]
    fn nothing_to_read_is_no_rules() {
        let roots = Roots::new();
        assert!(roots.load(None).unwrap().is_empty());
    }

    #[test]
    fn drop_ins_follow_the_main_file_in_name_order() {
        let roots = Roots::new();
        write(
            &roots.etc,
            "registries.conf",
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"main.lan\"\n\
             [[registry]]\nlocation = \"ghcr.io\"\n",
        );
        let drop_ins = roots.etc.join("registries.conf.d");
        write(
            &drop_ins,
            "20-quay.conf",
            "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"quay-etc.lan\"\n",
        );
        write(
            &drop_ins,
            "10-hub.conf",
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"drop-in.lan\"\n",
        );
        write(
            &drop_ins,
            "shortnames.conf",
            "[aliases]\n\"alpine\" = \"docker.io/library/alpine\"\n",
        );
        write(&drop_ins, "README", "not toml at all [[[");
        write(&drop_ins, "old.conf.bak", "not toml at all [[[");
        write(&drop_ins, "nested.conf/inner.conf", "not toml at all [[[");
        write(
            &roots.user().join("registries.conf.d"),
            "00-mine.conf",
            "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"quay-home.lan\"\n",
        );

        let rules = roots.load(None).unwrap();
        let summary: Vec<_> = rules.iter().map(|r| (r.prefix(), mirror_list(r))).collect();
        assert_eq!(
            summary,
            [
                ("docker.io", vec!["drop-in.lan"]),
                ("ghcr.io", vec![]),
                ("quay.io", vec!["quay-home.lan"]),
            ],
            "a later file replaces a prefix where it stood; $HOME's drop-ins come after /etc's"
        );
        let origin = |i: usize| rules[i].origin.clone().unwrap();
        assert!(origin(0).ends_with("10-hub.conf"), "{}", origin(0));
        assert!(
            origin(1).ends_with("etc/containers/registries.conf"),
            "{}",
            origin(1)
        );
        assert!(origin(2).ends_with("00-mine.conf"), "{}", origin(2));
    }

    #[test]
    fn the_users_file_replaces_the_systems_and_its_drop_ins() {
        let roots = Roots::new();
        write(
            &roots.etc,
            "registries.conf",
            "[[registry]]\nlocation = \"system.lan\"\n",
        );
        write(
            &roots.etc.join("registries.conf.d"),
            "broken.conf",
            "[[[ not read",
        );
        write(
            &roots.user(),
            "registries.conf",
            "[[registry]]\nlocation = \"user.lan\"\n",
        );
        write(
            &roots.user().join("registries.conf.d"),
            "50.conf",
            "[[registry]]\nlocation = \"user-drop-in.lan\"\n",
        );
        let rules = roots.load(None).unwrap();
        let prefixes: Vec<_> = rules.iter().map(RegistrySources::prefix).collect();
        assert_eq!(prefixes, ["user.lan", "user-drop-in.lan"]);
    }

    #[test]
    fn the_environment_names_the_main_file() {
        let roots = Roots::new();
        write(
            &roots.user(),
            "registries.conf",
            "[[registry]]\nlocation = \"user.lan\"\n",
        );
        let named = write(
            &roots.home,
            "elsewhere.conf",
            "[[registry]]\nlocation = \"named.lan\"\n",
        );
        write(
            &roots.etc.join("registries.conf.d"),
            "1.conf",
            "[[registry]]\nlocation = \"etc-drop-in.lan\"\n",
        );
        let rules = roots.load(Some(&named)).unwrap();
        let prefixes: Vec<_> = rules.iter().map(RegistrySources::prefix).collect();
        assert_eq!(prefixes, ["named.lan", "etc-drop-in.lan"]);

        let missing = roots.home.join("missing.conf");
        let error = roots.load(Some(&missing)).unwrap_err();
        assert!(
            error.to_string().starts_with(&missing.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn system_files_are_found_like_podman() {
        let roots = Roots::new();
        let etc_drop_ins = roots.etc.join("registries.conf.d");
        let user_drop_ins = roots.user().join("registries.conf.d");
        assert_eq!(
            SystemFiles::find(None, Some(&roots.home), &roots.etc),
            SystemFiles {
                main: roots.etc.join("registries.conf"),
                main_required: false,
                drop_in_dirs: vec![etc_drop_ins.clone(), user_drop_ins.clone()],
            }
        );
        assert_eq!(
            SystemFiles::find(None, None, &roots.etc).drop_in_dirs,
            std::slice::from_ref(&etc_drop_ins),
            "without a home, /etc only"
        );
        let user_file = write(&roots.user(), "registries.conf", "");
        assert_eq!(
            SystemFiles::find(None, Some(&roots.home), &roots.etc),
            SystemFiles {
                main: user_file,
                main_required: false,
                drop_in_dirs: vec![user_drop_ins.clone()],
            }
        );
        let named = Path::new("/somewhere/registries.conf");
        assert_eq!(
            SystemFiles::find(Some(named), Some(&roots.home), &roots.etc),
            SystemFiles {
                main: named.to_owned(),
                main_required: true,
                drop_in_dirs: vec![etc_drop_ins, user_drop_ins],
            }
        );
    }

    #[test]
    fn a_malformed_drop_in_or_a_version_1_one_is_an_error() {
        let roots = Roots::new();
        let drop_ins = roots.etc.join("registries.conf.d");
        let broken = write(
            &drop_ins,
            "50-broken.conf",
            "[[registry]]\nlocation = \"quay.io\"\nblocked = 1\n",
        );
        let error = roots.load(None).unwrap_err();
        let display = error.to_string();
        assert!(
            display.starts_with(&format!("{}, line 3, registry[0].blocked: ", broken.display())),
            "{display}"
        );

        fs::remove_file(&broken).unwrap();
        let old = write(
            &drop_ins,
            "60-old.conf",
            "[registries.insecure]\nregistries = [\"registry.lan\"]\n",
        );
        let display = roots.load(None).unwrap_err().to_string();
        assert!(display.starts_with(&old.display().to_string()), "{display}");
        assert!(display.contains("version 2"), "{display}");

        fs::remove_file(&old).unwrap();
        write(
            &roots.etc,
            "registries.conf",
            "[registries.insecure]\nregistries = [\"registry.lan\"]\n",
        );
        let rules = roots.load(None).unwrap();
        assert!(rules[0].insecure, "the main file may still use version 1");
    }
}
