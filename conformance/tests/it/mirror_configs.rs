//! The users' own mirror configuration, read by us and by the tools that
//! wrote it: a `registries.conf` gives the order `podman pull` uses, and a
//! `hosts.toml` directory the order `ctr images pull --hosts-dir` uses. Each
//! source is a recording proxy, so the order is what the sources saw.

use std::path::Path;

use conformance::harness::fault_proxy::{FaultProxy, RecordedRequest};
use conformance::harness::tools::{self, run};
use conformance::harness::{AuthMode, Containerd, ImageFixture, TestRegistry};
use registry_client::driver::oci::OciOption;
use registry_client::pull::PullOptions;
use registry_client::{ImageReference, RepositoryClient, RepositoryClientBuilder};
use url::Url;

/// Three sources: a mirror without the image, a mirror with it, and the
/// registry itself, each behind its own proxy.
struct Sources {
    empty_mirror: FaultProxy,
    mirror: FaultProxy,
    registry: FaultProxy,
    _backends: (TestRegistry, TestRegistry),
}

impl Sources {
    async fn start() -> Sources {
        let (full, empty) = tokio::join!(
            TestRegistry::start(AuthMode::None),
            TestRegistry::start_empty(AuthMode::None)
        );
        let url = |r: &TestRegistry| Url::parse(&r.url()).expect("URL");
        let (empty_mirror, mirror, registry) = tokio::join!(
            FaultProxy::start(url(&empty)),
            FaultProxy::start(url(&full)),
            FaultProxy::start(url(&full)),
        );
        Sources {
            empty_mirror,
            mirror,
            registry,
            _backends: (full, empty),
        }
    }

