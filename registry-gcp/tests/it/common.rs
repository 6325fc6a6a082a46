//! The `gcp` provider built directly and asked for credentials as the transport asks, for the
//! tests that point it at the harness's fake Google endpoints
//! ([`conformance::harness::cloud::google`]).

use std::sync::Arc;

use registry_client::driver::auth::{AuthScheme, Challenge};
use registry_client::{AbstractRegistry, AuthRequest, Credentials, Error, ProviderConfig};

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
