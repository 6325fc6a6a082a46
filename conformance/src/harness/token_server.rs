//! An in-process Docker token server (`GET /token?service=S&scope=…`) for registries in
//! [`AuthMode::Token`](super::AuthMode::Token).
//!
//! It also speaks distribution's OAuth2 flavour (`POST /token`, form-encoded): `grant_type=password`
//! (`username`, `password`; with `access_type=offline` the answer carries a new `refresh_token`)
//! and `grant_type=refresh_token` (`refresh_token`). Both need `service` and `client_id`, take an
//! optional space-separated `scope`, and answer `{"access_token", "expires_in", "issued_at",
//! "refresh_token"?, "scope"}` (`scope`: what was granted). Refresh tokens are random strings bound
//! to a user and kept in memory; [`TokenServer::issue_refresh_token`] makes one for a test (what
//! docker stores as `identitytoken`). A wrong password or an unknown refresh token is a 401 with a
//! distribution-style JSON error; a missing field, an unknown `grant_type`/`access_type` or a body
//! that is not a form is a 400.
//!
//! Tokens are ES256 JWTs whose header carries `x5c` = [the DER of a self-signed P-256
//! certificate]; the registry trusts that certificate through its `rootcertbundle`
//! ([`TokenServer::cert_pem`]).
//!
//! **Expiry leeway.** Distribution 2.8 keeps accepting a token for about 60 seconds after
//! its `exp`. Measured against `/usr/bin/docker-registry` 2.8.2: `exp` 58 s in the past is
//! accepted, 60 s in the past is rejected; `tests/harness.rs` pins 4 s (accepted) and 64 s
//! (rejected). So a short [`set_token_lifetime`](TokenServer::set_token_lifetime) alone does
//! not make the registry refuse a token quickly: a client only learns of expiry through
//! `expires_in`. To get a token the registry refuses *now*, use
//! [`set_clock_skew`](TokenServer::set_clock_skew) with more than lifetime + 60 s.

use axum::Router;

use super::server::BackgroundServer;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `service` the registry is configured with (and the JWT `aud`).
pub const SERVICE: &str = "mcreg-test-registry";
/// The JWT `iss` the registry is configured to accept.
pub const ISSUER: &str = "mcreg-test-token-server";

/// One request the token server answered, for assertions. Never holds a password or token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `grant_type` of an OAuth2 `POST` (`password`, `refresh_token`, or whatever the client
    /// sent); `None` for the classic `GET`.
    pub grant_type: Option<String>,
    /// The `client_id` of an OAuth2 `POST`; `None` for `GET`.
    pub client_id: Option<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// Every scope asked for, in order (several `scope` parameters, or space-separated ones).
    pub scopes: Vec<String>,
    /// `GET`: the Basic-auth user name. `POST`: the form's `username` (password grant) or the
    /// user a known refresh token is bound to (refresh grant). Also set when the password was
    /// wrong.
    pub username: Option<String>,
    /// The `account` query parameter (`GET` only).
    pub account: Option<String>,
    /// HTTP status of the answer: 200 when a token was issued.
    pub status: u16,
    /// What the issued token grants (empty if none was issued or nothing was granted).
    pub granted: Vec<Access>,
}

impl TokenRequest {
    /// A request nothing is known of yet, answered with `status` unless a token is issued.
    fn refused(status: u16) -> Self {
        TokenRequest {
            grant_type: None,
            client_id: None,
            service: None,
            scopes: Vec::new(),
            username: None,
            account: None,
            status,
            granted: Vec::new(),
        }
    }

    /// Whether a token was issued.
    pub fn issued(&self) -> bool {
        self.status == 200
    }
}

/// One entry of the JWT `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// A running token server. Knobs take `&self` and apply to the next request.
pub struct TokenServer {
    state: Arc<Inner>,
    cert_pem: String,
    server: BackgroundServer,
}

struct Inner {
    key: EncodingKey,
    /// base64 (standard, padded) DER of the certificate, for the JWT `x5c` header.
    x5c: String,
    /// user -> (password, admin)
    users: HashMap<String, (String, bool)>,
    lifetime_ms: AtomicU64,
    skew_ms: AtomicU64,
    allow_anonymous: AtomicBool,
    /// refresh token -> user
    refresh_tokens: Mutex<HashMap<String, String>>,
    log: Mutex<Vec<TokenRequest>>,
}

