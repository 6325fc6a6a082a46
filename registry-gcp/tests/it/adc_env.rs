//! Application Default Credentials from `GOOGLE_APPLICATION_CREDENTIALS` (no builder option).
//!
//! Environment variables belong to the whole process, so the test runs alone in a process of
//! its own ([`alone_in_process`]) and sets them before it starts any thread of its own.

use crate::common::{ask, full_text, provider};
use conformance::harness::alone_in_process;
use conformance::harness::cloud::google::{CLIENT_SECRET, FakeOAuth, Tokens};
use registry_client::Error;
use registry_gcp::SCOPE;

#[test]
fn google_application_credentials() {
    if !alone_in_process(module_path!(), "google_application_credentials") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("adc.json");
    // SAFETY: this test is alone in its process, and nothing else in the process reads or
    // writes the environment concurrently: the test harness's main thread only waits for this
    // test, and the fake's thread and the tokio runtime are started below, after this block.
    unsafe {
        std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", &path);
        std::env::remove_var("GOOGLE_CLOUD_QUOTA_PROJECT");
    }
    let fake = FakeOAuth::start(Tokens::Numbered("ya29.adc"), 3600);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Default config, as `builder_for` makes it.
        let gcp = provider(&[], None);

        // The variable names a file that is not there (yet): a clear error, no fallback.
        let err = ask(&*gcp, "gcr.io").await.expect_err("no file");
        assert!(
            matches!(&err, Error::Provider { provider, .. } if provider == "gcp"),
            "{err:?}"
        );
        let text = full_text(&err);
        assert!(text.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert_eq!(fake.calls(), 0);

        // Once it is there, the same provider uses it (a failed build is not cached).
        fake.write_credentials_file(&path, CLIENT_SECRET);
        for host in ["gcr.io", "us-docker.pkg.dev", "gcr.io"] {
            let credentials = ask(&*gcp, host).await.expect("ok").expect("credentials");
            assert_eq!(credentials.username(), Some("oauth2accesstoken"));
            assert_eq!(credentials.secret(), "ya29.adc-1");
        }
        assert_eq!(fake.calls(), 1);
        assert_eq!(fake.requests()[0].scope.as_deref(), Some(SCOPE));
    });
}
