//! The portable layer: [`RepositoryClient`] and its builder.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use url::Url;

use crate::config::{hosts_dir, registries_conf};
use crate::driver::auth::Credentials;
use crate::driver::protocol::blobs::{self, BlobHead, BlobSink, BlobStream, FetchedBlob, GetBlobOptions};
use crate::driver::protocol::cache::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, ResponseCache};
use crate::driver::protocol::registry::{Registry, Shared};
use crate::driver::protocol::{manifests, referrers, tags};
use crate::driver::sources::{Mirror, RegistrySources, SourceTable};
use crate::driver::transport::circuit::CircuitBreakerConfig;
use crate::driver::transport::retry::RetryConfig;
use crate::driver::transport::{Transport, TransportConfig, is_loopback};
use crate::driver::{self, ProviderConfig};
use crate::error::{Error, Result};
use crate::formats::layer_cache::LayerCache;
use crate::model::events::Progress;
use crate::model::manifest::{ImageConfig, Manifest, ManifestDescriptor, RawManifest};
use crate::model::platform::Platform;
use crate::model::reference::ImageReference;
use crate::model::referrers::Referrers;
use crate::model::tags::TagList;
use crate::portable::image::ImageSource;
use crate::portable::pull::{self, Image};
use crate::portable::write::{self, CopyOptions, CopyResult, Destination};

/// Default time allowed to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed between two reads of a response.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A registry client: one provider, one transport, one cache. Cheap to
/// clone; clones share connections, tokens and the cache, and may be used
/// from many tasks at once.
#[derive(Clone, Debug)]
pub struct RepositoryClient {
    registry: Registry,
}

impl RepositoryClient {
    /// A builder for the provider registered as `provider_id` (e.g. `oci`, `aws`).
    pub fn builder(provider_id: impl Into<String>) -> RepositoryClientBuilder {
        RepositoryClientBuilder::new(ProviderChoice::Id(provider_id.into()))
    }

    /// A builder for whichever provider serves the reference's registry
    /// (the generic `oci` provider when no specific one claims it).
    pub fn builder_for(reference: &ImageReference) -> RepositoryClientBuilder {
        RepositoryClientBuilder::new(ProviderChoice::Host(reference.registry().to_owned()))
    }

    /// The registry protocol this client speaks (what its methods call).
    #[cfg(test)]
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The same client, whose requests must be answered by `deadline`: each
    /// request, from its first attempt to its answer, across retries and
    /// sources (a mirror that hangs leaves less time for the next source).
    /// An attempt the deadline cuts short fails with [`Error::Timeout`] and
    /// counts against its host's circuit breaker. For a blob, the deadline
    /// is for the answer's first bytes: its body is bounded by the read
    /// timeout, and a resumed download is not held to it.
    ///
    /// Clones share everything else (connections, tokens, breakers, cache).
    pub fn with_deadline(&self, deadline: Instant) -> RepositoryClient {
        RepositoryClient {
            registry: self.registry.with_deadline(deadline),
        }
    }

    /// The deadline set by [`with_deadline`](Self::with_deadline), if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.registry.deadline()
    }

    /// The id of the provider this client uses.
    pub fn provider_id(&self) -> &'static str {
        self.registry.provider_id()
    }

    /// The platform picked from multi-platform indexes.
    pub fn platform(&self) -> &Platform {
        self.registry.platform()
    }

    /// The layer cache blobs are kept in, if one was configured.
    pub fn layer_cache(&self) -> Option<&LayerCache> {
        self.registry.layer_cache()
    }

    /// The sources `reference` would be fetched from, in the order they are
    /// tried: its registry's mirrors that serve this kind of pull, then the
    /// registry itself (unless it is mirror-only). Fails if the image is
    /// blocked or no source may serve it.
    pub fn sources_for(&self, reference: &ImageReference) -> Result<Vec<String>> {
        Ok(self
            .registry
            .route_reporting(reference, None)?
            .sources
            .into_iter()
            .map(|s| s.name)
            .collect())
    }
}

/// Images: resolving them (to write them out with [`Image::write`]) and pushing them.
impl RepositoryClient {
    /// Resolves `reference` for this client's platform: its manifest (the
    /// platform's entry of an index) and config.
    pub async fn pull(&self, reference: &ImageReference) -> Result<Image> {
        pull::pull(&self.registry, reference).await
    }

