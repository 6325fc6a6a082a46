//! A fake Alibaba Cloud Container Registry (`cr`) OpenAPI on loopback, one per test process,
//! standing in for `cr.<region>.aliyuncs.com`.
//!
//! It verifies the ACS3-HMAC-SHA256 signature of every request by recomputing it from what
//! arrived on the wire (method, path, raw query, signed headers, body) with the secret of
//! the AccessKey named in `Credential=`, using its own implementation of Alibaba's V3 signature
//! (the [`acs3`] module, checked against Alibaba's published example), not the provider's. It also
//! checks `x-acs-content-sha256`, the `x-acs-date` (at most 15 minutes off), the nonce (never
//! twice) and the STS token, and answers like the real API: Enterprise (2018-12-01, RPC:
//! `GetAuthorizationToken`, `ListInstance`) and Personal (2016-06-07, ROA `GET /tokens`).
//! Refusals are the real API's JSON errors (`RequestId`, `Code`, `Message`…).
//!
//! Tests run in parallel against the one fake, so every test uses its own [`Account`]
//! (an AccessKey with its own settings and call log).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::harness::BackgroundServer;

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

/// 32 random hex digits (nonces, secrets).
pub fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// `x-acs-date` for `now + offset` seconds.
pub fn acs_date(offset: i64) -> String {
    humantime::format_rfc3339_seconds(shifted(SystemTime::now(), offset)).to_string()
}

