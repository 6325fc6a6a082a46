#![doc = include_str!("../README.md")]

mod openapi;
pub mod signature;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use openapi::AccessKey;
use registry_client::driver::auth::{Expiring, ExpiringCredentials, RefreshPolicy};
use registry_client::{AbstractRegistry, AuthRequest, Credentials, Error, HostMatch, ProviderConfig, Result};
use reqwest::Method;
use url::Url;

pub const ID: &str = "ali";
registry_client::provider_options! {
    /// The provider's options: `builder.option(AliOption::InstanceId, "cri-…")`, or by name.
    pub enum AliOption {
        /// The Enterprise Edition instance id (`cri-…`). Without it, the id is looked up
        /// (`ListInstance`) by the instance name in the host.
        InstanceId = "instance_id",
        /// An AccessKey id, instead of the environment's.
        AccessKeyId = "access_key_id",
        /// The AccessKey secret that goes with [`AliOption::AccessKeyId`].
        AccessKeySecret = "access_key_secret",
        /// An STS security token, for a temporary AccessKey.
        SecurityToken = "security_token",
        /// Base URL of the `cr` OpenAPI instead of `https://cr.<region>.aliyuncs.com/`.
        CrEndpoint = "cr_endpoint",
    }
}
pub const ACCESS_KEY_ID_ENV: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ACCESS_KEY_SECRET_ENV: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const SECURITY_TOKEN_ENV: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const CR_ENDPOINT_ENV: &str = "ALIBABA_CLOUD_CR_ENDPOINT";
/// A temporary password (valid about an hour) is replaced this long before its `ExpireTime`:
/// the transport exchanges it at the registry's token service for each new scope, maybe
/// minutes after it was handed out, and clocks differ. Five minutes covers both and costs
/// one API call per ~55 minutes.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// OpenAPI actions as (name, version): Enterprise Edition RPC, Personal Edition ROA.
const ENTERPRISE_TOKEN: (&str, &str) = ("GetAuthorizationToken", "2018-12-01");
const LIST_INSTANCE: (&str, &str) = ("ListInstance", "2018-12-01");
const PERSONAL_TOKEN: (&str, &str) = ("GetAuthorizationToken", "2016-06-07");
const PAGE_SIZE: usize = 50;
const HOSTS: &[&str] = &[
    "registry[-intl][-vpc][-internal].<region>.aliyuncs.com",
    "<instance>-registry[-vpc].<region>.cr.aliyuncs.com",
];

/// An ACR registry host: the Personal or the Enterprise Edition, and its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcrHost {
    /// `registry[-intl][-vpc][-internal].<region>.aliyuncs.com`
    Personal { region: String },
    /// `<instance>-registry[-vpc].<region>.cr.aliyuncs.com`
    Enterprise { instance: String, region: String },
}

impl AcrHost {
    /// Recognises an ACR host (with or without `:port`, any case); `None` for anything else.
    pub fn parse(host: &str) -> Option<AcrHost> {
        let name = host.split(':').next()?.to_ascii_lowercase();
        let labels: Vec<&str> = name.split('.').collect();
        let label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        match labels[..] {
            [first, region, "aliyuncs", "com"] if label(region) => {
                let rest = first.strip_prefix("registry")?;
                let rest = rest.strip_prefix("-intl").unwrap_or(rest);
                let rest = rest.strip_prefix("-vpc").unwrap_or(rest);
                let rest = rest.strip_prefix("-internal").unwrap_or(rest);
                let region = region.to_owned();
                rest.is_empty().then_some(AcrHost::Personal { region })
            }
            [first, region, "cr", "aliyuncs", "com"] if label(region) => {
                let instance = (first.strip_suffix("-registry")).or(first.strip_suffix("-registry-vpc"))?;
                let (instance, region) = (instance.to_owned(), region.to_owned());
                label(&instance).then_some(AcrHost::Enterprise { instance, region })
            }
            _ => None,
        }
    }

    pub fn region(&self) -> &str {
        match self {
            AcrHost::Personal { region } | AcrHost::Enterprise { region, .. } => region,
        }
    }
}

/// Alibaba Cloud Container Registry, Personal and Enterprise Editions: temporary
/// registry passwords from the `cr` OpenAPI (`GetAuthorizationToken`), cached per host.
pub struct AliRegistry {
    /// `(access_key_id, access_key_secret, security_token)` from the builder options.
    options_key: (Option<String>, Option<String>, Option<String>),
    instance_id: Option<String>,
    cr_endpoint: Option<String>,
    cache: ExpiringCredentials,
    api: openapi::Client,
}

impl AliRegistry {
    fn factory(config: &ProviderConfig) -> Result<Arc<dyn AbstractRegistry>> {
        let option = |name| config.option(name).filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(Arc::new(AliRegistry {
            options_key: (
                option(AliOption::AccessKeyId),
                option(AliOption::AccessKeySecret),
                option(AliOption::SecurityToken),
            ),
            instance_id: option(AliOption::InstanceId),
            cr_endpoint: option(AliOption::CrEndpoint),
            cache: ExpiringCredentials::new(RefreshPolicy::Before(REFRESH_BEFORE)),
            api: openapi::Client::default(),
        }))
    }

