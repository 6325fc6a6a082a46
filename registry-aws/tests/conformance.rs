//! The whole conformance suite, with ECR's side emulated by `moto`: the
//! provider gets its token from moto's `GetAuthorizationToken` and presents
//! it as `AWS` / `123456789012-auth-token` to a real Distribution registry.
//!
//! moto answers `{"authorizationData": [{"authorizationToken":
//! "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu", "expiresAt": 1420070400,
//! "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]}`:
//! base64 of `AWS:123456789012-auth-token`, expiring 2015-01-01T00:00:00Z. So
//! every token arrives expired, is used once and never cached: every request
//! that needs credentials asks moto.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use conformance::suite::Target;
use registry_aws::{ACCESS_KEY_ID_OPTION, ENDPOINT_URL_OPTION, SECRET_ACCESS_KEY_OPTION};
use registry_client::{AuthRequest, Challenge, ProviderConfig, RepositoryClient, RepositoryClientBuilder};

/// The password in moto's token for its default account 123456789012.
const MOTO_PASSWORD: &str = "123456789012-auth-token";
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// `http://127.0.0.1:PORT` of one `moto_server` per test process.
fn moto_url() -> &'static str {
    static MOTO: OnceLock<String> = OnceLock::new();
    MOTO.get_or_init(start_moto)
}

enum Moto {
    Started,
    Exited(std::io::Result<std::process::ExitStatus>),
}

fn start_moto() -> String {
    for _attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        // moto's output, readable by us after the file's name is gone.
        let path = std::env::temp_dir().join(format!("mcreg-moto-{}-{port}.log", std::process::id()));
        let log = std::fs::File::create(&path).expect("moto log");
        let mut output = std::fs::File::open(&path).expect("moto log");
        std::fs::remove_file(&path).expect("unlink moto log");
        let mut read_output = move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut output, &mut text);
            text
        };
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the test process.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // PR_SET_PDEATHSIG fires when the forking *thread* exits: this one lives
        // as long as moto does.
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("moto-server".into())
            .spawn(move || match cmd.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(Moto::Started));
                    let _ = tx.send(Ok(Moto::Exited(child.wait())));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            })
            .expect("spawn moto thread");
        match rx.recv().expect("moto thread answered") {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!(
                    "moto_server not found: run scripts/install-test-tools.sh (pip install 'moto[server]')"
                )
            }
            Err(e) => panic!("cannot start moto_server: {e}"),
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(Moto::Exited(status))) = rx.try_recv() {
                let output = read_output();
                if output.contains("in use") {
                    break; // someone took the port: try another
                }
                panic!("moto_server exited ({status:?}):\n{output}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return format!("http://127.0.0.1:{port}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 30 s:\n{}",
                read_output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("moto_server found no free port in 5 attempts")
}

/// The `aws` client: registry requests to the target, the ECR API to moto.
fn builder(target: &Target) -> RepositoryClientBuilder {
    RepositoryClient::builder("aws")
        .endpoint(target.endpoint.as_str())
        .region("us-east-1")
        .option(ENDPOINT_URL_OPTION, moto_url())
        .option(ACCESS_KEY_ID_OPTION, "AKIDMCREGMOTO")
        .option(SECRET_ACCESS_KEY_OPTION, "mcreg-moto-secret")
}

#[tokio::test]
async fn moto_token_is_basic_aws_with_the_accounts_password() {
    let mut config = ProviderConfig::default();
    config.region = Some("us-east-1".into());
    for (name, value) in [
        (ENDPOINT_URL_OPTION, moto_url()),
        (ACCESS_KEY_ID_OPTION, "AKIDMCREGMOTO"),
        (SECRET_ACCESS_KEY_OPTION, "mcreg-moto-secret"),
    ] {
        config.options.insert(name.into(), value.into());
    }
    let provider = (registry_client::driver::provider("aws").unwrap().factory)(&config).unwrap();
    let challenge = &Challenge::parse_all("Basic realm=\"ecr\"")[0];
    let request = AuthRequest {
        host: REGISTRY,
        challenge,
        scope: Some("repository:x:pull"),
    };
    for _ in 0..2 {
        let credentials = provider.credentials(&request).await.unwrap().expect("a token");
        assert_eq!(credentials.username(), Some("AWS"));
        assert_eq!(credentials.secret(), MOTO_PASSWORD);
    }
}

conformance::conformance_tests!(
    registry = Some(REGISTRY),
    builder = builder,
    mode = Basic,
    user = Some(("AWS", MOTO_PASSWORD))
);