    /// Resolves `reference` with every platform of its index (nested indexes
    /// included). Only an OCI layout can hold more than one platform.
    pub async fn pull_all_platforms(&self, reference: &ImageReference) -> Result<Image> {
        pull::pull_all_platforms(&self.registry, reference).await
    }

    /// Pushes `image` (resolved by any client, of any provider, or read from disk) to
    /// `destination` through this client: blobs first, in parallel, largest first (skipped
    /// when present, mounted from the source repository when both are in this registry),
    /// then the manifests, the tagged one last, so that a push that fails never leaves a
    /// tag pointing at missing blobs.
    pub async fn push(
        &self,
        image: &impl ImageSource,
        destination: &ImageReference,
        options: &CopyOptions,
    ) -> Result<CopyResult> {
        write::push(image, &self.registry, destination, options).await
    }

    /// `reference` in this client's registry, as a destination of
    /// [`copy_image`](crate::write::copy_image).
    pub fn destination(&self, reference: &ImageReference) -> Destination {
        Destination::registry(&self.registry, reference)
    }
}

/// The registry protocol, each call asked of the reference's sources in order.
impl RepositoryClient {
    /// Checks that the registry speaks the `/v2/` API and accepts our
    /// credentials (authenticating if it asks). Asks the registry itself,
    /// never a mirror.
    pub async fn ping(&self, host: &str) -> Result<()> {
        tags::ping(&self.registry, host).await
    }

    /// Every tag of the reference's repository (its tag or digest is ignored),
    /// from the first of its sources that lists them.
    pub async fn list_tags(&self, repository: &ImageReference) -> Result<Vec<String>> {
        tags::list_tags(&self.registry, repository).await
    }

    /// [`list_tags`](Self::list_tags), with the source that listed them.
    pub async fn tag_list(&self, repository: &ImageReference) -> Result<TagList> {
        tags::tag_list(&self.registry, repository).await
    }

    /// Every repository in the registry's catalog.
    pub async fn catalog(&self, host: &str) -> Result<Vec<String>> {
        tags::catalog(&self.registry, host).await
    }

    /// The digest, media type and size of a manifest, without fetching it.
    pub async fn head_manifest(&self, reference: &ImageReference) -> Result<ManifestDescriptor> {
        manifests::head_manifest(&self.registry, reference).await
    }

    /// The referrers of `subject` (signatures, SBOMs, attestations: the manifests whose
    /// `subject` is it), only those of `artifact_type` if given. A tag is resolved to
    /// its digest first. From the referrers API, or, on a registry without it, the
    /// fallback tag `sha256-<hex>`; a subject with neither has no referrers.
    pub async fn referrers(
        &self,
        subject: &ImageReference,
        artifact_type: Option<&str>,
    ) -> Result<Referrers> {
        referrers::referrers(&self.registry, subject, artifact_type).await
    }

    /// Fetches a manifest, keeping its exact bytes. When asked by digest,
    /// the bytes are verified against it; when asked by tag, against the
    /// registry's `Docker-Content-Digest`.
    pub async fn get_manifest(&self, reference: &ImageReference) -> Result<Manifest> {
        manifests::get_manifest(&self.registry, reference).await
    }

    /// A manifest's exact bytes, verified against the digest asked for (or,
    /// for a tag, the registry's `Docker-Content-Digest`), but not parsed:
    /// any media type is passed on. Not cached.
    pub async fn get_raw_manifest(&self, reference: &ImageReference) -> Result<RawManifest> {
        manifests::get_raw_manifest(&self.registry, reference).await
    }

    /// The image manifest for this client's platform: the manifest itself,
    /// or the matching entry of an index (indexes nested in indexes too).
    pub async fn get_image_manifest(&self, reference: &ImageReference) -> Result<Manifest> {
        manifests::get_image_manifest(&self.registry, reference).await
    }

    /// The config of the image `reference` names (for an index, the entry
    /// for this client's platform), verified against its digest.
    pub async fn get_config(&self, reference: &ImageReference) -> Result<ImageConfig> {
        manifests::get_config(&self.registry, reference).await
    }

