//! docker's credential-helper protocol, byte for byte, as `docker-credential-mcreg` and as
//! `mcreg credential-helper`, with the cloud providers answering from loopback fakes.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{FakeHttp, MCREG, Run, SECRET_MARK, Sandbox, path_str};

const NOT_FOUND: &[u8] = b"credentials not found in native keychain\n";

fn helper(sandbox: &Sandbox, action: &str, stdin: &[u8]) -> Run {
    sandbox.run_program(sandbox.helper(), &[action], Some(stdin))
}

fn subcommand(sandbox: &Sandbox, action: &str, stdin: &[u8]) -> Run {
    sandbox.run_program(MCREG, &["credential-helper", action], Some(stdin))
}

#[test]
fn hosts_no_cloud_serves_are_not_found() {
    let sandbox = Sandbox::new();
    for server in [
        "registry.example.com",
        "https://index.docker.io/v1/",
        "127.0.0.1:5000",
        "ghcr.io\n",
    ] {
        for run in [
            helper(&sandbox, "get", server.as_bytes()),
            subcommand(&sandbox, "get", server.as_bytes()),
        ] {
            assert_eq!(run.code, 1, "{server}: {run:#?}");
            assert_eq!(run.stdout, NOT_FOUND, "{server}: {run:#?}");
        }
    }
    let run = helper(&sandbox, "get", b"");
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, b"no credentials server URL\n");
}

#[test]
fn store_erase_and_list() {
    let sandbox = Sandbox::new();
    let stored = format!(
        r#"{{"ServerURL":"123456789012.dkr.ecr.us-east-1.amazonaws.com","Username":"AWS","Secret":"{SECRET_MARK}"}}"#
    );
    for run in [
        helper(&sandbox, "store", stored.as_bytes()),
        subcommand(&sandbox, "store", stored.as_bytes()),
        helper(
            &sandbox,
            "erase",
            b"123456789012.dkr.ecr.us-east-1.amazonaws.com\n",
        ),
    ] {
        assert_eq!(run.code, 0, "{run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
        assert!(!run.stderr.contains(SECRET_MARK));
    }
    for run in [helper(&sandbox, "list", b""), subcommand(&sandbox, "list", b"")] {
        assert_eq!(run.code, 0, "{run:#?}");
        assert_eq!(run.stdout, b"{}\n");
    }
    let version = helper(&sandbox, "version", b"");
    assert_eq!(version.code, 0);
    assert!(
        version
            .stdout_text()
            .starts_with("docker-credential-mcreg (mcreg) ")
    );
    // Not an action of the protocol.
    assert_eq!(helper(&sandbox, "frobnicate", b"").code, 2);
}

#[test]
fn gcp_hosts_get_an_access_token() {
    let fake = FakeHttp::start(|request| match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/token") => (
            200,
            r#"{"access_token":"ya29.fake-access-token","expires_in":3600,"token_type":"Bearer"}"#.to_owned(),
        ),
        _ => (404, r#"{"error":"not_found"}"#.to_owned()),
    });
    let sandbox = Sandbox::new();
    let adc = sandbox.path("adc.json");
    let file = serde_json::json!({
        "type": "authorized_user",
        "client_id": "mcreg-test.apps.googleusercontent.com",
        "client_secret": format!("client-{SECRET_MARK}"),
        "refresh_token": format!("refresh-{SECRET_MARK}"),
        "token_uri": format!("{}token", fake.url()),
    });
    std::fs::write(&adc, file.to_string()).expect("write ADC file");
    let sandbox = sandbox.env("GOOGLE_APPLICATION_CREDENTIALS", path_str(&adc));
    for host in ["europe-west1-docker.pkg.dev", "gcr.io"] {
        let run = helper(&sandbox, "get", format!("{host}\n").as_bytes());
        assert_eq!(run.code, 0, "{run:#?}");
        assert_eq!(
            run.stdout_text(),
            format!(
                r#"{{"ServerURL":"{host}","Username":"oauth2accesstoken","Secret":"ya29.fake-access-token"}}"#
            ) + "\n"
        );
    }
    let run = subcommand(&sandbox, "get", b"https://us-docker.pkg.dev");
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout_text()
            .starts_with(r#"{"ServerURL":"https://us-docker.pkg.dev","Username":"oauth2accesstoken","#)
    );
    assert!(!fake.requests().is_empty());

    // A refused refresh: an error on stdout (docker shows it), exit 1, no secret.
    let refusing = FakeHttp::start(|_| (400, r#"{"error":"invalid_grant"}"#.to_owned()));
    let file = serde_json::json!({
        "type": "authorized_user",
        "client_id": "c",
        "client_secret": format!("client-{SECRET_MARK}"),
        "refresh_token": format!("refresh-{SECRET_MARK}"),
        "token_uri": format!("{}token", refusing.url()),
    });
    std::fs::write(&adc, file.to_string()).expect("write ADC file");
    let run = helper(&sandbox, "get", b"gcr.io");
    assert_eq!(run.code, 1, "{run:#?}");
    assert_ne!(run.stdout, NOT_FOUND);
    assert!(run.stdout_text().starts_with("provider gcp failed"), "{run:#?}");
    assert_eq!(run.stdout_text().lines().count(), 1, "{run:#?}");
    assert!(!run.stdout_text().contains(SECRET_MARK) && !run.stderr.contains(SECRET_MARK));
}

#[test]
fn acr_hosts_get_a_temporary_password() {
    let fake = FakeHttp::start(|request| match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/tokens") => {
            let expires = (std::time::SystemTime::now() + Duration::from_secs(3600))
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis();
            (
                200,
                format!(
                    r#"{{"data":{{"authorizationToken":"acr-temp-password","tempUserName":"cr_temp_user","expireDate":{expires}}}}}"#
                ),
            )
        }
        _ => (
            404,
            r#"{"Code":"InvalidAction.NotFound","Message":"no"}"#.to_owned(),
        ),
    });
    let sandbox = Sandbox::new()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIfakekey")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", format!("ak-{SECRET_MARK}"))
        .env("ALIBABA_CLOUD_CR_ENDPOINT", fake.url());
    let host = "registry.cn-hangzhou.aliyuncs.com";
    let run = helper(&sandbox, "get", host.as_bytes());
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        run.stdout_text(),
        format!(r#"{{"ServerURL":"{host}","Username":"cr_temp_user","Secret":"acr-temp-password"}}"#) + "\n"
    );
    assert_eq!(fake.requests().len(), 1);
}

/// `moto_server` on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("moto_server could not run ({e}): run scripts/install-test-tools.sh to install it")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ecr_hosts_get_an_ecr_token_from_moto() {
    let moto = Moto::start();
    let sandbox = Sandbox::new()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", format!("aws-{SECRET_MARK}"))
        .env("AWS_ENDPOINT_URL_ECR", moto.url.as_str());
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let run = helper(&sandbox, "get", host.as_bytes());
    assert_eq!(run.code, 0, "{run:#?}");
    let prefix = format!(r#"{{"ServerURL":"{host}","Username":"AWS","Secret":""#);
    let text = run.stdout_text();
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.ends_with("\"}\n"), "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert!(!answer["Secret"].as_str().expect("secret").is_empty());
}