impl Inner {
    /// `Some(admin)` when `user` exists and `password` is theirs.
    fn authenticate(&self, user: &str, password: &str) -> Option<bool> {
        match self.users.get(user) {
            Some((expected, admin)) if expected == password => Some(*admin),
            _ => None,
        }
    }

    fn record(&self, request: TokenRequest) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(request);
    }

    fn new_refresh_token(&self, user: &str) -> String {
        let token = super::random_string(32);
        self.refresh_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), user.to_owned());
        token
    }

    fn refresh_token_user(&self, token: &str) -> Option<String> {
        self.refresh_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }
}

impl TokenServer {
    /// Starts a token server on `127.0.0.1:<free port>` on its own thread and runtime, with
    /// the users [`USER`](super::USER) (pull) and [`ADMIN`](super::ADMIN) (pull, push, delete)
    /// and the given passwords.
    pub fn start(user_password: &str, admin_password: &str) -> TokenServer {
        Self::start_for(super::USER, user_password, admin_password)
    }

    /// Like [`start`](Self::start), with the pull user named `user`.
    pub fn start_for(user: &str, user_password: &str, admin_password: &str) -> TokenServer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate P-256 key");
        let mut params =
            rcgen::CertificateParams::new(vec!["mcreg-token-server".into()]).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mcreg test token server");
        let cert = params.self_signed(&key).expect("self-sign certificate");
        let users = HashMap::from([
            (user.to_string(), (user_password.to_string(), false)),
            (super::ADMIN.to_string(), (admin_password.to_string(), true)),
        ]);
        let state = Arc::new(Inner {
            key: EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("ES256 key"),
            x5c: B64.encode(cert.der()),
            users,
            lifetime_ms: AtomicU64::new(300_000),
            skew_ms: AtomicU64::new(0),
            allow_anonymous: AtomicBool::new(false),
            refresh_tokens: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        });