    /// Reads blob `digest` of `reference`'s repository, from the reference's
    /// sources in order (its mirrors, then the registry): the one blob read
    /// path, like `object_store`'s `get_opts`. The bytes are checked as they
    /// flow (size, and digest unless a range is asked for) and the stream never
    /// reaches the end of a blob that fails: it ends with the error instead. A
    /// body that breaks off is resumed with `Range`. Resolves at the first
    /// bytes, or with the error of a read that failed before them.
    pub async fn get_blob(
        &self,
        reference: &ImageReference,
        digest: &str,
        options: GetBlobOptions,
    ) -> Result<BlobStream> {
        blobs::get_blob(&self.registry, reference, digest, options).await
    }

    /// [`get_blob`](Self::get_blob) into a `sink` that may start again: content that
    /// fails its check is then asked for again from the next source, if the
    /// sink can [`restart`](BlobSink::restart).
    pub async fn get_blob_into<S: BlobSink>(
        &self,
        reference: &ImageReference,
        digest: &str,
        options: &GetBlobOptions,
        sink: &mut S,
    ) -> Result<FetchedBlob> {
        blobs::get_blob_into(&self.registry, reference, digest, options, sink).await
    }

    /// The size of a blob, from a `HEAD` to the first of the reference's
    /// sources that has it; nothing is downloaded.
    pub async fn head_blob(&self, reference: &ImageReference, digest: &str) -> Result<BlobHead> {
        blobs::head_blob(&self.registry, reference, digest).await
    }

    /// Whether `reference`'s repository holds blob `digest` (a `HEAD`, with push access
    /// asked for, so that a push that follows needs no other token).
    pub async fn blob_exists(&self, reference: &ImageReference, digest: &str) -> Result<bool> {
        blobs::blob_exists(&self.registry, reference, digest).await
    }

    /// Mounts blob `digest` from repository `from` (of the same registry) into
    /// `reference`'s repository. `false` when the registry would not (it does not have the
    /// blob there, or does not mount across repositories); the upload it opened instead is
    /// cancelled.
    pub async fn mount_blob(&self, reference: &ImageReference, digest: &str, from: &str) -> Result<bool> {
        blobs::mount_blob(&self.registry, reference, digest, from).await
    }

    /// Uploads blob `digest` of `size` bytes from `chunks` (its bytes in order) into
    /// `reference`'s repository: in one `PUT` when small, else in `PATCH` chunks, each sent
    /// again from the registry's offset when its request fails. The bytes are checked
    /// against `digest` and `size` before the registry is asked to commit them (a stream
    /// that brings more than `size` is [`Error::SizeMismatch`] as soon as it does); on any
    /// error the upload is cancelled and nothing is committed.
    pub async fn upload_blob<S>(
        &self,
        reference: &ImageReference,
        digest: &str,
        size: u64,
        chunks: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        blobs::upload_blob(&self.registry, reference, digest, size, chunks).await
    }

    /// Puts `bytes` as they are, as the manifest `reference` names (by tag, or by digest).
    /// Returns its digest. A manifest put by digest must have that digest.
    pub async fn put_manifest(
        &self,
        reference: &ImageReference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String> {
        blobs::put_manifest(&self.registry, reference, media_type, bytes).await
    }
}

enum ProviderChoice {
    Id(String),
    Host(String),
}

/// A change to the source rules, applied in order after the config files.
#[derive(Debug)]
enum SourcesEdit {
    Replace(RegistrySources),
    AddMirror(String, Mirror),
}

/// A `registries.conf` to read at build time.
#[derive(Debug)]
enum RegistriesConf {
    File(PathBuf),
    /// The files podman reads.
    System,
}

/// Configures a [`RepositoryClient`]. Setters never fail; [`build`](Self::build) checks.
pub struct RepositoryClientBuilder {
    provider: ProviderChoice,
    endpoint: Option<String>,
    provider_config: ProviderConfig,
    platform: Option<String>,
    transport: TransportConfig,
    cache_ttl: Option<Duration>,
    cache_capacity: u64,
    page_size: Option<u32>,
    layer_cache: Option<PathBuf>,
    sources: Vec<SourcesEdit>,
    registries_conf: Vec<RegistriesConf>,
    hosts_dirs: Vec<PathBuf>,
    events: Option<Progress>,
}

impl fmt::Debug for RepositoryClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepositoryClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("provider_config", &self.provider_config)
            .field("platform", &self.platform)
            .field("sources", &self.sources)
            .field("registries_conf", &self.registries_conf)
            .field("hosts_dirs", &self.hosts_dirs)
            .finish_non_exhaustive()
    }
}

