//! Lists a page at a time: tag lists, the catalog and referrers all answer one page
//! and a `Link: <…>; rel="next"` to the next, on the same host.

use std::collections::HashSet;

use http::{HeaderMap, header};

use crate::driver::sources::Source;
use crate::driver::transport::{RegistryRequest, Transport, host_port};
use crate::error::{Error, Result};

/// One page of a list is small JSON; a registry sending more is broken.
pub(crate) const MAX_PAGE_SIZE: usize = 16 * 1024 * 1024;
/// A registry that keeps sending new `next` links is broken too.
const MAX_PAGES: usize = 10_000;

/// Reads one page: its items, or why the page is not what was asked for.
pub(crate) type ParsePage<'p, T> =
    dyn Fn(&HeaderMap, &[u8]) -> std::result::Result<Vec<T>, String> + Sync + 'p;

/// Every page of a source's list, `page_size` items a page if given (`n=`).
pub(crate) async fn source_pages<T>(
    source: &Source,
    request: RegistryRequest,
    page_size: Option<u32>,
    parse: &ParsePage<'_, T>,
) -> Result<Vec<T>> {
    fetch_pages(
        source.transport(),
        &source.origin(),
        Some(source),
        request,
        page_size,
        parse,
    )
    .await
}

/// Fetches every page with `transport`, following `Link: <…>; rel="next"` on
/// `origin` only (a mirror's namespace added again where `source` has one).
pub(crate) async fn fetch_pages<T>(
    transport: &Transport,
    origin: &url::Origin,
    source: Option<&Source>,
    mut request: RegistryRequest,
    page_size: Option<u32>,
    parse: &ParsePage<'_, T>,
) -> Result<Vec<T>> {
    if let Some(n) = page_size {
        request.url.query_pairs_mut().append_pair("n", &n.to_string());
    }
    let mut items = Vec::new();
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
        items.extend(parse(&headers, &body).map_err(|e| Error::invalid_response(&host, e))?);
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
    Ok(items)
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
