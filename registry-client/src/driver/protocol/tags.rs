//! Tag lists and the catalog, following `Link` pagination.

use std::collections::HashSet;
use std::sync::Arc;

use http::{HeaderMap, Method, header};
use serde::Deserialize;
use url::Url;

use crate::driver::protocol::cache::Expiring;
use crate::driver::protocol::registry::Registry;
use crate::driver::sources::{Need, Source, preferring};
use crate::driver::transport::{RegistryRequest, host_port};
use crate::error::{Error, Resource, Result};
use crate::model::reference::ImageReference;
use crate::model::tags::TagList;

/// One page of a list is small JSON; a registry sending more is broken.
const MAX_PAGE_SIZE: usize = 16 * 1024 * 1024;
/// A registry that keeps sending new `next` links is broken too.
const MAX_PAGES: usize = 10_000;

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
                paginate(registry, source, request, |bytes| {
                    serde_json::from_slice::<Page>(bytes).map(|p| p.tags.unwrap_or_default())
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
    let names = fetch_pages(registry, registry.transport(), &origin, None, request, |bytes| {
        serde_json::from_slice::<Page>(bytes).map(|p| p.repositories.unwrap_or_default())
    })
    .await?;
    registry
        .cache()
        .put_expiring(key, Expiring::Names(Arc::new(names.clone())))
        .await;
    Ok(names)
}

/// Every page of a source's list.
async fn paginate(
    registry: &Registry,
    source: &Source,
    request: RegistryRequest,
    parse: impl Fn(&[u8]) -> serde_json::Result<Vec<String>>,
) -> Result<Vec<String>> {
    fetch_pages(
        registry,
        source.transport(),
        &source.origin(),
        Some(source),
        request,
        parse,
    )
    .await
}

/// Fetches every page, following `Link: <…>; rel="next"` on `origin` only.
async fn fetch_pages(
    registry: &Registry,
    transport: &crate::driver::transport::Transport,
    origin: &url::Origin,
    source: Option<&Source>,
    mut request: RegistryRequest,
    parse: impl Fn(&[u8]) -> serde_json::Result<Vec<String>>,
) -> Result<Vec<String>> {
    if let Some(n) = registry.page_size() {
        request.url.query_pairs_mut().append_pair("n", &n.to_string());
    }
    let mut names = Vec::new();
    let mut seen = HashSet::new();
    loop {
        let host = host_port(&request.url);
        if seen.len() >= MAX_PAGES {
            return Err(Error::invalid_response(
                &host,
                format!("more than {MAX_PAGES} pages"),
            ));
        }
        if !seen.insert(request.url.clone()) {
            return Err(Error::invalid_response(
                &host,
                "pagination loops back to a page already read",
            ));
        }
        let (headers, body) = transport.send_and_read(&request, MAX_PAGE_SIZE).await?;
        let page =
            parse(&body).map_err(|e| Error::invalid_response(&host, format!("invalid list page: {e}")))?;
        names.extend(page);
        match next_link(&headers) {
            Some(next) => {
                request.url = request
                    .url
                    .join(next)
                    .map_err(|e| Error::invalid_response(&host, format!("invalid Link header: {e}")))?;
                if &request.url.origin() != origin {
                    return Err(Error::invalid_response(
                        &host,
                        "Link header points at another host",
                    ));
                }
                if let Some(source) = source {
                    source.add_namespace(&mut request.url);
                }
            }
            None => break,
        }
    }
    Ok(names)
}

fn join(base: &Url, path: &str) -> Result<Url> {
    base.join(path)
        .map_err(|e| Error::InvalidConfig(format!("cannot build a URL from {base}: {e}")))
}

/// The target of `rel="next"` in a `Link` header (RFC 8288), as written.
fn next_link(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            is_next.then_some(target)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_the_next_link() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LINK,
            HeaderValue::from_static(r#"</v2/tags/many/tags/list?last=t09&n=10>; rel="next""#),
        );
        assert_eq!(next_link(&headers), Some("/v2/tags/many/tags/list?last=t09&n=10"));
        headers.insert(
            header::LINK,
            HeaderValue::from_static(r#"<https://a/prev>; rel="prev", <https://a/next?x=1>; rel=next"#),
        );
        assert_eq!(next_link(&headers), Some("https://a/next?x=1"));
        headers.insert(header::LINK, HeaderValue::from_static("garbage"));
        assert_eq!(next_link(&headers), None);
    }
}
