//! Fakes of the Google endpoints Application Default Credentials reach, on loopback:
//!
//! - [`FakeOAuth`] stands in for Google's OAuth2 token endpoint (`https://oauth2.googleapis.com/token`):
//!   `POST /token` exchanges the refresh token of an `authorized_user` file (what
//!   `gcloud auth application-default login` writes; [`FakeOAuth::credentials_file`] writes
//!   one pointing at the fake) for an access token. It checks the grant type, client id,
//!   client secret and refresh token (JSON, as google-cloud-auth sends it, or a form), refuses
//!   anything else with Google's `invalid_grant`, and logs every request without its secrets.
//! - [`FakeMetadata`] stands in for the GCE metadata server (`metadata.google.internal`, found
//!   through `GCE_METADATA_HOST`): `GET /computeMetadata/v1/instance/service-accounts/default/token`
//!   answers a token only with `Metadata-Flavor: Google`, and records each request's `scopes`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::harness::BackgroundServer;

pub const CLIENT_ID: &str = "mcreg-test.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "client-Secret-never-shown";
pub const REFRESH_TOKEN: &str = "1//refresh-Token-never-shown";
pub const WRONG_SECRET: &str = "wrong-client-Secret-never-shown";

/// What the fake hands out: one token always, or `<prefix>-1`, `<prefix>-2`, … per request.
#[derive(Clone, Copy, Debug)]
pub enum Tokens {
    Fixed(&'static str),
    Numbered(&'static str),
}

/// One request to the fake, secrets left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthRequest {
    pub content_type: String,
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    /// `scopes` (what google-cloud-auth sends) or `scope`.
    pub scope: Option<String>,
    pub status: u16,
}

struct Inner {
    tokens: Tokens,
    expires_in: AtomicU64,
    calls: AtomicUsize,
    log: Mutex<Vec<OAuthRequest>>,
}

/// `POST /token`, checking grant type, client id, client secret and refresh token.
pub struct FakeOAuth {
    server: BackgroundServer,
    state: Arc<Inner>,
    dir: tempfile::TempDir,
}

impl FakeOAuth {
    /// Starts on `127.0.0.1:<free port>`, on its own thread and runtime (so it outlives any
    /// test's runtime), answering `expires_in` seconds.
    pub fn start(tokens: Tokens, expires_in: u64) -> FakeOAuth {
        let state = Arc::new(Inner {
            tokens,
            expires_in: AtomicU64::new(expires_in),
            calls: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/token", post(token))
            .with_state(state.clone());
        let server = BackgroundServer::start("fake-google-oauth", app);
        // A fake kept in a static is never dropped: what such fakes of earlier runs left goes now.
        crate::harness::remove_stale_dirs();
        let dir = crate::harness::scratch_dir("google-oauth");
        FakeOAuth { server, state, dir }
    }

    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }

    /// An `authorized_user` file (what `gcloud auth application-default login` writes) whose
    /// `token_uri` is this fake.
    pub fn credentials_file(&self) -> PathBuf {
        self.credentials_file_with_secret(CLIENT_SECRET)
    }

    pub fn credentials_file_with_secret(&self, secret: &str) -> PathBuf {
        // Named by a number: the path shows up in errors and `Debug`, the secret must not.
        static FILES: AtomicUsize = AtomicUsize::new(0);
        let n = FILES.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.path().join(format!("adc-{n}.json"));
        self.write_credentials_file(&path, secret);
        path
    }

    /// Writes an `authorized_user` file for this fake at `path`.
    pub fn write_credentials_file(&self, path: &Path, secret: &str) {
        let adc = json!({
            "type": "authorized_user",
            "client_id": CLIENT_ID,
            "client_secret": secret,
            "refresh_token": REFRESH_TOKEN,
            "token_uri": self.token_uri(),
        });
        std::fs::write(path, adc.to_string()).expect("write credentials file");
    }

    /// The directory of the [`credentials_file`](Self::credentials_file)s, removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Token requests answered (any status).
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<OAuthRequest> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn set_expires_in(&self, seconds: u64) {
        self.state.expires_in.store(seconds, Ordering::SeqCst);
    }
}

async fn token(State(state): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // google-cloud-auth sends JSON; Google's endpoint also takes a form.
    let fields: Value = if content_type.starts_with("application/json") {
        serde_json::from_slice(&body).unwrap_or_default()
    } else {
        url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let field = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let accepted = field("grant_type").as_deref() == Some("refresh_token")
        && field("client_id").as_deref() == Some(CLIENT_ID)
        && field("client_secret").as_deref() == Some(CLIENT_SECRET)
        && field("refresh_token").as_deref() == Some(REFRESH_TOKEN);
    let n = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
    state.log.lock().unwrap().push(OAuthRequest {
        content_type,
        grant_type: field("grant_type"),
        client_id: field("client_id"),
        scope: field("scopes").or_else(|| field("scope")),
        status: if accepted { 200 } else { 400 },
    });
    if !accepted {
        let body = json!({"error": "invalid_grant", "error_description": "Bad Request"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let access_token = match state.tokens {
        Tokens::Fixed(token) => token.to_owned(),
        Tokens::Numbered(prefix) => format!("{prefix}-{n}"),
    };
    axum::Json(json!({
        "access_token": access_token,
        "expires_in": state.expires_in.load(Ordering::SeqCst),
        "token_type": "Bearer",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
    }))
    .into_response()
}

/// Where the metadata server hands out the default service account's access token.
pub const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

struct Metadata {
    token: String,
    calls: AtomicUsize,
    /// Answer 404 instead of a token (no default service account).
    fail: AtomicBool,
    /// The `scopes` query parameter of each request.
    scopes: Mutex<Vec<Option<String>>>,
}

/// A GCE metadata server answering [`METADATA_TOKEN_PATH`] with one access token, valid an hour.
pub struct FakeMetadata {
    state: Arc<Metadata>,
    server: BackgroundServer,
}

impl FakeMetadata {
    /// Serves on `listener` (bound beforehand: `GCE_METADATA_HOST` must name it before any
    /// thread starts), on its own thread and runtime, handing out `token`.
    pub fn serve(listener: TcpListener, token: &str) -> FakeMetadata {
        let state = Arc::new(Metadata {
            token: token.to_owned(),
            calls: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            scopes: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(METADATA_TOKEN_PATH, get(metadata_token))
            .with_state(state.clone());
        let server = BackgroundServer::serve("fake-gce-metadata", listener, app);
        FakeMetadata { state, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Token requests received (any answer).
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The `scopes` query parameter of each token request, in order.
    pub fn scopes(&self) -> Vec<Option<String>> {
        self.state.scopes.lock().unwrap().clone()
    }

    /// From now on, answer 404 (no default service account) instead of a token, or stop doing so.
    pub fn set_failing(&self, fail: bool) {
        self.state.fail.store(fail, Ordering::SeqCst);
    }
}

async fn metadata_token(
    State(state): State<Arc<Metadata>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let scopes = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "scopes")
        .map(|(_, v)| v.into_owned());
    state.scopes.lock().unwrap().push(scopes);
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return (StatusCode::FORBIDDEN, "missing Metadata-Flavor: Google").into_response();
    }
    if state.fail.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, "no default service account").into_response();
    }
    axum::Json(json!({"access_token": state.token, "expires_in": 3600, "token_type": "Bearer"}))
        .into_response()
}