/// `127.0.0.1:PORT` of the fake, as errors name it.
pub fn api_host() -> String {
    fake()
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

fn shifted(time: SystemTime, seconds: i64) -> SystemTime {
    if seconds >= 0 {
        time + Duration::from_secs(seconds as u64)
    } else {
        time - Duration::from_secs(seconds.unsigned_abs())
    }
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
        if header("x-acs-content-sha256") != Some(acs3::hex_sha256(body).as_str()) {
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
        let canonical = acs3::canonical_request(method.as_str(), uri.path(), &pairs, &signed, body);
        let to_sign = acs3::string_to_sign(&canonical);
        let expected = acs3::signature(&account.secret, &to_sign);
        // `SignedHeaders` must be what the canonical form lists: lowercase, sorted, each
        // `host`, `content-type` or `x-acs-*`, once.
        if !acs3::signed_headers_are_canonical(&names) || expected != *provided {
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
        let now = shifted(SystemTime::now(), account.clock_offset_s.load(Ordering::SeqCst));
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

/// Alibaba Cloud's V3 request signature, ACS3-HMAC-SHA256, as the server side computes it from
/// a request that arrived (written from Alibaba's documentation, independently of the provider's
/// signer, which it checks):
///
/// ```text
/// CanonicalRequest = HTTPMethod \n CanonicalURI \n CanonicalQueryString \n
///                    CanonicalHeaders \n SignedHeaders \n HexEncode(SHA256(body))
/// CanonicalHeaders = for each signed header, in order: lowercase(name) ":" trim(value) \n
/// StringToSign     = "ACS3-HMAC-SHA256" \n HexEncode(SHA256(CanonicalRequest))
/// Signature        = HexEncode(HMAC-SHA256(AccessKeySecret, StringToSign))
/// ```
///
/// The URI and the query are percent-encoded per RFC 3986 (only `A-Z a-z 0-9 - _ . ~` stay as
/// they are, a space is `%20`); query parameters are sorted by name, then value.
pub mod acs3 {
    use hmac::{Hmac, Mac as _};
    use sha2::{Digest as _, Sha256};

    /// Lowercase hex of SHA-256 of `data`.
    pub fn hex_sha256(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// RFC 3986 encoding of every byte outside the unreserved set, with uppercase hex digits.
    fn rfc3986(text: &str) -> String {
        text.bytes()
            .fold(String::with_capacity(text.len()), |mut out, byte| {
                match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        out.push(byte as char)
                    }
                    _ => out.push_str(&format!("%{byte:02X}")),
                }
                out
            })
    }

    /// `%XX` sequences of a path segment decoded (anything else kept as is).
    fn percent_decode(segment: &str) -> Vec<u8> {
        let bytes = segment.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex_pair = bytes
                .get(i + 1..i + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok());
            match (
                bytes[i],
                hex_pair.and_then(|pair| u8::from_str_radix(pair, 16).ok()),
            ) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        out
    }

    /// The canonical URI of a path as received: each segment decoded, then encoded again
    /// (`/` for an empty path).
    fn canonical_uri(path: &str) -> String {
        if path.is_empty() {
            return "/".to_owned();
        }
        let segments: Vec<String> = path
            .split('/')
            .map(|segment| rfc3986(&String::from_utf8_lossy(&percent_decode(segment))))
            .collect();
        segments.join("/")
    }

    /// The canonical query string of decoded `(name, value)` pairs.
    pub fn canonical_query(pairs: &[(String, String)]) -> String {
        let mut encoded: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (rfc3986(k), rfc3986(v))).collect();
        encoded.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let mut query = String::new();
        for (name, value) in encoded {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&name);
            query.push('=');
            query.push_str(&value);
        }
        query
    }

    /// Whether a `SignedHeaders` list is in canonical form: lowercase names, strictly ascending,
    /// each `host`, `content-type` or `x-acs-*`.
    pub fn signed_headers_are_canonical(names: &[&str]) -> bool {
        let allowed = |name: &str| name == "host" || name == "content-type" || name.starts_with("x-acs-");
        names
            .iter()
            .all(|name| allowed(name) && !name.bytes().any(|b| b.is_ascii_uppercase()))
            && names.windows(2).all(|pair| pair[0] < pair[1])
    }

    /// The canonical request of a received request: `path` as on the wire, the query's decoded
    /// `pairs`, the `signed` headers (name, value) in `SignedHeaders` order, the exact `body`.
    pub fn canonical_request(
        method: &str,
        path: &str,
        pairs: &[(String, String)],
        signed: &[(&str, &str)],
        body: &[u8],
    ) -> String {
        let mut headers = String::new();
        for (name, value) in signed {
            headers.push_str(&name.to_ascii_lowercase());
            headers.push(':');
            headers.push_str(value.trim());
            headers.push('\n');
        }
        let names: Vec<String> = signed.iter().map(|(name, _)| name.to_ascii_lowercase()).collect();
        [
            method.to_owned(),
            canonical_uri(path),
            canonical_query(pairs),
            headers,
            names.join(";"),
            hex_sha256(body),
        ]
        .join("\n")
    }

    /// `ACS3-HMAC-SHA256` and the canonical request's hash, on two lines.
    pub fn string_to_sign(canonical_request: &str) -> String {
        ["ACS3-HMAC-SHA256", &hex_sha256(canonical_request.as_bytes())].join("\n")
    }

    /// Lowercase hex of HMAC-SHA256 keyed with the AccessKey secret.
    pub fn signature(secret: &str, string_to_sign: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(string_to_sign.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Alibaba's published example ("V3 request signature", ECS RunInstances), as a server
        /// receives it: the query decoded, the signed headers in `SignedHeaders` order.
        #[test]
        fn published_example() {
            let pairs = [
                ("RegionId".to_owned(), "cn-shanghai".to_owned()),
                (
                    "ImageId".to_owned(),
                    "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd".to_owned(),
                ),
            ];
            let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
            assert_eq!(hex_sha256(b""), empty);
            let signed = [
                ("host", "ecs.cn-shanghai.aliyuncs.com"),
                ("x-acs-action", "RunInstances"),
                ("x-acs-content-sha256", empty),
                ("x-acs-date", "2023-10-26T10:22:32Z"),
                ("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d"),
                ("x-acs-version", "2014-05-26"),
            ];
            let names: Vec<&str> = signed.iter().map(|(name, _)| *name).collect();
            assert!(signed_headers_are_canonical(&names));
            let request = canonical_request("POST", "/", &pairs, &signed, b"");
            assert_eq!(
                request,
                "POST\n/\n\
                 ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n\
                 host:ecs.cn-shanghai.aliyuncs.com\n\
                 x-acs-action:RunInstances\n\
                 x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
                 x-acs-date:2023-10-26T10:22:32Z\n\
                 x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n\
                 x-acs-version:2014-05-26\n\
                 \n\
                 host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
                 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            );
            let to_sign = string_to_sign(&request);
            assert_eq!(
                to_sign,
                "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
            );
            assert_eq!(
                signature("YourAccessKeySecret", &to_sign),
                "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
            );
        }

        #[test]
        fn encoding_order_and_signed_header_lists() {
            let pairs: Vec<(String, String)> = [("b", "2"), ("a", "x y*~/+"), ("PageNo", "1"), ("Empty", "")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(canonical_query(&pairs), "Empty=&PageNo=1&a=x%20y%2A~%2F%2B&b=2");
            assert_eq!(canonical_uri(""), "/");
            assert_eq!(canonical_uri("/tokens"), "/tokens");
            assert_eq!(canonical_uri("/a%20b/c d/%C3%A9"), "/a%20b/c%20d/%C3%A9");
            assert!(!signed_headers_are_canonical(&["x-acs-date", "host"]));
            assert!(!signed_headers_are_canonical(&["host", "host"]));
            assert!(!signed_headers_are_canonical(&["Host"]));
            assert!(!signed_headers_are_canonical(&["accept", "host"]));
        }
    }
}