    /// The builder's key pair, else the environment's.
    fn access_key(&self, host: &str) -> Result<AccessKey> {
        let env = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (id, secret, token) = match &self.options_key {
            (Some(_), ..) => self.options_key.clone(),
            _ => (
                env(ACCESS_KEY_ID_ENV),
                env(ACCESS_KEY_SECRET_ENV),
                env(SECURITY_TOKEN_ENV),
            ),
        };
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(AccessKey { id, secret, token }),
            _ => Err(Error::InvalidConfig(format!(
                "ali: no Alibaba Cloud AccessKey to get credentials for {host}: set {ACCESS_KEY_ID_ENV} and \
                 {ACCESS_KEY_SECRET_ENV} (and {SECURITY_TOKEN_ENV} for STS), or the builder options \
                 {:?} and {:?}, or give registry credentials",
                AliOption::AccessKeyId.name(),
                AliOption::AccessKeySecret.name()
            ))),
        }
    }

    fn api_base(&self, host: &AcrHost) -> Result<Url> {
        let region = host.region();
        let base = (self.cr_endpoint.clone())
            .or_else(|| std::env::var(CR_ENDPOINT_ENV).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| format!("https://cr.{region}.aliyuncs.com/"));
        let base = if base.contains("://") {
            base
        } else {
            format!("https://{base}")
        };
        let mut url = Url::parse(&base)
            .map_err(|e| Error::InvalidConfig(format!("ali: invalid cr endpoint {base:?}: {e}")))?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(url)
    }

    async fn fetch(&self, key: &AccessKey, api: &Url, host: &AcrHost) -> Result<Expiring> {
        let (answer, [user, password, expires]) = match host {
            AcrHost::Personal { .. } => {
                let answer = self
                    .api
                    .call(key, api, Method::GET, "tokens", &[], PERSONAL_TOKEN);
                (
                    answer.await?["data"].take(),
                    ["tempUserName", "authorizationToken", "expireDate"],
                )
            }
            AcrHost::Enterprise { instance, .. } => {
                let id = match &self.instance_id {
                    Some(id) => id.clone(),
                    None => self.instance_id_of(key, api, instance).await?,
                };
                let params = [("InstanceId", id.as_str())];
                let answer = self
                    .api
                    .call(key, api, Method::POST, "", &params, ENTERPRISE_TOKEN);
                (
                    answer.await?,
                    ["TempUsername", "AuthorizationToken", "ExpireTime"],
                )
            }
        };
        let ms = &answer[expires];
        let expires_ms = ms.as_u64().or_else(|| ms.as_str()?.parse().ok());
        match (answer[user].as_str(), answer[password].as_str(), expires_ms) {
            (Some(user), Some(password), Some(ms)) => Ok(Expiring {
                credentials: Credentials::basic(user, password),
                expires_at: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            }),
            _ => Err(Error::provider(
                ID,
                Error::InvalidResponse {
                    host: openapi::host_port(api),
                    message: format!("GetAuthorizationToken answer lacks {user}, {password} or {expires}"),
                },
            )),
        }
    }

    /// Enterprise `ListInstance`, page by page, for the instance named exactly `name`.
    async fn instance_id_of(&self, key: &AccessKey, api: &Url, name: &str) -> Result<String> {
        for page in 1..=20 {
            let (page, size) = (page.to_string(), PAGE_SIZE.to_string());
            let params = [("InstanceName", name), ("PageNo", &page), ("PageSize", &size)];
            let answer = self.api.call(key, api, Method::POST, "", &params, LIST_INSTANCE);
            let answer = answer.await?;
            let instances = answer["Instances"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let found = instances.iter().find(|i| i["InstanceName"] == name);
            if let Some(id) = found.and_then(|i| i["InstanceId"].as_str()) {
                return Ok(id.to_owned());
            }
            if instances.len() < PAGE_SIZE {
                break;
            }
        }
        Err(Error::provider(
            ID,
            format!(
                "no ACR Enterprise Edition instance named {name:?} in this account and region; \
                 set the builder option {:?}",
                AliOption::InstanceId.name()
            ),
        ))
    }
}

impl fmt::Debug for AliRegistry {
    // By hand: the AccessKey secret and STS token stay out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AliRegistry")
            .field("access_key_id", &self.options_key.0)
            .field("instance_id", &self.instance_id)
            .field("cr_endpoint", &self.cr_endpoint)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AbstractRegistry for AliRegistry {
    fn id(&self) -> &'static str {
        ID
    }

    async fn credentials(&self, request: &AuthRequest<'_>) -> Result<Option<Credentials>> {
        let host = AcrHost::parse(request.host).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "ali: {:?} is not an Alibaba ACR registry host",
                request.host
            ))
        })?;
        let key = self.access_key(request.host)?;
        let api = self.api_base(&host)?;
        let instance = match &host {
            AcrHost::Enterprise { instance, .. } => instance.as_str(),
            AcrHost::Personal { .. } => "",
        };
        let cache_key = format!("{} {api} {instance}", key.id);
        let fetch = || self.fetch(&key, &api, &host);
        self.cache.get(&cache_key, fetch).await.map(Some)
    }
}

registry_client::provider! {
    id: ID,
    hosts: HOSTS,
    matches: HostMatch::Only(|host| AcrHost::parse(host).is_some()),
    options: AliOption::NAMES,
    factory: AliRegistry::factory,
}
