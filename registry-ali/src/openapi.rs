//! One signed call to an Alibaba Cloud OpenAPI (ACS3-HMAC-SHA256, empty body), with the
//! API's error answers mapped to the core's error kinds. Nothing is retried here: the
//! kinds (throttling, 5xx, broken connections) are retried by the client's one retry
//! policy, which asks for the credentials again, signed afresh (a signature's nonce is
//! single-use).

use std::time::{Duration, SystemTime};

use registry_client::driver::cloud_api;
use registry_client::{Error, Result};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

use crate::{ID, signature};

/// An AccessKey pair, with the security token of an STS key. Never printed.
pub(crate) struct AccessKey {
    pub id: String,
    pub secret: String,
    pub token: Option<String>,
}

/// Error codes that mean the request's key or signature was refused.
const AUTH_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
    "InvalidTimeStamp",
    "SignatureNonceUsed",
];

/// An HTTP client for the API, made on first use (making one loads TLS roots).
#[derive(Debug, Default)]
pub(crate) struct Client(tokio::sync::OnceCell<reqwest::Client>);

impl Client {
    /// Calls `action` (name, version) at `base` + `path` with `params` in the query; the JSON
    /// answer, or the error.
    pub(crate) async fn call(
        &self,
        key: &AccessKey,
        base: &Url,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        (action, version): (&str, &str),
    ) -> Result<Value> {
        let http = self.0.get_or_try_init(|| async {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
        });
        let http = http.await.map_err(|e| Error::provider(ID, e))?;
        let mut url = base.join(path).map_err(|e| Error::provider(ID, e))?;
        // The canonical query is also the one sent: what is signed is what goes on the wire.
        let query = signature::canonical_query(params);
        url.set_query(Some(&query).filter(|q| !q.is_empty()).map(String::as_str));
        let host = host_port(&url);
        let unanswered = |e: reqwest::Error| Error::provider(ID, cloud_api::network_error(e, &host));
        let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let body_hash = signature::sha256_hex(b"");
        let mut headers = vec![
            ("host", host.as_str()),
            ("x-acs-action", action),
            ("x-acs-version", version),
            ("x-acs-date", &date),
            ("x-acs-signature-nonce", &nonce),
            ("x-acs-content-sha256", &body_hash),
        ];
        if let Some(token) = &key.token {
            headers.push(("x-acs-security-token", token));
        }
        let (method_name, path) = (method.to_string(), url.path().to_owned());
        let authorization =
            signature::authorization(&key.id, &key.secret, &method_name, &path, &query, &headers, b"");
        let mut request = http.request(method, url).header("accept", "application/json");
        // `host` is set by the client from the URL, exactly as signed.
        for (name, value) in &headers[1..] {
            request = request.header(*name, *value);
        }
        tracing::debug!(action, version, host, "calling the ACR OpenAPI");
        let response = request
            .header("authorization", &authorization)
            .send()
            .await
            .map_err(unanswered)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(unanswered)?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
        // Enterprise Edition APIs may report a failure in a 200 answer, with `IsSuccess: false`.
        if (200..300).contains(&status) && answer.is_object() && answer["IsSuccess"] != false {
            return Ok(answer);
        }
        let signature = authorization.rsplit('=').next().unwrap_or_default();
        let secrets = [&key.secret, key.token.as_deref().unwrap_or_default(), signature];
        Err(api_error(status, &headers, &answer, &host, &secrets))
    }
}

/// `host[:port]`, as the `Host` header carries it.
pub(crate) fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    url.port()
        .map_or_else(|| host.to_owned(), |port| format!("{host}:{port}"))
}

