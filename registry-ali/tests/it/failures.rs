//! The fake refuses what the real API refuses (wrong secret, stale date, reused nonce), and
//! the provider maps the API's refusals to the core's error kinds, tagged `ali`, with no
//! secret in any `Display`, `Debug` or log line.

use std::error::Error as _;
use std::time::Duration;

use crate::common::{AccountExt as _, ask, provider, raw_call};
use conformance::harness::cloud::alibaba::{
    Account, MCREG_INSTANCE_ID, TEMP_TOKEN, TEMP_USER, acs_date, api_host, fake, random_hex,
};
use conformance::harness::{AuthMode, TestRegistry};
use registry_ali::AliOption;
use registry_client::{Error, RepositoryClient, RetryConfig};

const HOST: &str = "mcreg-registry.cn-hangzhou.cr.aliyuncs.com";

/// `Display` and `Debug` of an error and its whole source chain.
fn shown(err: &Error) -> String {
    let mut text = format!("{err} | {err:?}");
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    text
}

fn enterprise_options(account: &Account) -> Vec<(AliOption, String)> {
    let mut options = account.options();
    options.push((registry_ali::AliOption::InstanceId, MCREG_INSTANCE_ID.into()));
    options
}

fn with(options: &[(AliOption, String)], name: AliOption, value: &str) -> Vec<(AliOption, String)> {
    let mut options: Vec<_> = options.iter().filter(|(n, _)| *n != name).cloned().collect();
    options.push((name, value.to_owned()));
    options
}

fn assert_no_secrets(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} shown in: {text}");
    }
}

/// Requests signed by hand prove the fake's checks: only a fresh, correctly signed request
/// with an unused nonce is answered.
#[tokio::test]
async fn fake_rejects_wrong_secret_stale_date_and_reused_nonce() {
    let account = fake().account("raw");
    let params = [("InstanceId", MCREG_INSTANCE_ID)];
    let call = |secret: String, date: String, nonce: String| {
        let id = account.id.clone();
        async move { raw_call(&id, &secret, "GetAuthorizationToken", &params, &date, &nonce).await }
    };
    let code =
        |answer: &(u16, serde_json::Value)| (answer.0, answer.1["Code"].as_str().unwrap_or("").to_owned());

    let nonce = random_hex();
    let ok = call(account.secret.clone(), acs_date(0), nonce.clone()).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert_eq!(ok.1["TempUsername"], TEMP_USER);
    assert_eq!(ok.1["AuthorizationToken"], TEMP_TOKEN);
    assert_eq!(ok.1["IsSuccess"], true);

    let wrong = call(format!("{}x", account.secret), acs_date(0), random_hex()).await;
    assert_eq!(code(&wrong), (400, "SignatureDoesNotMatch".into()));
    let stale = call(account.secret.clone(), acs_date(-16 * 60), random_hex()).await;
    assert_eq!(code(&stale), (400, "InvalidTimeStamp.Expired".into()));
    let ahead = call(account.secret.clone(), acs_date(16 * 60), random_hex()).await;
    assert_eq!(code(&ahead), (400, "InvalidTimeStamp.Expired".into()));
    let reused = call(account.secret.clone(), acs_date(0), nonce).await;
    assert_eq!(code(&reused), (400, "SignatureNonceUsed".into()));
    let late = call(account.secret.clone(), acs_date(-14 * 60), random_hex()).await;
    assert_eq!(late.0, 200, "14 minutes is within the window: {}", late.1);

    let unknown = raw_call(
        "LTAI5tnobody",
        "x",
        "GetAuthorizationToken",
        &params,
        &acs_date(0),
        &random_hex(),
    )
    .await;
    assert_eq!(code(&unknown), (404, "InvalidAccessKeyId.NotFound".into()));
    assert_eq!(
        account.errors(),
        vec![
            "SignatureDoesNotMatch",
            "InvalidTimeStamp.Expired",
            "InvalidTimeStamp.Expired",
            "SignatureNonceUsed"
        ]
    );
    assert_eq!(account.answered("GetAuthorizationToken", "2018-12-01"), 2);
}

