#![doc = include_str!("../README.md")]

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use base64::Engine as _;
use registry_client::driver::auth::{Expiring, ExpiringCredentials, RefreshPolicy};
use registry_client::driver::cloud_api::without_trace;
use registry_client::{AbstractRegistry, AuthRequest, Credentials, Error, HostMatch, ProviderConfig, Result};

/// The provider id: `RepositoryClient::builder("aws")`.
pub const ID: &str = "aws";
/// ECR Public's registry host.
pub const PUBLIC_HOST: &str = "public.ecr.aws";
/// The region of the `ecr-public` API, whatever region is configured.
pub const PUBLIC_REGION: &str = "us-east-1";
registry_client::provider_options! {
    /// The provider's options: `builder.option(AwsOption::Profile, "ci")`, or by name.
    pub enum AwsOption {
        /// The ECR (and ECR Public) API endpoint, e.g. a local emulator.
        EndpointUrl = "aws_endpoint_url",
        /// An access key id, used (with the secret key) instead of the credential chain.
        AccessKeyId = "aws_access_key_id",
        /// The secret access key that goes with [`AwsOption::AccessKeyId`].
        SecretAccessKey = "aws_secret_access_key",
        /// A session token for temporary access keys.
        SessionToken = "aws_session_token",
        /// The profile of `~/.aws/config` to use instead of `AWS_PROFILE`.
        Profile = "aws_profile",
    }
}

const HOSTS: &[&str] = &[
    "<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]",
    "<account>.dkr-ecr[-fips].<region>.on.aws",
    PUBLIC_HOST,
];

/// An ECR registry host, as recognised by [`EcrHost::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcrHost {
    /// A private registry: `<12 digits>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`,
    /// or dual-stack `<12 digits>.dkr-ecr[-fips].<region>.on.aws`.
    Private { account: String, region: String },
    /// ECR Public, [`PUBLIC_HOST`].
    Public,
}

impl EcrHost {
    /// Recognises an ECR host, with or without `:port`, in any letter case.
    pub fn parse(host: &str) -> Option<EcrHost> {
        let host = host.to_ascii_lowercase();
        let name = match host.split_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => &host,
        };
        if name == PUBLIC_HOST {
            return Some(EcrHost::Public);
        }
        let (account, rest) = name.split_once('.')?;
        let (dual_stack, rest) = ["dkr.ecr.", "dkr.ecr-fips.", "dkr-ecr.", "dkr-ecr-fips."]
            .iter()
            .find_map(|prefix| rest.strip_prefix(prefix).map(|r| (prefix.starts_with("dkr-"), r)))?;
        let (region, suffix) = rest.split_once('.')?;
        let suffix_ok = match (dual_stack, suffix) {
            (true, "on.aws") | (false, "amazonaws.com") => !region.starts_with("cn-"),
            (false, "amazonaws.com.cn") => region.starts_with("cn-"),
            _ => false,
        };
        (suffix_ok && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && is_region(region))
            .then(|| EcrHost::Private {
                account: account.to_owned(),
                region: region.to_owned(),
            })
    }

    /// The region of the API that issues this registry's tokens.
    pub fn region(&self) -> &str {
        match self {
            EcrHost::Private { region, .. } => region,
            EcrHost::Public => PUBLIC_REGION,
        }
    }
}

/// `us-east-1`, `us-gov-west-1`, `cn-north-1`: two letters, words, a number.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let letters = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(letters)
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// The private registry host of `account` in `region`.
pub fn registry_host(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") { ".cn" } else { "" };
    format!("{account}.dkr.ecr.{region}.amazonaws.com{suffix}")
}

/// An ECR token from `GetAuthorizationToken`
/// (cached per region and account, refreshed at half its lifetime).
pub struct AwsRegistry {
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    keys: Option<aws_credential_types::Credentials>,
    sdk: tokio::sync::OnceCell<SdkConfig>,
    tokens: ExpiringCredentials,
}

impl fmt::Debug for AwsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsRegistry")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("profile", &self.profile)
            .field("access_key_id", &self.keys.as_ref().map(|k| k.access_key_id()))
            .finish_non_exhaustive()
    }
}

