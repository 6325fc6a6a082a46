//! A fake Alibaba Cloud `cr` OpenAPI on loopback, shared by the tests of one process.
//!
//! It verifies the ACS3-HMAC-SHA256 signature of every request by recomputing it from what
//! arrived on the wire (method, path, raw query, signed headers, body) with the secret of
//! the AccessKey named in `Credential=`, checks `x-acs-content-sha256`, the `x-acs-date`
//! (at most 15 minutes off), the nonce (never twice) and the STS token, and answers like the
//! real API: Enterprise (2018-12-01, RPC: `GetAuthorizationToken`, `ListInstance`) and
//! Personal (2016-06-07, ROA `GET /tokens`).
//!
//! Tests run in parallel against the one fake, so every test uses its own [`Account`]
//! (an AccessKey with its own settings and call log).

#![allow(dead_code)]

use registry_ali::AliOption;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use conformance::harness::BackgroundServer;
use registry_ali::signature;
use registry_client::driver::auth::AuthScheme;
use registry_client::{
    AbstractRegistry, AuthRequest, Challenge, Credentials, ProviderConfig, RepositoryClient,
    RepositoryClientBuilder,
};
use serde_json::{Value, json};

/// What the fake hands out, and what the test registries accept.
pub const TEMP_USER: &str = "cr_temp_user";
pub const TEMP_TOKEN: &str = "acr-temp-Pa55word-from-the-fake";
/// The Enterprise instance `mcreg` (`mcreg-registry.<region>.cr.aliyuncs.com`).
pub const MCREG_INSTANCE_ID: &str = "cri-mcreg0123456789";
/// Default lifetime of a temporary password, as the real API: one hour.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// One request the fake received from an account, answered or refused.
#[derive(Debug, Clone)]
pub struct Call {
    pub action: String,
    pub version: String,
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub security_token: Option<String>,
    /// The error code it was refused with; `None` when answered.
    pub error: Option<String>,
}

/// An AccessKey the fake knows, with its own knobs and call log.
#[derive(Debug)]
pub struct Account {
    pub id: String,
    pub secret: String,
    /// Set for STS keys: requests must carry it as `x-acs-security-token`.
    pub security_token: Option<String>,
    lifetime_ms: AtomicU64,
    clock_offset_s: AtomicI64,
    failures: Mutex<VecDeque<(u16, String)>>,
    calls: Mutex<Vec<Call>>,
}

impl Account {
    /// Lifetime of the temporary passwords issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.lifetime_ms
            .store(lifetime.as_millis() as u64, Ordering::SeqCst);
    }

    /// Shifts the fake's clock for this account (to make the client's dates look stale).
    pub fn set_clock_offset(&self, seconds: i64) {
        self.clock_offset_s.store(seconds, Ordering::SeqCst);
    }

    /// The next `times` otherwise valid requests are refused with `status` and `code`.
    pub fn fail_next(&self, status: u16, code: &str, times: usize) {
        let mut failures = self.failures.lock().unwrap();
        for _ in 0..times {
            failures.push_back((status, code.to_owned()));
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Answered calls of `action` in API `version`.
    pub fn answered(&self, action: &str, version: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.action == action && c.version == version && c.error.is_none())
            .count()
    }

    /// The error codes of refused calls, in order.
    pub fn errors(&self) -> Vec<String> {
        self.calls().into_iter().filter_map(|c| c.error).collect()
    }

    /// Builder options that point the provider at the fake with this AccessKey.
    pub fn options(&self) -> Vec<(AliOption, String)> {
        let mut options = vec![
            (AliOption::CrEndpoint, fake().url()),
            (AliOption::AccessKeyId, self.id.clone()),
            (AliOption::AccessKeySecret, self.secret.clone()),
        ];
        if let Some(token) = &self.security_token {
            options.push((AliOption::SecurityToken, token.clone()));
        }
        options
    }

    /// An `ali` client builder with [`options`](Self::options).
    pub fn builder(&self) -> RepositoryClientBuilder {
        registry_ali::register().expect("register ali");
        self.options()
            .into_iter()
            .fold(RepositoryClient::builder("ali"), |b, (k, v)| b.option(k, v))
    }
}

pub struct FakeCr {
    url: String,
    state: Arc<Shared>,
    /// Kept in a static, so it serves until the process exits.
    _server: BackgroundServer,
}

