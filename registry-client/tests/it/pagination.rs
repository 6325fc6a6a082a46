//! `Link` pagination of tag lists and the catalog, against a small in-process axum peer.
//!
//! Distribution 2.8 ignores `n`/`last` on `/tags/list`, so tag pagination is tested against
//! this peer, which paginates exactly as the distribution spec describes: entries in lexical
//! order after `last`, at most `n` of them, and while more remain
//! `Link: </v2/<name>/tags/list?n=10&last=t09>; rel="next"`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use registry_client::driver::oci::OciOption;
use registry_client::{Error, ImageReference, RepositoryClient, RepositoryClientBuilder};
use serde_json::json;

/// What the peer answers for one request (`uri` is path and query, `host` the `Host` header).
type Answer = Arc<dyn Fn(&Uri, &str) -> Response + Send + Sync>;

#[derive(Clone)]
struct PeerState {
    answer: Answer,
    seen: Arc<Mutex<Vec<String>>>,
}

/// An HTTP peer on `127.0.0.1:<free port>` that records every request's path and query.
struct Peer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    async fn start(answer: impl Fn(&Uri, &str) -> Response + Send + Sync + 'static) -> Peer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = PeerState {
            answer: Arc::new(answer),
            seen: seen.clone(),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Peer { addr, seen, task }
    }

    /// `127.0.0.1:PORT`, the registry part of references (loopback: plain HTTP).
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn reference(&self, repository: &str) -> ImageReference {
        format!("{}/{repository}", self.host()).parse().unwrap()
    }

    /// Path and query of every request so far.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(state): State<PeerState>, request: Request) -> Response {
    let uri = request.uri().clone();
    let host = header_str(request.headers(), header::HOST.as_str()).to_owned();
    state.seen.lock().unwrap().push(uri.to_string());
    (state.answer)(&uri, &host)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn builder() -> RepositoryClientBuilder {
    RepositoryClient::builder("oci").option(OciOption::DockerConfig, "/nonexistent/config.json")
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:02}")).collect()
}

/// One page as the distribution spec describes: `all` sorted, the entries after `last`, at
/// most `n`; the `last` of the next page when more remain.
fn spec_page(all: &[String], uri: &Uri) -> (Vec<String>, Option<(usize, String)>) {
    let mut n = None;
    let mut last = None;
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match &*k {
            "n" => n = Some(v.parse::<usize>().expect("numeric n")),
            "last" => last = Some(v.into_owned()),
            _ => {}
        }
    }
    let mut sorted = all.to_vec();
    sorted.sort();
    let rest: Vec<String> = sorted
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t > l))
        .collect();
    let n = n.unwrap_or(rest.len());
    let page: Vec<String> = rest.iter().take(n).cloned().collect();
    let next = (rest.len() > n).then(|| (n, page.last().cloned().unwrap_or_default()));
    (page, next)
}

/// A JSON answer with an optional `Link` header.
fn json_page(body: serde_json::Value, link: Option<String>) -> Response {
    let mut response = axum::Json(body).into_response();
    if let Some(link) = link {
        response
            .headers_mut()
            .insert(header::LINK, link.parse().expect("Link header value"));
    }
    response
}

/// A spec-compliant `/v2/<name>/tags/list`; `link_base` is prepended to the relative
/// `/v2/…` target of the `Link` (empty for a relative link).
fn tags_answer(
    name: &str,
    tags: Vec<String>,
    link_base: impl Fn(&str) -> String + Send + Sync + 'static,
) -> impl Fn(&Uri, &str) -> Response + Send + Sync + 'static {
    let path = format!("/v2/{name}/tags/list");
    let name = name.to_owned();
    move |uri: &Uri, host: &str| {
        if uri.path() != path {
            return StatusCode::NOT_FOUND.into_response();
        }
        let (page, next) = spec_page(&tags, uri);
        let link =
            next.map(|(n, last)| format!("<{}{path}?n={n}&last={last}>; rel=\"next\"", link_base(host)));
        json_page(json!({ "name": name, "tags": page }), link)
    }
}

#[tokio::test]
async fn tags_are_read_page_by_page_in_order() {
    let all = names("t", 25);
    let peer = Peer::start(tags_answer("tags/many", all.clone(), |_| String::new())).await;
    let client = builder().page_size(10).build().unwrap();

    let tags = client
        .list_tags(&peer.reference("tags/many:latest"))
        .await
        .unwrap();

    assert_eq!(tags, all);
    assert_eq!(
        peer.seen(),
        [
            "/v2/tags/many/tags/list?n=10",
            "/v2/tags/many/tags/list?n=10&last=t09",
            "/v2/tags/many/tags/list?n=10&last=t19",
        ]
    );
    // The whole list is cached.
    let again = client.list_tags(&peer.reference("tags/many")).await.unwrap();
    assert_eq!(again, all);
    assert_eq!(peer.seen().len(), 3);
}

#[tokio::test]
async fn without_a_page_size_the_registry_decides() {
    let all = names("t", 25);
    let peer = Peer::start(tags_answer("tags/many", all.clone(), |_| String::new())).await;
    let client = builder().build().unwrap();

    let tags = client.list_tags(&peer.reference("tags/many")).await.unwrap();

    assert_eq!(tags, all);
    assert_eq!(peer.seen(), ["/v2/tags/many/tags/list"]);
}

