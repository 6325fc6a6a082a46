//! `mcreg providers`: who serves which hosts.

use registry_client::driver;
use serde::Serialize;

use super::Context;
use crate::exit::Failure;
use crate::output::table;

/// `providers --json`.
#[derive(Debug, Serialize)]
struct ProvidersReport {
    providers: Vec<ProviderEntry>,
}

#[derive(Debug, Serialize)]
struct ProviderEntry {
    id: &'static str,
    hosts: Vec<&'static str>,
}

pub fn run(context: &Context) -> Result<(), Failure> {
    let report = ProvidersReport {
        providers: driver::providers()?
            .into_iter()
            .map(|r| ProviderEntry {
                id: r.id,
                hosts: r.hosts.to_vec(),
            })
            .collect(),
    };
    context.out.result(&report, || {
        let mut rows = vec![vec!["PROVIDER".to_owned(), "HOSTS".to_owned()]];
        for p in &report.providers {
            let hosts = if p.hosts.is_empty() {
                "-".to_owned()
            } else {
                p.hosts.join(", ")
            };
            rows.push(vec![p.id.to_owned(), hosts]);
        }
        table(&rows)
    })
}