/// A wrong secret, an unknown key, a stale clock and a wrong STS token are `Unauthorized`;
/// each names the API host and `ali`, and shows no secret and no signature.
#[tokio::test]
async fn signature_and_key_errors_are_unauthorized() {
    let account = fake().account("mapped");
    let options = enterprise_options(&account);
    let expected_host = api_host();

    let wrong_secret = "wrong-Secret-never-shown";
    let err = ask(
        &provider(
            &with(&options, registry_ali::AliOption::AccessKeySecret, wrong_secret),
            None,
        ),
        HOST,
    )
    .await
    .expect_err("wrong secret");
    let Error::Unauthorized { host, message } = err.underlying() else {
        panic!("{err:?}")
    };
    assert_eq!(host, &expected_host);
    assert!(
        message.starts_with("SignatureDoesNotMatch: Specified signature <redacted> is not matched"),
        "{message}"
    );
    assert!(err.is_auth() && !err.is_retryable());
    assert_no_secrets(&shown(&err), &[wrong_secret, &account.secret]);
    assert_eq!(account.errors(), vec!["SignatureDoesNotMatch"]);

    let err = ask(
        &provider(
            &with(&options, registry_ali::AliOption::AccessKeyId, "LTAI5tnobody"),
            None,
        ),
        HOST,
    )
    .await
    .expect_err("unknown key");
    let Error::Unauthorized { host, message } = err.underlying() else {
        panic!("{err:?}")
    };
    assert_eq!(host, &expected_host);
    assert!(
        message.starts_with(
            "InvalidAccessKeyId.NotFound: Specified access key is not found. (HTTP 404, RequestId "
        ),
        "{message}"
    );
    assert_no_secrets(&shown(&err), &[&account.secret]);

    let skewed = fake().account("skewed");
    skewed.set_clock_offset(20 * 60);
    let err = ask(&provider(&enterprise_options(&skewed), None), HOST)
        .await
        .expect_err("stale");
    let Error::Unauthorized { message, .. } = err.underlying() else {
        panic!("{err:?}")
    };
    assert!(message.starts_with("InvalidTimeStamp.Expired: "), "{message}");
    assert_eq!(skewed.errors(), vec!["InvalidTimeStamp.Expired"]);

    let sts = fake().sts_account("mapped");
    let token = sts.security_token.clone().expect("STS token");
    let wrong_token = "wrong-sts-Token-never-shown";
    let err = ask(
        &provider(
            &with(
                &enterprise_options(&sts),
                registry_ali::AliOption::SecurityToken,
                wrong_token,
            ),
            None,
        ),
        HOST,
    )
    .await
    .expect_err("wrong STS token");
    let Error::Unauthorized { message, .. } = err.underlying() else {
        panic!("{err:?}")
    };
    assert!(
        message.starts_with("InvalidSecurityToken.MismatchWithAccessKey: "),
        "{message}"
    );
    assert_no_secrets(&shown(&err), &[wrong_token, &token, &sts.secret]);
}

/// `Forbidden.RAM` is `Denied`; `Throttling` is `RateLimited` (retryable); both tagged `ali`.
#[tokio::test]
async fn permission_and_throttling_errors() {
    let account = fake().account("denied");
    let ali = provider(&enterprise_options(&account), None);
    account.fail_next(403, "Forbidden.RAM", 1);
    let err = ask(&ali, HOST).await.expect_err("no permission");
    let Error::Denied { host, message } = err.underlying() else {
        panic!("{err:?}")
    };
    assert_eq!(host, &api_host());
    assert_eq!(err.provider_id(), Some("ali"));
    assert!(
        message.starts_with("Forbidden.RAM: Forbidden.RAM (forced by the test) (HTTP 403, RequestId "),
        "{message}"
    );
    assert!(err.is_auth() && !err.is_retryable());

    account.fail_next(400, "Throttling", 1);
    let err = ask(&ali, HOST).await.expect_err("throttled");
    assert!(
        matches!(
            err.underlying(),
            Error::RateLimited {
                retry_after: None,
                ..
            }
        ) && err.provider_id() == Some("ali"),
        "{err:?}"
    );
    assert!(err.is_rate_limited() && err.is_retryable());
    assert_eq!(
        err.underlying().to_string(),
        format!("rate limited by {}", api_host())
    );

    // The failures were not cached: the next call is answered.
    let c = ask(&ali, HOST).await.expect("answered").expect("some");
    assert_eq!(c.username(), Some(TEMP_USER));
    assert_eq!(account.errors(), vec!["Forbidden.RAM", "Throttling"]);
    assert_eq!(account.answered("GetAuthorizationToken", "2018-12-01"), 1);
}

