//! What the cache has done, for operators: Prometheus metrics (`/metrics`)
//! and a summary (`/stats`: totals, the most pulled repositories, the
//! bytes the cache saved its upstreams).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::cache_result::CacheResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    route: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    route: String,
    upstream: String,
}

/// Every metric of a server.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    requests: Family<RequestLabels, Counter>,
    cache_results: Family<CacheLabels, Counter>,
    served_bytes: Family<RouteLabels, Counter>,
    fetched_bytes: Family<RouteLabels, Counter>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    fills: Gauge,
    connections: Gauge,
    connections_closed: Family<ReasonLabels, Counter>,
    connection_limit: Counter,
    accept_errors: Counter,
    storage_errors: Family<OperationLabels, Counter>,
    fills_stopped: Family<ReasonLabels, Counter>,
    upstream_not_found: Family<RouteLabels, Counter>,
    /// What the cache holds, as its index counts it.
    pub cache_bytes: Gauge,
    pub cache_objects: Gauge,
    pub evictions: Counter,
    saved_bytes: AtomicU64,
    pulls: Mutex<HashMap<(String, String), u64>>,
}

/// One answer, as the access log saw it.
pub struct Answered<'a> {
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub status: u16,
    pub cache: Option<CacheResult>,
    pub bytes: u64,
    /// The repository of a manifest `GET` (what counts as a pull).
    pub pulled: Option<&'a str>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mcreg");
        let metrics = Metrics {
            registry: Registry::default(),
            started: Instant::now(),
            requests: Family::default(),
            cache_results: Family::default(),
            served_bytes: Family::default(),
            fetched_bytes: Family::default(),
            upstream_errors: Family::default(),
            fills: Gauge::default(),
            connections: Gauge::default(),
            connections_closed: Family::default(),
            connection_limit: Counter::default(),
            accept_errors: Counter::default(),
            storage_errors: Family::default(),
            fills_stopped: Family::default(),
            upstream_not_found: Family::default(),
            cache_bytes: Gauge::default(),
            cache_objects: Gauge::default(),
            evictions: Counter::default(),
            saved_bytes: AtomicU64::new(0),
            pulls: Mutex::new(HashMap::new()),
        };
        registry.register(
            "requests",
            "Requests answered, by route, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "cache_results",
            "Manifest and blob answers by cache result (hit, miss, stale)",
            metrics.cache_results.clone(),
        );
        registry.register(
            "served_bytes",
            "Body bytes sent to clients",
            metrics.served_bytes.clone(),
        );
        registry.register(
            "fetched_bytes",
            "Bytes fetched from upstreams",
            metrics.fetched_bytes.clone(),
        );
        registry.register(
            "upstream_errors",
            "Answers that failed because an upstream did (down, 5xx, refused), by upstream",
            metrics.upstream_errors.clone(),
        );
        registry.register("fills_in_flight", "Blob fills under way", metrics.fills.clone());
        registry.register(
            "connections",
            "Client connections open",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections the server closed, by reason (header_timeout, idle_timeout, evicted)",
            metrics.connections_closed.clone(),
        );
        registry.register(
            "connection_limit_reached",
            "Times a new connection found the connection limit reached",
            metrics.connection_limit.clone(),
        );
        registry.register(
            "storage_errors",
            "Reads and writes of the cache's storage that failed, by operation (the cache then serves without storing)",
            metrics.storage_errors.clone(),
        );
        registry.register(
            "fills_stopped",
            "Blob fills stopped before the end for the cache's own reasons (no_room, storage, abandoned); their clients were served from the upstream",
            metrics.fills_stopped.clone(),
        );
        registry.register(
            "upstream_not_found",
            "Blobs and manifests asked for that the upstream does not have",
            metrics.upstream_not_found.clone(),
        );
        registry.register(
            "accept_errors",
            "Connections that could not be accepted (out of file descriptors, most often)",
            metrics.accept_errors.clone(),
        );
        registry.register("cache_bytes", "Bytes in the cache", metrics.cache_bytes.clone());
        registry.register(
            "cache_objects",
            "Objects in the cache",
            metrics.cache_objects.clone(),
        );
        registry.register(
            "evictions",
            "Objects evicted to stay within the size limits",
            metrics.evictions.clone(),
        );
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    pub fn answered(&self, answer: &Answered<'_>) {
        let route = answer.route.unwrap_or("-").to_owned();
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: answer.method.to_owned(),
                status: answer.status,
            })
            .inc();
        self.served_bytes
            .get_or_create(&RouteLabels { route: route.clone() })
            .inc_by(answer.bytes);
        if let Some(cache) = answer.cache {
            self.cache_results
                .get_or_create(&CacheLabels {
                    route: route.clone(),
                    result: match cache {
                        CacheResult::Hit => "hit",
                        CacheResult::Miss => "miss",
                        CacheResult::Stale => "stale",
                    },
                })
                .inc();
            if cache != CacheResult::Miss {
                self.saved_bytes.fetch_add(answer.bytes, Ordering::Relaxed);
            }
        }
        if let Some(repository) = answer.pulled.filter(|_| answer.status == 200) {
            *self
                .pulls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((route, repository.to_owned()))
                .or_default() += 1;
        }
    }

    pub fn fetched(&self, route: &str, bytes: u64) {
        self.fetched_bytes
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .inc_by(bytes);
    }

    pub fn upstream_failed(&self, route: &str, upstream: &str) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                route: route.to_owned(),
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    pub fn fill_started(&self) {
        self.fills.inc();
    }

    pub fn fill_ended(&self) {
        self.fills.dec();
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    /// The server closed a connection, for `reason`; every connection's
    /// end is counted by [`connection_ended`](Self::connection_ended).
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn connection_ended(&self) {
        self.connections.dec();
    }

    pub fn connection_limit_reached(&self) {
        self.connection_limit.inc();
    }

    pub fn accept_failed(&self) {
        self.accept_errors.inc();
    }

    pub fn storage_failed(&self, operation: &'static str) {
        self.storage_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    pub fn fill_stopped(&self, reason: &'static str) {
        self.fills_stopped.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn not_found_upstream(&self, route: &str) {
        self.upstream_not_found
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The `/stats` summary.
    pub fn stats(&self) -> Stats {
        let mut top: Vec<Pulled> = self
            .pulls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((route, repository), pulls)| Pulled {
                route: route.clone(),
                repository: repository.clone(),
                pulls: *pulls,
            })
            .collect();
        top.sort_by(|a, b| {
            b.pulls
                .cmp(&a.pulls)
                .then_with(|| a.repository.cmp(&b.repository))
        });
        top.truncate(20);
        let totals = self.totals();
        Stats {
            uptime_seconds: self.started.elapsed().as_secs(),
            requests: totals.requests,
            hits: totals.hits,
            misses: totals.misses,
            stale: totals.stale,
            served_bytes: totals.served_bytes,
            fetched_bytes: totals.fetched_bytes,
            saved_bytes: self.saved_bytes.load(Ordering::Relaxed),
            cache_bytes: self.cache_bytes.get().max(0) as u64,
            cache_objects: self.cache_objects.get().max(0) as u64,
            evictions: self.evictions.get(),
            fills_in_flight: self.fills.get().max(0) as u64,
            most_pulled: top,
        }
    }

    /// Sums over every label, read back from the text encoding (families
    /// keep their series private).
    fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for line in self.encode().lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: u64 = value.parse::<f64>().map_or(0, |v| v as u64);
            let name = series.split('{').next().unwrap_or_default();
            match name {
                "mcreg_requests_total" => totals.requests += value,
                "mcreg_served_bytes_total" => totals.served_bytes += value,
                "mcreg_fetched_bytes_total" => totals.fetched_bytes += value,
                "mcreg_cache_results_total" if series.contains("result=\"hit\"") => totals.hits += value,
                "mcreg_cache_results_total" if series.contains("result=\"miss\"") => totals.misses += value,
                "mcreg_cache_results_total" if series.contains("result=\"stale\"") => totals.stale += value,
                _ => {}
            }
        }
        totals
    }
}

#[derive(Default)]
struct Totals {
    requests: u64,
    hits: u64,
    misses: u64,
    stale: u64,
    served_bytes: u64,
    fetched_bytes: u64,
}

/// `/stats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub uptime_seconds: u64,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub served_bytes: u64,
    pub fetched_bytes: u64,
    /// Bytes answered from the cache (hits and stale answers): what the
    /// upstreams did not have to send.
    pub saved_bytes: u64,
    pub cache_bytes: u64,
    pub cache_objects: u64,
    pub evictions: u64,
    pub fills_in_flight: u64,
    pub most_pulled: Vec<Pulled>,
}

/// A repository and how often its manifests were fetched.
#[derive(Debug, Serialize)]
pub struct Pulled {
    pub route: String,
    pub repository: String,
    pub pulls: u64,
}
