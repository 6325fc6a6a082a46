//! `--mirror`, `--registries-conf` and `--hosts-dir`: which source served an
//! image shows in the summary, the progress lines and `--json`; skipped
//! sources are reported with their reason; a bad config file names itself.

use crate::common::{Sandbox, path_str};
use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher};
use conformance::harness::{AuthMode, Pusher, TestRegistry, fixtures, free_port};
use url::Url;

async fn mirror_of(registry: &TestRegistry) -> FaultProxy {
    FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await
}

#[tokio::test]
async fn pull_says_which_mirror_served_the_image() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let mirror = mirror_of(&registry).await;
    let dead = format!("127.0.0.1:{}", free_port());
    let sandbox = Sandbox::new();
    let fixture = &registry.fixtures().single_oci;
    let image = fixture.reference(&registry.host());
    let out = path_str(&sandbox.path("image.tar"));
    let mirror_flag = |location: &str| format!("--mirror={}={location}", registry.host());

    let run = sandbox
        .mcreg(&[
            "pull",
            &image,
            "-o",
            &out,
            &mirror_flag(&dead),
            &mirror_flag(&mirror.host()),
            "--json",
        ])
        .ok();
    let report = run.json();
    assert_eq!(report["source"], mirror.host().as_str());
    for layer in report["layers"].as_array().expect("layers") {
        assert_eq!(layer["source"], mirror.host().as_str(), "{layer}");
    }
    // Progress lines: the dead mirror skipped, with the reason, then where
    // the image came from.
    let skipped = format!("skipped {dead} for {image}: connection to {dead} failed");
    assert!(
        run.stderr.lines().any(|l| l.starts_with(&skipped)),
        "{}",
        run.stderr
    );
    let resolved = format!("resolved {} from {}", fixture.digest, mirror.host());
    assert!(run.stderr.lines().any(|l| l == resolved), "{}", run.stderr);

    // The human summary says it too; `digest` and `inspect` report it.
    let run = sandbox
        .mcreg(&["pull", &image, "-o", &out, &mirror_flag(&mirror.host())])
        .ok();
    assert!(
        run.stdout_text()
            .starts_with(&format!("pulled {image} for linux/amd64 from {}", mirror.host())),
        "{}",
        run.stdout_text()
    );
    let digest = sandbox
        .mcreg(&["digest", &image, &mirror_flag(&mirror.host()), "--json"])
        .ok()
        .json();
    assert_eq!(digest["source"], mirror.host().as_str());
    let inspect = sandbox
        .mcreg(&["inspect", &image, &mirror_flag(&mirror.host()), "--json"])
        .ok()
        .json();
    assert_eq!(inspect["source"], mirror.host().as_str());
    // --quiet: no skip lines either.
    let quiet = sandbox.mcreg(&["digest", &image, &mirror_flag(&dead), "-q"]).ok();
    assert_eq!(quiet.stderr, "");
}