        let app = Router::new()
            .route("/token", get(issue_token).post(oauth_token))
            .with_state(state.clone());
        let server = BackgroundServer::start("mcreg-token-server", app);
        TokenServer {
            state,
            cert_pem: cert.pem(),
            server,
        }
    }

    /// `http://127.0.0.1:PORT/token`, the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The `service` the registry advertises ([`SERVICE`]).
    pub fn service(&self) -> &'static str {
        SERVICE
    }

    /// The JWT issuer ([`ISSUER`]).
    pub fn issuer(&self) -> &'static str {
        ISSUER
    }

    /// PEM of the signing certificate (the registry's `rootcertbundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Lifetime of tokens issued from now on: the JWT `exp` and the advertised `expires_in`
    /// (whole seconds, rounded up). Default 300 s. See the module docs about leeway.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        let ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        self.state.lifetime_ms.store(ms, Ordering::SeqCst);
    }

    /// Current token lifetime.
    pub fn token_lifetime(&self) -> Duration {
        Duration::from_millis(self.state.lifetime_ms.load(Ordering::SeqCst))
    }

    /// Makes the JWT's `iat`/`nbf`/`exp` lag real time by `skew`, while the JSON answer
    /// (`expires_in`, `issued_at`) stays truthful. With `skew` > lifetime + 60 s the registry
    /// rejects every token although the client believes it valid: the "401 with a cached
    /// token" path. Default zero.
    pub fn set_clock_skew(&self, skew: Duration) {
        let ms = u64::try_from(skew.as_millis()).unwrap_or(u64::MAX);
        self.state.skew_ms.store(ms, Ordering::SeqCst);
    }

    /// Whether requests without credentials get a token (with an empty access list) instead
    /// of a 401. Default false.
    pub fn set_allow_anonymous(&self, allow: bool) {
        self.state.allow_anonymous.store(allow, Ordering::SeqCst);
    }

    /// A new OAuth2 refresh token bound to `user` (docker's `identitytoken`), as if `user` had
    /// logged in with `grant_type=password&access_type=offline`. Not logged as a request.
    /// Panics if `user` is not one of the server's users.
    pub fn issue_refresh_token(&self, user: &str) -> String {
        assert!(
            self.state.users.contains_key(user),
            "the token server has no user {user:?}"
        );
        self.state.new_refresh_token(user)
    }

    /// Number of tokens issued (successful answers) since start or the last [`reset`](Self::reset).
    pub fn issued_count(&self) -> usize {
        self.log().iter().filter(|r| r.issued()).count()
    }

    /// Number of tokens issued for requests that included `scope` (exact string, e.g.
    /// `repository:single/oci:pull`).
    pub fn issued_count_for(&self, scope: &str) -> usize {
        self.log()
            .iter()
            .filter(|r| r.issued() && r.scopes.iter().any(|s| s == scope))
            .count()
    }

    /// Every request answered since start or the last reset, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.log().clone()
    }

    /// Forgets the request log (and so the issued counts).
    pub fn reset(&self) {
        self.log().clear();
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<TokenRequest>> {
        self.state.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for TokenServer {
    // Hand-written: the state holds passwords and the signing key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("realm", &self.realm())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [Access],
}

async fn issue_token(
    State(state): State<Arc<Inner>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut request = TokenRequest::refused(401);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "service" => request.service = Some(v.into_owned()),
            // Some clients send several scopes space-separated in one parameter.
            "scope" => request
                .scopes
                .extend(v.split(' ').filter(|s| !s.is_empty()).map(String::from)),
            "account" => request.account = Some(v.into_owned()),
            _ => {}
        }
    }

    let credentials = basic_credentials(&headers);
    request.username = credentials.as_ref().map(|(u, _)| u.clone());
    let admin = match &credentials {
        Some((user, password)) => state.authenticate(user, password),
        None if state.allow_anonymous.load(Ordering::SeqCst) => Some(false),
        None => None,
    };
    let Some(admin) = admin else {
        state.record(request);
        return unauthorized();
    };
    if credentials.is_some() {
        request.granted = request.scopes.iter().filter_map(|s| grant(s, admin)).collect();
    }

    let signed = sign(&state, &request);
    request.status = 200;
    state.record(request);
    axum::Json(json!({
        "token": signed.token,
        "access_token": signed.token,
        "expires_in": signed.expires_in,
        "issued_at": signed.issued_at,
    }))
    .into_response()
}

/// A signed JWT for `request` (subject: its user; audience: its service; access: its grants).
struct Signed {
    token: String,
    expires_in: u64,
    issued_at: String,
}

fn sign(state: &Inner, request: &TokenRequest) -> Signed {
    let lifetime_ms = state.lifetime_ms.load(Ordering::SeqCst);
    let lifetime_s = lifetime_ms.div_ceil(1000);
    let now = SystemTime::now();
    let jwt_now = (now - Duration::from_millis(state.skew_ms.load(Ordering::SeqCst)))
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut header = Header::new(Algorithm::ES256);
    header.x5c = Some(vec![state.x5c.clone()]);
    let claims = Claims {
        iss: ISSUER,
        sub: request.username.as_deref().unwrap_or(""),
        aud: request.service.as_deref().unwrap_or(SERVICE),
        exp: jwt_now + lifetime_s,
        nbf: jwt_now,
        iat: jwt_now,
        jti: super::random_string(16),
        access: &request.granted,
    };
    let token = jsonwebtoken::encode(&header, &claims, &state.key).expect("sign JWT");
    let issued_at = time::OffsetDateTime::from(now)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format RFC 3339");
    Signed {
        token,
        expires_in: lifetime_s,
        issued_at,
    }
}