struct Shared {
    accounts: Mutex<HashMap<String, Arc<Account>>>,
    nonces: Mutex<HashSet<String>>,
    /// (name, id): 55 `mcreg-NN` instances before `mcreg` itself, so that finding `mcreg`
    /// by name takes a second `ListInstance` page (the fake filters by substring).
    instances: Vec<(String, String)>,
}

/// The fake, started once per test process on its own thread and runtime.
pub fn fake() -> &'static FakeCr {
    static FAKE: OnceLock<FakeCr> = OnceLock::new();
    FAKE.get_or_init(start)
}

impl FakeCr {
    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The account `LTAI5t<name>` (created on first use) with a random secret.
    pub fn account(&self, name: &str) -> Arc<Account> {
        self.add(format!("LTAI5t{name}"), None)
    }

    /// An STS AccessKey `STS.<name>` with a security token.
    pub fn sts_account(&self, name: &str) -> Arc<Account> {
        self.add(format!("STS.{name}"), Some(format!("sts-token-{}", random_hex())))
    }

    fn add(&self, id: String, security_token: Option<String>) -> Arc<Account> {
        let mut accounts = self.state.accounts.lock().unwrap();
        accounts
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Account {
                    id,
                    secret: format!("secret-{}", random_hex()),
                    security_token,
                    lifetime_ms: AtomicU64::new(DEFAULT_LIFETIME.as_millis() as u64),
                    clock_offset_s: AtomicI64::new(0),
                    failures: Mutex::new(VecDeque::new()),
                    calls: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }
}

pub fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn start() -> FakeCr {
    let mut instances: Vec<(String, String)> = (0..55)
        .map(|n| (format!("mcreg-{n:02}"), format!("cri-other{n:02}")))
        .collect();
    instances.push(("mcreg".into(), MCREG_INSTANCE_ID.into()));
    instances.push(("acme".into(), "cri-acme".into()));
    let state = Arc::new(Shared {
        accounts: Mutex::new(HashMap::new()),
        nonces: Mutex::new(HashSet::new()),
        instances,
    });
    let app = Router::new().fallback(handle).with_state(state.clone());
    let server = BackgroundServer::start("fake-ali-cr", app);
    FakeCr {
        url: format!("http://{}/", server.addr()),
        state,
        _server: server,
    }
}

type Refusal = (u16, String, String);

fn refuse(status: u16, code: &str, message: impl Into<String>) -> Refusal {
    (status, code.to_owned(), message.into())
}

async fn handle(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let (account, verdict) = verify(&state, &method, &uri, &headers, &body);
    let verdict = verdict.and_then(|()| {
        let account = account.as_ref().expect("verified");
        let forced = account.failures.lock().unwrap().pop_front();
        match forced {
            Some((status, code)) => Err(refuse(status, &code, format!("{code} (forced by the test)"))),
            None => answer(&state, account, &method, uri.path(), &params, &header),
        }
    });
    if let Some(account) = &account {
        account.calls.lock().unwrap().push(Call {
            action: header("x-acs-action").unwrap_or_default(),
            version: header("x-acs-version").unwrap_or_default(),
            method: method.to_string(),
            path: uri.path().to_owned(),
            params,
            security_token: header("x-acs-security-token"),
            error: verdict.as_ref().err().map(|(_, code, _)| code.clone()),
        });
    }
    let request_id = random_hex().to_uppercase();
    match verdict {
        Ok(mut body) => {
            if body.get("data").is_none() {
                body["RequestId"] = json!(request_id);
            }
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err((status, code, message)) => {
            let body = json!({
                "RequestId": request_id,
                "HostId": header("host").unwrap_or_default(),
                "Code": code,
                "Message": message,
                "Recommend": "https://api.aliyun.com/troubleshoot",
            });
            (StatusCode::from_u16(status).expect("status"), axum::Json(body)).into_response()
        }
    }
}

/// Checks the signature, date, nonce and STS token. Returns the account when the key is known.
fn verify(
    state: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (Option<Arc<Account>>, Result<(), Refusal>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(auth) = header("authorization").and_then(|a| a.strip_prefix("ACS3-HMAC-SHA256 ")) else {
        return (
            None,
            Err(refuse(
                400,
                "IncompleteSignature",
                "no ACS3-HMAC-SHA256 Authorization",
            )),
        );
    };
    let parts: HashMap<&str, &str> = auth.split(',').filter_map(|p| p.trim().split_once('=')).collect();
    let (Some(key_id), Some(signed_names), Some(provided)) = (
        parts.get("Credential"),
        parts.get("SignedHeaders"),
        parts.get("Signature"),
    ) else {
        return (
            None,
            Err(refuse(400, "IncompleteSignature", "malformed Authorization")),
        );
    };
    let Some(account) = state.accounts.lock().unwrap().get(*key_id).cloned() else {
        return (
            None,
            Err(refuse(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            )),
        );
    };
    let result = (|| {
        let names: Vec<&str> = signed_names.split(';').collect();
        let mut required = vec![
            "host",
            "x-acs-action",
            "x-acs-content-sha256",
            "x-acs-date",
            "x-acs-signature-nonce",
            "x-acs-version",
        ];
        if header("x-acs-security-token").is_some() {
            required.push("x-acs-security-token");
        }
        if let Some(missing) = required.iter().find(|r| !names.contains(r)) {
            return Err(refuse(
                400,
                "IncompleteSignature",
                format!("{missing} is not signed"),
            ));
        }
        let mut signed = Vec::new();
        for name in &names {
            let Some(value) = header(name) else {
                return Err(refuse(
                    400,
                    "IncompleteSignature",
                    format!("signed header {name} is missing"),
                ));
            };
            signed.push((*name, value));
        }
        if header("x-acs-content-sha256") != Some(signature::sha256_hex(body).as_str()) {
            return Err(refuse(
                400,
                "InvalidParameter.ContentSha256",
                "x-acs-content-sha256 is not the body's",
            ));
        }
        // Recomputed from the wire: the raw query decoded, then put in canonical form again.
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let query = signature::canonical_query(&pairs);
        let (canonical, recomputed_names) =
            signature::canonical_request(method.as_str(), uri.path(), &query, &signed, body);
        let to_sign = signature::string_to_sign(&canonical);
        let expected = signature::signature(&account.secret, &to_sign);
        if recomputed_names != *signed_names || expected != *provided {
            // Echoes what the client sent, as a careless server might: the client must not show it.
            return Err(refuse(
                400,
                "SignatureDoesNotMatch",
                format!(
                    "Specified signature {provided} is not matched with our calculation. \
                     server string to sign is:{}",
                    to_sign.replace('\n', " ")
                ),
            ));
        }
        let date = header("x-acs-date").unwrap_or_default();
        let Ok(sent) = humantime::parse_rfc3339(date) else {
            return Err(refuse(
                400,
                "InvalidTimeStamp.Format",
                format!("bad x-acs-date {date:?}"),
            ));
        };
        let offset = account.clock_offset_s.load(Ordering::SeqCst);
        let now = if offset >= 0 {
            SystemTime::now() + Duration::from_secs(offset as u64)
        } else {
            SystemTime::now() - Duration::from_secs(offset.unsigned_abs())
        };
        let skew = now.duration_since(sent).unwrap_or_else(|e| e.duration());
        if skew > MAX_SKEW {
            return Err(refuse(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }
        let nonce = header("x-acs-signature-nonce").unwrap_or_default().to_owned();
        if !state.nonces.lock().unwrap().insert(nonce) {
            return Err(refuse(
                400,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        if header("x-acs-security-token") != account.security_token.as_deref() {
            return Err(refuse(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified security token mismatches with access key.",
            ));
        }
        Ok(())
    })();
    (Some(account), result)
}

/// The API's answer to a verified request.
fn answer(
    state: &Shared,
    account: &Account,
    method: &Method,
    path: &str,
    params: &BTreeMap<String, String>,
    header: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, Refusal> {
    let expire_ms = |account: &Account| {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
        now.as_millis() as u64 + account.lifetime_ms.load(Ordering::SeqCst)
    };
    let action = header("x-acs-action").unwrap_or_default();
    let version = header("x-acs-version").unwrap_or_default();
    let rpc = path == "/" && (method == Method::POST || method == Method::GET);
    match (action.as_str(), version.as_str()) {
        ("GetAuthorizationToken", "2018-12-01") if rpc => {
            let id = params.get("InstanceId").map(String::as_str).unwrap_or_default();
            if !state.instances.iter().any(|(_, known)| known == id) {
                // cr 2018-12-01 reports business errors in a 200 answer.
                return Ok(json!({
                    "Code": "INSTANCE_NOT_EXIST",
                    "IsSuccess": false,
                    "Message": format!("instance {id} does not exist"),
                }));
            }
            Ok(json!({
                "AuthorizationToken": TEMP_TOKEN,
                "TempUsername": TEMP_USER,
                "ExpireTime": expire_ms(account),
                "Code": "success",
                "IsSuccess": true,
            }))
        }
        ("ListInstance", "2018-12-01") if rpc => {
            let number =
                |name: &str, default: usize| params.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
            let (page, size) = (number("PageNo", 1).max(1), number("PageSize", 30).clamp(1, 100));
            let filter = params.get("InstanceName").cloned().unwrap_or_default();
            let matching: Vec<&(String, String)> = state
                .instances
                .iter()
                .filter(|(name, _)| name.contains(&filter))
                .collect();
            let instances: Vec<Value> = matching
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .map(|(name, id)| {
                    json!({
                        "InstanceId": id,
                        "InstanceName": name,
                        "InstanceStatus": "RUNNING",
                        "InstanceSpecification": "Enterprise_Basic",
                        "RegionId": "cn-hangzhou",
                    })
                })
                .collect();
            Ok(json!({
                "Instances": instances,
                "PageNo": page,
                "PageSize": size,
                "TotalCount": matching.len().to_string(),
                "Code": "success",
                "IsSuccess": true,
            }))
        }
        ("GetAuthorizationToken", "2016-06-07") if method == Method::GET && path == "/tokens" => Ok(json!({
            "data": {
                "authorizationToken": TEMP_TOKEN,
                "tempUserName": TEMP_USER,
                "expireDate": expire_ms(account),
            }
        })),
        _ => Err(refuse(
            404,
            "InvalidAction.NotFound",
            format!("{method} {path} {action} {version} is not an API of this product"),
        )),
    }
}

/// Builds the `ali` provider directly, with these options (and optional registry credentials).
pub fn provider(
    options: &[(AliOption, String)],
    credentials: Option<Credentials>,
) -> Arc<dyn AbstractRegistry> {
    registry_ali::register().expect("register ali");
    let mut config = ProviderConfig::default();
    for (name, value) in options {
        config.options.insert(name.name().to_owned(), value.clone());
    }
    config.credentials = credentials;
    let record = registry_client::driver::provider("ali").expect("ali is registered");
    record.build(&config).expect("factory")
}

/// Asks `provider` for credentials for `host`, as the transport does after a Bearer challenge.
pub async fn ask(
    provider: &Arc<dyn AbstractRegistry>,
    host: &str,
) -> registry_client::Result<Option<Credentials>> {
    let challenge = Challenge {
        scheme: AuthScheme::Bearer,
        params: vec![(
            "realm".into(),
            "https://dockerauth.cn-hangzhou.aliyuncs.com/auth".into(),
        )],
    };
    let request = AuthRequest {
        host,
        challenge: &challenge,
        scope: Some("repository:team/app:pull"),
    };
    provider.credentials(&request).await
}

/// Sends one request signed by hand (date and nonce chosen by the test) to the fake.
pub async fn raw_call(
    key_id: &str,
    secret: &str,
    action: &str,
    params: &[(&str, &str)],
    date: &str,
    nonce: &str,
) -> (u16, Value) {
    let query = signature::canonical_query(params);
    let url = format!("{}?{query}", fake().url());
    let host = url::Url::parse(&url).unwrap();
    let host = format!("{}:{}", host.host_str().unwrap(), host.port().unwrap());
    let hash = signature::sha256_hex(b"");
    let headers = [
        ("host", host.as_str()),
        ("x-acs-action", action),
        ("x-acs-version", "2018-12-01"),
        ("x-acs-date", date),
        ("x-acs-signature-nonce", nonce),
        ("x-acs-content-sha256", hash.as_str()),
    ];
    let authorization = signature::authorization(key_id, secret, "POST", "/", &query, &headers, b"");
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("authorization", authorization);
    for (name, value) in &headers[1..] {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("fake cr answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// `x-acs-date` for `now + offset` seconds.
pub fn acs_date(offset: i64) -> String {
    let now = SystemTime::now();
    let at = if offset >= 0 {
        now + Duration::from_secs(offset as u64)
    } else {
        now - Duration::from_secs(offset.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `127.0.0.1:PORT` of the fake, as errors name it.
pub fn api_host() -> String {
    fake()
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}