/// The core's error for an error answer (RPC `Code`/`Message`/`RequestId`, or ROA's
/// lowercase keys), tagged with the provider id, with any secret cut out.
fn api_error(status: u16, headers: &HeaderMap, answer: &Value, host: &str, secrets: &[&str]) -> Error {
    let text = |a: &str, b: &str| {
        answer[a]
            .as_str()
            .or(answer[b].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let code = text("Code", "code");
    let (message, request_id) = (text("Message", "message"), text("RequestId", "requestId"));
    let what: Vec<&str> = [code.as_str(), &message]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let id = Some(request_id)
        .filter(|id| !id.is_empty())
        .map(|id| format!(", RequestId {id}"));
    let mut message = format!("{} (HTTP {status}{})", what.join(": "), id.unwrap_or_default());
    message = message.trim_start().to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        message = message.replace(secret, "<redacted>");
    }
    // The API's codes say more than its statuses (throttling comes as a 400).
    let status = match code.as_str() {
        c if c.starts_with("Throttling") => 429,
        c if AUTH_CODES.iter().any(|p| c.starts_with(p)) => 401,
        c if c.starts_with("Forbidden") || c == "NoPermission" => 403,
        _ => status,
    };
    let kind = match status {
        // An Enterprise Edition refusal inside a 200 (`IsSuccess: false`): the API's own answer.
        200..=299 => return Error::provider(ID, format!("{host}: {message}")),
        401 | 403 | 429 => cloud_api::status_error(host, status, headers, "", &message),
        _ => {
            let code = if code.is_empty() { "UNKNOWN" } else { code.as_str() };
            let detail = message
                .strip_prefix(code)
                .unwrap_or(&message)
                .trim_start_matches([':', ' ']);
            cloud_api::status_error(host, status, headers, code, detail)
        }
    };
    Error::provider(ID, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_answers_map_to_core_kinds() {
        let roa =
            json!({"code": "Forbidden.RAM", "message": "no cr:GetAuthorizationToken", "requestId": "R1"});
        let err = api_error(403, &HeaderMap::new(), &roa, "cr.cn-hangzhou.aliyuncs.com", &[]);
        assert_eq!(err.provider_id(), Some("ali"));
        assert_eq!(
            err.underlying().to_string(),
            "access denied at cr.cn-hangzhou.aliyuncs.com: Forbidden.RAM: no cr:GetAuthorizationToken \
             (HTTP 403, RequestId R1)"
        );
        let err = api_error(429, &HeaderMap::new(), &Value::Null, "h", &[]);
        assert!(
            matches!(err.underlying(), Error::RateLimited { host, .. } if host == "h") && err.is_retryable(),
            "{err:?}"
        );
        let rpc = json!({"Code": "InvalidAccessKeyId.Inactive", "Message": "key sk-0123 is off", "RequestId": "R2"});
        let err = api_error(403, &HeaderMap::new(), &rpc, "h", &["sk-0123"]);
        assert_eq!(
            err.underlying().to_string(),
            "unauthorized at h: InvalidAccessKeyId.Inactive: key <redacted> is off (HTTP 403, RequestId R2)"
        );
        // A server error is retried by the client's retry policy, like a registry's.
        let err = api_error(
            500,
            &HeaderMap::new(),
            &json!({"Code": "InternalError"}),
            "h",
            &[],
        );
        assert_eq!(err.provider_id(), Some("ali"));
        assert!(err.is_retryable(), "{err:?}");
        assert_eq!(
            err.underlying().to_string(),
            "h answered 500: InternalError (HTTP 500)"
        );
        // Throttling comes as a 400 with its code; its Retry-After counts.
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        let err = api_error(400, &headers, &json!({"Code": "Throttling.User"}), "h", &[]);
        assert!(
            matches!(err.underlying(), Error::RateLimited { retry_after: Some(wait), .. } if wait.as_secs() == 3),
            "{err:?}"
        );
        // Any other client error is the API's answer, not retried.
        let err = api_error(
            400,
            &HeaderMap::new(),
            &json!({"Code": "InvalidParameter"}),
            "h",
            &[],
        );
        assert!(!err.is_retryable(), "{err:?}");
    }
}
