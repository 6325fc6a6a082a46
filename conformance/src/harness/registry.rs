//! A real CNCF Distribution registry (`docker-registry serve`) on a free loopback port, over
//! plain HTTP ([`TestRegistry::start`]) or HTTPS with a fresh self-signed certificate
//! ([`TestRegistry::start_tls`]).

use super::fixtures::{Fixtures, Pusher, fixtures};
use super::token_server::TokenServer;
use super::{ADMIN, USER};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BINARY: &str = "docker-registry";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Response header (set through `http.headers`) that identifies one registry process.
const INSTANCE_HEADER: &str = "X-Mcreg-Instance";

/// How the registry authenticates clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMode {
    /// Anonymous pull and push.
    None,
    /// `auth.htpasswd`: [`USER`] and [`ADMIN`] with random passwords.
    Basic,
    /// `auth.token` against an in-process [`TokenServer`].
    Token,
}

/// A running registry serving its own copy of the fixture storage. Killed on drop.
pub struct TestRegistry {
    child: Child,
    port: u16,
    auth: AuthMode,
    /// PEM of the self-signed certificate the registry serves, for HTTPS registries.
    tls_cert_pem: Option<String>,
    /// Holds config.yml, htpasswd, cert, the log and (usually) the storage.
    dir: tempfile::TempDir,
    storage: PathBuf,
    /// The pull user: [`USER`] unless started with [`start_as`](Self::start_as).
    user: String,
    user_password: String,
    admin_password: String,
    token_server: Option<TokenServer>,
}

/// A scratch dir holding a private copy of the seeded fixture storage: a test
/// that pushes or deletes must not affect others.
async fn seeded_copy() -> (tempfile::TempDir, PathBuf) {
    let seed = tokio::task::spawn_blocking(seed_storage)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let dir = super::scratch_dir("registry");
    let storage = dir.path().join("storage");
    super::copy_dir(seed, &storage).expect("copy seeded storage");
    (dir, storage)
}

impl TestRegistry {
    /// Starts a registry seeded with [`fixtures()`](super::fixtures::fixtures).
    ///
    /// Panics if `docker-registry` is not installed or does not answer `GET /v2/` within
    /// 15 s (the panic message includes its log).
    pub async fn start(auth: AuthMode) -> TestRegistry {
        let (dir, storage) = seeded_copy().await;
        Self::launch(auth, dir, storage, Transport::Http, None).await
    }

    /// Like [`start`](Self::start), with a pull user of the caller's choosing: the
    /// credentials a cloud emulator hands out (e.g. `AWS` and an ECR token's password).
    pub async fn start_as(auth: AuthMode, user: &str, password: &str) -> TestRegistry {
        let (dir, storage) = seeded_copy().await;
        let user = Some((user.to_owned(), password.to_owned()));
        Self::launch(auth, dir, storage, Transport::Http, user).await
    }

    /// Starts a registry with empty storage.
    pub async fn start_empty(auth: AuthMode) -> TestRegistry {
        let dir = super::scratch_dir("registry");
        let storage = dir.path().join("storage");
        Self::launch(auth, dir, storage, Transport::Http, None).await
    }

    /// Like [`start`](Self::start), but serving HTTPS (`http.tls`) with a certificate made
    /// for this registry alone: self-signed, ECDSA P-256, valid for `127.0.0.1` and
    /// `localhost` ([`tls_cert_pem`](Self::tls_cert_pem)). [`url`](Self::url) is then
    /// `https://127.0.0.1:PORT`. Go's net/http offers HTTP/2 (ALPN `h2`) and HTTP/1.1 on it.
    ///
    /// A token registry's realm stays plain HTTP on loopback.
    pub async fn start_tls(auth: AuthMode) -> TestRegistry {
        let (dir, storage) = seeded_copy().await;
        Self::launch(auth, dir, storage, Transport::Https, None).await
    }

    /// Like [`start_empty`](Self::start_empty), but serving HTTPS as [`start_tls`](Self::start_tls) does.
    pub async fn start_empty_tls(auth: AuthMode) -> TestRegistry {
        let dir = super::scratch_dir("registry");
        let storage = dir.path().join("storage");
        Self::launch(auth, dir, storage, Transport::Https, None).await
    }

