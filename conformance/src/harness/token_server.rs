//! An in-process Docker token server (`GET /token?service=S&scope=…`) for registries in
//! [`AuthMode::Token`](super::AuthMode::Token).
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
use tokio::sync::oneshot;

/// The `service` the registry is configured with (and the JWT `aud`).
pub const SERVICE: &str = "mcreg-test-registry";
/// The JWT `iss` the registry is configured to accept.
pub const ISSUER: &str = "mcreg-test-token-server";

/// One request the token server answered, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `service` query parameter.
    pub service: Option<String>,
    /// Every `scope` query parameter, in order.
    pub scopes: Vec<String>,
    /// The Basic-auth user name, if any (also set when the password was wrong).
    pub username: Option<String>,
    /// The `account` query parameter.
    pub account: Option<String>,
    /// HTTP status of the answer: 200 when a token was issued.
    pub status: u16,
    /// What the issued token grants (empty if none was issued or nothing was granted).
    pub granted: Vec<Access>,
}

impl TokenRequest {
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
    addr: SocketAddr,
    cert_pem: String,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
    log: Mutex<Vec<TokenRequest>>,
}

impl TokenServer {
    /// Starts a token server on `127.0.0.1:<free port>` on its own thread and runtime, with
    /// the users [`USER`](super::USER) (pull) and [`ADMIN`](super::ADMIN) (pull, push, delete)
    /// and the given passwords.
    pub fn start(user_password: &str, admin_password: &str) -> TokenServer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate P-256 key");
        let mut params =
            rcgen::CertificateParams::new(vec!["mcreg-token-server".into()]).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mcreg test token server");
        let cert = params.self_signed(&key).expect("self-sign certificate");
        let users = HashMap::from([
            (super::USER.to_string(), (user_password.to_string(), false)),
            (super::ADMIN.to_string(), (admin_password.to_string(), true)),
        ]);
        let state = Arc::new(Inner {
            key: EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("ES256 key"),
            x5c: B64.encode(cert.der()),
            users,
            lifetime_ms: AtomicU64::new(300_000),
            skew_ms: AtomicU64::new(0),
            allow_anonymous: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let app = Router::new()
            .route("/token", get(issue_token))
            .with_state(state.clone());
        // Own thread + runtime: the server must keep answering while a test's current-thread
        // runtime is blocked (e.g. running skopeo synchronously).
        let thread = std::thread::Builder::new()
            .name("mcreg-token-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("token server runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    tokio::select! {
                        r = axum::serve(listener, app).into_future() => r.expect("token server"),
                        _ = rx => {}
                    }
                });
            })
            .expect("spawn token server thread");
        TokenServer {
            state,
            addr,
            cert_pem: cert.pem(),
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/token`, the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
    let mut request = TokenRequest {
        service: None,
        scopes: Vec::new(),
        username: None,
        account: None,
        status: 401,
        granted: Vec::new(),
    };
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
        Some((user, password)) => match state.users.get(user) {
            Some((expected, admin)) if expected == password => Some(*admin),
            _ => None,
        },
        None if state.allow_anonymous.load(Ordering::SeqCst) => Some(false),
        None => None,
    };
    let Some(admin) = admin else {
        state.log.lock().unwrap().push(request);
        return unauthorized();
    };
    if credentials.is_some() {
        request.granted = request.scopes.iter().filter_map(|s| grant(s, admin)).collect();
    }

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
    request.status = 200;
    state.log.lock().unwrap().push(request);
    axum::Json(json!({
        "token": token,
        "access_token": token,
        "expires_in": lifetime_s,
        "issued_at": issued_at,
    }))
    .into_response()
}

/// What `scope` (`type:name:actions`) grants: pull for users, everything for the admin;
/// `registry:catalog:*` for any user. `None` if nothing is granted.
fn grant(scope: &str, admin: bool) -> Option<Access> {
    // The name may itself contain ':' (a host:port prefix), so split at the first and last.
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let allowed: &[&str] = match (kind, admin) {
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