impl RepositoryClientBuilder {
    fn new(provider: ProviderChoice) -> Self {
        RepositoryClientBuilder {
            provider,
            endpoint: None,
            provider_config: ProviderConfig::default(),
            platform: None,
            transport: TransportConfig {
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                read_timeout: DEFAULT_READ_TIMEOUT,
                user_agent: concat!("mcreg/", env!("CARGO_PKG_VERSION")).to_owned(),
                retry: RetryConfig::default(),
                circuit_breaker: CircuitBreakerConfig::default(),
                insecure_all: false,
                insecure_hosts: HashSet::new(),
                insecure_domains: Vec::new(),
            },
            cache_ttl: Some(DEFAULT_CACHE_TTL),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            page_size: None,
            layer_cache: None,
            sources: Vec::new(),
            registries_conf: Vec::new(),
            hosts_dirs: Vec::new(),
            events: None,
        }
    }

    /// Sends every request to this base URL instead of the registry's own
    /// (e.g. `http://127.0.0.1:5000`, or a mirror).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The cloud region, for providers that need one.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.provider_config.region = Some(region.into());
        self
    }

    /// Explicit credentials, used instead of the provider's own sources.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.provider_config.credentials = Some(credentials);
        self
    }

    /// A provider-specific setting: a provider's option enum (e.g. `registry_aws::AwsOption::Profile`)
    /// or its name. A name no registered provider declares fails [`build`](Self::build).
    pub fn option(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.provider_config
            .options
            .insert(key.as_ref().to_owned(), value.into());
        self
    }

    /// The platform to pick from multi-platform images, `os/arch[/variant][:os.version]`.
    /// Defaults to the host's.
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    /// Allows plain HTTP and unverified TLS for every registry this client talks to.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.transport.insecure_all = insecure;
        self
    }

    /// Allows plain HTTP and unverified TLS for one registry (`host` or `host:port`).
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        let host = host.into();
        // Docker Hub is named docker.io but served from its API host.
        if host == crate::model::reference::DOCKER_HUB {
            self.transport
                .insecure_hosts
                .insert(crate::model::reference::DOCKER_HUB_API_HOST.to_owned());
        }
        self.transport.insecure_hosts.insert(host);
        self
    }

    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.transport.retry = retry;
        self
    }

    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.transport.circuit_breaker = config;
        self
    }

    /// Time allowed to establish a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.transport.connect_timeout = timeout;
        self
    }

    /// Time allowed between two reads of a response (default 30 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.transport.read_timeout = timeout;
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.transport.user_agent = user_agent.into();
        self
    }

    /// How long tag lists, catalogs and tag→digest answers are reused
    /// (default 5 minutes). `Duration::ZERO` turns the cache off.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }

    /// Turns the response cache off.
    pub fn no_cache(mut self) -> Self {
        self.cache_ttl = None;
        self
    }

    /// Memory budget of the response cache, in bytes (default 32 MiB each
    /// for expiring answers and for content).
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// Page size asked for when listing tags and repositories (default: the registry's).
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n);
        self
    }

    /// Keeps pulled blobs in a content-addressed directory and takes them
    /// from there on later pulls (several processes may share it).
    pub fn layer_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.layer_cache = Some(dir.into());
        self
    }

    /// The sources of the images that `sources.prefix()` matches: their
    /// mirrors, in order, then the registry (see [`RegistrySources`]).
    /// Replaces an earlier rule for the same prefix, from the builder or
    /// from a config file.
    pub fn sources(mut self, sources: RegistrySources) -> Self {
        self.sources.push(SourcesEdit::Replace(sources));
        self
    }

    /// Adds a mirror, after those already known, for the images `prefix`
    /// matches (`docker.io`, `registry.example.com/team`, `*.example.com`).
    /// The registry itself is still tried last.
    pub fn mirror(mut self, prefix: impl Into<String>, mirror: Mirror) -> Self {
        self.sources.push(SourcesEdit::AddMirror(prefix.into(), mirror));
        self
    }

    /// Reads mirrors, remapped and blocked registries from a podman
    /// `registries.conf` file (read when the client is built).
    pub fn registries_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.registries_conf.push(RegistriesConf::File(path.into()));
        self
    }

    /// Reads the `registries.conf` files podman reads:
    /// `$HOME/.config/containers/registries.conf` if it exists, else
    /// `/etc/containers/registries.conf`, then the drop-ins in
    /// `registries.conf.d` (see [`registries_conf::load_system`]).
    pub fn system_registries_conf(mut self) -> Self {
        self.registries_conf.push(RegistriesConf::System);
        self
    }

    /// Reads containerd's registry host directories: `<dir>/<host>/hosts.toml`
    /// and `<dir>/_default/hosts.toml` (see [`hosts_dir`]).
    pub fn hosts_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hosts_dirs.push(dir.into());
        self
    }

    /// Receives the events that belong to no write: a source skipped while
    /// resolving an image or listing tags. (A write's own events go to its
    /// [`PullOptions`](crate::portable::pull::PullOptions) progress.)
    pub fn progress(mut self, progress: Progress) -> Self {
        self.events = Some(progress);
        self
    }

    /// The rules from the config files, then the builder's edits.
    fn source_rules(&mut self) -> Result<Vec<RegistrySources>> {
        let mut rules = Vec::new();
        for conf in &self.registries_conf {
            rules.extend(match conf {
                RegistriesConf::File(path) => registries_conf::load(path)?,
                RegistriesConf::System => registries_conf::load_system()?,
            });
        }
        for dir in &self.hosts_dirs {
            rules.extend(hosts_dir::load(dir)?);
        }
        for edit in std::mem::take(&mut self.sources) {
            match edit {
                SourcesEdit::Replace(rule) => {
                    rules.retain(|r| r.prefix != rule.prefix);
                    rules.push(rule);
                }
                SourcesEdit::AddMirror(prefix, mirror) => {
                    match rules.iter_mut().rev().find(|r| r.prefix == prefix) {
                        Some(rule) => rule.mirrors.push(mirror),
                        None => rules.push(RegistrySources::new(prefix).mirror(mirror)),
                    }
                }
            }
        }
        Ok(rules)
    }

    pub fn build(mut self) -> Result<RepositoryClient> {
        let id = match &self.provider {
            ProviderChoice::Id(id) => id.clone(),
            ProviderChoice::Host(host) => driver::provider_for_host(host)?.to_owned(),
        };
        let record = driver::provider(&id)?;
        let provider = record.build(&self.provider_config)?;
        let platform = match &self.platform {
            Some(p) => p.parse()?,
            None => Platform::host(),
        };
        let rules = self.source_rules()?;
        let (insecure_hosts, insecure_domains) = crate::driver::sources::insecure_hosts(&rules);
        self.transport.insecure_hosts.extend(insecure_hosts);
        self.transport.insecure_domains.extend(insecure_domains);
        let transport = Arc::new(Transport::new(self.transport.clone(), provider.clone())?);
        let sources = SourceTable::build(rules, &self.transport, &self.provider_config.options, &transport)?;
        let endpoint = self
            .endpoint
            .as_deref()
            .map(|e| parse_endpoint(e, &transport))
            .transpose()?;
        Ok(RepositoryClient {
            registry: Registry::new(Shared {
                provider,
                transport,
                cache: ResponseCache::new(self.cache_ttl, self.cache_capacity),
                endpoint,
                platform,
                page_size: self.page_size,
                layer_cache: self.layer_cache.map(LayerCache::open).transpose()?,
                sources,
                events: self.events,
            }),
        })
    }
}