/// A client of `registry` with the fake's `account`, retrying quickly as `retry` says.
fn client(account: &Account, registry: &TestRegistry, retry: RetryConfig) -> RepositoryClient {
    account
        .builder()
        .option(AliOption::InstanceId, MCREG_INSTANCE_ID)
        .endpoint(registry.url())
        .retry(retry)
        .build()
        .expect("client")
}

/// The API fails twice with `status` and `code`; the client's retry policy gets the
/// manifest anyway, asking the API three times and the registry's token once.
async fn pull_through_two_api_failures(status: u16, code: &str) -> (TestRegistry, std::sync::Arc<Account>) {
    let registry = TestRegistry::start_as(AuthMode::Token, TEMP_USER, TEMP_TOKEN).await;
    let account = fake().account(code);
    account.fail_next(status, code, 2);
    let quick = RetryConfig::default()
        .with_initial_backoff(Duration::from_millis(10))
        .with_max_backoff(Duration::from_millis(50));
    let fixture = &registry.fixtures().single_oci;
    let manifest = client(&account, &registry, quick)
        .get_manifest(&fixture.reference(HOST).parse().expect("reference"))
        .await
        .expect("manifest after retries");
    assert_eq!(manifest.descriptor.digest, fixture.digest);
    assert_eq!(account.errors(), vec![code, code]);
    assert_eq!(account.answered("GetAuthorizationToken", "2018-12-01"), 1);
    (registry, account)
}

/// The client retries a throttled API call like any rate-limited request, then pulls.
#[tokio::test]
async fn client_retries_throttled_api_calls() {
    pull_through_two_api_failures(400, "Throttling").await;
}

/// A server error from the API is retried by the client's retry policy too (it was final
/// while the provider mapped it to a plain provider error), then the pull goes on.
#[tokio::test]
async fn client_retries_api_server_errors() {
    let (registry, account) = pull_through_two_api_failures(503, "ServiceUnavailable").await;
    let fixture = &registry.fixtures().single_oci;

    // Without retries the error says what the API answered, and is retryable.
    account.fail_next(503, "ServiceUnavailable", 1);
    let err = client(&account, &registry, RetryConfig::disabled())
        .get_manifest(&fixture.reference(HOST).parse().expect("reference"))
        .await
        .expect_err("503");
    assert!(err.is_retryable() && err.provider_id() == Some("ali"), "{err:?}");
    assert!(
        matches!(err.underlying(), Error::Registry { status: 503, .. }),
        "{err:?}"
    );
}

/// STS keys send `x-acs-security-token`; nothing secret reaches a log line (TRACE, every
/// crate) or the client's `Debug`.
#[tokio::test]
async fn sts_token_is_sent_and_nothing_secret_is_logged() {
    let registry = TestRegistry::start_as(AuthMode::Token, TEMP_USER, TEMP_TOKEN).await;
    let sts = fake().sts_account("logged");
    let token = sts.security_token.clone().expect("token");
    let log = conformance::harness::logs::capture();
    let client = sts.builder().endpoint(registry.url()).build().expect("client");
    let fixture = &registry.fixtures().nested;
    let image = fixture
        .reference("registry-intl.ap-southeast-1.aliyuncs.com")
        .parse()
        .expect("reference");
    let config = client.get_config(&image).await.expect("config");
    assert_eq!(config.digest, fixture.config_digest);

    let calls = sts.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].security_token.as_deref(), Some(token.as_str()));
    assert_eq!(
        (calls[0].version.as_str(), calls[0].path.as_str()),
        ("2016-06-07", "/tokens")
    );
    let text = log.text();
    assert!(
        text.contains("calling the ACR OpenAPI"),
        "the log captured the call:\n{text}"
    );
    let client_debug = format!("{client:?}");
    assert!(client_debug.contains(&sts.id), "{client_debug}");
    assert_no_secrets(
        &format!("{text}\n{client_debug}"),
        &[&sts.secret, &token, TEMP_TOKEN, "Signature="],
    );
}

/// A host that is not ACR, asked of the `ali` provider, is a configuration error.
#[tokio::test]
async fn non_acr_host_is_a_config_error() {
    let account = fake().account("elsewhere");
    let err = ask(&provider(&account.options(), None), "127.0.0.1:5000")
        .await
        .expect_err("not ACR");
    assert_eq!(
        err.to_string(),
        "invalid configuration: ali: \"127.0.0.1:5000\" is not an Alibaba ACR registry host"
    );
    assert!(account.calls().is_empty());
}