    async fn launch(
        auth: AuthMode,
        dir: tempfile::TempDir,
        storage: PathBuf,
        transport: Transport,
        user: Option<(String, String)>,
    ) -> TestRegistry {
        let tls = (transport == Transport::Https).then(|| write_tls_files(dir.path()));
        let tls_yaml = tls.as_ref().map_or_else(String::new, |tls| {
            format!(
                "  tls:\n    certificate: '{}'\n    key: '{}'\n",
                tls.cert_path.display(),
                tls.key_path.display()
            )
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (user, user_password) = user.unwrap_or_else(|| (USER.to_owned(), super::random_string(20)));
        let admin_password = super::random_string(20);
        let token_server =
            (auth == AuthMode::Token).then(|| TokenServer::start_for(&user, &user_password, &admin_password));
        let auth_yaml = match auth {
            AuthMode::None => String::new(),
            AuthMode::Basic => {
                let htpasswd = dir.path().join("htpasswd");
                let line = |user: &str, password: &str| {
                    // Cost 4 keeps startup fast; $2y$ is what `htpasswd -B` writes.
                    let hash = bcrypt::hash_with_result(password, 4).expect("bcrypt");
                    format!("{user}:{}\n", hash.format_for_version(bcrypt::Version::TwoY))
                };
                let content = line(&user, &user_password) + &line(ADMIN, &admin_password);
                std::fs::write(&htpasswd, content).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: mcreg-test\n    path: '{}'\n",
                    htpasswd.display()
                )
            }
            AuthMode::Token => {
                let server = token_server.as_ref().expect("token server");
                let cert = dir.path().join("token-cert.pem");
                std::fs::write(&cert, server.cert_pem()).expect("write cert");
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: '{}'\n",
                    server.realm(),
                    server.service(),
                    server.issuer(),
                    cert.display()
                )
            }
        };

        // A free port can be taken by someone else before the registry binds it: retry.
        let config = dir.path().join("config.yml");
        let log = dir.path().join("registry.log");
        for attempt in 1.. {
            let port = super::free_port();
            let instance = super::random_string(12);
            let yaml = config_yaml(&storage, port, &instance, &tls_yaml, &auth_yaml);
            std::fs::write(&config, yaml).expect("write config");
            let mut child = spawn_registry(&config, &log);
            match wait_ready(&mut child, scheme, port, &instance, &log).await {
                Ok(()) => {
                    return TestRegistry {
                        child,
                        port,
                        auth,
                        tls_cert_pem: tls.map(|tls| tls.cert_pem),
                        dir,
                        storage,
                        user: user.clone(),
                        user_password,
                        admin_password,
                        token_server,
                    };
                }
                Err(output) if output.contains("address already in use") && attempt < 5 => {}
                Err(output) => {
                    panic!("docker-registry did not start on {scheme}://127.0.0.1:{port}: {output}")
                }
            }
        }
        unreachable!("the retry loop returns or panics")
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` for a TLS registry.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// Whether the registry serves HTTPS ([`start_tls`](Self::start_tls)).
    pub fn is_tls(&self) -> bool {
        self.tls_cert_pem.is_some()
    }

    /// PEM of the self-signed certificate a TLS registry serves (`None` for plain HTTP).
    pub fn tls_cert_pem(&self) -> Option<&str> {
        self.tls_cert_pem.as_deref()
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn auth_mode(&self) -> AuthMode {
        self.auth
    }

    /// The storage root. Blobs live at `docker/registry/v2/blobs/sha256/<2>/<hex>/data`
    /// ([`blob_path`](Self::blob_path)).
    pub fn root_dir(&self) -> &Path {
        &self.storage
    }

    /// Where the registry stores the blob `sha256:<hex>`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `(user, password)` of the pull user for Basic and Token modes (Basic: full access).
    pub fn credentials(&self) -> Option<(String, String)> {
        (self.auth != AuthMode::None).then(|| (self.user.clone(), self.user_password.clone()))
    }

    /// `(ADMIN, password)` for Basic and Token modes: pull, push and delete.
    pub fn admin_credentials(&self) -> Option<(String, String)> {
        (self.auth != AuthMode::None).then(|| (ADMIN.to_string(), self.admin_password.clone()))
    }

    /// The token server of a [`AuthMode::Token`] registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// The fixtures this registry was seeded with (empty registries: what *would* be there).
    pub fn fixtures(&self) -> &'static Fixtures {
        fixtures()
    }

    /// The registry's output so far (warnings and errors only).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

impl std::fmt::Debug for TestRegistry {
    // Hand-written: no passwords in test output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistry")
            .field("url", &self.url())
            .field("auth", &self.auth)
            .field("tls", &self.is_tls())
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

/// Plain HTTP or HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Http,
    Https,
}

/// The certificate and key files of a TLS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// A server's certificate and key files, and the test certificate authority that signed the
/// certificate: what a client is given to trust is [`ca_pem`](Self::ca_pem) alone.
#[derive(Debug, Clone)]
pub struct CaSignedTlsFiles {
    pub tls: TlsFiles,
    pub ca_pem: String,
    pub ca_path: PathBuf,
}

/// Generates a self-signed certificate for `127.0.0.1`, `::1` and `localhost` and writes
/// `tls-cert.pem` and `tls-key.pem` (PKCS#8) into `dir`.
pub fn write_tls_files(dir: &Path) -> TlsFiles {
    let (params, key) = server_certificate_params();
    let cert = params.self_signed(&key).expect("self-sign certificate");
    write_server_files(dir, &cert, &key)
}

/// Generates a test certificate authority and a certificate for `127.0.0.1`, `::1` and
/// `localhost` signed by it, and writes `tls-ca.pem`, `tls-cert.pem` and `tls-key.pem`
/// (PKCS#8) into `dir`. Unlike [`write_tls_files`], the server's certificate is not a root:
/// a client verifies it only if it trusts the CA.
pub fn write_ca_signed_tls_files(dir: &Path) -> CaSignedTlsFiles {
    let ca_key = rcgen::KeyPair::generate().expect("generate CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mcreg test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let (mut params, key) = server_certificate_params();
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("sign the certificate");
    let files = CaSignedTlsFiles {
        tls: write_server_files(dir, &cert, &key),
        ca_pem: ca_cert.pem(),
        ca_path: dir.join("tls-ca.pem"),
    };
    std::fs::write(&files.ca_path, &files.ca_pem).expect("write the CA certificate");
    files
}

/// The parameters of a server certificate for `127.0.0.1`, `::1` and `localhost`, and its key.
fn server_certificate_params() -> (rcgen::CertificateParams, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("generate TLS key");
    let names = ["127.0.0.1", "::1", "localhost"].map(String::from).to_vec();
    let mut params = rcgen::CertificateParams::new(names).expect("certificate params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mcreg test registry");
    (params, key)
}

/// Writes `tls-cert.pem` and `tls-key.pem` into `dir`.
fn write_server_files(dir: &Path, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> TlsFiles {
    let files = TlsFiles {
        cert_pem: cert.pem(),
        cert_path: dir.join("tls-cert.pem"),
        key_path: dir.join("tls-key.pem"),
    };
    std::fs::write(&files.cert_path, &files.cert_pem).expect("write TLS certificate");
    std::fs::write(&files.key_path, key.serialize_pem()).expect("write TLS key");
    files
}

/// Polls `GET /v2/` until an answer carries our `X-Mcreg-Instance` header (any status: auth
/// modes answer 401). The header proves it is this child answering, not whoever else grabbed
/// the port first. On failure the child is killed and the error carries its log.
///
/// Over HTTPS the certificate is not verified: it is the registry's own self-signed one, and
/// the instance header already identifies the process.
async fn wait_ready(
    child: &mut Child,
    scheme: &str,
    port: u16,
    instance: &str,
    log: &Path,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .tls_danger_accept_invalid_certs(scheme == "https")
        .build()
        .expect("client");
    let url = format!("{scheme}://127.0.0.1:{port}/v2/");
    let deadline = Instant::now() + READY_TIMEOUT;
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}\n{}", log()));
        }
        if let Ok(res) = client.get(&url).send().await
            && res.headers().get(INSTANCE_HEADER).is_some_and(|v| v == instance)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer within {READY_TIMEOUT:?}\n{}", log()));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `tls_yaml` is empty or the indented `tls:` block of the `http:` section.
fn config_yaml(storage: &Path, port: u16, instance: &str, tls_yaml: &str, auth_yaml: &str) -> String {
    // Access logs off and level warn keep test output quiet; a fixed http.secret silences
    // the "generated random secret" warning; upload purging would only add a background scan.
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: '{}'
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: mcreg-conformance-not-a-secret
  headers:
    {INSTANCE_HEADER}: ['{instance}']
{tls_yaml}{auth_yaml}",
        storage.display()
    )
}

fn spawn_registry(config: &Path, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("create registry log");
    let err = out.try_clone().expect("clone log handle");
    let mut cmd = Command::new(BINARY);
    cmd.arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    match super::spawn_tied_to_process(cmd) {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "docker-registry not found: run scripts/install-test-tools.sh (apt-get install docker-registry)"
        ),
        Err(e) => panic!("cannot start docker-registry: {e}"),
    }
}

/// The fixture storage, pushed once per test process through a throwaway no-auth registry.
/// Runs on its own thread and runtime so nothing outlives the test that triggered it.
fn seed_storage() -> &'static Path {
    static SEED: OnceLock<PathBuf> = OnceLock::new();
    SEED.get_or_init(|| {
        super::remove_stale_dirs();
        let path = std::env::temp_dir().join(format!("mcreg-conformance-{}-seed", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let build = path.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("seed runtime");
            rt.block_on(async move {
                let dir = super::scratch_dir("seeding");
                let registry = TestRegistry::launch(AuthMode::None, dir, build, Transport::Http, None).await;
                Pusher::new(&registry.url()).all(fixtures()).await;
            });
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
        // SAFETY: registering a plain `extern "C" fn` with atexit has no preconditions.
        unsafe { libc::atexit(remove_seed) };
        path
    })
}

extern "C" fn remove_seed() {
    let path = std::env::temp_dir().join(format!("mcreg-conformance-{}-seed", std::process::id()));
    let _ = std::fs::remove_dir_all(path);
}
