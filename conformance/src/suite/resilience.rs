//! Cases for failures: retries, rate limits, broken and corrupted bodies,
//! redirects to other hosts, timeouts, deadlines and the circuit breaker.

use registry_client::{BlobSink, GetBlobOptions};
use std::time::{Duration, Instant};

use registry_client::{CircuitBreakerConfig, Error, RepositoryClient, RetryConfig};

use super::env::SuiteEnv;
use crate::harness::fault_proxy::{Fault, FaultKind, Matcher, RecordedRequest};

fn manifest_gets(r: &RecordedRequest) -> bool {
    r.method == "GET" && r.is_manifest()
}

/// Authenticates once and forgets the requests that took, so that counts
/// below are the same in every auth mode.
async fn warm_up(client: &RepositoryClient, env: &SuiteEnv) {
    client.ping(&env.target.registry_name).await.expect("ping");
    env.proxy.clear_log();
}

/// Two 503s, then the real answer: retried transparently.
pub async fn retries_server_errors(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    env.proxy.inject_when(Matcher::manifests(), Fault::status(503, 2));
    let fixture = &env.fixtures().single_oci;
    let manifest = client.get_manifest(&env.image(fixture)).await.expect("retried");
    assert_eq!(manifest.descriptor.digest, fixture.digest);
    assert_eq!(env.proxy.fired(FaultKind::Status), 2);
    assert_eq!(env.proxy.count(manifest_gets), 3);
}

/// A 429 with `Retry-After: 1` makes the client wait that second, then succeed.
pub async fn honours_retry_after(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    env.proxy
        .inject_when(Matcher::manifests(), Fault::rate_limited(1, "1"));
    let started = Instant::now();
    client
        .get_manifest(&env.image(&env.fixtures().single_oci))
        .await
        .expect("after the wait");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    let times: Vec<Instant> = env
        .proxy
        .requests()
        .iter()
        .filter(|r| manifest_gets(r))
        .map(|r| r.at)
        .collect();
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "retry came too early"
    );
}

