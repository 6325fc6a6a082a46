#![doc = include_str!("../README.md")]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use google_cloud_auth::credentials::{
    AccessTokenCredentials, Builder, external_account, impersonated, service_account, user_account,
};
use registry_client::{AbstractRegistry, AuthRequest, Credentials, Error, HostMatch, ProviderConfig, Result};
use tokio::runtime::{Handle, Id as RuntimeId};

/// The provider id.
pub const ID: &str = "gcp";
registry_client::provider_options! {
    /// The provider's options: `builder.option(GcpOption::CredentialsFile, path)`, or by name.
    pub enum GcpOption {
        /// A Google credentials JSON file (`authorized_user`, `service_account`,
        /// `impersonated_service_account` or `external_account`) to use instead of
        /// Application Default Credentials.
        CredentialsFile = "credentials_file",
    }
}
/// The OAuth2 scope asked for.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The user name an access token is presented with.
pub const USERNAME: &str = "oauth2accesstoken";

/// For people; the first is matched by pattern, the rest exactly.
const HOSTS: &[&str] = &[
    "<location>-docker.pkg.dev",
    "gcr.io",
    "us.gcr.io",
    "eu.gcr.io",
    "asia.gcr.io",
    "marketplace.gcr.io",
];

/// Whether `host` (optionally with `:port`) is Artifact Registry (`<location>-docker.pkg.dev`)
/// or Container Registry (`gcr.io` and its regional and marketplace hosts).
pub fn is_gcp_host(host: &str) -> bool {
    let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    match name.strip_suffix("-docker.pkg.dev") {
        // A location: `us`, `europe-west1`, `northamerica-northeast2`, …
        Some(location) => {
            location.starts_with(|c: char| c.is_ascii_lowercase())
                && !location.ends_with('-')
                && location
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }
        None => HOSTS[1..].contains(&name.as_str()),
    }
}

/// Presents a Google OAuth2 access token as `oauth2accesstoken` / token.
///
/// The token comes from the file named by [`GcpOption::CredentialsFile`], else from Application
/// Default Credentials (explicit credentials given to the builder are answered by the core). The Google
/// credentials are built on first use (no I/O in the factory) and cache the access token,
/// refreshing it before it expires.
pub struct GcpRegistry {
    credentials_file: Option<PathBuf>,
    /// google-cloud-auth refreshes on a task of the runtime it was built in, so it is built
    /// again when used from another runtime (whose predecessor may be gone).
    google: tokio::sync::Mutex<Option<(RuntimeId, AccessTokenCredentials)>>,
}

impl fmt::Debug for GcpRegistry {
    // Hand-written: nothing from the Google credentials is shown, only where they come from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpRegistry")
            .field("credentials_file", &self.credentials_file)
            .finish_non_exhaustive()
    }
}

impl GcpRegistry {
    // Called with a default config just to ask `serves`: no I/O, no failure.
    fn factory(config: &ProviderConfig) -> Result<Arc<dyn AbstractRegistry>> {
        Ok(Arc::new(GcpRegistry {
            credentials_file: config.option(GcpOption::CredentialsFile).map(PathBuf::from),
            google: tokio::sync::Mutex::new(None),
        }))
    }

    async fn google_credentials(&self) -> Result<AccessTokenCredentials> {
        let runtime = Handle::try_current().map_err(|e| Error::provider(ID, e))?.id();
        let mut slot = self.google.lock().await;
        if let Some((id, google)) = slot.as_ref()
            && *id == runtime
        {
            return Ok(google.clone());
        }
        let google = match &self.credentials_file {
            Some(path) => from_file(path).await?,
            None => Builder::default()
                .with_scopes([SCOPE])
                .build_access_token_credentials()
                .map_err(|e| Error::provider(ID, e))?,
        };
        *slot = Some((runtime, google.clone()));
        Ok(google)
    }
}

/// Builds credentials from a JSON file, by its `type` (what ADC does with its own file).
async fn from_file(path: &Path) -> Result<AccessTokenCredentials> {
    let failed = |what: String| Error::provider(ID, format!("credentials file {}: {what}", path.display()));
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| failed(e.to_string()))?;
    // serde_json's messages name a position, never the content.
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| failed(e.to_string()))?;
    let built = match json.get("type").and_then(|t| t.as_str()) {
        Some("authorized_user") => user_account::Builder::new(json)
            .with_scopes([SCOPE])
            .build_access_token_credentials(),
        Some("service_account") => service_account::Builder::new(json)
            .with_access_specifier(service_account::AccessSpecifier::from_scopes([SCOPE]))
            .build_access_token_credentials(),
        Some("impersonated_service_account") => impersonated::Builder::new(json)
            .with_scopes([SCOPE])
            .build_access_token_credentials(),
        Some("external_account") => external_account::Builder::new(json)
            .with_scopes([SCOPE])
            .build_access_token_credentials(),
        other => return Err(failed(format!("unsupported credential type {other:?}"))),
    };
    built.map_err(|e| failed(e.to_string()))
}

#[async_trait::async_trait]
impl AbstractRegistry for GcpRegistry {
    fn id(&self) -> &'static str {
        ID
    }

    async fn credentials(&self, _request: &AuthRequest<'_>) -> Result<Option<Credentials>> {
        let google = self.google_credentials().await?;
        match google.access_token().await {
            Ok(token) => Ok(Some(Credentials::basic(USERNAME, token.token))),
            Err(e) => {
                // A permanent failure ends google-cloud-auth's refresh task; start afresh next time.
                self.google.lock().await.take();
                Err(Error::provider(ID, e))
            }
        }
    }
}

registry_client::provider! {
    id: ID,
    hosts: HOSTS,
    matches: HostMatch::Only(is_gcp_host),
    options: GcpOption::NAMES,
    factory: GcpRegistry::factory,
}
