//! The AccessKey and API endpoint from the environment. The test changes process-wide
//! environment variables, so it runs alone in a process of its own ([`alone_in_process`]).

use crate::common::{AccountExt as _, ask, provider};
use conformance::harness::alone_in_process;
use conformance::harness::cloud::alibaba::{MCREG_INSTANCE_ID, TEMP_TOKEN, TEMP_USER, fake};
use registry_ali::{
    ACCESS_KEY_ID_ENV, ACCESS_KEY_SECRET_ENV, AliOption, CR_ENDPOINT_ENV, SECURITY_TOKEN_ENV,
};
use registry_client::Error;

const HOST: &str = "mcreg-registry.cn-hangzhou.cr.aliyuncs.com";

fn set(name: &str, value: Option<&str>) {
    // SAFETY: alone in its process; nothing else reads or writes the environment meanwhile.
    unsafe {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
}

#[tokio::test]
async fn access_key_and_endpoint_from_the_environment() {
    if !alone_in_process(module_path!(), "access_key_and_endpoint_from_the_environment") {
        return;
    }
    for name in [
        ACCESS_KEY_ID_ENV,
        ACCESS_KEY_SECRET_ENV,
        SECURITY_TOKEN_ENV,
        CR_ENDPOINT_ENV,
    ] {
        set(name, None);
    }
    let instance = [(AliOption::InstanceId, MCREG_INSTANCE_ID.to_owned())];

    // No key anywhere: asked for credentials, a configuration error naming the sources.
    let ali = provider(&instance, None);
    let err = ask(&ali, HOST).await.expect_err("no key");
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid configuration: ali: no Alibaba Cloud AccessKey to get credentials for \
         mcreg-registry.cn-hangzhou.cr.aliyuncs.com: set ALIBABA_CLOUD_ACCESS_KEY_ID and \
         ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS), or the builder \
         options \"access_key_id\" and \"access_key_secret\", or give registry credentials"
    );
    // Half a key is no key.
    set(ACCESS_KEY_ID_ENV, Some("LTAI5tonlyhalf"));
    let err = ask(&ali, HOST).await.expect_err("no secret");
    assert!(err.to_string().contains(ACCESS_KEY_SECRET_ENV), "{err}");

    // An STS key and the endpoint from the environment.
    let sts = fake().sts_account("env");
    set(ACCESS_KEY_ID_ENV, Some(&sts.id));
    set(ACCESS_KEY_SECRET_ENV, Some(&sts.secret));
    set(SECURITY_TOKEN_ENV, sts.security_token.as_deref());
    set(CR_ENDPOINT_ENV, Some(fake().url().trim_end_matches('/')));
    let c = ask(&provider(&instance, None), HOST)
        .await
        .expect("credentials")
        .expect("some");
    assert_eq!((c.username(), c.secret()), (Some(TEMP_USER), TEMP_TOKEN));
    let calls = sts.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].security_token, sts.security_token);
    assert_eq!(
        calls[0].params.get("InstanceId").map(String::as_str),
        Some(MCREG_INSTANCE_ID)
    );

    // Builder options win over the environment (key and endpoint alike).
    let account = fake().account("env-options");
    let mut options = account.options();
    options.extend(instance.iter().cloned());
    ask(&provider(&options, None), HOST).await.expect("credentials");
    assert_eq!(account.answered("GetAuthorizationToken", "2018-12-01"), 1);
    assert_eq!(sts.calls().len(), 1);

    // A scheme-less endpoint means HTTPS; an unparsable one is a configuration error.
    set(CR_ENDPOINT_ENV, Some("bad host:99999"));
    let err = ask(&provider(&instance, None), HOST)
        .await
        .expect_err("bad endpoint");
    assert!(
        err.to_string()
            .starts_with("invalid configuration: ali: invalid cr endpoint \"https://bad host:99999\""),
        "{err}"
    );
    let with_option = [
        (AliOption::InstanceId, MCREG_INSTANCE_ID.to_owned()),
        (AliOption::CrEndpoint, fake().url()),
    ];
    ask(&provider(&with_option, None), HOST)
        .await
        .expect("the option wins over a bad variable");
    assert_eq!(sts.calls().len(), 2);
}
