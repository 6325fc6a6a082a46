//! A fake Google OAuth2 token endpoint on loopback, and `authorized_user` files pointing at it.
#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use conformance::harness::BackgroundServer;
use registry_client::driver::auth::{AuthScheme, Challenge};
use registry_client::{AbstractRegistry, AuthRequest, Credentials, Error, ProviderConfig};
use serde_json::{Value, json};

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
        remove_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("registry-gcp-{}-", std::process::id()))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
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

/// Removes what earlier runs left: a fake kept in a static is never dropped.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("registry-gcp-")
            .and_then(|r| r.split('-').next());
        if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
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

/// The registered `gcp` provider, from its factory, as the client builder makes it.
pub fn provider(
    options: &[(registry_gcp::GcpOption, &str)],
    credentials: Option<Credentials>,
) -> Arc<dyn AbstractRegistry> {
    let mut config = ProviderConfig::default();
    config.credentials = credentials;
    config.options = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let record = registry_client::driver::provider("gcp").expect("gcp is registered");
    record.build(&config).expect("factory")
}

/// What the transport would ask for a pull from `host`.
pub async fn ask(provider: &dyn AbstractRegistry, host: &str) -> Result<Option<Credentials>, Error> {
    let challenge = Challenge {
        scheme: AuthScheme::Bearer,
        params: vec![
            ("realm".into(), format!("https://{host}/v2/token")),
            ("service".into(), host.into()),
        ],
    };
    let request = AuthRequest {
        host,
        challenge: &challenge,
        scope: Some("repository:p/r/i:pull"),
    };
    provider.credentials(&request).await
}

/// The error and every source, as one line of text.
pub fn full_text(err: &Error) -> String {
    let mut text = format!("{err} | {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(" | {s}"));
        source = s.source();
    }
    text
}