impl AwsRegistry {
    // No I/O here: the chain is read on the first token fetch.
    fn factory(config: &ProviderConfig) -> Result<Arc<dyn AbstractRegistry>> {
        let keys = match (
            config.option(AwsOption::AccessKeyId),
            config.option(AwsOption::SecretAccessKey),
        ) {
            (Some(id), Some(secret)) => Some(aws_credential_types::Credentials::new(
                id,
                secret,
                config.option(AwsOption::SessionToken).map(str::to_owned),
                None,
                "mcreg-options",
            )),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidConfig(format!(
                    "options {:?} and {:?} go together",
                    AwsOption::AccessKeyId.name(),
                    AwsOption::SecretAccessKey.name()
                )));
            }
        };
        Ok(Arc::new(AwsRegistry {
            region: config.region.clone(),
            endpoint_url: config.option(AwsOption::EndpointUrl).map(str::to_owned),
            profile: config.option(AwsOption::Profile).map(str::to_owned),
            keys,
            sdk: tokio::sync::OnceCell::new(),
            tokens: ExpiringCredentials::new(RefreshPolicy::AtPercentOfLifetime(50)),
        }))
    }

    /// The shared AWS configuration: the standard chain, with the builder's settings on top.
    async fn sdk(&self) -> &SdkConfig {
        self.sdk
            .get_or_init(|| {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(region) = &self.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(url) = &self.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                if let Some(profile) = &self.profile {
                    loader = loader.profile_name(profile);
                }
                if let Some(keys) = &self.keys {
                    loader = loader.credentials_provider(keys.clone());
                }
                loader.load()
            })
            .await
    }

    async fn fetch(&self, host: &str, public: bool, region: String) -> Result<Expiring> {
        let (sdk, region) = (self.sdk().await, Region::new(region));
        let found = if public {
            let conf = aws_sdk_ecrpublic::config::Builder::from(sdk)
                .region(region)
                .build();
            let call = aws_sdk_ecrpublic::Client::from_conf(conf).get_authorization_token();
            let data = call
                .send()
                .await
                .map_err(|e| api_error(host, e))?
                .authorization_data;
            data.map(|d| (d.authorization_token, d.expires_at))
        } else {
            let conf = aws_sdk_ecr::config::Builder::from(sdk).region(region).build();
            let call = aws_sdk_ecr::Client::from_conf(conf).get_authorization_token();
            let data = call
                .send()
                .await
                .map_err(|e| api_error(host, e))?
                .authorization_data;
            data.into_iter()
                .flatten()
                .next()
                .map(|d| (d.authorization_token, d.expires_at))
        };
        let (token, expires_at) = found.unwrap_or_default();
        // `authorizationToken` is base64 of `AWS:<password>`.
        let decoded = token.and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
        let (user, password) = decoded
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|d| d.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
            .ok_or_else(|| Error::provider(ID, "GetAuthorizationToken returned no usable token"))?;
        // No expiry given: use the token once.
        let expires_at = expires_at.and_then(|t| SystemTime::try_from(t).ok());
        Ok(Expiring {
            credentials: Credentials::basic(user, password),
            expires_at: expires_at.unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }
}

/// Maps an AWS API error to the core's kinds, tagged "aws", with the code and AWS's message
/// (never the request, which may carry a session token).
fn api_error<E, R>(host: &str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let code = error.code().unwrap_or_default();
    let text = match error.message() {
        // Signature errors echo the canonical request, which may hold a session token.
        Some(m) if !code.contains("Signature") => format!("{ID} GetAuthorizationToken: {code}: {m}"),
        _ => format!("{ID} GetAuthorizationToken: {code}"),
    };
    let host = host.to_owned();
    let kind = match code {
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException" => Error::Unauthorized { host, message: text },
        "AccessDeniedException" | "AccessDenied" => Error::Denied { host, message: text },
        "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" => Error::RateLimited {
            host,
            retry_after: None,
            limit: None,
        },
        _ if error.as_service_error().is_some() => return Error::provider(ID, text),
        _ => {
            return Error::provider(
                ID,
                format!("GetAuthorizationToken: {}", DisplayErrorContext(&error)),
            );
        }
    };
    // The core's kind, tagged: predicates and `Error::kind()` see through the tag.
    Error::provider(ID, kind)
}

#[async_trait]
impl AbstractRegistry for AwsRegistry {
    fn id(&self) -> &'static str {
        ID
    }

    async fn credentials(&self, request: &AuthRequest<'_>) -> Result<Option<Credentials>> {
        // The host's region, else the builder's, else the chain's.
        let (public, region, registry) = match EcrHost::parse(request.host) {
            Some(EcrHost::Public) => (true, PUBLIC_REGION.to_owned(), "public".to_owned()),
            Some(EcrHost::Private { account, region }) => (false, region, account),
            None => {
                let region = self.sdk().await.region().map(|r| r.to_string()).ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "no AWS region for {}: set AWS_REGION or the builder's region",
                        request.host
                    ))
                })?;
                (false, region, request.host.to_owned())
            }
        };
        let key = format!("{region}/{registry}");
        // At TRACE the AWS SDK logs whole responses, ECR tokens and STS session keys included.
        let fetch = || without_trace(self.fetch(request.host, public, region));
        self.tokens.get(&key, fetch).await.map(Some)
    }
}

registry_client::provider! {
    id: ID,
    hosts: HOSTS,
    matches: HostMatch::Only(|host| EcrHost::parse(host).is_some()),
    options: AwsOption::NAMES,
    factory: AwsRegistry::factory,
}
