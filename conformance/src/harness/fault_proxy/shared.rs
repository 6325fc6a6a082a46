//! The state both listeners share: upstream and redirect addresses, the upstream client, the
//! queued rules, the logs and the redirect tickets, with what the handlers do to it (take the
//! fault for a request, record a request and update its entry, rewrite `Location` values).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use axum::http::HeaderValue;
use url::Url;

use super::log::{FiredFault, RecordedRequest};
use super::matcher::{RequestInfo, blob_digest};
use super::rules::{ActiveRule, Fault};

pub(super) struct Ticket {
    pub(super) path_and_query: String,
    pub(super) authorization: Option<HeaderValue>,
}

pub(super) struct Shared {
    pub(super) upstream: Url,
    /// Upstream base without trailing slash, e.g. `http://127.0.0.1:5000`.
    pub(super) upstream_base: String,
    pub(super) proxy_url: Url,
    pub(super) redirect_base: String,
    pub(super) client: reqwest::Client,
    pub(super) blob_dir: Option<PathBuf>,
    pub(super) rewrites: Vec<(String, String)>,
    pub(super) redirect_rejects_authorization: bool,
    pub(super) rules: Mutex<Vec<ActiveRule>>,
    pub(super) next_rule: AtomicU64,
    pub(super) next_ticket: AtomicU64,
    pub(super) next_request: AtomicU64,
    pub(super) log: Mutex<Vec<RecordedRequest>>,
    pub(super) redirect_log: Mutex<Vec<RecordedRequest>>,
    pub(super) fired: Mutex<Vec<FiredFault>>,
    pub(super) tickets: Mutex<HashMap<String, Ticket>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Find the first applicable rule, spend one unit of its budget, record the firing.
    pub(super) fn take_fault(&self, info: &RequestInfo<'_>) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let idx = rules.iter().position(|r| {
            r.remaining > 0
                && r.matcher.matches(info)
                && (!matches!(r.fault, Fault::RedirectBlobs { .. }) || blob_digest(info.path).is_some())
        })?;
        let rule = &mut rules[idx];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        let id = rule.id;
        if rule.remaining == 0 {
            rules.remove(idx);
        }
        drop(rules);
        lock(&self.fired).push(FiredFault {
            rule: id,
            kind: fault.kind(),
            method: info.method.clone(),
            path: info.path.to_owned(),
            at: Instant::now(),
        });
        Some(fault)
    }

    /// Append `rec` (its `id` is assigned here) and return its id.
    pub(super) fn record(&self, log: &Mutex<Vec<RecordedRequest>>, mut rec: RecordedRequest) -> u64 {
        let mut log = lock(log);
        rec.id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let id = rec.id;
        log.push(rec);
        id
    }

    pub(super) fn update(
        &self,
        log: &Mutex<Vec<RecordedRequest>>,
        id: u64,
        f: impl FnOnce(&mut RecordedRequest),
    ) {
        // `clear_log` may have run in between; then the entry is gone and nothing is updated.
        if let Some(r) = lock(log).iter_mut().rev().find(|r| r.id == id) {
            f(r);
        }
    }

    /// Rewrite a `Location` value that points at the upstream so it points at the proxy, then
    /// apply the user's rewrites.
    pub(super) fn rewrite_location(&self, value: &str) -> String {
        let mut out = value.to_owned();
        if let Ok(loc) = Url::parse(value) {
            let up = &self.upstream;
            let base_path = up.path().trim_end_matches('/');
            if loc.scheme() == up.scheme()
                && loc.host_str() == up.host_str()
                && loc.port_or_known_default() == up.port_or_known_default()
                && loc.path().starts_with(base_path)
            {
                let mut rest = loc.path()[base_path.len()..].to_owned();
                if !rest.starts_with('/') {
                    rest.insert(0, '/');
                }
                let mut new = self.proxy_url.clone();
                new.set_path(&rest);
                new.set_query(loc.query());
                new.set_fragment(loc.fragment());
                out = new.to_string();
            }
        }
        self.apply_rewrites(&out)
    }

    pub(super) fn apply_rewrites(&self, value: &str) -> String {
        self.rewrites
            .iter()
            .fold(value.to_owned(), |v, (from, to)| v.replace(from, to))
    }
}
