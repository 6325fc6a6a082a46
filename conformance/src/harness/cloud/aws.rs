//! A fake Amazon ECR / ECR Public API on loopback, standing in for `api.ecr.<region>.amazonaws.com`
//! and `api.ecr-public.us-east-1.amazonaws.com`: the AWS JSON 1.1 protocol for
//! `GetAuthorizationToken` (`X-Amz-Target` of either service), answering what the test sets and
//! recording each call. It checks that a request is SigV4-signed (`Authorization:
//! AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request`, `X-Amz-Date`) and
//! by the one access key it knows, and answers AWS's JSON errors otherwise. It does not
//! recompute the SigV4 signature: the providers sign with the AWS SDK, not with code of their own.
//!
//! It is served on the caller's tokio runtime (unlike the other fakes): start it from the
//! test's runtime, and it stops with it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

pub const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
pub const ECR_PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";
/// The access key id the fake accepts (any other is `UnrecognizedClientException`).
pub const ACCESS_KEY_ID: &str = "AKIDMCREGFAKE";
pub const SECRET_KEY: &str = "fake-Secret-Key-never-shown";
pub const SESSION_TOKEN: &str = "fake-Session-Token-never-shown";

/// What the fake answers the next calls with.
#[derive(Clone, Debug)]
pub enum Answer {
    /// `AWS:<password>`, expiring this long after the call.
    Token { password: String, lifetime: Duration },
    /// `AWS:<password>`, expiring at 2015-01-01T00:00:00Z, as moto answers.
    Expired { password: String },
    /// An AWS JSON error.
    Error {
        status: u16,
        code: &'static str,
        message: &'static str,
    },
}

/// One request the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub target: String,
    pub access_key_id: String,
    /// The region and service of the SigV4 credential scope.
    pub region: String,
    pub service: String,
    pub session_token: Option<String>,
}

struct State {
    answer: Answer,
    calls: Vec<Call>,
}

pub struct FakeEcr {
    url: String,
    state: Arc<Mutex<State>>,
}

impl FakeEcr {
    pub async fn start(answer: Answer) -> FakeEcr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::start_on(listener, answer).await
    }

    /// On a listener bound earlier (to know the URL before the runtime runs).
    pub async fn start_on(listener: std::net::TcpListener, answer: Answer) -> FakeEcr {
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            answer,
            calls: Vec::new(),
        }));
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap| {
                let state = shared.clone();
                async move { handle(&state, &headers) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        FakeEcr { url, state }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = answer;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn call_count(&self) -> usize {
        self.state.lock().unwrap().calls.len()
    }
}

fn handle(state: &Mutex<State>, headers: &HeaderMap) -> Response {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let target = get("x-amz-target").unwrap_or_default();
    // `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ecr/aws4_request, SignedHeaders=…, Signature=…`
    let scope = get("authorization")
        .and_then(|a| a.strip_prefix("AWS4-HMAC-SHA256 Credential=").map(str::to_owned))
        .filter(|_| get("x-amz-date").is_some());
    let Some(scope) = scope else {
        return error(
            400,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
    };
    let parts: Vec<&str> = scope.split(['/', ',']).collect();
    if parts.len() < 5 || parts[4] != "aws4_request" {
        return error(400, "IncompleteSignatureException", "bad credential scope");
    }
    let call = Call {
        target: target.clone(),
        access_key_id: parts[0].to_owned(),
        region: parts[2].to_owned(),
        service: parts[3].to_owned(),
        session_token: get("x-amz-security-token"),
    };
    let mut state = state.lock().unwrap();
    state.calls.push(call.clone());
    if target != ECR_TARGET && target != ECR_PUBLIC_TARGET {
        return error(400, "UnknownOperationException", "unknown operation");
    }
    if call.access_key_id != ACCESS_KEY_ID {
        return error(
            400,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        );
    }
    let (password, expires_at) = match &state.answer {
        Answer::Token { password, lifetime } => (password, SystemTime::now() + *lifetime),
        Answer::Expired { password } => (password, UNIX_EPOCH + Duration::from_secs(1_420_070_400)),
        Answer::Error {
            status,
            code,
            message,
        } => return error(*status, code, message),
    };
    let data = serde_json::json!({
        "authorizationToken": base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}")),
        "expiresAt": expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64(),
        "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
    });
    let body = if target == ECR_TARGET {
        serde_json::json!({ "authorizationData": [data] })
    } else {
        serde_json::json!({ "authorizationData": data })
    };
    json(200, body)
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json(status, serde_json::json!({ "__type": code, "message": message }))
}

fn json(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}
