//! Mirrors and ordered fallback against real Distribution registries, each
//! behind a recording fault proxy: the first source that has an image serves
//! it, each source with its own credentials; dead, failing, resetting, slow
//! (timed out) and refusing (401, 403) mirrors are passed over, named with
//! their reasons, and breakers open; a hung mirror uses up the request's
//! deadline, which the registry shares; mirror-only rules never ask the
//! registry; a mirror's path is a namespace, in its token scope too; tags
//! are listed by the first source that has them; what a mirror may serve
//! (digest pulls only, tag pulls only, content only) is respected; blobs come
//! from the source that served their manifest, and from the next one when it
//! fails them.

use registry_client::{Progress, ProgressEvent};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use conformance::harness::fault_proxy::{Fault, FaultProxy, Matcher, RecordedRequest};
use conformance::harness::{AuthMode, HungServer, ImageFixture, Pusher, TestRegistry, fixtures, free_port};
use registry_client::driver::oci::OciOption;
use registry_client::pull::{PullOptions, PullResult};
use registry_client::push::CopyOptions;
use registry_client::{
    CircuitBreakerConfig, Credentials, Error, ImageReference, RepositoryClient, RepositoryClientBuilder,
};
use registry_client::{Mirror, RegistrySources, Serves};
use url::Url;

/// A client that reads no docker config, with `sources` and a record of its events.
fn client(sources: RegistrySources, events: &Events) -> RepositoryClientBuilder {
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .platform("linux/amd64")
        .sources(sources)
        .progress(events.progress())
}

/// Every event a client or pull reported.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<ProgressEvent>>>);

impl Events {
    fn progress(&self) -> Progress {
        let events = self.0.clone();
        Progress::new(move |event| events.lock().unwrap().push(event.clone()))
    }

