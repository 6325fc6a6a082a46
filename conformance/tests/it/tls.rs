//! The client against a real Distribution registry serving HTTPS with a self-signed
//! certificate ([`TestRegistry::start_tls`]).
//!
//! Loopback registries default to plain HTTP, so every client here reaches the registry
//! through the `endpoint` override `https://127.0.0.1:PORT`.

use std::error::Error as _;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conformance::harness::{AuthMode, TestRegistry};
use registry_client::driver::oci::OciOption;
use registry_client::{
    CircuitBreakerConfig, Credentials, Error, ImageReference, RepositoryClient, RepositoryClientBuilder,
    RetryConfig,
};
use tokio::net::{TcpListener, TcpStream};

const MAX_RETRIES: u32 = 2;

/// A hermetic `oci` client builder with fast retries.
fn builder() -> RepositoryClientBuilder {
    RepositoryClient::builder("oci")
        .option(OciOption::DockerConfig, "/nonexistent/config.json")
        .retry(
            RetryConfig::default()
                .with_max_retries(MAX_RETRIES)
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(20)),
        )
}

fn reference(s: &str) -> ImageReference {
    s.parse().unwrap_or_else(|e| panic!("reference {s}: {e}"))
}

/// The error and every `source()` below it, as text.
fn chain(error: &Error) -> Vec<String> {
    let mut out = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

/// Asserts `error` is a connection error caused by the certificate.
fn assert_certificate_refused(error: &Error) {
    let chain = chain(error);
    assert!(matches!(error, Error::Connection { .. }), "{error:?}");
    assert!(
        chain.iter().any(|e| e.to_lowercase().contains("certificate")),
        "no certificate error in the chain: {chain:#?}"
    );
}

/// Log lines of the client (`registry_client=debug`) written while the guard lives.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Captures the client's events on this thread (use a current-thread runtime).
fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("registry_client=debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

/// A plain TCP relay to `127.0.0.1:target` that counts connections: the TLS handshake passes
/// through it untouched, so it shows how many times the client really tried.
struct TcpRelay {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpRelay {
    async fn start(target: u16) -> TcpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        TcpRelay {
            port,
            connections,
            task,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn self_signed_certificate_is_refused_without_insecure() {
    let registry = TestRegistry::start_tls(AuthMode::None).await;
    assert!(
        registry.url().starts_with("https://127.0.0.1:"),
        "{}",
        registry.url()
    );
    assert!(
        registry
            .tls_cert_pem()
            .is_some_and(|pem| pem.contains("BEGIN CERTIFICATE"))
    );
    let relay = TcpRelay::start(registry.port()).await;
    let client = builder()
        .endpoint(format!("https://{}", relay.host()))
        // The breaker must not be what stops the retries.
        .circuit_breaker(CircuitBreakerConfig::disabled())
        .build()
        .unwrap();
    let image = &registry.fixtures().single_oci;

    let error = client
        .get_manifest(&reference(&image.reference(&relay.host())))
        .await
        .unwrap_err();

    assert_certificate_refused(&error);
    // Each attempt is one connection (one failed handshake). A refused certificate will be
    // refused again, so it is not retried (and does not count against the host's breaker).
    assert_eq!(relay.connections(), 1, "a refused certificate is not retried");
    let again = client
        .get_manifest(&reference(&image.reference(&relay.host())))
        .await
        .unwrap_err();
    assert!(!again.is_circuit_open(), "{again:?}");
    assert_eq!(relay.connections(), 2);
}

#[tokio::test]
async fn insecure_registry_and_insecure_accept_the_self_signed_certificate() {
    let registry = TestRegistry::start_tls(AuthMode::None).await;
    let image = &registry.fixtures().single_oci;
    let image_ref = reference(&image.reference(&registry.host()));

    let per_registry = builder()
        .endpoint(registry.url())
        .insecure_registry(registry.host())
        .build()
        .unwrap();
    let everything = builder().endpoint(registry.url()).insecure(true).build().unwrap();
    for client in [per_registry, everything] {
        let manifest = client.get_manifest(&image_ref).await.unwrap();
        assert_eq!(manifest.descriptor.digest, image.digest);
        assert_eq!(manifest.bytes, image.manifest);
        // A blob over the same HTTPS connection.
        let config = client.get_config(&image_ref).await.unwrap();
        assert_eq!(config.digest, image.config_digest);
        let tags = client.list_tags(&image_ref).await.unwrap();
        assert_eq!(tags, vec!["v1".to_owned()]);
    }
}

#[tokio::test]
async fn insecure_applies_to_the_named_registry_only() {
    let registry = TestRegistry::start_tls(AuthMode::None).await;
    let image = &registry.fixtures().single_oci;
    let image_ref = reference(&image.reference(&registry.host()));

    let other_host = builder()
        .endpoint(registry.url())
        .insecure_registry("other.host")
        .build()
        .unwrap();
    let error = other_host.get_manifest(&image_ref).await.unwrap_err();
    assert_certificate_refused(&error);

    // Same IP, another port: `host:port` entries are per port.
    let relay = TcpRelay::start(registry.port()).await;
    let other_port = builder()
        .endpoint(format!("https://{}", relay.host()))
        .insecure_registry(registry.host())
        .build()
        .unwrap();
    let error = other_port
        .get_manifest(&reference(&image.reference(&relay.host())))
        .await
        .unwrap_err();
    assert_certificate_refused(&error);
    assert!(relay.connections() >= 1, "the relay was never reached");
}

#[tokio::test(flavor = "current_thread")]
async fn http2_is_used_over_tls_and_http1_over_plain_http() {
    // Set up before anything else, so that the client's callsites are registered while this
    // subscriber already exists (tracing caches each callsite's interest).
    let (logs, _guard) = capture_logs();
    let tls = TestRegistry::start_tls(AuthMode::None).await;
    let plain = TestRegistry::start(AuthMode::None).await;
    let image = &tls.fixtures().single_oci;

    let client = builder()
        .endpoint(tls.url())
        .insecure_registry(tls.host())
        .build()
        .unwrap();
    let image_ref = reference(&image.reference(&tls.host()));
    client.get_manifest(&image_ref).await.unwrap();
    client.get_config(&image_ref).await.unwrap();
    let tls_responses: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains(" response ") || l.ends_with(" response"))
        .collect();
    assert!(tls_responses.len() >= 2, "{:#?}", logs.lines());
    for line in &tls_responses {
        assert!(line.contains(&tls.host()), "{line}");
        assert!(line.contains("version=HTTP/2.0"), "not HTTP/2 over TLS: {line}");
    }

    // Plain HTTP: no h2c upgrade, so HTTP/1.1.
    let client = builder().build().unwrap();
    client
        .get_manifest(&reference(&image.reference(&plain.host())))
        .await
        .unwrap();
    let plain_responses: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| (l.contains(" response ") || l.ends_with(" response")) && l.contains(&plain.host()))
        .collect();
    assert!(!plain_responses.is_empty(), "{:#?}", logs.lines());
    for line in &plain_responses {
        assert!(line.contains("version=HTTP/1.1"), "{line}");
    }
}

#[tokio::test]
async fn token_auth_over_tls() {
    let registry = TestRegistry::start_tls(AuthMode::Token).await;
    let token_server = registry.token_server().expect("token server");
    assert!(token_server.realm().starts_with("http://127.0.0.1:"));
    let (user, password) = registry.credentials().expect("credentials");
    let image = &registry.fixtures().single_oci;
    let image_ref = reference(&image.reference(&registry.host()));

    // Without credentials the registry (reached over HTTPS) refuses.
    let anonymous = builder()
        .endpoint(registry.url())
        .insecure_registry(registry.host())
        .build()
        .unwrap();
    let error = anonymous.get_manifest(&image_ref).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");

    let client = builder()
        .endpoint(registry.url())
        .insecure_registry(registry.host())
        .credentials(Credentials::basic(user, password))
        .build()
        .unwrap();
    let manifest = client.get_manifest(&image_ref).await.unwrap();
    assert_eq!(manifest.descriptor.digest, image.digest);
    let config = client.get_config(&image_ref).await.unwrap();
    assert_eq!(config.digest, image.config_digest);
    let scope = format!("repository:{}:pull", image.repository);
    assert!(
        token_server.issued_count_for(&scope) >= 1,
        "{:#?}",
        token_server.requests()
    );
}
