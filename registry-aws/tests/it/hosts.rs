//! Which hosts are ECR's, and the provider chosen from an image reference alone.

use registry_aws::{EcrHost, ID, PUBLIC_HOST, registry_host};
use registry_client::{ImageReference, ProviderConfig, RepositoryClient};

fn private(account: &str, region: &str) -> Option<EcrHost> {
    Some(EcrHost::Private {
        account: account.to_owned(),
        region: region.to_owned(),
    })
}

#[test]
fn recognises_ecr_hosts_exactly() {
    let acct = "123456789012";
    let table: &[(&str, Option<EcrHost>)] = &[
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            private(acct, "us-east-1"),
        ),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            private(acct, "eu-west-1"),
        ),
        (
            "000000000000.dkr.ecr.ap-southeast-2.amazonaws.com",
            private("000000000000", "ap-southeast-2"),
        ),
        (
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            private(acct, "us-east-1"),
        ),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            private(acct, "us-gov-west-1"),
        ),
        (
            "123456789012.dkr.ecr.us-gov-east-1.amazonaws.com",
            private(acct, "us-gov-east-1"),
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            private(acct, "cn-north-1"),
        ),
        (
            "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn",
            private(acct, "cn-northwest-1"),
        ),
        (
            "123456789012.dkr-ecr.us-east-1.on.aws",
            private(acct, "us-east-1"),
        ),
        (
            "123456789012.dkr-ecr-fips.us-west-2.on.aws",
            private(acct, "us-west-2"),
        ),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
            private(acct, "us-east-1"),
        ),
        (
            "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM",
            private(acct, "us-east-1"),
        ),
        ("public.ecr.aws", Some(EcrHost::Public)),
        ("public.ecr.aws:443", Some(EcrHost::Public)),
        // Near misses.
        ("12345678901.dkr.ecr.us-east-1.amazonaws.com", None),
        ("1234567890123.dkr.ecr.us-east-1.amazonaws.com", None),
        ("12345678901a.dkr.ecr.us-east-1.amazonaws.com", None),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.com", None),
        ("dkr.ecr.us-east-1.amazonaws.com.evil.com", None),
        ("ecr.us-east-1.amazonaws.com", None),
        ("api.ecr.us-east-1.amazonaws.com", None),
        ("123456789012.dkr.ecr.amazonaws.com", None),
        ("123456789012.dkr.ecr.us-east.amazonaws.com", None),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com.cn", None),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com", None),
        ("123456789012.dkr-ecr.us-east-1.amazonaws.com", None),
        ("123456789012.dkr.ecr.us-east-1.on.aws", None),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com:", None),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com:https", None),
        ("evil.public.ecr.aws", None),
        ("public.ecr.aws.evil.com", None),
        ("gallery.ecr.aws", None),
        ("docker.io", None),
        ("ghcr.io", None),
        ("localhost:5000", None),
    ];
    let record = registry_client::driver::provider(ID).unwrap();
    for (host, expected) in table {
        assert_eq!(&EcrHost::parse(host), expected, "{host}");
        assert_eq!(record.serves(host), expected.is_some(), "serves({host})");
    }
    assert_eq!(EcrHost::Public.region(), "us-east-1");
    assert_eq!(private(acct, "eu-west-1").unwrap().region(), "eu-west-1");
}

#[test]
fn provider_chosen_from_the_reference_alone() {
    let reference: ImageReference = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x:y"
        .parse()
        .unwrap();
    let client = RepositoryClient::builder_for(&reference).build().unwrap();
    assert_eq!(client.provider_id(), "aws");
    let host = reference.registry();
    assert_eq!(EcrHost::parse(host).unwrap().region(), "eu-west-1");
    let provider = registry_client::driver::provider(ID)
        .unwrap()
        .build(&ProviderConfig::default())
        .unwrap();
    assert_eq!(
        provider.endpoint(host).unwrap().as_str(),
        "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/"
    );
    assert_eq!(
        provider.endpoint(PUBLIC_HOST).unwrap().as_str(),
        "https://public.ecr.aws/"
    );

    let public: ImageReference = "public.ecr.aws/docker/library/alpine:3.20".parse().unwrap();
    assert_eq!(
        RepositoryClient::builder_for(&public)
            .build()
            .unwrap()
            .provider_id(),
        "aws"
    );
    for other in [
        "ghcr.io/owner/image:v1",
        "alpine:3.20",
        "ecr.us-east-1.amazonaws.com/x:y",
    ] {
        let reference: ImageReference = other.parse().unwrap();
        let client = RepositoryClient::builder_for(&reference).build().unwrap();
        assert_eq!(client.provider_id(), "oci", "{other}");
    }
}

#[test]
fn registration_and_host_helpers() {
    registry_aws::register().unwrap();
    registry_aws::register().unwrap();
    let record = registry_client::driver::provider("aws").unwrap();
    assert_eq!(
        record.hosts,
        [
            "<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]",
            "<account>.dkr-ecr[-fips].<region>.on.aws",
            "public.ecr.aws",
        ]
    );
    assert_eq!(
        registry_host("123456789012", "eu-west-1"),
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        registry_host("123456789012", "cn-north-1"),
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
    );
    // Explicit credentials and keys never show in the provider's Debug.
    let client = RepositoryClient::builder("aws")
        .credentials(registry_client::Credentials::basic(
            "AWS",
            "registry-Password-hidden",
        ))
        .option(registry_aws::AwsOption::AccessKeyId, "AKIDSHOWN")
        .option(registry_aws::AwsOption::SecretAccessKey, "secret-Key-hidden")
        .option(registry_aws::AwsOption::SessionToken, "session-Token-hidden")
        .build()
        .unwrap();
    let shown = format!("{client:?}");
    assert!(shown.contains("AKIDSHOWN"), "{shown}");
    for secret in [
        "registry-Password-hidden",
        "secret-Key-hidden",
        "session-Token-hidden",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