    /// `(source, reason)` of every skip, in order.
    fn skips(&self) -> Vec<(String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::SourceSkipped { source, reason, .. } => Some((source.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// The reasons `source` was skipped for `what` (`blob sha256:…`, a reference).
    fn skips_of_for(&self, source: &str, what: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::SourceSkipped {
                    source: s,
                    what: w,
                    reason,
                } if s == source && w == what => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn skips_of(&self, source: &str) -> Vec<String> {
        self.skips()
            .into_iter()
            .filter(|(s, _)| s == source)
            .map(|(_, reason)| reason)
            .collect()
    }
}

/// A fixture image under another name (its bytes and digest do not change).
fn renamed(image: &ImageFixture, repository: &str, tag: &str) -> ImageFixture {
    let mut image = image.clone();
    image.repository = repository.to_owned();
    image.tag = Some(tag.to_owned());
    image
}

/// A fault proxy in front of `registry`.
async fn proxy(registry: &TestRegistry) -> FaultProxy {
    FaultProxy::start(Url::parse(&registry.url()).expect("URL")).await
}

fn basic(registry: &TestRegistry) -> (Credentials, String) {
    let (user, password) = registry.credentials().expect("a Basic registry");
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    (Credentials::basic(user, password), header)
}

fn reference(text: &str) -> ImageReference {
    text.parse().expect("reference")
}

async fn pull_layout(client: &RepositoryClient, reference: &ImageReference, events: &Events) -> PullResult {
    let dir = tempfile::tempdir().expect("tempdir");
    client
        .pull(reference)
        .await
        .expect("resolve")
        .write_oci_layout(
            &dir.path().join("layout"),
            &PullOptions::default().progress(events.progress()),
        )
        .await
        .expect("pull")
}

fn blob_gets(proxy: &FaultProxy) -> Vec<RecordedRequest> {
    proxy
        .requests()
        .into_iter()
        .filter(RecordedRequest::is_blob_get)
        .collect()
}

#[tokio::test]
async fn first_source_with_the_image_serves_it_with_its_own_credentials() {
    // A (private) holds app:custom, B holds nothing, C (the registry) holds app:latest.
    let (a, b, c) = tokio::join!(
        TestRegistry::start_empty(AuthMode::Basic),
        TestRegistry::start_empty(AuthMode::Basic),
        TestRegistry::start_empty(AuthMode::Basic),
    );
    let custom = renamed(&fixtures().single_oci, "app", "custom");
    let latest = renamed(&fixtures().many_layers, "app", "latest");
    let (a_creds, a_header) = basic(&a);
    let (b_creds, b_header) = basic(&b);
    let (c_creds, c_header) = basic(&c);
    let push = |registry: &TestRegistry| {
        let (user, password) = registry.credentials().expect("Basic");
        Pusher::new(&registry.url()).with_basic_auth(&user, &password)
    };
    push(&a).image(&custom).await;
    push(&c).image(&latest).await;
    let (a_proxy, b_proxy, c_proxy) = tokio::join!(proxy(&a), proxy(&b), proxy(&c));

    let events = Events::default();
    let client = client(
        RegistrySources::new(c_proxy.host())
            .mirror(Mirror::new(a_proxy.host()).credentials(a_creds))
            .mirror(Mirror::new(b_proxy.host()).credentials(b_creds)),
        &events,
    )
    .credentials(c_creds)
    .build()
    .expect("client");
    let app = |tag: &str| reference(&format!("{}/app:{tag}", c_proxy.host()));
    assert_eq!(
        client.sources_for(&app("custom")).unwrap(),
        [a_proxy.host(), b_proxy.host(), c_proxy.host()]
    );

    // From A, the first source: nobody else is asked.
    let result = pull_layout(&client, &app("custom"), &events).await;
    assert_eq!(result.digest, custom.digest);
    assert_eq!(result.source, a_proxy.host());
    assert!(
        result
            .layers
            .iter()
            .all(|l| l.source.as_deref() == Some(&*a_proxy.host()))
    );
    assert!(events.skips().is_empty(), "{:?}", events.skips());
    assert_eq!(
        b_proxy.requests().len() + c_proxy.requests().len(),
        0,
        "{:?} {:?}",
        b_proxy.requests(),
        c_proxy.requests()
    );

    // From C, after A and B answer 404, each asked with its own credentials.
    let a_first_pull = a_proxy.requests();
    a_proxy.clear_log();
    let result = pull_layout(&client, &app("latest"), &events).await;
    assert_eq!(result.digest, latest.digest);
    assert_eq!(result.source, c_proxy.host());
    assert!(
        result
            .layers
            .iter()
            .all(|l| l.source.as_deref() == Some(&*c_proxy.host()))
    );
    for mirror in [a_proxy.host(), b_proxy.host()] {
        let skips = events.skips_of(&mirror);
        assert_eq!(skips.len(), 1, "{mirror} skipped once: {skips:?}");
        assert!(skips[0].contains("not found"), "{skips:?}");
    }
    assert_eq!(blob_gets(&a_proxy).len() + blob_gets(&b_proxy).len(), 0);

    let sent = |requests: Vec<RecordedRequest>| -> Vec<String> {
        requests.into_iter().filter_map(|r| r.authorization).collect()
    };
    let mut a_sent = sent(a_first_pull);
    a_sent.extend(sent(a_proxy.requests()));
    let (b_sent, c_sent) = (sent(b_proxy.requests()), sent(c_proxy.requests()));
    assert!(
        !a_sent.is_empty() && a_sent.iter().all(|h| *h == a_header),
        "{a_sent:?}"
    );
    assert!(
        !b_sent.is_empty() && b_sent.iter().all(|h| *h == b_header),
        "{b_sent:?}"
    );
    assert!(
        !c_sent.is_empty() && c_sent.iter().all(|h| *h == c_header),
        "{c_sent:?}"
    );

    // Not anywhere: still "not found", and every source is named with its reason.
    let error = client.pull(&app("missing")).await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert!(matches!(error, Error::Sources { .. }), "{error:?}");
    let message = error.to_string();
    for source in [a_proxy.host(), b_proxy.host(), c_proxy.host()] {
        assert!(
            message.contains(&format!("{source}: manifest not found")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn dead_failing_and_resetting_mirrors_are_passed_over_and_breakers_open() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dead = format!("127.0.0.1:{}", free_port());
    let failing = proxy(&registry).await;
    failing.inject_when(Matcher::any(), Fault::status(503, usize::MAX));
    let resetting = proxy(&registry).await;
    resetting.inject_when(
        Matcher::any(),
        Fault::ResetAfter {
            bytes: 0,
            times: usize::MAX,
        },
    );
    let events = Events::default();
    let threshold = 2;
    let client = client(
        RegistrySources::new(registry.host())
            .mirror(Mirror::new(&dead))
            .mirror(Mirror::new(failing.host()))
            .mirror(Mirror::new(resetting.host())),
        &events,
    )
    .circuit_breaker(CircuitBreakerConfig::new(threshold, Duration::from_secs(60)))
    .build()
    .expect("client");

    // Each pull resolves its tag through the mirrors first, then fetches
    // from the registry that served the manifest.
    let fixtures = registry.fixtures();
    let images = [
        &fixtures.single_oci,
        &fixtures.single_docker,
        &fixtures.many_layers,
        &fixtures.nested,
    ];
    for image in images {
        let result = pull_layout(&client, &reference(&image.reference(&registry.host())), &events).await;
        assert_eq!(result.digest, image.digest);
        assert_eq!(result.source, registry.host());
        assert!(
            result
                .layers
                .iter()
                .all(|l| l.source.as_deref() == Some(&*registry.host()))
        );
    }

    // The dead mirror was skipped for every image; after `threshold`
    // refused connections its breaker opened and it was not tried again.
    let dead_skips = events.skips_of(&dead);
    assert_eq!(dead_skips.len(), images.len(), "{dead_skips:?}");
    let (refused, open) = dead_skips.split_at(threshold as usize);
    assert!(
        refused.iter().all(|r| r.contains("Connection refused")),
        "{dead_skips:?}"
    );
    assert!(
        open.iter().all(|r| r.contains("circuit breaker open")),
        "{dead_skips:?}"
    );
    // The failing one was asked once per image, never retried (a next
    // source was there), until its breaker opened too.
    assert_eq!(failing.requests().len(), threshold as usize);
    let failing_skips = events.skips_of(&failing.host());
    assert!(failing_skips[0].contains("503"), "{failing_skips:?}");
    assert!(
        failing_skips[threshold as usize..]
            .iter()
            .all(|r| r.contains("circuit breaker open"))
    );
    // A reset is no sign the host is down: asked once per image, never retried.
    assert_eq!(events.skips_of(&resetting.host()).len(), images.len());
    assert_eq!(resetting.requests().len(), images.len());
}

#[tokio::test]
async fn what_a_mirror_serves_decides_which_pulls_use_it() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let image = &registry.fixtures().single_oci;
    let (mirror, origin) = tokio::join!(proxy(&registry), proxy(&registry));
    let by_tag = reference(&image.reference(&origin.host()));
    let by_digest = reference(&image.digest_reference(&origin.host()));
    let setup = |serves| {
        let events = Events::default();
        let client = client(
            RegistrySources::new(origin.host()).mirror(Mirror::new(mirror.host()).serves(serves)),
            &events,
        )
        .build()
        .expect("client");
        mirror.clear_log();
        origin.clear_log();
        (client, events)
    };

    // Digest pulls only: a pull by tag never asks it; a pull by digest does.
    let (client, events) = setup(Serves::DigestPulls);
    assert_eq!(client.sources_for(&by_tag).unwrap(), [origin.host()]);
    let result = pull_layout(&client, &by_tag, &events).await;
    assert_eq!(
        (result.source.as_str(), mirror.requests().len()),
        (&*origin.host(), 0)
    );
    assert_eq!(
        events.skips(),
        [(mirror.host(), "it serves pulls by digest only".to_owned())]
    );
    let (client, events) = setup(Serves::DigestPulls);
    let result = pull_layout(&client, &by_digest, &events).await;
    assert_eq!(
        (result.source.as_str(), origin.requests().len()),
        (&*mirror.host(), 0)
    );

    // Tag pulls only: the other way round.
    let (client, events) = setup(Serves::TagPulls);
    let result = pull_layout(&client, &by_tag, &events).await;
    assert_eq!(
        (result.source.as_str(), origin.requests().len()),
        (&*mirror.host(), 0)
    );
    let (client, events) = setup(Serves::TagPulls);
    let result = pull_layout(&client, &by_digest, &events).await;
    assert_eq!(
        (result.source.as_str(), mirror.requests().len()),
        (&*origin.host(), 0)
    );

    // Content only (containerd's "pull" without "resolve"): the tag is
    // resolved at the registry, every digest is asked of the mirror first.
    let (client, events) = setup(Serves::Content);
    let result = pull_layout(&client, &by_tag, &events).await;
    assert_eq!(result.source, origin.host());
    let at_origin: Vec<String> = origin.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(at_origin, [format!("/v2/{}/manifests/v1", image.repository)]);
    assert!(
        !mirror
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/manifests/v1"))
    );
    assert_eq!(blob_gets(&mirror).len(), image.layers.len() + 1);
    assert!(
        result
            .layers
            .iter()
            .all(|l| l.source.as_deref() == Some(&*mirror.host()))
    );
}

#[tokio::test]
async fn blobs_come_from_the_manifests_source_then_the_next() {
    // A is empty; B and the registry hold the image.
    let (registry, empty) = tokio::join!(
        TestRegistry::start(AuthMode::None),
        TestRegistry::start_empty(AuthMode::None)
    );
    let image = &registry.fixtures().many_layers;
    let (a, b, origin) = tokio::join!(proxy(&empty), proxy(&registry), proxy(&registry));
    let tag = reference(&image.reference(&origin.host()));
    let build = |events: &Events| {
        client(
            RegistrySources::new(origin.host())
                .mirror(Mirror::new(a.host()))
                .mirror(Mirror::new(b.host())),
            events,
        )
        .build()
        .expect("client")
    };

    // The manifest comes from B (A answers 404): so do the config and every layer.
    let events = Events::default();
    let result = pull_layout(&build(&events), &tag, &events).await;
    assert_eq!(result.source, b.host());
    assert!(
        result
            .layers
            .iter()
            .all(|l| l.source.as_deref() == Some(&*b.host()))
    );
    assert_eq!(blob_gets(&b).len(), image.layers.len() + 1);
    assert_eq!(origin.requests().len(), 0, "{:?}", origin.requests());
    assert_eq!(blob_gets(&a).len(), 0);

    // B fails one blob in each way a source can: missing, corrupted, cut off.
    let layer = |i: usize| image.layers[i].digest.clone();
    let on = |digest: String| Matcher::path_contains(digest).method(reqwest::Method::GET);
    b.inject_when(on(layer(0)), Fault::status(404, 1));
    b.inject_when(on(layer(1)), Fault::CorruptByte { offset: 3, times: 1 });
    let cut = 50;
    b.inject_when(on(layer(2)), Fault::ResetAfter { bytes: cut, times: 1 });
    let events = Events::default();
    let result = pull_layout(&build(&events), &tag, &events).await;
    let source_of = |i: usize| {
        result
            .layers
            .iter()
            .find(|l| l.digest == layer(i))
            .and_then(|l| l.source.clone())
    };
    // Each comes from the next source that has it: B fails it, A has
    // nothing, the registry serves it.
    for i in 0..3 {
        assert_eq!(source_of(i), Some(origin.host()), "layer {i}");
        let what = format!("blob {}", layer(i));
        assert_eq!(events.skips_of_for(&b.host(), &what).len(), 1, "layer {i}");
        let a_skips = events.skips_of_for(&a.host(), &what);
        assert!(
            a_skips.len() == 1 && a_skips[0].contains("not found"),
            "layer {i}: {a_skips:?}"
        );
    }
    assert!((3..image.layers.len()).all(|i| source_of(i) == Some(b.host())));
    let at_origin = blob_gets(&origin);
    assert_eq!(at_origin.len(), 3, "{at_origin:?}");
    // The corrupted blob is fetched whole again; the cut one is resumed where it broke off.
    let range_of = |i: usize| {
        at_origin
            .iter()
            .find(|r| r.path.ends_with(&layer(i)))
            .map(|r| r.range.clone())
    };
    assert_eq!(range_of(0), Some(None));
    assert_eq!(range_of(1), Some(None));
    assert_eq!(range_of(2), Some(Some(format!("bytes={cut}-"))));
    let skips = events.skips_of(&b.host());
    assert_eq!(skips.len(), 3, "{skips:?}");
    assert!(skips.iter().any(|r| r.contains("digest mismatch")), "{skips:?}");
}

#[tokio::test]
async fn a_mirror_that_times_out_is_passed_over_for_the_next_source() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let (slow, origin) = tokio::join!(proxy(&registry), proxy(&registry));
    let delay = Duration::from_secs(5);
    slow.inject_when(
        Matcher::any(),
        Fault::Delay {
            duration: delay,
            times: usize::MAX,
        },
    );
    let events = Events::default();
    let client = client(
        RegistrySources::new(origin.host()).mirror(Mirror::new(slow.host())),
        &events,
    )
    // Far below the delay, far above what a loaded machine's registry takes.
    .read_timeout(Duration::from_secs(1))
    .build()
    .expect("client");
    let image = &registry.fixtures().single_oci;

    let started = Instant::now();
    let result = pull_layout(&client, &reference(&image.reference(&origin.host())), &events).await;
    // The client's timeout cut the wait short, not the mirror's answer.
    assert!(started.elapsed() < delay, "{:?}", started.elapsed());
    assert_eq!(result.digest, image.digest);
    assert_eq!(result.source, origin.host());
    assert!(
        result
            .layers
            .iter()
            .all(|l| l.source.as_deref() == Some(&*origin.host()))
    );
    assert_eq!(
        events.skips_of(&slow.host()),
        [format!("timed out talking to {}", slow.host())]
    );
    // Asked once for the manifest, not retried (a next source was there), never answered.
    let asked = slow.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].is_manifest() && asked[0].status.is_none(), "{asked:?}");
}

/// One deadline for the whole request: a mirror that takes the request and
/// never answers uses it up, and the registry is then not asked at all;
/// with a read timeout well inside the deadline, the registry answers.
#[tokio::test]
async fn a_hung_mirror_shares_the_requests_deadline_with_the_registry() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let origin = proxy(&registry).await;
    let hung = HungServer::accepting();
    let events = Events::default();
    let sources = || RegistrySources::new(origin.host()).mirror(Mirror::new(hung.host()));
    let image = &registry.fixtures().single_oci;
    let by_tag = reference(&image.reference(&origin.host()));

    let hurried = client(sources(), &events).build().expect("client");
    let deadline = Duration::from_millis(800);
    let started = Instant::now();
    let err = hurried
        .with_deadline(Instant::now() + deadline)
        .head_manifest(&by_tag)
        .await
        .expect_err("the mirror used the deadline up");
    let took = started.elapsed();
    assert!(took >= deadline && took < deadline * 3, "{took:?}");
    assert!(err.is_timeout(), "{err:?}");
    let Error::Sources { attempts, .. } = &err else {
        panic!("{err:?}")
    };
    let shown: Vec<String> = attempts.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("{}: timed out talking to {}", hung.host(), hung.host()),
            format!("{}: not asked (the request's deadline had passed)", origin.host()),
        ]
    );
    assert!(origin.requests().is_empty(), "{:?}", origin.requests());