#[tokio::test]
async fn not_found_at_every_source_is_not_found_and_names_them() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let mirror = mirror_of(&registry).await;
    let image = format!("{}/single/oci:missing", registry.host());
    let run = Sandbox::new()
        .mcreg(&[
            "digest",
            &image,
            &format!("--mirror={}={}", registry.host(), mirror.host()),
        ])
        .expect_code(3);
    for source in [mirror.host(), registry.host()] {
        assert!(
            run.stderr.contains(&format!("{source}: manifest not found")),
            "{}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn config_files_choose_the_sources() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let mirror = mirror_of(&registry).await;
    let sandbox = Sandbox::new();
    let image = registry.fixtures().single_oci.reference(&registry.host());

    // registries.conf: a mirror, then the registry.
    let conf = sandbox.path("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
            registry.host(),
            mirror.host()
        ),
    )
    .expect("write");
    let run = sandbox
        .mcreg(&["digest", &image, "--registries-conf", &path_str(&conf), "--json"])
        .ok();
    assert_eq!(run.json()["source"], mirror.host().as_str());

    // Blocked: refused before anything is sent, naming the rule's file.
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\nblocked = true\n",
            registry.host()
        ),
    )
    .expect("write");
    mirror.clear_log();
    let run = sandbox
        .mcreg(&["digest", &image, "--registries-conf", &path_str(&conf)])
        .expect_code(1);
    assert!(run.stderr.contains("is blocked by"), "{}", run.stderr);
    assert!(run.stderr.contains(&path_str(&conf)), "{}", run.stderr);
    assert!(mirror.requests().is_empty(), "{:?}", mirror.requests());

    // Malformed: the file, the line and the key.
    std::fs::write(&conf, "[[registry]]\nlocation = \"x.io\"\ninsecure = \"yes\"\n").expect("write");
    let run = sandbox
        .mcreg(&["digest", &image, "--registries-conf", &path_str(&conf)])
        .expect_code(1);
    let expected = format!("{}, line 3, registry[0].insecure:", path_str(&conf));
    assert!(run.stderr.contains(&expected), "{}", run.stderr);

    // hosts.toml: the mirror, told which registry with ns=.
    let hosts = sandbox.path("certs.d");
    let dir = hosts.join(registry.host());
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.host()
        ),
    )
    .expect("write");
    mirror.clear_log();
    let run = sandbox
        .mcreg(&["digest", &image, "--hosts-dir", &path_str(&hosts), "--json"])
        .ok();
    assert_eq!(run.json()["source"], mirror.host().as_str());
    let ns = format!("ns={}", registry.host().replace(':', "%3A"));
    assert!(
        mirror
            .requests()
            .iter()
            .all(|r| r.query.as_deref() == Some(ns.as_str())),
        "{:?}",
        mirror.requests()
    );
}

#[tokio::test]
async fn tags_lists_the_mirrors_tags() {
    let (mirror_registry, registry) = tokio::join!(
        TestRegistry::start_empty(AuthMode::None),
        TestRegistry::start_empty(AuthMode::None)
    );
    let push = |registry: &TestRegistry, tag: &str| {
        let mut image = fixtures().single_oci.clone();
        image.repository = "app".into();
        image.tag = Some(tag.into());
        let pusher = Pusher::new(&registry.url());
        async move { pusher.image(&image).await }
    };
    push(&mirror_registry, "one").await;
    push(&mirror_registry, "two").await;
    push(&registry, "three").await;
    let (failing, mirror, origin) = tokio::join!(
        mirror_of(&mirror_registry),
        mirror_of(&mirror_registry),
        mirror_of(&registry)
    );
    failing.inject_when(Matcher::any(), Fault::status(503, usize::MAX));
    let repository = format!("{}/app", origin.host());
    let mirror_flag = |location: &str| format!("--mirror={}={location}", origin.host());
    let sandbox = Sandbox::new();

    let run = sandbox
        .mcreg(&["tags", &repository, &mirror_flag(&mirror.host())])
        .ok();
    assert_eq!(run.stdout_text(), "one\ntwo\n");
    assert_eq!(origin.requests().len(), 0, "{:?}", origin.requests());

    // Mirrors on both sides of the command name: all are kept, in order.
    let run = sandbox
        .mcreg(&[
            &mirror_flag(&failing.host()),
            "tags",
            &repository,
            &mirror_flag(&mirror.host()),
            "--json",
        ])
        .ok();
    assert_eq!(run.json()["tags"], serde_json::json!(["one", "two"]));
    assert_eq!(run.json()["source"], mirror.host());
    assert_eq!(failing.requests().len(), 1, "{:?}", failing.requests());
    assert!(
        run.stderr.contains(&format!("skipped {}", failing.host())),
        "{}",
        run.stderr
    );
    assert_eq!(origin.requests().len(), 0, "{:?}", origin.requests());
}
