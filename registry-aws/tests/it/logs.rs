//! At TRACE the AWS SDK logs whole responses, ECR tokens included. The
//! provider drops the SDK's TRACE events during a token fetch and keeps the
//! rest. The test runs alone in a process of its own ([`alone_in_process`]):
//! tracing's per-callsite interest cache is shared by the whole process, so
//! parallel tests could hide a leak.

use conformance::harness::alone_in_process;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use conformance::harness::cloud::aws::{ACCESS_KEY_ID, Answer, FakeEcr, SECRET_KEY, SESSION_TOKEN};
use registry_aws::AwsOption;
use registry_client::{AuthRequest, Challenge, ProviderConfig};

const PASSWORD: &str = "logged-Token-Password";

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

#[tokio::test]
async fn token_fetch_logs_no_secret_at_trace() {
    if !alone_in_process(module_path!(), "token_fetch_logs_no_secret_at_trace") {
        return;
    }
    let fake = FakeEcr::start(Answer::Token {
        password: PASSWORD.to_owned(),
        lifetime: Duration::from_secs(600),
    })
    .await;
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);

    let mut config = ProviderConfig::default();
    config.region = Some("us-east-1".into());
    for (name, value) in [
        (AwsOption::EndpointUrl, fake.url()),
        (AwsOption::AccessKeyId, ACCESS_KEY_ID),
        (AwsOption::SecretAccessKey, SECRET_KEY),
        (AwsOption::SessionToken, SESSION_TOKEN),
    ] {
        config.options.insert(name.into(), value.into());
    }
    let provider = registry_client::driver::provider("aws")
        .unwrap()
        .build(&config)
        .unwrap();
    let challenge = &Challenge::parse_all("Basic realm=\"ecr\"")[0];
    let request = AuthRequest {
        host: "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        challenge,
        scope: None,
    };
    let credentials = provider.credentials(&request).await.unwrap().expect("a token");
    assert_eq!(credentials.secret(), PASSWORD);
    tracing::trace!("after the fetch");
    drop(guard);

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("TRACE") && text.contains("after the fetch"),
        "TRACE is captured:\n{text}"
    );
    assert!(
        text.contains("DEBUG ECR.GetAuthorizationToken"),
        "the SDK's DEBUG events are kept:\n{text}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{PASSWORD}"));
    for secret in [PASSWORD, basic.as_str(), SECRET_KEY, SESSION_TOKEN] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