    // A read timeout inside the deadline leaves the registry time to answer.
    let patient = client(sources(), &events)
        .read_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let descriptor = patient
        .with_deadline(Instant::now() + Duration::from_secs(10))
        .head_manifest(&by_tag)
        .await
        .expect("the registry answers");
    assert_eq!(descriptor.digest, image.digest);
    assert_eq!(descriptor.source.as_deref(), Some(&*origin.host()));
}

#[tokio::test]
async fn mirrors_answering_401_and_403_are_passed_over_and_named_in_the_error() {
    // The 401 mirror holds the image: only the wrong password keeps it from serving.
    let (private, registry, empty) = tokio::join!(
        TestRegistry::start(AuthMode::Basic),
        TestRegistry::start(AuthMode::None),
        TestRegistry::start_empty(AuthMode::None),
    );
    let (unauthorized, denied, origin, empty_origin) =
        tokio::join!(proxy(&private), proxy(&registry), proxy(&registry), proxy(&empty));
    denied.inject_when(Matcher::any(), Fault::status(403, usize::MAX));
    let (user, _) = private.credentials().expect("Basic");
    let sources = |registry: String| {
        RegistrySources::new(registry)
            .mirror(Mirror::new(unauthorized.host()).credentials(Credentials::basic(user.clone(), "wrong")))
            .mirror(Mirror::new(denied.host()))
    };
    let image = &registry.fixtures().single_oci;

    // Passed over for the registry, each with its reason.
    let events = Events::default();
    let first = client(sources(origin.host()), &events).build().expect("client");
    let result = pull_layout(&first, &reference(&image.reference(&origin.host())), &events).await;
    assert_eq!(result.digest, image.digest);
    assert_eq!(result.source, origin.host());
    let skips = events.skips();
    assert_eq!(skips.len(), 2, "{skips:?}");
    assert_eq!(skips[0].0, unauthorized.host());
    assert!(
        skips[0]
            .1
            .starts_with(&format!("unauthorized at {}", unauthorized.host())),
        "{skips:?}"
    );
    assert_eq!(skips[1].0, denied.host());
    assert!(
        skips[1]
            .1
            .starts_with(&format!("access denied at {}", denied.host())),
        "{skips:?}"
    );
    assert!(unauthorized.requests().iter().any(|r| r.status == Some(401)));
    assert!(
        unauthorized
            .requests()
            .iter()
            .all(|r| r.status == Some(401) && !r.is_blob()),
        "{:?}",
        unauthorized.requests()
    );
    assert_eq!(denied.requests().len(), 1, "{:?}", denied.requests());

    // A registry without the image: every source is named with its reason,
    // and the error is the last source's kind.
    let events = Events::default();
    let client = client(sources(empty_origin.host()), &events)
        .build()
        .expect("client");
    let error = client
        .pull(&reference(&image.reference(&empty_origin.host())))
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error}");
    let Error::Sources { attempts, .. } = &error else {
        panic!("{error:?}")
    };
    let named: Vec<&str> = attempts.iter().map(|a| a.source.as_str()).collect();
    assert_eq!(
        named,
        [
            unauthorized.host().as_str(),
            denied.host().as_str(),
            empty_origin.host().as_str()
        ]
    );
    let message = error.to_string();
    for expected in [
        format!("{}: unauthorized at {}", unauthorized.host(), unauthorized.host()),
        format!("{}: access denied at {}", denied.host(), denied.host()),
        format!("{}: manifest not found", empty_origin.host()),
    ] {
        assert!(message.contains(&expected), "{expected:?} in {message}");
    }
}

