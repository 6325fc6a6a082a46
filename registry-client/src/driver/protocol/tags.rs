//! Tag lists and the catalog (a page at a time: [`super::pages`]), and the `/v2/` ping.

use std::sync::Arc;

use http::{HeaderMap, Method};
use serde::Deserialize;
use url::Url;

use crate::driver::protocol::cache::Expiring;
use crate::driver::protocol::pages::{MAX_PAGE_SIZE, fetch_pages, source_pages};
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Need, preferring};
use crate::driver::transport::RegistryRequest;
use crate::error::{Error, Resource, Result};
use crate::model::reference::ImageReference;
use crate::model::tags::TagList;

/// Checks that the registry speaks the `/v2/` API and accepts our
/// credentials (authenticating if it asks). Asks the registry itself,
/// never a mirror.
pub(crate) async fn ping(registry: &Registry, host: &str) -> Result<()> {
    let url = registry.base_url(host)?;
    let url = join(&url, "v2/")?;
    let request = RegistryRequest {
        registry: host.to_owned(),
        method: Method::GET,
        url,
        headers: HeaderMap::new(),
        scope: None,
        not_found: Some((Resource::Registry, host.to_owned(), String::new())),
        on_retry: None,
        fail_fast: false,
        body: None,
        deadline: registry.deadline(),
    };
    registry
        .transport()
        .send_and_read(&request, MAX_PAGE_SIZE)
        .await?;
    Ok(())
}

/// Every tag of the reference's repository (its tag or digest is ignored),
/// from the first of its sources that lists them.
pub(crate) async fn list_tags(registry: &Registry, repository: &ImageReference) -> Result<Vec<String>> {
    Ok(tag_list(registry, repository).await?.tags)
}

/// [`list_tags`](list_tags), with the source that listed them.
pub(crate) async fn tag_list(registry: &Registry, repository: &ImageReference) -> Result<TagList> {
    #[derive(Deserialize)]
    struct Page {
        tags: Option<Vec<String>>,
    }
    let key = format!("tags {} {}", repository.registry(), repository.repository());
    if let Some(Expiring::Tags(list)) = registry.cache().expiring(&key).await {
        return Ok(list.as_ref().clone());
    }
    // Listed like a pull by tag: digest-only mirrors are left out.
    let by_tag = ImageReference::parse(&repository.name())?;
    let route = registry.route(&by_tag)?;
    let what = format!("tags of {}", repository.name());
    let (tags, source) = route
        .first_success(
            &preferring(&route, None),
            Need::Tag,
            &what,
            |source, last| async move {
                let request =
                    source.request(Method::GET, "tags/list", Some((Resource::Repository, "")), last)?;
                source_pages(source, request, registry.page_size(), &|_, bytes| {
                    serde_json::from_slice::<Page>(bytes)
                        .map(|p| p.tags.unwrap_or_default())
                        .map_err(|e| format!("invalid list page: {e}"))
                })
                .await
            },
        )
        .await?;
    let list = TagList {
        tags,
        source: source.name.clone(),
    };
    registry
        .cache()
        .put_expiring(key, Expiring::Tags(Arc::new(list.clone())))
        .await;
    Ok(list)
}

/// Every repository in the registry's catalog.
pub(crate) async fn catalog(registry: &Registry, host: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Page {
        repositories: Option<Vec<String>>,
    }
    let key = format!("catalog {host}");
    let url = join(&registry.base_url(host)?, "v2/_catalog")?;
    let request = RegistryRequest {
        registry: host.to_owned(),
        method: Method::GET,
        url,
        headers: HeaderMap::new(),
        scope: Some("registry:catalog:*".to_owned()),
        not_found: Some((Resource::Registry, host.to_owned(), "_catalog".to_owned())),
        on_retry: None,
        fail_fast: false,
        body: None,
        deadline: registry.deadline(),
    };
    if let Some(Expiring::Names(names)) = registry.cache().expiring(&key).await {
        return Ok(names.as_ref().clone());
    }
    let origin = registry.base_url(host)?.origin();
    let page_size = registry.page_size();
    let names = fetch_pages(
        registry.transport(),
        &origin,
        None,
        request,
        page_size,
        &|_, bytes| {
            serde_json::from_slice::<Page>(bytes)
                .map(|p| p.repositories.unwrap_or_default())
                .map_err(|e| format!("invalid list page: {e}"))
        },
    )
    .await?;
    registry
        .cache()
        .put_expiring(key, Expiring::Names(Arc::new(names.clone())))
        .await;
    Ok(names)
}

fn join(base: &Url, path: &str) -> Result<Url> {
    base.join(path)
        .map_err(|e| Error::InvalidConfig(format!("cannot build a URL from {base}: {e}")))
}
