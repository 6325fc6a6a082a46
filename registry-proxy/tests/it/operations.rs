//! What operators see: Prometheus metrics, the `/stats` summary, and
//! `/ready`, which fails when the storage does not answer.

use crate::common::{RunningProxy, config, metric, pull_through};
use conformance::harness::{AuthMode, TestRegistry, moto_url};
use registry_proxy::S3Config;
use serde_json::Value;

#[tokio::test]
async fn metrics_and_stats_count_what_happened() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &[registry.host()]);
    let route = config.routes[0].name.clone();
    let proxy = RunningProxy::start(&config);
    let image = &registry.fixtures().single_oci;
    let name = format!("{}:v1", image.repository);
    pull_through(&proxy, &name).await;
    pull_through(&proxy, &name).await;

    let metrics = reqwest::get(format!("{}/metrics", proxy.url()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    let labels = |rest: &str| format!("{{route=\"{route}\"{rest}}}");
    assert!(
        metric(
            &metrics,
            &format!("mcreg_requests_total{}", labels(",method=\"GET\",status=\"200\""))
        ) >= 6.0
    );
    // Twice the manifest, config and layer: once a miss, once a hit each.
    assert_eq!(
        metric(
            &metrics,
            &format!("mcreg_cache_results_total{}", labels(",result=\"miss\""))
        ),
        3.0
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("mcreg_cache_results_total{}", labels(",result=\"hit\""))
        ),
        3.0
    );
    let content = (image.manifest.len() + image.config.len() + image.layers[0].data.len()) as f64;
    assert_eq!(
        metric(&metrics, &format!("mcreg_fetched_bytes_total{}", labels(""))),
        content
    );
    assert_eq!(metric(&metrics, "mcreg_fills_in_flight"), 0.0);

    let stats: Value = reqwest::get(format!("{}/stats", proxy.url()))
        .await
        .expect("GET /stats")
        .json()
        .await
        .expect("JSON");
    assert_eq!(stats["mostPulled"][0]["repository"], image.repository.as_str());
    assert_eq!(stats["mostPulled"][0]["pulls"], 2);
    assert_eq!(stats["savedBytes"], content as u64, "{stats}");
    assert_eq!(stats["fetchedBytes"], content as u64, "{stats}");
    assert_eq!(stats["hits"], 3);

    let ready = reqwest::get(format!("{}/ready", proxy.url()))
        .await
        .expect("GET /ready");
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn not_ready_while_the_storage_does_not_answer() {
    let registry = TestRegistry::start(AuthMode::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path(), &[registry.host()]);
    config.s3 = Some(S3Config {
        bucket: "mcreg-no-such-bucket".into(),
        endpoint: Some(moto_url().to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some("AKIDMCREGMOTO".into()),
        secret_access_key: Some("mcreg-moto-secret".into()),
        ..S3Config::default()
    });
    let proxy = RunningProxy::start(&config);
    let ready = reqwest::get(format!("{}/ready", proxy.url()))
        .await
        .expect("GET /ready");
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.expect("body");
    assert!(
        body.contains("unavailable") && body.contains("storage is failing"),
        "{body}"
    );
    let health = reqwest::get(format!("{}/health", proxy.url()))
        .await
        .expect("GET /health");
    assert_eq!(health.status(), 200, "alive, though not ready");
}