#[tokio::test]
async fn an_absolute_link_on_the_same_host_is_followed() {
    let all = names("t", 25);
    let peer = Peer::start(tags_answer("tags/many", all.clone(), |host| {
        format!("http://{host}")
    }))
    .await;
    let client = builder().page_size(10).build().unwrap();

    let tags = client.list_tags(&peer.reference("tags/many")).await.unwrap();

    assert_eq!(tags, all);
    assert_eq!(peer.seen().len(), 3, "{:#?}", peer.seen());
}

#[tokio::test]
async fn a_link_back_to_a_page_already_read_is_an_error() {
    // Page 2 links back to page 1 exactly as the client asked for it.
    let peer = Peer::start(|uri: &Uri, _: &str| {
        let (tags, link) = match uri.query() {
            Some("n=10") => (names("t", 10), "</v2/loop/tags/list?n=10&last=t09>; rel=\"next\""),
            _ => (names("u", 10), "</v2/loop/tags/list?n=10>; rel=\"next\""),
        };
        json_page(json!({ "name": "loop", "tags": tags }), Some(link.to_owned()))
    })
    .await;
    let client = builder().page_size(10).build().unwrap();

    let error = client.list_tags(&peer.reference("loop")).await.unwrap_err();

    assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
    assert_eq!(
        peer.seen(),
        ["/v2/loop/tags/list?n=10", "/v2/loop/tags/list?n=10&last=t09"]
    );
}

#[tokio::test]
async fn a_page_linking_to_itself_is_an_error() {
    let peer = Peer::start(|uri: &Uri, _: &str| {
        let link = format!("<{uri}>; rel=\"next\"");
        json_page(json!({ "name": "self", "tags": ["a"] }), Some(link))
    })
    .await;
    let client = builder().page_size(10).build().unwrap();

    let error = client.list_tags(&peer.reference("self")).await.unwrap_err();

    assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
    assert_eq!(peer.seen().len(), 1);
}

#[tokio::test]
async fn a_link_to_another_host_is_an_error_and_that_host_hears_nothing() {
    let all = names("t", 25);
    let other = Peer::start(tags_answer("tags/many", all.clone(), |_| String::new())).await;
    let other_host = other.host();
    let peer = Peer::start(tags_answer("tags/many", all, move |_| {
        format!("http://{other_host}")
    }))
    .await;
    let client = builder().page_size(10).build().unwrap();

    let error = client.list_tags(&peer.reference("tags/many")).await.unwrap_err();

    assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
    assert!(error.to_string().contains("another host"), "{error}");
    assert_eq!(peer.seen(), ["/v2/tags/many/tags/list?n=10"]);
    assert!(other.seen().is_empty(), "{:#?}", other.seen());

    // Same IP, another port is another host too; so is the same port under another name.
    let port = peer.addr.port();
    for base in [
        format!("http://{}", other.host()),
        format!("http://localhost:{port}"),
    ] {
        let peer = Peer::start(tags_answer("tags/many", names("t", 25), move |_| base.clone())).await;
        let error = client.list_tags(&peer.reference("tags/many")).await.unwrap_err();
        assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
        assert_eq!(peer.seen().len(), 1);
    }
    assert!(other.seen().is_empty(), "{:#?}", other.seen());
}

#[tokio::test]
async fn null_tags_are_an_empty_list() {
    let peer =
        Peer::start(|_: &Uri, _: &str| json_page(json!({ "name": "empty", "tags": null }), None)).await;
    let client = builder().build().unwrap();

    let tags = client.list_tags(&peer.reference("empty")).await.unwrap();

    assert!(tags.is_empty(), "{tags:?}");
    assert_eq!(peer.seen().len(), 1);
}

#[tokio::test]
async fn a_page_that_is_not_json_is_an_invalid_response() {
    // The first page is fine; the second is an HTML error page with status 200.
    let peer = Peer::start(|uri: &Uri, _: &str| match uri.query() {
        Some("n=10") => json_page(
            json!({ "name": "broken", "tags": names("t", 10) }),
            Some("</v2/broken/tags/list?n=10&last=t09>; rel=\"next\"".to_owned()),
        ),
        _ => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>gateway says hi</body></html>",
        )
            .into_response(),
    })
    .await;
    let client = builder().page_size(10).build().unwrap();

    let error = client.list_tags(&peer.reference("broken")).await.unwrap_err();

    assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
    assert_eq!(peer.seen().len(), 2);
}

#[tokio::test]
async fn the_catalog_is_read_page_by_page() {
    let all = names("repo-", 25);
    let repositories = all.clone();
    let peer = Peer::start(move |uri: &Uri, _: &str| {
        if uri.path() != "/v2/_catalog" {
            return StatusCode::NOT_FOUND.into_response();
        }
        let (page, next) = spec_page(&repositories, uri);
        let link = next.map(|(n, last)| format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""));
        json_page(json!({ "repositories": page }), link)
    })
    .await;
    let client = builder().page_size(10).build().unwrap();

    let repositories = client.catalog(&peer.host()).await.unwrap();

    assert_eq!(repositories, all);
    assert_eq!(
        peer.seen(),
        [
            "/v2/_catalog?n=10",
            "/v2/_catalog?n=10&last=repo-09",
            "/v2/_catalog?n=10&last=repo-19",
        ]
    );
}
