//! Both editions end to end against a real registry, the instance-name lookup, and the
//! temporary password's cache (one API call while valid, a new one near `ExpireTime`).

use std::time::Duration;

use crate::common::{AccountExt as _, ask, provider};
use conformance::harness::cloud::alibaba::{MCREG_INSTANCE_ID, TEMP_TOKEN, TEMP_USER, fake};
use conformance::harness::{AuthMode, TestRegistry};
use registry_client::pull::PullOptions;
use registry_client::{Credentials, Error, ImageReference, RepositoryClient};

fn reference(text: &str) -> ImageReference {
    text.parse().expect("reference")
}

/// `registry.cn-hangzhou.aliyuncs.com/...`: chosen by host, credentials through the ROA
/// `GET /tokens` (2016-06-07), a full pull to an OCI layout.
#[tokio::test]
async fn personal_edition_end_to_end() {
    let registry = TestRegistry::start_as(AuthMode::Token, TEMP_USER, TEMP_TOKEN).await;
    let account = fake().account("personal");
    let fixture = &registry.fixtures().single_oci;
    let image = reference(&fixture.reference("registry.cn-hangzhou.aliyuncs.com"));
    let client = account
        .options()
        .into_iter()
        .fold(RepositoryClient::builder_for(&image), |b, (k, v)| b.option(k, v))
        .endpoint(registry.url())
        .build()
        .expect("client");
    assert_eq!(client.provider_id(), "ali");

    let dir = tempfile::tempdir().expect("tempdir");
    let pulled = client.pull(&image).await.expect("resolve");
    let result = pulled
        .write_oci_layout(&dir.path().join("layout"), &PullOptions::default())
        .await
        .expect("pull");
    assert_eq!(result.digest, fixture.digest);
    assert_eq!(result.layers.len(), fixture.layers.len());
    assert_eq!(
        client.list_tags(&image).await.expect("tags"),
        vec!["v1".to_owned()]
    );

    let calls = account.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        (calls[0].action.as_str(), calls[0].version.as_str()),
        ("GetAuthorizationToken", "2016-06-07")
    );
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("GET", "/tokens")
    );
    assert!(calls[0].params.is_empty(), "{:?}", calls[0].params);
    assert_eq!(calls[0].security_token, None);
    assert_eq!(calls[0].error, None);
    let tokens = registry.token_server().expect("token server").requests();
    assert!(
        tokens
            .iter()
            .all(|t| t.username.as_deref() == Some(TEMP_USER) && t.status == 200)
    );
}