    fn all(&self) -> [(&'static str, &FaultProxy); 3] {
        [
            ("empty mirror", &self.empty_mirror),
            ("mirror", &self.mirror),
            ("registry", &self.registry),
        ]
    }

    fn fixture(&self) -> &ImageFixture {
        &self._backends.0.fixtures().single_oci
    }

    fn image(&self) -> String {
        self.fixture().reference(&self.registry.host())
    }

    /// What the sources saw: those asked to resolve the tag, in the order
    /// they were first asked, and those that sent blobs.
    fn observed(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        let tag = format!("/manifests/{}", self.fixture().tag.as_deref().expect("a tag"));
        let mut asked: Vec<(std::time::Instant, &'static str)> = self
            .all()
            .iter()
            .filter_map(|(name, proxy)| {
                let requests = proxy.requests();
                let first = requests
                    .iter()
                    .filter(|r| r.path.ends_with(&tag))
                    .map(|r| r.at)
                    .min();
                first.map(|at| (at, *name))
            })
            .collect();
        asked.sort();
        let sent_blobs = |requests: Vec<RecordedRequest>| {
            requests
                .iter()
                .any(|r| r.is_blob_get() && matches!(r.status, Some(200 | 206)))
        };
        let blobs = self
            .all()
            .iter()
            .filter(|(_, proxy)| sent_blobs(proxy.requests()))
            .map(|(name, _)| *name)
            .collect();
        (asked.into_iter().map(|(_, name)| name).collect(), blobs)
    }

    /// Whether every request to the mirrors named the registry in `ns=`.
    fn mirrors_got_ns(&self) -> bool {
        let ns = format!("ns={}", self.registry.host().replace(':', "%3A"));
        [&self.empty_mirror, &self.mirror]
            .iter()
            .flat_map(|proxy| proxy.requests())
            .all(|r| r.query.as_deref().is_some_and(|q| q.contains(&ns)))
    }

    fn clear_logs(&self) {
        for (_, proxy) in self.all() {
            proxy.clear_log();
        }
    }
}

fn client() -> RepositoryClientBuilder {
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .platform("linux/amd64")
}

async fn pull_with(client: RepositoryClient, image: &str) -> String {
    let reference: ImageReference = image.parse().expect("reference");
    let dir = tempfile::tempdir().expect("tempdir");
    let result = client
        .pull(&reference)
        .await
        .expect("resolve")
        .write_oci_layout(&dir.path().join("layout"), &PullOptions::default())
        .await
        .expect("pull");
    result.source
}

/// Runs a real tool, failing the test with its output when it fails or is missing.
fn podman_pull(config: &Path, image: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    run(tools::podman(dir.path(), Some(config)).args(["pull", "--quiet", image]));
}

#[tokio::test]
async fn registries_conf_gives_podmans_order() {
    let sources = Sources::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("registries.conf");
    let write = |digest_only: bool| {
        let pull_from = if digest_only {
            "pull-from-mirror = \"digest-only\"\n"
        } else {
            ""
        };
        let text = format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n\n\
             [[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n\n\
             [[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n{pull_from}",
            sources.registry.host(),
            sources.empty_mirror.host(),
            sources.mirror.host(),
        );
        std::fs::write(&config, text).expect("write registries.conf");
    };

    // Mirrors in order, the first that has the image serves all of it.
    // Then the same with the second mirror for pulls by digest only: a pull
    // by tag passes it over for the registry.
    for (digest_only, expected) in [
        (false, (vec!["empty mirror", "mirror"], vec!["mirror"])),
        (true, (vec!["empty mirror", "registry"], vec!["registry"])),
    ] {
        write(digest_only);
        sources.clear_logs();
        podman_pull(&config, &sources.image());
        let podman = sources.observed();
        assert_eq!(podman, expected, "podman, digest-only {digest_only}");

        sources.clear_logs();
        let client = client().registries_conf(&config).build().expect("client");
        let source = pull_with(client, &sources.image()).await;
        assert_eq!(sources.observed(), podman, "ours, digest-only {digest_only}");
        let served_by = if digest_only {
            &sources.registry
        } else {
            &sources.mirror
        };
        assert_eq!(source, served_by.host());
    }
}

#[tokio::test]
async fn hosts_dir_gives_containerds_order() {
    let sources = Sources::start().await;
    let containerd = Containerd::start();
    let hosts = tempfile::tempdir().expect("tempdir");
    let registry = sources.registry.host();
    let config = hosts.path().join(&registry).join("hosts.toml");
    std::fs::create_dir_all(config.parent().expect("parent")).expect("host dir");
    let hosts_dir = hosts.path().to_str().expect("utf-8");

    // Hosts in file order, then the server. A host with "pull" but not
    // "resolve" is not asked for tags, only for content.
    let rounds = [
        (
            r#"["pull", "resolve"]"#,
            (vec!["empty mirror", "mirror"], vec!["mirror"]),
        ),
        (r#"["pull"]"#, (vec!["empty mirror", "registry"], vec!["mirror"])),
    ];
    for (round, (capabilities, expected)) in rounds.into_iter().enumerate() {
        let text = format!(
            "server = \"http://{registry}\"\n\n\
             [host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n\
             [host.\"http://{}\"]\n  capabilities = {capabilities}\n",
            sources.empty_mirror.host(),
            sources.mirror.host(),
        );
        std::fs::write(&config, text).expect("write hosts.toml");
        sources.clear_logs();
        // A namespace per round: containerd does not fetch what a namespace has.
        let namespace = format!("round{round}");
        containerd.ctr(&[
            "--namespace",
            &namespace,
            "content",
            "fetch",
            "--hosts-dir",
            hosts_dir,
            "--plain-http",
            &sources.image(),
        ]);
        let theirs = sources.observed();
        assert_eq!(theirs, expected, "ctr, mirror capabilities {capabilities}");
        assert!(sources.mirrors_got_ns(), "ctr sends ns=");

        sources.clear_logs();
        let client = client().hosts_dir(hosts.path()).build().expect("client");
        pull_with(client, &sources.image()).await;
        assert_eq!(
            sources.observed(),
            theirs,
            "ours, mirror capabilities {capabilities}"
        );
        assert!(sources.mirrors_got_ns(), "we send ns= too");
    }
}