fn parse_endpoint(endpoint: &str, transport: &Transport) -> Result<Url> {
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let mut url = Url::parse(&with_scheme)
        .map_err(|e| Error::InvalidConfig(format!("invalid endpoint {endpoint:?}: {e}")))?;
    // No scheme given: docker's rule, plain HTTP for loopback and insecure hosts.
    if !endpoint.contains("://") && (is_loopback(&url) || transport.is_insecure(&url)) {
        url.set_scheme("http")
            .map_err(|()| Error::InvalidConfig(format!("invalid endpoint {endpoint:?}")))?;
    }
    if url.host_str().is_none() {
        return Err(Error::InvalidConfig(format!("endpoint {endpoint:?} has no host")));
    }
    transport.check_scheme(&url)?;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_checks_provider_platform_and_endpoint() {
        let err = RepositoryClient::builder("no-such").build().unwrap_err();
        assert!(matches!(err, Error::UnknownProvider { .. }), "{err}");
        let err = RepositoryClient::builder("oci")
            .platform("linux")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("platform"), "{err}");
        let err = RepositoryClient::builder("oci")
            .endpoint("http://registry.example.com")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        RepositoryClient::builder("oci")
            .endpoint("http://registry.example.com")
            .insecure_registry("registry.example.com")
            .build()
            .unwrap();
        RepositoryClient::builder("oci")
            .endpoint("http://127.0.0.1:5000")
            .build()
            .unwrap();
    }

    #[test]
    fn options_are_typed_keys_or_their_names_and_a_typo_is_refused() {
        use crate::driver::oci::OciOption;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, "{}").unwrap();
        RepositoryClient::builder("oci")
            .option(OciOption::DockerConfig, config.display().to_string())
            .build()
            .unwrap();
        RepositoryClient::builder("oci")
            .option("docker_config", config.display().to_string())
            .build()
            .unwrap();
        let err = RepositoryClient::builder("oci")
            .option("docker_confg", "x")
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("\"docker_confg\"") && m.contains("docker_config")),
            "{err}"
        );
        assert_eq!(
            "credential_helper_dir".parse::<OciOption>().unwrap(),
            OciOption::CredentialHelperDir
        );
        let err = "docker_confg".parse::<OciOption>().unwrap_err();
        assert!(err.to_string().contains("docker_config"), "{err}");
    }

    #[test]
    fn endpoints_follow_dockers_rules() {
        let client = RepositoryClient::builder("oci").build().unwrap();
        let base = |host: &str| client.registry().base_url(host).unwrap().to_string();
        assert_eq!(base("docker.io"), "https://registry-1.docker.io/");
        assert_eq!(base("ghcr.io"), "https://ghcr.io/");
        assert_eq!(base("localhost:5000"), "http://localhost:5000/");
        assert_eq!(base("127.0.0.1:5000"), "http://127.0.0.1:5000/");
        assert_eq!(base("[::1]:5000"), "http://[::1]:5000/");
        let insecure = RepositoryClient::builder("oci")
            .insecure_registry("registry.lan:5000")
            .build()
            .unwrap();
        assert_eq!(
            insecure
                .registry()
                .base_url("registry.lan:5000")
                .unwrap()
                .as_str(),
            "http://registry.lan:5000/"
        );
        assert_eq!(
            insecure.registry().base_url("registry.lan").unwrap().as_str(),
            "https://registry.lan/"
        );
    }

    #[test]
    fn picks_provider_from_the_reference() {
        let r: ImageReference = "ghcr.io/owner/image:v1".parse().unwrap();
        let client = RepositoryClient::builder_for(&r).build().unwrap();
        assert_eq!(client.provider_id(), "oci");
    }

    #[test]
    fn clients_are_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<RepositoryClient>();
    }

    /// A pull, a push and a copy can be `tokio::spawn`ed: their futures are `Send`
    /// (this does not compile otherwise).
    #[allow(dead_code)]
    fn image_operations_can_be_spawned(client: RepositoryClient, reference: ImageReference) {
        use crate::portable::image::LocalImage;
        use crate::portable::write::{Destination, PullOptions, copy_image};
        tokio::spawn(async move {
            let image = client.pull(&reference).await?;
            let options = PullOptions::default();
            image.write_docker_archive("a.tar".as_ref(), &options).await?;
            image.write_oci_layout("layout".as_ref(), &options).await?;
            image.write_rootfs("rootfs.tar".as_ref(), &options).await?;
            client.push(&image, &reference, &CopyOptions::default()).await?;
            let local = LocalImage::open_oci_layout("layout".as_ref(), None)?;
            let to = Destination::docker_archive("b.tar");
            copy_image(&local, &to, &CopyOptions::default()).await?;
            Ok::<_, Error>(())
        });
    }
}