/// A rate limit that outlasts the retries is reported with the server's numbers.
pub async fn rate_limit_reported(_client: &RepositoryClient, env: &SuiteEnv) {
    let client = env
        .builder()
        .retry(RetryConfig::default().with_max_retries(2))
        .build()
        .expect("client");
    warm_up(&client, env).await;
    env.proxy
        .inject_when(Matcher::manifests(), Fault::rate_limited(10, "0"));
    let err = client
        .get_manifest(&env.image(&env.fixtures().single_oci))
        .await
        .expect_err("rate limited");
    match &err {
        Error::RateLimited {
            retry_after,
            limit: Some(limit),
            ..
        } => {
            assert_eq!(*retry_after, Some(Duration::ZERO));
            assert_eq!(limit.limit.as_deref(), Some("100;w=21600"));
            assert_eq!(limit.remaining.as_deref(), Some("0;w=21600"));
        }
        other => panic!("expected RateLimited with limits, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(env.proxy.count(manifest_gets), 3, "first try and two retries");
}

/// 403 and 404 are answers, not failures: never retried.
pub async fn no_retry_on_client_errors(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    env.proxy.inject_when(Matcher::manifests(), Fault::status(403, 1));
    let err = client
        .get_manifest(&env.image(&env.fixtures().single_oci))
        .await
        .expect_err("denied");
    assert!(matches!(err, Error::Denied { .. }), "{err:?}");
    assert_eq!(env.proxy.count(manifest_gets), 1);
}

/// A connection reset mid-body is retried and the manifest still verifies
/// (blobs resume with `Range` instead: see `pull_resumes_with_range`).
pub async fn retries_broken_body(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    env.proxy
        .inject_when(Matcher::manifests(), Fault::ResetAfter { bytes: 20, times: 1 });
    let fixture = &env.fixtures().many_layers;
    let manifest = client
        .get_manifest(&env.image(fixture))
        .await
        .expect("retried after reset");
    assert_eq!(manifest.bytes, fixture.manifest);
    assert_eq!(env.proxy.fired(FaultKind::ResetAfter), 1);
    assert_eq!(env.proxy.count(manifest_gets), 2);
}

/// One flipped byte fails verification, whether asked by tag or digest, and nothing bad is cached.
pub async fn detects_corruption(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    let fixture = &env.fixtures().single_oci;
    let by_tag = env.image(fixture);
    let by_digest = by_tag.with_digest(&fixture.digest).expect("ref");
    for reference in [&by_tag, &by_digest] {
        env.proxy
            .inject_when(Matcher::manifests(), Fault::CorruptByte { offset: 40, times: 1 });
        match client.get_manifest(reference).await {
            Err(Error::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, fixture.digest);
                assert_ne!(actual, fixture.digest);
            }
            other => panic!("{reference}: expected DigestMismatch, got {other:?}"),
        }
    }
    let manifest = client.get_manifest(&by_digest).await.expect("clean copy");
    assert_eq!(manifest.bytes, fixture.manifest);

    env.proxy
        .inject_when(Matcher::blob_gets(), Fault::CorruptByte { offset: 5, times: 1 });
    let err = client.get_config(&by_tag).await.expect_err("corrupted config");
    assert!(err.is_integrity(), "{err:?}");
}

/// A registry answering garbage gets a clear error, not a panic or a retry storm.
pub async fn rejects_garbage(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    env.proxy.inject_when(
        Matcher::manifests(),
        Fault::Status {
            status: 200,
            times: 1,
            retry_after: None,
            headers: vec![(
                "content-type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
            body: Some("<html>this is not a manifest</html>".into()),
        },
    );
    let err = client
        .get_manifest(&env.image(&env.fixtures().single_oci))
        .await
        .expect_err("garbage");
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("not JSON"), "{err}");
    assert_eq!(env.proxy.count(manifest_gets), 1);
}

/// Blobs redirected to another host are fetched there without our `Authorization`.
pub async fn redirect_drops_authorization(client: &RepositoryClient, env: &SuiteEnv) {
    env.proxy
        .inject_when(Matcher::blob_gets(), Fault::RedirectBlobs { times: 10 });
    let fixture = &env.fixtures().single_oci;
    let config = client
        .get_config(&env.image(fixture))
        .await
        .expect("config via redirect");
    assert_eq!(config.bytes, fixture.config);
    let redirected = env.proxy.redirect_requests();
    assert_eq!(redirected.len(), 1, "the blob was fetched from the other host");
    assert!(
        !redirected[0].had_authorization,
        "Authorization leaked to {}",
        env.proxy.redirect_host()
    );
    if env.target.credentials.is_some() {
        let authorized_at_registry = env.proxy.count(|r| r.is_blob_get() && r.had_authorization);
        assert_eq!(
            authorized_at_registry, 1,
            "the registry itself did get credentials"
        );
    }
}

/// A server slower than the read timeout gives `Error::Timeout`.
pub async fn times_out(_client: &RepositoryClient, env: &SuiteEnv) {
    env.proxy.inject_when(
        Matcher::manifests(),
        Fault::Delay {
            duration: Duration::from_secs(3),
            times: 1,
        },
    );
    let client = env
        .builder()
        .read_timeout(Duration::from_millis(300))
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let started = Instant::now();
    let err = client
        .get_manifest(&env.image(&env.fixtures().single_oci))
        .await
        .expect_err("too slow");
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A deadline bounds a request to a registry that takes the request and
/// never answers: with retries left and a read timeout far away, the call
/// fails when the deadline passes, and each such attempt counts against
/// the host's breaker, which opens. A blob's deadline is for its first
/// bytes only: a body that takes longer arrives whole.
pub async fn deadline_bounds_a_hung_registry(client: &RepositoryClient, env: &SuiteEnv) {
    warm_up(client, env).await;
    let fixture = &env.fixtures().single_oci;
    let reference = env.image(fixture);
    let client = env
        .builder()
        .circuit_breaker(CircuitBreakerConfig::new(3, Duration::from_secs(60)))
        .no_cache()
        .build()
        .expect("client");
    // The blob first, while the registry answers (slowly).
    let layer = &fixture.layers[0];
    let bytes_per_second = (layer.data.len() as u64).div_ceil(2).max(1);
    env.proxy.inject_when(
        Matcher::blob_gets(),
        Fault::Throttle {
            bytes_per_second,
            times: usize::MAX,
        },
    );
    let started = Instant::now();
    let mut sink = MemorySink::default();
    client
        .with_deadline(Instant::now() + Duration::from_millis(500))
        .get_blob_into(
            &reference,
            &layer.digest,
            &GetBlobOptions::default().size(layer.data.len() as u64),
            &mut sink,
        )
        .await
        .expect("a body slower than the deadline");
    assert_eq!(sink.bytes, layer.data);
    assert!(
        started.elapsed() > Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    env.proxy.clear();

    env.proxy.inject_when(
        Matcher::manifests(),
        Fault::Delay {
            duration: Duration::from_secs(30),
            times: usize::MAX,
        },
    );
    let deadline = Duration::from_millis(400);
    for _ in 0..3 {
        let started = Instant::now();
        let err = client
            .with_deadline(Instant::now() + deadline)
            .head_manifest(&reference)
            .await
            .expect_err("hung");
        let took = started.elapsed();
        assert!(err.is_timeout(), "{err:?}");
        assert!(took >= deadline && took < deadline * 3, "{took:?}");
    }
    // One attempt each, cut by the deadline (no retry fits after it).
    assert_eq!(env.proxy.count(|r| r.method == "HEAD" && r.is_manifest()), 3);
    let started = Instant::now();
    let err = client
        .with_deadline(Instant::now() + deadline)
        .head_manifest(&reference)
        .await
        .expect_err("open");
    assert!(err.is_circuit_open(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    env.proxy.clear();
}

/// A blob kept in memory.
#[derive(Default)]
struct MemorySink {
    bytes: Vec<u8>,
}

impl BlobSink for MemorySink {
    async fn write(&mut self, chunk: bytes::Bytes) -> registry_client::Result<()> {
        self.bytes.extend_from_slice(&chunk);
        Ok(())
    }

    async fn restart(&mut self) -> Result<(), registry_client::RestartRefused> {
        self.bytes.clear();
        Ok(())
    }
}

/// Repeated failures open the circuit: calls then fail at once without
/// reaching the registry, until one trial after the open period succeeds.
pub async fn circuit_breaker(_client: &RepositoryClient, env: &SuiteEnv) {
    let client = env
        .builder()
        .retry(RetryConfig::disabled())
        .circuit_breaker(CircuitBreakerConfig::new(3, Duration::from_secs(1)))
        .no_cache()
        .build()
        .expect("client");
    let reference = env.image(&env.fixtures().single_oci);
    env.proxy.inject_when(Matcher::manifests(), Fault::status(503, 3));
    for _ in 0..3 {
        let err = client.head_manifest(&reference).await.expect_err("503");
        assert!(matches!(err, Error::Registry { status: 503, .. }), "{err:?}");
    }
    let reached = env.proxy.requests().len();
    let started = Instant::now();
    let err = client.head_manifest(&reference).await.expect_err("open");
    assert!(err.is_circuit_open(), "{err:?}");
    assert!(err.to_string().contains("circuit breaker open"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(100), "fails fast");
    assert_eq!(env.proxy.requests().len(), reached, "nothing sent while open");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .head_manifest(&reference)
        .await
        .expect("trial request succeeds");
    client.head_manifest(&reference).await.expect("closed again");
    assert_eq!(env.proxy.count(|r| r.status == Some(200)), 2);
}