#[tokio::test]
async fn mirror_only_never_asks_the_registry() {
    let (registry, empty) = tokio::join!(
        TestRegistry::start(AuthMode::None),
        TestRegistry::start_empty(AuthMode::None)
    );
    // The registry itself would serve everything; it must never be asked.
    let (lacking, having, origin) = tokio::join!(proxy(&empty), proxy(&registry), proxy(&registry));
    let events = Events::default();
    let client = client(
        RegistrySources::new(origin.host())
            .mirror(Mirror::new(lacking.host()))
            .mirror(Mirror::new(having.host()))
            .mirror_only(),
        &events,
    )
    .build()
    .expect("client");
    let image = &registry.fixtures().single_oci;
    let tag = |tag: &str| reference(&format!("{}/{}:{tag}", origin.host(), image.repository));
    assert_eq!(
        client.sources_for(&tag("v1")).unwrap(),
        [lacking.host(), having.host()]
    );

    let result = pull_layout(&client, &tag("v1"), &events).await;
    assert_eq!(result.digest, image.digest);
    assert_eq!(result.source, having.host());
    assert_eq!(events.skips_of(&lacking.host()).len(), 1);
    assert_eq!(origin.requests().len(), 0, "{:?}", origin.requests());

    // Missing from the mirrors: not found, naming the mirrors alone.
    let error = client.pull(&tag("missing")).await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    let Error::Sources { attempts, .. } = &error else {
        panic!("{error:?}")
    };
    let named: Vec<&str> = attempts.iter().map(|a| a.source.as_str()).collect();
    assert_eq!(named, [lacking.host().as_str(), having.host().as_str()]);
    assert!(
        !error.to_string().contains(&format!("{}: ", origin.host())),
        "{error}"
    );

    // A lone mirror is named too: the reference names only the registry.
    let lone = self::client(
        RegistrySources::new(origin.host())
            .mirror(Mirror::new(lacking.host()))
            .mirror_only(),
        &events,
    )
    .build()
    .expect("client");
    let error = lone.pull(&tag("v1")).await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    let Error::Sources { attempts, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].source, lacking.host());
    assert_eq!(origin.requests().len(), 0, "{:?}", origin.requests());
}