/// No `instance_id`: `ListInstance` by the host's instance name, page by page (the fake
/// puts 55 `mcreg-NN` instances first), then `GetAuthorizationToken` for the id found.
#[tokio::test]
async fn enterprise_instance_found_by_name() {
    let registry = TestRegistry::start_as(AuthMode::Token, TEMP_USER, TEMP_TOKEN).await;
    let account = fake().account("lookup");
    let fixture = &registry.fixtures().single_docker;
    let image = reference(&fixture.reference("mcreg-registry-vpc.cn-hangzhou.cr.aliyuncs.com"));
    let client = account
        .builder()
        .endpoint(registry.url())
        .build()
        .expect("client");
    let manifest = client.get_manifest(&image).await.expect("manifest");
    assert_eq!(manifest.descriptor.digest, fixture.digest);

    let calls = account.calls();
    let summary: Vec<(String, Option<String>, Option<String>)> = calls
        .iter()
        .map(|c| {
            (
                c.action.clone(),
                c.params.get("PageNo").cloned(),
                c.params.get("InstanceId").cloned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ListInstance".into(), Some("1".into()), None),
            ("ListInstance".into(), Some("2".into()), None),
            (
                "GetAuthorizationToken".into(),
                None,
                Some(MCREG_INSTANCE_ID.into())
            ),
        ]
    );
    assert_eq!(
        calls[0].params.get("InstanceName").map(String::as_str),
        Some("mcreg")
    );
    assert_eq!(calls[0].params.get("PageSize").map(String::as_str), Some("50"));
    assert!(
        calls
            .iter()
            .all(|c| c.version == "2018-12-01" && c.method == "POST" && c.path == "/")
    );
    assert!(calls.iter().all(|c| c.error.is_none()), "{calls:#?}");
}

/// An instance name the account does not have: a provider error that says what to set.
#[tokio::test]
async fn unknown_instance_name_is_a_clear_error() {
    let account = fake().account("no-instance");
    let ali = provider(&account.options(), None);
    let err = ask(&ali, "nosuch-registry.cn-hangzhou.cr.aliyuncs.com")
        .await
        .expect_err("no such instance");
    let Error::Provider { provider: id, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(id, "ali");
    assert_eq!(
        source.to_string(),
        "no ACR Enterprise Edition instance named \"nosuch\" in this account and region; \
         set the builder option \"instance_id\""
    );
    assert_eq!(account.answered("ListInstance", "2018-12-01"), 1);
    assert_eq!(account.answered("GetAuthorizationToken", "2018-12-01"), 0);

    // A wrong explicit id: the API's own answer (IsSuccess false), tagged "ali".
    let mut options = account.options();
    options.push((registry_ali::AliOption::InstanceId, "cri-doesnotexist".into()));
    let err = ask(
        &provider(&options, None),
        "acme-registry.cn-hangzhou.cr.aliyuncs.com",
    )
    .await
    .expect_err("unknown id");
    let Error::Provider { provider: id, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(id, "ali");
    let text = source.to_string();
    assert!(
        text.contains(": INSTANCE_NOT_EXIST: instance cri-doesnotexist does not exist"),
        "{text}"
    );
}

/// Many pulls over many scopes (each a new registry token, each asking the provider):
/// one `GetAuthorizationToken` while the temporary password is valid.
#[tokio::test]
async fn one_api_call_while_the_password_is_valid() {
    let registry = TestRegistry::start_as(AuthMode::Token, TEMP_USER, TEMP_TOKEN).await;
    let tokens = registry.token_server().expect("token server");
    tokens.set_token_lifetime(Duration::from_secs(1));
    let account = fake().account("cache");
    let client = account
        .builder()
        .option(registry_ali::AliOption::InstanceId, MCREG_INSTANCE_ID)
        .endpoint(registry.url())
        .no_cache()
        .build()
        .expect("client");
    let host = "mcreg-registry.cn-hangzhou.cr.aliyuncs.com";
    let f = registry.fixtures();
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..2 {
        for (n, fixture) in [&f.single_oci, &f.single_docker, &f.nested, &f.many_layers]
            .iter()
            .enumerate()
        {
            let image = reference(&fixture.reference(host));
            let out = dir.path().join(format!("{round}-{n}.tar"));
            let pulled = client.pull(&image).await.expect("resolve");
            let result = pulled
                .write_docker_archive(&out, &PullOptions::default())
                .await
                .expect("pull");
            assert_eq!(result.digest, fixture.digest);
        }
        client.catalog(host).await.expect("catalog");
        // Every registry token has run out: the next round asks the provider again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(
        tokens.issued_count() >= 10,
        "{} registry tokens",
        tokens.issued_count()
    );
    assert_eq!(account.answered("GetAuthorizationToken", "2018-12-01"), 1);
    assert_eq!(account.calls().len(), 1);
}

/// Cached until `REFRESH_BEFORE` ahead of `ExpireTime`, then fetched again once.
#[tokio::test]
async fn refreshed_when_expire_time_approaches() {
    let account = fake().account("refresh");
    account.set_lifetime(registry_ali::REFRESH_BEFORE + Duration::from_secs(2));
    let mut options = account.options();
    options.push((registry_ali::AliOption::InstanceId, MCREG_INSTANCE_ID.into()));
    let ali = provider(&options, None);
    let host = "mcreg-registry.cn-hangzhou.cr.aliyuncs.com";
    let count = || account.answered("GetAuthorizationToken", "2018-12-01");

    let first = ask(&ali, host).await.expect("credentials").expect("some");
    assert_eq!(first.username(), Some(TEMP_USER));
    assert_eq!(first.secret(), TEMP_TOKEN);
    ask(&ali, host).await.expect("cached");
    ask(&ali, host).await.expect("cached");
    assert_eq!(count(), 1, "cached while more than REFRESH_BEFORE remains");

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let refreshed = ask(&ali, host).await.expect("refreshed").expect("some");
    assert_eq!(refreshed.secret(), TEMP_TOKEN);
    assert_eq!(count(), 2, "fetched again within REFRESH_BEFORE of ExpireTime");
    ask(&ali, host).await.expect("cached again");
    assert_eq!(count(), 2);

    // Another registry (the Personal Edition) has its own cache entry.
    ask(&ali, "registry.cn-hangzhou.aliyuncs.com")
        .await
        .expect("personal");
    ask(&ali, "registry-vpc.cn-hangzhou.aliyuncs.com")
        .await
        .expect("same API, same key");
    assert_eq!(account.answered("GetAuthorizationToken", "2016-06-07"), 1);

    // A lifetime shorter than REFRESH_BEFORE is used, but never cached.
    let short = fake().account("short-lived");
    short.set_lifetime(Duration::from_secs(60));
    let mut options = short.options();
    options.push((registry_ali::AliOption::InstanceId, MCREG_INSTANCE_ID.into()));
    let ali = provider(&options, None);
    for _ in 0..3 {
        let c = ask(&ali, host).await.expect("credentials").expect("some");
        assert_eq!(c.secret(), TEMP_TOKEN);
    }
    assert_eq!(short.answered("GetAuthorizationToken", "2018-12-01"), 3);
}

/// Registry credentials given to the builder are used as they are: no API call.
#[tokio::test]
async fn explicit_credentials_are_used_as_is() {
    let account = fake().account("explicit");
    let ali = provider(
        &account.options(),
        Some(Credentials::basic("fixed-user", "fixed-Pa55")),
    );
    for host in [
        "registry.cn-hangzhou.aliyuncs.com",
        "acme-registry.cn-beijing.cr.aliyuncs.com",
        "127.0.0.1:5000",
    ] {
        let c = ask(&ali, host).await.expect("credentials").expect("some");
        assert_eq!((c.username(), c.secret()), (Some("fixed-user"), "fixed-Pa55"));
    }
    assert!(account.calls().is_empty());
}
