//! The `ali` provider pointed at the harness's fake `cr` API
//! ([`conformance::harness::cloud::alibaba`]): builder options for an [`Account`], the provider
//! built directly, a credentials request as the transport makes it, and a request signed by hand
//! with the provider's own signer.

use std::sync::Arc;

use conformance::harness::cloud::alibaba::{Account, fake};
use registry_ali::{AliOption, signature};
use registry_client::driver::auth::AuthScheme;
use registry_client::{
    AbstractRegistry, AuthRequest, Challenge, Credentials, ProviderConfig, RepositoryClient,
    RepositoryClientBuilder,
};
use serde_json::Value;

/// The provider's view of a fake [`Account`].
pub trait AccountExt {
    /// Builder options that point the provider at the fake with this AccessKey.
    fn options(&self) -> Vec<(AliOption, String)>;
    /// An `ali` client builder with [`options`](Self::options).
    fn builder(&self) -> RepositoryClientBuilder;
}

impl AccountExt for Account {
    fn options(&self) -> Vec<(AliOption, String)> {
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

    fn builder(&self) -> RepositoryClientBuilder {
        registry_ali::register().expect("register ali");
        self.options()
            .into_iter()
            .fold(RepositoryClient::builder("ali"), |b, (k, v)| b.option(k, v))
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

/// Sends one request signed by hand with the provider's signer (date and nonce chosen by the
/// test) to the fake, which checks it with its own.
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
