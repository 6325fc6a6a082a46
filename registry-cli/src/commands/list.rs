//! `mcreg tags REPOSITORY` and `mcreg catalog REGISTRY`, every page.

use serde::Serialize;

use super::{ClientSettings, Context, parse_reference};
use crate::cli::{CatalogArgs, TagsArgs};
use crate::exit::Failure;

/// `tags --json`.
#[derive(Debug, Serialize)]
struct TagsReport {
    repository: String,
    tags: Vec<String>,
    /// The mirror or registry that listed them.
    source: String,
}

/// `catalog --json`.
#[derive(Debug, Serialize)]
struct CatalogReport {
    registry: String,
    repositories: Vec<String>,
}

pub async fn tags(context: &Context, args: &TagsArgs) -> Result<(), Failure> {
    let reference = parse_reference(&args.repository)?;
    let settings = ClientSettings {
        page_size: args.page_size,
        ..ClientSettings::default()
    };
    let client = context.client(reference.registry(), settings)?;
    let list = client.tag_list(&reference).await?;
    let report = TagsReport {
        repository: reference.name(),
        tags: list.tags,
        source: list.source,
    };
    context.out.result(&report, || lines(&report.tags))
}

pub async fn catalog(context: &Context, args: &CatalogArgs) -> Result<(), Failure> {
    let registry = registry_name(&args.registry)?;
    let settings = ClientSettings {
        page_size: args.page_size,
        ..ClientSettings::default()
    };
    let client = context.client(registry, settings)?;
    let repositories = client.catalog(registry).await?;
    let report = CatalogReport {
        registry: registry.to_owned(),
        repositories,
    };
    context.out.result(&report, || lines(&report.repositories))
}

fn lines(items: &[String]) -> String {
    items.iter().map(|i| format!("{i}\n")).collect()
}

/// A registry as written in references: `https://ghcr.io/` is `ghcr.io`.
fn registry_name(input: &str) -> Result<&str, Failure> {
    let name = input
        .strip_prefix("https://")
        .or_else(|| input.strip_prefix("http://"))
        .unwrap_or(input)
        .trim_end_matches('/');
    let valid = !name.is_empty()
        && !name.contains(['/', '@', '?', '#', ' '])
        && !name.starts_with(':')
        && !name.ends_with(':');
    if valid {
        Ok(name)
    } else {
        Err(Failure::Usage(format!(
            "invalid registry {input:?}: expected a host, e.g. registry.example.com or localhost:5000"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        assert_eq!(registry_name("https://ghcr.io/").unwrap(), "ghcr.io");
        assert_eq!(registry_name("localhost:5000").unwrap(), "localhost:5000");
        assert_eq!(registry_name("[::1]:5000").unwrap(), "[::1]:5000");
        for bad in ["", "ghcr.io/owner", "http://", "host:", "a b"] {
            assert_eq!(registry_name(bad).unwrap_err().code(), 2, "{bad}");
        }
    }
}