#[tokio::test]
async fn a_mirror_with_a_path_serves_the_image_under_it_with_its_own_token() {
    let (hub, origin_registry) = tokio::join!(
        TestRegistry::start(AuthMode::Token),
        TestRegistry::start_empty(AuthMode::None)
    );
    let image = &hub.fixtures().single_oci;
    // The mirror keeps the image under `hub/`.
    let admin = RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .platform("linux/amd64")
        .credentials({
            let (user, password) = hub.admin_credentials().expect("token mode");
            Credentials::basic(user, password)
        })
        .build()
        .expect("admin client");
    let resolved = admin
        .pull(&reference(&image.reference(&hub.host())))
        .await
        .expect("resolve");
    admin
        .push(
            &resolved,
            &reference(&format!("{}/hub/{}:v1", hub.host(), image.repository)),
            &CopyOptions::default(),
        )
        .await
        .expect("copy under hub/");
    let tokens = hub.token_server().expect("token mode");
    tokens.reset();

    let (mirror, origin) = tokio::join!(proxy(&hub), proxy(&origin_registry));
    let (user, password) = hub.credentials().expect("token mode");
    let events = Events::default();
    let client = client(
        RegistrySources::new(origin.host()).mirror(
            Mirror::new(format!("{}/hub", mirror.host())).credentials(Credentials::basic(user, password)),
        ),
        &events,
    )
    .build()
    .expect("client");
    let by_tag = reference(&image.reference(&origin.host()));
    let result = pull_layout(&client, &by_tag, &events).await;
    assert_eq!(result.digest, image.digest);
    assert_eq!(result.source, format!("{}/hub", mirror.host()));
    assert_eq!(origin.requests().len(), 0, "{:?}", origin.requests());
    let under_hub = format!("/v2/hub/{}/", image.repository);
    let paths: Vec<String> = mirror.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.iter().all(|p| p == "/v2/" || p.starts_with(&under_hub)),
        "{paths:?}"
    );
    assert_eq!(blob_gets(&mirror).len(), image.layers.len() + 1, "{paths:?}");

    // One token, for the repository under `hub/`; a second pull reuses it.
    let scope = format!("repository:hub/{}:pull", image.repository);
    let asked = |tokens: &conformance::harness::TokenServer| -> Vec<Vec<String>> {
        tokens.requests().into_iter().map(|r| r.scopes).collect()
    };
    assert_eq!(asked(tokens), [vec![scope.clone()]]);
    assert_eq!(tokens.issued_count_for(&scope), 1);
    mirror.clear_log();
    let by_digest = reference(&image.digest_reference(&origin.host()));
    pull_layout(&client, &by_digest, &events).await;
    // The layers again (the config may come from the client's cache).
    assert!(
        blob_gets(&mirror).len() >= image.layers.len(),
        "{:?}",
        mirror.requests()
    );
    assert!(
        mirror.requests().iter().all(|r| r
            .authorization
            .as_deref()
            .is_some_and(|h| h.starts_with("Bearer "))),
        "{:?}",
        mirror.requests()
    );
    assert_eq!(asked(tokens), [vec![scope]]);
}