/// `POST /token`: distribution's OAuth2 token endpoint (password and refresh-token grants).
async fn oauth_token(State(state): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut request = TokenRequest::refused(400);
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        state.record(request);
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED_VALUE",
            "unsupported value",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let mut password = None;
    let mut refresh_token = None;
    let mut access_type = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match &*k {
            "grant_type" => request.grant_type = Some(v.into_owned()),
            "client_id" => request.client_id = Some(v.into_owned()),
            "service" => request.service = Some(v.into_owned()),
            "scope" => request
                .scopes
                .extend(v.split(' ').filter(|s| !s.is_empty()).map(String::from)),
            "username" => request.username = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            "refresh_token" => refresh_token = Some(v.into_owned()),
            "access_type" => access_type = Some(v.into_owned()),
            _ => {}
        }
    }

    let missing = |field: &str| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "MISSING_REQUIRED_FIELD",
            "missing required field",
            &format!("missing {field}"),
        )
    };
    let unsupported = |detail: &str| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED_VALUE",
            "unsupported value",
            detail,
        )
    };
    let empty = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
    let check = if empty(&request.grant_type) {
        Err(missing("grant_type"))
    } else if empty(&request.service) {
        Err(missing("service"))
    } else if empty(&request.client_id) {
        Err(missing("client_id"))
    } else {
        match access_type.as_deref() {
            None | Some("" | "online") => Ok(false),
            Some("offline") => Ok(true),
            Some(_) => Err(unsupported("unknown access_type")),
        }
    };
    let offline = match check {
        Ok(offline) => offline,
        Err(response) => {
            state.record(request);
            return response;
        }
    };

    let mut refresh = None;
    let admin = match request.grant_type.as_deref() {
        Some("password") => {
            let (Some(user), Some(password)) = (request.username.as_deref(), password.as_deref()) else {
                let field = if request.username.is_none() {
                    "username"
                } else {
                    "password"
                };
                state.record(request);
                return missing(field);
            };
            state.authenticate(user, password)
        }
        Some("refresh_token") => {
            let Some(token) = refresh_token.filter(|t| !t.is_empty()) else {
                state.record(request);
                return missing("refresh_token");
            };
            request.username = state.refresh_token_user(&token);
            let admin = request
                .username
                .as_deref()
                .and_then(|u| state.users.get(u))
                .map(|(_, a)| *a);
            refresh = Some(token);
            admin
        }
        _ => {
            state.record(request);
            return unsupported("unknown grant_type");
        }
    };
    let Some(admin) = admin else {
        request.status = 401;
        let detail = if request.grant_type.as_deref() == Some("password") {
            "invalid credentials"
        } else {
            "invalid refresh token"
        };
        state.record(request);
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
            detail,
        );
    };
    if offline {
        let user = request.username.as_deref().expect("an authenticated user");
        refresh = Some(state.new_refresh_token(user));
    }
    request.granted = request.scopes.iter().filter_map(|s| grant(s, admin)).collect();

    let signed = sign(&state, &request);
    let scope = request
        .granted
        .iter()
        .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ");
    request.status = 200;
    state.record(request);
    let mut answer = json!({
        "access_token": signed.token,
        "expires_in": signed.expires_in,
        "issued_at": signed.issued_at,
        "scope": scope,
    });
    if let Some(refresh) = refresh {
        answer["refresh_token"] = refresh.into();
    }
    axum::Json(answer).into_response()
}

/// A distribution-style error body: `{"errors":[{"code","message","detail"}]}`.
fn oauth_error(status: StatusCode, code: &str, message: &str, detail: &str) -> Response {
    let body = json!({"errors": [{"code": code, "message": message, "detail": detail}]});
    (status, axum::Json(body)).into_response()
}

/// What `scope` (`type:name:actions`) grants: pull for users, and push too in their own
/// namespace ([`PUSH_NAMESPACE`](super::PUSH_NAMESPACE)); everything for the admin;
/// `registry:catalog:*` for any user. `None` if nothing is granted.
fn grant(scope: &str, admin: bool) -> Option<Access> {
    // The name may itself contain ':' (a host:port prefix), so split at the first and last.
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let allowed: &[&str] = match (kind, admin) {
        ("repository", false) if name.starts_with(super::PUSH_NAMESPACE) => &["pull", "push"],
        ("repository", false) => &["pull"],
        ("repository", true) => &["pull", "push", "delete", "*"],
        ("registry", _) if name == "catalog" => &["*"],
        _ => &[],
    };
    let actions: Vec<String> = actions
        .split(',')
        .filter(|a| allowed.contains(a))
        .map(String::from)
        .collect();
    (!actions.is_empty()).then(|| Access {
        kind: kind.into(),
        name: name.into(),
        actions,
    })
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(B64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.into(), password.into()))
}

fn unauthorized() -> Response {
    let body =
        json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": null}]});
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"mcreg-token-server\"")],
        axum::Json(body),
    )
        .into_response()
}
