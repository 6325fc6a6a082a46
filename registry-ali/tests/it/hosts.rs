//! Which hosts are ACR registries, their edition and region, and the provider chosen from a
//! reference alone.

use crate::common;
use registry_ali::AcrHost;
use registry_client::{ImageReference, RepositoryClient};

fn personal(region: &str) -> Option<AcrHost> {
    Some(AcrHost::Personal {
        region: region.into(),
    })
}

fn enterprise(instance: &str, region: &str) -> Option<AcrHost> {
    Some(AcrHost::Enterprise {
        instance: instance.into(),
        region: region.into(),
    })
}

#[test]
fn host_table() {
    let table: Vec<(&str, Option<AcrHost>)> = vec![
        // Personal Edition and its network variants.
        ("registry.cn-hangzhou.aliyuncs.com", personal("cn-hangzhou")),
        ("registry-vpc.cn-shanghai.aliyuncs.com", personal("cn-shanghai")),
        (
            "registry-internal.cn-beijing.aliyuncs.com",
            personal("cn-beijing"),
        ),
        (
            "registry-intl.ap-southeast-1.aliyuncs.com",
            personal("ap-southeast-1"),
        ),
        (
            "registry-intl-vpc.eu-central-1.aliyuncs.com",
            personal("eu-central-1"),
        ),
        (
            "registry-intl-internal.us-west-1.aliyuncs.com",
            personal("us-west-1"),
        ),
        (
            "registry-vpc-internal.cn-shenzhen.aliyuncs.com",
            personal("cn-shenzhen"),
        ),
        ("REGISTRY.CN-HANGZHOU.ALIYUNCS.COM", personal("cn-hangzhou")),
        ("registry.cn-hangzhou.aliyuncs.com:443", personal("cn-hangzhou")),
        // Enterprise Edition.
        (
            "mcreg-registry.cn-hangzhou.cr.aliyuncs.com",
            enterprise("mcreg", "cn-hangzhou"),
        ),
        (
            "acme-registry-vpc.cn-shanghai.cr.aliyuncs.com",
            enterprise("acme", "cn-shanghai"),
        ),
        (
            "my-team-2-registry.ap-northeast-1.cr.aliyuncs.com",
            enterprise("my-team-2", "ap-northeast-1"),
        ),
        (
            "Acme-Registry.CN-Beijing.CR.aliyuncs.com:5000",
            enterprise("acme", "cn-beijing"),
        ),
        // Near misses.
        ("registry.cn-hangzhou.aliyuncs.com.evil.com", None),
        ("evil.com", None),
        ("cr.cn-hangzhou.aliyuncs.com", None),
        ("x-registry.cn-hangzhou.aliyuncs.com", None),
        ("registry.aliyuncs.com", None),
        ("registry..aliyuncs.com", None),
        ("registry-foo.cn-hangzhou.aliyuncs.com", None),
        ("registry-vpc-intl.cn-hangzhou.aliyuncs.com", None),
        ("registryx.cn-hangzhou.aliyuncs.com", None),
        ("-registry.cn-hangzhou.cr.aliyuncs.com", None),
        ("registry.cn-hangzhou.cr.aliyuncs.com", None),
        ("acme-registry-intl.cn-hangzhou.cr.aliyuncs.com", None),
        ("acme-registry.cn-hangzhou.aliyuncs.com", None),
        ("acme.registry.cn-hangzhou.cr.aliyuncs.com", None),
        ("acme-registry.cn-hangzhou.cr.aliyuncs.com.cn", None),
        ("registry.cn-hangzhou.aliyuncs.co", None),
        ("dkr.ecr.us-east-1.amazonaws.com", None),
        ("docker.io", None),
        ("127.0.0.1:5000", None),
    ];
    let ali = common::provider(&[], None);
    let record = registry_client::driver::provider(registry_ali::ID).unwrap();
    for (host, expected) in &table {
        assert_eq!(&AcrHost::parse(host), expected, "{host}");
        assert_eq!(record.serves(host), expected.is_some(), "serves({host})");
        if expected.is_some() {
            let expected = url::Url::parse(&format!("https://{host}/")).expect("URL");
            assert_eq!(ali.endpoint(host).expect("endpoint"), expected, "{host}");
            assert_eq!(expected.scheme(), "https");
        }
    }
    assert!(table.len() >= 20);
}

/// Host detection builds the provider from a default config: no I/O, no failure, and only
/// ACR hosts are claimed.
#[test]
fn provider_chosen_from_the_reference_alone() {
    registry_ali::register().expect("register");
    for (reference, expected) in [
        ("registry.cn-shanghai.aliyuncs.com/ns/img:t", "ali"),
        (
            "registry-intl-vpc.ap-southeast-1.aliyuncs.com/ns/img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ali",
        ),
        ("acme-registry.cn-hangzhou.cr.aliyuncs.com/team/app", "ali"),
        ("cr.cn-hangzhou.aliyuncs.com/ns/img:t", "oci"),
        ("registry.cn-hangzhou.aliyuncs.com.evil.com/ns/img:t", "oci"),
        ("alpine:3.20", "oci"),
    ] {
        let reference: ImageReference = reference.parse().expect("reference");
        let client = RepositoryClient::builder_for(&reference).build().expect("client");
        assert_eq!(client.provider_id(), expected, "{reference}");
    }
    assert_eq!(
        registry_client::driver::provider_for_host("registry.cn-shanghai.aliyuncs.com").unwrap(),
        "ali"
    );
    let record = registry_client::driver::provider("ali").expect("registered");
    assert_eq!(
        record.hosts,
        [
            "registry[-intl][-vpc][-internal].<region>.aliyuncs.com",
            "<instance>-registry[-vpc].<region>.cr.aliyuncs.com"
        ]
    );
}