#[tokio::test]
async fn tags_are_listed_by_the_first_source_that_has_the_repository() {
    let (mirror_registry, registry) = tokio::join!(
        TestRegistry::start_empty(AuthMode::None),
        TestRegistry::start_empty(AuthMode::None)
    );
    let image = &fixtures().single_oci;
    let at_mirror = Pusher::new(&mirror_registry.url());
    for tag in ["one", "two"] {
        at_mirror.image(&renamed(image, "app", tag)).await;
    }
    let at_registry = Pusher::new(&registry.url());
    at_registry.image(&renamed(image, "app", "three")).await;
    at_registry.image(&renamed(image, "other", "four")).await;
    let (mirror, origin) = tokio::join!(proxy(&mirror_registry), proxy(&registry));
    let events = Events::default();
    let client = client(
        RegistrySources::new(origin.host()).mirror(Mirror::new(mirror.host())),
        &events,
    )
    .build()
    .expect("client");

    let listed = client
        .tag_list(&reference(&format!("{}/app", origin.host())))
        .await
        .expect("tags");
    assert_eq!(listed.tags, ["one", "two"]);
    assert_eq!(listed.source, mirror.host());
    assert_eq!(origin.requests().len(), 0, "{:?}", origin.requests());
    assert!(events.skips().is_empty(), "{:?}", events.skips());

    // A repository the mirror lacks: listed by the registry.
    let listed = client
        .tag_list(&reference(&format!("{}/other", origin.host())))
        .await
        .expect("tags");
    assert_eq!(listed.tags, ["four"]);
    assert_eq!(listed.source, origin.host());
    // Listed again from the client's cache: still said where from.
    let again = client
        .tag_list(&reference(&format!("{}/other", origin.host())))
        .await
        .expect("tags");
    assert_eq!(again, listed);
    let skips = events.skips_of(&mirror.host());
    assert!(skips.len() == 1 && skips[0].contains("not found"), "{skips:?}");
}
